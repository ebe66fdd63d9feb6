// Formatting for the terminal. Prices arrive as exact rupee strings ("2345.60"); they are shown as
// they are (with grouping), and parsed to numbers only for arithmetic like P&L and change.

const grouping = new Intl.NumberFormat("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const qtyFormat = new Intl.NumberFormat("en-IN");

/** A rupee string or number for display: "234560.5" -> "2,34,560.50". */
export function rupees(value) {
  if (value === null || value === undefined || value === "") return "—";
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isFinite(n)) return String(value);
  return grouping.format(n);
}

export function signedRupees(value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return "—";
  return (n > 0 ? "+" : "") + grouping.format(n);
}

export function quantity(value) {
  return value === null || value === undefined ? "—" : qtyFormat.format(value);
}

export function percent(value) {
  if (!Number.isFinite(value)) return "";
  const text = value.toFixed(2);
  if (text === "-0.00" || text === "0.00") return "0.00%";
  return (value > 0 ? "+" : "") + text + "%";
}

export function clock(tsNs) {
  if (!tsNs) return "";
  const d = new Date(Number(BigInt(tsNs) / 1000000n));
  return d.toLocaleTimeString("en-IN", { hour12: false, timeZone: "Asia/Kolkata" });
}

export function trendClass(value) {
  const n = Number(value);
  return n > 0 ? "up" : n < 0 ? "down" : "";
}

/** Rupees to paise as an integer, exactly, from what a user typed ("812.5" -> 81250); null if not a price. */
export function toPaise(text) {
  const match = /^\s*(\d+)(?:\.(\d{1,2}))?\s*$/.exec(String(text ?? ""));
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] ?? "").padEnd(2, "0"));
}

export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
