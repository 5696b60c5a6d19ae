// The dead-letter panel (engineers and admins): messages the ingestor rejected, newest
// first, with their reason, sensor, topic and the head of their payload.

import { el } from "./feed.js";
import { fmtFull, fmtNum, fmtTime } from "./fmt.js";
import { has, t } from "./i18n.js";

const PAGE = 100;
const REFRESH_MS = 30000;
const HOUR_MS = 3600e3;
// the ingestor's reason codes (core.errors.PayloadError), for the filter
export const CODES = [
  "malformed_json", "bad_structure", "bad_timestamp", "timestamp_future", "unknown_metric",
  "out_of_range", "bad_meta", "bad_status", "bad_topic", "empty", "oversized", "db_rejected",
  "internal_error",
];

const codeLabel = (code) => (has(`dl.code.${code}`) ? t(`dl.code.${code}`) : code.replace(/_/g, " "));

/** Bytes as "512 B", "1,5 KiB", "64 KiB" (numbers in the page's language). */
function fmtBytes(n) {
  if (!Number.isFinite(n)) return "—";
  if (n < 1024) return `${fmtNum(n)} B`;
  if (n < 1024 * 1024) return `${fmtNum(n / 1024)} KiB`;
  return `${fmtNum(n / 1024 / 1024)} MiB`;
}

export class DeadLetterPanel {
  /**
   * @param opts {api(), dialog, button, count} the <dialog>, the header button that opens it
   *             and the <b> in it that counts the last hour's dead letters
   */
  constructor(opts) {
    this.opts = opts;
    this.dialog = opts.dialog;
    this.timer = 0;
    this.items = [];
    this.code = this.dialog.querySelector("#dl-code");
    this.sensor = this.dialog.querySelector("#dl-sensor");
    this.body = this.dialog.querySelector("#dl-rows");
    this.foot = this.dialog.querySelector("#dl-foot");
    this.code.replaceChildren(
      el("option", { value: "" }, t("dl.code.all")),
      ...CODES.map((c) => el("option", { value: c }, codeLabel(c))),
    );
    this.code.addEventListener("change", () => this.refresh());
    this.sensor.addEventListener("change", () => this.refresh());
    this.dialog.querySelector("#dl-refresh").addEventListener("click", () => this.refresh());
    this.dialog.querySelector("#dl-close").addEventListener("click", () => this.close());
    this.dialog.addEventListener("close", () => this.stop());
    opts.button.addEventListener("click", () => this.open());
  }

  /** Show the header button (the role may read dead letters) and keep its count fresh. */
  enable() {
    this.opts.button.hidden = false;
    this.count();
    return setInterval(() => this.count(), 60000);
  }

  async count() {
    try {
      const page = await this.opts.api().get("/api/v1/dead-letters", {
        since: new Date(Date.now() - HOUR_MS).toISOString(), limit: 500,
      });
      const n = (page.items || []).length;
      this.opts.count.textContent = n >= 500 ? `${fmtNum(500)}+` : fmtNum(n);
      // the name holds the visible count (the word hides on narrower screens)
      this.opts.button.setAttribute("aria-label", t("dl.button.label", { n: this.opts.count.textContent }));
      this.opts.button.classList.toggle("has", n > 0);
    } catch {
      /* counted again on the next round */
    }
  }

  open() {
    if (!this.dialog.open) this.dialog.showModal();
    this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  close() {
    this.dialog.close();
  }

  stop() {
    clearInterval(this.timer);
    this.timer = 0;
  }

  async refresh() {
    const query = { limit: PAGE, code: this.code.value || undefined, sensor: this.sensor.value.trim() || undefined };
    this.foot.textContent = t("dl.loading");
    let page;
    try {
      page = await this.opts.api().get("/api/v1/dead-letters", query);
    } catch (err) {
      this.foot.textContent = t("dl.failed", { error: err.message });
      return;
    }
    this.items = page.items || [];
    this.render(page.next_before_id !== null && page.next_before_id !== undefined);
  }

  render(more) {
    this.body.replaceChildren(...this.items.map((d) => el("tr", { "data-dl-id": String(d.id) },
      el("td", { title: fmtFull(d.received_at) }, fmtTime(d.received_at)),
      el("td", { title: d.code }, codeLabel(d.code)),
      el("td", {}, d.sensor || "—"),
      el("td", { class: "dl-topic" }, d.topic),
      el("td", { class: "dl-reason" }, d.reason,
        d.rejected_count ? el("span", { class: "muted" }, ` ${t("dl.pack", { rejected: fmtNum(d.rejected_count), accepted: fmtNum(d.accepted) })}`) : null),
      el("td", { class: "dl-size" }, fmtBytes(d.payload_size)),
      el("td", { class: "dl-payload" }, el("code", { title: d.payload_preview }, d.payload_preview + (d.payload_cut ? " …" : ""))))));
    this.foot.textContent = this.items.length
      ? t(more ? "dl.shown_more" : "dl.shown", { n: fmtNum(this.items.length) })
      : t("dl.none");
  }
}
