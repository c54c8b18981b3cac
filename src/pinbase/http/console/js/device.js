// A device's page: its tiles (live), charts, timeline, metadata and online/offline history.
import { API, get, post } from "./api.js";
import { formatTime, h, replace, timeAgo, toast } from "./dom.js";
import { chartSection } from "./charts.js";
import { status } from "./devices.js";
import { template } from "./products.js";
import { may } from "./session.js";
import { isNumeric, tile } from "./tiles.js";
import { presenceSection, timelineSection } from "./timeline.js";

/** Render device `id` into `main`; returns what to do when the page is left. */
export function devicePage(main, id) {
  let stream = null;
  let left = false;
  let charts = null;
  replace(main, h("p", { class: "muted" }, "Loading…"));
  load().catch((error) => {
    if (!left) replace(main, h("p", { class: "error", role: "alert" }, error.message), h("p", {}, h("a", { href: "#/" }, "Back to devices")));
  });

  async function load() {
    const device = await get(`${API}/device`, { deviceId: id });
    const [product, properties] = await Promise.all([
      template(device.templateId),
      get(`${API}/device/datastream/properties`, { deviceId: id }),
    ]);
    if (left) return;
    render(device, product, properties);
  }

  function render(device, product, properties) {
    document.title = `${device.name} · pinbase`;
    const values = new Map(device.dataStreamValues.map((v) => [v.dataStreamId, v]));
    const props = new Map(properties.map((p) => [p.dataStreamId, { ...p.properties }]));
    const control = may("ORG_DEVICES_CONTROL");
    const tiles = new Map();
    for (const ds of product.dataStreams) {
      const value = values.get(ds.id);
      tiles.set(ds.id, tile(id, ds, value?.value, value?.updatedAt, props.get(ds.id) ?? {}, control));
    }
    const badge = h("span", { id: "online" }, status(device.online));
    const lastSeen = h("span", { id: "last-seen" }, timeAgo(device.lastReportedAt));
    const timeline = timelineSection(id, control);
    const presence = presenceSection(id);
    const meta = metadataSection(id, device.metaFieldValues, product.metaFields, control);
    charts = chartSection(id, product.dataStreams.filter(isNumeric), (ds) => tiles.get(ds.id).view());
    replace(main,
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/" }, "Devices"), " / ", device.name),
      h("div", { class: "device-head" },
        h("h1", {}, device.name),
        badge,
        h("p", { class: "muted" }, `${product.name} · id ${device.id} · last reported `, lastSeen,
          device.activatedAt ? ` · activated ${formatTime(device.activatedAt)}` : "")),
      h("section", { class: "tiles", "aria-label": "Datastreams", id: "tiles" }, [...tiles.values()].map((t) => t.el)),
      charts.el,
      h("div", { class: "columns" }, timeline.el, h("div", {}, presence.el, meta.el)));
    performance.mark("pinbase:device-rendered");
    main.dataset.device = String(id);

    stream = new EventSource(`${API}/live?deviceIds=${id}`);
    stream.addEventListener("value", (e) => {
      const change = JSON.parse(e.data);
      tiles.get(change.dataStreamId)?.arrived(change.value, change.updatedAt);
      replace(lastSeen, timeAgo(change.updatedAt));
    });
    stream.addEventListener("property", (e) => {
      const change = JSON.parse(e.data);
      tiles.get(change.dataStreamId)?.property(change.property, change.value);
    });
    stream.addEventListener("event", (e) => {
      const item = JSON.parse(e.data);
      timeline.add(item);
      presence.add(item);
      if (item.eventType === "ONLINE" || item.eventType === "OFFLINE") {
        replace(badge, status(item.eventType === "ONLINE"));
      }
    });
    stream.addEventListener("meta", (e) => meta.set(JSON.parse(e.data)));
    stream.addEventListener("open", () => { main.dataset.live = "open"; });

    charts.refresh();
    timeline.load();
    presence.load();
  }

  return () => {
    left = true;
    stream?.close();
    charts?.close();
    delete main.dataset.device;
    delete main.dataset.live;
  };
}

function metaText(value) {
  if (value === undefined || value === null) return "—";
  if (typeof value !== "object") return String(value);
  return Object.values(value).filter((v) => v !== null && v !== "").join(", ");
}

/** The device's metadata; editable (each field in place) with ORG_DEVICES_CONTROL. */
function metadataSection(deviceId, fields, definitions, canEdit) {
  const list = h("dl", { class: "meta", id: "metadata" });
  // the device's answer wraps each value ({type, value}); the live stream sends it bare
  const byId = new Map(fields.map((f) => [f.id, { id: f.id, name: f.name, value: f.value?.value }]));
  const defined = new Map((definitions ?? []).map((d) => [d.id, d]));
  const el = h("section", { class: "panel", "aria-labelledby": "meta-title" }, h("h2", { id: "meta-title" }, "Metadata"), list);

  function editor(field, dd) {
    const definition = defined.get(field.id) ?? {};
    const now = metaText(field.value);
    const input = definition.options
      ? h("select", { "aria-label": field.name }, definition.options.map((o) => h("option", { value: o, selected: o === now }, o)))
      : h("input", {
        type: definition.type === "Number" ? "number" : definition.type === "Email" ? "email" : "text",
        step: "any", "aria-label": field.name, value: now === "—" ? "" : now,
      });
    const form = h("form", {
      class: "inline",
      onkeydown: (e) => { if (e.key === "Escape") render(); },
      onsubmit: async (e) => {
        e.preventDefault();
        const newValue = definition.type === "Number" && input.value !== "" ? Number(input.value) : input.value;
        try {
          await post(`${API}/device/metafield`, { deviceId, metaFieldId: field.id, newValue });
          byId.set(field.id, { ...field, value: newValue });
          render();
        } catch (error) {
          toast(`${field.name}: ${error.message}`, "error");
        }
      },
    }, input, h("button", { type: "submit" }, "Save"), h("button", { type: "button", onclick: render }, "Cancel"));
    replace(dd, form);
    input.focus();
  }

  function render() {
    if (!byId.size) {
      replace(list, h("p", { class: "muted" }, "This product has no metadata."));
      return;
    }
    replace(list, [...byId.values()].map((f) => {
      const dd = h("dd", { "data-meta": f.id }, metaText(f.value));
      if (canEdit) {
        dd.append(" ", h("button", { type: "button", class: "link", "aria-label": `Edit ${f.name}`, onclick: () => editor(f, dd) }, "Edit"));
      }
      return [h("dt", {}, f.name), dd];
    }));
  }
  render();
  return {
    el,
    set(change) {
      byId.set(change.id, { id: change.id, name: change.name, value: change.value });
      render();
    },
  };
}
