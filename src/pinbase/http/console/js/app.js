// The console's shell: who is signed in, the header, and the page for the address's #route.
import { ApiError, get, request, setCsrf } from "./api.js";
import { h, replace, toast } from "./dom.js";
import { devicesPage } from "./devices.js";
import { devicePage } from "./device.js";
import { forgetProducts } from "./products.js";
import { session as current, setSession } from "./session.js";
import { signInPage } from "./signin.js";

const main = document.getElementById("main");
let leave = null; // what the current page does when it is left (closing its live stream)

function header() {
  const session = current();
  const who = document.getElementById("who");
  const nav = document.getElementById("nav");
  if (!session) {
    replace(who);
    replace(nav);
    return;
  }
  replace(nav, h("a", { href: "#/" }, "Devices"));
  const name = session.user ? session.user.email : "organization token";
  replace(
    who,
    h("span", { class: "muted", title: session.organization.name }, `${name} · ${session.user?.role ?? ""}`),
    h("button", { type: "button", class: "link", id: "sign-out", onclick: signOut }, "Sign out"),
  );
}

async function signOut() {
  try {
    await request("DELETE", "/console/session");
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) toast(error.message, "error");
  }
  signedOut();
}

function signedOut() {
  setSession(null);
  forgetProducts(); // the next user may belong to another organization
  setCsrf(null);
  header();
  route();
}

function signedIn(found) {
  setSession(found);
  setCsrf(found.csrf);
  header();
  route();
}

function route() {
  if (leave) leave();
  leave = null;
  if (!current()) {
    signInPage(main, signedIn);
    return;
  }
  const path = location.hash.replace(/^#/, "") || "/";
  const device = path.match(/^\/devices\/(\d+)$/);
  leave = device ? devicePage(main, Number(device[1])) : devicesPage(main);
}

window.addEventListener("hashchange", route);
window.addEventListener("pinbase:signed-out", () => {
  if (current()) toast("Your session ended; sign in again.", "error");
  signedOut();
});

async function boot() {
  let found;
  try {
    found = await get("/console/session");
  } catch (error) {
    replace(main, h("p", { class: "error", role: "alert" }, `The server could not be reached: ${error.message}`));
    return;
  }
  if (found.signedIn) signedIn(found);
  else signedOut();
}

boot();
