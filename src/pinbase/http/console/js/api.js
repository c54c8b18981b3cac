// The Organization and Platform API, called with the session cookie. Every write carries the
// session's CSRF token; a 401 means the session ended and sends the person to sign in.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let csrf = null;

export function setCsrf(token) {
  csrf = token;
}

export const API = "/api/v1/organization";

/** The URL of `path` with `params` (undefined values left out). */
export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export async function request(method, path, { params, body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch(url(path, params), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data?.error?.message ?? `${response.status} ${response.statusText}`;
    if (response.status === 401 && !path.startsWith("/console/session")) {
      window.dispatchEvent(new CustomEvent("pinbase:signed-out"));
    }
    throw new ApiError(response.status, message);
  }
  return data;
}

export const get = (path, params, signal) => request("GET", path, { params, signal });
export const post = (path, body, params) => request("POST", path, { body, params });
export const del = (path, params) => request("DELETE", path, { params });
