"""Angel One's rate limits, enforced client side: per endpoint group, per second, minute and hour.

All three windows apply at once (a per-second bucket alone breaches the hourly cap), counted as
sliding logs of call times. Calls wait in priority order: an urgent call (a cancel, an exit)
goes ahead of queued entries, and a slice of every window is held back for urgent calls so that a
burst of entries cannot use up the hour and leave a cancel stuck behind it. The clock and the
sleep are injected, so the logic runs in unit tests without real time passing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from enum import IntEnum

from actors.angel.common import RATE_LIMITS, EndpointGroup, RateLimit

log = logging.getLogger(__name__)


class Priority(IntEnum):
    """Lower goes first."""

    URGENT = 0  # cancels and exits
    NORMAL = 1  # new entries, modifications, queries


class WindowBudget:
    """The calls one endpoint group made in each of its windows.

    Parameters
    ----------
    limit : RateLimit
        The group's caps per second, minute and hour.
    urgent_reserve : float
        Fraction of each window's cap only urgent calls may use (rounded down, so a cap of 1
        reserves nothing: priority order alone serves urgent calls first there).
    slack_s : float
        Added to every window: requests reach the broker with varying delay, so calls spaced
        exactly one window apart here can land inside one window there.
    """

    def __init__(self, limit: RateLimit, urgent_reserve: float = 0.1, slack_s: float = 0.0) -> None:
        if not 0 <= urgent_reserve < 1:
            raise ValueError(f"urgent_reserve must be in [0, 1), got {urgent_reserve}")
        if slack_s < 0:
            raise ValueError(f"slack_s must be >= 0, got {slack_s}")
        self.limit = limit
        self._windows = [
            (length + slack_s, cap, cap - int(cap * urgent_reserve), deque[float]())
            for length, cap in limit.windows()
        ]
        self._blocked_until = float("-inf")

    def wait_time(self, now: float, priority: Priority) -> float:
        """Seconds until a call of `priority` may go (0.0: now)."""
        wait = max(0.0, self._blocked_until - now)
        for length, cap, normal_cap, calls in self._windows:
            while calls and calls[0] + length <= now:
                calls.popleft()
            allowed = cap if priority is Priority.URGENT else normal_cap
            if len(calls) >= allowed:
                # The call that must leave the window before one more fits.
                wait = max(wait, calls[len(calls) - allowed] + length - now)
        return wait

    def record(self, now: float) -> None:
        for _, _, _, calls in self._windows:
            calls.append(now)

    def block_until(self, until: float) -> None:
        """Hold every call back until `until` (the broker said we went too fast)."""
        self._blocked_until = max(self._blocked_until, until)

    def in_window(self, now: float) -> list[int]:
        """Calls counted in each window right now (second, minute, hour; capped windows only)."""
        self.wait_time(now, Priority.URGENT)
        return [len(calls) for _, _, _, calls in self._windows]


class RateLimiter:
    """Async gate in front of every broker call: `await limiter.acquire(group, priority)`.

    Parameters
    ----------
    limits : Mapping[EndpointGroup, RateLimit]
        Caps per group; Angel's published table by default.
    urgent_reserve : float
        Fraction of each window held for urgent calls.
    slack_s : float
        Safety margin added to every window (network jitter between here and the broker).
    clock : Callable[[], float]
        Monotonic seconds.
    sleep : Callable[[float], Awaitable[None]]
        Waits that many seconds of `clock` time.
    """

    def __init__(
        self,
        limits: Mapping[EndpointGroup, RateLimit] = RATE_LIMITS,
        *,
        urgent_reserve: float = 0.1,
        slack_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._budgets = {
            group: WindowBudget(limit, urgent_reserve, slack_s) for group, limit in limits.items()
        }
        self._clock = clock
        self._sleep = sleep
        self._queues: dict[EndpointGroup, list[tuple[int, int, asyncio.Future[None]]]] = {
            g: [] for g in limits
        }
        self._dispatchers: dict[EndpointGroup, asyncio.Task[None]] = {}
        self._naps: dict[EndpointGroup, asyncio.Task[None]] = {}
        self._order = itertools.count()
        self.granted: dict[EndpointGroup, int] = dict.fromkeys(limits, 0)
        self.waited: dict[EndpointGroup, int] = dict.fromkeys(limits, 0)
        self.backoffs: dict[EndpointGroup, int] = dict.fromkeys(limits, 0)

    def budget(self, group: EndpointGroup) -> WindowBudget:
        return self._budgets[group]

    def queued(self, group: EndpointGroup) -> int:
        return sum(1 for _, _, future in self._queues[group] if not future.done())

    async def acquire(self, group: EndpointGroup, priority: Priority = Priority.NORMAL) -> None:
        """Return when a call to `group` may go now; the call is counted against its windows."""
        budget = self._budgets[group]
        queue = self._queues[group]
        now = self._clock()
        if (not queue or queue[0][0] > priority) and budget.wait_time(now, priority) == 0:
            budget.record(now)
            self.granted[group] += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(queue, (int(priority), next(self._order), future))
        self.waited[group] += 1
        self._wake(group)
        await future

    def back_off(self, group: EndpointGroup, seconds: float) -> None:
        """Pause `group` for `seconds`: the broker answered "exceeding access rate"."""
        self.backoffs[group] += 1
        self._budgets[group].block_until(self._clock() + seconds)
        log.warning("broker rate limit hit on %s: pausing it for %.2f s", group.value, seconds)

    def _wake(self, group: EndpointGroup) -> None:
        """Start the group's dispatcher, or make it look again (a more urgent caller arrived)."""
        task = self._dispatchers.get(group)
        if task is None or task.done():
            self._dispatchers[group] = asyncio.ensure_future(self._dispatch(group))
            return
        nap = self._naps.get(group)
        if nap is not None and not nap.done():
            nap.cancel()

    async def _dispatch(self, group: EndpointGroup) -> None:
        budget = self._budgets[group]
        queue = self._queues[group]
        while queue:
            priority, _, future = queue[0]
            if future.done():  # its caller gave up
                heapq.heappop(queue)
                continue
            now = self._clock()
            wait = budget.wait_time(now, Priority(priority))
            if wait == 0:
                heapq.heappop(queue)
                budget.record(now)
                self.granted[group] += 1
                future.set_result(None)
                continue
            nap = asyncio.ensure_future(self._sleep(wait))
            self._naps[group] = nap
            try:
                await asyncio.wait({nap})
            finally:
                nap.cancel()
                self._naps.pop(group, None)

    async def close(self) -> None:
        """Stop the dispatchers; callers still queued get `asyncio.CancelledError`."""
        for task in self._dispatchers.values():
            task.cancel()
        for queue in self._queues.values():
            for _, _, future in queue:
                future.cancel()
            queue.clear()
        await asyncio.gather(*self._dispatchers.values(), return_exceptions=True)
        self._dispatchers.clear()
