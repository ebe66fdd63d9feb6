// Execution heatmap: one row per instrument, one cell per recent order, coloured by the order's
// submit-to-acknowledgement latency or by its fill slippage against the last price at submission.
import { escapeHtml } from "../format.js";

const COLUMNS = 12;
const ROWS = 8;

export class Heatmap {
  constructor() {
    this.el = document.getElementById("heatmap");
    this.legend = document.getElementById("heatmap-legend");
    this.mode = "latency";
    this.orders = new Map(); // client_order_id -> {symbol, side, latencyMs, reference, slippageBps}
    document.getElementById("heatmap-mode").addEventListener("click", (e) => {
      const mode = e.target.closest("button")?.dataset.mode;
      if (!mode) return;
      this.mode = mode;
      for (const b of e.currentTarget.querySelectorAll("button")) b.classList.toggle("active", b.dataset.mode === mode);
      this.render();
    });
    this.render();
  }

  record(entry) {
    this.orders.set(entry.id, { ...entry, slippageBps: null });
    while (this.orders.size > ROWS * COLUMNS * 2) this.orders.delete(this.orders.keys().next().value);
    this.render();
  }

  /** A fill's average price for an order placed here: slippage in basis points, adverse positive. */
  fill(id, avgPrice) {
    const entry = this.orders.get(id);
    if (!entry || !entry.reference || !Number(avgPrice)) return;
    const sign = entry.side === "BUY" ? 1 : -1;
    entry.slippageBps = ((Number(avgPrice) - entry.reference) / entry.reference) * 10_000 * sign;
    this.render();
  }

  render() {
    const bySymbol = new Map();
    for (const entry of this.orders.values()) {
      const list = bySymbol.get(entry.symbol) ?? [];
      list.push(entry);
      bySymbol.set(entry.symbol, list);
    }
    const symbols = [...bySymbol.keys()].slice(-ROWS);
    const value = (e) => (this.mode === "latency" ? e.latencyMs : e.slippageBps);
    const values = [...this.orders.values()].map(value).filter((v) => v !== null && Number.isFinite(v));
    const worst = Math.max(1e-9, ...values.map(Math.abs));
    this.el.style.gridTemplateColumns = `70px repeat(${COLUMNS}, 1fr)`;
    const cells = [];
    for (const symbol of symbols) {
      cells.push(`<span class="label" title="${escapeHtml(symbol)}">${escapeHtml(symbol)}</span>`);
      const entries = bySymbol.get(symbol).slice(-COLUMNS);
      for (let i = 0; i < COLUMNS; i += 1) {
        const e = entries[i];
        const v = e ? value(e) : null;
        if (v === null || v === undefined) {
          cells.push('<span class="cell"></span>');
          continue;
        }
        const t = Math.min(1, Math.abs(v) / worst);
        const hue = this.mode === "latency" || v > 0 ? 0 : 140; // red is slow or adverse; green is price improvement
        const unit = this.mode === "latency" ? `${v.toFixed(1)} ms` : `${v.toFixed(1)} bp`;
        cells.push(`<span class="cell" data-v="${v}" title="${escapeHtml(e.id)}: ${unit}" data-hue="${hue}" data-t="${t.toFixed(3)}"></span>`);
      }
    }
    this.el.innerHTML = cells.join("") || '<span class="empty">No orders from this terminal yet</span>';
    for (const cell of this.el.querySelectorAll(".cell[data-t]")) {
      const t = Number(cell.dataset.t);
      cell.style.background = `hsl(${cell.dataset.hue} 65% ${18 + t * 32}%)`;
    }
    this.legend.textContent = values.length
      ? this.mode === "latency"
        ? `submit → acknowledged; worst ${worst.toFixed(1)} ms`
        : `fill vs last price at submit; worst ${worst.toFixed(1)} bp`
      : "";
  }
}
