"""Angel's rate limits: three windows at once, urgent calls first, a broker back-off honoured."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.angel.common import RATE_LIMITS, EndpointGroup, RateLimit
from actors.angel.limits import Priority, RateLimiter, WindowBudget

ORDERS = EndpointGroup.ORDERS


class ManualClock:
    """Virtual time: `sleep` parks until a test moves the clock past its deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._parked = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        self._parked.set()
        await future

    def _earliest(self) -> tuple[float, int, asyncio.Future[None]] | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0] if self._sleepers else None

    async def run_until_done(self, *aws: Awaitable[Any]) -> None:
        """Let virtual time pass, one wake-up at a time, until every awaitable has finished."""
        target = asyncio.ensure_future(asyncio.gather(*aws))
        while not target.done():
            earliest = self._earliest()
            if earliest is None:
                # Nothing asleep yet: wait for something to park, or for the target to finish.
                self._parked.clear()
                parked = asyncio.ensure_future(self._parked.wait())
                either: set[asyncio.Future[Any]] = {parked, target}
                done, _ = await asyncio.wait(either, timeout=5, return_when=asyncio.FIRST_COMPLETED)
                parked.cancel()
                assert done, "nothing finished and nothing went to sleep within 5 s"
                continue
            deadline, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, deadline)
            future.set_result(None)
        await target


async def yield_until(condition: Callable[[], bool], steps: int = 1000) -> None:
    """Let ready tasks run until `condition` holds; fail if it never does."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def windows_respected(times: list[float], length: float, cap: int) -> bool:
    times = sorted(times)
    return all(
        sum(1 for t in times[i : i + cap + 1] if t < times[i] + length) <= cap for i in range(len(times))
    )


@pytest.mark.parametrize(
    ("limit", "reserve", "normal_allowed", "urgent_allowed"),
    [
        (RATE_LIMITS[ORDERS], 0.1, 18, 20),
        (RATE_LIMITS[ORDERS], 0.0, 20, 20),
        (RATE_LIMITS[EndpointGroup.MARKET_DATA], 0.1, 9, 10),
        (RATE_LIMITS[EndpointGroup.CANDLES], 0.1, 3, 3),
        (RATE_LIMITS[EndpointGroup.BOOKS], 0.5, 1, 1),
    ],
)
def test_per_second_cap_with_urgent_reserve(
    limit: RateLimit, reserve: float, normal_allowed: int, urgent_allowed: int
) -> None:
    budget = WindowBudget(limit, urgent_reserve=reserve)
    for _ in range(normal_allowed):
        assert budget.wait_time(0.0, Priority.NORMAL) == 0
        budget.record(0.0)
    assert budget.wait_time(0.0, Priority.NORMAL) == pytest.approx(1.0)
    for _ in range(urgent_allowed - normal_allowed):
        assert budget.wait_time(0.0, Priority.URGENT) == 0
        budget.record(0.0)
    assert budget.wait_time(0.0, Priority.URGENT) == pytest.approx(1.0)
    assert budget.wait_time(0.999, Priority.URGENT) == pytest.approx(0.001)
    assert budget.wait_time(1.0, Priority.NORMAL) == 0


def test_hourly_cap_binds_when_the_second_and_minute_caps_do_not() -> None:
    budget = WindowBudget(RATE_LIMITS[ORDERS], urgent_reserve=0.0)
    now, times = 0.0, []
    while now < 3600:
        now += budget.wait_time(now, Priority.NORMAL)
        if now >= 3600:
            break
        budget.record(now)
        times.append(now)
    assert len(times) == 1000  # 20/s and 500/min would allow far more in an hour
    assert times[499] < 60 <= times[500]  # the minute cap bit first
    assert budget.wait_time(times[-1], Priority.URGENT) == pytest.approx(times[0] + 3600 - times[-1])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 120, allow_nan=False), st.sampled_from(list(Priority))),
        min_size=1,
        max_size=700,
    )
)
def test_greedy_callers_never_exceed_any_window(arrivals: list[tuple[float, Priority]]) -> None:
    limit = RateLimit(per_second=5, per_minute=40, per_hour=300)
    budget = WindowBudget(limit, urgent_reserve=0.2)
    now, granted = 0.0, []
    for arrival, priority in sorted(arrivals):
        now = max(now, arrival)
        now += budget.wait_time(now, priority)
        assert budget.wait_time(now, priority) == 0
        budget.record(now)
        granted.append((now, priority))
    times = [t for t, _ in granted]
    assert windows_respected(times, 1.0, 5)
    assert windows_respected(times, 60.0, 40)
    assert windows_respected(times, 3600.0, 300)
    normal = [t for t, p in granted if p is Priority.NORMAL]
    assert windows_respected(normal, 1.0, 4) and windows_respected(normal, 60.0, 32)


def test_slack_widens_every_window() -> None:
    budget = WindowBudget(RATE_LIMITS[EndpointGroup.BOOKS], slack_s=0.05)
    budget.record(0.0)
    assert budget.wait_time(1.0, Priority.URGENT) == pytest.approx(0.05)
    assert budget.wait_time(1.05, Priority.URGENT) == 0


def test_block_until_holds_every_priority() -> None:
    budget = WindowBudget(RATE_LIMITS[ORDERS])
    budget.block_until(5.0)
    assert budget.wait_time(1.0, Priority.URGENT) == pytest.approx(4.0)
    assert budget.wait_time(5.0, Priority.NORMAL) == 0


def test_bad_reserve_is_refused() -> None:
    with pytest.raises(ValueError, match="urgent_reserve"):
        WindowBudget(RATE_LIMITS[ORDERS], urgent_reserve=1.0)


async def test_a_cancel_is_not_stuck_behind_a_burst_of_entries() -> None:
    clock = ManualClock()
    limiter = RateLimiter(urgent_reserve=0.1, slack_s=0.0, clock=clock, sleep=clock.sleep)
    entries = [asyncio.ensure_future(limiter.acquire(ORDERS, Priority.NORMAL)) for _ in range(60)]
    await asyncio.wait_for(asyncio.gather(*entries[:18]), timeout=5)
    assert limiter.queued(ORDERS) == 42
    await asyncio.wait_for(limiter.acquire(ORDERS, Priority.URGENT), timeout=5)  # no clock movement
    assert clock.now == 0.0
    for task in entries:
        task.cancel()
    await limiter.close()


async def test_urgent_callers_are_served_before_queued_entries() -> None:
    clock = ManualClock()
    limiter = RateLimiter(urgent_reserve=0.0, slack_s=0.0, clock=clock, sleep=clock.sleep)
    served: list[tuple[str, float]] = []

    async def call(name: str, priority: Priority) -> None:
        await limiter.acquire(ORDERS, priority)
        served.append((name, clock.now))

    tasks = [asyncio.ensure_future(call(f"entry{i}", Priority.NORMAL)) for i in range(25)]
    await yield_until(lambda: len(served) == 20)
    tasks.append(asyncio.ensure_future(call("cancel", Priority.URGENT)))
    await clock.run_until_done(*tasks)
    after_first_second = [name for name, t in served if t >= 1.0]
    assert after_first_second[0] == "cancel"
    assert after_first_second[1:] == [f"entry{i}" for i in range(20, 25)]
    assert all(t == 1.0 for _, t in served[20:])
    await limiter.close()


async def test_broker_back_off_delays_the_next_call() -> None:
    clock = ManualClock()
    limiter = RateLimiter(slack_s=0.0, clock=clock, sleep=clock.sleep)
    await limiter.acquire(EndpointGroup.MARKET_DATA)
    limiter.back_off(EndpointGroup.MARKET_DATA, 2.5)
    await clock.run_until_done(
        asyncio.ensure_future(limiter.acquire(EndpointGroup.MARKET_DATA, Priority.URGENT))
    )
    assert clock.now == pytest.approx(2.5)
    assert limiter.backoffs[EndpointGroup.MARKET_DATA] == 1
    await limiter.close()


async def test_a_caller_that_gives_up_does_not_use_a_slot() -> None:
    clock = ManualClock()
    limiter = RateLimiter({EndpointGroup.BOOKS: RateLimit(1)}, slack_s=0.0, clock=clock, sleep=clock.sleep)
    await limiter.acquire(EndpointGroup.BOOKS)
    quitter = asyncio.ensure_future(limiter.acquire(EndpointGroup.BOOKS))
    stayer = asyncio.ensure_future(limiter.acquire(EndpointGroup.BOOKS))
    await yield_until(lambda: limiter.queued(EndpointGroup.BOOKS) == 2)
    quitter.cancel()
    await clock.run_until_done(stayer)
    assert clock.now == pytest.approx(1.0)  # the stayer took the slot the quitter left
    assert limiter.granted[EndpointGroup.BOOKS] == 2
    await limiter.close()


async def test_groups_do_not_share_budgets() -> None:
    clock = ManualClock()
    limiter = RateLimiter(slack_s=0.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await limiter.acquire(EndpointGroup.CANDLES)
    await asyncio.wait_for(limiter.acquire(EndpointGroup.MARKET_DATA), timeout=5)
    assert limiter.budget(EndpointGroup.CANDLES).in_window(0.0) == [3, 3, 3]
    assert limiter.budget(EndpointGroup.MARKET_DATA).in_window(0.0) == [1, 1, 1]
    await limiter.close()
