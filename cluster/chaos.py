"""`shardline chaos`: kill the system's parts one at a time under a steady tick and order load, then
audit what survived.

The load: the simulator streams ticks at a set rate through the feed, router and shards, and a
trader places orders through the REST API (`cluster.bench_orders_rest.RestOrderLoad`), retrying a
refused or unanswered order with the same client order id (the execution actor makes that
idempotent). The faults, in turn: SIGKILL of a feed actor, the router, a shard, the execution
actor and the portfolio actor (Ray restarts each); `ray.kill` of a Serve replica (the Serve
controller replaces it); and `sim.drop_connections`, which cuts every simulator socket.

For each fault, the recovery time: until the actor answers again from a new process, and until
its rate moves again (the counter it is measured by grows). Then the audit:

- orders: every client order id accounted for exactly once across the client's ledger, the
  execution actor's journal and the paper venue's orders and trades; positions equal to the fills
  (`reconcile_orders`);
- ticks: at the router, in = out + conflated + dropped + in flight when a router was killed (+
  what is still buffered), summed over router incarnations; and beside it what the feeds pushed
  and what the shards received.

Counters restart with each incarnation of an actor, so `CounterTotals` adds up the last reading
of each incarnation; the harness reads every actor right before each kill, and once a second in
between (an unplanned restart, e.g. an out-of-memory kill, shows up as an extra incarnation).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cluster.bench_orders_rest import (
    OrderLoadConfig,
    OrderOutcome,
    RestOrderLoad,
    deployment_keys,
    free_port,
    load_instruments,
    order_figures,
    private_system,
    reconcile_orders,
    settled_view,
    system_config,
)
from cluster.config import ShardlineConfig
from cluster.errors import ShardlineError
from cluster.topology import EXECUTION, NAMESPACE, PORTFOLIO, ROUTER, SIMULATOR, feed_name, shard_name

log = logging.getLogger(__name__)

FAULTS = ("feed", "router", "shard", "execution", "portfolio", "serve", "sockets")
CHAOS_BOOK = "chaos"
SERVE_NAMESPACE = "serve"
TAIL_S = 5.0  # load kept on after the last fault's recovery, so its aftermath is in the audit


@dataclass(frozen=True)
class ChaosConfig:
    """What the run does.

    Parameters
    ----------
    seconds
        Length of the loaded run; the faults are spread over it.
    faults
        Which faults, in this order (names from `FAULTS`).
    order_rate_per_s, tick_rate
        The steady load.
    recovery_deadline_s
        A fault not recovered by then counts as unrecovered (the run goes on).
    target_recovery_s
        The recovery time each fault is held to in the verdict.
    """

    seconds: float = 120.0
    faults: tuple[str, ...] = FAULTS
    order_rate_per_s: float = 20.0
    tick_rate: int = 2000
    concurrency: int = 8
    recovery_deadline_s: float = 60.0
    target_recovery_s: float = 10.0
    book: str = CHAOS_BOOK

    def __post_init__(self) -> None:
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise ShardlineError(f"unknown faults {unknown}; choose from {', '.join(FAULTS)}")
        if not self.faults:
            raise ShardlineError("give at least one fault")
        if self.seconds < 10 * len(self.faults) ** 0.5:
            raise ShardlineError(f"{self.seconds:g} s is too short for {len(self.faults)} faults")

    def fault_times(self) -> list[float]:
        """Seconds from the start of the load at which each fault strikes: after a warm-up, evenly
        spaced, leaving the last one room to recover before the load stops."""
        warmup = min(10.0, self.seconds * 0.15)
        tail = min(20.0, self.seconds * 0.25)
        spacing = (self.seconds - warmup - tail) / max(1, len(self.faults) - 1)
        return [warmup + i * spacing for i in range(len(self.faults))]


# ----------------------------------------------------------------------------------- counting


class CounterTotals:
    """Counters of actors that restart: the last reading of each incarnation (pid), added up."""

    def __init__(self) -> None:
        self._readings: dict[str, dict[int, dict[str, Any]]] = {}
        self._order: dict[str, list[int]] = {}

    def observe(self, name: str, stats: Mapping[str, Any]) -> bool:
        """Keep `stats` as `name`'s latest reading; True when it is a new incarnation."""
        pid = int(stats["pid"])
        incarnations = self._readings.setdefault(name, {})
        new = pid not in incarnations
        if new:
            self._order.setdefault(name, []).append(pid)
        incarnations[pid] = dict(stats)
        return new

    def incarnations(self, name: str) -> int:
        return len(self._order.get(name, []))

    def readings(self, name: str) -> list[dict[str, Any]]:
        """The last reading of each incarnation, oldest first."""
        return [self._readings[name][pid] for pid in self._order.get(name, [])]

    def latest(self, name: str) -> dict[str, Any]:
        order = self._order.get(name)
        return self._readings[name][order[-1]] if order else {}

    def total(self, name: str, *path: str) -> int:
        return sum(int(dig(r, *path)) for r in self.readings(name))


def dig(doc: Any, *path: str) -> Any:
    for key in path:
        doc = doc.get(key, 0) if isinstance(doc, Mapping) else 0
    return doc if isinstance(doc, int | float) else 0


def router_accounts(stats: Mapping[str, Any]) -> dict[str, int]:
    """One router reading as tick accounts, summed over its deployments."""
    deployments = stats.get("deployments", {}) or {}
    out = {k: 0 for k in ("in", "out", "conflated", "dropped", "buffered", "in_flight")}
    for deployment in deployments.values():
        out["in"] += int(deployment["ticks_in"])
        out["out"] += int(deployment["ticks_out"])
        out["conflated"] += int(deployment["conflated"])
        out["dropped"] += int(deployment["dropped"])
        out["buffered"] += int(deployment["buffered"])
        out["in_flight"] += int(deployment["in_flight"])
    out["received"] = int(stats.get("ticks_in", 0))
    out["unrouted"] = int(stats.get("unrouted", 0)) + int(stats.get("rejected_iids", 0))
    return out


def tick_balance(
    router_readings: Sequence[Mapping[str, Any]],
    feed_pushed: int,
    shard_received: int,
    simulator_sent: int,
    feed_frames: int,
) -> dict[str, Any]:
    """The router's tick accounts over all its incarnations.

    Each incarnation's last reading (taken right before it was killed, or at the end) must balance
    on its own: in = out + conflated + dropped + buffered + in flight. For a killed incarnation,
    what it held (buffered + in flight) died with it: that is `in_flight_at_kill`. The run
    balances when in = out + conflated + dropped + in_flight_at_kill + still held at the end.
    """
    accounts = [router_accounts(r) for r in router_readings]
    each_balanced = [
        a["in"] == a["out"] + a["conflated"] + a["dropped"] + a["buffered"] + a["in_flight"] for a in accounts
    ]
    held_at_kill = sum(a["buffered"] + a["in_flight"] for a in accounts[:-1])
    held_now = accounts[-1]["buffered"] + accounts[-1]["in_flight"] if accounts else 0
    total = {
        k: sum(a[k] for a in accounts) for k in ("in", "out", "conflated", "dropped", "received", "unrouted")
    }
    return {
        "in": total["in"],
        "out": total["out"],
        "conflated": total["conflated"],
        "dropped": total["dropped"],
        "in_flight_at_kill": held_at_kill,
        "held_at_end": held_now,
        "balanced": bool(accounts)
        and all(each_balanced)
        and total["in"] == total["out"] + total["conflated"] + total["dropped"] + held_at_kill + held_now,
        "router_incarnations": len(accounts),
        "received_by_router": total["received"],
        "unrouted": total["unrouted"],
        # Around the router, for reading the figures (each side restarts on its own, so these are
        # reported, not required to match to the tick):
        "pushed_by_feeds": feed_pushed,
        "pushed_not_counted_by_router": feed_pushed - total["received"],
        "received_by_shards": shard_received,
        "delivered_minus_received_by_shards": total["out"] - shard_received,
        "sent_by_simulator": simulator_sent,
        "received_by_feeds": feed_frames,
    }


# ----------------------------------------------------------------------------------- the run


@dataclass
class FaultReport:
    fault: str
    target: str
    at_s: float
    old_pid: int | None = None
    new_pid: int | None = None
    answered_s: float | None = None  # until the target answers from its new process
    recovered_s: float | None = None  # until its rate moves again
    rate_key: str = ""
    detail: str = ""

    @property
    def recovered(self) -> bool:
        return self.recovered_s is not None


def _stats_of(name: str, namespace: str = NAMESPACE, timeout_s: float = 2.0) -> dict[str, Any] | None:
    import ray

    try:
        handle: Any = ray.get_actor(name, namespace=namespace)
        stats: dict[str, Any] = ray.get(handle.stats.remote(), timeout=timeout_s)
    except Exception:  # dead, restarting, not yet registered: no answer is the answer
        return None
    return stats


class ChaosRun:
    """Faults and audit on the system running on the current Ray connection.

    Parameters
    ----------
    system_config
        The running system's configuration (its deployments name the shards).
    base_url
        The terminal's URL.
    config
        The run.
    """

    def __init__(self, system_config: ShardlineConfig, base_url: str, config: ChaosConfig) -> None:
        self.system = system_config
        self.base_url = base_url
        self.config = config
        deployments = [d for d in system_config.deployments if d.enabled]
        if not deployments:
            raise ShardlineError("chaos needs a deployment: its shards carry the ticks being counted")
        self.shards = [shard_name(d.name, k) for d in deployments for k in range(d.shards)]
        self.feeds = [feed_name(0)]
        self.totals = CounterTotals()
        self.faults: list[FaultReport] = []
        self.unplanned: list[str] = []
        self._expected_restarts: set[str] = set()
        self._lock = threading.Lock()
        self._started = 0.0

    @property
    def watched(self) -> list[str]:
        return [*self.feeds, ROUTER, *self.shards, EXECUTION, PORTFOLIO, SIMULATOR]

    # -- driving -----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        import ray

        keys = deployment_keys(self.system, 20)
        instruments = asyncio.run(load_instruments(self.base_url, keys))
        load = RestOrderLoad(
            self.base_url,
            instruments,
            OrderLoadConfig(
                rate_per_s=self.config.order_rate_per_s,
                # Open-ended: a slow recovery delays the faults after it, and the load goes on
                # until the last fault has had its time (`stop` ends it).
                seconds=self.config.seconds + len(self.config.faults) * self.config.recovery_deadline_s,
                concurrency=self.config.concurrency,
                book=self.config.book,
                retry_for_s=max(60.0, self.config.recovery_deadline_s),
            ),
        )
        sim = ray.get_actor(SIMULATOR, namespace=NAMESPACE)
        ray.get(sim.set_tick_rate.remote(self.config.tick_rate), timeout=30)
        self.read_all()
        loop = asyncio.new_event_loop()
        load_thread = threading.Thread(
            target=lambda: loop.run_until_complete(load.run()), name="chaos-orders", daemon=True
        )
        load_thread.start()
        self._wait_for(lambda: load.started_at > 0, 120, "the order load to start")
        self._started = load.started_at
        stop_polling = threading.Event()
        poller = threading.Thread(target=self._poll, args=(stop_polling,), name="chaos-poll", daemon=True)
        poller.start()
        try:
            for fault, at in zip(self.config.faults, self.config.fault_times(), strict=True):
                self._sleep_until(at)
                self.faults.append(self._strike(fault, load))
            self._sleep_until(max(self.config.seconds, self._now() + TAIL_S))
        finally:
            loop.call_soon_threadsafe(load.stop.set)
            load_thread.join(timeout=120)
            stop_polling.set()
            poller.join(timeout=10)
        elapsed = time.monotonic() - self._started
        # The load's own ledger, whether or not its last retries ended in time: an order sent is
        # audited either way (one still unanswered counts as in doubt, never as not sent).
        return self._audit(list(load.ledger), elapsed)

    def _sleep_until(self, at_s: float) -> None:
        wait = self._started + at_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # the fault schedule itself

    def _wait_for(self, condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise ShardlineError(f"chaos: timed out after {timeout_s:g} s waiting for {what}")
            time.sleep(0.05)

    # -- reading counters --------------------------------------------------------------------

    def read_all(self) -> None:
        """Every watched actor's counters, asked all at once (so right before a kill they are fresh)."""
        import ray

        handles: dict[str, Any] = {}
        for name in self.watched:
            try:
                handles[name] = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                continue
        refs = {name: h.stats.remote() for name, h in handles.items()}
        for name, ref in refs.items():
            try:
                stats: dict[str, Any] = ray.get(ref, timeout=5)
            except Exception:  # dead or restarting right now
                continue
            with self._lock:
                new = self.totals.observe(name, stats)
                if new and self.totals.incarnations(name) > 1 and name not in self._expected_restarts:
                    self.unplanned.append(f"{name} pid {stats['pid']} at {self._now():.1f} s")
                if new:
                    self._expected_restarts.discard(name)

    def _poll(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):  # once a second: catch restarts nobody planned
            self.read_all()

    def _now(self) -> float:
        return time.monotonic() - self._started if self._started else 0.0

    # -- faults ------------------------------------------------------------------------------

    def _strike(self, fault: str, load: RestOrderLoad) -> FaultReport:
        targets = {
            "feed": self.feeds[0],
            "router": ROUTER,
            "shard": self.shards[0],
            "execution": EXECUTION,
            "portfolio": PORTFOLIO,
            "serve": "terminal replica",
            "sockets": SIMULATOR,
        }
        rate_keys = {
            "feed": "ticks_out",
            "router": "ticks_out",
            "shard": "rows_received",
            "execution": "orders_submitted",
            "portfolio": "orders",
        }
        target = targets[fault]
        log.warning("chaos: %s (%s) at %.1f s", fault, target, self._now())
        if fault == "serve":
            return self._kill_serve_replica(load)
        if fault == "sockets":
            return self._cut_sockets()
        return self._kill_actor(fault, target, rate_keys[fault])

    def _kill_actor(self, fault: str, target: str, rate_key: str) -> FaultReport:
        self.read_all()
        with self._lock:
            before = self.totals.latest(target)
            self._expected_restarts.add(target)
        if not before:
            return FaultReport(fault, target, self._now(), detail="the actor did not answer before the kill")
        old_pid = int(before["pid"])
        report = FaultReport(fault, target, self._now(), old_pid=old_pid, rate_key=rate_key)
        killed_at = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)  # the whole process, as a crash would
        first: float | None = None
        deadline = killed_at + self.config.recovery_deadline_s
        while time.monotonic() < deadline:
            stats = _stats_of(target)
            if stats is not None and int(stats["pid"]) != old_pid:
                with self._lock:
                    self.totals.observe(target, stats)
                value = float(dig(stats, rate_key))
                if report.answered_s is None:
                    report.answered_s = round(time.monotonic() - killed_at, 3)
                    report.new_pid = int(stats["pid"])
                    first = value
                elif first is not None and value > first:
                    report.recovered_s = round(time.monotonic() - killed_at, 3)
                    break
            time.sleep(0.1)  # a probe interval, the resolution of the recovery time
        if not report.recovered:
            report.detail = f"no {rate_key} growth within {self.config.recovery_deadline_s:g} s"
        return report

    def _cut_sockets(self) -> FaultReport:
        import ray

        self.read_all()
        feed = self.feeds[0]
        before = _stats_of(feed) or {}
        reconnects = int(dig(before, "stream", "reconnects"))
        report = FaultReport("sockets", SIMULATOR, self._now(), rate_key=f"{feed}.ticks_out")
        killed_at = time.monotonic()
        sim: Any = ray.get_actor(SIMULATOR, namespace=NAMESPACE)
        cut: int = ray.get(sim.drop_connections.remote(), timeout=10)
        report.detail = f"{cut} sockets cut"
        first: float | None = None
        deadline = killed_at + self.config.recovery_deadline_s
        while time.monotonic() < deadline:
            stats = _stats_of(feed)
            if stats is not None:
                reconnected = int(dig(stats, "stream", "reconnects")) > reconnects
                if reconnected and int(dig(stats, "stream", "open_connections")) >= 1:
                    value = float(dig(stats, "ticks_out"))
                    if report.answered_s is None:
                        report.answered_s = round(time.monotonic() - killed_at, 3)
                        first = value
                    elif first is not None and value > first:
                        report.recovered_s = round(time.monotonic() - killed_at, 3)
                        break
            time.sleep(0.1)  # probe interval
        return report

    def _kill_serve_replica(self, load: RestOrderLoad) -> FaultReport:
        import httpx
        import ray
        from ray.util import list_named_actors

        def replicas() -> set[str]:
            return {
                e["name"]
                for e in list_named_actors(all_namespaces=True)
                if e.get("namespace") == SERVE_NAMESPACE and "REPLICA" in e["name"].upper()
            }

        before = replicas()
        report = FaultReport("serve", "terminal replica", self._now(), rate_key="orders acknowledged")
        if not before:
            report.detail = "no Serve replica found"
            return report
        victim = sorted(before)[0]
        report.detail = f"{len(before)} replica(s); killed {victim.rsplit('#', 1)[-1]}"
        killed_at = time.monotonic()
        killed_at_s = killed_at - self._started
        ray.kill(ray.get_actor(victim, namespace=SERVE_NAMESPACE), no_restart=False)
        deadline = killed_at + self.config.recovery_deadline_s
        with httpx.Client(base_url=self.base_url, timeout=2) as http:
            while time.monotonic() < deadline:
                if report.answered_s is None:
                    replaced = bool(replicas() - before)
                    try:
                        healthy = http.get("/health").status_code == 200
                    except httpx.HTTPError:
                        healthy = False
                    if replaced and healthy:
                        report.answered_s = round(time.monotonic() - killed_at, 3)
                if report.answered_s is not None and load.last_ack_s > killed_at_s + report.answered_s:
                    report.recovered_s = round(time.monotonic() - killed_at, 3)
                    break
                time.sleep(0.1)  # probe interval
        return report

    # -- the audit ---------------------------------------------------------------------------

    def _audit(self, ledger: list[OrderOutcome], elapsed: float) -> dict[str, Any]:
        import ray

        sim = ray.get_actor(SIMULATOR, namespace=NAMESPACE)
        ray.get(sim.set_tick_rate.remote(0), timeout=30)
        self._drain()
        self.read_all()
        view = settled_view(self.config.book, timeout_s=30)
        orders = reconcile_orders(
            ledger,
            view["execution_orders"],
            view["venue_orders"],
            view["venue_trades"],
            view["venue_positions"],
            view["execution_positions"],
        )
        in_doubt = [
            str(getattr(o, "client_order_id", ""))
            for o in view["execution_orders"]
            if str(getattr(getattr(o, "status", ""), "value", "")) in ("PENDING",)
        ]
        with self._lock:
            ticks = tick_balance(
                self.totals.readings(ROUTER),
                feed_pushed=sum(self.totals.total(f, "ticks_out") for f in self.feeds),
                shard_received=sum(self.totals.total(s, "rows_received") for s in self.shards),
                simulator_sent=self.totals.total(SIMULATOR, "sent"),
                feed_frames=sum(self.totals.total(f, "stream", "frames") for f in self.feeds),
            )
            restarts = {n: self.totals.incarnations(n) - 1 for n in self.watched}
        ray.get(sim.set_tick_rate.remote(self.config.tick_rate), timeout=30)
        slowest = max((f.recovered_s or float("inf") for f in self.faults), default=0.0)
        verdict = {
            "all_recovered": all(f.recovered for f in self.faults),
            "within_target": all(
                f.recovered_s is not None and f.recovered_s < self.config.target_recovery_s
                for f in self.faults
            ),
            "orders_lost": orders.lost,
            "orders_duplicated": orders.duplicated,
            "orders_in_doubt": len(in_doubt),
            "positions_exact": orders.positions_exact,
            "ticks_balanced": ticks["balanced"],
        }
        verdict["passed"] = (
            verdict["within_target"]
            and orders.lost == 0
            and orders.duplicated == 0
            and orders.positions_exact
            and ticks["balanced"]
        )
        return {
            "chaos": True,
            "seconds": round(elapsed, 1),
            "order_rate_per_s": self.config.order_rate_per_s,
            "tick_rate": self.config.tick_rate,
            "faults": [asdict(f) | {"recovered": f.recovered} for f in self.faults],
            "slowest_recovery_s": None if slowest == float("inf") else slowest,
            "orders": order_figures(ledger, elapsed)
            | {"reconciliation": orders.as_dict(), "settled": view["settled"]},
            "orders_in_doubt_examples": in_doubt[:5],
            "ticks": ticks,
            "restarts": restarts,
            "unplanned_restarts": self.unplanned,
            "verdict": verdict,
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "cores": os.cpu_count(),
        }

    def _drain(self, timeout_s: float = 60.0) -> None:
        """Until the feed stops pushing (ticks paused) and the router holds nothing."""
        last: list[int] = []

        def quiet() -> bool:
            feed = _stats_of(self.feeds[0]) or {}
            router = _stats_of(ROUTER)
            if router is None:
                return False
            accounts = router_accounts(router)
            last.append(int(feed.get("ticks_out", -1)))
            still = len(last) >= 3 and len(set(last[-3:])) == 1
            return still and accounts["buffered"] == 0 and accounts["in_flight"] == 0

        deadline = time.monotonic() + timeout_s
        while not quiet() and time.monotonic() < deadline:
            time.sleep(0.3)  # ticks paused: waiting for the last ones to drain


def run(config: ChaosConfig) -> dict[str, Any]:
    """Chaos on a private system (never a running cluster)."""
    with tempfile.TemporaryDirectory(prefix="shardline-chaos-") as tmp:
        system = system_config(str(Path(tmp) / "data"), free_port(), tick_rate=config.tick_rate)
        with private_system(system) as state:
            return ChaosRun(system, state["serve_url"], config).run()


def parse_faults(text: str | None, known: Iterable[str] = FAULTS) -> tuple[str, ...]:
    """ "feed,router" → ("feed", "router"); None or "all" → every fault."""
    if not text or text == "all":
        return tuple(known)
    return tuple(f.strip() for f in text.split(",") if f.strip())
