// Small DOM helpers: building elements, formatting times and values.

/** An element: h("a", {href: "#/", class: "x", onclick: fn}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "style") Object.assign(el.style, value);
    else if (key in el && key !== "list" && key !== "form") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export const viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});

export function formatTime(ms) {
  return ms === undefined || ms === null ? "—" : dateTime.format(new Date(ms));
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

/** "3 minutes ago" for an epoch-ms time. */
export function ago(ms, now = Date.now()) {
  if (ms === undefined || ms === null) return "never";
  const seconds = Math.round((ms - now) / 1000);
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [30, "day"], [12, "month"]];
  let amount = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(amount) < size) return relative.format(amount, unit);
    amount = Math.round(amount / size);
  }
  return relative.format(amount, "year");
}

/** A time element showing `ago` with the full time as its title. */
export function timeAgo(ms) {
  return h("time", {
    dateTime: ms ? new Date(ms).toISOString() : "", title: formatTime(ms), "data-ts": ms ?? "",
  }, ago(ms));
}

// "3 minutes ago" stays true: every shown time is refreshed every 15 seconds.
setInterval(() => {
  const now = Date.now();
  for (const el of document.querySelectorAll("time[data-ts]")) {
    if (el.dataset.ts) el.textContent = ago(Number(el.dataset.ts), now);
  }
}, 15000);

/** A debounced `fn`. */
export function debounce(fn, wait) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
}

let toastTimer;
/** A short message at the bottom of the page, read out by screen readers. */
export function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = `toast show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = "toast"; }, 4000);
}
