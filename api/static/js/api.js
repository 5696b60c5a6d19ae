// The REST client: the token (from #token=, sessionStorage or the login form) and JSON requests.

const TOKEN_KEY = "ioc.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

/**
 * Take ``#token=`` from the address bar into sessionStorage and remove it from the URL and
 * the history.  A fragment never reaches a server or a Referer; a ``?token=`` would, so it
 * is removed and not used.  Returns "adopted", "refused" (a ``?token=``) or "".
 */
export function adoptTokenFromUrl(loc = window.location, hist = window.history) {
  const url = new URL(loc.href);
  const hash = new URLSearchParams(url.hash.replace(/^#/, ""));
  const fromHash = hash.get("token");
  const fromQuery = url.searchParams.get("token");
  if (fromHash === null && fromQuery === null) return "";
  hash.delete("token");
  url.searchParams.delete("token");
  const rest = hash.toString();
  hist.replaceState(hist.state, "", url.pathname + url.search + (rest ? `#${rest}` : ""));
  if (fromHash !== null && fromHash.trim()) {
    storeToken(fromHash.trim());
    return "adopted";
  }
  return fromQuery !== null ? "refused" : "";
}

export function storedToken() {
  try {
    localStorage.removeItem(TOKEN_KEY); // kept there by earlier versions: forget it
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

/** The token lives in sessionStorage: this tab only, gone when it closes. */
export function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage refused: the token lives for this page only */
  }
}

/** Websocket sub-protocols that carry the token (so it is never in a URL): ioc.v1 is chosen. */
export function wsProtocols(token) {
  return ["ioc.v1", `ioc.bearer.${token}`];
}

export class Api {
  constructor(token, { onUnauthorized = () => {}, language = "" } = {}) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
    this.language = language; // sent as Accept-Language: alert messages come in it
  }

  async request(method, path, { query, body, signal } = {}) {
    let url = path;
    if (query) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) {
        if (v === undefined || v === null || v === "") continue;
        for (const item of Array.isArray(v) ? v : [v]) qs.append(k, String(item));
      }
      const s = qs.toString();
      if (s) url += `?${s}`;
    }
    const headers = { Accept: "application/json", Authorization: `Bearer ${this.token}` };
    if (this.language) headers["Accept-Language"] = this.language;
    const init = { method, headers, signal, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(url, init);
    if (!resp.ok) {
      let detail = "";
      try {
        const doc = await resp.json();
        detail = typeof doc.detail === "string" ? doc.detail : JSON.stringify(doc.detail);
      } catch {
        detail = resp.statusText;
      }
      if (resp.status === 401) this.onUnauthorized(detail);
      throw new ApiError(resp.status, detail);
    }
    if (resp.status === 204) return null;
    return resp.json();
  }

  get(path, query, signal) {
    return this.request("GET", path, { query, signal });
  }

  post(path, body) {
    return this.request("POST", path, { body: body ?? {} });
  }

  me() {
    return this.get("/api/v1/me");
  }

  /** Every sensor, page by page (the server may cap ``limit``). */
  async allSensors(pageSize = 1000, max = 100000) {
    const out = [];
    let offset = 0;
    for (;;) {
      const page = await this.get("/api/v1/sensors", { limit: pageSize, offset });
      const items = page.items || [];
      out.push(...items);
      offset += items.length;
      const total = Number.isFinite(page.total) ? page.total : offset;
      if (!items.length || offset >= total || out.length >= max) break;
    }
    return out;
  }

  /** Open and acknowledged alerts, newest first, following ``before_id`` pages. */
  async activeAlerts(pageSize = 500, max = 5000) {
    const out = [];
    let beforeId;
    for (;;) {
      const page = await this.get("/api/v1/alerts", {
        status: ["open", "acknowledged"], limit: pageSize, before_id: beforeId,
      });
      const items = page.items || [];
      out.push(...items);
      if (out.length >= max) break;
      if (page.next_before_id !== undefined) {
        if (page.next_before_id === null) break;
        beforeId = page.next_before_id;
      } else {
        if (items.length < pageSize) break;
        beforeId = Math.min(...items.map((a) => a.id));
      }
    }
    return { items: out, truncated: out.length >= max };
  }

  acknowledge(id, note) {
    return this.post(`/api/v1/alerts/${id}/acknowledge`, note ? { note } : {});
  }

  resolve(id, note) {
    return this.post(`/api/v1/alerts/${id}/resolve`, note ? { note } : {});
  }

  comment(id, note) {
    return this.post(`/api/v1/alerts/${id}/comments`, { note });
  }
}

/** ws:// or wss:// URL for a path on this origin, with query parameters. */
export function wsUrl(path, query) {
  const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === "") continue;
    for (const item of Array.isArray(v) ? v : [v]) qs.append(k, String(item));
  }
  const s = qs.toString();
  return `${proto}//${window.location.host}${path}${s ? `?${s}` : ""}`;
}

// roles that may read the ingestor's dead letters (api.auth: Permission.DEAD_LETTERS)
export const ROLE_READS_DEAD_LETTERS = new Set(["engineer", "admin"]);
export const ROLE_CAN_ACT = new Set(["operator", "admin"]);
