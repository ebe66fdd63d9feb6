"""EMA crossover on trade ticks.

*** NO EDGE — FOR DEMONSTRATION ONLY. This strategy is not expected to make money. ***

Long `trade_size` lots while the fast EMA of trade prices is above the slow one; flat (or short,
with `allow_short`) while it is below.
"""

from __future__ import annotations

from nautilus_trader.config import PositiveInt
from nautilus_trader.indicators import ExponentialMovingAverage
from nautilus_trader.model.identifiers import InstrumentId

from actors.shard.strategies.target_position import TargetPositionConfig, TargetPositionStrategy


class EMACrossConfig(TargetPositionConfig, frozen=True):
    """Configuration for `EMACross`.

    Parameters
    ----------
    fast_period : PositiveInt, default 10
        The fast EMA period, in trade ticks.
    slow_period : PositiveInt, default 30
        The slow EMA period, in trade ticks; must exceed `fast_period`.
    """

    fast_period: PositiveInt = 10
    slow_period: PositiveInt = 30


class EMACross(TargetPositionStrategy):
    """Trend following on the crossing of two EMAs (no edge; for demonstration only)."""

    def __init__(self, config: EMACrossConfig) -> None:
        if config.fast_period >= config.slow_period:
            raise ValueError(
                f"fast_period ({config.fast_period}) must be less than slow_period ({config.slow_period})"
            )
        super().__init__(config)
        self.warmup_prices = config.slow_period * 4
        self._fast: dict[InstrumentId, ExponentialMovingAverage] = {}
        self._slow: dict[InstrumentId, ExponentialMovingAverage] = {}

    def reset_indicators(self, instrument_id: InstrumentId) -> None:
        self._fast[instrument_id] = ExponentialMovingAverage(self.config.fast_period)
        self._slow[instrument_id] = ExponentialMovingAverage(self.config.slow_period)

    def signal(self, instrument_id: InstrumentId, price: float) -> int | None:
        fast = self._fast[instrument_id]
        slow = self._slow[instrument_id]
        fast.update_raw(price)
        slow.update_raw(price)
        if not slow.initialized:
            return None
        if fast.value > slow.value:
            return 1
        if fast.value < slow.value:
            return -1
        return None
