"""RSI breakout on trade ticks.

*** NO EDGE — FOR DEMONSTRATION ONLY. This strategy is not expected to make money. ***

Goes long `trade_size` lots when the RSI of trade prices breaks above `entry_level`, and back to
flat when it falls below `exit_level`. With `allow_short`, the mirror image opens shorts.
"""

from __future__ import annotations

from nautilus_trader.config import PositiveFloat, PositiveInt
from nautilus_trader.indicators import RelativeStrengthIndex
from nautilus_trader.model.identifiers import InstrumentId

from actors.shard.strategies.target_position import TargetPositionConfig, TargetPositionStrategy


class RSIBreakoutConfig(TargetPositionConfig, frozen=True):
    """Configuration for `RSIBreakout`.

    Parameters
    ----------
    period : PositiveInt, default 14
        The RSI period, in trade ticks.
    entry_level : PositiveFloat, default 70
        RSI (0-100) above which a long is opened.
    exit_level : PositiveFloat, default 50
        RSI (0-100) below which the long is closed; must be below `entry_level`.
    """

    period: PositiveInt = 14
    entry_level: PositiveFloat = 70.0
    exit_level: PositiveFloat = 50.0


class RSIBreakout(TargetPositionStrategy):
    """Momentum breakout on the RSI (no edge; for demonstration only)."""

    def __init__(self, config: RSIBreakoutConfig) -> None:
        if not 0 < config.exit_level < config.entry_level < 100:
            raise ValueError(
                f"need 0 < exit_level < entry_level < 100, was exit_level={config.exit_level}, "
                f"entry_level={config.entry_level}"
            )
        super().__init__(config)
        self.warmup_prices = config.period * 4
        self._rsi: dict[InstrumentId, RelativeStrengthIndex] = {}
        self._state: dict[InstrumentId, int] = {}

    def reset_indicators(self, instrument_id: InstrumentId) -> None:
        self._rsi[instrument_id] = RelativeStrengthIndex(self.config.period)
        self._state[instrument_id] = 0

    def signal(self, instrument_id: InstrumentId, price: float) -> int | None:
        rsi = self._rsi[instrument_id]
        rsi.update_raw(price)
        if not rsi.initialized:
            return None
        level = rsi.value * 100.0  # Nautilus scales RSI to 0-1
        entry, exit_ = self.config.entry_level, self.config.exit_level
        state = self._state[instrument_id]
        if level > entry:
            state = 1
        elif level < 100.0 - entry:
            state = -1
        elif (state == 1 and level < exit_) or (state == -1 and level > 100.0 - exit_):
            state = 0
        self._state[instrument_id] = state
        return state
