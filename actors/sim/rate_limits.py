"""Server-side rate limits, as the broker enforces them: every window of a group applies at once.

A call over any window is refused and not counted. Time is passed in (seconds, monotonic).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from typing import Any


class SlidingWindowLimiter:
    """Counts calls per (caller, group) in sliding windows and refuses those over a cap.

    Parameters
    ----------
    limits : mapping
        ``group -> [(window_seconds, calls_allowed), ...]``.
    """

    def __init__(self, limits: Mapping[Any, Iterable[tuple[float, int]]]) -> None:
        self._limits = {group: sorted(windows) for group, windows in limits.items()}
        for group, windows in self._limits.items():
            for length, cap in windows:
                if length <= 0 or cap <= 0:
                    raise ValueError(f"rate limit for {group}: window and cap must be positive")
        self._calls: dict[tuple[Hashable, Hashable], deque[float]] = {}

    def allow(self, caller: Hashable, group: Hashable, now: float) -> bool:
        """Record a call and say whether it is within every window of its group."""
        windows = self._limits.get(group)
        if not windows:
            return True
        calls = self._calls.setdefault((caller, group), deque())
        longest = windows[-1][0]
        while calls and calls[0] <= now - longest:
            calls.popleft()
        for length, cap in windows:
            if _count_since(calls, now - length, cap) >= cap:
                return False
        calls.append(now)
        return True


def _count_since(calls: deque[float], start: float, cap: int) -> int:
    """How many recorded calls are newer than ``start``, counting no further than ``cap``."""
    count = 0
    for at in reversed(calls):  # newest first: the deque is in time order
        if at <= start or count >= cap:
            break
        count += 1
    return count
