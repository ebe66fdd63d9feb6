"""The terminal's market data desk over the real Angel REST client against the simulator's REST server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from actors.angel.auth import AngelCredentials
from actors.angel.factories import AngelEndpoints, connect
from actors.sim.server import SimServer
from actors.sim.universe import synthetic_universe
from cluster.config import SimConfig
from serve.marketdata import BrokerMarketData

pytestmark = pytest.mark.asyncio(loop_scope="module")

INSTRUMENTS = synthetic_universe(20, seed=5)
EQUITY = INSTRUMENTS[0]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    config = SimConfig(enforce_rate_limits=True, tick_rate=500, seed=5)
    with SimServer(config, INSTRUMENTS).run_in_thread() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(sim: SimServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrokerMarketData]:
    # One login for the module: the simulator enforces Angel's one login a second.
    connection = connect(
        AngelCredentials.for_simulator(sim.config),
        AngelEndpoints(sim.rest_url, sim.stream_url, sim.order_url),
        tmp_path_factory.mktemp("angel"),
    )
    yield BrokerMarketData(connection.rest)
    await connection.close()


def rest_calls(sim: SimServer) -> int:
    return int(sim.counters()["rest_calls"])


async def test_candles_are_ordered_consistent_bars_on_the_tick_grid(desk: BrokerMarketData) -> None:
    end = int(time.time())
    bars = await desk.candles(EQUITY.key, "5m", end - 5 * 86_400, end)
    assert bars, "the simulator serves candles for any recent range"
    times = [b["time"] for b in bars]
    assert times == sorted(times) and len(set(times)) == len(times)
    for bar in bars:
        assert bar["time"] % 300 == 0
        assert bar["low"] <= min(bar["open"], bar["close"]) <= max(bar["open"], bar["close"]) <= bar["high"]
        assert all(bar[f] % EQUITY.tick_size == 0 for f in ("open", "high", "low", "close"))
        assert bar["volume"] >= 0


async def test_repeated_and_concurrent_candle_asks_share_broker_calls(
    desk: BrokerMarketData, sim: SimServer
) -> None:
    end = int(time.time())
    before = rest_calls(sim)
    results = await asyncio.gather(*(desk.candles(EQUITY.key, "1m", end - 3600, end) for _ in range(5)))
    first_round = rest_calls(sim) - before
    assert all(r == results[0] for r in results)
    again = await desk.candles(EQUITY.key, "1m", end - 3600, end)
    assert again == results[0]
    # One login plus one candle call at most: five concurrent asks and a cached repeat cost no more.
    assert first_round <= 2
    assert rest_calls(sim) - before == first_round


async def test_quotes_carry_five_levels_and_closes_are_cached(desk: BrokerMarketData, sim: SimServer) -> None:
    keys = [i.key for i in INSTRUMENTS[:3]]
    quotes = await desk.quotes(keys)
    assert set(quotes) == set(keys)
    for key, quote in quotes.items():
        bids, asks = quote["bids"], quote["asks"]
        assert 0 < len(bids) <= 5 and 0 < len(asks) <= 5, key
        assert bids[0]["price"] < asks[0]["price"]
        assert [b["price"] for b in bids] == sorted((b["price"] for b in bids), reverse=True)
        assert all(level["quantity"] > 0 for level in bids + asks)
        assert quote["close"] > 0
    before = rest_calls(sim)
    closes = await desk.closes(keys)
    assert closes == {k: q["close"] for k, q in quotes.items()}
    assert rest_calls(sim) == before  # served from the cache the quotes filled


async def test_unknown_interval_is_refused(desk: BrokerMarketData) -> None:
    with pytest.raises(ValueError, match="interval: one of"):
        await desk.candles(EQUITY.key, "2m", 0, 60)
