// The dashboard's entry point: log-in, the live alert stream, the map and the chart.

import { AlertStore } from "./js/alerts.js";
import { Api, ApiError, ROLE_CAN_ACT, ROLE_READS_DEAD_LETTERS, adoptTokenFromUrl, storeToken, storedToken, wsProtocols, wsUrl } from "./js/api.js";
import { Chart } from "./js/chart.js";
import { Feed, el } from "./js/feed.js";
import {
  KIND_LABELS, UNITS, fmtAge, fmtClock, fmtDateLong, fmtFull, fmtNum, fmtTime, metricLabel,
  toDate, translateLabels,
} from "./js/fmt.js";
import { LANG, LOCALE, has, loadMessages, switchLanguage, t, translatePage } from "./js/i18n.js";
import { AlertStream, LiveSocket } from "./js/live.js";
import { DEFAULT_BOUNDS } from "./js/hanoi.js";
import { DeadLetterPanel } from "./js/deadletters.js";
import { INCIDENT_TEXTS, IncidentBoard, incidentTitle, isShelved } from "./js/incidents.js";
import { SensorMap } from "./js/map.js";

const $ = (id) => document.getElementById(id);
const SENSOR_REFRESH_MS = 60000;
const TEXT_SIZES = [1, 1.2, 1.45, 0.9];
const TEXT_SIZE_NAMES = ["size.normal", "size.large", "size.larger", "size.small"];

const state = {
  api: null,
  me: null,
  canAct: false,
  sensors: new Map(),
  store: new AlertStore(),
  feed: null,
  map: null,
  chart: null,
  stream: null,
  readings: null,
  ready: false,
  pending: [],
  sensor: null,
  metric: null,
  chartReq: 0,
  latest: new Map(), // metric -> {time, value}
  conn: { state: "stopped", info: {} },
  lastEventAt: null,
  lastHeartbeatAt: null,
  timers: [],
  timings: {}, // performance.now() marks of the start-up: me, data, drawn
  session: 0, // a log-in; bumped by log-out
};

/* ---------- notices ---------- */

function toast(text, bad = false) {
  const node = el("div", { class: `toast${bad ? " bad" : ""}` }, text);
  $("toasts").append(node);
  setTimeout(() => node.remove(), bad ? 8000 : 4000);
}

// Screen-reader announcements of new alerts, gathered so that a burst is one sentence.
const spoken = { queue: [], timer: 0 };

function announce(text) {
  spoken.queue.push(text);
  if (spoken.timer) return;
  spoken.timer = setTimeout(() => {
    const items = spoken.queue.splice(0);
    spoken.timer = 0;
    $("announcer").textContent = items.length <= 3
      ? items.join(". ")
      : t("announce.many", { n: items.length, first: items.slice(0, 2).join(". "), more: items.length - 2 });
  }, 700);
}

/* ---------- log-in ---------- */

function showLogin(message = "") {
  teardown();
  $("app").hidden = true;
  $("logout").hidden = true;
  $("dl-open").hidden = true;
  if ($("dl-panel").open) $("dl-panel").close();
  $("who").textContent = t("who.none");
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token-input").value = "";
  $("token-input").focus();
}

function logout(message = "") {
  storeToken("");
  showLogin(message);
}

function teardown() {
  state.session += 1; // anything still pending for the old session gives up
  state.api = null;
  state.stream?.stop();
  state.readings?.stop();
  state.stream = null;
  state.readings = null;
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  state.ready = false;
  state.pending = [];
  state.incidents?.load([]);
  setConn("stopped", {});
}

async function start(token) {
  const session = ++state.session;
  $("login").hidden = true;
  const api = new Api(token, { onUnauthorized: () => logout(t("login.rejected")), language: LANG });
  state.api = api;
  let me;
  try {
    me = await api.me();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // onUnauthorized showed the form
    setConn("retrying", { reason: t("conn.unreachable"), retryAt: Date.now() + 5000 });
    setTimeout(() => {
      if (state.session === session) start(token);
    }, 5000);
    return;
  }
  if (state.session !== session) return; // logged out while we asked
  state.me = me;
  state.timings.me = performance.now();
  state.canAct = ROLE_CAN_ACT.has(me.role);
  $("who").replaceChildren(el("span", { class: "who-label" }, t("who.label")), el("b", {}, me.name),
    el("span", { class: "who-role" }, ` (${t(`role.${me.role}`)})`));
  $("who").title = `${me.name} (${t(`role.${me.role}`)})`;
  $("logout").hidden = false;
  $("app").hidden = false;
  document.body.dataset.role = me.role;
  state.feed.setCanAct(state.canAct);
  state.incidents.setCanAct(state.canAct);

  // Live first, so nothing that happens while the snapshot loads is lost.
  state.stream = new AlertStream({
    url: (since) => wsUrl("/ws/alerts", { since: since ?? undefined, lang: LANG }),
    protocols: () => wsProtocols(token),
    onEvent: onAlertEvent,
    onIncident: (ev) => (state.ready ? state.incidents.apply(ev.incident) : state.pending.push(ev)),
    onState: setConn,
    onHeartbeat: (hb) => {
      state.lastHeartbeatAt = Date.now();
      state.lastHeartbeatSeq = hb.seq;
    },
  });
  state.stream.start();

  // the snapshot, tried again until the API answers (a database restart is a 503 or two)
  for (let attempt = 0; ; attempt += 1) {
    try {
      const [sensors, alerts, incidents] = await Promise.all([
        api.allSensors(), api.activeAlerts(),
        api.get("/api/v1/incidents", { status: ["open", "acknowledged"], limit: 500 }),
      ]);
      state.timings.data = performance.now();
      setSensors(sensors);
      state.store.load(alerts.items, alerts.truncated);
      state.incidents.load(incidents.items || []);
      break;
    } catch (err) {
      if (state.api !== api || (err instanceof ApiError && err.status === 401)) return;
      if (attempt === 0) toast(t("toast.load_failed", { error: err.message }), true);
      await new Promise((r) => setTimeout(r, Math.min(30000, 2000 * 2 ** attempt)));
      if (state.api !== api) return; // logged out meanwhile
    }
  }
  state.ready = true;
  for (const ev of state.pending.splice(0)) {
    if (ev.type === "incident") state.incidents.apply(ev.incident);
    else state.store.apply(ev);
  }
  renderAll();
  state.timings.drawn = performance.now();
  pickInitialSensor();
  state.timers.push(setInterval(refreshSensors, SENSOR_REFRESH_MS));
  refreshMaintenance();
  state.timers.push(setInterval(refreshMaintenance, SENSOR_REFRESH_MS));
  refreshLoad();
  state.timers.push(setInterval(refreshLoad, 60000));
  if (ROLE_READS_DEAD_LETTERS.has(me.role)) state.timers.push(state.deadLetters.enable());
  // shelving ends by itself: look again every 30 s
  state.timers.push(setInterval(() => { state.incidents.render(); renderFeed(); }, 30000));
}

/* ---------- alerts ---------- */

function onAlertEvent(ev) {
  state.lastEventAt = Date.now();
  if (!state.ready) {
    state.pending.push(ev);
    return;
  }
  const applied = state.store.apply(ev);
  if (!applied) return;
  const a = ev.alert;
  if (["opened", "escalated", "reopened"].includes(ev.action) && a.severity === "critical") {
    state.map.flash(a.sensor);
  }
  if (["opened", "escalated", "reopened"].includes(ev.action) && a.severity !== "info") {
    announce(t("announce.alert", {
      severity: t(`sev.${a.severity}`), action: t(`action.${ev.action}`), message: a.message,
      sensor: sensorName(a.sensor),
    }) + (a.area ? `, ${a.area}` : ""));
  }
  if (a.sensor === state.sensor) state.chart.upsertAlert(a);
}

function sensorName(id) {
  const s = state.sensors.get(id);
  return s?.name || id;
}

async function act(alert, verb) {
  const feed = state.feed;
  feed.busy.add(alert.id);
  feed.render();
  try {
    const updated = verb === "acknowledge"
      ? await state.api.acknowledge(alert.id)
      : await state.api.resolve(alert.id);
    state.store.put(updated, verb === "acknowledge" ? "acknowledged" : "resolved", state.me.name);
    toast(t(verb === "acknowledge" ? "toast.acknowledged" : "toast.resolved", { message: alert.message }));
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      toast(t(`toast.forbidden.${verb}`, { role: t(`role.${state.me.role}`) }), true);
    } else if (err instanceof ApiError && err.status === 409) {
      toast(t("toast.conflict", { id: alert.id, detail: err.detail }), true);
      refreshAlert(alert.id);
    } else if (!(err instanceof ApiError && err.status === 401)) {
      toast(t(`toast.failed.${verb}`, { id: alert.id, error: err.message }), true);
    }
  } finally {
    feed.busy.delete(alert.id);
    renderFeed();
  }
}

async function actOnIncident(inc, verb) {
  const board = state.incidents;
  board.busy.add(inc.id);
  board.render();
  try {
    const updated = await state.api.request("POST", `/api/v1/incidents/${inc.id}/${verb}`);
    board.apply(updated);
    toast(t(verb === "acknowledge" ? "toast.incident.acknowledged" : "toast.incident.resolved", { title: incidentTitle(inc) }));
  } catch (err) {
    if (err instanceof ApiError && err.status === 409) {
      toast(t("toast.incident.conflict", { id: inc.id, detail: err.detail }), true);
    } else if (!(err instanceof ApiError && err.status === 401)) {
      toast(t(`toast.incident.failed.${verb}`, { id: inc.id, error: err.message }), true);
    }
  } finally {
    board.busy.delete(inc.id);
    board.render();
  }
}

async function shelveIncident(inc, minutes) {
  try {
    const updated = minutes
      ? await state.api.request("POST", `/api/v1/incidents/${inc.id}/shelve`, { body: { minutes } })
      : await state.api.request("POST", `/api/v1/incidents/${inc.id}/unshelve`);
    state.incidents.apply(updated);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      toast(t("toast.incident.shelve_failed", { id: inc.id, error: err.message }), true);
    }
  }
}

/** Sensors in maintenance: a line above the incidents (refreshed with the sensors). */
async function refreshMaintenance() {
  try {
    const page = await state.api.get("/api/v1/maintenance", { active: true });
    const now = Date.now();
    const live = (page.items || []).filter((w) => Date.parse(w.starts_at) <= now);
    const sensors = new Set(live.flatMap((w) => w.sensors));
    const node = $("maintenance");
    node.textContent = live.length ? INCIDENT_TEXTS.maintenance(live.length, sensors.size) : "";
    // what each window covers, when and why: the engineer's words, not only a count
    for (const w of live) node.append(el("span", { class: "mw" }, INCIDENT_TEXTS.window(w)));
  } catch {
    /* shown again on the next refresh */
  }
}

/** The operator-load line: the last hour's new incidents and alerts. */
async function refreshLoad() {
  try {
    const load = await state.api.get("/api/v1/operator-load", { hours: 1 });
    const node = $("load");
    node.textContent = `${INCIDENT_TEXTS.load(load)} · ${INCIDENT_TEXTS.loadMore(load)}`;
    node.dataset.flood = String(load.alerts.peak_10min > 10);
  } catch {
    /* shown again on the next refresh */
  }
}

async function refreshAlert(id) {
  try {
    const detail = await state.api.get(`/api/v1/alerts/${id}`);
    state.store.put(detail, "updated", "");
  } catch {
    /* the next event will bring it */
  }
}

function onResolveClick(alert) {
  // two presses: a resolve cannot be undone from the wall
  const node = state.feed.nodes.get(alert.id)?.querySelector(".btn-resolve");
  if (node && !node.classList.contains("confirm")) {
    node.classList.add("confirm");
    node.textContent = t("feed.resolve.confirm");
    node.focus();
    setTimeout(() => {
      if (node.isConnected) {
        node.classList.remove("confirm");
        node.textContent = t("feed.resolve");
      }
    }, 4000);
    return;
  }
  act(alert, "resolve");
}

// who was told about the alert (the notification outbox), if anyone
async function deliveriesTable(id) {
  let items;
  try {
    items = await state.api.get(`/api/v1/alerts/${id}/notifications`);
  } catch (err) {
    return el("p", { class: "error" }, t("deliveries.load_failed", { error: err.message }));
  }
  if (!items.length) return el("p", { class: "muted deliveries" }, t("deliveries.none"));
  const status = { sent: t("deliveries.status.sent"), pending: t("deliveries.status.pending"), dead: t("deliveries.status.dead") };
  const why = (d) => d.reason === "escalation" ? t("deliveries.reason.escalation", { step: d.step })
    : d.reason === "reminder" ? t("deliveries.reason.reminder", { step: d.step }) : "";
  const rows = items.map((d) => el("tr", { class: `delivery-${d.status}` },
    el("td", { title: fmtFull(d.created_at) }, fmtTime(d.sent_at || d.created_at)),
    el("td", {}, d.reason === "event" ? d.route : `${d.route} (${why(d)})`),
    el("td", {}, d.channel), el("td", {}, status[d.status] || d.status),
    el("td", {}, String(d.attempts)), el("td", {}, d.last_error || "")));
  const cols = ["time", "route", "channel", "status", "attempts", "error"];
  return el("table", { class: "deliveries", "aria-label": t("deliveries.label") },
    el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { scope: "col" }, t(`deliveries.col.${c}`))))),
    el("tbody", {}, ...rows));
}

// The evidence in plain words: known keys get a name, unknown ones their own words;
// nothing that is empty (null) is shown, times are in Hanoi time, numbers rounded.
// evidence keys with a name in the catalogue (evidence.<key>); others in their own words
const evidenceLabel = (k) => (has(`evidence.${k}`) ? t(`evidence.${k}`) : k.replace(/_/g, " "));
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

function evidenceText(v) {
  if (v === null || v === undefined || v === "") return "";
  if (typeof v === "number") return fmtNum(v);
  if (typeof v === "boolean") return t(v ? "evidence.yes" : "evidence.no");
  if (typeof v === "string") return ISO_TIME.test(v) ? fmtFull(v) : v;
  if (Array.isArray(v)) return v.map(evidenceText).filter(Boolean).join(", ");
  return Object.entries(v)
    .map(([k, x]) => [k, evidenceText(x)])
    .filter(([, x]) => x)
    .map(([k, x]) => `${evidenceLabel(k)} ${x}`)
    .join(" · ");
}

function evidenceRows(evidence) {
  const rows = [];
  for (const [k, v] of Object.entries(evidence || {})) {
    const text = evidenceText(v);
    if (!text) continue;
    rows.push(el("dt", {}, evidenceLabel(k)), el("dd", {}, text));
  }
  return rows;
}

async function showDetails(alert, box) {
  box.replaceChildren(el("p", { class: "muted" }, t("details.loading")));
  let detail;
  try {
    detail = await state.api.get(`/api/v1/alerts/${alert.id}`);
  } catch (err) {
    box.replaceChildren(el("p", { class: "error" }, t("details.failed", { error: err.message })));
    return;
  }
  // one clock: the readings' time (as the card shows) for the system's events; the
  // wall-clock time of recording in the tooltip, and beside it when they differ by > 1 min
  const when = (e) => {
    const at = e.reading_time || e.time;
    const apart = e.reading_time && Math.abs(toDate(e.time) - toDate(e.reading_time)) > 60000;
    return el("td", { title: e.reading_time ? t("details.times", { reading: fmtFull(e.reading_time), recorded: fmtFull(e.time) }) : fmtFull(e.time) },
      fmtTime(at) + (apart ? ` ${t("details.recorded", { time: fmtTime(e.time) })}` : ""));
  };
  const rows = (detail.events || []).map((e) => el("tr", {},
    when(e),
    el("td", {}, t(`action.${e.action}`)), el("td", {}, e.actor === "system" ? t("feed.system") : e.actor || ""), el("td", {}, e.note || "")));
  const parts = [
    el("p", {}, t("details.rule", { rule: detail.rule, detector: detail.detector, opened: fmtFull(detail.opened_at) })
      + (Number.isFinite(detail.score) ? ` · ${t("details.score", { score: fmtNum(detail.score) })}` : "")),
  ];
  const evidence = evidenceRows(detail.evidence);
  if (evidence.length) parts.push(el("dl", { class: "evidence" }, ...evidence));
  parts.push(el("table", {},
    el("thead", {}, el("tr", {}, ...["details.time", "details.action", "details.by", "details.note"].map((h) => el("th", { scope: "col" }, t(h))))),
    el("tbody", {}, ...rows)));
  parts.push(await deliveriesTable(alert.id));
  if (state.canAct) {
    const input = el("input", { class: "input", type: "text", maxlength: "2000", "aria-label": t("details.comment.label", { id: alert.id }), placeholder: t("details.comment.placeholder") });
    const form = el("form", { class: "comment-form" }, input,
      el("button", { type: "submit", class: "btn" }, t("details.comment.submit")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const note = input.value.trim();
      if (!note) return;
      try {
        await state.api.comment(alert.id, note);
        showDetails(alert, box);
      } catch (err) {
        toast(t("toast.comment_failed", { error: err.message }), true);
      }
    });
    parts.push(form);
  }
  box.replaceChildren(...parts);
}

/* ---------- sensors and the map ---------- */

function setSensors(list) {
  state.sensorCounts = {
    online: list.filter((s) => s.status === "online").length,
    offline: list.filter((s) => s.status === "offline").length,
  };
  const before = state.sensors;
  state.sensors = new Map(list.map((s) => [s.id, s]));
  const same = before.size === state.sensors.size && [...before.keys()].every((k) => state.sensors.has(k));
  state.map.setSensors(list);
  if (!same) fillSensorPicker();
  buildKindFilter();
}

async function refreshSensors() {
  try {
    setSensors(await state.api.allSensors());
    state.map.setStates(state.store.worstBySensor());
    renderSensorLine();
    renderMapCount();
  } catch {
    /* keep what we have; the next refresh tries again */
  }
}

function fillSensorPicker() {
  const list = $("sensor-list");
  const frag = document.createDocumentFragment();
  for (const s of [...state.sensors.values()].sort((a, b) => a.id.localeCompare(b.id))) {
    frag.append(el("option", { value: s.id }, `${s.name || s.id} · ${s.area || ""}`));
  }
  list.replaceChildren(frag);
}

function buildKindFilter() {
  const box = $("kinds");
  const kinds = [...new Set([...state.sensors.values()].map((s) => s.kind))].sort();
  const have = [...box.querySelectorAll("input")].map((i) => i.value);
  if (have.join() === kinds.join()) return;
  const counts = {};
  for (const s of state.sensors.values()) counts[s.kind] = (counts[s.kind] || 0) + 1;
  box.replaceChildren(el("legend", { class: "sr-only" }, t("map.kinds.legend")));
  for (const k of kinds) {
    const input = el("input", { type: "checkbox", value: k, checked: true });
    input.addEventListener("change", () => state.map.setKindHidden(k, !input.checked));
    box.append(el("label", {}, input, `${KIND_LABELS[k] || k} (${counts[k]})`));
  }
}

function renderMapCount() {
  const n = state.map.markers.size;
  const { online, offline } = state.sensorCounts || { online: 0, offline: 0 };
  const count = t("map.count", { n: n.toLocaleString(LOCALE), online, offline });
  if ($("map-count").textContent !== count) $("map-count").textContent = count;
  const c = state.store.counts();
  const label = t("map.summary", { n, critical: c.critical, warning: c.warning, offline });
  if (state.map.root.getAttribute("aria-label") !== label) state.map.root.setAttribute("aria-label", label);
}

/* ---------- rendering ---------- */

function renderFeed() {
  const { shown, hidden } = state.feed.render();
  const foot = $("feed-foot");
  const store = state.store;
  if (!shown) {
    if (!state.feed.root.querySelector(".empty")) {
      state.feed.root.append(el("li", { class: "empty" }, t(store.alerts.size ? "feed.empty.filtered" : "feed.empty")));
    }
  } else {
    state.feed.root.querySelector(".empty")?.remove();
  }
  foot.textContent = [
    hidden ? t("feed.hidden", { n: hidden }) : "",
    store.truncated ? t("feed.truncated") : "",
  ].filter(Boolean).join(" ");
}

function renderCounts() {
  const c = state.store.counts();
  $("n-critical").textContent = c.critical;
  $("n-warning").textContent = c.warning;
  $("n-info").textContent = c.info;
  $("n-ack").textContent = c.acknowledged;
  document.querySelector(".count.sev-critical").classList.toggle("has", c.critical > 0);
  const head = c.critical ? `▲${c.critical} ${t("sev.critical")} · `
    : c.warning ? `◆${c.warning} ${t("sev.warning")} · ` : "";
  document.title = `${head}IOC Hà Nội — ${t("brand.sub")}`;
}

function renderAll(sensors = null) {
  renderFeed();
  renderCounts();
  state.map.setStates(state.store.worstBySensor(), sensors);
  renderMapCount();
}

// A burst of events costs a few renders, not one each: the first change after a quiet
// spell renders at once, later ones are gathered for at most RENDER_EVERY_MS.
const RENDER_EVERY_MS = 150;
const pendingRender = { timer: 0, all: false, sensors: new Set(), last: 0 };

function scheduleRender(sensors) {
  if (sensors === null) pendingRender.all = true;
  else for (const id of sensors) pendingRender.sensors.add(id);
  if (pendingRender.timer) return;
  const wait = Math.max(0, pendingRender.last + RENDER_EVERY_MS - performance.now());
  pendingRender.timer = setTimeout(flushRender, wait);
}

function flushRender() {
  const sensors = pendingRender.all ? null : pendingRender.sensors;
  pendingRender.timer = 0;
  pendingRender.all = false;
  pendingRender.sensors = new Set();
  pendingRender.last = performance.now();
  renderAll(sensors);
  state.renders = (state.renders || 0) + 1;
  state.lastRenderAt = Date.now();
}

function setConn(s, info) {
  state.conn = { state: s, info };
  if (s === "denied") {
    if (info.code === 4401) logout(t("login.rejected"));
    else toast(t("toast.stream_forbidden"), true);
  }
  renderConn();
}

function renderConn() {
  const { state: s, info } = state.conn;
  const box = $("conn");
  box.dataset.state = s;
  let text;
  let age = "";
  if (s === "live") {
    const last = Math.max(state.lastHeartbeatAt || 0, state.lastEventAt || 0);
    text = t("conn.live");
    age = last ? `· ${fmtAge(last)}` : "";
    if (state.stream?.socket.connects > 1) age += ` · ${t("conn.resumed", { seq: state.stream.lastSeq ?? "?" })}`;
  } else if (s === "connecting") {
    text = t("conn.connecting");
  } else if (s === "retrying") {
    const secs = Math.max(0, Math.ceil(((info.retryAt || Date.now()) - Date.now()) / 1000));
    text = t("conn.retrying"); // the live region hears the change, not the countdown
    age = t("conn.retry_in", { n: secs });
  } else if (s === "denied") {
    text = t("conn.denied");
  } else {
    text = t("conn.stopped");
  }
  if ($("conn-text").textContent !== text) $("conn-text").textContent = text;
  if ($("conn-age").textContent !== age) $("conn-age").textContent = age;
  box.title = state.stream?.lastSeq !== null && state.stream?.lastSeq !== undefined
    ? t("conn.title.seq", { seq: state.stream.lastSeq }) : t("conn.title");
}

function tickClock() {
  const now = new Date();
  $("clock").textContent = fmtClock(now);
  const today = fmtDateLong(now);
  if ($("today").textContent !== today) $("today").textContent = today;
  renderConn();
  state.feed?.tick();
  renderLatestAges();
}

/* ---------- the chart ---------- */

function pickInitialSensor() {
  const url = new URL(window.location.href);
  const wanted = url.searchParams.get("sensor") || localStorage.getItem("ioc.sensor");
  if (wanted && state.sensors.has(wanted)) {
    selectSensor(wanted);
    return;
  }
  const top = state.store.active().sort((a, b) => (b.severity === "critical") - (a.severity === "critical"))[0];
  if (top && state.sensors.has(top.sensor)) selectSensor(top.sensor, top.metric);
  else state.chart.clear(t("chart.pick"));
}

async function selectSensor(id, metric = null) {
  const s = state.sensors.get(id);
  if (!s) {
    toast(t("toast.no_sensor", { id }), true);
    return;
  }
  const changed = state.sensor !== id;
  state.sensor = id;
  try {
    localStorage.setItem("ioc.sensor", id);
  } catch {
    /* ignore */
  }
  $("sensor-pick").value = id;
  state.map.select(id);
  state.feed.selectedSensor = id;
  renderFeed();
  if (changed) {
    state.latest = new Map();
    openReadingsSocket(id);
  }
  let detail = null;
  try {
    detail = await state.api.get(`/api/v1/sensors/${encodeURIComponent(id)}`);
  } catch {
    /* fall back to the list entry */
  }
  if (state.sensor !== id) return;
  for (const l of detail?.latest || []) {
    const prev = state.latest.get(l.metric);
    if (!prev || toDate(l.time) >= toDate(prev.time)) state.latest.set(l.metric, { time: l.time, value: l.value });
  }
  const metrics = [...new Set([...(s.metrics || []), ...(detail?.latest || []).map((l) => l.metric)])];
  const alertMetric = state.store.active().find((a) => a.sensor === id)?.metric;
  const choice = [metric, changed ? null : state.metric, alertMetric, metrics[0]].find((m) => m && metrics.includes(m))
    || metric || metrics[0] || null;
  const pick = $("metric-pick");
  pick.replaceChildren(...metrics.map((m) => el("option", { value: m }, metricLabel(m))));
  state.metric = choice;
  if (choice) pick.value = choice;
  renderSensorLine();
  renderLatest();
  loadChart();
}

function renderSensorLine() {
  const s = state.sensors.get(state.sensor);
  const line = $("sensor-line");
  if (!s) {
    line.replaceChildren();
    return;
  }
  line.replaceChildren(
    el("b", {}, s.name || s.id),
    el("span", {}, s.id),
    el("span", {}, KIND_LABELS[s.kind] || s.kind),
    s.area ? el("span", {}, s.area) : null,
    el("span", { class: `st-${s.status}` }, s.status === "online" ? `● ${t("sensor.online.word")}` : s.status === "offline" ? `○ ${t("sensor.offline.word")}` : t("sensor.unknown.word")),
    el("span", { class: "t-seen", title: fmtFull(s.last_seen_at) }, s.last_seen_at ? t("sensor.last_reading", { age: fmtAge(s.last_seen_at) }) : t("sensor.no_readings")),
  );
}

// How a derived index is made, for its tile: it rates the last whole hour (or day), not
// the latest reading, so it trails a sudden rise.
function tileNote(metric) {
  if (metric === "aqi_us" || metric === "aqi_vn") return t("tile.nowcast_note");
  if (metric === "aqi_vn_daily") return t("tile.daily_note");
  return "";
}

function renderLatest() {
  const box = $("latest");
  const tiles = [];
  for (const m of $("metric-pick").options) {
    const metric = m.value;
    const l = state.latest.get(metric);
    tiles.push(el("button", {
      type: "button", class: "tile", "data-metric": metric,
      "aria-pressed": metric === state.metric ? "true" : "false",
      onclick: () => {
        $("metric-pick").value = metric;
        state.metric = metric;
        renderLatest();
        loadChart();
      },
    },
    el("span", { class: "t-name" }, metricLabel(metric)),
    el("span", { class: "t-val" }, l ? fmtNum(l.value) : "—", " ", el("span", { class: "t-unit" }, UNITS[metric] || "")),
    el("span", { class: "t-name t-age", "data-t": l?.time || "", title: tileNote(metric) || undefined },
      l ? fmtAge(l.time) : ""),
    tileNote(metric) ? el("span", { class: "t-name", title: tileNote(metric) }, t(metric === "aqi_vn_daily" ? "tile.daily" : "tile.nowcast")) : null));
  }
  box.replaceChildren(...tiles);
}

function renderLatestAges() {
  for (const node of document.querySelectorAll(".t-age")) {
    const text = node.dataset.t ? fmtAge(node.dataset.t) : "";
    if (node.textContent !== text) node.textContent = text;
  }
}

async function loadChart() {
  const id = state.sensor;
  const metric = state.metric;
  const req = ++state.chartReq;
  if (!id || !metric) {
    state.chart.clear(t(id ? "chart.no_metrics" : "chart.select"));
    return;
  }
  const range = Number($("range-pick").value);
  const end = Date.now();
  const start = end - range;
  const bucketed = range > 86400e3;
  const startIso = new Date(start).toISOString();
  const query = { sensor: id, metric, start: startIso, end: new Date(end + 60e3).toISOString(), limit: 10000 };
  if (bucketed) Object.assign(query, { bucket: "1h", agg: "avg,min,max" });
  state.chart.setData({ points: [], alerts: [], metric, start, end, live: true, bucketed, message: t("chart.loading") });
  let readings = [];
  let alerts = [];
  let note = t("chart.empty");
  const [r, a] = await Promise.allSettled([
    state.api.get("/api/v1/readings", query),
    state.api.get("/api/v1/alerts", { sensor: id, since: startIso, limit: 500 }),
  ]);
  if (req !== state.chartReq) return;
  if (r.status === "fulfilled") {
    readings = r.value.items || [];
  } else if (r.reason instanceof ApiError && r.reason.status === 403) {
    // this role may not read this much history: draw what arrives live from now on
    note = t("chart.history_forbidden", { time: fmtClock(new Date()) });
  } else {
    state.chart.clear(t("chart.failed", { error: r.reason.message }));
    return;
  }
  if (a.status === "fulfilled") alerts = a.value.items || [];
  if (req !== state.chartReq) return; // the operator picked something else meanwhile
  const points = bucketed
    ? readings.map((p) => ({ t: Date.parse(p.bucket), v: p.avg, lo: p.min, hi: p.max }))
    : readings.map((p) => ({ t: Date.parse(p.time), v: p.value }));
  const byId = new Map(alerts.map((x) => [x.id, x]));
  for (const x of state.store.active()) if (x.sensor === id) byId.set(x.id, x);
  state.chart.setData({
    points: points.filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v)),
    alerts: [...byId.values()], metric, start, end, live: true, bucketed, message: note,
  });
  $("chart").setAttribute("aria-label", state.chart.summary(sensorName(id)));
}

function openReadingsSocket(id) {
  state.readings?.stop();
  const token = state.api.token;
  state.readings = new LiveSocket({
    urlFor: () => wsUrl("/ws/readings", { sensor: id }),
    protocols: () => wsProtocols(token),
    onFrame: (doc) => {
      if (doc.type !== "reading" || doc.sensor !== state.sensor) return;
      const prev = state.latest.get(doc.metric);
      if (!prev || toDate(doc.time) >= toDate(prev.time)) {
        state.latest.set(doc.metric, { time: doc.time, value: doc.value });
        const tile = document.querySelector(`.tile[data-metric="${CSS.escape(doc.metric)}"]`);
        if (tile) {
          tile.querySelector(".t-val").firstChild.textContent = fmtNum(doc.value);
          const age = tile.querySelector(".t-age");
          age.dataset.t = doc.time;
          age.textContent = fmtAge(doc.time);
        } else {
          renderLatest();
        }
      }
      if (doc.metric === state.metric && !state.chart.bucketed) {
        state.chart.append(Date.parse(doc.time), doc.value);
      }
      const s = state.sensors.get(doc.sensor);
      if (s) s.last_seen_at = doc.time;
    },
    onState: (s, info) => {
      if (s === "live" && state.readings?.connects > 1) loadChart(); // fill the gap
      if (s === "denied" && info.code === 4401) logout(t("login.rejected"));
    },
  });
  state.readings.start();
}

/* ---------- wiring ---------- */

function applyTextSize(i) {
  document.documentElement.style.setProperty("--scale", TEXT_SIZES[i]);
  // the name is read, not shown: "A±" stays out of it (its visible text is aria-hidden)
  $("textsize-name").textContent = t("size.label", { size: t(TEXT_SIZE_NAMES[i]) });
  $("textsize").title = $("textsize-name").textContent;
  $("textsize").dataset.size = String(i);
}

function wire() {
  state.chart = new Chart($("chart"), $("chart-tip"));
  state.map = new SensorMap($("map"), {
    canvas: $("map-markers"), tooltip: $("map-tip"), legend: $("legend"),
    onSelect: (id) => selectSensor(id),
  });
  state.feed = new Feed($("feed"), state.store, {
    canAct: false,
    sensorName,
    onAck: (a) => act(a, "acknowledge"),
    onResolve: onResolveClick,
    onSelect: (a) => selectSensor(a.sensor, a.metric),
    onDetails: showDetails,
  });
  state.store.subscribe((sensors) => scheduleRender(sensors));
  state.incidents = new IncidentBoard($("incidents"), {
    canAct: false,
    api: () => state.api,
    sensorName,
    onHighlight: (ids) => state.map.highlight(ids),
    onAck: (inc) => actOnIncident(inc, "acknowledge"),
    onResolve: (inc) => actOnIncident(inc, "resolve"),
    onShelve: (inc, minutes) => shelveIncident(inc, minutes),
    alerts: () => state.store.active(),
  });
  let shelvedAlerts = "";
  state.store.subscribe(() => { // the shelf lists shelved alerts too: redraw when they change
    const key = state.store.active().filter((a) => isShelved(a)).map((a) => `${a.id}:${a.shelved_until}`).join();
    if (key !== shelvedAlerts) { shelvedAlerts = key; state.incidents.render(); }
  });

  state.deadLetters = new DeadLetterPanel({
    api: () => state.api, dialog: $("dl-panel"), button: $("dl-open"), count: $("n-dl"),
  });

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    storeToken(token);
    start(token);
  });
  $("logout").addEventListener("click", () => logout(""));
  for (const btn of document.querySelectorAll(".count[data-sev]")) {
    btn.addEventListener("click", () => {
      const sev = btn.dataset.sev;
      const on = !state.feed.severities.has(sev);
      if (on) state.feed.severities.add(sev);
      else state.feed.severities.delete(sev);
      btn.setAttribute("aria-pressed", String(on));
      renderFeed();
    });
  }
  $("toggle-ack").addEventListener("click", () => {
    state.feed.showAcknowledged = !state.feed.showAcknowledged;
    $("toggle-ack").setAttribute("aria-pressed", String(state.feed.showAcknowledged));
    renderFeed();
  });
  $("feed-filter").addEventListener("input", (ev) => {
    state.feed.text = ev.target.value;
    renderFeed();
  });
  $("feed-sort").addEventListener("change", (ev) => {
    state.feed.sort = ev.target.value;
    renderFeed();
  });
  $("zoom-in").addEventListener("click", () => state.map.zoom(1 / 1.4));
  $("zoom-out").addEventListener("click", () => state.map.zoom(1.4));
  $("zoom-fit").addEventListener("click", () => state.map.fit());
  $("zoom-centre").addEventListener("click", () => state.map.fitBounds(DEFAULT_BOUNDS));
  $("sensor-pick").addEventListener("change", (ev) => {
    const v = ev.target.value.trim();
    if (!v) return;
    const hit = state.sensors.has(v) ? v
      : [...state.sensors.values()].find((s) => (s.name || "").toLowerCase() === v.toLowerCase())?.id;
    selectSensor(hit || v);
  });
  $("metric-pick").addEventListener("change", (ev) => {
    state.metric = ev.target.value;
    renderLatest();
    loadChart();
  });
  $("range-pick").addEventListener("change", () => loadChart());
  let size = Number(localStorage.getItem("ioc.textsize") || 0) % TEXT_SIZES.length;
  const url = new URL(window.location.href);
  if (url.searchParams.get("wall") === "1") size = 1;
  applyTextSize(size);
  $("textsize").addEventListener("click", () => {
    size = (size + 1) % TEXT_SIZES.length;
    localStorage.setItem("ioc.textsize", String(size));
    applyTextSize(size);
  });
  $("lang-pick").value = LANG;
  $("lang-pick").addEventListener("change", (ev) => switchLanguage(ev.target.value));
  setInterval(tickClock, 1000);
  setInterval(() => state.chart.slide(), 30000);
  tickClock();
}

async function boot() {
  window.__ioc = state; // for the browser tests and for curious engineers in the console
  try {
    await loadMessages();
  } catch (err) {
    console.warn("the text catalogue did not load; showing message ids", err);
  }
  translatePage();
  translateLabels();
  wire();
  const adopted = adoptTokenFromUrl();
  const token = storedToken();
  if (token) start(token);
  else showLogin(adopted === "refused" ? t("login.refused") : "");
}

boot();
