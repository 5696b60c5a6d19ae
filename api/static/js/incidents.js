// The incident board: one card per open or acknowledged incident (related alerts grouped by
// the correlator), in the page's language; a card expands to its alerts, and the map
// rings its sensors while it is expanded or under the pointer.

import { el } from "./feed.js";
import { SEVERITY_ICON, SEVERITY_RANK, fmtAge, fmtNum, fmtTime, toDate } from "./fmt.js";
import { LANG, t as tr } from "./i18n.js";

const MAX_CARDS = 100;

// texts people read, in the page's language (i18n.json, incident.*)
export const INCIDENT_TEXTS = {
  severity: (sev) => tr(`sev.${sev}`),
  status: (st) => tr(`status.${st}`),
  acknowledge: () => tr("incident.acknowledge"),
  resolve: () => tr("incident.resolve"),
  confirm: () => tr("incident.confirm"),
  showAlerts: () => tr("incident.show_alerts"),
  hideAlerts: () => tr("incident.hide_alerts"),
  alerts: (n) => tr(n === 1 ? "incident.alerts.one" : "incident.alerts", { n: fmtNum(n) }),
  sensors: (n) => tr(n === 1 ? "incident.sensors.one" : "incident.sensors", { n: fmtNum(n) }),
  none: () => tr("incident.none"),
  shelve: () => tr("incident.shelve"),
  unshelve: () => tr("incident.unshelve"),
  shelved: (n) => tr("incident.shelved", { n: fmtNum(n) }),
  until: (t) => tr("incident.until", { time: t }),
  load: (l) => tr("incident.load", {
    incidents: fmtNum(l.incidents.new), alerts: fmtNum(l.alerts.new), peak: fmtNum(l.alerts.peak_10min),
  }),
  loadMore: (l) => tr("incident.load.more", {
    chattering: fmtNum(l.alerts.chattering), standing: fmtNum(l.alerts.standing),
  }),
  maintenance: (n, s) => tr("incident.maintenance", { n: fmtNum(n), sensors: fmtNum(s) }),
  window: (w) => tr("incident.maintenance.window", {
    what: [...w.sensors, ...w.areas, ...w.kinds].join(", "), start: fmtTime(w.starts_at),
    end: fmtTime(w.ends_at), reason: w.reason, who: w.created_by,
  }),
  loading: () => tr("incident.loading"),
  by: (who) => tr("incident.by", { who }),
};

/** The incident's title in the page's language (the correlator writes both). */
export const incidentTitle = (inc) => (LANG === "vi" && inc.title_vi ? inc.title_vi : inc.title);

function byPriority(a, b) {
  const s = (a.status === "open" ? 0 : 1) - (b.status === "open" ? 0 : 1);
  if (s) return s;
  const r = (SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0);
  if (r) return r;
  return (toDate(b.last_seen)?.getTime() ?? 0) - (toDate(a.last_seen)?.getTime() ?? 0) || b.id - a.id;
}

export const isShelved = (x, now = Date.now()) =>
  !!x.shelved_until && Date.parse(x.shelved_until) > now;

export class IncidentBoard {
  /**
   * @param root the <ol> that holds the cards
   * @param opts {api(), canAct, onHighlight(sensorIds|null), onAck(incident), onResolve(incident),
   *              sensorName(id)}
   */
  constructor(root, opts) {
    this.root = root;
    this.opts = opts;
    this.canAct = !!opts.canAct;
    this.items = new Map(); // id -> incident
    this.expanded = new Set();
    this.busy = new Set();
    this.details = new Map(); // id -> member alerts
    this.hover = null;
    this.shelfOpen = false;
  }

  setCanAct(v) {
    this.canAct = v;
    this.render();
  }

  load(items) {
    this.items = new Map(items.filter((i) => i.status !== "resolved").map((i) => [i.id, i]));
    this.render();
  }

  /** A websocket ``incident`` event (or the answer to an action). */
  apply(inc) {
    if (inc.status === "resolved") {
      this.items.delete(inc.id);
      this.expanded.delete(inc.id);
    } else {
      const known = this.items.get(inc.id);
      if (known && (toDate(known.updated_at)?.getTime() ?? 0) > (toDate(inc.updated_at)?.getTime() ?? 0)
          && known.status === inc.status && known.alert_count === inc.alert_count) return;
      this.items.set(inc.id, inc);
      if (this.expanded.has(inc.id)) this.fetchAlerts(inc.id);
    }
    this.render();
    this._highlight();
  }

  sorted() {
    const now = Date.now();
    return [...this.items.values()].filter((i) => !isShelved(i, now)).sort(byPriority)
      .slice(0, MAX_CARDS);
  }

  shelved() {
    const now = Date.now();
    return [...this.items.values()].filter((i) => isShelved(i, now)).sort(byPriority);
  }

  render() {
    const list = this.sorted();
    const shelved = this.shelved();
    const alerts = this.shelvedAlerts(shelved);
    this.root.dataset.count = String(list.length);
    this.root.dataset.shelved = String(shelved.length + alerts.length);
    const nodes = list.map((inc) => this._card(inc));
    if (!list.length) nodes.push(el("li", { class: "empty" }, INCIDENT_TEXTS.none()));
    if (shelved.length || alerts.length) nodes.push(this._shelf(shelved, alerts));
    this.root.replaceChildren(...nodes);
  }

  /** Alerts shelved on their own (not with a shelved incident's sensors), from the feed's store. */
  shelvedAlerts(incidents) {
    const covered = new Set(incidents.flatMap((i) => i.sensors));
    const now = Date.now();
    return (this.opts.alerts?.() || []).filter((a) => isShelved(a, now) && !covered.has(a.sensor));
  }

  /** What is shelved, until when and by whom: shown, not hidden away. */
  _shelf(shelved, alerts) {
    const t = INCIDENT_TEXTS;
    const items = shelved.map((inc) => el("li", { class: "i-shelved", "data-incident-id": String(inc.id) },
      el("span", {}, inc.title), " ",
      el("span", { class: "muted" }, t.until(fmtTime(inc.shelved_until))), " ",
      inc.shelved_by ? el("span", { class: "muted i-shelved-by" }, t.by(inc.shelved_by)) : null, " ",
      this.canAct ? el("button", {
        type: "button", class: "btn btn-small btn-unshelve", onclick: () => this.opts.onShelve(inc, 0),
      }, t.unshelve()) : null));
    for (const a of alerts) {
      items.push(el("li", { class: "i-shelved-alert", "data-alert-id": String(a.id) },
        el("b", {}, t.severity(a.severity)), " ", el("span", {}, a.message), " ",
        el("span", { class: "muted" }, t.until(fmtTime(a.shelved_until))), " ",
        a.shelved_by ? el("span", { class: "muted" }, t.by(a.shelved_by)) : null));
    }
    const details = el("details", { open: this.shelfOpen },
      el("summary", {}, t.shelved(shelved.length + alerts.length)), el("ol", {}, ...items));
    details.addEventListener("toggle", () => { this.shelfOpen = details.open; });
    return el("li", { class: "shelf" }, details); // stays open across renders
  }

  _card(inc) {
    const t = INCIDENT_TEXTS;
    const open = this.expanded.has(inc.id);
    const li = el("li", {
      class: `incident sev-${inc.severity} status-${inc.status}`,
      "data-incident-id": String(inc.id),
      "data-status": inc.status,
      onmouseenter: () => { this.hover = inc.id; this._highlight(); },
      onmouseleave: () => { this.hover = null; this._highlight(); },
    });
    li.append(
      el("div", { class: "sev-badge" },
        el("span", { class: "sev-icon", "aria-hidden": "true" }, SEVERITY_ICON[inc.severity] || "●"),
        el("span", {}, t.severity(inc.severity))),
      el("div", { class: "a-main" },
        el("div", { class: "a-msg i-title" }, incidentTitle(inc)),
        el("div", { class: "a-meta" },
          el("span", { class: `a-status st-${inc.status === "acknowledged" ? "ack" : inc.status}` },
            t.status(inc.status)),
          inc.status === "acknowledged" && inc.acknowledged_by
            ? el("span", {}, t.by(inc.acknowledged_by)) : null,
          el("span", {}, t.sensors(inc.sensors.length)),
          el("span", {}, t.alerts(inc.alert_count)),
          inc.areas.length ? el("span", {}, inc.areas.slice(0, 4).join(", ") + (inc.areas.length > 4 ? " …" : "")) : null)),
      el("div", { class: "a-time" },
        el("time", { class: "a-opened", datetime: inc.first_seen }, fmtTime(inc.first_seen)),
        el("span", { class: "a-age" }, fmtAge(inc.last_seen))),
    );
    const actions = el("div", { class: "a-actions" },
      el("button", {
        type: "button", class: "btn btn-small btn-expand", "aria-expanded": String(open),
        onclick: () => this.toggle(inc.id),
      }, open ? t.hideAlerts() : t.showAlerts()));
    if (this.canAct && inc.status === "open") {
      actions.append(el("button", {
        type: "button", class: "btn btn-small btn-ack", disabled: this.busy.has(inc.id),
        onclick: () => this.opts.onAck(inc),
      }, t.acknowledge()));
    }
    if (this.canAct) {
      actions.append(el("button", {
        type: "button", class: "btn btn-small btn-shelve", disabled: this.busy.has(inc.id),
        onclick: () => this.opts.onShelve(inc, 60),
      }, t.shelve()));
    }
    if (this.canAct) {
      const btn = el("button", {
        type: "button", class: "btn btn-small btn-resolve", disabled: this.busy.has(inc.id),
        onclick: () => {
          if (!btn.classList.contains("confirm")) { // two presses: it resolves all its alerts
            btn.classList.add("confirm");
            btn.textContent = t.confirm();
            setTimeout(() => { if (btn.isConnected) { btn.classList.remove("confirm"); btn.textContent = t.resolve(); } }, 4000);
            return;
          }
          this.opts.onResolve(inc);
        },
      }, t.resolve());
      actions.append(btn);
    }
    li.append(actions);
    if (open) li.append(this._members(inc.id));
    return li;
  }

  _members(id) {
    const box = el("div", { class: "a-details i-alerts" });
    const alerts = this.details.get(id);
    if (!alerts) {
      box.append(el("p", { class: "muted" }, INCIDENT_TEXTS.loading()));
      return box;
    }
    const ol = el("ol", { class: "i-alert-list" });
    for (const a of alerts) {
      ol.append(el("li", { class: `i-alert sev-${a.severity} status-${a.status}`, "data-alert-id": String(a.id) },
        el("b", {}, INCIDENT_TEXTS.severity(a.severity)), " ", a.message, " ",
        el("span", { class: "muted" }, `(${INCIDENT_TEXTS.status(a.status)}, ${fmtTime(a.opened_at)})`)));
    }
    box.append(ol);
    return box;
  }

  async toggle(id) {
    if (this.expanded.has(id)) this.expanded.delete(id);
    else {
      this.expanded.add(id);
      this.fetchAlerts(id);
    }
    this.render();
    this._highlight();
  }

  async fetchAlerts(id) {
    try {
      const detail = await this.opts.api().get(`/api/v1/incidents/${id}`);
      this.details.set(id, detail.alerts || []);
      if (detail.status !== "resolved") this.items.set(id, { ...this.items.get(id), ...detail });
    } catch {
      this.details.set(id, []);
    }
    if (this.expanded.has(id)) this.render();
  }

  /** The sensors to ring on the map: the card under the pointer, else the expanded ones. */
  _highlight() {
    const ids = new Set();
    const from = this.hover !== null ? [this.hover] : [...this.expanded];
    for (const id of from) for (const s of this.items.get(id)?.sensors || []) ids.add(s);
    this.opts.onHighlight(ids);
  }
}
