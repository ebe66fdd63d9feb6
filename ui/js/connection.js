// The terminal's WebSocket: authenticates, keeps the subscriptions the panels ask for, and comes
// back after a drop with exponential back-off, resubscribing everything. Handlers get
// (message, arrivedAt) where arrivedAt is performance.now() when the frame arrived.
//
// Flow control: the server sends at most `ack_window` frames ahead of our acknowledgements, so a
// busy tab receives the latest state instead of a backlog. Frames are acknowledged once handled.

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 10_000;

export class Connection extends EventTarget {
  constructor(session) {
    super();
    this.session = session;
    this.handlers = new Map(); // channel -> Set<handler>
    this.ws = null;
    this.state = "offline";
    this.backoff = BACKOFF_START_MS;
    this.heartbeatMs = 10_000;
    this._retryTimer = null;
    this._watchdog = null;
    this._lastHeard = 0;
    this._stopped = true;
    this.frames = 0;
    this.acked = 0;
    this.ackEvery = 8;
    session.addEventListener("change", () => {
      if (!session.accessToken) this.stop();
      else if (this.state === "live") this._send({ type: "auth", token: session.accessToken });
    });
  }

  start() {
    this._stopped = false;
    if (!this.ws) this._connect();
  }

  stop() {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    clearInterval(this._watchdog);
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
    this._setState("offline");
  }

  subscribe(channel, handler) {
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
      if (this.state === "live") this._send({ type: "subscribe", channels: [channel] });
    }
    set.add(handler);
    return () => this.unsubscribe(channel, handler);
  }

  unsubscribe(channel, handler) {
    const set = this.handlers.get(channel);
    if (!set) return;
    set.delete(handler);
    if (set.size === 0) {
      this.handlers.delete(channel);
      if (this.state === "live") this._send({ type: "unsubscribe", channels: [channel] });
    }
  }

  _connect() {
    clearTimeout(this._retryTimer);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.ws = ws;
    this._setState("connecting");
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: this.session.accessToken }));
    this.frames = 0;
    this.acked = 0;
    ws.onmessage = (event) => {
      const arrivedAt = performance.now();
      this._lastHeard = arrivedAt;
      const data = JSON.parse(event.data);
      if (Array.isArray(data)) for (const message of data) this._dispatch(message, arrivedAt);
      else this._dispatch(data, arrivedAt);
      this.frames += 1;
      if (this.frames - this.acked >= this.ackEvery) this._ack();
    };
    ws.onclose = (event) => this._closed(ws, event);
    ws.onerror = () => {}; // onclose follows and carries the reconnect
  }

  _dispatch(message, arrivedAt) {
    switch (message.type) {
      case "update":
      case "snapshot": {
        const set = this.handlers.get(message.channel);
        if (set) for (const handler of set) handler(message, arrivedAt);
        break;
      }
      case "authenticated":
        this.heartbeatMs = (message.heartbeat_s || 10) * 1000;
        this.ackEvery = Math.max(1, Math.floor((message.ack_window || 32) / 4));
        this.backoff = BACKOFF_START_MS;
        if (this.state !== "live") {
          this._setState("live");
          if (this.handlers.size) this._send({ type: "subscribe", channels: [...this.handlers.keys()] });
          this._startWatchdog();
        }
        break;
      case "error":
        this.dispatchEvent(new CustomEvent("server-error", { detail: message }));
        break;
      default: // heartbeat, pong: _lastHeard is enough
        break;
    }
  }

  async _closed(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearInterval(this._watchdog);
    if (this._stopped) return;
    if (event.code === 4401) {
      // The token expired or was refused: refresh it before trying again.
      try {
        await this.session.refresh();
      } catch {
        this._setState("offline");
        return;
      }
    }
    const delay = Math.min(this.backoff, BACKOFF_MAX_MS) * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this._setState("reconnecting", Math.round(delay));
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  _ack() {
    this.acked = this.frames;
    this._send({ type: "ack", frames: this.frames });
  }

  _startWatchdog() {
    clearInterval(this._watchdog);
    this._lastHeard = performance.now();
    this._watchdog = setInterval(() => {
      // Frames left unacknowledged by a quiet spell still count against the window: settle them.
      if (this.frames > this.acked) this._ack();
      // Silence for three heartbeats means the socket is dead even if the browser has not noticed.
      if (performance.now() - this._lastHeard > 3 * this.heartbeatMs && this.ws) this.ws.close(4000, "silent");
    }, Math.min(this.heartbeatMs, 250));
  }

  _send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  _setState(state, retryInMs = 0) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, retryInMs } }));
  }
}
