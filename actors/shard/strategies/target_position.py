"""The common shape of the sample strategies: a per-instrument signal sets a target position in lots.

A subclass turns each trade price into a signal (-1 short, 0 flat, +1 long) with `signal()`;
this base keeps the recent prices (to warm indicators back up after a hot swap), and sends one
market order for the difference whenever the target moves and nothing is already working. The
whole path is a function of the tick sequence, so a backtest on the same ticks trades the same.
"""

from __future__ import annotations

import json
from collections import deque
from decimal import Decimal

from nautilus_trader.config import PositiveInt, StrategyConfig
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.model.events import OrderRejected
from nautilus_trader.model.identifiers import ClientOrderId, InstrumentId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.trading.strategy import Strategy

PRODUCTS = ("INTRADAY", "DELIVERY", "CARRYFORWARD", "MARGIN")


class TargetPositionConfig(StrategyConfig, frozen=True):
    """Settings every sample strategy shares.

    Parameters
    ----------
    instrument_ids : list[InstrumentId], optional
        The instruments to trade; ``None`` trades every instrument the shard loaded.
    trade_size : PositiveInt, default 1
        The position size, in lots.
    allow_short : bool, default False
        Whether a sell signal may open a short (intraday only in Indian cash equity).
    product : str, default "INTRADAY"
        The Angel product type the orders carry (as the tag "product:<name>").
    """

    instrument_ids: list[InstrumentId] | None = None
    trade_size: PositiveInt = 1
    allow_short: bool = False
    product: str = "INTRADAY"


class TargetPositionStrategy(Strategy):
    """Base of the sample strategies: signal in, market orders to reach the target position out."""

    warmup_prices: int = 64  # subclasses size this to their longest indicator period

    def __init__(self, config: TargetPositionConfig) -> None:
        if config.product not in PRODUCTS:
            raise ValueError(f"product must be one of {', '.join(PRODUCTS)}, was {config.product!r}")
        super().__init__(config)
        self._trade_size = config.trade_size
        self._allow_short = config.allow_short
        self._product_tag = f"product:{config.product}"
        self._instruments: dict[InstrumentId, Instrument] = {}
        self._prices: dict[InstrumentId, deque[float]] = {}
        self._requested: dict[InstrumentId, int] = {}  # the target (in lots) last ordered toward
        self._working: dict[InstrumentId, ClientOrderId] = {}  # the order in progress, per instrument
        self._pending_load: dict[str, list[float]] = {}

    # -- to implement -------------------------------------------------------------------------

    def signal(self, instrument_id: InstrumentId, price: float) -> int | None:
        """Update the instrument's indicators with `price`; return -1, 0, +1, or ``None`` to hold."""
        raise NotImplementedError

    def reset_indicators(self, instrument_id: InstrumentId) -> None:
        """Create fresh indicators for one instrument."""
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------------------

    def on_start(self) -> None:
        config_ids = self.config.instrument_ids
        if config_ids is None:
            instruments = self.cache.instruments()
        else:
            instruments = [self.cache.instrument(i) for i in config_ids]
        for instrument in sorted((i for i in instruments if i is not None), key=lambda i: i.id.value):
            self._instruments[instrument.id] = instrument
            self._prices[instrument.id] = deque(maxlen=self.warmup_prices)
            self.reset_indicators(instrument.id)
            self.subscribe_trade_ticks(instrument.id)
        missing = [str(i) for i in config_ids or () if self.cache.instrument(i) is None]
        if missing:
            self.log.warning(f"instruments not loaded, not traded: {', '.join(missing)}")
        for key, prices in self._pending_load.items():
            self._replay(InstrumentId.from_str(key), prices)
        self._pending_load.clear()
        self.log.info(f"trading {len(self._instruments)} instruments, {self._trade_size} lot(s) each")

    def on_trade_tick(self, tick: TradeTick) -> None:
        instrument_id = tick.instrument_id
        prices = self._prices.get(instrument_id)
        if prices is None:
            return
        price = tick.price.as_double()
        prices.append(price)
        wanted = self.signal(instrument_id, price)
        if wanted is None:
            return
        if wanted < 0 and not self._allow_short:
            wanted = 0
        target = wanted * self._trade_size
        if self._requested.get(instrument_id, 0) != target:
            self._move_to(instrument_id, target)

    def on_stop(self) -> None:
        # Positions stay: a stop is also the first half of a hot swap. Working orders go.
        for instrument_id in self._instruments:
            if self.cache.orders_open_count(instrument_id=instrument_id, strategy_id=self.id):
                self.cancel_all_orders(instrument_id)

    def on_order_rejected(self, event: OrderRejected) -> None:
        # Hold the last requested target: the next signal change tries again, not every tick.
        self.log.warning(f"order rejected for {event.instrument_id}: {event.reason}")

    # -- orders -------------------------------------------------------------------------------

    def _move_to(self, instrument_id: InstrumentId, target_lots: int) -> None:
        working = self._working.get(instrument_id)
        if working is not None:
            order = self.cache.order(working)
            if order is not None and not order.is_closed:
                return  # one order at a time per instrument; the next tick re-checks
            del self._working[instrument_id]
        instrument = self._instruments[instrument_id]
        lot = instrument.lot_size.as_decimal() if instrument.lot_size is not None else Decimal(1)
        current = self.portfolio.net_position(instrument_id)
        delta = Decimal(target_lots) * lot - current
        self._requested[instrument_id] = target_lots
        if delta == 0:
            return
        order = self.order_factory.market(
            instrument_id=instrument_id,
            order_side=OrderSide.BUY if delta > 0 else OrderSide.SELL,
            quantity=instrument.make_qty(abs(delta)),
            time_in_force=TimeInForce.DAY,
            reduce_only=abs(target_lots * lot) < abs(current),
            tags=[self._product_tag],
        )
        self._working[instrument_id] = order.client_order_id
        self.submit_order(order)

    # -- state (hot swap) ---------------------------------------------------------------------

    def on_save(self) -> dict[str, bytes]:
        prices = {str(i): list(p) for i, p in self._prices.items() if p}
        requested = {str(i): lots for i, lots in self._requested.items()}
        return {
            "prices": json.dumps(prices).encode(),
            "requested": json.dumps(requested).encode(),
        }

    def on_load(self, state: dict[str, bytes]) -> None:
        if "requested" in state:
            for key, lots in json.loads(state["requested"]).items():
                self._requested[InstrumentId.from_str(key)] = int(lots)
        if "prices" in state:
            prices = {k: [float(x) for x in v] for k, v in json.loads(state["prices"]).items()}
            if self._instruments:
                for key, series in prices.items():
                    self._replay(InstrumentId.from_str(key), series)
            else:
                self._pending_load = prices  # replayed once on_start has built the indicators

    def _replay(self, instrument_id: InstrumentId, prices: list[float]) -> None:
        if instrument_id not in self._prices:
            return
        self.reset_indicators(instrument_id)
        self._prices[instrument_id].clear()
        for price in prices:
            self._prices[instrument_id].append(price)
            self.signal(instrument_id, price)
