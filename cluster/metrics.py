"""Every metric shardline exports, declared once, and the code that fills them from actors' stats.

Metrics go through Ray's metrics API (`ray.util.metrics`), so the Prometheus endpoint Ray runs on
every node carries them. Ray prefixes each name with ``ray_``; counters and totals end in
``_total`` (``shardline_ticks_in`` is scraped as ``ray_shardline_ticks_in_total``).

Nothing here runs per tick. Two ways in:

- The supervisor already polls each actor's ``stats()`` once a second; it hands each answer to
  :func:`export_stats` (or its whole status document to :func:`export_status`). The running
  totals actors keep anyway are published as they stand (kind ``TOTAL``: a Ray gauge named
  ``..._total`` that `rate()` and `increase()` read like a counter). That keeps the exporter
  stateless, makes an actor restart a counter reset Prometheus already understands, and gives
  every series a first sample at zero, so `increase()` sees the first journal failure too (a
  Ray counter only appears on its first increment, which `increase()` would miss).
- What only an actor sees as it happens (a batch's tick latency, an order's acknowledgement
  time, a fill's slippage) it records through a metric bound once to its tags::

      ack = ORDER_ACK_LATENCY.bind(venue="paper")   # once, at start
      ack.observe(seconds)                          # per order

Each stats field read here is named in the ``*_samples`` function for that actor kind, so a
renamed field shows up as a failing unit test rather than a silently flat dashboard.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from typing import Any

log = logging.getLogger(__name__)

RAY_PREFIX = "ray_"
_NAME = re.compile(r"^shardline_[a-z][a-z0-9_]*$")
_TAG = re.compile(r"^[a-z][a-z0-9_]*$")


class MetricKind(StrEnum):
    COUNTER = "counter"  # increments recorded as they happen
    TOTAL = "total"  # a running total an actor keeps, published as it stands (see below)
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name (without Ray's prefix), kind, meaning and tag keys.

    Parameters
    ----------
    name
        ``shardline_...``; counters do not end in ``_total`` (the exporter adds it).
    kind
        Counter, gauge or histogram.
    description
        One line shown by Prometheus and Grafana.
    tag_keys
        Every tag a sample must carry; values are bounded sets (names, indexes, enums), never ids.
    boundaries
        Histogram bucket upper bounds, increasing and positive.
    """

    name: str
    kind: MetricKind
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"metric name {self.name!r} must match {_NAME.pattern}")
        if self.kind in (MetricKind.COUNTER, MetricKind.TOTAL) and self.name.endswith("_total"):
            raise ValueError(f"{self.kind} {self.name!r}: '_total' is added on export; drop it from the name")
        bad = [t for t in self.tag_keys if not _TAG.match(t)]
        if bad or len(set(self.tag_keys)) != len(self.tag_keys):
            raise ValueError(f"metric {self.name!r}: tag keys must be unique snake_case, got {self.tag_keys}")
        if self.kind is MetricKind.HISTOGRAM:
            b = self.boundaries
            if not b or any(x <= 0 for x in b) or any(x >= y for x, y in itertools.pairwise(b)):
                raise ValueError(f"histogram {self.name!r} needs increasing positive boundaries, got {b}")
        elif self.boundaries:
            raise ValueError(f"{self.kind} {self.name!r} takes no boundaries")

    @property
    def exported_names(self) -> tuple[str, ...]:
        """The series names Prometheus sees for this metric."""
        base = RAY_PREFIX + self.name
        if self.kind in (MetricKind.COUNTER, MetricKind.TOTAL):
            return (f"{base}_total",)
        if self.kind is MetricKind.HISTOGRAM:
            return (f"{base}_bucket", f"{base}_sum", f"{base}_count")
        return (base,)

    def bind(self, **tags: str) -> BoundMetric:
        """This metric with its tags fixed, for repeated cheap updates."""
        return BoundMetric(self, self.check_tags(tags))

    def check_tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        if set(tags) != set(self.tag_keys):
            raise ValueError(f"metric {self.name} takes tags {sorted(self.tag_keys)}, got {sorted(tags)}")
        wrong = {k: v for k, v in tags.items() if not isinstance(v, str)}
        if wrong:
            raise TypeError(f"metric {self.name}: tag values must be str, got {wrong}")
        return dict(tags)


def _counter(name: str, description: str, *tags: str) -> MetricSpec:
    return MetricSpec(name, MetricKind.COUNTER, description, tags)


def _total(name: str, description: str, *tags: str) -> MetricSpec:
    return MetricSpec(name, MetricKind.TOTAL, description, tags)


def _gauge(name: str, description: str, *tags: str) -> MetricSpec:
    return MetricSpec(name, MetricKind.GAUGE, description, tags)


def _histogram(name: str, description: str, boundaries: tuple[float, ...], *tags: str) -> MetricSpec:
    return MetricSpec(name, MetricKind.HISTOGRAM, description, tags, boundaries)


# -- the catalogue ------------------------------------------------------------------------------
# Tag conventions: `actor` is the Ray actor name (feed-0, router, shard-ema-0, ...); `deployment`
# is a strategy deployment ("" where an actor's count is not per deployment); `shard` is the
# shard index within its deployment; `book` is a risk book (a deployment name, or "manual").

# Ticks: every tick is counted in, out, conflated or dropped at each hop (design §4).
TICKS_IN = _total("shardline_ticks_in", "Ticks an actor received", "actor", "deployment")
TICKS_OUT = _total("shardline_ticks_out", "Ticks an actor passed on or handled", "actor", "deployment")
TICKS_CONFLATED = _total(
    "shardline_ticks_conflated",
    "Ticks replaced by a newer tick of the same instrument",
    "actor",
    "deployment",
)
TICKS_DROPPED = _total("shardline_ticks_dropped", "Ticks lost (counted, never silent)", "actor", "deployment")

# Market feed.
FEED_RECONNECTS = _total("shardline_feed_reconnects", "SmartStream reconnections", "actor")
FEED_SEQUENCE_GAPS = _total(
    "shardline_feed_sequence_gaps", "Ticks missing by the exchange sequence number", "actor"
)
FEED_DUPLICATES = _total("shardline_feed_duplicates", "Replayed ticks dropped as duplicates", "actor")
FEED_STALLS = _total("shardline_feed_stalls", "Connections closed for silence", "actor")
FEED_CONNECTIONS = _gauge("shardline_feed_connections", "Open SmartStream connections", "actor")
FEED_SUBSCRIPTIONS = _gauge("shardline_feed_subscriptions", "Subscribed (token, mode) pairs", "actor")
FEED_PUSH_WAIT = _total(
    "shardline_feed_push_wait_seconds", "Time the feed waited on the router (back-pressure)", "actor"
)

# Router, per shard.
ROUTER_BUFFER_DEPTH = _gauge(
    "shardline_router_buffer_depth", "Ticks buffered for a shard", "deployment", "shard"
)
ROUTER_IN_FLIGHT = _gauge(
    "shardline_router_in_flight", "Ticks sent to a shard and not yet handled", "deployment", "shard"
)
ROUTER_SHARD_UP = _gauge(
    "shardline_router_shard_up", "1 when the router delivers to the shard", "deployment", "shard"
)
ROUTER_UNROUTED = _total("shardline_router_unrouted", "Ticks no active deployment trades")

# Strategy shards.
SHARD_RUNNING = _gauge("shardline_shard_running", "1 when the shard's node runs", "deployment", "shard")
SHARD_LAG = _gauge(
    "shardline_shard_lag_seconds",
    "Receive-to-strategy latency over the shard's recent ticks (quantile 0.5, 0.99, max)",
    "deployment",
    "shard",
    "quantile",
)
SHARD_BAD_ROWS = _total(
    "shardline_shard_bad_rows", "Tick rows a shard could not use", "deployment", "shard", "reason"
)
STRATEGY_ORDERS = _total(
    "shardline_strategy_orders", "Orders a strategy sent, by outcome", "deployment", "shard", "outcome"
)
STRATEGY_FILLS = _total("shardline_strategy_fills", "Fills a strategy received", "deployment", "shard")
TICK_TO_STRATEGY = _histogram(
    "shardline_tick_to_strategy_seconds",
    "Receive-to-strategy latency, one observation per batch (its slowest tick)",
    (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
    "deployment",
    "shard",
)

# Orders and execution.
ORDERS = _total("shardline_orders", "Order events at the execution actor, by status", "status")
ORDER_REJECTS = _total(
    "shardline_order_rejects", "Rejected orders by where and why (bounded classes)", "source", "reason"
)
RISK_REJECTIONS = _total("shardline_risk_rejections", "Orders refused by a pre-trade check", "check")
EXECUTION_ANOMALIES = _total(
    "shardline_execution_anomalies", "Retries, duplicates and venue reports that did not fit", "kind"
)
ORDERS_OPEN = _gauge("shardline_orders_open", "Orders working at the venue")
ORDER_ACK_LATENCY = _histogram(
    "shardline_order_ack_seconds",
    "Order submit to venue acknowledgement",
    (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    "venue",
)
ORDER_FILL_LATENCY = _histogram(
    "shardline_order_fill_seconds",
    "Venue acknowledgement to (first) fill",
    (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0),
    "venue",
)
RATE_LIMIT_GRANTED = _total("shardline_rate_limit_granted", "Broker calls let through", "group")
RATE_LIMIT_WAITS = _total(
    "shardline_rate_limit_waits", "Broker calls that waited for rate-limit budget", "group"
)
RATE_LIMIT_BACKOFFS = _total(
    "shardline_rate_limit_backoffs", "'Exceeding access rate' answers from the broker", "group"
)

# Risk and P&L.
KILL_SWITCH_ENGAGED = _gauge(
    "shardline_kill_switch_engaged", "1 while a kill switch is engaged (book 'global': all)", "book"
)
KILL_SWITCH_TRIPS = _total("shardline_kill_switch_trips", "Kill switches engaged by a limit")
PNL = _gauge(
    "shardline_pnl_rupees", "P&L per book (realized, unrealized, charges, total)", "book", "component"
)
PNL_TOTAL = _gauge("shardline_pnl_total_rupees", "P&L across all books")
OPEN_POSITIONS = _gauge("shardline_open_positions", "Instruments with a non-zero position", "book")
FILL_SLIPPAGE = _histogram(
    "shardline_fill_slippage_bps",
    "Fill price against the expected price, basis points (direction: adverse or favourable)",
    (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0),
    "book",
    "direction",
)
SLIPPAGE_COST = _counter(
    "shardline_slippage_rupees", "Slippage in rupees (direction: adverse or favourable)", "book", "direction"
)

# Health and persistence.
ACTOR_HEALTHY = _gauge("shardline_actor_healthy", "1 when the actor answered recently", "actor", "kind")
ACTOR_RESTARTS = _total("shardline_actor_restarts", "Restarts seen by the supervisor", "actor", "kind")
JOURNAL_APPENDS = _total("shardline_journal_appends", "Journal records written", "actor")
JOURNAL_WRITE_FAILURES = _total("shardline_journal_write_failures", "Journal appends that failed", "actor")

# Every spec above, in declaration order (collected so a new metric cannot be left out).
ALL_METRICS: tuple[MetricSpec, ...] = tuple(v for v in list(globals().values()) if isinstance(v, MetricSpec))

# Ray's own metrics the dashboards and alerts use (checked against a live Ray in the integration tests).
RAY_BUILTIN_METRICS: tuple[str, ...] = (
    "ray_node_cpu_utilization",
    "ray_node_mem_used",
    "ray_node_mem_total",
)
# Series Prometheus itself adds to every scrape target.
PROMETHEUS_BUILTIN_METRICS: tuple[str, ...] = ("up",)


def exported_names() -> frozenset[str]:
    """Every series name this module makes Prometheus see, plus the Ray ones it relies on."""
    return frozenset(n for spec in ALL_METRICS for n in spec.exported_names) | frozenset(RAY_BUILTIN_METRICS)


# -- recording ----------------------------------------------------------------------------------

_instruments: dict[str, Any] = {}
_instruments_lock = threading.Lock()


def _ray_instrument(spec: MetricSpec) -> Any:
    """The process's one Ray metric object for `spec`, created on first use."""
    instrument = _instruments.get(spec.name)
    if instrument is not None:
        return instrument
    from ray.util import metrics as ray_metrics

    with _instruments_lock:
        instrument = _instruments.get(spec.name)
        if instrument is None:
            if spec.kind is MetricKind.COUNTER:
                instrument = ray_metrics.Counter(spec.name, spec.description, spec.tag_keys)
            elif spec.kind is MetricKind.TOTAL:
                instrument = ray_metrics.Gauge(f"{spec.name}_total", spec.description, spec.tag_keys)
            elif spec.kind is MetricKind.GAUGE:
                instrument = ray_metrics.Gauge(spec.name, spec.description, spec.tag_keys)
            else:
                instrument = ray_metrics.Histogram(
                    spec.name, spec.description, list(spec.boundaries), spec.tag_keys
                )
            _instruments[spec.name] = instrument
    return instrument


def record_to_ray(spec: MetricSpec, tags: Mapping[str, str], value: float) -> None:
    """Add a counter increment, set a gauge or total, or observe a histogram value through Ray."""
    instrument = _ray_instrument(spec)
    if spec.kind is MetricKind.COUNTER:
        instrument.inc(value, tags=dict(tags))
    elif spec.kind in (MetricKind.GAUGE, MetricKind.TOTAL):
        instrument.set(value, tags=dict(tags))
    else:
        instrument.observe(value, tags=dict(tags))


Recorder = Callable[[MetricSpec, Mapping[str, str], float], None]


@dataclass
class BoundMetric:
    """A metric with its tags fixed: `inc` a counter, `set` a gauge or total, `observe` a histogram."""

    spec: MetricSpec
    tags: dict[str, str]
    record: Recorder = field(default=record_to_ray, repr=False)

    def inc(self, value: float = 1.0) -> None:
        self._expect(MetricKind.COUNTER)
        if value < 0:
            raise ValueError(f"counter {self.spec.name} cannot go down (inc by {value})")
        if value:  # Ray refuses a zero increment; there is nothing to add anyway
            self.record(self.spec, self.tags, float(value))

    def set(self, value: float) -> None:
        self._expect(MetricKind.GAUGE, MetricKind.TOTAL)
        if self.spec.kind is MetricKind.TOTAL and value < 0:
            raise ValueError(f"total {self.spec.name} cannot be negative ({value})")
        self.record(self.spec, self.tags, float(value))

    def observe(self, value: float) -> None:
        self._expect(MetricKind.HISTOGRAM)
        self.record(self.spec, self.tags, float(value))

    def _expect(self, *kinds: MetricKind) -> None:
        if self.spec.kind not in kinds:
            wanted = " or ".join(str(k) for k in kinds)
            raise TypeError(f"{self.spec.name} is a {self.spec.kind}, not a {wanted}")


# -- from stats() answers to samples -----------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One value for one series: a running total, or a gauge's current value."""

    spec: MetricSpec
    tags: tuple[tuple[str, str], ...]
    value: float

    @classmethod
    def of(cls, spec: MetricSpec, value: float, **tags: str) -> Sample:
        return cls(spec, tuple(sorted(spec.check_tags(tags).items())), value)


def _number(value: Any) -> float | None:
    """A stats leaf as a float; None for missing, boolean-less or malformed values."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str | Decimal):
        try:
            return float(Decimal(value))
        except (InvalidOperation, ValueError):
            return None
    return None


def _dig(stats: Mapping[str, Any], *path: str) -> Any:
    node: Any = stats
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


class _Samples:
    """Collects samples, skipping fields that are absent or not numbers."""

    def __init__(self) -> None:
        self.items: list[Sample] = []

    def add(self, spec: MetricSpec, value: Any, **tags: str) -> None:
        number = _number(value)
        if number is not None:
            self.items.append(Sample.of(spec, number, **tags))


def feed_samples(name: str, stats: Mapping[str, Any]) -> list[Sample]:
    """`actors.feed.actor.FeedActor.stats()` (its `stream` part is the SmartStream client's counters)."""
    s = _Samples()
    stream = _dig(stats, "stream")
    stream = stream if isinstance(stream, Mapping) else {}
    s.add(TICKS_IN, stream.get("ticks_delivered"), actor=name, deployment="")
    s.add(TICKS_OUT, stats.get("ticks_out"), actor=name, deployment="")
    s.add(TICKS_DROPPED, stats.get("lost_router_restarting"), actor=name, deployment="")
    s.add(FEED_RECONNECTS, stream.get("reconnects"), actor=name)
    s.add(FEED_SEQUENCE_GAPS, stream.get("missed_by_sequence"), actor=name)
    s.add(FEED_DUPLICATES, stream.get("duplicates_dropped"), actor=name)
    s.add(FEED_STALLS, stream.get("stalls"), actor=name)
    s.add(FEED_CONNECTIONS, stream.get("open_connections"), actor=name)
    s.add(FEED_SUBSCRIPTIONS, stats.get("subscriptions"), actor=name)
    s.add(FEED_PUSH_WAIT, stats.get("push_wait_s"), actor=name)
    return s.items


def router_samples(name: str, stats: Mapping[str, Any]) -> list[Sample]:
    """`actors.router.actor.RouterActor.stats()`: totals, then each deployment and each of its shards."""
    s = _Samples()
    s.add(TICKS_IN, stats.get("ticks_in"), actor=name, deployment="")
    s.add(TICKS_DROPPED, stats.get("rejected_iids"), actor=name, deployment="")
    s.add(ROUTER_UNROUTED, stats.get("unrouted"))
    deployments = stats.get("deployments")
    for deployment, d in deployments.items() if isinstance(deployments, Mapping) else ():
        if not isinstance(d, Mapping):
            continue
        dep = str(deployment)
        s.add(TICKS_OUT, d.get("ticks_out"), actor=name, deployment=dep)
        s.add(TICKS_CONFLATED, d.get("conflated"), actor=name, deployment=dep)
        s.add(TICKS_DROPPED, d.get("dropped"), actor=name, deployment=dep)
        shards = d.get("shards")
        for shard in shards if isinstance(shards, list) else ():
            if not isinstance(shard, Mapping) or shard.get("index") is None:
                continue
            index = str(shard["index"])
            s.add(ROUTER_BUFFER_DEPTH, shard.get("buffered"), deployment=dep, shard=index)
            s.add(ROUTER_IN_FLIGHT, shard.get("in_flight"), deployment=dep, shard=index)
            up = bool(shard.get("up")) and shard.get("registered", True) is not False
            s.add(ROUTER_SHARD_UP, up, deployment=dep, shard=index)
    return s.items


def shard_samples(name: str, stats: Mapping[str, Any]) -> list[Sample]:
    """`actors.shard.shard.StrategyShard.stats()`; ticks are counted in batch rows, as the router sends."""
    s = _Samples()
    deployment, index = _shard_identity(name, stats)
    s.add(TICKS_IN, stats.get("rows_received"), actor=name, deployment=deployment)
    s.add(TICKS_OUT, stats.get("rows_handled"), actor=name, deployment=deployment)
    s.add(TICKS_DROPPED, stats.get("rows_dropped"), actor=name, deployment=deployment)
    if stats.get("state") is not None:
        s.add(SHARD_RUNNING, stats.get("state") == "running", deployment=deployment, shard=index)
    for reason in ("unknown", "invalid", "skipped"):
        s.add(SHARD_BAD_ROWS, stats.get(f"{reason}_rows"), deployment=deployment, shard=index, reason=reason)
    s.add(STRATEGY_ORDERS, stats.get("orders_sent"), deployment=deployment, shard=index, outcome="sent")
    s.add(
        STRATEGY_ORDERS, stats.get("orders_rejected"), deployment=deployment, shard=index, outcome="rejected"
    )
    s.add(STRATEGY_FILLS, stats.get("fills"), deployment=deployment, shard=index)
    latency = stats.get("latency_recv_to_strategy")
    if isinstance(latency, Mapping) and _number(latency.get("samples")):
        for quantile, key in (("0.5", "p50_us"), ("0.99", "p99_us"), ("max", "max_us")):
            micros = _number(latency.get(key))
            if micros is not None:
                s.add(SHARD_LAG, micros / 1e6, deployment=deployment, shard=index, quantile=quantile)
    return s.items


def _shard_identity(name: str, stats: Mapping[str, Any]) -> tuple[str, str]:
    deployment, index = stats.get("deployment"), stats.get("index")
    if isinstance(deployment, str) and index is not None:
        return deployment, str(index)
    # "shard-<deployment>-<k>": the deployment name may itself contain dashes.
    stem, _, k = name.removeprefix("shard-").rpartition("-")
    return stem, k


# Execution counters (`ExecutionStats`) by the order status or anomaly they count.
_ORDER_STATUS_FIELDS = {
    "submitted": "submitted",
    "accepted": "accepted",
    "refused": "refused",
    "rejected_by_venue": "rejected",
    "fills": "filled",
    "cancels": "cancelled",
    "modifies": "modified",
}
_ANOMALY_FIELDS = (
    "idempotent_replies",
    "duplicate_fills",
    "illegal_events",
    "unknown_events",
    "venue_errors",
)


def execution_samples(name: str, stats: Mapping[str, Any]) -> list[Sample]:
    """`actors.execution.actor.ExecutionActor.stats()`, plus the optional parts it may carry.

    Optional keys: ``refusals`` ({reason class: count}, see :func:`classify_reject_reason`),
    ``venue_rejections`` (the same for the venue's rejections), ``rate_limits`` ({group:
    {granted, waited, backoffs}}, see :func:`rate_limit_counters`) and ``risk`` (the
    `RiskState` as builtins, see :func:`risk_samples`).
    """
    s = _Samples()
    for field_name, status in _ORDER_STATUS_FIELDS.items():
        s.add(ORDERS, stats.get(field_name), status=status)
    for kind in _ANOMALY_FIELDS:
        s.add(EXECUTION_ANOMALIES, stats.get(kind), kind=kind)
    s.add(ORDERS_OPEN, stats.get("working"))
    s.add(KILL_SWITCH_TRIPS, stats.get("kill_switch_trips"))
    for source, key, total in (
        ("risk", "refusals", "refused"),
        ("venue", "venue_rejections", "rejected_by_venue"),
    ):
        by_reason = stats.get(key)
        if not isinstance(by_reason, Mapping):
            # Without a breakdown the total still shows, as one class.
            by_reason = {"unclassified": stats.get(total)}
        for reason, count in by_reason.items():
            s.add(ORDER_REJECTS, count, source=source, reason=str(reason))
            if source == "risk":
                s.add(RISK_REJECTIONS, count, check=str(reason))
    limits = stats.get("rate_limits")
    for group, counters in limits.items() if isinstance(limits, Mapping) else ():
        if isinstance(counters, Mapping):
            s.add(RATE_LIMIT_GRANTED, counters.get("granted"), group=str(group))
            s.add(RATE_LIMIT_WAITS, counters.get("waited"), group=str(group))
            s.add(RATE_LIMIT_BACKOFFS, counters.get("backoffs"), group=str(group))
    risk = stats.get("risk")
    items = s.items
    if isinstance(risk, Mapping):
        items += risk_samples(risk)
    return items


def simulator_samples(name: str, stats: Mapping[str, Any]) -> list[Sample]:
    """`actors.sim.actor.SimulatorActor.stats()`: ticks made, sent and dropped to slow sockets."""
    s = _Samples()
    s.add(TICKS_IN, stats.get("generated"), actor=name, deployment="")
    s.add(TICKS_OUT, stats.get("sent"), actor=name, deployment="")
    s.add(TICKS_DROPPED, stats.get("dropped"), actor=name, deployment="")
    return s.items


def journal_samples(name: str, stats: Mapping[str, Any]) -> list[Sample]:
    """The ``journal`` part (`JournalStats` as builtins) of any actor that journals."""
    s = _Samples()
    journal = stats.get("journal")
    if isinstance(journal, Mapping):
        s.add(JOURNAL_APPENDS, journal.get("appended"), actor=name)
        s.add(JOURNAL_WRITE_FAILURES, journal.get("failures"), actor=name)
    return s.items


def risk_samples(risk: Mapping[str, Any]) -> list[Sample]:
    """`actors.execution.risk.RiskState` as builtins (``msgspec.to_builtins``): switches and P&L."""
    s = _Samples()
    s.add(KILL_SWITCH_ENGAGED, _dig(risk, "global_kill_switch", "engaged"), book="global")
    s.add(PNL_TOTAL, risk.get("pnl"))
    books = risk.get("books")
    for book, state in books.items() if isinstance(books, Mapping) else ():
        if not isinstance(state, Mapping):
            continue
        b = str(book)
        s.add(KILL_SWITCH_ENGAGED, _dig(state, "kill_switch", "engaged"), book=b)
        for component, key in (
            ("realized", "realized_pnl"),
            ("unrealized", "unrealized_pnl"),
            ("charges", "charges"),
            ("total", "pnl"),
        ):
            s.add(PNL, state.get(key), book=b, component=component)
        positions = state.get("positions")
        if isinstance(positions, Mapping):
            s.add(OPEN_POSITIONS, sum(1 for q in positions.values() if q), book=b)
    return s.items


SampleSource = Callable[[str, Mapping[str, Any]], list[Sample]]

# Actor kind (as `cluster.supervisor.actor_kinds` names them) -> what its stats() carry.
SAMPLES_BY_KIND: dict[str, SampleSource] = {
    "feed": feed_samples,
    "router": router_samples,
    "shard": shard_samples,
    "execution": execution_samples,
    "simulator": simulator_samples,
}


def stats_samples(kind: str, name: str, stats: Mapping[str, Any]) -> list[Sample]:
    """Every sample an actor's `stats()` answer gives; an unknown kind gives its journal's only."""
    source = SAMPLES_BY_KIND.get(kind)
    samples = source(name, stats) if source is not None else []
    return samples + journal_samples(name, stats)


# -- samples to Ray -----------------------------------------------------------------------------


class StatsExporter:
    """Publishes stats answers as metrics: each sample sets its series to the value it carries.

    Parameters
    ----------
    record
        Where updates go (Ray's metrics by default).
    """

    def __init__(self, record: Recorder = record_to_ray) -> None:
        self._record = record

    def apply(self, samples: Iterable[Sample]) -> int:
        """Record `samples`; returns how many were recorded."""
        made = 0
        for sample in samples:
            if sample.spec.kind is MetricKind.TOTAL and sample.value < 0:
                continue  # not a total any more; skip it rather than publish nonsense
            try:
                self._record(sample.spec, dict(sample.tags), sample.value)
            except Exception:  # metrics must never take the caller down
                log.exception("metric %s %s could not be recorded", sample.spec.name, sample.tags)
                continue
            made += 1
        return made

    def export_stats(self, kind: str, name: str, stats: Mapping[str, Any]) -> int:
        try:
            samples = stats_samples(kind, name, stats)
        except Exception:  # a stats shape this code does not expect is logged, never raised
            log.exception("stats of %s (%s) could not be turned into metrics", name, kind)
            return 0
        return self.apply(samples)

    def export_status(self, status: Mapping[str, Any]) -> int:
        """A supervisor status document: each actor's health, restarts and stats."""
        made = 0
        actors = status.get("actors")
        for actor in actors if isinstance(actors, list) else ():
            if not isinstance(actor, Mapping) or not actor.get("name"):
                continue
            name, kind = str(actor["name"]), str(actor.get("kind", ""))
            health = _Samples()
            health.add(ACTOR_HEALTHY, bool(actor.get("healthy")), actor=name, kind=kind)
            health.add(ACTOR_RESTARTS, actor.get("restarts"), actor=name, kind=kind)
            made += self.apply(health.items)
            stats = actor.get("stats")
            if isinstance(stats, Mapping) and stats:
                made += self.export_stats(kind, name, stats)
        return made


_to_ray = StatsExporter()


def export_stats(kind: str, name: str, stats: Mapping[str, Any]) -> int:
    """Record one actor's `stats()` answer in Ray's metrics (kind as the supervisor names it)."""
    return _to_ray.export_stats(kind, name, stats)


def export_status(status: Mapping[str, Any]) -> int:
    """Record a whole supervisor status document (`Supervisor.status()`) in Ray's metrics."""
    return _to_ray.export_status(status)


def export_risk_state(risk: Mapping[str, Any]) -> int:
    """Record a `RiskState` (as ``msgspec.to_builtins`` gives it): kill switches and P&L per book."""
    return _to_ray.apply(risk_samples(risk))


# -- helpers for the actors that record directly -----------------------------------------------


def rate_limit_counters(limiter: Any) -> dict[str, dict[str, int]]:
    """A `RateLimiter`'s granted/waited/backoffs per endpoint group, as execution stats carry them."""
    return {
        str(getattr(group, "value", group)): {
            "granted": int(limiter.granted.get(group, 0)),
            "waited": int(limiter.waited.get(group, 0)),
            "backoffs": int(limiter.backoffs.get(group, 0)),
        }
        for group in limiter.granted
    }


# Reject reasons are sentences with numbers in them; metrics need a small fixed set of classes.
# First match wins, so the specific patterns come before the general ones.
_REASON_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (cls, re.compile(pattern, re.IGNORECASE))
    for cls, pattern in (
        ("kill_switch", r"kill switch"),
        ("rate_limit", r"access rate|rate limit|too many requests"),
        ("journal", r"journal"),
        ("max_quantity", r"maximum order quantity"),
        ("price_band", r"band is"),
        ("max_value", r"order value|market order's value"),
        ("position_limit", r"position in .* would reach"),
        ("short_delivery", r"short selling"),
        ("lot_size", r"lot size"),
        ("tick_size", r"tick size"),
        ("unknown_instrument", r"unknown instrument|not in today's scrip master|is an index|'EXCH:token'"),
        ("order_shape", r"quantity must be|needs a positive|takes no|stop-limit's trigger|product .* is not"),
        ("margin", r"margin|insufficient funds|fund"),
        ("lost", r"lost|never heard|did not take the order"),
    )
)


def classify_reject_reason(reason: str) -> str:
    """A bounded class for a rejection sentence (``other`` when nothing matches)."""
    for cls, pattern in _REASON_CLASSES:
        if pattern.search(reason):
            return cls
    return "other"


@dataclass(frozen=True)
class Slippage:
    """A fill against the price expected for it; positive is adverse (it cost money)."""

    bps: Fraction  # per unit, against the expected price (exact)
    cost: int  # whole quantity, in the exchange's minor unit (paise for most segments)

    @property
    def direction(self) -> str:
        return "adverse" if self.cost > 0 else "favourable"


def slippage(side: str, expected: int, fill: int, quantity: int) -> Slippage:
    """Slippage of a fill at `fill` against `expected` (both in the exchange's minor unit).

    A buy filled above, or a sell below, the expected price is adverse.
    """
    if expected <= 0:
        raise ValueError(f"expected price must be positive, got {expected}")
    if quantity <= 0:
        raise ValueError(f"quantity must be positive, got {quantity}")
    side = side.upper()
    if side not in ("BUY", "SELL"):
        raise ValueError(f"side must be BUY or SELL, got {side!r}")
    per_unit = fill - expected if side == "BUY" else expected - fill
    return Slippage(bps=Fraction(per_unit * 10_000, expected), cost=per_unit * quantity)


def record_slippage(
    book: str, slip: Slippage, minor_per_rupee: int = 100, record: Recorder = record_to_ray
) -> None:
    """Observe a fill's slippage (once per fill, by whoever knows the price expected for it)."""
    if not slip.cost:
        return
    tags = {"book": book, "direction": slip.direction}
    record(FILL_SLIPPAGE, tags, float(abs(slip.bps)))
    record(SLIPPAGE_COST, tags, float(Decimal(abs(slip.cost)) / minor_per_rupee))
