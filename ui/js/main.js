// The terminal: sign in, connect, and wire the panels and the keyboard together.
import { ApiError, Session } from "./api.js";
import { Connection } from "./connection.js";
import { perf } from "./frame.js";
import { rupees, signedRupees } from "./format.js";
import { Books } from "./panels/books.js";
import { ChartPanel } from "./panels/chart.js";
import { DepthPanel } from "./panels/depth.js";
import { Heatmap } from "./panels/heatmap.js";
import { Ticket } from "./panels/ticket.js";
import { describeError, toast } from "./panels/toasts.js";
import { Watchlist } from "./panels/watchlist.js";
import { TerminalStore } from "./store.js";

const session = new Session();
const connection = new Connection(session);
const store = new TerminalStore(session, connection);
let panels = null;

function showConnection({ state, retryInMs }) {
  const el = document.getElementById("connection");
  el.dataset.state = state;
  el.querySelector("span").textContent =
    state === "reconnecting" ? `reconnecting in ${(retryInMs / 1000).toFixed(1)}s` : state;
}

function showPerf() {
  const { latency_ms: latency, render_ms: render } = perf.summary();
  document.getElementById("perf").textContent =
    latency.count > 0 ? `paint p99 ${latency.p99.toFixed(1)} ms · frame p99 ${render.p99.toFixed(2)} ms` : "";
}

async function showSummary() {
  if (!session.accessToken) return;
  try {
    const s = await session.get("/portfolio/summary");
    document.getElementById("summary").innerHTML =
      `equity <b>₹${rupees(s.equity)}</b> · available <b>₹${rupees(s.margin_available)}</b> · ` +
      `P&L <b class="${Number(s.net_pnl) >= 0 ? "up" : "down"}">${signedRupees(s.net_pnl)}</b>`;
  } catch {
    document.getElementById("summary").textContent = "";
  }
}

function askLogin() {
  const dialog = document.getElementById("login");
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  return new Promise((resolve) => {
    const onSubmit = async (event) => {
      event.preventDefault();
      error.textContent = "";
      try {
        await session.login(form.elements.username.value, form.elements.password.value);
        form.removeEventListener("submit", onSubmit);
        form.reset();
        dialog.close();
        resolve();
      } catch (err) {
        error.textContent = err instanceof ApiError && err.status === 401 ? "Wrong user or password" : describeError(err);
      }
    };
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", (e) => e.preventDefault()); // Esc does not skip the sign-in
    dialog.showModal();
    form.elements.username.focus();
  });
}

function typing(target) {
  return target instanceof HTMLElement && (target.matches("input, select, textarea") || target.isContentEditable);
}

function onKey(event) {
  if (!panels || document.querySelector("dialog[open]")) return; // dialogs handle their own keys
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (typing(event.target)) return;
  const { watchlist, ticket, books } = panels;
  const key = event.key;
  const handled = (() => {
    switch (key) {
      case "/":
        document.getElementById("search").focus();
        return true;
      case "b":
      case "B":
        ticket.open({ side: "BUY" });
        return true;
      case "s":
      case "S":
        ticket.open({ side: "SELL" });
        return true;
      case "g":
      case "G":
        ticket.open({ side: "SELL", kind: "gtt" });
        return true;
      case "f":
      case "F":
        books.flatten();
        return true;
      case "?":
        document.getElementById("help").showModal();
        return true;
      case "ArrowDown":
      case "ArrowUp":
        if (event.target.closest?.(".books")) books.moveSelection(key === "ArrowDown" ? 1 : -1);
        else {
          watchlist.move(key === "ArrowDown" ? 1 : -1);
          document.getElementById("watchlist").focus();
        }
        return true;
      case "Enter":
      case "Delete":
        return books.actOnSelection(key);
      default:
        if (/^[1-7]$/.test(key)) {
          books.show(["positions", "orders", "trades", "gtt", "brackets", "deployments", "risk"][Number(key) - 1]);
          return true;
        }
        return false;
    }
  })();
  if (handled) event.preventDefault();
}

async function start() {
  connection.addEventListener("state", (e) => showConnection(e.detail));
  connection.addEventListener("server-error", (e) => toast("error", e.detail.message));
  document.getElementById("logout").addEventListener("click", () => session.logout());
  // Signed out (by the button, or because the refresh token expired): start again at the sign-in.
  session.addEventListener("change", () => {
    if (!session.accessToken && panels) location.reload();
  });
  document.getElementById("help-button").addEventListener("click", () => document.getElementById("help").showModal());
  if (!session.accessToken) await askLogin();
  else await session.get("/auth/me").catch(async () => {
    session.logout();
    await askLogin();
  });
  document.getElementById("whoami").textContent = `${session.user.username} · ${session.user.role}`;
  connection.start();
  const heatmap = new Heatmap();
  const ticket = new Ticket(store, heatmap);
  const books = new Books(store, ticket, heatmap);
  panels = { watchlist: new Watchlist(store), chart: new ChartPanel(store), depth: new DepthPanel(store), ticket, books };
  document.getElementById("open-buy").addEventListener("click", () => ticket.open({ side: "BUY" }));
  document.getElementById("open-sell").addEventListener("click", () => ticket.open({ side: "SELL" }));
  document.addEventListener("keydown", onKey);
  books.start();
  await panels.watchlist.start().catch((err) => toast("error", describeError(err)));
  document.getElementById("watchlist").focus();
  showSummary();
  setInterval(showSummary, 5_000);
  setInterval(showPerf, 1_000);
  window.__shardlineReady = true;
}

start().catch((err) => toast("error", describeError(err)));
