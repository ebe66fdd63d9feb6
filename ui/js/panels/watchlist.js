// Watchlist with catalog search. Keyboard: "/" focuses search, arrows move, Enter adds/selects,
// Delete removes. Prices flash green or red as they tick up or down; writes go through the frame.
import { schedule } from "../frame.js";
import { escapeHtml, percent, rupees } from "../format.js";
import { describeError, toast } from "./toasts.js";

const STORAGE_KEY = "shardline.watchlist";
const MAX_ROWS = 60;

export class Watchlist {
  constructor(store) {
    this.store = store;
    this.session = store.session;
    this.list = document.getElementById("watchlist");
    this.search = document.getElementById("search");
    this.results = document.getElementById("search-results");
    this.rows = new Map(); // key -> {el, ltpEl, chgEl, last, flip, stop}
    this.found = [];
    this.foundIndex = -1;
    this._searchTimer = null;
    this._searchSeq = 0;
    this._bind();
  }

  async start() {
    let keys = [];
    try {
      keys = JSON.parse(localStorage.getItem(STORAGE_KEY) || "[]");
    } catch {
      keys = [];
    }
    if (!keys.length) {
      const streaming = await this.session.get("/instruments/streaming?limit=12").catch(() => []);
      keys = streaming.map((i) => {
        this.store.remember(i);
        return i.key;
      });
    }
    // Fetch every instrument at once, then add the rows in the saved order.
    await Promise.all(keys.map((key) => this.store.instrument(key).catch(() => null)));
    for (const key of keys) await this.add(key, false);
    if (!this.store.selected && this.rows.size) this.store.select(this.rows.keys().next().value);
  }

  keys() {
    return [...this.rows.keys()];
  }

  async add(key, save = true) {
    if (this.rows.has(key) || this.rows.size >= MAX_ROWS) return;
    let instrument;
    try {
      instrument = await this.store.instrument(key);
    } catch (err) {
      if (save) toast("error", `${key}: ${describeError(err)}`);
      return;
    }
    if (this.rows.has(key)) return;
    const el = document.createElement("li");
    el.setAttribute("role", "option");
    el.dataset.key = key;
    el.innerHTML =
      `<span class="sym">${escapeHtml(instrument.symbol)}<span class="exch">${escapeHtml(instrument.exchange)}</span></span>` +
      `<span class="ltp">—</span><span class="chg"></span>`;
    this.list.append(el);
    const row = { el, ltpEl: el.querySelector(".ltp"), chgEl: el.querySelector(".chg"), last: null, flip: false };
    row.stop = this.store.watchQuote(key, (quote, arrivedAt) => this._onQuote(row, quote, arrivedAt));
    this.rows.set(key, row);
    if (save) this._save();
  }

  remove(key) {
    const row = this.rows.get(key);
    if (!row) return;
    row.stop();
    row.el.remove();
    this.rows.delete(key);
    this._save();
  }

  _onQuote(row, quote, arrivedAt) {
    const ltp = Number(quote.ltp);
    const direction = row.last === null || ltp === row.last ? null : ltp > row.last ? "up" : "down";
    row.last = ltp;
    const close = Number(quote.close);
    const change = close > 0 ? ((ltp - close) / close) * 100 : null;
    schedule(
      row,
      () => {
        row.ltpEl.textContent = rupees(quote.ltp);
        if (direction) {
          row.flip = !row.flip;
          row.ltpEl.className = `ltp flash-${direction}-${row.flip ? "a" : "b"}`;
        }
        if (change !== null) {
          row.chgEl.textContent = percent(change);
          row.chgEl.className = `chg ${change > 0 ? "up" : change < 0 ? "down" : ""}`;
        }
      },
      arrivedAt,
    );
  }

  _save() {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(this.keys()));
  }

  _select(key) {
    for (const [k, row] of this.rows) row.el.setAttribute("aria-selected", String(k === key));
    this.store.select(key);
    this.rows.get(key)?.el.scrollIntoView({ block: "nearest" });
  }

  move(delta) {
    const keys = this.keys();
    if (!keys.length) return;
    const at = keys.indexOf(this.store.selected);
    const next = keys[Math.max(0, Math.min(keys.length - 1, (at < 0 ? 0 : at + delta)))];
    this._select(next);
  }

  _bind() {
    this.store.addEventListener("select", (e) => {
      for (const [k, row] of this.rows) row.el.setAttribute("aria-selected", String(k === e.detail.key));
    });
    this.list.addEventListener("click", (e) => {
      const li = e.target.closest("li");
      if (li) this._select(li.dataset.key);
    });
    this.list.addEventListener("keydown", (e) => {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        this.move(e.key === "ArrowDown" ? 1 : -1);
        e.preventDefault();
      } else if (e.key === "Delete" || e.key === "Backspace") {
        const key = this.store.selected;
        if (key) {
          this.move(1);
          this.remove(key);
        }
        e.preventDefault();
      }
    });
    this.search.addEventListener("input", () => {
      clearTimeout(this._searchTimer);
      this._searchTimer = setTimeout(() => this._runSearch(), 80);
    });
    this.search.addEventListener("keydown", (e) => {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        this._moveFound(e.key === "ArrowDown" ? 1 : -1);
        e.preventDefault();
      } else if (e.key === "Enter") {
        const chosen = this.found[this.foundIndex >= 0 ? this.foundIndex : 0];
        if (chosen) this._choose(chosen);
        e.preventDefault();
      } else if (e.key === "Escape") {
        this._closeSearch();
        this.list.focus();
        e.preventDefault();
        e.stopPropagation();
      }
    });
    this.results.addEventListener("mousedown", (e) => {
      const li = e.target.closest("li");
      if (li) this._choose(this.found[Number(li.dataset.index)]);
      e.preventDefault();
    });
    this.search.addEventListener("blur", () => setTimeout(() => this._closeSearch(), 100));
  }

  async _runSearch() {
    const text = this.search.value.trim();
    const seq = ++this._searchSeq;
    if (!text) {
      this._closeSearch();
      return;
    }
    let found;
    try {
      found = await this.session.get(`/instruments/search?q=${encodeURIComponent(text)}&limit=15`);
    } catch (err) {
      toast("error", describeError(err));
      return;
    }
    if (seq !== this._searchSeq) return; // a newer search has started
    this.found = found;
    this.foundIndex = found.length ? 0 : -1;
    this.results.innerHTML = found.length
      ? found
          .map(
            (i, n) =>
              `<li role="option" data-index="${n}" aria-selected="${n === 0}">` +
              `<span>${escapeHtml(i.symbol)}</span><span class="muted">${escapeHtml(i.name)}</span>` +
              `<span class="exch">${escapeHtml(i.exchange)}</span></li>`,
          )
          .join("")
      : `<li class="muted">No instrument matches “${escapeHtml(text)}”</li>`;
    this.results.hidden = false;
  }

  _moveFound(delta) {
    if (!this.found.length) return;
    this.foundIndex = Math.max(0, Math.min(this.found.length - 1, this.foundIndex + delta));
    [...this.results.children].forEach((li, n) => li.setAttribute("aria-selected", String(n === this.foundIndex)));
    this.results.children[this.foundIndex]?.scrollIntoView({ block: "nearest" });
  }

  async _choose(instrument) {
    this.store.remember(instrument);
    this._closeSearch();
    this.search.value = "";
    await this.add(instrument.key);
    this._select(instrument.key);
    this.list.focus();
  }

  _closeSearch() {
    this.results.hidden = true;
    this.found = [];
    this.foundIndex = -1;
  }
}
