// The device list: search, sort by any column, one page at a time (10,000 devices and more).
import { API, get, url } from "./api.js";
import { debounce, h, replace, timeAgo, toast } from "./dom.js";
import { productNames } from "./products.js";

const SIZE = 50;
const COLUMNS = [
  { title: "Name", sortBy: "Name" },
  { title: "Product", sortBy: "Template Name" },
  { title: "Status", sortBy: "Status" },
  { title: "Last reported", sortBy: "Last Reported At" },
  { title: "Id", sortBy: "Device Id" },
];
const state = { query: "", sortBy: "Name", order: "ASC", page: 0 };

export function devicesPage(main) {
  document.title = "Devices · pinbase";
  const search = h("input", {
    type: "search", id: "device-search", placeholder: "Search by name, product, owner or id",
    "aria-label": "Search devices", value: state.query,
    oninput: debounce(() => { state.query = search.value.trim(); state.page = 0; load(); }, 250),
  });
  const summary = h("p", { class: "muted", id: "device-count", "aria-live": "polite" });
  const head = h("tr");
  const body = h("tbody");
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  replace(
    main,
    h("div", { class: "toolbar" }, h("h1", {}, "Devices"), search),
    summary,
    h("div", { class: "table-wrap" }, h("table", { class: "devices" }, h("thead", {}, head), body)),
    pager,
  );
  let generation = 0;
  let stream = null; // the live stream of the shown page's devices

  function headers() {
    replace(head, COLUMNS.map((column) => {
      const active = state.sortBy === column.sortBy;
      const sort = active ? (state.order === "ASC" ? "ascending" : "descending") : "none";
      return h("th", { scope: "col", "aria-sort": sort },
        h("button", {
          type: "button", class: "sort",
          onclick: () => {
            state.order = active && state.order === "ASC" ? "DESC" : "ASC";
            state.sortBy = column.sortBy;
            state.page = 0;
            load();
          },
        }, column.title, active ? (state.order === "ASC" ? " ▲" : " ▼") : ""));
    }));
  }

  async function load() {
    headers();
    const mine = ++generation;
    const params = { page: state.page, size: SIZE, sortBy: state.sortBy, sortOrder: state.order };
    try {
      const [found, names] = await Promise.all([
        state.query
          ? get(`${API}/search/devices`, { ...params, query: state.query })
          : get(`${API}/devices`, params),
        productNames(),
      ]);
      if (mine !== generation) return; // a newer search answered first
      rows(found, names);
    } catch (error) {
      if (mine === generation) toast(error.message, "error");
    }
  }

  function rows(found, names) {
    listen(found.content);
    const total = found.totalElements;
    const pages = Math.max(1, Math.ceil(total / SIZE));
    summary.textContent = `${total.toLocaleString()} device${total === 1 ? "" : "s"}`;
    replace(body, found.content.map((device) => h("tr", { "data-device": device.id },
      h("td", {}, h("a", { href: `#/devices/${device.id}` }, device.name)),
      h("td", {}, names.get(device.templateId) ?? `#${device.templateId}`),
      h("td", { class: "status" }, status(device.online)),
      h("td", { class: "reported" }, timeAgo(device.lastReportedAt)),
      h("td", { class: "num" }, device.id),
    )));
    if (!found.content.length) {
      replace(body, h("tr", {}, h("td", { colSpan: COLUMNS.length, class: "muted" }, "No devices found.")));
    }
    const go = (page) => () => { state.page = page; load(); };
    replace(
      pager,
      h("button", { type: "button", "aria-label": "First page", disabled: state.page === 0, onclick: go(0) }, "« First"),
      h("button", { type: "button", "aria-label": "Previous page", disabled: state.page === 0, onclick: go(state.page - 1) }, "‹ Previous"),
      h("span", { class: "muted", id: "page-of" }, `Page ${state.page + 1} of ${pages.toLocaleString()}`),
      h("button", { type: "button", "aria-label": "Next page", disabled: state.page + 1 >= pages, onclick: go(state.page + 1) }, "Next ›"),
      h("button", { type: "button", "aria-label": "Last page", disabled: state.page + 1 >= pages, onclick: go(pages - 1) }, "Last »"),
    );
  }

  /** Keep the shown devices' state and last report current from the live stream. */
  function listen(devices) {
    stream?.close();
    stream = null;
    if (!devices.length) return;
    stream = new EventSource(url(`${API}/live`, { deviceIds: devices.map((d) => d.id).join(",") }));
    const cell = (id, name) => body.querySelector(`tr[data-device="${id}"] td.${name}`);
    stream.addEventListener("value", (e) => {
      const change = JSON.parse(e.data);
      const reported = cell(change.deviceId, "reported");
      if (reported) replace(reported, timeAgo(change.updatedAt));
    });
    stream.addEventListener("event", (e) => {
      const item = JSON.parse(e.data);
      const state = cell(item.deviceId, "status");
      if (state && (item.eventType === "ONLINE" || item.eventType === "OFFLINE")) {
        replace(state, status(item.eventType === "ONLINE"));
      }
    });
  }

  load();
  return () => stream?.close();
}

export function status(online) {
  return h("span", { class: online ? "badge online" : "badge offline" }, online ? "Online" : "Offline");
}
