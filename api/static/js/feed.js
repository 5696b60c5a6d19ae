// The live alert feed: cards with severity (colour, shape and word), acknowledge and resolve.

import {
  CLASS_LABELS, SEVERITY_ICON, SEVERITY_RANK, fmtAge, fmtFull, fmtNum, fmtTime, metricLabel,
  toDate, withUnit,
} from "./fmt.js";
import { t } from "./i18n.js";

const MAX_CARDS = 200;
const FRESH_MS = 8000;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export { el };

function byPriority(a, b) {
  const s = (a.status === "open" ? 0 : 1) - (b.status === "open" ? 0 : 1);
  if (s) return s;
  const r = (SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0);
  if (r) return r;
  return (toDate(b.opened_at)?.getTime() ?? 0) - (toDate(a.opened_at)?.getTime() ?? 0) || b.id - a.id;
}

function byNewest(a, b) {
  return (toDate(b.opened_at)?.getTime() ?? 0) - (toDate(a.opened_at)?.getTime() ?? 0) || b.id - a.id;
}

export class Feed {
  /**
   * @param root the <ol> that holds the cards
   * @param store an AlertStore
   * @param opts {canAct, sensorName(id), onAck(alert), onResolve(alert), onSelect(alert),
   *              onDetails(alert, container), announce(text, urgent)}
   */
  constructor(root, store, opts) {
    this.root = root;
    this.store = store;
    this.opts = opts;
    this.sort = "priority";
    this.severities = new Set(["critical", "warning", "info"]);
    this.showAcknowledged = true;
    this.text = "";
    this.nodes = new Map(); // id -> <li>
    this.busy = new Set();
    this.expanded = new Set();
    this.selectedSensor = null;
    this.hiddenCount = 0;
    this.shownCount = 0;
  }

  setCanAct(canAct) {
    this.opts.canAct = canAct;
    for (const node of this.nodes.values()) node.remove();
    this.nodes.clear();
    this.render();
  }

  visible() {
    const text = this.text.trim().toLowerCase();
    const list = this.store.active().concat(
      [...this.store.alerts.values()].filter((a) => a.status === "resolved"),
    );
    return list.filter((a) => {
      if (a.status === "acknowledged" && !this.showAcknowledged) return false;
      if (a.shelved_until && Date.parse(a.shelved_until) > Date.now()) return false; // shelved
      if (!this.severities.has(a.severity)) return false;
      if (text) {
        const hay = `${a.message} ${a.sensor} ${this.opts.sensorName(a.sensor)} ${a.area} ${a.metric} ${a.kind}`;
        if (!hay.toLowerCase().includes(text)) return false;
      }
      return true;
    });
  }

  render() {
    const list = this.visible().sort(this.sort === "newest" ? byNewest : byPriority);
    const shown = list.slice(0, MAX_CARDS);
    this.shownCount = shown.length;
    this.hiddenCount = list.length - shown.length;
    const keep = new Set(shown.map((a) => a.id));
    for (const [id, node] of this.nodes) {
      if (!keep.has(id)) {
        node.remove();
        this.nodes.delete(id);
      }
    }
    let prev = null;
    for (const a of shown) {
      const node = this._card(a);
      const want = prev ? prev.nextSibling : this.root.firstChild;
      if (want !== node) this.root.insertBefore(node, want);
      prev = node;
    }
    return { shown: this.shownCount, hidden: this.hiddenCount };
  }

  /** Refresh the relative ages ("5 min ago") without rebuilding cards. */
  tick() {
    const now = Date.now();
    for (const node of this.nodes.values()) {
      const age = node.querySelector(".a-age");
      const text = age ? fmtAge(age.dataset.t, now) : "";
      if (age && age.textContent !== text) age.textContent = text; // no layout when unchanged
      if (node.classList.contains("fresh") && now - Number(node.dataset.freshAt) > FRESH_MS) {
        node.classList.remove("fresh");
      }
    }
  }

  _signature(a) {
    const info = this.store.info.get(a.id) || {};
    return [
      a.status, a.severity, a.message, a.value, a.occurrences, a.updated_at, a.acknowledged_by,
      a.resolved_by, this.busy.has(a.id), this.expanded.has(a.id), this.selectedSensor === a.sensor,
      info.action, info.actor,
    ].join("|");
  }

  _card(a) {
    const sig = this._signature(a);
    let node = this.nodes.get(a.id);
    if (node && node.dataset.sig === sig) return node;
    const fresh = node?.classList.contains("fresh");
    const details = node?.querySelector(".a-details");
    const next = this._build(a);
    next.dataset.sig = sig;
    const info = this.store.info.get(a.id);
    if (info?.fresh && Date.now() - info.at < FRESH_MS) {
      next.classList.add("fresh");
      next.dataset.freshAt = String(info.at);
    } else if (fresh) {
      next.classList.add("fresh");
      next.dataset.freshAt = node.dataset.freshAt;
    }
    if (details && !details.hidden && this.expanded.has(a.id)) {
      next.querySelector(".a-details").replaceWith(details);
    }
    if (node) {
      const active = document.activeElement;
      const focused = node.contains(active) ? active.dataset.act || "" : null;
      node.replaceWith(next);
      if (focused !== null) {
        (next.querySelector(`[data-act="${focused}"]`) || next.querySelector("button"))?.focus();
      }
    }
    this.nodes.set(a.id, next);
    return next;
  }

  _build(a) {
    const name = this.opts.sensorName(a.sensor);
    const sevWord = t(`sev.${a.severity}`).toUpperCase();
    const title = t("feed.card.title", { severity: sevWord, id: a.id, message: a.message });
    const value = a.value !== null && a.value !== undefined ? withUnit(a.value, a.metric) : null;
    const lo = Number.isFinite(a.expected_low) ? fmtNum(a.expected_low) : null;
    const hi = Number.isFinite(a.expected_high) ? fmtNum(a.expected_high) : null;
    const range = lo && hi ? t("feed.expected.range", { lo, hi }) : hi ? t("feed.expected.high", { hi })
      : lo ? t("feed.expected.low", { lo }) : null;
    let status;
    if (a.status === "acknowledged") {
      status = el("span", { class: "a-status st-ack", title: fmtFull(a.acknowledged_at) },
        t("feed.acknowledged_by", { who: a.acknowledged_by || "?", time: fmtTime(a.acknowledged_at) }));
    } else if (a.status === "resolved") {
      status = el("span", { class: "a-status st-resolved", title: fmtFull(a.resolved_at) },
        t("feed.resolved_by", { who: a.resolved_by || t("feed.system"), time: fmtTime(a.resolved_at) }));
    } else {
      status = el("span", { class: "a-status st-open" }, t("feed.open"));
    }
    const actions = el("div", { class: "a-actions" });
    const busy = this.busy.has(a.id);
    if (this.opts.canAct && a.status === "open") {
      actions.append(el("button", {
        type: "button", class: "btn btn-ack", "data-act": "ack", disabled: busy,
        "aria-label": `${t("feed.acknowledge")}: ${title}`,
        onclick: () => this.opts.onAck(a),
      }, t("feed.acknowledge")));
    }
    if (this.opts.canAct && a.status !== "resolved") {
      actions.append(el("button", {
        type: "button", class: "btn btn-resolve", "data-act": "resolve", disabled: busy,
        "aria-label": `${t("feed.resolve")}: ${title}`,
        onclick: () => this.opts.onResolve(a),
      }, t("feed.resolve")));
    }
    actions.append(el("button", {
      type: "button", class: "btn btn-chart", "data-act": "chart", "aria-label": t("feed.chart.label", { name }),
      "aria-pressed": this.selectedSensor === a.sensor ? "true" : "false",
      onclick: () => this.opts.onSelect(a),
    }, t("feed.chart")));
    actions.append(el("button", {
      type: "button", class: "btn btn-more", "data-act": "more", "aria-expanded": this.expanded.has(a.id) ? "true" : "false",
      "aria-controls": `details-${a.id}`, "aria-label": t("feed.more.label", { action: t(this.expanded.has(a.id) ? "feed.less" : "feed.more"), title }),
      onclick: () => this._toggle(a),
    }, t(this.expanded.has(a.id) ? "feed.less" : "feed.more")));

    const openedAt = toDate(a.opened_at);
    const node = el("li", {
      class: `alert sev-${a.severity} status-${a.status}${this.selectedSensor === a.sensor ? " selected" : ""}`,
      "data-alert-id": String(a.id), "data-sensor": a.sensor, "data-status": a.status,
      "aria-label": title,
    },
      el("div", { class: "sev-badge", title: t("feed.severity", { severity: t(`sev.${a.severity}`) }) },
        el("span", { class: "sev-icon", "aria-hidden": "true" }, SEVERITY_ICON[a.severity] || "●"),
        el("span", { class: "sev-word" }, sevWord)),
      el("div", { class: "a-main" },
        el("p", { class: "a-msg" }, a.message),
        el("p", { class: "a-meta" },
          el("span", { class: "a-sensor", title: a.sensor }, name === a.sensor ? a.sensor : `${name} (${a.sensor})`),
          a.area ? el("span", { class: "a-area" }, a.area) : null,
          el("span", { class: "a-metric" }, metricLabel(a.metric)),
          el("span", { class: `a-class cls-${a.alert_class}` }, CLASS_LABELS[a.alert_class] || a.alert_class)),
        el("p", { class: "a-values" },
          status,
          value ? el("span", {}, t("feed.value", { value })) : null,
          range ? el("span", {}, range) : null,
          a.occurrences > 1 ? el("span", { title: t("feed.occurrences") }, `×${a.occurrences}`) : null)),
      el("div", { class: "a-time" },
        el("time", { datetime: a.opened_at, title: fmtFull(a.opened_at), class: "a-opened" }, fmtTime(openedAt)),
        el("span", { class: "a-age", "data-t": a.opened_at }, fmtAge(openedAt))),
      actions,
      el("div", { class: "a-details", id: `details-${a.id}`, hidden: !this.expanded.has(a.id) }),
    );
    return node;
  }

  _toggle(a) {
    if (this.expanded.has(a.id)) this.expanded.delete(a.id);
    else this.expanded.add(a.id);
    this.render();
    const node = this.nodes.get(a.id);
    if (node && this.expanded.has(a.id)) {
      node.querySelector(".btn-more")?.focus();
      this.opts.onDetails(a, node.querySelector(".a-details"));
    }
  }
}
