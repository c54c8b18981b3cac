// A tile per datastream: its value as the widget properties say (label, colour, units, limits,
// on/off labels, hidden, disabled) and, for those the session may control, a control that
// writes through the API: a switch for 0/1, a slider within min/max, a number or text input,
// a menu for an enum.
import { API, post } from "./api.js";
import { h, replace, timeAgo, toast } from "./dom.js";

const NUMERIC = new Set(["INT", "DOUBLE", "ENUM"]);

export function isNumeric(ds) {
  return NUMERIC.has(ds.type);
}

function flag(value) {
  return value === true || value === "true" || value === "1" || value === 1;
}

function number(value) {
  if (value === undefined || value === null || value === "") return undefined;
  const parsed = Number(value);
  return Number.isFinite(parsed) ? parsed : undefined;
}

/** The datastream as its widget shows it: template settings overridden by properties. */
export function shown(ds, props) {
  const min = number(props.min) ?? ds.min;
  const max = number(props.max) ?? ds.max;
  let options = ds.options ?? [];
  if (props.labels) {
    try {
      const labels = JSON.parse(props.labels);
      options = options.map((option, i) => ({ ...option, label: labels[i] ?? option.label }));
    } catch { /* a malformed list keeps the template's labels */ }
  }
  return {
    label: props.label || ds.label,
    color: props.color,
    units: props.suffix ?? ds.units ?? "",
    min,
    max,
    step: number(props.step) ?? (ds.type === "INT" || ds.type === "ENUM" ? 1 : 10 ** -(ds.decimals ?? 2)),
    decimals: number(props.maximumFractionDigits) ?? ds.decimals,
    hidden: flag(props.isHidden),
    disabled: flag(props.isDisabled),
    onLabel: props.onLabel || "On",
    offLabel: props.offLabel || "Off",
    options,
    isSwitch: ds.type === "INT" && min === 0 && max === 1,
  };
}

export function formatValue(ds, view, value) {
  if (value === undefined || value === null) return "—";
  if (view.isSwitch) return Number(value) === 1 ? view.onLabel : view.offLabel;
  if (ds.type === "ENUM") {
    const option = view.options.find((o) => Number(o.value) === Number(value));
    return option ? option.label : String(value);
  }
  if (ds.type === "DOUBLE" || ds.type === "INT") {
    const digits = view.decimals ?? (ds.type === "INT" ? 0 : 2);
    const text = Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
    return view.units ? `${text} ${view.units}` : text;
  }
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/**
 * A tile: {el, ds, set(value, ts), property(name, value)}.
 * `device` is the device's id, `value`/`ts` its current value, `props` its properties.
 */
export function tile(device, ds, value, ts, props, canControl) {
  const id = `ds-${ds.id}`;
  const el = h("section", { class: "tile", id, "aria-labelledby": `${id}-label`, "data-ds": ds.id });
  let current = value;
  let updated = ts;

  // Values this page wrote whose echo has not come back on the live stream, oldest first: an
  // echo of an older write arriving after a newer one (streams may lag) must not undo it, nor
  // may the answer to an older write.
  let pending = [];
  const same = (a, b) => a === b || (typeof a === "number" && Number(b) === a);

  let writes = 0;

  async function write(next) {
    pending = [...pending.slice(-19), next];
    const mine = ++writes;
    try {
      await post(`${API}/device/datastream`, { deviceId: device, dataStreamId: ds.id, value: next });
      if (mine === writes) set(next, Date.now()); // an older write's answer never undoes a newer one
    } catch (error) {
      pending = pending.filter((v) => v !== next);
      toast(`${view().label}: ${error.message}`, "error");
      controller?.sync(current);
    }
  }

  /** A value from the live stream: shown, unless it echoes a write older than one pending. */
  function arrived(value, at) {
    const echoed = pending.findIndex((v) => same(v, value));
    if (echoed >= 0) {
      pending = pending.slice(echoed + 1);
      if (pending.length) return;
    }
    set(value, at);
  }

  const view = () => shown(ds, props);

  // The control: {el, sync(value)}; kept across value updates, so focus and a drag survive.
  function control(v) {
    if (!canControl || ds.type === "LOCATION") return null;
    const disabled = v.disabled;
    const label = `Set ${v.label}`;
    if (v.isSwitch) {
      const button = h("button", {
        type: "button", role: "switch", class: "switch", "aria-label": v.label, disabled,
        onclick: () => write(Number(current) === 1 ? 0 : 1),
      });
      const sync = (value) => {
        const on = Number(value) === 1;
        button.classList.toggle("on", on);
        button.setAttribute("aria-checked", String(on));
        replace(button, h("span", { class: "knob" }), on ? v.onLabel : v.offLabel);
      };
      sync(current);
      return { el: button, sync };
    }
    if (ds.type === "ENUM") {
      const select = h("select", { "aria-label": label, disabled, onchange: (e) => write(Number(e.target.value)) },
        h("option", { value: "", disabled: true }, "—"),
        v.options.map((o) => h("option", { value: o.value }, o.label)));
      const sync = (value) => { select.value = value === undefined ? "" : String(value); };
      sync(current);
      return { el: select, sync };
    }
    if ((ds.type === "INT" || ds.type === "DOUBLE") && v.min !== undefined && v.max !== undefined) {
      const output = h("output");
      const range = h("input", {
        type: "range", min: v.min, max: v.max, step: v.step, "aria-label": label, disabled,
        oninput: () => { output.textContent = formatValue(ds, v, Number(range.value)); },
        onchange: () => write(Number(range.value)),
      });
      const sync = (value) => {
        range.value = value ?? v.min;
        output.textContent = formatValue(ds, v, Number(range.value));
      };
      sync(current);
      return { el: h("div", { class: "slider" }, range, output), sync };
    }
    const numeric = ds.type === "INT" || ds.type === "DOUBLE";
    const input = h("input", {
      type: numeric ? "number" : "text", "aria-label": label, disabled,
      step: numeric ? "any" : undefined, min: v.min, max: v.max,
    });
    const sync = (value) => {
      if (document.activeElement !== input) input.value = value === undefined || typeof value === "object" ? "" : value;
    };
    sync(current);
    const form = h("form", {
      class: "inline",
      onsubmit: (e) => {
        e.preventDefault();
        if (numeric && (input.value === "" || !input.checkValidity())) {
          toast(`${v.label}: enter a number${v.min !== undefined ? ` from ${v.min} to ${v.max}` : ""}.`, "error");
          return;
        }
        write(numeric ? Number(input.value) : input.value);
      },
    }, input, h("button", { type: "submit", disabled }, "Set"));
    return { el: form, sync };
  }

  const valueText = h("p", { class: "value" });
  const updatedText = h("p", { class: "muted small" });
  let controller = null;

  function render() {
    const v = view();
    el.hidden = v.hidden;
    el.classList.toggle("disabled", v.disabled);
    el.style.borderTopColor = v.color || "";
    valueText.style.color = v.color || "";
    controller = control(v);
    replace(el,
      h("h3", { id: `${id}-label` }, v.label, h("span", { class: "pin" }, ds.pin !== undefined ? `V${ds.pin}` : "")),
      valueText, updatedText, controller?.el);
    show(v);
  }

  function show(v) {
    valueText.textContent = formatValue(ds, v, current);
    replace(updatedText, "updated ", timeAgo(updated));
  }

  function set(next, at) {
    current = next;
    updated = at ?? updated;
    show(view());
    controller?.sync(current);
  }

  function property(name, next) {
    if (next === null || next === undefined) delete props[name];
    else props[name] = next;
    render();
  }

  render();
  return { el, ds, set, arrived, property, view };
}
