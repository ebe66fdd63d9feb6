"""Order-path benchmarks: submit → acknowledgement through the engine alone and through the actor.

Each order is journaled (fsync'd, or to Redis) before it is sent, so the journal's write is part
of every figure. Numbers, never pass/fail: `shardline bench orders` prints them as JSON.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from actors.execution.engine import ExecutionEngine
from actors.execution.risk import PreTradeRisk
from actors.execution.venue import LocalPaperVenue
from actors.journal.journal import open_journal
from actors.orders import OrderRequest, OrderStatus, OrderType, Side
from cluster.config import RiskConfig, parse_config

INSTRUMENT = "NSE:3045"


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1e3
    p50, p95, p99, top = np.percentile(values, [50, 95, 99, 100])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(top), 3),
    }


def bench_order(n: int, run: str) -> OrderRequest:
    # Alternate buys and sells so the position (and its risk limit) stays flat.
    return OrderRequest(
        client_order_id=f"{run}-{n}",
        book="bench",
        instrument=INSTRUMENT,
        side=Side.BUY if n % 2 == 0 else Side.SELL,
        quantity=1,
        order_type=OrderType.MARKET,
    )


def bench_engine(orders: int, redis_url: str | None) -> dict[str, Any]:
    """The plain engine with an in-process paper venue and a real journal."""

    async def run(directory: str) -> dict[str, Any]:
        journal = open_journal(f"bench-{os.getpid()}", directory, redis_url)
        venue = LocalPaperVenue()
        venue.set_quote(INSTRUMENT, 80_000, 79_995, 80_005)
        engine = ExecutionEngine(journal, venue, PreTradeRisk.from_config(RiskConfig()))
        engine.update_marks({INSTRUMENT: 80_000})
        latencies = []
        started = time.perf_counter()
        for n in range(orders):
            t0 = time.perf_counter()
            update = await engine.submit(bench_order(n, "e"))
            latencies.append(time.perf_counter() - t0)
            assert update.status is not OrderStatus.REJECTED, update.reason
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0)  # the last fills
        stats = journal.stats()
        journal.close()
        return {
            "orders": orders,
            "journal": stats.backend,
            "records_journaled": stats.appended,
            "orders_per_s": round(orders / elapsed),
            "submit_to_ack_ms": percentiles_ms(latencies),
        }

    with tempfile.TemporaryDirectory() as directory:
        return asyncio.run(run(directory))


def bench_actor(orders: int, redis_url: str | None) -> dict[str, Any]:
    """The execution actor and a paper venue actor on Ray; the caller waits for each answer."""
    import ray

    from actors.execution.actor import PaperVenueActor, start_execution
    from cluster.topology import NAMESPACE

    tag = f"bench-{os.getpid()}"
    with tempfile.TemporaryDirectory() as directory:
        config = parse_config({"data_dir": str(Path(directory))})
        venue: Any = (
            ray.remote(PaperVenueActor)
            .options(name=f"venue-{tag}", namespace=NAMESPACE)
            .remote(f"execution-{tag}")
        )
        ray.get(venue.set_quote.remote(INSTRUMENT, 80_000, 79_995, 80_005))
        actor = start_execution(
            config,
            options={"name": f"execution-{tag}", "resources": {}},
            venue=f"venue-{tag}",
            journal_stream=tag,
            redis_url=redis_url or "",
            load_catalog=False,
        )
        ray.get(actor.update_marks.remote({INSTRUMENT: 80_000}))
        ray.get(actor.submit.remote(bench_order(0, "warm")))
        latencies = []
        started = time.perf_counter()
        for n in itertools.islice(itertools.count(), orders):
            t0 = time.perf_counter()
            ray.get(actor.submit.remote(bench_order(n, "a")))
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        stats = ray.get(actor.stats.remote())
        for handle in (actor, venue):
            ray.kill(handle, no_restart=True)
    return {
        "orders": orders,
        "journal": stats["journal"]["backend"],
        "orders_per_s": round(orders / elapsed),
        "submit_to_ack_ms": percentiles_ms(latencies),
        "fills": stats["fills"],
    }
