// The dashboard's languages: Vietnamese (the default) and English, from one JSON catalogue.
//
// The language is chosen once per page load: ?lang=, else the operator's last choice
// (localStorage), else the browser's first of vi or en, else vi. Texts come from
// /static/i18n.json by message id, with {named} fields; switching language reloads the page
// so that every text, number and date (and the API's alert messages) follow it at once.

export const LANGUAGES = ["vi", "en"];
export const DEFAULT_LANG = "vi";
const LANG_KEY = "ioc.lang";
// the locale of numbers and dates: Vietnamese 1.234,5 and 22/11/2026; English 1,234.5 and 22/11/2026
const LOCALES = { vi: "vi-VN", en: "en-GB" };

function primary(tag) {
  const p = String(tag || "").toLowerCase().split(/[-_]/)[0];
  return LANGUAGES.includes(p) ? p : null;
}

/** The language of this page load (see above). */
export function chooseLanguage(loc = globalThis.location, storage = globalThis.localStorage,
  nav = globalThis.navigator) {
  try {
    const asked = primary(new URL(loc.href).searchParams.get("lang"));
    if (asked) return asked;
  } catch {
    /* no location */
  }
  try {
    const stored = primary(storage?.getItem(LANG_KEY));
    if (stored) return stored;
  } catch {
    /* private mode */
  }
  for (const tag of nav?.languages || [nav?.language]) {
    const p = primary(tag);
    if (p) return p;
  }
  return DEFAULT_LANG;
}

export const LANG = chooseLanguage();
export const LOCALE = LOCALES[LANG];

let messages = {};

/** Load this language's texts (call once before the first render). */
export async function loadMessages(url = "/static/i18n.json") {
  const resp = await fetch(url, { cache: "no-cache" });
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  const all = await resp.json();
  messages = { ...all.en, ...all[LANG] }; // English for anything the language lacks
  return messages;
}

/** The text ``key`` with its {fields} filled in; the key itself when unknown. */
export function t(key, fields = {}) {
  const text = messages[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in fields ? String(fields[name]) : m));
}

/** Whether the catalogue has ``key`` (for labels with a fallback). */
export function has(key) {
  return key in messages;
}

/** Fill the static page: ``data-i18n="id"`` sets the text, ``data-i18n-attr="attr:id;..."``
 * sets attributes. */
export function translatePage(root = document) {
  document.documentElement.lang = LANG;
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of node.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":").map((s) => s.trim());
      if (attr && key) node.setAttribute(attr, t(key));
    }
  }
}

/** Remember ``lang`` and reload the page in it. */
export function switchLanguage(lang) {
  if (!LANGUAGES.includes(lang) || lang === LANG) return;
  try {
    localStorage.setItem(LANG_KEY, lang);
  } catch {
    /* private mode: ?lang= carries it */
  }
  const url = new URL(window.location.href);
  url.searchParams.set("lang", lang);
  window.location.replace(url.toString());
}
