// Websockets that stay up: reconnect with capped, jittered backoff; /ws/alerts resumes by seq.

export const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FORBIDDEN = 4403;
const CLOSE_TOO_SLOW = 4008;
export const CLOSE_RESUME_AHEAD = 4409; // our last seq is beyond the server's history
const CLOSE_STALE = 4000; // ours: no frame for too long

/**
 * A websocket that reconnects by itself.
 *
 * ``urlFor()`` is called before every connection (so a resume point can go in the URL),
 * ``protocols()`` gives its sub-protocols (the token);
 * ``onFrame(doc)`` gets each JSON frame; ``onState(state, info)`` hears
 * "connecting" | "live" | "retrying" | "denied" | "stopped".
 */
export class LiveSocket {
  constructor({
    urlFor,
    onFrame,
    onState = () => {},
    protocols = () => [],
    staleAfterMs = 45000,
    backoff = BACKOFF_MS,
  }) {
    this.urlFor = urlFor;
    this.protocols = protocols;
    this.onFrame = onFrame;
    this.onState = onState;
    this.staleAfterMs = staleAfterMs;
    this.backoff = backoff;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.watchdog = null;
    this.stopped = true;
    this.state = "stopped";
    this.lastFrameAt = 0;
    this.connects = 0;
    this._onOnline = () => {
      if (this.state === "retrying") this.reconnectNow();
    };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener("online", this._onOnline);
    this._connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this._onOnline);
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try {
        ws.close(1000, "bye");
      } catch {
        /* already closed */
      }
    }
    this._setState("stopped", {});
  }

  reconnectNow() {
    clearTimeout(this.timer);
    if (this.ws) {
      this.ws.close(CLOSE_STALE, "reconnect");
    } else if (!this.stopped) {
      this._connect();
    }
  }

  _setState(state, info) {
    this.state = state;
    this.onState(state, info);
  }

  _connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this._setState("connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.urlFor(), this.protocols());
    } catch (err) {
      this._retry(0, String(err));
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.connects += 1;
      this.lastFrameAt = Date.now();
      this._setState("live", { connects: this.connects });
      clearInterval(this.watchdog);
      this.watchdog = setInterval(() => {
        if (Date.now() - this.lastFrameAt > this.staleAfterMs && this.ws === ws) {
          ws.close(CLOSE_STALE, "no heartbeat");
        }
      }, Math.min(5000, this.staleAfterMs / 3));
    };
    ws.onmessage = (ev) => {
      this.lastFrameAt = Date.now();
      this.attempt = 0; // the server talks to us: the next outage starts the backoff afresh
      let doc;
      try {
        doc = JSON.parse(ev.data);
      } catch {
        return;
      }
      try {
        this.onFrame(doc);
      } catch (err) {
        console.error("frame handler failed", err);
      }
    };
    ws.onclose = (ev) => {
      clearInterval(this.watchdog);
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (ev.code === CLOSE_UNAUTHORIZED || ev.code === CLOSE_FORBIDDEN) {
        this.stopped = true;
        this._setState("denied", { code: ev.code, reason: ev.reason });
        return;
      }
      this._retry(ev.code, ev.reason);
    };
  }

  _retry(code, reason) {
    const fast = code === CLOSE_TOO_SLOW || code === CLOSE_STALE;
    const base = fast ? 500 : this.backoff[Math.min(this.attempt, this.backoff.length - 1)];
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.attempt += 1;
    const retryAt = Date.now() + delay;
    this._setState("retrying", { code, reason, retryAt, attempt: this.attempt });
    this.timer = setTimeout(() => this._connect(), delay);
  }
}

/**
 * The live alert stream: every event exactly once, in seq order, across reconnects.
 *
 * The first connection gets ``hello`` (the head seq); later ones pass ``since`` = the last
 * seq seen, so the server replays what was missed.  Events at or below that seq are
 * duplicates and dropped.  Heartbeat seqs are shown but never used as a resume point.
 */
export class AlertStream {
  constructor({ url, onEvent, onState, onHeartbeat = () => {}, protocols = () => [], onIncident = () => {} }) {
    this.lastSeq = null;
    this.url = url; // (since|null) => string
    this.onEvent = onEvent;
    this.onIncident = onIncident;
    this.onHeartbeat = onHeartbeat;
    this.duplicates = 0;
    this.socket = new LiveSocket({
      urlFor: () => this.url(this.lastSeq),
      protocols,
      onFrame: (doc) => this._frame(doc),
      onState: (state, info) => {
        // the server's history was reset (a restored database): start again from its head
        if (info?.code === CLOSE_RESUME_AHEAD) this.lastSeq = null;
        onState(state, info);
      },
    });
  }

  start() {
    this.socket.start();
  }

  stop() {
    this.socket.stop();
  }

  _frame(doc) {
    if (doc.type === "hello") {
      if (this.lastSeq === null && Number.isFinite(doc.seq)) this.lastSeq = doc.seq;
    } else if (doc.type === "alert" || doc.type === "incident") {
      if (this.lastSeq !== null && doc.seq <= this.lastSeq) {
        this.duplicates += 1;
        return;
      }
      this.lastSeq = doc.seq;
      if (doc.type === "alert") this.onEvent(doc);
      else this.onIncident(doc);
    } else if (doc.type === "heartbeat") {
      this.onHeartbeat(doc);
    }
  }
}
