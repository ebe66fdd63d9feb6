"""Metric declarations and the translation of actors' stats() answers into metric updates.

Where the stats come from a plain class (router, execution engine, stream client, risk, health
board), the test builds that real class and reads its real answer, so a renamed stats field
fails here instead of flattening a dashboard.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.angel.codec import TickDecoder
from actors.angel.stream import SmartStreamClient
from actors.execution.engine import ExecutionEngine
from actors.execution.risk import PreTradeRisk
from actors.execution.venue import LocalPaperVenue
from actors.journal.file_journal import FileJournal
from actors.orders import Fill, OrderRequest, OrderType, Product, Side
from actors.router.router import TickRouter
from actors.ticks import TICK_DTYPE, FeedMode
from cluster import metrics as m
from cluster.config import FlowPolicy, RiskConfig, RouterConfig
from cluster.health import HealthBoard

SBIN = "NSE:3045"


class Recorded:
    """The recorder the exporter writes to in these tests: every update, in order."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, dict[str, str], float]] = []

    def __call__(self, spec: m.MetricSpec, tags: Mapping[str, str], value: float) -> None:
        spec.check_tags(tags)  # what Ray would refuse, refused here too
        self.updates.append((spec.name, dict(tags), value))

    def last(self, name: str, **tags: str) -> float | None:
        values = [v for n, t, v in self.updates if n == name and t == tags]
        return values[-1] if values else None


def by_series(samples: list[m.Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {(s.spec.name, s.tags): s.value for s in samples}
    assert len(out) == len(samples), "a stats answer must not give one series twice"
    return out


def value(samples: list[m.Sample], spec: m.MetricSpec, **tags: str) -> float | None:
    return by_series(samples).get((spec.name, tuple(sorted(tags.items()))))


# -- declarations -------------------------------------------------------------------------------


def test_every_metric_has_a_unique_name_and_exported_series() -> None:
    names = [spec.name for spec in m.ALL_METRICS]
    assert len(names) == len(set(names))
    assert len(m.ALL_METRICS) >= 40
    series = [n for spec in m.ALL_METRICS for n in spec.exported_names]
    assert len(series) == len(set(series))
    assert m.TICKS_IN in m.ALL_METRICS and m.JOURNAL_WRITE_FAILURES in m.ALL_METRICS


def test_every_declaration_is_ascii_as_rays_metric_core_requires() -> None:
    # Ray's C++ metrics refuse anything else at creation (a UnicodeEncodeError in the exporter).
    for spec in m.ALL_METRICS:
        assert [spec.name, spec.description, *spec.tag_keys] == [
            t.encode("ascii", "replace").decode() for t in [spec.name, spec.description, *spec.tag_keys]
        ], spec.name


@pytest.mark.parametrize(
    ("spec", "exported"),
    [
        (m.TICKS_IN, ("ray_shardline_ticks_in_total",)),
        (m.ROUTER_BUFFER_DEPTH, ("ray_shardline_router_buffer_depth",)),
        (
            m.ORDER_ACK_LATENCY,
            (
                "ray_shardline_order_ack_seconds_bucket",
                "ray_shardline_order_ack_seconds_sum",
                "ray_shardline_order_ack_seconds_count",
            ),
        ),
    ],
)
def test_exported_names_follow_rays_prefix_and_suffixes(
    spec: m.MetricSpec, exported: tuple[str, ...]
) -> None:
    assert spec.exported_names == exported


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": "ticks_in", "kind": m.MetricKind.COUNTER}, "must match"),
        ({"name": "shardline_Ticks", "kind": m.MetricKind.GAUGE}, "must match"),
        ({"name": "shardline_ticks_total", "kind": m.MetricKind.COUNTER}, "'_total' is added on export"),
        ({"name": "shardline_ticks_total", "kind": m.MetricKind.TOTAL}, "'_total' is added on export"),
        ({"name": "shardline_x", "kind": m.MetricKind.GAUGE, "tag_keys": ("a", "a")}, "unique"),
        ({"name": "shardline_x", "kind": m.MetricKind.GAUGE, "tag_keys": ("Actor",)}, "snake_case"),
        ({"name": "shardline_x", "kind": m.MetricKind.HISTOGRAM}, "increasing positive"),
        ({"name": "shardline_x", "kind": m.MetricKind.HISTOGRAM, "boundaries": (1.0, 1.0)}, "increasing"),
        ({"name": "shardline_x", "kind": m.MetricKind.HISTOGRAM, "boundaries": (0.0, 1.0)}, "positive"),
        ({"name": "shardline_x", "kind": m.MetricKind.GAUGE, "boundaries": (1.0,)}, "takes no boundaries"),
    ],
)
def test_a_bad_declaration_is_refused_with_the_reason(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        m.MetricSpec(description="d", **kwargs)


def test_histograms_have_buckets_that_cover_their_targets() -> None:
    # The design's targets: p99 feed->strategy < 20 ms, p95 submit->ack < 10 ms.
    assert 0.02 in m.TICK_TO_STRATEGY.boundaries
    assert 0.01 in m.ORDER_ACK_LATENCY.boundaries


# -- bound metrics ------------------------------------------------------------------------------


def test_a_bound_metric_records_with_its_fixed_tags() -> None:
    rec = Recorded()
    cost = m.SLIPPAGE_COST.bind(book="ema", direction="adverse")
    cost.record = rec
    cost.inc(5)
    cost.inc(0)  # nothing to add: not recorded (Ray refuses zero increments)
    cost.inc(2.5)
    total = m.TICKS_IN.bind(actor="feed-0", deployment="")
    total.record = rec
    total.set(0)  # a total starts at zero, so increase() sees its first step
    total.set(7)
    assert rec.updates == [
        ("shardline_slippage_rupees", {"book": "ema", "direction": "adverse"}, 5.0),
        ("shardline_slippage_rupees", {"book": "ema", "direction": "adverse"}, 2.5),
        ("shardline_ticks_in", {"actor": "feed-0", "deployment": ""}, 0.0),
        ("shardline_ticks_in", {"actor": "feed-0", "deployment": ""}, 7.0),
    ]


@pytest.mark.parametrize(
    ("spec", "tags", "error", "match"),
    [
        (m.TICKS_IN, {"actor": "feed-0"}, ValueError, "takes tags"),
        (m.TICKS_IN, {"actor": "feed-0", "deployment": "", "shard": "1"}, ValueError, "takes tags"),
        (m.TICKS_IN, {"actor": "feed-0", "deployment": 3}, TypeError, "must be str"),
    ],
)
def test_binding_wrong_tags_names_the_metric_and_the_tags(
    spec: m.MetricSpec, tags: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        spec.bind(**tags)


@pytest.mark.parametrize(
    ("spec", "call", "match"),
    [
        (m.TICKS_IN, "inc", "is a total, not a counter"),
        (m.SLIPPAGE_COST, "set", "is a counter, not a gauge or total"),
        (m.ORDERS_OPEN, "observe", "is a gauge, not a histogram"),
        (m.ORDER_ACK_LATENCY, "set", "is a histogram, not a gauge or total"),
    ],
)
def test_a_bound_metric_only_takes_its_own_kind_of_update(spec: m.MetricSpec, call: str, match: str) -> None:
    tags = {k: "x" for k in spec.tag_keys}
    bound = spec.bind(**tags)
    bound.record = Recorded()
    with pytest.raises(TypeError, match=match):
        getattr(bound, call)(1.0)


@pytest.mark.parametrize(
    ("bound", "call", "match"),
    [
        (m.SLIPPAGE_COST.bind(book="b", direction="adverse"), "inc", "cannot go down"),
        (m.ROUTER_UNROUTED.bind(), "set", "cannot be negative"),
    ],
)
def test_counters_and_totals_refuse_negative_values(bound: m.BoundMetric, call: str, match: str) -> None:
    bound.record = Recorded()
    with pytest.raises(ValueError, match=match):
        getattr(bound, call)(-1)


# -- stats of each actor kind ------------------------------------------------------------------


async def no_headers() -> Mapping[str, str]:
    return {}


def stream_counters(**values: int) -> dict[str, Any]:
    """A real SmartStream client's counters() (never connected) with some of its stats set."""
    client = SmartStreamClient(
        "ws://127.0.0.1:1/never", no_headers, TickDecoder.from_keys({SBIN: 0}), lambda ticks: None
    )
    for key, v in values.items():
        setattr(client.stats, key, v)
    return client.counters()


def test_feed_stats_give_ticks_reconnects_gaps_and_connections() -> None:
    stream = stream_counters(ticks_delivered=1000, reconnects=2, stalls=1)
    # FeedActor.stats() wraps the client's counters like this.
    stats = {
        "pid": 11,
        "state": "running",
        "ticks_out": 990,
        "batches": 7,
        "push_wait_s": 0.25,
        "lost_router_restarting": 10,
        "subscriptions": 40,
        "stream": stream,
    }
    s = m.feed_samples("feed-0", stats)
    assert value(s, m.TICKS_IN, actor="feed-0", deployment="") == 1000
    assert value(s, m.TICKS_OUT, actor="feed-0", deployment="") == 990
    assert value(s, m.TICKS_DROPPED, actor="feed-0", deployment="") == 10
    assert value(s, m.FEED_RECONNECTS, actor="feed-0") == 2
    assert value(s, m.FEED_STALLS, actor="feed-0") == 1
    assert value(s, m.FEED_SEQUENCE_GAPS, actor="feed-0") == 0
    assert value(s, m.FEED_CONNECTIONS, actor="feed-0") == 0
    assert value(s, m.FEED_SUBSCRIPTIONS, actor="feed-0") == 40
    assert value(s, m.FEED_PUSH_WAIT, actor="feed-0") == 0.25


def tick_batch(iids: np.ndarray) -> np.ndarray:
    out = np.zeros(len(iids), dtype=TICK_DTYPE)
    out["iid"] = iids
    out["seq"] = np.arange(len(iids))
    out["ltp"] = 10_000
    out["mode"] = FeedMode.LTP
    return out


def router_stats(router: TickRouter) -> dict[str, Any]:
    """What RouterActor.stats() answers, built from the plain router the same way."""
    stats = router.stats()
    deployments = msgspec.to_builtins(stats.deployments)
    for deployment in deployments.values():
        for shard in deployment["shards"]:
            shard["registered"] = True
            shard["errors"] = 0
    return {
        "pid": 12,
        "ticks_in": stats.received,
        "ticks_out": sum(d.ticks_out for d in stats.deployments.values()),
        "unrouted": stats.unrouted,
        "rejected_iids": stats.rejected_iids,
        "deployments": deployments,
    }


def test_router_stats_give_per_deployment_flow_and_per_shard_depth() -> None:
    router = TickRouter(RouterConfig(buffer_ticks=1000, virtual_nodes=16), max_iid=100)
    router.add_deployment("ema", {i: f"NSE:{1000 + i}" for i in range(20)}, shards=2)
    router.add_deployment(
        "rsi", {i: f"NSE:{1000 + i}" for i in range(10)}, shards=1, policy=FlowPolicy.CONFLATE
    )
    router.shard_up("ema", 0)
    router.shard_up("ema", 1)
    router.shard_up("rsi", 0)
    router.push(tick_batch(np.arange(30) % 25))  # iids 20..24 belong to no deployment
    delivery = router.take("ema", 0)
    assert delivery is not None
    router.complete(delivery)
    s = m.router_samples("router", router_stats(router))

    assert value(s, m.TICKS_IN, actor="router", deployment="") == 30
    assert value(s, m.TICKS_OUT, actor="router", deployment="ema") == len(delivery.ticks)
    assert value(s, m.TICKS_OUT, actor="router", deployment="rsi") == 0
    assert value(s, m.TICKS_CONFLATED, actor="router", deployment="rsi") == 0
    assert value(s, m.ROUTER_UNROUTED) == router.stats().unrouted > 0
    for k in (0, 1):
        assert value(s, m.ROUTER_BUFFER_DEPTH, deployment="ema", shard=str(k)) == router.pending("ema", k)
        assert value(s, m.ROUTER_SHARD_UP, deployment="ema", shard=str(k)) == 1
    assert value(s, m.ROUTER_BUFFER_DEPTH, deployment="rsi", shard="0") == router.pending("rsi", 0) > 0
    assert value(s, m.ROUTER_IN_FLIGHT, deployment="ema", shard="0") == 0


def test_a_router_shard_that_is_down_or_unregistered_reads_as_not_up() -> None:
    router = TickRouter(RouterConfig(buffer_ticks=100, virtual_nodes=8))
    router.add_deployment("ema", {0: "NSE:1", 1: "NSE:2"}, shards=2)
    router.shard_up("ema", 0)
    stats = router_stats(router)
    assert value(m.router_samples("router", stats), m.ROUTER_SHARD_UP, deployment="ema", shard="1") == 0
    stats["deployments"]["ema"]["shards"][0]["registered"] = False
    assert value(m.router_samples("router", stats), m.ROUTER_SHARD_UP, deployment="ema", shard="0") == 0


def shard_stats(**overrides: Any) -> dict[str, Any]:
    """The keys StrategyShard.stats() answers (a live Nautilus node is not needed to read them)."""
    stats: dict[str, Any] = {
        "name": "shard-ema-cross-1",
        "deployment": "ema-cross",
        "index": 1,
        "state": "running",
        "batches": 3,
        "rows_received": 500,
        "rows_handled": 480,
        "rows_dropped": 20,
        "ticks_handled": 700,
        "unknown_rows": 1,
        "invalid_rows": 2,
        "skipped_rows": 0,
        "latency_recv_to_strategy": {"p50_us": 150.0, "p99_us": 900.0, "max_us": 2500.0, "samples": 480},
        "orders_sent": 9,
        "orders_rejected": 1,
        "fills": 8,
        "positions": {"SBIN-EQ.NSE": "10"},
    }
    stats.update(overrides)
    return stats


def test_shard_stats_give_flow_orders_and_lag_in_seconds() -> None:
    s = m.shard_samples("shard-ema-cross-1", shard_stats())
    tags = {"deployment": "ema-cross", "shard": "1"}
    assert value(s, m.TICKS_IN, actor="shard-ema-cross-1", deployment="ema-cross") == 500
    assert value(s, m.TICKS_OUT, actor="shard-ema-cross-1", deployment="ema-cross") == 480
    assert value(s, m.TICKS_DROPPED, actor="shard-ema-cross-1", deployment="ema-cross") == 20
    assert value(s, m.SHARD_RUNNING, **tags) == 1
    assert value(s, m.SHARD_LAG, quantile="0.99", **tags) == pytest.approx(0.0009)
    assert value(s, m.SHARD_LAG, quantile="max", **tags) == pytest.approx(0.0025)
    assert value(s, m.SHARD_BAD_ROWS, reason="invalid", **tags) == 2
    assert value(s, m.STRATEGY_ORDERS, outcome="sent", **tags) == 9
    assert value(s, m.STRATEGY_ORDERS, outcome="rejected", **tags) == 1
    assert value(s, m.STRATEGY_FILLS, **tags) == 8


def test_a_shard_without_samples_reports_no_lag_and_a_failed_one_is_not_running() -> None:
    empty = {"p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0, "samples": 0}
    s = m.shard_samples("shard-ema-cross-1", shard_stats(state="failed", latency_recv_to_strategy=empty))
    assert not [x for x in s if x.spec is m.SHARD_LAG]
    assert value(s, m.SHARD_RUNNING, deployment="ema-cross", shard="1") == 0


def test_a_shard_answer_without_its_identity_is_named_from_the_actor_name() -> None:
    stats = shard_stats()
    del stats["deployment"], stats["index"]
    s = m.shard_samples("shard-ema-cross-3", stats)
    assert value(s, m.STRATEGY_FILLS, deployment="ema-cross", shard="3") == 8


def order(coid: str, **kw: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "client_order_id": coid,
        "book": "manual",
        "instrument": SBIN,
        "side": Side.BUY,
        "quantity": 10,
        "order_type": OrderType.MARKET,
    }
    fields.update(kw)
    return OrderRequest(**fields)


async def test_execution_stats_give_orders_by_status_rejects_and_the_journal(tmp_path: Path) -> None:
    clock = itertools.count(1_000).__next__
    venue = LocalPaperVenue(clock=clock)
    venue.set_quote(SBIN, ltp=80_000, bid=79_995, ask=80_005)
    journal = FileJournal(tmp_path / "execution.jsonl", clock=clock, lock_timeout_s=0.1)
    engine = ExecutionEngine(journal, venue, PreTradeRisk.from_config(RiskConfig()), clock=clock)
    engine.update_marks({SBIN: 80_000})
    await engine.submit(order("ok"))
    await engine.submit(order("too-big", quantity=200_000))
    stats_dict = engine.stats_dict()
    # ExecutionActor.stats() adds these to the engine's answer.
    stats = {"pid": 13, "orders_submitted": stats_dict["submitted"], "subscribers": {}, **stats_dict}
    journal.close()

    s = m.stats_samples("execution", "execution", stats)
    assert value(s, m.ORDERS, status="submitted") == 2
    assert value(s, m.ORDERS, status="accepted") == 1
    assert value(s, m.ORDERS, status="refused") == 1
    assert value(s, m.ORDER_REJECTS, source="risk", reason="unclassified") == 1
    assert value(s, m.RISK_REJECTIONS, check="unclassified") == 1
    assert value(s, m.ORDER_REJECTS, source="venue", reason="unclassified") == 0
    assert value(s, m.EXECUTION_ANOMALIES, kind="duplicate_fills") == 0
    assert value(s, m.JOURNAL_APPENDS, actor="execution") == stats["journal"]["appended"] > 0
    assert value(s, m.JOURNAL_WRITE_FAILURES, actor="execution") == 0
    assert value(s, m.ORDERS_OPEN) == stats["working"]


def test_execution_breakdowns_are_used_when_present() -> None:
    from actors.angel.common import EndpointGroup
    from actors.angel.limits import RateLimiter

    limiter = RateLimiter()
    limiter.granted[EndpointGroup.ORDERS] = 40
    limiter.waited[EndpointGroup.ORDERS] = 3
    limiter.backoffs[EndpointGroup.ORDERS] = 1
    stats = {
        "refused": 5,
        "refusals": {"max_quantity": 3, "price_band": 2},
        "rate_limits": m.rate_limit_counters(limiter),
    }
    s = m.execution_samples("execution", stats)
    assert value(s, m.ORDER_REJECTS, source="risk", reason="max_quantity") == 3
    assert value(s, m.RISK_REJECTIONS, check="price_band") == 2
    assert value(s, m.ORDER_REJECTS, source="risk", reason="unclassified") is None
    assert value(s, m.RATE_LIMIT_GRANTED, group="orders") == 40
    assert value(s, m.RATE_LIMIT_WAITS, group="orders") == 3
    assert value(s, m.RATE_LIMIT_BACKOFFS, group="orders") == 1
    assert value(s, m.RATE_LIMIT_WAITS, group="candles") == 0


def test_risk_state_gives_kill_switches_and_pnl_per_book() -> None:
    risk = PreTradeRisk.from_config(RiskConfig())
    fill = Fill(
        client_order_id="a",
        venue_order_id="P1",
        trade_id="T1",
        book="ema",
        instrument=SBIN,
        side=Side.BUY,
        quantity=10,
        price=79_000,
        product=Product.INTRADAY,
        ts_ns=1,
        commission=2_000,
    )
    risk.on_fill(fill)
    risk.mark(SBIN, 80_000)  # the market moved after the fill
    risk.set_kill_switch("ema", True, "drawdown", 2)
    state = msgspec.to_builtins(risk.state())
    s = m.risk_samples(state)
    # 10 × (800.00 − 790.00) = 100.00 unrealized, 20.00 charges.
    assert value(s, m.PNL, book="ema", component="unrealized") == 100.0
    assert value(s, m.PNL, book="ema", component="charges") == 20.0
    assert value(s, m.PNL, book="ema", component="total") == 80.0
    assert value(s, m.PNL_TOTAL) == 80.0
    assert value(s, m.KILL_SWITCH_ENGAGED, book="ema") == 1
    assert value(s, m.KILL_SWITCH_ENGAGED, book="global") == 0
    assert value(s, m.OPEN_POSITIONS, book="ema") == 1
    # Carried inside execution stats, the same samples come out.
    assert by_series(m.execution_samples("execution", {"risk": state})) == by_series(s)


def test_simulator_stats_give_its_ticks() -> None:
    s = m.stats_samples("simulator", "sim", {"pid": 1, "generated": 100, "sent": 95, "dropped": 5})
    assert value(s, m.TICKS_IN, actor="sim", deployment="") == 100
    assert value(s, m.TICKS_OUT, actor="sim", deployment="") == 95
    assert value(s, m.TICKS_DROPPED, actor="sim", deployment="") == 5


def test_an_unknown_kind_still_exports_its_journal() -> None:
    stats = {"journal": {"backend": "file", "appended": 4, "failures": 1}}
    s = m.stats_samples("portfolio", "portfolio", stats)
    assert by_series(s) == {
        ("shardline_journal_appends", (("actor", "portfolio"),)): 4,
        ("shardline_journal_write_failures", (("actor", "portfolio"),)): 1,
    }


@pytest.mark.parametrize(
    ("kind", "stats"),
    [
        ("feed", {"stream": "not a dict", "ticks_out": "many", "subscriptions": None}),
        ("router", {"deployments": {"ema": {"shards": [None, {"buffered": 3}, "x"]}}}),
        ("router", {"deployments": ["ema"]}),
        ("shard", {"latency_recv_to_strategy": [1, 2], "rows_received": object()}),
        ("execution", {"refusals": ["x"], "rate_limits": {"orders": 5}, "risk": {"books": {"b": None}}}),
        ("simulator", {}),
    ],
)
def test_malformed_stats_give_no_samples_for_the_bad_parts_and_never_raise(
    kind: str, stats: dict[str, Any]
) -> None:
    samples = m.stats_samples(kind, "x", stats)
    assert all(isinstance(s.value, float) for s in samples)
    assert not [s for s in samples if s.spec is m.ROUTER_BUFFER_DEPTH]


# -- the exporter -------------------------------------------------------------------------------


def test_totals_and_gauges_are_published_as_they_stand_restarts_included() -> None:
    rec = Recorded()
    exporter = m.StatsExporter(rec)
    for total, subs in ((0, 40), (100, 40), (250, 41), (5, 41)):  # the feed restarted before the last
        exporter.export_stats("feed", "feed-0", {"ticks_out": total, "subscriptions": subs})
    assert [v for n, _, v in rec.updates if n == "shardline_ticks_out"] == [0, 100, 250, 5]
    assert [v for n, _, v in rec.updates if n == "shardline_feed_subscriptions"] == [40, 40, 41, 41]


def test_a_negative_total_is_not_published() -> None:
    rec = Recorded()
    made = m.StatsExporter(rec).export_stats("feed", "feed-0", {"ticks_out": -3, "subscriptions": 2})
    assert made == 1 and [n for n, _, _ in rec.updates] == ["shardline_feed_subscriptions"]


def test_each_actor_keeps_its_own_series() -> None:
    rec = Recorded()
    exporter = m.StatsExporter(rec)
    exporter.export_stats("feed", "feed-0", {"ticks_out": 10})
    exporter.export_stats("feed", "feed-1", {"ticks_out": 7})
    assert rec.last("shardline_ticks_out", actor="feed-0", deployment="") == 10
    assert rec.last("shardline_ticks_out", actor="feed-1", deployment="") == 7


def test_a_failing_recorder_is_logged_and_the_rest_still_goes_out(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def flaky(spec: m.MetricSpec, tags: Mapping[str, str], value: float) -> None:
        if spec is m.TICKS_OUT:
            raise RuntimeError("exporter down")
        seen.append(spec.name)

    made = m.StatsExporter(flaky).export_stats("feed", "feed-0", {"ticks_out": 3, "subscriptions": 2})
    assert made == 1 and seen == ["shardline_feed_subscriptions"]
    assert "could not be recorded" in caplog.text


def test_a_supervisor_status_document_exports_health_restarts_and_stats() -> None:
    board = HealthBoard({"feed": ("ticks_out",)})
    board.expect("feed-0", "feed")
    board.expect("router", "router")
    board.observe_ok("feed-0", 1_000_000_000, {"pid": 1, "ticks_out": 10, "subscriptions": 4})
    board.observe_ok("feed-0", 2_000_000_000, {"pid": 2, "ticks_out": 3, "subscriptions": 4})
    board.observe_error("router", "ActorDiedError: gone")
    rec = Recorded()
    made = m.StatsExporter(rec).export_status(board.status(2_500_000_000))
    assert made > 0
    assert rec.last("shardline_actor_healthy", actor="feed-0", kind="feed") == 1
    assert rec.last("shardline_actor_healthy", actor="router", kind="router") == 0
    assert rec.last("shardline_actor_restarts", actor="feed-0", kind="feed") == 1
    assert rec.last("shardline_actor_restarts", actor="router", kind="router") == 0
    assert rec.last("shardline_ticks_out", actor="feed-0", deployment="") == 3


# -- reject reasons and slippage ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"quantity": 200_000}, "max_quantity"),
        ({"order_type": OrderType.LIMIT, "price": 95_000}, "price_band"),
        ({"quantity": 90_000, "order_type": OrderType.LIMIT, "price": 80_000}, "max_value"),
        ({"side": Side.SELL, "product": Product.DELIVERY}, "short_delivery"),
        ({"quantity": 0}, "order_shape"),
        ({"order_type": OrderType.LIMIT}, "order_shape"),
        ({"instrument": "SBIN"}, "unknown_instrument"),
        ({"product": Product.CARRYFORWARD}, "order_shape"),
    ],
)
def test_real_risk_refusals_fall_into_their_class(changes: dict[str, Any], expected: str) -> None:
    risk = PreTradeRisk.from_config(RiskConfig(max_order_value_rupees=1_000_000))
    risk.mark(SBIN, 80_000)
    reason = risk.check(order("x", **changes))
    assert reason is not None
    assert m.classify_reject_reason(reason) == expected, reason


def test_an_engaged_kill_switch_refusal_is_classed_as_such() -> None:
    risk = PreTradeRisk.from_config(RiskConfig())
    risk.set_kill_switch("manual", True, "daily loss", 1)
    reason = risk.check(order("x"))
    assert reason is not None and m.classify_reject_reason(reason) == "kill_switch"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("Access denied because of exceeding access rate", "rate_limit"),
        ("not done: the journal could not record it (disk full)", "journal"),
        ("Insufficient funds", "margin"),
        ("something new", "other"),
    ],
)
def test_venue_and_other_reasons_are_classed(reason: str, expected: str) -> None:
    assert m.classify_reject_reason(reason) == expected


@pytest.mark.parametrize(
    ("side", "expected", "fill", "qty", "bps", "cost", "direction"),
    [
        ("BUY", 10_000, 10_005, 10, Fraction(5), 50, "adverse"),
        ("SELL", 10_000, 10_005, 10, Fraction(-5), -50, "favourable"),
        ("SELL", 80_000, 79_990, 3, Fraction(5, 4), 30, "adverse"),
        ("buy", 30_000, 29_999, 1, Fraction(-1, 3), -1, "favourable"),
    ],
)
def test_slippage_is_exact_and_signed_adverse_positive(
    side: str, expected: int, fill: int, qty: int, bps: Fraction, cost: int, direction: str
) -> None:
    slip = m.slippage(side, expected, fill, qty)
    assert slip.bps == bps and slip.cost == cost and slip.direction == direction


@pytest.mark.parametrize(
    ("args", "match"),
    [(("BUY", 0, 1, 1), "expected price"), (("BUY", 1, 1, 0), "quantity"), (("HOLD", 1, 1, 1), "side")],
)
def test_slippage_refuses_bad_input(args: tuple[str, int, int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        m.slippage(*args)


@given(
    st.integers(min_value=1, max_value=10**9),
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=1, max_value=10**6),
)
def test_slippage_of_a_sell_mirrors_a_buy_and_bps_and_cost_agree(expected: int, fill: int, qty: int) -> None:
    buy, sell = m.slippage("BUY", expected, fill, qty), m.slippage("SELL", expected, fill, qty)
    assert buy.cost == -sell.cost and buy.bps == -sell.bps
    assert buy.bps * expected * qty / 10_000 == buy.cost


@given(st.text(max_size=200))
def test_any_reason_text_gets_one_of_the_bounded_classes(reason: str) -> None:
    known = {cls for cls, _ in m._REASON_CLASSES} | {"other"}
    assert m.classify_reject_reason(reason) in known


def test_record_slippage_observes_bps_and_adds_rupees() -> None:
    rec = Recorded()
    m.record_slippage("ema", m.slippage("BUY", 80_000, 80_040, 10), record=rec)
    m.record_slippage("ema", m.slippage("BUY", 80_000, 80_000, 10), record=rec)  # none: nothing recorded
    assert rec.updates == [
        ("shardline_fill_slippage_bps", {"book": "ema", "direction": "adverse"}, 5.0),
        ("shardline_slippage_rupees", {"book": "ema", "direction": "adverse"}, 4.0),
    ]
