"""`shardline backtest`: a deployment's strategy on Nautilus's BacktestEngine over the data catalog.

The same strategy class and config a deployment runs in its shards, over the same instruments (its
universe, resolved as `shardline submit` resolves it), on what `shardline record` and `shardline
candles fetch` wrote into the Nautilus `ParquetDataCatalog`: QuoteTicks, TradeTicks and Bars.

Fees and fills follow paper trading (`actors.portfolio`) as closely as Nautilus's models allow:

- `IndianChargesFeeModel` charges every fill with the project's one charges model
  (`actors.portfolio.charges.ChargeModel`, the configured broker plan): brokerage capped per order
  across partial fills, STT/CTT, exchange fees, SEBI fee, stamp duty and GST, in exact paise.
  The product comes from the order's "product:<NAME>" tag, as in the shards.
- `PaperFillModel` prices a marketable order as the paper venue does: at the touch (buy at the
  ask, sell at the bid) of the latest quote when the book is known (SNAP_QUOTE recordings), and
  at the last traded price ± `portfolio.slippage_ticks` ticks when only trades (LTP/QUOTE
  recordings) or bars are known. Liquidity there is unlimited, as on paper.

Where it differs from paper trading (also listed in each report's notes):

- fills are immediate, at the tick that made the order; on paper an order reaches the execution
  actor a few milliseconds later and fills against the router's latest quote snapshot, which is
  refreshed `router.ui_snapshot_hz` times a second;
- a resting limit order becomes marketable against Nautilus's L1 book, which trade ticks move too
  (bid = ask = the trade price), while the paper book moves with quotes only;
- margin: each exchange segment is one Nautilus venue with its own account holding the starting
  cash, at a leverage of 1 / `portfolio.intraday_margin_fraction`; paper has one account with a
  margin rate per product. The report counts the starting cash once;
- no intraday square-off at `portfolio.square_off_time_ist`, no circuit limits, no expiry
  settlement; GTT rules and brackets are the paper portfolio's, not a strategy's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.backtest.models import FeeModel, FillModel
from nautilus_trader.config import LoggingConfig
from nautilus_trader.core.data import Data
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.currencies import INR
from nautilus_trader.model.data import Bar, BookOrder, QuoteTick, TradeTick
from nautilus_trader.model.enums import AccountType, BookType, OmsType, OptionKind, OrderSide
from nautilus_trader.model.events import OrderFilled
from nautilus_trader.model.identifiers import InstrumentId, Venue
from nautilus_trader.model.instruments import Equity, FuturesContract, IndexInstrument, OptionContract
from nautilus_trader.model.instruments import Instrument as NautilusInstrument
from nautilus_trader.model.objects import FIXED_PRECISION, Money, Price, Quantity
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from actors.orders import Product, Side
from actors.portfolio.charges import ChargeModel, Charges
from actors.portfolio.instruments import SUPPORTED_EXCHANGES, InstrumentKind, InstrumentSpec, OptionRight
from actors.shard.loading import build_strategy
from cluster.backtest_report import MONEY_UNITS, BacktestReport, FillRecord, MarkSeries, performance
from cluster.config import DeploymentConfig, ShardlineConfig
from cluster.errors import ShardlineError

log = logging.getLogger(__name__)

IST = timezone(timedelta(hours=5, minutes=30), "IST")
PRODUCT_TAG = "product:"
UNLIMITED = 1_000_000_000  # units offered at the touch: paper liquidity has no depth limit
_RAW_PER_UNIT = 10**FIXED_PRECISION // MONEY_UNITS  # Nautilus raw price units per ₹0.0001
_RAW_PER_PAISA = 10**FIXED_PRECISION // 100
# In the feed's order when timestamps tie: a row's quote comes before its trade (as in a shard).
_KIND_ORDER = {QuoteTick: 0, TradeTick: 1, Bar: 2}


class BacktestError(ShardlineError):
    """A backtest that cannot run as asked; the message says what is missing or wrong."""


# ----------------------------------------------------------------------------------- fees


def order_product(tags: Iterable[str] | None, default: Product = Product.INTRADAY) -> Product:
    """The Angel product an order's "product:<NAME>" tag names (the shards read the same tag)."""
    for tag in tags or ():
        if tag.startswith(PRODUCT_TAG):
            name = tag[len(PRODUCT_TAG) :]
            try:
                return Product(name)
            except ValueError:
                raise BacktestError(
                    f"order tag {tag!r}: product must be one of {', '.join(p.value for p in Product)}"
                ) from None
    return default


def _paise(price: Price) -> int:
    raw = int(price.raw)
    if raw % _RAW_PER_PAISA:
        raise BacktestError(f"price {price} is finer than a paisa; the charges model works in paise")
    return raw // _RAW_PER_PAISA


def _ist_date(ts_ns: int) -> date:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).astimezone(IST).date()


def instrument_spec(instrument: NautilusInstrument) -> InstrumentSpec:
    """What the charges model needs to know of a Nautilus instrument (segment, lot, tick, expiry)."""
    exchange = instrument.id.venue.value
    if exchange not in SUPPORTED_EXCHANGES:
        covered = ", ".join(sorted(SUPPORTED_EXCHANGES))
        raise BacktestError(f"{instrument.id}: the charges model covers {covered}, not {exchange}")
    common: dict[str, Any] = {
        "key": f"{exchange}:{instrument.raw_symbol.value}",
        "symbol": instrument.raw_symbol.value,
        "lot_size": int(instrument.lot_size.as_double()) if instrument.lot_size is not None else 1,
        "tick_size": max(1, _paise(instrument.price_increment)),
    }
    if isinstance(instrument, Equity):
        return InstrumentSpec(kind=InstrumentKind.EQUITY, **common)
    if isinstance(instrument, IndexInstrument):
        return InstrumentSpec(kind=InstrumentKind.INDEX, **common)
    if isinstance(instrument, FuturesContract):
        return InstrumentSpec(
            kind=InstrumentKind.FUTURE, expiry=_ist_date(instrument.expiration_ns), **common
        )
    if isinstance(instrument, OptionContract):
        return InstrumentSpec(
            kind=InstrumentKind.OPTION,
            expiry=_ist_date(instrument.expiration_ns),
            strike=_paise(instrument.strike_price),
            right=OptionRight.CALL if instrument.option_kind == OptionKind.CALL else OptionRight.PUT,
            **common,
        )
    raise BacktestError(f"{instrument.id}: no charges for a {type(instrument).__name__}")


class IndianChargesFeeModel(FeeModel):
    """A Nautilus fee model that charges each fill with `actors.portfolio.charges.ChargeModel`.

    Parameters
    ----------
    charges : ChargeModel
        The broker plan and statutory schedule (the paper portfolio's own model).
    default_product : Product, default INTRADAY
        The product of orders without a "product:<NAME>" tag.
    """

    def __init__(self, charges: ChargeModel, default_product: Product = Product.INTRADAY) -> None:
        super().__init__()
        self._charges = charges
        self._default_product = default_product
        self._specs: dict[InstrumentId, InstrumentSpec] = {}
        self._turnover: dict[str, int] = {}  # paise traded so far per client order id
        self.breakdown: dict[str, Charges] = {}  # per client order id, for the report

    def get_commission(
        self, order: Any, fill_qty: Quantity, fill_px: Price, instrument: NautilusInstrument
    ) -> Money:
        spec = self._specs.get(instrument.id)
        if spec is None:
            spec = self._specs[instrument.id] = instrument_spec(instrument)
        order_id = order.client_order_id.value
        quantity = int(fill_qty.as_decimal())
        price = _paise(fill_px)
        before = self._turnover.get(order_id, 0)
        side = Side.BUY if order.side == OrderSide.BUY else Side.SELL
        charges = self._charges.for_fill(
            spec, order_product(order.tags, self._default_product), side, quantity, price, before
        )
        self._turnover[order_id] = before + quantity * price
        self.breakdown[order_id] = self.breakdown.get(order_id, Charges()) + charges
        return Money(Decimal(charges.total) / 100, INR)


# ----------------------------------------------------------------------------------- fills


class PaperFillModel(FillModel):
    """Prices marketable orders as the paper venue does (see the module docstring).

    Parameters
    ----------
    slippage_ticks : int
        Ticks either side of the last price when no quote is known (`portfolio.slippage_ticks`).

    Call `bind(cache)` with the engine's cache before running: the latest quote and trade of an
    instrument are read from it at fill time.
    """

    def __init__(self, slippage_ticks: int) -> None:
        super().__init__()
        if slippage_ticks < 0:
            raise BacktestError(f"slippage_ticks must be zero or more, not {slippage_ticks}")
        self.slippage_ticks = slippage_ticks
        self._cache: Any = None

    def bind(self, cache: Any) -> None:
        self._cache = cache

    def touch(self, instrument: NautilusInstrument, best_bid: Price, best_ask: Price) -> tuple[Price, Price]:
        """(bid, ask) a marketable order trades at: the quote, else last price ± slippage."""
        cache = self._cache
        quote = cache.quote_tick(instrument.id) if cache is not None else None
        if quote is not None and quote.bid_price.raw > 0 and quote.ask_price.raw > 0:
            return quote.bid_price, quote.ask_price
        trade = cache.trade_tick(instrument.id) if cache is not None else None
        # Without trades (bars only) the L1 book holds the bar's price on both sides.
        last = int(trade.price.raw) if trade is not None else int(best_bid.raw)
        step = int(instrument.price_increment.raw)
        slip = self.slippage_ticks * step
        precision = instrument.price_precision
        return (
            Price.from_raw(max(step, last - slip), precision),
            Price.from_raw(last + slip, precision),
        )

    def get_orderbook_for_fill_simulation(
        self, instrument: NautilusInstrument, order: Any, best_bid: Price, best_ask: Price
    ) -> OrderBook:
        bid, ask = self.touch(instrument, best_bid, best_ask)
        book = OrderBook(instrument.id, BookType.L2_MBP)
        size = Quantity(UNLIMITED, instrument.size_precision)
        book.add(BookOrder(OrderSide.BUY, bid, size, 1), 0, 0)
        book.add(BookOrder(OrderSide.SELL, ask, size, 2), 0, 0)
        return book


# ----------------------------------------------------------------------------------- time range


def parse_when(text: str, end: bool = False, today: date | None = None) -> int:
    """A date ("2026-03-02", "today", "yesterday") or date and time ("2026-03-02 09:15",
    "2026-03-02T09:15:30") in IST as UNIX ns; a date means its first (or, with `end`, its last)
    nanosecond."""
    value = text.strip()
    if value.lower() in ("today", "yesterday"):
        day = today or datetime.now(IST).date()
        value = (day - timedelta(days=1 if value.lower() == "yesterday" else 0)).isoformat()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=IST)
            if end:
                return int(moment.timestamp()) * 1_000_000_000 + 86_400 * 1_000_000_000 - 1
            return int(moment.timestamp()) * 1_000_000_000
        moment = datetime.fromisoformat(value.replace(" ", "T"))
    except ValueError:
        raise BacktestError(
            f"{text!r} is not a date (2026-03-02) or date and time (2026-03-02 09:15)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=IST)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def parse_window(start: str, end: str) -> tuple[int, int]:
    start_ns, end_ns = parse_when(start), parse_when(end, end=True)
    if end_ns < start_ns:
        raise BacktestError(f"--to {end} is before --from {start}")
    return start_ns, end_ns


# ----------------------------------------------------------------------------------- data


@dataclass
class MarketData:
    """The catalog's data for a universe and window, in the order the engine gets it."""

    data: list[Data]
    counts: dict[str, int]
    marks: dict[str, MarkSeries]


def open_catalog(path: Path) -> ParquetDataCatalog:
    if not path.is_dir():
        raise BacktestError(
            f"no data catalog at {path}; record ticks with `shardline record` or fetch candles with "
            "`shardline candles fetch` first"
        )
    return ParquetDataCatalog(str(path))


def load_market_data(
    catalog: ParquetDataCatalog, instrument_ids: Sequence[InstrumentId], start_ns: int, end_ns: int
) -> MarketData:
    """QuoteTicks, TradeTicks and Bars of `instrument_ids` in [start_ns, end_ns], merged by `ts_init`
    (a quote before a trade at the same time, as the feed sends them), and each instrument's marks."""
    wanted = {i.value for i in instrument_ids}
    ids = sorted(wanted)
    quotes = catalog.query(QuoteTick, identifiers=ids, start=start_ns, end=end_ns)
    trades = catalog.query(TradeTick, identifiers=ids, start=start_ns, end=end_ns)
    bar_types = _bar_types(catalog, wanted)
    bars = catalog.query(Bar, identifiers=bar_types, start=start_ns, end=end_ns) if bar_types else []
    data: list[Data] = [*quotes, *trades, *bars]
    data.sort(key=lambda d: (d.ts_init, _KIND_ORDER[type(d)]))  # stable: file order within a kind
    counts = {"quote_ticks": len(quotes), "trade_ticks": len(trades), "bars": len(bars)}
    return MarketData(data=data, counts=counts, marks=_marks(quotes, trades, bars))


def _bar_types(catalog: ParquetDataCatalog, instrument_ids: set[str]) -> list[str]:
    """The bar types the catalog holds for these instruments (its `data/bar/<bar type>` folders)."""
    folder = Path(catalog.path) / "data" / "bar"
    if not folder.is_dir():
        return []
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.is_dir() and entry.name.rsplit("-", 4)[0] in instrument_ids
    )


def _marks(
    quotes: Sequence[QuoteTick], trades: Sequence[TradeTick], bars: Sequence[Bar]
) -> dict[str, MarkSeries]:
    """Each instrument's price over time: its trades, else its bar closes, else its quote mids."""
    by_trades: dict[str, tuple[list[int], list[int]]] = {}
    for t in trades:
        ts, px = by_trades.setdefault(t.instrument_id.value, ([], []))
        ts.append(t.ts_init)
        px.append(int(t.price.raw) // _RAW_PER_UNIT)
    by_bars: dict[str, tuple[list[int], list[int]]] = {}
    for b in bars:
        ts, px = by_bars.setdefault(b.bar_type.instrument_id.value, ([], []))
        ts.append(b.ts_init)
        px.append(int(b.close.raw) // _RAW_PER_UNIT)
    by_quotes: dict[str, tuple[list[int], list[int]]] = {}
    for q in quotes:
        ts, px = by_quotes.setdefault(q.instrument_id.value, ([], []))
        ts.append(q.ts_init)
        px.append((int(q.bid_price.raw) + int(q.ask_price.raw)) // (2 * _RAW_PER_UNIT))
    out: dict[str, MarkSeries] = {}
    for source in (by_quotes, by_bars, by_trades):  # a later source replaces an earlier one
        for instrument, (ts, px) in source.items():
            ts_arr = np.asarray(ts, dtype=np.int64)
            order = np.argsort(ts_arr, kind="stable")
            out[instrument] = MarkSeries(ts_arr[order], np.asarray(px, dtype=np.int64)[order])
    return out


def universe_instruments(
    spec: DeploymentConfig, config: ShardlineConfig, catalog: ParquetDataCatalog
) -> list[NautilusInstrument]:
    """The deployment's universe as Nautilus instruments: the recorded definitions where the data
    catalog has them (an expired contract is not in today's scrip master), else today's."""
    from catalog.nautilus import to_nautilus
    from catalog.sources import load_default_catalog
    from cluster.deployments import DeploymentError, resolve_universe

    try:
        chosen = resolve_universe(spec, load_default_catalog(config))
    except DeploymentError as err:
        raise BacktestError(str(err)) from None
    fresh = {to_nautilus(entry).id: to_nautilus(entry) for entry in chosen}
    recorded = {i.id: i for i in catalog.instruments(instrument_ids=[str(i) for i in fresh])}
    return [recorded.get(instrument_id, instrument) for instrument_id, instrument in fresh.items()]


# ----------------------------------------------------------------------------------- the run


@dataclass
class BacktestRun:
    """What one engine run did: its orders and fills, and what it was fed."""

    spec: DeploymentConfig
    start_ns: int
    end_ns: int
    instruments: list[NautilusInstrument]
    orders: list[dict[str, Any]]
    fills: list[FillRecord]
    marks: dict[str, MarkSeries]
    counts: dict[str, int]
    seconds: float
    starting_cash: Decimal
    charges: dict[str, Charges] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def data_items(self) -> int:
        return sum(self.counts.values())

    def order_trail(self) -> dict[str, list[tuple[str, int]]]:
        """(side, quantity) of each order per instrument, in submit order."""
        trail: dict[str, list[tuple[str, int]]] = {}
        for order in self.orders:
            trail.setdefault(order["instrument"], []).append((order["side"], int(order["quantity"])))
        return trail


def run_backtest(
    spec: DeploymentConfig,
    config: ShardlineConfig,
    catalog_path: Path,
    start_ns: int,
    end_ns: int,
    *,
    instruments: Sequence[NautilusInstrument] | None = None,
    log_level: str = "ERROR",
) -> BacktestRun:
    """Run the deployment's strategy over the catalog's data in [start_ns, end_ns].

    Parameters
    ----------
    spec : DeploymentConfig
        The deployment: strategy, config and universe.
    config : ShardlineConfig
        Broker plan, slippage, starting cash and margin (`portfolio`), and the instrument catalog.
    catalog_path : Path
        The Nautilus ParquetDataCatalog.
    instruments : Sequence[Instrument], optional
        The universe as Nautilus instruments; resolved from the deployment's universe by default.

    Raises
    ------
    BacktestError
        If there is no catalog, no data for the universe in the window, or the strategy refuses
        its config.
    """
    catalog = open_catalog(catalog_path)
    universe = list(instruments) if instruments is not None else universe_instruments(spec, config, catalog)
    if not universe:
        raise BacktestError(f"deployment {spec.name!r}: its universe resolved to no instruments")
    for instrument in universe:
        instrument_spec(instrument)  # refuse a segment without charges before running anything
    market = load_market_data(catalog, [i.id for i in universe], start_ns, end_ns)
    if not market.data:
        raise BacktestError(
            f"no market data in {catalog_path} for {spec.name}'s {len(universe)} instrument(s) between "
            f"{_describe(start_ns)} and {_describe(end_ns)}; record with `shardline record` or fetch "
            "candles with `shardline candles fetch`"
        )
    strategy = build_strategy(spec.strategy, dict(spec.config), "000")
    portfolio = config.portfolio
    starting_cash = Decimal(str(portfolio.starting_cash_rupees))
    fee_model = IndianChargesFeeModel(ChargeModel.for_plan(portfolio.broker_plan))
    engine = BacktestEngine(
        BacktestEngineConfig(trader_id="BACKTESTER-001", logging=LoggingConfig(log_level=log_level))
    )
    try:
        fill_model = PaperFillModel(portfolio.slippage_ticks)
        fill_model.bind(engine.cache)
        for venue in sorted({i.id.venue.value for i in universe}):
            engine.add_venue(
                venue=Venue(venue),
                oms_type=OmsType.NETTING,
                account_type=AccountType.MARGIN,
                base_currency=INR,
                starting_balances=[Money(starting_cash, INR)],
                default_leverage=Decimal(1) / Decimal(str(portfolio.intraday_margin_fraction)),
                fill_model=fill_model,
                fee_model=fee_model,
                book_type=BookType.L1_MBP,
                trade_execution=False,  # trades move the L1 book anyway; quotes set the touch
            )
        for instrument in universe:
            engine.add_instrument(instrument)
        engine.add_data(market.data, sort=False)  # already in feed order (see load_market_data)
        engine.add_strategy(strategy)
        started = time.perf_counter()
        engine.run(start=start_ns, end=end_ns)
        seconds = time.perf_counter() - started
        orders, fills = _orders_and_fills(engine)
    finally:
        engine.dispose()
    with_data = {k for k in market.marks}
    notes = _notes(config, market.counts)
    missing = sorted(i.id.value for i in universe if i.id.value not in with_data)
    if missing:
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        notes.append(f"{len(missing)} instrument(s) of the universe had no data in the window: {shown}")
    return BacktestRun(
        spec=spec,
        start_ns=start_ns,
        end_ns=end_ns,
        instruments=universe,
        orders=orders,
        fills=fills,
        marks=market.marks,
        counts=market.counts,
        seconds=seconds,
        starting_cash=starting_cash,
        charges=dict(fee_model.breakdown),
        notes=notes,
    )


def _describe(ts_ns: int) -> str:
    moment = datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC).astimezone(IST)  # truncated, not rounded
    return moment.strftime("%Y-%m-%d %H:%M IST")


def _orders_and_fills(engine: BacktestEngine) -> tuple[list[dict[str, Any]], list[FillRecord]]:
    orders: list[dict[str, Any]] = []
    fills: list[FillRecord] = []
    for order in sorted(engine.cache.orders(), key=lambda o: (o.ts_init, o.client_order_id.value)):
        own = [
            FillRecord(
                ts_ns=event.ts_event,
                instrument=event.instrument_id.value,
                side=order.side_string(),
                quantity=int(event.last_qty.as_decimal()),
                price=event.last_px.as_decimal(),
                commission=event.commission.as_decimal(),
                order_id=event.client_order_id.value,
                trade_id=event.trade_id.value,
            )
            for event in order.events
            if isinstance(event, OrderFilled)
        ]
        filled = sum(f.quantity for f in own)
        # Exact average from the fills (Nautilus keeps its own `avg_px` as a float).
        average = sum((f.price * f.quantity for f in own), Decimal(0)) / filled if filled else None
        orders.append(
            {
                "client_order_id": order.client_order_id.value,
                "instrument": order.instrument_id.value,
                "side": order.side_string(),
                "quantity": int(order.quantity.as_decimal()),
                "type": order.type_string(),
                "status": order.status_string(),
                "filled_quantity": filled,
                "avg_price": "" if average is None else str(average),
                "ts_init": order.ts_init,
                "tags": " ".join(order.tags or ()),
            }
        )
        fills += own
    return orders, fills


def _notes(config: ShardlineConfig, counts: dict[str, int]) -> list[str]:
    p = config.portfolio
    notes = [
        f"fees: the {p.broker_plan} broker plan and the statutory charges of actors.portfolio.charges",
        "fills: buy at the ask and sell at the bid of the latest quote; without a quote at the last "
        f"price ± {p.slippage_ticks} tick(s); unlimited size; immediate (paper fills a few ms later, "
        "against the router's latest quote snapshot)",
        f"margin: each exchange segment is a venue holding the starting cash at "
        f"{1 / p.intraday_margin_fraction:g}× leverage; the report counts the cash once",
        "not simulated: intraday square-off, circuit limits, expiry settlement",
    ]
    if counts.get("bars") and not (counts.get("trade_ticks") or counts.get("quote_ticks")):
        notes.append("bars only: orders fill at the bar's prices ± slippage (open, high, low, close in turn)")
    return notes


def build_report(run: BacktestRun, name: str, period_s: float | None = None) -> BacktestReport:
    """The report of a run: statistics, curve, trades (see `cluster.backtest_report`)."""
    stats, sample_ts, equity, trades = performance(run.fills, run.marks, run.starting_cash, period_s)
    data = dict(run.counts)
    data["orders"] = len(run.orders)
    return BacktestReport(
        name=name,
        strategy=run.spec.strategy,
        config=dict(run.spec.config),
        start_ns=run.start_ns,
        end_ns=run.end_ns,
        stats=stats,
        sample_ts_ns=sample_ts,
        equity=equity,
        trades=trades,
        fills=run.fills,
        orders=run.orders,
        data=data,
        notes=run.notes,
    )
