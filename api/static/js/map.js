// The sensor map: Hanoi's outline in SVG, one marker per sensor on a canvas, coloured by state.
//
// The outline (a few dozen paths and names) is SVG and zooms with its viewBox.  Markers are
// drawn on a canvas over it, batched by style: tens of thousands of them redraw in a few
// milliseconds, where as many SVG circles would each be restyled on every zoom step.

import { CITY_LIMITS, DEFAULT_BOUNDS, DISTRICTS, LAKES, RIVERS, URBAN_CORE } from "./hanoi.js";
import { KIND_LABELS, fmtAge } from "./fmt.js";
import { t as tr } from "./i18n.js";

const NS = "http://www.w3.org/2000/svg";
const LAT0 = 21.03;
const LON0 = 105.85;
const KY = 1000; // user units per degree of latitude
const KX = KY * Math.cos((LAT0 * Math.PI) / 180);
const MAX_NAMES = 30; // alerted sensors named on the map at most
const FLASH_MS = 10000; // a sensor that has just turned critical wears a halo this long

// drawing order, calm first, so that what needs attention is on top
const LAYERS = [
  "unknown", "offline", "online", "info-ack", "warning-ack", "critical-ack", "info", "warning",
  "critical",
];
const SIZE = { unknown: 0.8, offline: 1, online: 1, info: 1.35, warning: 1.6, critical: 1.9 };

export const project = (lat, lon) => [(lon - LON0) * KX, (LAT0 - lat) * KY];

function svg(tag, attrs = {}) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function pathOf(points, close) {
  const d = points.map(([la, lo], i) => {
    const [x, y] = project(la, lo);
    return `${i ? "L" : "M"}${x.toFixed(2)} ${y.toFixed(2)}`;
  });
  return d.join("") + (close ? "Z" : "");
}

/** What a marker shows: the worst active alert, else the device status. */
export function sensorState(sensor, worst) {
  if (worst) return { state: worst.severity, ack: worst.status === "acknowledged" };
  if (sensor.status === "offline" || sensor.status === "online") return { state: sensor.status, ack: false };
  return { state: "unknown", ack: false };
}

/** Whether two boxes ({l, r, t, b}) overlap. */
const overlaps = (a, b) => a.l < b.r && a.r > b.l && a.t < b.b && a.b > b.t;

export class SensorMap {
  /**
   * @param root the <svg> with the outline; it takes the pointer and keyboard
   * @param canvas the <canvas> over it for the markers
   * @param tooltip an element shown next to the marker under the pointer
   */
  constructor(root, { canvas, tooltip, onSelect, legend = null }) {
    this.root = root;
    this.canvas = canvas;
    this.flashing = new Map(); // id -> when it turned critical
    this.highlighted = new Set(); // the sensors of the incident in view
    this.tooltip = tooltip;
    this.onSelect = onSelect;
    this.legend = legend; // an element over the bottom of the map, kept clear by fit()
    this.markers = new Map(); // id -> {id, x, y, kind, state, ack}
    this.sensors = new Map();
    this.worst = new Map();
    this.hiddenKinds = new Set();
    this.selected = null;
    this.view = null;
    this.drawn = new Map(); // id -> state, as last drawn (for tests and the curious)
    this.mr = 5; // marker radius in px at a 16 px root font
    this._frame = 0;
    this._colours = null;
    this._build();
    this._interact();
    new ResizeObserver(() => this._applyView()).observe(root);
  }

  _build() {
    const r = this.root;
    r.replaceChildren();
    const base = svg("g", { class: "base", "aria-hidden": "true" });
    base.append(svg("path", { class: "city", d: pathOf(CITY_LIMITS, true) }));
    base.append(svg("path", { class: "core", d: pathOf(URBAN_CORE, true) }));
    for (const river of RIVERS) {
      const p = svg("path", { class: "river", d: pathOf(river.path, false) });
      p.style.setProperty("--w", river.width);
      base.append(p);
    }
    for (const lake of LAKES) base.append(svg("path", { class: "lake", d: pathOf(lake.path, true) }));
    const labels = svg("g", { class: "labels" });
    for (const [name, lat, lon, core] of DISTRICTS) {
      const [x, y] = project(lat, lon);
      const t = svg("text", { x: x.toFixed(1), y: y.toFixed(1), class: core ? "dl core" : "dl outer" });
      t.textContent = name;
      labels.append(t);
    }
    const [rx, ry] = project(20.975, 105.905);
    const riverLabel = svg("text", { x: rx, y: ry, class: "rl core" });
    riverLabel.textContent = "Sông Hồng";
    labels.append(riverLabel);
    base.append(labels);
    r.append(base);
  }

  setSensors(list) {
    this.sensors = new Map(list.map((s) => [s.id, s]));
    this.markers.clear();
    for (const s of list) {
      if (!Number.isFinite(s.lat) || !Number.isFinite(s.lon)) continue;
      const [x, y] = project(s.lat, s.lon);
      this.markers.set(s.id, { id: s.id, x, y, kind: s.kind, ...sensorState(s, this.worst.get(s.id)) });
    }
    const n = this.markers.size;
    this.mr = n <= 300 ? 7 : n <= 2500 ? 5 : n <= 10000 ? 3.5 : 2.5;
    if (!this.view) this.fit();
    this.requestDraw();
  }

  /** New device statuses or alerts: ``only`` names the sensors that changed (null: all). */
  setStates(worst, only = null) {
    this.worst = worst;
    const ids = only || this.markers.keys();
    for (const id of ids) {
      const m = this.markers.get(id);
      const s = this.sensors.get(id);
      if (m && s) Object.assign(m, sensorState(s, worst.get(id)));
    }
    this.requestDraw();
  }

  select(id) {
    this.selected = id;
    const m = this.markers.get(id);
    const v = this.view;
    if (m && v && (m.x < v.x || m.x > v.x + v.w || m.y < v.y || m.y > v.y + v.h)) {
      this.view = { ...v, x: m.x - v.w / 2, y: m.y - v.h / 2 };
      this._applyView();
    }
    this.requestDraw();
  }

  /** Ring a marker for a while: a sensor that has just turned critical (drawn, not animated). */
  flash(id) {
    if (!this.markers.has(id)) return;
    this.flashing.set(id, performance.now());
    clearTimeout(this._flashTimer);
    this._flashTimer = setTimeout(() => this.requestDraw(), FLASH_MS + 50);
    this.requestDraw();
  }

  /** Ring these sensors (an incident's), or none with an empty set. */
  highlight(ids) {
    this.highlighted = new Set(ids || []);
    this.requestDraw();
  }

  setKindHidden(kind, hidden) {
    if (hidden) this.hiddenKinds.add(kind);
    else this.hiddenKinds.delete(kind);
    this.requestDraw();
  }

  fit() {
    let b = { minLat: 90, maxLat: -90, minLon: 180, maxLon: -180 };
    for (const s of this.sensors.values()) {
      if (!Number.isFinite(s.lat) || !Number.isFinite(s.lon)) continue;
      b = {
        minLat: Math.min(b.minLat, s.lat), maxLat: Math.max(b.maxLat, s.lat),
        minLon: Math.min(b.minLon, s.lon), maxLon: Math.max(b.maxLon, s.lon),
      };
    }
    if (b.minLat > b.maxLat) b = DEFAULT_BOUNDS;
    this.fitBounds(b);
  }

  fitBounds(b) {
    const [x0, y0] = project(b.maxLat, b.minLon);
    const [x1, y1] = project(b.minLat, b.maxLon);
    const minSpan = 25; // about 2.5 km
    const w = Math.max(x1 - x0, minSpan) * 1.12;
    const h = Math.max(y1 - y0, minSpan) * 1.12;
    const cx = (x0 + x1) / 2;
    const cy = (y0 + y1) / 2;
    const box = this.root.getBoundingClientRect();
    if (!box.width || !box.height) {
      this.view = { x: cx - w / 2, y: cy - h / 2, w, h };
    } else {
      // fit into the part of the map above the legend, and fill the whole box
      const legendPx = this.legend ? this.legend.offsetHeight + 12 : 0;
      const freeH = Math.max(box.height - legendPx, box.height * 0.6);
      const ppu = Math.min(box.width / w, freeH / h);
      this.view = {
        x: cx - box.width / ppu / 2, y: cy - freeH / ppu / 2,
        w: box.width / ppu, h: box.height / ppu,
      };
    }
    this._applyView();
  }

  zoom(factor, cx, cy) {
    const v = this.view;
    if (!v) return;
    const px = cx ?? v.x + v.w / 2;
    const py = cy ?? v.y + v.h / 2;
    const w = Math.min(Math.max(v.w * factor, 2), 2000);
    const f = w / v.w;
    this.view = { x: px - (px - v.x) * f, y: py - (py - v.y) * f, w, h: v.h * f };
    this._applyView();
  }

  pan(dx, dy) {
    if (!this.view) return;
    this.view = { ...this.view, x: this.view.x + dx, y: this.view.y + dy };
    this._applyView();
  }

  _applyView() {
    const v = this.view;
    if (!v) return;
    const r = this.root;
    r.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
    const box = r.getBoundingClientRect();
    if (!box.width || !box.height) return;
    const ppu = Math.min(box.width / v.w, box.height / v.h); // screen px per user unit
    r.style.setProperty("--u", (1 / ppu).toFixed(5)); // outline text keeps its screen size
    r.classList.toggle("zoomed-in", ppu > 4); // urban district names readable
    this.placeLabels = null; // the outline's names moved: measured again at the next draw
    this.requestDraw();
  }

  /** Screen transform of the current view: user units -> canvas px. */
  _screen() {
    const v = this.view;
    const w = this.canvas.clientWidth;
    const h = this.canvas.clientHeight;
    if (!v || !w || !h) return null;
    const ppu = Math.min(w / v.w, h / v.h);
    const ox = (w - v.w * ppu) / 2 - v.x * ppu;
    const oy = (h - v.h * ppu) / 2 - v.y * ppu;
    return { w, h, ppu, ox, oy };
  }

  requestDraw() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this.draw();
    });
  }

  _palette() {
    if (!this._colours) {
      const cs = getComputedStyle(document.documentElement);
      const v = (name, fb) => cs.getPropertyValue(name).trim() || fb;
      this._colours = {
        critical: v("--critical", "#ff5a5a"), warning: v("--warning", "#ffb224"),
        info: v("--info", "#62b0ff"), online: v("--ok", "#3ddc84"),
        offline: v("--offline", "#8e9bab"), unknown: v("--unknown", "#5d6a79"),
        fg: v("--fg", "#f1f5f9"), bg: "#06090d", font: v("--font", "sans-serif"),
      };
    }
    return this._colours;
  }

  draw() {
    const t = this._screen();
    const c = this.canvas;
    if (!t) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(t.w * dpr) || c.height !== Math.round(t.h * dpr)) {
      c.width = Math.round(t.w * dpr);
      c.height = Math.round(t.h * dpr);
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, t.w, t.h);
    const col = this._palette();
    const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
    const r0 = (this.mr * rem) / 16;
    const groups = new Map(LAYERS.map((k) => [k, []]));
    const drawn = new Map();
    const hot = [];
    for (const m of this.markers.values()) {
      if (this.hiddenKinds.has(m.kind)) continue;
      const sx = t.ox + m.x * t.ppu;
      const sy = t.oy + m.y * t.ppu;
      const r = r0 * (SIZE[m.state] || 1);
      if (sx < -r || sy < -r || sx > t.w + r || sy > t.h + r) continue;
      groups.get(m.ack ? `${m.state}-ack` : m.state)?.push([sx, sy, r, m]);
      drawn.set(m.id, m.ack ? `${m.state}-ack` : m.state);
      if (m.state === "critical" || m.state === "warning" || m.state === "info") hot.push([sx, sy, r, m]);
    }
    for (const key of LAYERS) {
      const list = groups.get(key);
      if (!list.length) continue;
      const [state, ack] = key.split("-");
      ctx.beginPath();
      for (const [sx, sy, r] of list) {
        ctx.moveTo(sx + r, sy);
        ctx.arc(sx, sy, r, 0, 2 * Math.PI);
      }
      if (state === "offline") {
        ctx.fillStyle = col.bg;
        ctx.fill();
        ctx.lineWidth = Math.max(1.5, r0 * 0.4);
        ctx.strokeStyle = col.offline;
        ctx.stroke();
        continue;
      }
      ctx.globalAlpha = ack ? 0.45 : 1;
      ctx.fillStyle = col[state];
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.lineWidth = state === "critical" && !ack ? Math.max(1.5, r0 * 0.35) : 1;
      ctx.strokeStyle = ack ? col.fg : state === "critical" ? "#ffffff" : col.bg;
      if (ack) ctx.setLineDash([2, 2]);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    // the selected sensor: a white ring
    const sel = this.markers.get(this.selected);
    if (sel && !this.hiddenKinds.has(sel.kind)) {
      const sx = t.ox + sel.x * t.ppu;
      const sy = t.oy + sel.y * t.ppu;
      ctx.beginPath();
      ctx.arc(sx, sy, r0 * (SIZE[sel.state] || 1) + r0 * 0.9, 0, 2 * Math.PI);
      ctx.lineWidth = Math.max(2, r0 * 0.5);
      ctx.strokeStyle = col.fg;
      ctx.stroke();
    }
    // the sensors of the incident in view: an accent ring each
    if (this.highlighted?.size) {
      ctx.beginPath();
      for (const id of this.highlighted) {
        const m = this.markers.get(id);
        if (!m || this.hiddenKinds.has(m.kind)) continue;
        const sx = t.ox + m.x * t.ppu;
        const sy = t.oy + m.y * t.ppu;
        const r = r0 * (SIZE[m.state] || 1) + r0 * 1.4;
        ctx.moveTo(sx + r, sy);
        ctx.arc(sx, sy, r, 0, 2 * Math.PI);
      }
      ctx.lineWidth = Math.max(2, r0 * 0.45);
      ctx.strokeStyle = col.highlight || "#4dd0ff";
      ctx.stroke();
    }
    // a sensor that has just turned critical: a halo for a few seconds
    const now = performance.now();
    for (const [id, since] of this.flashing) {
      const m = this.markers.get(id);
      if (!m || now - since > FLASH_MS) {
        this.flashing.delete(id);
        continue;
      }
      ctx.beginPath();
      ctx.arc(t.ox + m.x * t.ppu, t.oy + m.y * t.ppu, r0 * 3.6, 0, 2 * Math.PI);
      ctx.lineWidth = Math.max(2, r0 * 0.5);
      ctx.strokeStyle = col.critical;
      ctx.stroke();
    }
    this._names(ctx, hot, col, rem);
    this.drawn = drawn;
    this.canvas.dataset.drawn = String(drawn.size);
  }

  /** Name the most urgent alerted sensors; a name never covers a more urgent one. */
  _names(ctx, hot, col, rem) {
    const rank = (m) => (m.id === this.selected ? 100 : 0)
      + (m.state === "critical" ? 6 : m.state === "warning" ? 4 : 2) + (m.ack ? 0 : 1);
    hot.sort((a, b) => rank(b[3]) - rank(a[3]));
    const px = Math.round(rem * 0.8);
    ctx.font = `700 ${px}px ${col.font}`;
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    ctx.lineJoin = "round";
    const kept = [];
    const places = this._placeLabels();
    for (const [sx, sy, r, m] of hot.slice(0, MAX_NAMES)) {
      const s = this.sensors.get(m.id);
      let name = s?.name || m.id;
      if (name.length > 28) name = `${name.slice(0, 27)}…`;
      const w = ctx.measureText(name).width;
      const box = { l: sx - w / 2 - 2, r: sx + w / 2 + 2, t: sy - r - 3 - px, b: sy - r - 1 };
      if (kept.some((k) => overlaps(box, k))) continue;
      kept.push(box);
      ctx.lineWidth = 4;
      ctx.strokeStyle = col.bg;
      ctx.strokeText(name, sx, sy - r - 2);
      ctx.fillStyle = m.ack ? "#b0bfd0" : { critical: "#ff9c9c", warning: "#ffd27a" }[m.state] || "#a9d2ff";
      ctx.fillText(name, sx, sy - r - 2);
    }
    // an alerted sensor's name matters more than a place name: the place name gives way
    for (const p of places) p.node.classList.toggle("covered", kept.some((k) => overlaps(p, k)));
    this.labelBoxes = [...kept, ...places.filter((p) => !p.node.classList.contains("covered"))]
      .map(({ l, r, t, b }) => ({ l, r, t, b }));
  }

  /** The outline's place names (districts, the river) shown in this view, in canvas px,
   * each hidden where it would overlap one shown before it. Measured once per view. */
  _placeLabels() {
    if (this.placeLabels) return this.placeLabels;
    const origin = this.canvas.getBoundingClientRect();
    const shown = [];
    for (const node of this.root.querySelectorAll(".labels text")) {
      node.classList.remove("clash");
      if (getComputedStyle(node).display === "none") continue;
      const b = node.getBoundingClientRect();
      if (!b.width) continue;
      const box = { l: b.left - origin.left, r: b.right - origin.left, t: b.top - origin.top, b: b.bottom - origin.top, node };
      if (shown.some((k) => overlaps(box, k))) node.classList.add("clash");
      else shown.push(box);
    }
    this.placeLabels = shown;
    return shown;
  }

  /** The marker under a point of the page (within a few pixels), or null. */
  markerAt(clientX, clientY) {
    const t = this._screen();
    if (!t) return null;
    const rect = this.canvas.getBoundingClientRect();
    const px = clientX - rect.left;
    const py = clientY - rect.top;
    const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
    const r0 = (this.mr * rem) / 16;
    let best = null;
    let bestD = Infinity;
    for (const m of this.markers.values()) {
      if (this.hiddenKinds.has(m.kind)) continue;
      const d = Math.hypot(t.ox + m.x * t.ppu - px, t.oy + m.y * t.ppu - py);
      const reach = r0 * (SIZE[m.state] || 1) + 4;
      // the most urgent of overlapping markers wins, then the nearest
      const score = d - (LAYERS.indexOf(m.ack ? `${m.state}-ack` : m.state) * 0.01);
      if (d <= reach && score < bestD) {
        best = m;
        bestD = score;
      }
    }
    return best;
  }

  /** Where a sensor's marker is on the page, or null (for tests, and to point at it). */
  screenPos(id) {
    const t = this._screen();
    const m = this.markers.get(id);
    if (!t || !m) return null;
    const rect = this.canvas.getBoundingClientRect();
    return { x: rect.left + t.ox + m.x * t.ppu, y: rect.top + t.oy + m.y * t.ppu };
  }

  _tip(m, clientX, clientY) {
    const tip = this.tooltip;
    if (!m) {
      tip.hidden = true;
      this.root.style.cursor = "";
      return;
    }
    const s = this.sensors.get(m.id);
    const w = this.worst.get(m.id);
    const lines = [
      `${s.name || s.id} (${s.id})`,
      `${KIND_LABELS[s.kind] || s.kind} · ${s.area || "—"}`,
      `${tr(`sensor.${s.status}.word`)}${s.last_seen_at ? ` · ${tr("sensor.last_reading", { age: fmtAge(s.last_seen_at) })}` : ""}`,
    ];
    if (w) lines.push(tr(w.status === "acknowledged" ? "map.tip.alert.ack" : "map.tip.alert", { severity: tr(`sev.${w.severity}`).toUpperCase() }));
    tip.textContent = lines.join("\n");
    tip.hidden = false;
    const box = this.root.getBoundingClientRect();
    const x = Math.min(clientX - box.left + 14, box.width - tip.offsetWidth - 4);
    tip.style.left = `${Math.max(4, x)}px`;
    tip.style.top = `${Math.max(4, clientY - box.top - tip.offsetHeight - 10)}px`;
    this.root.style.cursor = "pointer";
  }

  _toUser(clientX, clientY) {
    const ctm = this.root.getScreenCTM();
    if (!ctm) return [undefined, undefined];
    const p = new DOMPoint(clientX, clientY).matrixTransform(ctm.inverse());
    return [p.x, p.y];
  }

  _interact() {
    const r = this.root;
    r.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const [x, y] = this._toUser(ev.clientX, ev.clientY);
      this.zoom(ev.deltaY > 0 ? 1.2 : 1 / 1.2, x, y);
    }, { passive: false });
    let drag = null;
    r.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      drag = { x: ev.clientX, y: ev.clientY, moved: false, id: ev.pointerId };
    });
    r.addEventListener("pointermove", (ev) => {
      if (!drag) {
        this._tip(this.markerAt(ev.clientX, ev.clientY), ev.clientX, ev.clientY);
        return;
      }
      if (ev.pointerId !== drag.id) return;
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) {
        r.setPointerCapture(ev.pointerId);
        this._tip(null);
      }
      drag.moved = true;
      const [ux0, uy0] = this._toUser(drag.x, drag.y);
      const [ux1, uy1] = this._toUser(ev.clientX, ev.clientY);
      drag.x = ev.clientX;
      drag.y = ev.clientY;
      this.pan(ux0 - ux1, uy0 - uy1);
    });
    r.addEventListener("pointerleave", () => this._tip(null));
    r.addEventListener("pointerup", (ev) => {
      if (!drag || ev.pointerId !== drag.id) return;
      const { moved } = drag;
      drag = null;
      if (!moved) {
        const m = this.markerAt(ev.clientX, ev.clientY);
        if (m) this.onSelect(m.id);
      }
    });
    r.addEventListener("pointercancel", () => {
      drag = null;
    });
    r.addEventListener("keydown", (ev) => {
      const step = this.view ? this.view.w / 10 : 0;
      const keys = {
        ArrowLeft: () => this.pan(-step, 0), ArrowRight: () => this.pan(step, 0),
        ArrowUp: () => this.pan(0, -step), ArrowDown: () => this.pan(0, step),
        "+": () => this.zoom(1 / 1.3), "=": () => this.zoom(1 / 1.3), "-": () => this.zoom(1.3),
        "0": () => this.fit(),
      };
      if (keys[ev.key]) {
        ev.preventDefault();
        keys[ev.key]();
      }
    });
  }
}
