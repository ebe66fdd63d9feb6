"""Bollinger-band mean reversion on trade ticks.

*** NO EDGE — FOR DEMONSTRATION ONLY. This strategy is not expected to make money. ***

Buys `trade_size` lots when a trade prints below the lower band and goes flat once the price is
back at the middle band. With `allow_short`, a print above the upper band opens a short that is
covered at the middle band.
"""

from __future__ import annotations

from nautilus_trader.config import PositiveFloat, PositiveInt
from nautilus_trader.indicators import BollingerBands
from nautilus_trader.model.identifiers import InstrumentId

from actors.shard.strategies.target_position import TargetPositionConfig, TargetPositionStrategy


class BollingerReversionConfig(TargetPositionConfig, frozen=True):
    """Configuration for `BollingerReversion`.

    Parameters
    ----------
    period : PositiveInt, default 20
        The moving-average period of the bands, in trade ticks (at least 2).
    k : PositiveFloat, default 2.0
        The band width, in standard deviations.
    """

    period: PositiveInt = 20
    k: PositiveFloat = 2.0


class BollingerReversion(TargetPositionStrategy):
    """Fade moves outside the Bollinger bands (no edge; for demonstration only)."""

    def __init__(self, config: BollingerReversionConfig) -> None:
        if config.period < 2:
            raise ValueError(f"period must be at least 2, was {config.period}")
        super().__init__(config)
        self.warmup_prices = config.period * 2
        self._bands: dict[InstrumentId, BollingerBands] = {}
        self._state: dict[InstrumentId, int] = {}

    def reset_indicators(self, instrument_id: InstrumentId) -> None:
        self._bands[instrument_id] = BollingerBands(self.config.period, self.config.k)
        self._state[instrument_id] = 0

    def signal(self, instrument_id: InstrumentId, price: float) -> int | None:
        bands = self._bands[instrument_id]
        bands.update_raw(price, price, price)
        if not bands.initialized:
            return None
        state = self._state[instrument_id]
        if price < bands.lower:
            state = 1
        elif price > bands.upper:
            state = -1
        elif (state == 1 and price >= bands.middle) or (state == -1 and price <= bands.middle):
            state = 0
        self._state[instrument_id] = state
        return state
