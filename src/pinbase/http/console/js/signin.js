// Sign-in with e-mail and password: the server sets an httpOnly session cookie.
import { ApiError, request } from "./api.js";
import { h, replace } from "./dom.js";

export function signInPage(main, done) {
  const email = h("input", { type: "email", id: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", {
    type: "password", id: "password", name: "password", autocomplete: "current-password", required: true,
  });
  const message = h("p", { class: "error", role: "alert" });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "card signin", onsubmit: submit },
    h("h1", {}, "Sign in"),
    h("label", { for: "email" }, "E-mail"),
    email,
    h("label", { for: "password" }, "Password"),
    password,
    message,
    button,
  );

  async function submit(event) {
    event.preventDefault();
    button.disabled = true;
    message.textContent = "";
    try {
      const session = await request("POST", "/console/session", {
        body: { email: email.value.trim(), password: password.value },
      });
      done(session);
    } catch (error) {
      message.textContent = error instanceof ApiError ? error.message : `Sign-in failed: ${error.message}`;
      password.select();
    } finally {
      button.disabled = false;
    }
  }

  replace(main, form);
  document.title = "Sign in · pinbase";
  email.focus();
}
