"""NSE trading hours: Monday to Friday, 09:15 to 15:30 IST (exchange holidays are not modelled)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

IST = timezone(timedelta(hours=5, minutes=30), "IST")
OPEN = time(9, 15)
CLOSE = time(15, 30)


class MarketHours:
    """Whether the market is open at a timestamp; when disabled it is always open."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def is_open(self, ts_ns: int) -> bool:
        if not self.enabled:
            return True
        now = datetime.fromtimestamp(ts_ns / 1e9, UTC).astimezone(IST)
        return now.weekday() < 5 and OPEN <= now.time() < CLOSE
