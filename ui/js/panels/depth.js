// Five levels a side for the selected instrument, from the depth:<instrument> channel.
import { schedule } from "../frame.js";
import { quantity, rupees } from "../format.js";

const LEVELS = 5;

function level(entry) {
  // A level arrives as {price, quantity, orders} or as [price, quantity, orders].
  if (!entry) return null;
  if (Array.isArray(entry)) return { price: entry[0], quantity: entry[1], orders: entry[2] };
  return { price: entry.price, quantity: entry.quantity ?? entry.qty, orders: entry.orders };
}

export class DepthPanel {
  constructor(store) {
    this.store = store;
    this.body = document.querySelector("#depth tbody");
    this.title = document.getElementById("depth-title");
    this.bidTotal = document.getElementById("depth-bid-total");
    this.askTotal = document.getElementById("depth-ask-total");
    this.cells = [];
    for (let i = 0; i < LEVELS; i += 1) {
      const tr = document.createElement("tr");
      const row = [];
      for (let j = 0; j < 6; j += 1) row.push(tr.appendChild(document.createElement("td")));
      this.body.append(tr);
      this.cells.push(row);
    }
    this.stop = null;
    store.addEventListener("select", (e) => this.show(e.detail.key));
  }

  show(key) {
    this.stop?.();
    this.render(null);
    this.store.instrument(key).then((i) => { this.title.textContent = i.symbol; }).catch(() => {});
    this.stop = this.store.connection.subscribe(`depth:${key}`, (message, arrivedAt) => {
      schedule(this, () => this.render(message.data), arrivedAt);
    });
  }

  render(depth) {
    const bids = (depth?.bids ?? []).map(level).filter((l) => l && Number(l.price) > 0);
    const asks = (depth?.asks ?? []).map(level).filter((l) => l && Number(l.price) > 0);
    let bidSum = 0;
    let askSum = 0;
    for (let i = 0; i < LEVELS; i += 1) {
      const [bp, bo, bq, ap, ao, aq] = this.cells[i];
      const b = bids[i];
      const a = asks[i];
      bp.textContent = b ? rupees(b.price) : "";
      bo.textContent = b?.orders ?? "";
      bq.textContent = b ? quantity(b.quantity) : "";
      ap.textContent = a ? rupees(a.price) : "";
      ao.textContent = a?.orders ?? "";
      aq.textContent = a ? quantity(a.quantity) : "";
      bidSum += b ? Number(b.quantity) : 0;
      askSum += a ? Number(a.quantity) : 0;
    }
    this.bidTotal.textContent = depth ? `Total ${quantity(depth.total_buy_qty ?? bidSum)}` : "";
    this.askTotal.textContent = depth ? `Total ${quantity(depth.total_sell_qty ?? askSum)}` : "";
  }
}
