// A chart per numeric datastream over one range (1h … 3mo, or custom), in the viewer's time
// zone, drawn by uPlot from the history aggregation API; and the CSV download of that range.
import { API, get, url } from "./api.js";
import { h, replace, toast, viewerZone } from "./dom.js";

const HOUR = 3600e3;
const DAY = 24 * HOUR;
export const RANGES = [
  { key: "1h", label: "1h", span: HOUR, interval: "1m" },
  { key: "6h", label: "6h", span: 6 * HOUR, interval: "5m" },
  { key: "1d", label: "1d", span: DAY, interval: "15m" },
  { key: "1w", label: "1w", span: 7 * DAY, interval: "1h" },
  { key: "1mo", label: "1mo", span: 30 * DAY, interval: "1h" },
  { key: "3mo", label: "3mo", span: 91 * DAY, interval: "day" },
];
const WIDTHS = [["1m", 60e3], ["5m", 300e3], ["15m", 900e3], ["1h", HOUR], ["day", DAY], ["week", 7 * DAY], ["month", 31 * DAY]];
const MAX_POINTS = 1500;
const FOLLOW_MS = 30_000;

/** The finest interval giving at most MAX_POINTS buckets over `span` ms. */
export function intervalFor(span) {
  return (WIDTHS.find(([, width]) => span / width <= MAX_POINTS) ?? WIDTHS[WIDTHS.length - 1])[0];
}

function widthOf(interval) {
  return WIDTHS.find(([name]) => name === interval)[1];
}

/** uPlot's columns from aggregated buckets, broken (a null) where the points stop for much
 * longer than they usually are apart: a device that reports every 5 minutes charted in 1-minute
 * buckets is one line, a day without reports is a gap. */
export function columns(data, interval) {
  const xs = [];
  const ys = [];
  const deltas = data.slice(1).map((point, i) => point.ts - data[i].ts).sort((a, b) => a - b);
  const usual = deltas.length ? deltas[Math.floor(deltas.length / 2)] : 0;
  const gap = Math.max(widthOf(interval) * 1.5, usual * 3);
  let last = null;
  for (const point of data) {
    if (last !== null && point.ts - last > gap) {
      xs.push((last + widthOf(interval)) / 1000);
      ys.push(null);
    }
    xs.push(point.ts / 1000);
    ys.push(point.value);
    last = point.ts;
  }
  return [xs, ys];
}

function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
  return d.toISOString().slice(0, 16);
}

/** A chart in words, for screen readers: its range of values. */
function summaryOf(view, data) {
  if (!data.length) return `${view.label}: no data in this range`;
  const values = data.map((p) => p.value);
  const fmt = (v) => v.toLocaleString(undefined, { maximumFractionDigits: 2 });
  return `${view.label}: ${data.length} points from ${fmt(Math.min(...values))} to ${fmt(Math.max(...values))}${view.units ? ` ${view.units}` : ""}`;
}

/** An enum's axis: its options' labels at their values, nothing between them. */
function enumAxis(view) {
  const labels = new Map(view.options.map((o) => [Number(o.value), o.label]));
  return {
    size: 70,
    splits: () => [...labels.keys()],
    values: (u, splits) => splits.map((v) => labels.get(v) ?? ""),
  };
}

/** The chart section: {el, refresh()}. */
export function chartSection(deviceId, datastreams, viewOf) {
  let range = RANGES[0];
  let custom = null; // {from, to} in epoch ms
  const charts = new Map(); // datastream id -> {card, plot, body}
  const buttons = RANGES.map((r) => h("button", {
    type: "button", class: "range", "data-range": r.key, "aria-pressed": String(r === range),
    onclick: () => { range = r; custom = null; refresh(); },
  }, r.label));
  const from = h("input", { type: "datetime-local", "aria-label": "From", id: "custom-from" });
  const to = h("input", { type: "datetime-local", "aria-label": "To", id: "custom-to" });
  const customForm = h("form", {
    class: "inline custom", onsubmit: (e) => {
      e.preventDefault();
      const start = Date.parse(from.value);
      const end = Date.parse(to.value);
      if (!Number.isFinite(start) || !Number.isFinite(end) || start >= end) {
        toast("Choose a custom range whose start is before its end.", "error");
        return;
      }
      custom = { from: start, to: end };
      refresh();
    },
  }, from, to, h("button", { type: "submit", "data-range": "custom" }, "Custom"));
  const csv = h("a", { class: "button", id: "csv", download: "" }, "Download CSV");
  const caption = h("p", { class: "muted small", id: "chart-range", "aria-live": "polite" });
  const grid = h("div", { class: "charts" });
  const el = h("section", { class: "panel", "aria-labelledby": "charts-title" },
    h("div", { class: "toolbar" }, h("h2", { id: "charts-title" }, "Charts"),
      h("div", { class: "ranges", role: "group", "aria-label": "Range" }, buttons), customForm, csv),
    caption, grid);

  function window_() {
    if (custom) return { ...custom, interval: intervalFor(custom.to - custom.from) };
    const end = Date.now();
    return { from: end - range.span, to: end, interval: range.interval };
  }

  function card(ds) {
    if (!charts.has(ds.id)) {
      const body = h("div", { class: "plot" });
      const title = h("h3", {});
      const chart = { card: h("figure", { class: "chart", "data-ds": ds.id }, title, body), body, title, plot: null };
      charts.set(ds.id, chart);
    }
    return charts.get(ds.id);
  }

  async function draw(ds, span, mine) {
    const chart = card(ds);
    const view = viewOf(ds);
    chart.card.hidden = view.hidden;
    chart.title.textContent = view.units ? `${view.label} (${view.units})` : view.label;
    let found;
    try {
      found = await get(`${API}/device/datastream/history/aggregate`, {
        deviceId, dataStreamId: ds.id, from: Math.floor(span.from), to: Math.floor(span.to),
        interval: span.interval, fn: ds.type === "ENUM" ? "last" : "avg", tz: viewerZone,
      });
    } catch (error) {
      if (mine === generation) replace(chart.body, h("p", { class: "error" }, error.message));
      return;
    }
    if (mine !== generation) return; // a newer refresh is drawing
    const data = columns(found.data, span.interval);
    chart.card.dataset.points = String(found.data.length);
    chart.body.setAttribute("role", "img");
    chart.body.setAttribute("aria-label", summaryOf(view, found.data));
    chart.card.dataset.interval = found.interval;
    if (!found.data.length) {
      chart.plot?.destroy();
      chart.plot = null;
      replace(chart.body, h("p", { class: "muted empty" }, "No data in this range."));
      return;
    }
    if (typeof uPlot === "undefined") {
      replace(chart.body, h("p", { class: "error" }, "This installation lacks the chart library: build it with scripts/build-console."));
      return;
    }
    chart.span = span;
    if (chart.plot && chart.interval === span.interval && chart.body.contains(chart.plot.root)) {
      chart.plot.setData(data); // the same range moved on: the scale reads chart.span
      return;
    }
    const width = Math.max(240, chart.body.clientWidth || grid.clientWidth || 320);
    chart.plot?.destroy();
    replace(chart.body);
    chart.interval = span.interval;
    chart.plot = new uPlot({
      width,
      height: 200,
      scales: { x: { time: true, range: () => [chart.span.from / 1000, chart.span.to / 1000] } },
      series: [{}, {
        label: view.label, stroke: view.color || "#2563eb", width: 2, spanGaps: false,
        paths: ds.type === "ENUM" ? uPlot.paths.stepped({ align: 1 }) : undefined,
      }],
      axes: [{}, ds.type === "ENUM" ? enumAxis(view) : { size: 60 }],
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
    }, data, chart.body);
  }

  let generation = 0;
  let following = null; // the timer that moves a relative range on

  async function refresh() {
    clearTimeout(following);
    const mine = ++generation;
    for (const button of buttons) button.setAttribute("aria-pressed", String(!custom && button.dataset.range === range.key));
    const span = window_();
    from.value = localInput(span.from);
    to.value = localInput(span.to);
    caption.textContent = `${new Date(span.from).toLocaleString()} – ${new Date(span.to).toLocaleString()} · ${span.interval} averages · ${viewerZone}`;
    csv.href = url(`${API}/device/export`, {
      deviceId, from: Math.floor(span.from), to: Math.floor(span.to), tz: viewerZone,
    });
    csv.download = `device-${deviceId}.csv`;
    const shown = datastreams.filter((ds) => ds.isHistory !== false);
    replace(grid, shown.map((ds) => card(ds).card));
    if (!shown.length) replace(grid, h("p", { class: "muted" }, "No numeric datastream keeps history."));
    el.dataset.loading = "true";
    await Promise.all(shown.map((ds) => draw(ds, span, mine)));
    if (mine !== generation) return;
    el.dataset.range = custom ? "custom" : range.key;
    el.dataset.loading = "false";
    if (!custom) following = setTimeout(follow, FOLLOW_MS);
  }

  // A relative range ("the last hour") keeps up with time while the page is visible.
  function follow() {
    if (document.hidden) following = setTimeout(follow, FOLLOW_MS);
    else refresh();
  }

  const resize = new ResizeObserver(() => {
    for (const chart of charts.values()) {
      if (chart.plot) chart.plot.setSize({ width: Math.max(240, chart.body.clientWidth), height: 200 });
    }
  });
  resize.observe(grid);

  return {
    el,
    refresh,
    close: () => {
      clearTimeout(following);
      generation += 1;
      resize.disconnect();
    },
  };
}
