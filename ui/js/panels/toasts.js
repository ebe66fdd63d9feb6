// Short notices in the corner: fills, rejections with their reason, errors.
import { escapeHtml } from "../format.js";

const MAX_TOASTS = 5;

export function toast(kind, text, ms = 5000) {
  const box = document.getElementById("toasts");
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  el.innerHTML = escapeHtml(text);
  box.append(el);
  while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
  setTimeout(() => el.remove(), ms);
  return el;
}

/** A REST or validation error as one readable line. */
export function describeError(err) {
  if (err?.detail?.length) return err.detail.map((d) => (d.field ? `${d.field}: ${d.reason}` : d.reason)).join("; ");
  return err?.message || String(err);
}
