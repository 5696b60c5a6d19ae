// Formatting for people: times in Asia/Ho_Chi_Minh, numbers, units, labels (in the page's language).

import { LOCALE, has, t as tr } from "./i18n.js";

export const TZ = "Asia/Ho_Chi_Minh";
// Hanoi has kept UTC+07:00 without daylight saving since 1975; the chart aligns its
// ticks to local midnight with this offset.
export const TZ_OFFSET_MS = 7 * 3600 * 1000;

const timeFmt = new Intl.DateTimeFormat(LOCALE, {
  timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});
const hmFmt = new Intl.DateTimeFormat(LOCALE, {
  timeZone: TZ, hour: "2-digit", minute: "2-digit", hourCycle: "h23",
});
// dates as dd/MM(/yyyy) in both languages (Vietnamese convention, and en-GB's): built from
// parts, since some locales' own short forms write 22-11
const partsFmt = new Intl.DateTimeFormat("en-GB", {
  timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});

function parts(d) {
  const o = {};
  for (const p of partsFmt.formatToParts(d)) o[p.type] = p.value;
  return o;
}

const dayFmt = { format: (d) => { const o = parts(d); return `${o.day}/${o.month}`; } };
const fullFmt = {
  format: (d) => {
    const o = parts(d);
    const date = `${o.day}/${o.month}/${o.year}`;
    const time = `${o.hour}:${o.minute}:${o.second}`;
    return LOCALE === "vi-VN" ? `${date} ${time}` : `${date}, ${time}`;
  },
};
const weekdayFmt = new Intl.DateTimeFormat(LOCALE, { timeZone: TZ, weekday: "short" });
// the header's date: the weekday in words, then dd/MM/yyyy ("Th 7, 05/12/2026", "Sat, 05/12/2026")
const dateLongFmt = {
  format: (d) => {
    const o = parts(d);
    return `${weekdayFmt.format(d)}, ${o.day}/${o.month}/${o.year}`;
  },
};

/** Parse an RFC 3339 string (or a Date, or epoch ms) into a Date; null for nothing. */
export function toDate(t) {
  if (t === null || t === undefined || t === "") return null;
  const d = t instanceof Date ? t : new Date(t);
  return Number.isNaN(d.getTime()) ? null : d;
}

function localDayKey(d) {
  return dayFmt.format(d);
}

/** "14:05:09", or "21/11 14:05" when not today (Hanoi time). */
export function fmtTime(t, now = new Date()) {
  const d = toDate(t);
  if (!d) return "—";
  if (localDayKey(d) === localDayKey(now)) return timeFmt.format(d);
  return `${dayFmt.format(d)} ${hmFmt.format(d)}`;
}

/** "22/11/2026, 14:05:09 ICT" (day, month, year in both languages) for tooltips. */
export function fmtFull(t) {
  const d = toDate(t);
  return d ? `${fullFmt.format(d)} ICT` : "—";
}

export const fmtHM = (d) => hmFmt.format(d);
export const fmtDay = (d) => dayFmt.format(d);
export const fmtClock = (d) => timeFmt.format(d);
export const fmtDateLong = (d) => dateLongFmt.format(d);

/** "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function fmtAge(t, now = Date.now()) {
  const d = toDate(t);
  if (!d) return "";
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  if (s < 5) return tr("age.now");
  if (s < 60) return tr("age.s", { n: s });
  if (s < 3600) return tr("age.min", { n: Math.floor(s / 60) });
  if (s < 86400) return tr("age.h", { n: Math.floor(s / 3600) });
  return tr("age.d", { n: Math.floor(s / 86400) });
}

const NUM_FMT = [0, 1, 2].map(
  (digits) => new Intl.NumberFormat(LOCALE, { maximumFractionDigits: digits }),
);

/** A value with sensible precision: 1234 -> "1.234" (vi) or "1,234" (en), 3.14159 -> "3,14" or "3.14". */
export function fmtNum(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  if (Math.abs(v) < 1e-9) return "0";
  const a = Math.abs(v);
  return NUM_FMT[a >= 100 ? 0 : a >= 10 ? 1 : 2].format(v);
}

// Units of the metric catalogue (core/metrics.py), for labels only.
export const UNITS = {
  vehicle_count: "vehicles", count_motorbike: "vehicles", count_car: "vehicles",
  count_bus: "vehicles", count_truck: "vehicles", speed: "km/h", occupancy: "%",
  queue_length: "m", pm25: "µg/m³", pm10: "µg/m³", no2: "µg/m³", o3: "µg/m³", co: "µg/m³",
  so2: "µg/m³", temperature: "°C", humidity: "%", wind_speed: "m/s", wind_direction: "°",
  rainfall: "mm", pressure: "hPa", water_level: "cm", noise: "dB(A)", battery: "%",
  aqi_vn: "VN_AQI", aqi_vn_daily: "VN_AQI", aqi_us: "US AQI", fire_risk: "index",
};

export const KIND_LABELS = {
  traffic_camera: "Traffic camera", air_quality: "Air quality", water_level: "Water level",
  weather: "Weather", noise: "Noise", generic: "Other",
};

export const CLASS_LABELS = {
  incident: "Incident", probable_fault: "Probable fault", threshold: "Threshold",
  device: "Device",
};

export const SEVERITIES = ["critical", "warning", "info"];
export const SEVERITY_RANK = { info: 0, warning: 1, critical: 2 };
// Shape as well as colour, so severity never depends on colour vision alone.
export const SEVERITY_ICON = { critical: "▲", warning: "◆", info: "●" };

/** Put the catalogue's words into the label tables (once the catalogue is loaded). */
export function translateLabels() {
  for (const table of [[UNITS, "unit"], [KIND_LABELS, "kind"], [CLASS_LABELS, "class"]]) {
    const [labels, prefix] = table;
    for (const k of Object.keys(labels)) {
      if (has(`${prefix}.${k}`)) labels[k] = tr(`${prefix}.${k}`);
    }
  }
}

export function withUnit(v, metric) {
  const u = UNITS[metric];
  return u ? `${fmtNum(v)} ${u}` : fmtNum(v);
}

export function metricLabel(metric) {
  const pretty = {
    pm25: "PM2.5", pm10: "PM10", no2: "NO₂", o3: "O₃", co: "CO", so2: "SO₂",
    aqi_vn: "AQI (VN)", aqi_vn_daily: "AQI (VN, daily)", aqi_us: "AQI (US)",
  };
  if (has(`metric.${metric}`)) return tr(`metric.${metric}`);
  return pretty[metric] || metric.replace(/_/g, " ");
}
