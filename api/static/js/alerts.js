// The alert store: open and acknowledged alerts, kept current by websocket events.

import { SEVERITY_RANK, toDate } from "./fmt.js";

const RESOLVED_LINGER_MS = 20000; // a resolved alert stays in view briefly, then goes
const STATUS_RANK = { open: 0, acknowledged: 1, resolved: 2 };

function stamp(alert) {
  const d = toDate(alert.updated_at) || toDate(alert.opened_at);
  return d ? d.getTime() : 0;
}

export class AlertStore {
  constructor() {
    this.alerts = new Map(); // id -> AlertPublic
    this.info = new Map(); // id -> {action, actor, seq, at, fresh}
    this.listeners = new Set();
    this.truncated = false;
    this._scheduled = false;
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  _changed(sensors) {
    for (const fn of this.listeners) fn(sensors);
  }

  /** Replace the content with a REST snapshot (items newest first). */
  load(items, truncated = false) {
    this.alerts.clear();
    this.info.clear();
    this.truncated = truncated;
    for (const a of items) {
      if (a.status === "resolved") continue;
      this.alerts.set(a.id, a);
      this.info.set(a.id, { action: null, actor: null, seq: null, at: 0, fresh: false });
    }
    this._changed(null);
  }

  /** Apply one websocket event; returns false when it is older than what we hold. */
  apply(ev) {
    const a = ev.alert;
    if (!a || a.id === undefined) return false;
    const cur = this.alerts.get(a.id);
    if (cur && ev.action !== "commented") {
      const older = stamp(a) < stamp(cur);
      const sameTimeBackwards =
        stamp(a) === stamp(cur) && STATUS_RANK[a.status] < STATUS_RANK[cur.status] &&
        ev.action !== "reopened";
      if (older || sameTimeBackwards) return false;
    }
    if (!cur && a.status === "resolved") return false; // never saw it open: nothing to show
    const fresh = ev.action === "opened" || ev.action === "escalated" || ev.action === "reopened";
    this.alerts.set(a.id, ev.action === "commented" && cur ? cur : a);
    this.info.set(a.id, {
      action: ev.action, actor: ev.actor, seq: ev.seq, at: Date.now(), fresh,
      note: ev.note ?? this.info.get(a.id)?.note,
    });
    if (a.status === "resolved") {
      setTimeout(() => {
        const now = this.alerts.get(a.id);
        if (now && now.status === "resolved") {
          this.alerts.delete(a.id);
          this.info.delete(a.id);
          this._changed(new Set([now.sensor]));
        }
      }, RESOLVED_LINGER_MS);
    }
    this._changed(new Set([a.sensor]));
    return true;
  }

  /** Replace one alert with the server's answer (after acknowledge / resolve). */
  put(alert, action, actor) {
    return this.apply({ type: "alert", action, actor, alert, seq: null });
  }

  get(id) {
    return this.alerts.get(id);
  }

  active() {
    return [...this.alerts.values()].filter((a) => a.status !== "resolved");
  }

  /** The worst severity of this sensor's open or acknowledged alerts, or null. */
  worstBySensor() {
    const out = new Map();
    for (const a of this.alerts.values()) {
      if (a.status === "resolved") continue;
      const prev = out.get(a.sensor);
      const rank = SEVERITY_RANK[a.severity] ?? 0;
      // an alert nobody has acknowledged yet outranks an acknowledged one of the same level
      const score = rank * 2 + (a.status === "open" ? 1 : 0);
      if (!prev || score > prev.score) out.set(a.sensor, { severity: a.severity, status: a.status, score });
    }
    return out;
  }

  counts() {
    const c = { critical: 0, warning: 0, info: 0, acknowledged: 0, open: 0 };
    for (const a of this.alerts.values()) {
      if (a.status === "open") {
        c.open += 1;
        c[a.severity] = (c[a.severity] || 0) + 1;
      } else if (a.status === "acknowledged") {
        c.acknowledged += 1;
      }
    }
    return c;
  }
}
