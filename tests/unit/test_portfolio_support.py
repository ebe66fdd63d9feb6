"""Instruments, clock and a small driver shared by the portfolio, GTT and bracket tests (no tests here)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from actors.orders import OrderRequest, OrderType, OrderUpdate, Product, Side, Validity
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec, OptionRight
from actors.portfolio.portfolio import MarketQuote, PaperPortfolio
from actors.portfolio.records import AnyRecord
from cluster.config import PortfolioConfig

IST = timezone(timedelta(hours=5, minutes=30))
SESSION = date(2026, 7, 6)  # a Monday

SBIN = InstrumentSpec(key="NSE:3045", symbol="SBIN-EQ", kind=InstrumentKind.EQUITY, tick_size=5)
INFY = InstrumentSpec(key="NSE:1594", symbol="INFY-EQ", kind=InstrumentKind.EQUITY, tick_size=5)
NIFTY = InstrumentSpec(key="NSE:99926000", symbol="NIFTY 50", kind=InstrumentKind.INDEX, tick_size=5)
NIFTY_FUT = InstrumentSpec(
    key="NFO:61093", symbol="NIFTY28JUL26FUT", kind=InstrumentKind.FUTURE, lot_size=65, tick_size=10,
    expiry=date(2026, 7, 28), underlying="NSE:99926000",
)  # fmt: skip
NIFTY_CE = InstrumentSpec(
    key="NFO:63915", symbol="NIFTY28JUL2623500CE", kind=InstrumentKind.OPTION, lot_size=65, tick_size=5,
    expiry=date(2026, 7, 28), strike=2_350_000, right=OptionRight.CALL, underlying="NSE:99926000",
)  # fmt: skip
NIFTY_PE = InstrumentSpec(
    key="NFO:63916", symbol="NIFTY28JUL2623500PE", kind=InstrumentKind.OPTION, lot_size=65, tick_size=5,
    expiry=date(2026, 7, 28), strike=2_350_000, right=OptionRight.PUT, underlying="NSE:99926000",
)  # fmt: skip
INSTRUMENTS = {spec.key: spec for spec in (SBIN, INFY, NIFTY, NIFTY_FUT, NIFTY_CE, NIFTY_PE)}


def at(hour: int, minute: int = 0, second: int = 0, day: date = SESSION) -> int:
    """Nanoseconds since the epoch at an IST wall time."""
    moment = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=IST)
    return int(moment.timestamp()) * 10**9


def config(**overrides: Any) -> PortfolioConfig:
    values: dict[str, Any] = {"starting_cash_rupees": 1_000_000, "slippage_ticks": 0} | overrides
    return PortfolioConfig(**values)


class Desk:
    """A paper portfolio with a journal kept in memory and a clock that only moves forward."""

    def __init__(self, **options: Any) -> None:
        overrides = options.pop("config", {})
        self.journal: list[AnyRecord] = []
        self.options = options
        self.config = config(**overrides)
        self.portfolio = PaperPortfolio(self.config, INSTRUMENTS, journal=self.journal.append, **options)
        self.now = at(10)
        self._ids = 0

    def tick(self, seconds: int = 1) -> int:
        self.now += seconds * 10**9
        return self.now

    def quote(self, spec: InstrumentSpec, ltp: int, bid: int = 0, ask: int = 0, **depth: int) -> None:
        self.portfolio.on_quote(
            MarketQuote(instrument=spec.key, ltp=ltp, bid=bid, ask=ask, ts_ns=self.tick(), **depth)
        )

    def order(
        self,
        spec: InstrumentSpec,
        side: Side,
        quantity: int,
        *,
        order_type: OrderType = OrderType.MARKET,
        product: Product = Product.INTRADAY,
        price: int = 0,
        trigger_price: int = 0,
        validity: Validity = Validity.DAY,
        book: str = "manual",
    ) -> OrderUpdate:
        self._ids += 1
        request = OrderRequest(
            client_order_id=f"c{self._ids}",
            book=book,
            instrument=spec.key,
            side=side,
            quantity=quantity,
            order_type=order_type,
            product=product,
            validity=validity,
            price=price,
            trigger_price=trigger_price,
        )
        return self.portfolio.submit(request, self.tick())

    def restarted(self) -> PaperPortfolio:
        """A new portfolio rebuilt from this one's journal (through its JSON-ready form)."""
        from actors.portfolio.records import encode_record

        fresh = PaperPortfolio(self.config, INSTRUMENTS, **self.options)
        fresh.restore([encode_record(record) for record in self.journal])
        return fresh
