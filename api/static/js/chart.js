// The readings chart: a hand-drawn canvas line of one metric with its alerts marked.

import { t as tr } from "./i18n.js";
import {
  SEVERITY_ICON, TZ_OFFSET_MS, fmtClock, fmtDay, fmtFull, fmtHM, fmtNum, metricLabel, toDate,
  withUnit,
} from "./fmt.js";

const TIME_STEPS = [
  60e3, 2 * 60e3, 5 * 60e3, 10 * 60e3, 15 * 60e3, 30 * 60e3, 3600e3, 2 * 3600e3, 3 * 3600e3,
  6 * 3600e3, 12 * 3600e3, 86400e3, 2 * 86400e3,
];

function niceStep(span, target) {
  const raw = span / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function cssVar(el, name, fallback) {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v || fallback;
}

export class Chart {
  constructor(canvas, tooltip) {
    this.canvas = canvas;
    this.tooltip = tooltip;
    this.points = []; // {t, v, lo?, hi?}
    this.alerts = [];
    this.metric = "";
    this.start = Date.now() - 3600e3;
    this.end = Date.now();
    this.live = true;
    this.bucketed = false;
    this.message = tr("chart.select.feed");
    this.hover = null;
    this._frame = 0;
    new ResizeObserver(() => this.draw()).observe(canvas);
    canvas.addEventListener("pointermove", (ev) => this._hover(ev));
    canvas.addEventListener("pointerleave", () => {
      this.hover = null;
      this.tooltip.hidden = true;
      this.requestDraw();
    });
  }

  setData({ points, alerts, metric, start, end, live, bucketed, message }) {
    this.points = points.slice().sort((a, b) => a.t - b.t);
    this.alerts = alerts || [];
    this.metric = metric;
    this.start = start;
    this.end = end;
    this.live = live;
    this.bucketed = !!bucketed;
    this.message = message || "";
    this.requestDraw();
  }

  clear(message) {
    this.points = [];
    this.alerts = [];
    this.metric = "";
    this.message = message;
    this.requestDraw();
  }

  /** Add a live reading; the window slides so that it always ends now. */
  append(t, v) {
    if (!this.live || !this.metric) return;
    const last = this.points[this.points.length - 1];
    if (last && t <= last.t) {
      if (t === last.t) last.v = v;
      else {
        this.points.push({ t, v });
        this.points.sort((a, b) => a.t - b.t);
      }
    } else {
      this.points.push({ t, v });
    }
    this.slide(Math.max(Date.now(), t));
  }

  slide(now = Date.now()) {
    if (!this.live) return;
    const span = this.end - this.start;
    this.end = now;
    this.start = now - span;
    let drop = 0;
    while (drop < this.points.length && this.points[drop].t < this.start) drop += 1;
    if (drop) this.points.splice(0, drop);
    this.requestDraw();
  }

  upsertAlert(alert) {
    const i = this.alerts.findIndex((a) => a.id === alert.id);
    if (i >= 0) this.alerts[i] = alert;
    else this.alerts.push(alert);
    this.requestDraw();
  }

  requestDraw() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this.draw();
    });
  }

  _layout(ctx, w, h, lo, hi) {
    ctx.font = `${this.fontPx}px ${this.font}`;
    const yStep = niceStep(hi - lo, Math.max(3, Math.floor(h / (this.fontPx * 4))));
    const yTicks = [];
    for (let i = Math.ceil(lo / yStep); i * yStep <= hi + 1e-9; i += 1) yTicks.push(i * yStep);
    const labelW = Math.max(...yTicks.map((v) => ctx.measureText(fmtNum(v)).width), 20);
    const pad = {
      l: labelW + this.fontPx, r: this.fontPx * 1.5,
      t: this.fontPx * 2.4, b: this.fontPx * 2.4,
    };
    return { pad, yTicks, plotW: w - pad.l - pad.r, plotH: h - pad.t - pad.b };
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth;
    const h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const fontSize = parseFloat(getComputedStyle(c).fontSize) || 14;
    this.fontPx = Math.round(fontSize * 0.85);
    this.font = cssVar(c, "--font", "system-ui, sans-serif");
    const col = {
      fg: cssVar(c, "--fg", "#e8eef5"), muted: cssVar(c, "--muted", "#9fb0c3"),
      grid: cssVar(c, "--grid", "#243140"), line: cssVar(c, "--line", "#5ec8ff"),
      band: cssVar(c, "--band", "rgba(94,200,255,0.18)"),
      critical: cssVar(c, "--critical", "#ff5c5c"), warning: cssVar(c, "--warning", "#ffb020"),
      info: cssVar(c, "--info", "#4aa8ff"), expected: cssVar(c, "--expected", "#c3a6ff"),
    };
    this.canvas.dataset.points = String(this.points.length);
    const metricAlerts = this.alerts;
    this.canvas.dataset.alerts = String(metricAlerts.length);
    if (!this.metric || !this.points.length) {
      ctx.fillStyle = col.muted;
      ctx.font = `${Math.round(fontSize * 1.05)}px ${this.font}`;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(this.metric ? this.message || tr("chart.empty") : this.message, w / 2, h / 2);
      if (!this.metric) return;
    }

    // value range: readings, min/max bands, alert values and expected bounds of this metric
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of this.points) {
      lo = Math.min(lo, p.lo ?? p.v, p.v);
      hi = Math.max(hi, p.hi ?? p.v, p.v);
    }
    for (const a of metricAlerts) {
      if (a.metric !== this.metric) continue;
      for (const v of [a.value, a.expected_low, a.expected_high]) {
        if (Number.isFinite(v)) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
    }
    if (!Number.isFinite(lo)) {
      lo = 0;
      hi = 1;
    }
    if (hi - lo < 1e-9) {
      lo -= 1;
      hi += 1;
    }
    const margin = (hi - lo) * 0.08;
    lo -= margin;
    hi += margin;
    const { pad, yTicks, plotW, plotH } = this._layout(ctx, w, h, lo, hi);
    const X = (t) => pad.l + ((t - this.start) / (this.end - this.start)) * plotW;
    const Y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * plotH;
    this._geom = { X, Y, pad, plotW, plotH };

    // grid and axes
    ctx.lineWidth = 1;
    ctx.strokeStyle = col.grid;
    ctx.fillStyle = col.muted;
    ctx.font = `${this.fontPx}px ${this.font}`;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const v of yTicks) {
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.l, y);
      ctx.lineTo(pad.l + plotW, y);
      ctx.stroke();
      ctx.fillText(fmtNum(v), pad.l - this.fontPx * 0.5, y);
    }
    const span = this.end - this.start;
    const labelPx = ctx.measureText("00:00").width * 1.8;
    const step = TIME_STEPS.find((s) => (s / span) * plotW >= labelPx) || TIME_STEPS[TIME_STEPS.length - 1];
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const first = Math.ceil((this.start + TZ_OFFSET_MS) / step) * step - TZ_OFFSET_MS;
    for (let t = first; t <= this.end; t += step) {
      const x = Math.round(X(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, pad.t);
      ctx.lineTo(x, pad.t + plotH);
      ctx.stroke();
      const d = new Date(t);
      const midnight = (t + TZ_OFFSET_MS) % 86400e3 === 0;
      ctx.fillText(step >= 86400e3 || midnight ? fmtDay(d) : fmtHM(d), x, pad.t + plotH + this.fontPx * 0.5);
    }
    ctx.textAlign = "left";
    ctx.fillText(tr("chart.axis_time"), pad.l, pad.t + plotH + this.fontPx * 1.5);

    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.l, pad.t - 2, plotW, plotH + 4);
    ctx.clip();

    // alert spans (open to resolved, or to now)
    for (const a of metricAlerts) {
      const t0 = toDate(a.opened_at)?.getTime();
      if (!Number.isFinite(t0)) continue;
      const t1 = toDate(a.resolved_at)?.getTime() ?? this.end;
      ctx.globalAlpha = a.metric === this.metric ? 0.16 : 0.07;
      ctx.fillStyle = col[a.severity] || col.info;
      ctx.fillRect(X(t0), pad.t, Math.max(2, X(t1) - X(t0)), plotH);
      ctx.globalAlpha = 1;
    }

    // expected range of the newest alert of this metric that states one
    const withRange = metricAlerts
      .filter((a) => a.metric === this.metric && (Number.isFinite(a.expected_low) || Number.isFinite(a.expected_high)))
      .sort((a, b) => toDate(b.opened_at) - toDate(a.opened_at))[0];
    if (withRange) {
      ctx.setLineDash([6, 5]);
      ctx.strokeStyle = col.expected;
      ctx.lineWidth = 1.5;
      for (const v of [withRange.expected_low, withRange.expected_high]) {
        if (!Number.isFinite(v)) continue;
        ctx.beginPath();
        ctx.moveTo(pad.l, Y(v));
        ctx.lineTo(pad.l + plotW, Y(v));
        ctx.stroke();
      }
      ctx.setLineDash([]);
    }

    // min-max band of bucketed data
    if (this.bucketed && this.points.length) {
      ctx.fillStyle = col.band;
      ctx.beginPath();
      this.points.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(p.t), Y(p.hi ?? p.v)));
      for (let i = this.points.length - 1; i >= 0; i -= 1) ctx.lineTo(X(this.points[i].t), Y(this.points[i].lo ?? this.points[i].v));
      ctx.closePath();
      ctx.fill();
    }

    // the line, broken where readings are missing (gap > 5 x the median interval)
    const gaps = [];
    for (let i = 1; i < this.points.length; i += 1) gaps.push(this.points[i].t - this.points[i - 1].t);
    gaps.sort((a, b) => a - b);
    const median = gaps.length ? gaps[Math.floor(gaps.length / 2)] : Infinity;
    ctx.strokeStyle = col.line;
    ctx.lineWidth = Math.max(2, this.fontPx / 7);
    ctx.lineJoin = "round";
    ctx.beginPath();
    let prev = null;
    for (const p of this.points) {
      if (prev && p.t - prev.t > median * 5) ctx.moveTo(X(p.t), Y(p.v));
      else if (prev) ctx.lineTo(X(p.t), Y(p.v));
      else ctx.moveTo(X(p.t), Y(p.v));
      prev = p;
    }
    ctx.stroke();
    if (this.points.length <= 3) {
      ctx.fillStyle = col.line;
      for (const p of this.points) {
        ctx.beginPath();
        ctx.arc(X(p.t), Y(p.v), 3.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }

    // alert markers: a line at the opening, the value that opened it, a shape + word on top
    ctx.restore();
    ctx.font = `600 ${this.fontPx}px ${this.font}`;
    ctx.textBaseline = "bottom";
    // labels never overlap: a full label where it fits, else the shape alone, else nothing
    // (the line still marks the alert); their boxes are kept for the layout tests
    let lastLabelX = -Infinity;
    this.labelBoxes = [];
    const labelY = pad.t - this.fontPx * 0.3;
    const sorted = metricAlerts.slice().sort((a, b) => toDate(a.opened_at) - toDate(b.opened_at));
    for (const a of sorted) {
      const t0 = toDate(a.opened_at)?.getTime();
      if (!Number.isFinite(t0) || t0 < this.start || t0 > this.end) continue;
      const x = Math.round(X(t0)) + 0.5;
      const colr = col[a.severity] || col.info;
      ctx.strokeStyle = colr;
      ctx.globalAlpha = a.metric === this.metric ? 1 : 0.5;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x, pad.t);
      ctx.lineTo(x, pad.t + plotH);
      ctx.stroke();
      if (a.metric === this.metric && Number.isFinite(a.value)) {
        ctx.beginPath();
        ctx.arc(x, Y(a.value), 6, 0, 2 * Math.PI);
        ctx.lineWidth = 3;
        ctx.stroke();
      }
      ctx.fillStyle = colr;
      ctx.textAlign = "center";
      const label = `${SEVERITY_ICON[a.severity] || "●"} ${tr(`sev.${a.severity}`).toUpperCase()}${a.metric === this.metric ? "" : ` (${metricLabel(a.metric)})`}`;
      const lw = ctx.measureText(label).width;
      const lx = Math.min(Math.max(x, pad.l + lw / 2), pad.l + plotW - lw / 2);
      const icon = SEVERITY_ICON[a.severity] || "●";
      const iw = ctx.measureText(icon).width;
      if (lx - lw / 2 > lastLabelX + 4) {
        ctx.fillText(label, lx, labelY);
        lastLabelX = lx + lw / 2;
        this.labelBoxes.push({ l: lx - lw / 2, r: lx + lw / 2, t: labelY - this.fontPx, b: labelY });
      } else if (x - iw / 2 > lastLabelX + 2) {
        ctx.fillText(icon, x, labelY);
        lastLabelX = x + iw / 2;
        this.labelBoxes.push({ l: x - iw / 2, r: x + iw / 2, t: labelY - this.fontPx, b: labelY });
      }
      ctx.globalAlpha = 1;
    }

    // the newest value, large
    const last = this.points[this.points.length - 1];
    if (last) {
      ctx.fillStyle = col.line;
      ctx.beginPath();
      ctx.arc(X(last.t), Y(last.v), 4.5, 0, 2 * Math.PI);
      ctx.fill();
    }

    // hover crosshair
    if (this.hover && this.points.length) {
      const p = this.hover.point;
      ctx.strokeStyle = col.fg;
      ctx.lineWidth = 1;
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(X(p.t), pad.t);
      ctx.lineTo(X(p.t), pad.t + plotH);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = col.fg;
      ctx.beginPath();
      ctx.arc(X(p.t), Y(p.v), 5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  _hover(ev) {
    const g = this._geom;
    if (!g || !this.points.length) return;
    const rect = this.canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left;
    const t = this.start + ((x - g.pad.l) / g.plotW) * (this.end - this.start);
    let best = this.points[0];
    for (const p of this.points) if (Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
    this.hover = { point: best };
    const near = this.alerts.find((a) => {
      const t0 = toDate(a.opened_at)?.getTime();
      return Number.isFinite(t0) && Math.abs(g.X(t0) - x) < 8;
    });
    let text = `${fmtClock(new Date(best.t))} · ${withUnit(best.v, this.metric)}`;
    if (this.bucketed && Number.isFinite(best.lo)) {
      text += ` (min ${fmtNum(best.lo)}, max ${fmtNum(best.hi)})`;
    }
    if (near) text += `\n${tr(`sev.${near.severity}`).toUpperCase()}: ${near.message} (${fmtFull(near.opened_at)})`;
    this.tooltip.textContent = text;
    this.tooltip.hidden = false;
    const tipX = Math.min(x + 14, rect.width - this.tooltip.offsetWidth - 4);
    this.tooltip.style.left = `${Math.max(4, tipX)}px`;
    this.tooltip.style.top = `${Math.max(4, ev.clientY - rect.top - this.tooltip.offsetHeight - 12)}px`;
    this.requestDraw();
  }

  /** A sentence for screen readers. */
  summary(sensorName) {
    if (!this.metric || !this.points.length) return this.message || tr("chart.no_data");
    const vals = this.points.map((p) => p.v);
    const last = this.points[this.points.length - 1];
    return tr("chart.summary", {
      metric: metricLabel(this.metric), sensor: sensorName, latest: withUnit(last.v, this.metric),
      time: fmtClock(new Date(last.t)), min: fmtNum(Math.min(...vals)), max: fmtNum(Math.max(...vals)),
      alerts: this.alerts.length,
    });
  }
}
