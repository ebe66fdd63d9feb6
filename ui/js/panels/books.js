// Positions (live P&L, square-off), orders (modify, cancel), trades, GTT, brackets, deployments.
import { schedule } from "../frame.js";
import { clock, escapeHtml, quantity, rupees, signedRupees, trendClass } from "../format.js";
import { confirmAction } from "./dialogs.js";
import { describeError, toast } from "./toasts.js";

const ACTIVE = new Set(["PENDING", "OPEN", "TRIGGER_PENDING", "PARTIALLY_FILLED"]);
const TERMINAL = new Set(["FILLED", "CANCELLED", "REJECTED"]);
// Strategies can place thousands of orders a day: the books render the most recent rows only
// (everything stays available from the REST API).
const MAX_ROWS = 200;
const MANUAL = "manual";
const TABS = ["positions", "orders", "trades", "gtt", "brackets", "deployments", "risk"];

function table(el, head, rows, empty) {
  el.innerHTML =
    `<thead><tr>${head.map(([label, cls]) => `<th class="${cls ?? ""}">${label}</th>`).join("")}</tr></thead>` +
    `<tbody>${rows.length ? rows.join("") : `<tr class="empty"><td colspan="${head.length}">${empty}</td></tr>`}</tbody>`;
}

export class Books {
  constructor(store, ticket, heatmap) {
    this.store = store;
    this.session = store.session;
    this.ticket = ticket;
    this.heatmap = heatmap;
    this.tab = "positions";
    this.positions = new Map(); // "book|instrument|product" -> position
    this.positionQuotes = new Map(); // instrument -> stop()
    this.orders = new Map(); // client_order_id -> order
    this.deployments = new Map();
    this.symbols = new Map();
    this.selectedOrder = null;
    this._refreshTimer = null;
    this.pnlTotal = document.getElementById("pnl-total");
    this._bind();
  }

  start() {
    const c = this.store.connection;
    c.subscribe("orders", (m, t) => this._onOrders(m, t));
    c.subscribe("positions", (m, t) => this._onPositions(m, t));
    c.subscribe("deployments", (m) => this._onDeployments(m));
    c.subscribe("alerts", (m) => {
      if (m.type === "update" && m.data?.message) toast(m.data.level === "error" ? "error" : "warn", m.data.message);
    });
    this.refreshLists();
  }

  show(tab) {
    if (!TABS.includes(tab)) return;
    this.tab = tab;
    for (const b of document.querySelectorAll("#book-tabs button[data-tab]")) b.classList.toggle("active", b.dataset.tab === tab);
    for (const body of document.querySelectorAll(".tab-body")) body.hidden = body.dataset.tab !== tab;
    if (tab === "trades" || tab === "gtt" || tab === "brackets") this.refreshLists();
    clearInterval(this._riskTimer);
    if (tab === "risk") {
      this.refreshRisk();
      this._riskTimer = setInterval(() => this.refreshRisk(), 5_000);
    }
  }

  // Risk -------------------------------------------------------------------------------------------

  async refreshRisk() {
    let state;
    try {
      state = await this.session.get("/risk");
    } catch (err) {
      table(document.getElementById("risk"), [["Risk"]], [], escapeHtml(describeError(err)));
      return;
    }
    const admin = this.session.can("admin");
    const row = (book, label, risk) => {
      const kill = risk.kill_switch ?? risk.global_kill_switch ?? {};
      const button = admin
        ? `<button data-action="kill" data-book="${escapeHtml(book)}" data-engage="${!kill.engaged}">${kill.engaged ? "Release" : "Engage"}</button>`
        : "";
      const pnl = risk.pnl ?? "";
      return (
        `<tr><td>${escapeHtml(label)}</td>` +
        `<td><span class="status ${kill.engaged ? "REJECTED" : "FILLED"}">${kill.engaged ? "KILL SWITCH ON" : "trading"}</span></td>` +
        `<td class="muted">${escapeHtml(kill.reason ?? "")}</td>` +
        `<td class="num ${trendClass(pnl)}">${pnl === "" ? "" : signedRupees(pnl)}</td>` +
        `<td class="num">${risk.realized_pnl !== undefined ? signedRupees(risk.realized_pnl) : ""}</td>` +
        `<td class="num">${risk.charges !== undefined ? rupees(risk.charges) : ""}</td><td>${button}</td></tr>`
      );
    };
    const rows = [row("", "All books", state)];
    for (const [book, risk] of Object.entries(state.books ?? {})) rows.push(row(book, book, risk));
    table(
      document.getElementById("risk"),
      [["Book"], ["State"], ["Reason"], ["P&L", "num"], ["Realized", "num"], ["Charges", "num"], [""]],
      rows,
      "No risk state",
    );
    const limits = Object.entries(state.limits ?? {}).map(
      ([scope, l]) =>
        `<tr><td>${escapeHtml(scope)}</td><td class="num">${quantity(l.max_order_qty)}</td>` +
        `<td class="num">${rupees(l.max_order_value_rupees)}</td><td class="num">${l.price_band_pct}%</td>` +
        `<td class="num">${quantity(l.max_position_qty)}</td><td class="num">${rupees(l.daily_loss_limit_rupees)}</td></tr>`,
    );
    table(
      document.getElementById("risk-limits"),
      [["Limits"], ["Max qty", "num"], ["Max value ₹", "num"], ["Price band", "num"], ["Max position", "num"], ["Daily loss ₹", "num"]],
      limits,
      "",
    );
  }

  symbol(key) {
    const known = this.store.instruments.get(key);
    if (known) return known.symbol;
    if (!this.symbols.has(key)) {
      this.symbols.set(key, key);
      this.store.instrument(key).then(() => this._renderAll(), () => {});
    }
    return key;
  }

  // Orders ---------------------------------------------------------------------------------------

  _onOrders(message, arrivedAt) {
    if (message.type === "snapshot") {
      this.orders.clear();
      for (const order of message.data ?? []) this.orders.set(order.client_order_id, order);
    } else {
      const update = message.data;
      const before = this.orders.get(update.client_order_id);
      // The hub delivers each order's states in order; only a REST answer can have raced ahead, so
      // never let a finished order look active again. (Timestamps come from different clocks:
      // venue fills carry the exchange's time.)
      if (before && TERMINAL.has(before.status) && update.status && !TERMINAL.has(update.status)) return;
      const order = { ...before, ...update };
      this.orders.set(update.client_order_id, order);
      if (update.book === MANUAL) {
        // Toasts and list refreshes follow the trader's own book; strategies' orders are in the book.
        this._announce(before, update);
        this._scheduleRefresh();
      }
      if (!this._visible(order)) return;
      if (this.orderRows?.has(update.client_order_id)) {
        const id = update.client_order_id;
        schedule(`order:${id}`, () => this._updateOrderRow(id), arrivedAt);
        return;
      }
    }
    schedule("orders", () => this._renderOrders(), arrivedAt);
  }

  _announce(before, update) {
    const what = `${update.side ?? before?.side ?? ""} ${this.symbol(update.instrument)}`.trim();
    if (update.status === "REJECTED" && before?.status !== "REJECTED") {
      toast("error", `Rejected ${what}: ${update.reason || "no reason given"}`);
    } else if (update.filled_quantity > (before?.filled_quantity ?? 0)) {
      const done = update.status === "FILLED" ? "Filled" : "Partly filled";
      toast("ok", `${done} ${what} ${quantity(update.filled_quantity)} @ ${rupees(update.avg_price)}`);
      if (update.status === "FILLED") this.heatmap.fill(update.client_order_id, update.avg_price);
    } else if (update.status === "CANCELLED" && before && before.status !== "CANCELLED") {
      toast("warn", `Cancelled ${what}${update.reason ? `: ${update.reason}` : ""}`);
    }
  }

  _visible(order) {
    return order.book === MANUAL || Boolean(document.getElementById("orders-all-books")?.checked);
  }

  _orderCells(o) {
    const id = escapeHtml(o.client_order_id);
    const price = o.price && Number(o.price) ? rupees(o.price) : o.order_type === "MARKET" ? "MKT" : "—";
    return (
      `<td>${clock(o.ts_ns)}</td><td>${id}</td><td class="muted">${escapeHtml(o.book)}</td>` +
      `<td>${escapeHtml(this.symbol(o.instrument))}</td>` +
      `<td class="${o.side === "BUY" ? "up" : "down"}">${escapeHtml(o.side ?? "")}</td>` +
      `<td>${escapeHtml(o.order_type ?? "")}</td>` +
      `<td class="num">${quantity(o.filled_quantity)}/${quantity(o.quantity)}</td>` +
      `<td class="num">${price}</td><td class="num">${Number(o.avg_price) ? rupees(o.avg_price) : ""}</td>` +
      `<td><span class="status ${escapeHtml(o.status)}">${escapeHtml(o.status)}</span></td>` +
      `<td class="muted">${escapeHtml(o.reason ?? "")}</td>`
    );
  }

  _orderActions(o) {
    if (!ACTIVE.has(o.status) || !this.session.can("trade")) return "";
    const id = escapeHtml(o.client_order_id);
    return `<button data-action="modify" data-id="${id}">Modify</button> <button data-action="cancel" data-id="${id}">Cancel</button>`;
  }

  _renderOrders() {
    const allBooks = document.getElementById("orders-all-books")?.checked;
    this.orderRows = new Map();
    const visible = [...this.orders.values()]
      .filter((o) => this._visible(o))
      .sort((a, b) => (b.ts_ns ?? 0) - (a.ts_ns ?? 0))
      .slice(0, MAX_ROWS);
    const rows = visible.map(
      (o) =>
        `<tr data-id="${escapeHtml(o.client_order_id)}" aria-selected="${o.client_order_id === this.selectedOrder}">` +
        `${this._orderCells(o)}<td>${this._orderActions(o)}</td></tr>`,
    );
    const el = document.getElementById("orders");
    table(
      el,
      [["Time"], ["Id"], ["Book"], ["Instrument"], ["Side"], ["Type"], ["Qty", "num"], ["Price", "num"], ["Avg", "num"], ["Status"], ["Reason"], [""]],
      rows,
      allBooks ? "No orders today" : "No manual orders today",
    );
    for (const o of visible) {
      const tr = el.querySelector(`tr[data-id="${CSS.escape(o.client_order_id)}"]`);
      if (tr) this.orderRows.set(o.client_order_id, { tr, cells: this._orderCells(o), actions: this._orderActions(o) });
    }
  }

  /** Rewrite one order's row in place: its buttons stay put unless whether it can be cancelled changed. */
  _updateOrderRow(id) {
    const row = this.orderRows?.get(id);
    const order = this.orders.get(id);
    if (!row || !order || !row.tr.isConnected) {
      this._renderOrders();
      return;
    }
    const cells = this._orderCells(order);
    if (cells !== row.cells) {
      const scratch = document.createElement("tbody");
      scratch.innerHTML = `<tr>${cells}</tr>`;
      const fresh = [...scratch.firstElementChild.children];
      [...row.tr.children].slice(0, -1).forEach((td, i) => td.replaceWith(fresh[i]));
      row.cells = cells;
    }
    const actions = this._orderActions(order);
    if (actions !== row.actions) {
      row.tr.lastElementChild.innerHTML = actions;
      row.actions = actions;
    }
  }

  async cancelOrder(id) {
    try {
      const order = await this.session.delete(`/orders/${encodeURIComponent(id)}`);
      this.orders.set(id, { ...this.orders.get(id), ...order });
      schedule(`order:${id}`, () => this._updateOrderRow(id));
    } catch (err) {
      toast("error", `Cancel ${id}: ${describeError(err)}`);
    }
  }

  // Positions ------------------------------------------------------------------------------------

  _onPositions(message, arrivedAt) {
    if (message.type === "snapshot") {
      this.positions.clear();
      for (const p of message.data ?? []) this.positions.set(`${p.book}|${p.instrument}|${p.product}`, p);
    } else {
      const p = message.data;
      this.positions.set(`${p.book}|${p.instrument}|${p.product}`, p);
    }
    this._followPositionQuotes();
    schedule("positions", () => this._renderPositions(), arrivedAt);
  }

  _followPositionQuotes() {
    const wanted = new Set([...this.positions.values()].filter((p) => p.quantity !== 0).map((p) => p.instrument));
    for (const [instrument, stop] of this.positionQuotes) {
      if (!wanted.has(instrument)) {
        stop();
        this.positionQuotes.delete(instrument);
      }
    }
    for (const instrument of wanted) {
      if (!this.positionQuotes.has(instrument)) {
        this.positionQuotes.set(
          instrument,
          this.store.watchQuote(instrument, (_, arrivedAt) => schedule("positions-pnl", () => this._refreshPnl(), arrivedAt)),
        );
      }
    }
  }

  /** A position's P&L at the latest price this terminal has seen (the actor's mark otherwise). */
  livePnl(p) {
    const ltp = Number(this.store.quotes.get(p.instrument)?.ltp ?? p.last_price);
    const realized = Number(p.realized_pnl ?? 0);
    const charges = Number(p.charges ?? 0);
    const unrealized = Number.isFinite(ltp) && p.quantity ? p.quantity * (ltp - Number(p.avg_price)) : Number(p.unrealized_pnl ?? 0);
    return { ltp, unrealized, net: realized + unrealized - charges };
  }

  _renderPositions() {
    const sorted = [...this.positions.entries()].sort(([, a], [, b]) => Math.abs(b.quantity) - Math.abs(a.quantity));
    const rows = sorted.map(([key, p]) => {
      const action = p.quantity !== 0 && this.session.can("trade")
        ? `<button data-action="square-off" data-book="${escapeHtml(p.book)}" data-instrument="${escapeHtml(p.instrument)}">Exit</button>`
        : "";
      return (
        `<tr data-position="${escapeHtml(key)}"><td>${escapeHtml(p.symbol ?? this.symbol(p.instrument))}</td>` +
        `<td class="muted">${escapeHtml(p.book)}</td><td>${escapeHtml(p.product)}</td>` +
        `<td class="num ${trendClass(p.quantity)}">${quantity(p.quantity)}</td><td class="num">${rupees(p.avg_price)}</td>` +
        `<td class="num ltp"></td><td class="num pnl"></td><td>${action}</td></tr>`
      );
    });
    table(
      document.getElementById("positions"),
      [["Instrument"], ["Book"], ["Product"], ["Qty", "num"], ["Avg", "num"], ["LTP", "num"], ["P&L", "num"], [""]],
      rows,
      "No positions",
    );
    this.positionRows = new Map();
    for (const tr of document.querySelectorAll("#positions tbody tr[data-position]")) {
      this.positionRows.set(tr.dataset.position, { ltp: tr.querySelector(".ltp"), pnl: tr.querySelector(".pnl") });
    }
    this._refreshPnl();
  }

  /** Live P&L: only the LTP and P&L cells change with prices; rows (and their buttons) stay. */
  _refreshPnl() {
    let total = 0;
    for (const [key, cells] of this.positionRows ?? []) {
      const p = this.positions.get(key);
      if (!p) continue;
      const { ltp, net } = this.livePnl(p);
      total += net;
      cells.ltp.textContent = Number.isFinite(ltp) ? rupees(ltp) : "—";
      cells.pnl.textContent = signedRupees(net);
      cells.pnl.className = `num pnl ${trendClass(net)}`;
      cells.pnl.dataset.pnl = net.toFixed(2);
    }
    this.pnlTotal.textContent = this.positions.size ? `P&L ${signedRupees(total)}` : "";
    this.pnlTotal.className = `pnl ${trendClass(total)}`;
  }

  // Trades, GTT, brackets (fetched: they change only when orders do) ---------------------------------

  _scheduleRefresh() {
    // At most one refresh in flight and one a second.
    if (this._refreshTimer) return;
    this._refreshTimer = setTimeout(async () => {
      await this.refreshLists();
      this._refreshTimer = null;
    }, 1000);
  }

  async refreshLists() {
    const [trades, gtts, brackets] = await Promise.all([
      this.session.get(`/trades?book=${MANUAL}`).catch(() => null),
      this.session.get(`/gtt?book=${MANUAL}`).catch(() => null),
      this.session.get(`/brackets?book=${MANUAL}`).catch(() => null),
    ]);
    if (trades) this.trades = trades;
    if (gtts) this.gtts = gtts;
    if (brackets) this.brackets = brackets;
    this._renderLists();
  }

  _renderLists() {
    const trades = (this.trades ?? []).slice(-MAX_ROWS).reverse().map(
      (t) =>
        `<tr><td>${clock(t.ts_ns)}</td><td>${escapeHtml(t.trade_id)}</td><td>${escapeHtml(this.symbol(t.instrument))}</td>` +
        `<td class="${t.side === "BUY" ? "up" : "down"}">${escapeHtml(t.side)}</td><td class="num">${quantity(t.quantity)}</td>` +
        `<td class="num">${rupees(t.price)}</td><td class="num">${rupees(t.charges)}</td><td class="muted">${escapeHtml(t.client_order_id)}</td></tr>`,
    );
    table(
      document.getElementById("trades"),
      [["Time"], ["Trade"], ["Instrument"], ["Side"], ["Qty", "num"], ["Price", "num"], ["Charges", "num"], ["Order"]],
      trades,
      "No trades today",
    );
    const canTrade = this.session.can("trade");
    const gtts = (this.gtts ?? []).slice(-MAX_ROWS).reverse().map((g) => {
      const legs = (g.legs ?? []).map((l) => `${escapeHtml(l.role)} ${rupees(l.trigger_price)} → ${rupees(l.price)}`).join("<br>");
      const action = g.status === "ACTIVE" && canTrade ? `<button data-action="gtt-cancel" data-id="${escapeHtml(g.gtt_id)}">Cancel</button>` : "";
      return (
        `<tr><td>${escapeHtml(g.gtt_id)}</td><td>${escapeHtml(this.symbol(g.instrument))}</td><td>${escapeHtml(g.side)}</td>` +
        `<td class="num">${quantity(g.quantity)}</td><td>${legs}</td><td><span class="status ${escapeHtml(g.status)}">${escapeHtml(g.status)}</span></td>` +
        `<td class="muted">${escapeHtml(g.reason ?? "")}</td><td>${action}</td></tr>`
      );
    });
    table(
      document.getElementById("gtt"),
      [["Id"], ["Instrument"], ["Side"], ["Qty", "num"], ["Legs"], ["Status"], ["Reason"], [""]],
      gtts,
      "No GTT rules",
    );
    const brackets = (this.brackets ?? []).slice(-MAX_ROWS).reverse().map((b) => {
      const live = b.status === "PENDING" || b.status === "ACTIVE";
      const action = live && canTrade ? `<button data-action="bracket-cancel" data-id="${escapeHtml(b.bracket_id)}">Cancel</button>` : "";
      return (
        `<tr><td>${escapeHtml(b.bracket_id)}</td><td>${escapeHtml(this.symbol(b.instrument))}</td><td>${escapeHtml(b.side)}</td>` +
        `<td class="num">${quantity(b.entry_filled)}/${quantity(b.quantity)}</td><td class="num">${Number(b.entry_price) ? rupees(b.entry_price) : "MKT"}</td>` +
        `<td class="num">${rupees(b.stop_loss)}</td><td class="num">${rupees(b.target)}</td>` +
        `<td><span class="status ${escapeHtml(b.status)}">${escapeHtml(b.status)}</span></td><td class="muted">${escapeHtml(b.reason ?? "")}</td><td>${action}</td></tr>`
      );
    });
    table(
      document.getElementById("brackets"),
      [["Id"], ["Instrument"], ["Side"], ["Filled", "num"], ["Entry", "num"], ["Stop", "num"], ["Target", "num"], ["Status"], ["Reason"], [""]],
      brackets,
      "No brackets",
    );
  }

  // Deployments ----------------------------------------------------------------------------------

  _onDeployments(message) {
    if (message.type === "snapshot") {
      this.deployments.clear();
      for (const d of message.data ?? []) this.deployments.set(d.name, d);
    } else if (message.data?.name) {
      this.deployments.set(message.data.name, { ...this.deployments.get(message.data.name), ...message.data });
    }
    schedule("deployments", () => this._renderDeployments());
  }

  _renderDeployments() {
    const canDeploy = this.session.can("deploy");
    const rows = [...this.deployments.values()].map((d) => {
      const name = escapeHtml(d.name);
      const running = d.state === "running" || d.state === "starting";
      const actions = canDeploy
        ? `<button data-action="deploy-${running ? "stop" : "start"}" data-name="${name}">${running ? "Stop" : "Start"}</button> ` +
          `<button data-action="deploy-scale" data-name="${name}" data-shards="${(d.shards ?? 1) + 1}">+</button>` +
          `<button data-action="deploy-scale" data-name="${name}" data-shards="${Math.max(1, (d.shards ?? 1) - 1)}">−</button> `
        : "";
      const state = d.state ?? "";
      return (
        `<tr><td>${name}</td><td class="muted">${escapeHtml(d.strategy ?? "")}</td><td class="num">${d.shards ?? ""}</td>` +
        `<td><span class="status ${escapeHtml(state)}">${escapeHtml(state)}</span></td>` +
        `<td class="num">${quantity(d.ticks_handled ?? null)}</td><td class="muted">${escapeHtml(d.error ?? "")}</td>` +
        `<td>${actions}<button data-action="deploy-logs" data-name="${name}">Logs</button></td></tr>`
      );
    });
    table(
      document.getElementById("deployments"),
      [["Name"], ["Strategy"], ["Shards", "num"], ["State"], ["Ticks", "num"], ["Problem"], [""]],
      rows,
      "No deployments",
    );
  }

  _renderAll() {
    schedule("orders", () => this._renderOrders());
    schedule("positions", () => this._renderPositions());
    schedule("lists", () => this._renderLists());
  }

  // Actions --------------------------------------------------------------------------------------

  async flatten(book = "manual") {
    if (!this.session.can("trade")) {
      toast("error", `Your role (${this.session.user?.role}) cannot flatten positions`);
      return;
    }
    const open = [...this.positions.values()].filter((p) => p.book === book && p.quantity !== 0);
    const ok = await confirmAction(`Flatten the ${book} book? ${open.length} open position${open.length === 1 ? "" : "s"} will be closed at market.`);
    if (!ok) return;
    try {
      await this.session.post("/positions/flatten", { book, confirm: true });
      toast("warn", `Flattening the ${book} book`);
    } catch (err) {
      toast("error", `Flatten: ${describeError(err)}`);
    }
  }

  moveSelection(delta) {
    if (this.tab !== "orders") return;
    const ids = [...document.querySelectorAll("#orders tbody tr[data-id]")].map((tr) => tr.dataset.id);
    if (!ids.length) return;
    const at = ids.indexOf(this.selectedOrder);
    this.selectedOrder = ids[Math.max(0, Math.min(ids.length - 1, at < 0 ? 0 : at + delta))];
    for (const tr of document.querySelectorAll("#orders tbody tr[data-id]")) tr.setAttribute("aria-selected", String(tr.dataset.id === this.selectedOrder));
  }

  actOnSelection(key) {
    if (this.tab !== "orders" || !this.selectedOrder) return false;
    const order = this.orders.get(this.selectedOrder);
    if (!order || !ACTIVE.has(order.status)) return false;
    if (key === "Delete") this.cancelOrder(order.client_order_id);
    else if (key === "Enter") this.ticket.open({ key: order.instrument, order });
    return true;
  }

  _bind() {
    document.getElementById("book-tabs").addEventListener("click", (e) => {
      const tab = e.target.closest("button[data-tab]")?.dataset.tab;
      if (tab) this.show(tab);
    });
    document.getElementById("flatten").addEventListener("click", () => this.flatten());
    document.getElementById("orders-all-books").addEventListener("change", () => schedule("orders", () => this._renderOrders()));
    document.querySelector(".books").addEventListener("click", async (e) => {
      const button = e.target.closest("button[data-action]");
      if (!button) {
        const tr = e.target.closest("#orders tbody tr[data-id]");
        if (tr) {
          this.selectedOrder = tr.dataset.id;
          this.moveSelection(0);
        }
        return;
      }
      const { action, id, name } = button.dataset;
      try {
        if (action === "cancel") await this.cancelOrder(id);
        else if (action === "modify") {
          const order = this.orders.get(id);
          this.ticket.open({ key: order.instrument, order });
        } else if (action === "square-off") {
          const symbol = this.symbol(button.dataset.instrument);
          if (await confirmAction(`Exit the ${symbol} position in ${button.dataset.book} at market?`)) {
            await this.session.post("/positions/square-off", { book: button.dataset.book, instrument: button.dataset.instrument });
            toast("warn", `Exiting ${symbol}`);
          }
        } else if (action === "gtt-cancel") {
          await this.session.delete(`/gtt/${encodeURIComponent(id)}`);
          this.refreshLists();
        } else if (action === "bracket-cancel") {
          await this.session.delete(`/brackets/${encodeURIComponent(id)}`);
          this.refreshLists();
        } else if (action === "kill") {
          const book = button.dataset.book || null;
          const engage = button.dataset.engage === "true";
          const what = `${engage ? "Engage" : "Release"} the kill switch for ${book ?? "every book"}?`;
          if (await confirmAction(what)) {
            await this.session.post("/risk/kill-switch", { engaged: engage, book });
            toast(engage ? "warn" : "ok", `Kill switch ${engage ? "engaged" : "released"} for ${book ?? "every book"}`);
            this.refreshRisk();
          }
        } else if (action === "deploy-start" || action === "deploy-stop") {
          await this.session.post(`/deployments/${encodeURIComponent(name)}/${action.slice(7)}`);
        } else if (action === "deploy-scale") {
          await this.session.post(`/deployments/${encodeURIComponent(name)}/scale`, { shards: Number(button.dataset.shards) });
        } else if (action === "deploy-logs") {
          const lines = await this.session.get(`/deployments/${encodeURIComponent(name)}/logs?lines=200`);
          const pre = document.getElementById("deployment-logs");
          pre.textContent = lines.join("\n") || "(no log lines)";
          pre.hidden = false;
        }
      } catch (err) {
        toast("error", describeError(err));
      }
    });
  }
}
