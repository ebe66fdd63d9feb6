// Shared terminal state: instruments by key, the latest quote of each watched instrument, and the
// selected instrument. Panels listen for "select"; quote updates go straight to their handlers.

export class TerminalStore extends EventTarget {
  constructor(session, connection) {
    super();
    this.session = session;
    this.connection = connection;
    this.instruments = new Map(); // key -> instrument
    this.quotes = new Map(); // key -> latest quote (rupee strings)
    this.selected = null;
    this._pending = new Map();
  }

  /** The instrument for "EXCH:token", from the cache or the API. */
  instrument(key) {
    const known = this.instruments.get(key);
    if (known) return Promise.resolve(known);
    let pending = this._pending.get(key);
    if (!pending) {
      pending = this.session
        .get(`/instruments/${encodeURIComponent(key)}`)
        .then((instrument) => {
          this.instruments.set(key, instrument);
          return instrument;
        })
        .finally(() => this._pending.delete(key));
      this._pending.set(key, pending);
    }
    return pending;
  }

  remember(instrument) {
    this.instruments.set(instrument.key, instrument);
  }

  select(key) {
    if (!key || key === this.selected) return;
    this.selected = key;
    this.dispatchEvent(new CustomEvent("select", { detail: { key } }));
  }

  /** Follow one instrument's quote; returns the function that stops following it. */
  watchQuote(key, handler) {
    return this.connection.subscribe(`quote:${key}`, (message, arrivedAt) => {
      if (!message.data) return;
      this.quotes.set(key, message.data);
      handler(message.data, arrivedAt);
    });
  }
}
