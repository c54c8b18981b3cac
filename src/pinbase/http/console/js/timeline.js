// The device's timeline (events, newest first, resolvable) and its online/offline history.
import { API, get, post } from "./api.js";
import { formatTime, h, replace, timeAgo, toast } from "./dom.js";

const PAGE = 20;
const RESOLVABLE = new Set(["WARNING", "CRITICAL"]);

/** The timeline panel: {el, load(), add(item)}. */
export function timelineSection(deviceId, canResolve) {
  const list = h("ol", { class: "timeline", id: "timeline" });
  const more = h("button", { type: "button", hidden: true, onclick: () => load(page + 1) }, "Show older events");
  const el = h("section", { class: "panel", "aria-labelledby": "timeline-title" },
    h("h2", { id: "timeline-title" }, "Timeline"), list, more);
  const items = new Map(); // event id -> li
  let page = 0;

  function entry(item) {
    const li = h("li", { class: `event ${item.eventType.toLowerCase()}`, "data-event": item.id });
    const resolvable = canResolve && RESOLVABLE.has(item.eventType) && !item.isResolved;
    const comment = h("input", { type: "text", placeholder: "Comment (optional)", "aria-label": "Resolution comment", maxLength: 300 });
    replace(li,
      h("span", { class: `badge ${item.eventType.toLowerCase()}` }, item.eventType),
      h("strong", {}, item.eventCode),
      item.description ? h("span", {}, ` ${item.description}`) : null,
      " ", timeAgo(item.ts),
      item.isResolved
        ? h("span", { class: "resolved" }, ` resolved ${formatTime(item.resolvedAt)}${item.resolvedComment ? `: ${item.resolvedComment}` : ""}`)
        : null,
      resolvable
        ? h("form", {
          class: "inline resolve",
          onsubmit: async (e) => {
            e.preventDefault();
            try {
              await post(`${API}/device/resolve-event`, {
                deviceId, logEventId: item.id, ...(comment.value.trim() ? { comment: comment.value.trim() } : {}),
              });
              add({ ...item, isResolved: true, resolvedAt: Date.now(), resolvedComment: comment.value.trim() || null });
            } catch (error) {
              toast(error.message, "error");
            }
          },
        }, comment, h("button", { type: "submit" }, "Resolve"))
        : null);
    return li;
  }

  /** A new or changed item (from the live stream or a resolve). */
  function add(item) {
    const li = entry(item);
    const old = items.get(item.id);
    if (old) old.replaceWith(li);
    else list.prepend(li);
    items.set(item.id, li);
    list.querySelector(".empty")?.remove();
  }

  async function load(next = 0) {
    try {
      const found = await get(`${API}/device/timeline`, { deviceId, page: next, size: PAGE });
      page = next;
      if (next === 0) {
        replace(list);
        items.clear();
      }
      for (const item of found.content) {
        const li = entry(item);
        items.set(item.id, li);
        list.append(li);
      }
      if (!items.size) list.append(h("li", { class: "muted empty" }, "No events yet."));
      more.hidden = (page + 1) * PAGE >= found.totalElements;
    } catch (error) {
      replace(list, h("li", { class: "error" }, error.message));
    }
  }

  return { el, load, add };
}

/** Online and offline periods from the ONLINE and OFFLINE events: {el, load(), add(item)}. */
export function presenceSection(deviceId) {
  const list = h("ol", { class: "presence", id: "presence" });
  const el = h("section", { class: "panel", "aria-labelledby": "presence-title" },
    h("h2", { id: "presence-title" }, "Online and offline"), list);
  let events = [];

  function render() {
    events.sort((a, b) => b.ts - a.ts);
    if (!events.length) {
      replace(list, h("li", { class: "muted" }, "Never connected."));
      return;
    }
    replace(list, events.slice(0, 50).map((item, i) => {
      const online = item.eventType === "ONLINE";
      const until = i === 0 ? null : events[i - 1].ts;
      return h("li", {},
        h("span", { class: online ? "badge online" : "badge offline" }, online ? "Online" : "Offline"),
        ` from ${formatTime(item.ts)}`,
        until ? ` to ${formatTime(until)} (${duration(until - item.ts)})` : " until now");
    }));
  }

  async function load() {
    try {
      const [on, off] = await Promise.all(["ONLINE", "OFFLINE"].map((eventType) =>
        get(`${API}/device/timeline`, { deviceId, eventType, size: 50 })));
      events = [...on.content, ...off.content];
      render();
    } catch (error) {
      replace(list, h("li", { class: "error" }, error.message));
    }
  }

  function add(item) {
    if (item.eventType !== "ONLINE" && item.eventType !== "OFFLINE") return;
    events = events.filter((e) => e.id !== item.id);
    events.push(item);
    render();
  }

  return { el, load, add };
}

function duration(ms) {
  const minutes = Math.round(ms / 60e3);
  if (minutes < 1) return `${Math.round(ms / 1000)} s`;
  if (minutes < 120) return `${minutes} min`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `${hours} h` : `${Math.round(hours / 24)} days`;
}
