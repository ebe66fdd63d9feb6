// Candlestick chart with volume: history from the candles API, then the live candle from the
// candles:<instrument>:<interval> channel. Times are shifted to IST for the axis labels.
import {
  CandlestickSeries,
  ColorType,
  HistogramSeries,
  createChart,
} from "../../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";
import { schedule } from "../frame.js";
import { escapeHtml, percent, rupees, trendClass } from "../format.js";
import { describeError, toast } from "./toasts.js";

const IST_OFFSET_S = 19_800;
const HISTORY_S = { "1m": 2 * 86_400, "5m": 7 * 86_400, "15m": 20 * 86_400, "1h": 60 * 86_400, "1d": 730 * 86_400 };

function bar(candle) {
  return {
    time: candle.time + IST_OFFSET_S,
    open: Number(candle.open),
    high: Number(candle.high),
    low: Number(candle.low),
    close: Number(candle.close),
  };
}

function volumeBar(candle) {
  const up = Number(candle.close) >= Number(candle.open);
  return { time: candle.time + IST_OFFSET_S, value: candle.volume, color: up ? "#26a26955" : "#e5484d55" };
}

export class ChartPanel {
  constructor(store) {
    this.store = store;
    this.session = store.session;
    this.title = document.getElementById("chart-title");
    this.quoteEl = document.getElementById("chart-quote");
    this.buttons = document.getElementById("intervals");
    this.interval = localStorage.getItem("shardline.interval") || "5m";
    this.key = null;
    this.stops = [];
    this.last = null;
    this._loadSeq = 0;
    this.chart = createChart(document.getElementById("chart"), {
      autoSize: true,
      // The library's own logo injects an inline <style>, which the CSP refuses; the attribution
      // (link to tradingview.com) is in the chart panel's header instead.
      layout: {
        background: { type: ColorType.Solid, color: "#16191f" },
        textColor: "#9aa3b2",
        fontSize: 11,
        attributionLogo: false,
      },
      grid: { vertLines: { color: "#1f232b" }, horzLines: { color: "#1f232b" } },
      rightPriceScale: { borderColor: "#262b35" },
      timeScale: { borderColor: "#262b35", timeVisible: true, secondsVisible: false },
      crosshair: { mode: 0 },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: "#26a269",
      downColor: "#e5484d",
      borderVisible: false,
      wickUpColor: "#26a269",
      wickDownColor: "#e5484d",
    });
    this.volume = this.chart.addSeries(HistogramSeries, { priceScaleId: "volume", priceFormat: { type: "volume" } });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.buttons.addEventListener("click", (e) => {
      const interval = e.target.closest("button")?.dataset.interval;
      if (interval) this.setInterval(interval);
    });
    store.addEventListener("select", (e) => this.show(e.detail.key));
    this._markInterval();
  }

  setInterval(interval) {
    if (interval === this.interval) return;
    this.interval = interval;
    localStorage.setItem("shardline.interval", interval);
    this._markInterval();
    if (this.key) this.show(this.key, true);
  }

  _markInterval() {
    for (const b of this.buttons.querySelectorAll("button")) b.classList.toggle("active", b.dataset.interval === this.interval);
  }

  async show(key, force = false) {
    if (key === this.key && !force) return;
    for (const stop of this.stops) stop();
    this.stops = [];
    this.key = key;
    this.last = null;
    const seq = ++this._loadSeq;
    const instrument = await this.store.instrument(key).catch(() => null);
    if (seq !== this._loadSeq) return;
    this.title.innerHTML = instrument
      ? `${escapeHtml(instrument.symbol)} <span class="muted">${escapeHtml(instrument.exchange)} · ${escapeHtml(instrument.name)}</span>`
      : escapeHtml(key);
    const to = Math.floor(Date.now() / 1000);
    const from = to - HISTORY_S[this.interval];
    let history = [];
    try {
      history = await this.session.get(`/instruments/${encodeURIComponent(key)}/candles?interval=${this.interval}&from=${from}&to=${to}`);
    } catch (err) {
      if (err.status !== 503) toast("warn", `No candle history for ${instrument?.symbol ?? key}: ${describeError(err)}`);
    }
    if (seq !== this._loadSeq) return;
    this.candles.setData(history.map(bar));
    this.volume.setData(history.map(volumeBar));
    this.last = history.length ? history[history.length - 1] : null;
    this.chart.timeScale().scrollToRealTime();
    this.stops.push(
      this.store.connection.subscribe(`candles:${key}:${this.interval}`, (message, arrivedAt) => {
        if (message.data) this._live(message.data, arrivedAt);
      }),
      this.store.watchQuote(key, (quote, arrivedAt) => this._quote(quote, arrivedAt)),
    );
  }

  _live(candle, arrivedAt) {
    // The live candle may continue the last one from history: keep that candle's open and
    // extremes, and add the volume traded since.
    const last = this.last;
    let merged = candle;
    if (last && last.time === candle.time && !last.live) {
      merged = {
        ...candle,
        open: last.open,
        high: String(Math.max(Number(last.high), Number(candle.high))),
        low: String(Math.min(Number(last.low), Number(candle.low))),
        volume: last.volume + candle.volume,
        base: last,
      };
    } else if (last?.base && last.time === candle.time) {
      const base = last.base;
      merged = {
        ...candle,
        open: base.open,
        high: String(Math.max(Number(base.high), Number(candle.high))),
        low: String(Math.min(Number(base.low), Number(candle.low))),
        volume: base.volume + candle.volume,
        base,
      };
    } else if (last && candle.time < last.time) {
      return;
    }
    merged.live = true;
    this.last = merged;
    schedule(this.candles, () => {
      this.candles.update(bar(merged));
      this.volume.update(volumeBar(merged));
    }, arrivedAt);
  }

  _quote(quote, arrivedAt) {
    const close = Number(quote.close);
    const change = close > 0 ? Number(quote.ltp) - close : null;
    schedule(this.quoteEl, () => {
      this.quoteEl.innerHTML =
        `<span class="${trendClass(change)}">${rupees(quote.ltp)}</span>` +
        (change !== null ? ` <span class="${trendClass(change)}">${percent((change / close) * 100)}</span>` : "") +
        ` <span class="muted">vol ${Number(quote.volume || 0).toLocaleString("en-IN")}</span>`;
    }, arrivedAt);
  }
}
