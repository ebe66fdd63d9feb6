// Order ticket: regular (market/limit/SL/SL-M), GTT (single or OCO) and bracket, plus modify.
// Enter reviews, Enter again sends; Esc closes. Quantity is entered in lots.
import { escapeHtml, rupees } from "../format.js";
import { describeError, toast } from "./toasts.js";

const PRICE = /^\d+(\.\d{1,7})?$/;

export class Ticket {
  constructor(store, heatmap) {
    this.store = store;
    this.session = store.session;
    this.heatmap = heatmap;
    this.dialog = document.getElementById("ticket");
    this.form = document.getElementById("ticket-form");
    this.title = document.getElementById("ticket-title");
    this.tabs = document.getElementById("ticket-tabs");
    this.units = document.getElementById("ticket-units");
    this.marginEl = document.getElementById("ticket-margin");
    this.availableEl = document.getElementById("ticket-available");
    this.errorEl = document.getElementById("ticket-error");
    this.confirmEl = document.getElementById("ticket-confirm");
    this.submitButton = document.getElementById("ticket-submit");
    this.kind = "regular";
    this.instrument = null;
    this.modifying = null;
    this.reviewed = null;
    this._marginTimer = null;
    this._bind();
  }

  get isOpen() {
    return this.dialog.open;
  }

  field(name) {
    return this.form.elements.namedItem(name);
  }

  async open({ side = "BUY", kind = "regular", key = this.store.selected, order = null } = {}) {
    if (!key) {
      toast("warn", "Select an instrument first");
      return;
    }
    if (!this.session.can("trade")) {
      toast("error", `Your role (${this.session.user?.role}) cannot place orders`);
      return;
    }
    try {
      this.instrument = await this.store.instrument(key);
    } catch (err) {
      toast("error", describeError(err));
      return;
    }
    this.modifying = order;
    this.form.reset();
    this.kind = order ? "regular" : kind;
    this.form.querySelector(`input[name="side"][value="${order?.side ?? side}"]`).checked = true;
    const ltp = this.store.quotes.get(key)?.ltp;
    if (order) {
      this.field("order_type").value = order.order_type ?? "LIMIT";
      this.field("product").value = order.product ?? "INTRADAY";
      this.field("lots").value = String(Math.max(1, Math.round((order.quantity ?? 1) / this.instrument.lot_size)));
      if (order.price && Number(order.price)) this.field("price").value = order.price;
      if (order.trigger_price && Number(order.trigger_price)) this.field("trigger_price").value = order.trigger_price;
    } else {
      if (ltp) this.field("price").value = Number(ltp).toFixed(2);
      this.field("order_type").value = this.kind === "regular" ? "MARKET" : "LIMIT";
      this.field("product").value = this.kind === "gtt" ? "DELIVERY" : "INTRADAY";
    }
    this._layout();
    this.dialog.showModal();
    this.field("lots").focus();
    this.field("lots").select();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  _bind() {
    this.tabs.addEventListener("click", (e) => {
      const kind = e.target.closest("button")?.dataset.kind;
      if (kind && !this.modifying) {
        this.kind = kind;
        if (kind !== "regular" && this.field("order_type").value.startsWith("SL")) this.field("order_type").value = "LIMIT";
        this._layout();
      }
    });
    this.form.addEventListener("input", () => {
      this.reviewed = null;
      this._layout();
    });
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this._submit();
    });
    document.getElementById("ticket-cancel").addEventListener("click", () => this.close());
    this.dialog.addEventListener("close", () => {
      this.reviewed = null;
      this.modifying = null;
    });
  }

  _side() {
    return this.form.querySelector('input[name="side"]:checked').value;
  }

  _layout() {
    const side = this._side();
    const type = this.field("order_type").value;
    this.dialog.dataset.side = side;
    for (const b of this.tabs.querySelectorAll("button")) {
      b.classList.toggle("active", b.dataset.kind === this.kind);
      b.disabled = Boolean(this.modifying) && b.dataset.kind !== "regular";
    }
    for (const label of this.form.querySelectorAll(".fields label[data-for]")) {
      label.hidden = !label.dataset.for.split(" ").includes(this.kind);
    }
    if (this.kind === "bracket") {
      for (const option of this.field("order_type").options) option.disabled = option.value.startsWith("SL");
    } else {
      for (const option of this.field("order_type").options) option.disabled = false;
    }
    const usesPrice = this.kind !== "regular" || type === "LIMIT" || type === "SL";
    const usesTrigger = this.kind === "gtt" || (this.kind === "regular" && (type === "SL" || type === "SL-M"));
    this.field("price").disabled = this.kind === "bracket" ? type === "MARKET" : !usesPrice;
    this.field("trigger_price").disabled = !usesTrigger;
    this.field("order_type").disabled = this.kind === "gtt" || Boolean(this.modifying);
    this.field("product").disabled = Boolean(this.modifying);
    const lots = Number(this.field("lots").value) || 0;
    this.units.textContent = `= ${lots * this.instrument.lot_size} units (lot ${this.instrument.lot_size})`;
    const verb = this.modifying ? `Modify ${this.modifying.client_order_id}` : side === "BUY" ? "Buy" : "Sell";
    this.title.textContent = `${verb} ${this.instrument.symbol} · ${this.instrument.exchange}`;
    this.confirmEl.hidden = !this.reviewed;
    this.submitButton.innerHTML = this.reviewed ? "Confirm <kbd>Enter</kbd>" : "Review <kbd>Enter</kbd>";
    this.errorEl.textContent = "";
    clearTimeout(this._marginTimer);
    if (this.kind === "regular" && !this.modifying) this._marginTimer = setTimeout(() => this._margin(), 250);
    else this.marginEl.textContent = "—";
  }

  _price(name, required) {
    const el = this.field(name);
    const text = el.value.trim();
    if (!text) {
      if (required) throw new Error(`${el.closest("label").firstChild.textContent.trim()} is required`);
      return undefined;
    }
    if (!PRICE.test(text)) throw new Error(`${text} is not a price`);
    return text;
  }

  _body() {
    const lots = Number(this.field("lots").value);
    if (!Number.isInteger(lots) || lots < 1) throw new Error("lots must be a whole number from 1");
    const quantity = lots * this.instrument.lot_size;
    const side = this._side();
    const type = this.field("order_type").value;
    const product = this.field("product").value;
    const instrument = this.instrument.key;
    if (this.modifying) {
      return {
        quantity,
        price: type === "LIMIT" || type === "SL" ? this._price("price", true) : undefined,
        trigger_price: type === "SL" || type === "SL-M" ? this._price("trigger_price", true) : undefined,
      };
    }
    if (this.kind === "gtt") {
      const body = { instrument, side, quantity, product, trigger_price: this._price("trigger_price", true), price: this._price("price", true) };
      const ocoTrigger = this._price("oco_trigger", false);
      if (ocoTrigger) body.other_leg = { trigger_price: ocoTrigger, price: this._price("oco_price", true) };
      return body;
    }
    if (this.kind === "bracket") {
      return {
        instrument,
        side,
        quantity,
        product,
        entry_type: type,
        price: type === "LIMIT" ? this._price("price", true) : undefined,
        stop_loss: this._price("stop_loss", true),
        target: this._price("target", true),
        trailing_stop: this._price("trailing_stop", false),
      };
    }
    return {
      instrument,
      side,
      quantity,
      order_type: type,
      product,
      price: type === "LIMIT" || type === "SL" ? this._price("price", true) : undefined,
      trigger_price: type === "SL" || type === "SL-M" ? this._price("trigger_price", true) : undefined,
    };
  }

  _describe(body) {
    const lots = body.quantity / this.instrument.lot_size;
    const what = `${lots} lot${lots === 1 ? "" : "s"} (${body.quantity}) ${this.instrument.symbol}`;
    if (this.modifying) return `Modify ${this.modifying.client_order_id}: ${what}${body.price ? ` @ ${body.price}` : ""}${body.trigger_price ? ` trigger ${body.trigger_price}` : ""}`;
    if (this.kind === "gtt") {
      const oco = body.other_leg ? ` / OCO ${body.other_leg.trigger_price} → ${body.other_leg.price}` : "";
      return `GTT ${body.side} ${what}: trigger ${body.trigger_price} → limit ${body.price}${oco}`;
    }
    if (this.kind === "bracket") {
      return `Bracket ${body.side} ${what} ${body.entry_type}${body.price ? ` @ ${body.price}` : ""}, SL ${body.stop_loss}, target ${body.target}`;
    }
    const price = body.price ? ` @ ${body.price}` : "";
    const trigger = body.trigger_price ? ` trigger ${body.trigger_price}` : "";
    return `${body.side} ${what} ${body.order_type}${price}${trigger} ${body.product}`;
  }

  async _submit() {
    let body;
    try {
      body = this._body();
    } catch (err) {
      this.errorEl.textContent = err.message;
      return;
    }
    if (!this.reviewed) {
      this.reviewed = body;
      this.confirmEl.textContent = this._describe(body);
      this.confirmEl.hidden = false;
      this.submitButton.innerHTML = "Confirm <kbd>Enter</kbd>";
      this.submitButton.focus();
      return;
    }
    this.submitButton.disabled = true;
    const reference = this.store.quotes.get(this.instrument.key)?.ltp;
    const started = performance.now();
    try {
      let result;
      if (this.modifying) {
        result = await this.session.patch(`/orders/${encodeURIComponent(this.modifying.client_order_id)}`, body);
      } else if (this.kind === "gtt") {
        result = await this.session.post("/gtt", body);
        toast("ok", `GTT ${result.gtt_id ?? ""} created: ${this._describe(body)}`);
      } else if (this.kind === "bracket") {
        result = await this.session.post("/brackets", body);
        toast("ok", `Bracket ${result.bracket_id ?? ""} placed: ${this._describe(body)}`);
      } else {
        result = await this.session.post("/orders", body);
      }
      if (this.kind === "regular" && result?.client_order_id) {
        this.heatmap?.record({
          id: result.client_order_id,
          symbol: this.instrument.symbol,
          side: body.side,
          latencyMs: performance.now() - started,
          reference: reference ? Number(reference) : null,
        });
        this._announce(result);
      }
      this.close();
    } catch (err) {
      this.errorEl.textContent = describeError(err);
      this.reviewed = null;
      this.confirmEl.hidden = true;
      this.submitButton.innerHTML = "Review <kbd>Enter</kbd>";
    } finally {
      this.submitButton.disabled = false;
    }
  }

  _announce(order) {
    const status = order.status;
    if (status === "REJECTED") toast("error", `Rejected ${order.client_order_id}: ${order.reason || "no reason given"}`);
    else toast("ok", `${this.modifying ? "Modified" : "Placed"} ${order.client_order_id} — ${status}`);
  }

  async _margin() {
    let body;
    try {
      body = this._body();
    } catch {
      this.marginEl.textContent = "—";
      return;
    }
    try {
      const margin = await this.session.post("/orders/margin", {
        instrument: body.instrument,
        side: body.side,
        quantity: body.quantity,
        order_type: body.order_type,
        product: body.product,
        price: body.price ?? body.trigger_price,
      });
      this.marginEl.textContent = `₹${rupees(margin.margin)}`;
      this.availableEl.textContent = margin.available ? `of ₹${rupees(margin.available)} available` : "";
    } catch (err) {
      this.marginEl.textContent = "—";
      this.availableEl.textContent = err.status === 503 ? "" : escapeHtml(describeError(err));
    }
  }
}
