"""Two Ray nodes on one machine, shardline across them, and the worker node killed under load.

`RayProcessCluster` starts real `ray start --block` processes (a head with the `broker_ip`
resource, a worker with its own) on free ports in a private temp dir, each in its own process
group so it can be killed whole. The scenario runs in a separate driver process (this file run
as a script), because the pytest process may already be connected to another Ray session; the
driver reports what it sees as JSON lines and waits for the test to kill the worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RayNodeProcess:
    """One `ray start --block` process; its process group holds the node's Ray processes."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group is already gone
            os.killpg(self.process.pid, sig)

    def log_tail(self, lines: int = 30) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )


@dataclass
class RayProcessCluster:
    """Ray nodes as child processes of the test, in a private temp dir, on free ports.

    The temp dir is short (Ray's socket paths must fit 107 bytes) and removed at `stop`.
    """

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sl-", dir="/tmp")))
    nodes: list[RayNodeProcess] = field(default_factory=list)
    gcs_port: int = 0
    dashboard_port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            # A token left in ~/.ray by another tool would switch `ray start` to token auth.
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            # Metrics reach the endpoint within seconds, and a dead node is noticed in about 5 s.
            "RAY_metrics_report_interval_ms": "2000",
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "5",
            # On a busy machine the dashboard can take longer than the default minute to start.
            "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "300",
            "PYTHONPATH": str(PROJECT_ROOT),
            # Address-less lookups (the state API, `ray status`) must find this cluster, not another
            # Ray running on the machine.
            "RAY_ADDRESS": self.address,
        }

    def start_head(
        self, resources: dict[str, float], num_cpus: int, dashboard: bool = True
    ) -> RayNodeProcess:
        """Start the head; on a busy machine Ray's own 30 s limit for a raylet to register can end
        an attempt, so a head that exits while starting is started once more."""
        for attempt in range(2):
            self.gcs_port = free_port()
            self.dashboard_port = free_port()
            args = [
                "--head",
                f"--port={self.gcs_port}",
                f"--temp-dir={self.root / 'ray'}",
                f"--ray-client-server-port={free_port()}",
                f"--include-dashboard={'true' if dashboard else 'false'}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
            ]
            node = self._start(f"head-{attempt}" if attempt else "head", args, resources, num_cpus)
            if self._started(node, attempt == 1):
                return node
        raise AssertionError("unreachable")

    def start_worker(self, name: str, resources: dict[str, float], num_cpus: int) -> RayNodeProcess:
        for attempt in range(2):
            node = self._start(
                f"{name}-{attempt}" if attempt else name, [f"--address={self.address}"], resources, num_cpus
            )
            if self._started(node, attempt == 1):
                return node
        raise AssertionError("unreachable")

    def _started(self, node: RayNodeProcess, last_attempt: bool, timeout_s: float = 360) -> bool:
        """Wait for `ray start` to report the node started; False (to try again) if it exited first."""
        deadline = time.monotonic() + timeout_s
        while node.alive and time.monotonic() < deadline:
            if "Ray runtime started" in node.log.read_text(errors="replace"):
                return True
            time.sleep(1)
        node.signal_group(signal.SIGKILL)
        if last_attempt or time.monotonic() >= deadline:
            raise RuntimeError(f"Ray node {node.name} did not start:\n{node.log_tail()}")
        self.nodes.remove(node)
        return False

    def _start(
        self, name: str, args: list[str], resources: dict[str, float], num_cpus: int
    ) -> RayNodeProcess:
        metrics_port = free_port()
        command = [
            RAY,
            "start",
            "--block",
            *args,
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}",
            f"--resources={json.dumps(resources)}",
            f"--metrics-export-port={metrics_port}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--object-store-memory=150000000",
            "--disable-usage-stats",
        ]
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        node = RayNodeProcess(name, process, log, metrics_port)
        self.nodes.append(node)
        return node

    def kill(self, node: RayNodeProcess) -> None:
        """Abruptly, as a machine that dies: SIGKILL to the node's process group and to every process
        it started (raylet, agents, workers), wherever they moved to."""
        import psutil

        descendants = psutil.Process(node.process.pid).children(recursive=True)
        node.signal_group(signal.SIGKILL)
        for process in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        node.process.wait(timeout=30)
        psutil.wait_procs(descendants, timeout=30)

    def stop(self) -> None:
        """Throw-away nodes: SIGKILL each whole process group (a graceful `ray start --block` exit
        takes tens of seconds and keeps nothing worth keeping)."""
        for node in reversed(self.nodes):
            node.signal_group(signal.SIGKILL)
        for node in reversed(self.nodes):
            node.process.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def ray_nodes() -> Iterator[RayProcessCluster]:
    cluster = RayProcessCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


class Driver:
    """A test file run as a script in its own process, talking JSON lines over its stdin/stdout."""

    def __init__(self, script: str, *args: str, env: dict[str, str], cluster: RayProcessCluster) -> None:
        self.cluster = cluster  # described when the driver fails
        self.process = subprocess.Popen(
            [sys.executable, script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=PROJECT_ROOT,
        )

    def read(self, expected: str, timeout_s: float) -> dict[str, Any]:
        """The next `<expected> {json}` line; fails with the driver's stderr if it ends first."""
        import selectors

        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not selector.select(timeout=min(5.0, max(0.1, deadline - time.monotonic()))):
                continue
            line = self.process.stdout.readline()
            if not line:
                break
            word, _, payload = line.partition(" ")
            if word == expected:
                return dict(json.loads(payload))
            if word == "FAILED":
                pytest.fail(f"the driver failed: {json.loads(payload)['error']}\n{self.diagnosis()}")
        pytest.fail(f"no {expected} from the driver within {timeout_s:.0f} s\n{self.diagnosis()}")

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def diagnosis(self) -> str:
        """The driver's last stderr lines and each node's state and last log lines."""
        if self.process.poll() is None:
            self.process.kill()
        _, err = self.process.communicate(timeout=30)
        nodes = [
            f"--- {n.name} ({'alive' if n.alive else f'exited {n.process.returncode}'}):\n{n.log_tail(15)}"
            for n in self.cluster.nodes
        ]
        return "\n".join(["--- driver stderr:", *err.splitlines()[-40:], *nodes])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)


# -- the scenario, as the driver runs it ---------------------------------------------------------


def tiny_config(data_dir: str, serve_port: int, sim_ports: tuple[int, int, int]) -> dict[str, Any]:
    """One deployment, two shards, a low tick rate; fixed simulator ports so a restarted simulator
    is found where the feed knows it."""
    rest, stream, orders = sim_ports
    return {
        "mode": "sim",
        "data_dir": data_dir,
        "catalog": {"source": "synth", "synth_count": 400},
        "sim": {
            "tick_rate": 200,
            "instruments": 20,
            "rest_port": rest,
            "stream_port": stream,
            "order_port": orders,
        },
        "deployments": [
            {
                "name": "mn",
                "strategy": "actors.shard.strategies.ema_cross:EMACross",
                "config": {"fast_period": 3, "slow_period": 8, "trade_size": 1},
                "universe": {"query": "NSE equities", "limit": 12},
                "shards": 2,
                "flow": "block",
            }
        ],
        "serve": {
            "host": "127.0.0.1",
            "port": serve_port,
            "autoscaling": {"min_replicas": 2, "max_replicas": 2},
        },
    }


def connect(address: str, namespace: str) -> None:
    """ray.init to the test cluster, asking again if its GCS is slow to answer on a busy machine."""
    import ray

    for attempt in range(3):
        try:
            ray.init(address=address, namespace=namespace, log_to_driver=False)
            return
        except ConnectionError:
            if attempt == 2:
                raise


def emit(word: str, payload: dict[str, Any]) -> None:
    sys.stdout.write(f"{word} {json.dumps(payload, default=str)}\n")
    sys.stdout.flush()


def drive_multinode(address: str, config_path: str) -> None:
    """Bring shardline up on the cluster, report placement and flow, wait for the kill, report again."""
    import ray
    from ray import serve
    from ray.util.state import list_actors

    from actors.orders import OrderRequest, OrderType, Side
    from cluster import launcher
    from cluster.config import load_config
    from cluster.topology import EXECUTION, NAMESPACE, ROUTER, SUPERVISOR

    config = load_config(config_path)
    connect(address, NAMESPACE)
    wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, 300, "the worker node to join")
    nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
    head_id = next(i for i, n in nodes.items() if n["Resources"].get("broker_ip"))
    state = launcher.up(config, address=address)
    shard_names = [name for name in state["actors"] if name.startswith("shard-")]
    instrument = _first_instrument(config)

    def placement() -> dict[str, str]:
        """Where each live shardline actor runs."""
        return {
            actor.name: "head" if actor.node_id == head_id else "worker"
            for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
            if actor.ray_namespace == NAMESPACE and actor.name
        }

    def handled() -> int:
        return sum(int(call(n, "stats")["rows_handled"]) for n in shard_names)

    def submit(coid: str) -> dict[str, Any]:
        request = OrderRequest(
            client_order_id=coid,
            book="manual",
            instrument=instrument,
            side=Side.BUY,
            quantity=1,
            order_type=OrderType.MARKET,
        )
        # The same client order id may be sent again after a failure: execution keeps one order.
        last = ""
        for _attempt in range(5):
            try:
                update = call(EXECUTION, "submit", request, timeout=60)
                return {"status": str(update.status), "reason": update.reason}
            except Exception as err:  # a restarting venue actor: try the same id again
                last = f"{type(err).__name__}: {err}"
                time.sleep(2)  # a retry pause, not a wait for a condition
        return {"status": "ERROR", "reason": last}

    # Ray places these zero-CPU actors on either node. Until a shard is on the worker, restart one
    # (Ray picks a node again) so the node loss below costs the deployment a shard.
    for _attempt in range(10):
        if any(placement().get(n) == "worker" for n in shard_names):
            break
        ray.kill(ray.get_actor(shard_names[0], namespace=NAMESPACE), no_restart=False)
        wait_for(lambda: _all_shards_ready(shard_names), 240, "the restarted shard")
    router_stats = call(ROUTER, "stats")
    wait_for(lambda: handled() > 0, 180, "ticks at the shards")
    before = {f"mn-before-{i}": submit(f"mn-before-{i}") for i in range(5)}
    where_before = placement()
    handled_before_kill = handled()
    emit(
        "READY",
        {
            "placement": where_before,
            "shards": shard_names,
            "replicas_on": serve_replica_nodes(head_id),
            "handled": handled_before_kill,
            "router_in": router_stats["ticks_in"],
            "orders": before,
        },
    )
    if sys.stdin.readline().strip() != "KILLED":
        return
    killed_at = handled_before_kill
    wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 1, 120, "the worker to be marked dead")
    during = {f"mn-after-{i}": submit(f"mn-after-{i}") for i in range(5)}

    def ticks_flow(timeout_s: float) -> None:
        wait_for(lambda: _all_shards_ready(shard_names), timeout_s, "the shards to come back")
        wait_for(lambda: handled() > 0 and _router_delivering(shard_names), timeout_s, "ticks to flow again")
        flowing_from = handled()
        wait_for(lambda: handled() > flowing_from + 50, timeout_s, "ticks to keep flowing")

    why = ""
    try:
        ticks_flow(240)
    except TimeoutError as err:
        # Not by itself: note why, then do what the runbook says (`shardline up` again) and check the rest.
        why = f"{err}; placement before: {where_before}; after: {snapshot(state['actors'])}"
        launcher.up(config, address=address)
        try:
            ticks_flow(240)
        except TimeoutError as again_err:
            raise TimeoutError(f"{again_err} even after `up` again; first: {why}") from None
    again = {coid: submit(coid) for coid in [*before, *during]}  # resubmitted: answered, not duplicated
    orders = call(EXECUTION, "orders", "manual", timeout=60)
    execution_stats = call(EXECUTION, "stats", timeout=60)
    wait_for(lambda: len(serve_replica_nodes(head_id)) == 2, 240, "two terminal replicas again")
    # Serve marks the app healthy again only after its replicas pass their next health checks.
    wait_for(
        lambda: {str(app.status.value) for app in serve.status().applications.values()} == {"RUNNING"},
        120,
        "the terminal app to be RUNNING again",
    )
    emit(
        "RESULT",
        {
            "placement": placement(),
            "killed_at": killed_at,
            "recovered_by_itself": not why,
            "why_not": why,
            "handled": handled(),
            "orders_before": before,
            "orders_during": during,
            "resubmitted": again,
            "manual_orders": sorted(o.client_order_id for o in orders),
            "manual_statuses": {o.client_order_id: str(o.status) for o in orders},
            "duplicate_fills": execution_stats["duplicate_fills"],
            "idempotent_replies": execution_stats["idempotent_replies"],
            "replicas_on": serve_replica_nodes(head_id),
            "supervisor": call(SUPERVISOR, "stats"),
            "apps": {name: str(app.status.value) for name, app in serve.status().applications.items()},
        },
    )


def snapshot(names: list[str]) -> dict[str, Any]:
    """The counters that say where ticks stop, from every actor that answers."""
    from cluster.topology import ROUTER

    keys = (
        "state", "error", "generated", "sent", "connections", "ticks_out", "ticks_in", "rows_received",
        "rows_handled", "subscriptions", "lost_router_restarting", "shard_failures", "balanced",
    )  # fmt: skip
    out: dict[str, Any] = {}
    for name in names:
        try:
            stats = call(name, "stats", timeout=15)
        except Exception as err:  # dead or restarting: that is the answer
            out[name] = f"{type(err).__name__}"
            continue
        out[name] = {k: stats[k] for k in keys if k in stats}
        if "stream" in stats:
            out[name]["stream"] = {
                k: stats["stream"].get(k) for k in ("connects", "reconnects", "open_connections")
            }
        if name == ROUTER:
            out[name]["shards"] = [
                {k: sh.get(k) for k in ("index", "up", "registered", "buffered", "ticks_out", "dropped")}
                for d in stats["deployments"].values()
                for sh in d["shards"]
            ]
    return out


def call(actor: str, method: str, *args: Any, timeout: float = 30) -> Any:
    """`actor.method(*args)` on the named shardline actor, waited for."""
    import ray

    from cluster.topology import NAMESPACE

    handle: Any = ray.get_actor(actor, namespace=NAMESPACE)
    return ray.get(getattr(handle, method).remote(*args), timeout=timeout)


def _first_instrument(config: Any) -> str:
    from catalog.sources import load_default_catalog
    from cluster.launcher import resolve_universes

    universes = resolve_universes(config, load_default_catalog(config))
    return universes["mn"][0]


def _all_shards_ready(names: list[str]) -> bool:

    try:
        return all(call(n, "ready", timeout=20) for n in names)
    except Exception:  # restarting: not ready yet
        return False


def _router_delivering(names: list[str]) -> bool:

    from cluster.topology import ROUTER

    stats = call(ROUTER, "stats")
    shards = [s for d in stats["deployments"].values() for s in d["shards"]]
    return len(shards) == len(names) and all(s["up"] and s.get("registered", True) for s in shards)


def serve_replica_nodes(head_id: str) -> list[str]:
    from ray.util.state import list_actors

    return sorted(
        "head" if a.node_id == head_id else "worker"
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        if "ServeReplica" in (a.class_name or "") and "terminal" in (a.class_name or "")
    )


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            if condition():
                return
        except Exception:  # an actor restarting mid-question: ask again
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


# -- the test ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_shards_and_replicas_survive_losing_a_worker_node(
    ray_nodes: RayProcessCluster, tmp_path: Path
) -> None:
    head = ray_nodes.start_head({"broker_ip": 1}, num_cpus=2)
    worker = ray_nodes.start_worker("worker", {"worker_slot": 4}, num_cpus=2)
    config_path = tmp_path / "shardline.yaml"
    sim_ports = (free_port(), free_port(), free_port())
    config = tiny_config(str(tmp_path / "data"), free_port(), sim_ports)
    import yaml

    config_path.write_text(yaml.safe_dump(config))
    driver = Driver(
        __file__, "multinode", ray_nodes.address, str(config_path), env=ray_nodes.env, cluster=ray_nodes
    )
    try:
        ready = driver.read("READY", timeout_s=600)
        placement = ready["placement"]
        assert placement["execution"] == "head"  # pinned by broker_ip
        assert set(ready["shards"]) == {"shard-mn-0", "shard-mn-1"}
        assert len(ready["replicas_on"]) == 2
        assert ready["handled"] > 0 and ready["router_in"] > 0
        assert all(o["status"] != "ERROR" for o in ready["orders"].values())
        shards_on_worker = [n for n in ready["shards"] if placement[n] == "worker"]
        assert shards_on_worker, f"no shard landed on the worker: {placement}"

        ray_nodes.kill(worker)
        assert not worker.alive
        driver.send("KILLED")
        result = driver.read("RESULT", timeout_s=900)
    finally:
        driver.close()

    # Every actor that lived on the worker runs again, on the head (the only node left).
    missing = sorted(set(placement) - set(result["placement"]))
    assert not missing, f"not running after the worker died: {missing}"
    assert set(result["placement"].values()) == {"head"}
    assert result["replicas_on"] == ["head", "head"]
    assert set(result["apps"].values()) == {"RUNNING"}
    # Ticks kept flowing to the strategies after the loss.
    assert result["handled"] > 50
    # Every order sent is there exactly once; sending them again changed nothing.
    sent = sorted([*result["orders_before"], *result["orders_during"]])
    assert result["manual_orders"] == sent
    assert all(r["status"] != "ERROR" for r in result["orders_during"].values()), result["orders_during"]
    assert all(r["status"] != "ERROR" for r in result["resubmitted"].values()), result["resubmitted"]
    assert result["idempotent_replies"] >= len(sent)
    assert result["duplicate_fills"] == 0
    assert head.alive
    # The supervisor (on the head now) publishes shardline's metrics through Ray's endpoint.
    seen: set[str] = set()
    wanted = {
        "ray_shardline_actor_healthy",
        "ray_shardline_ticks_in_total",
        "ray_shardline_router_buffer_depth",
    }

    def exported() -> bool:
        nonlocal seen
        with urllib.request.urlopen(f"http://127.0.0.1:{head.metrics_port}/metrics", timeout=10) as response:
            seen = {line.split("{")[0].split(" ")[0] for line in response.read().decode().splitlines()}
        return wanted <= seen

    with contextlib.suppress(TimeoutError):  # the assertions below say what is missing
        wait_for(exported, 120, "shardline's metrics on the head's endpoint")
    assert "ray_shardline_actor_healthy" in seen, (
        f"no shardline metrics on the head's Ray metrics endpoint; supervisor: {result['supervisor']}"
    )
    assert {"ray_shardline_ticks_in_total", "ray_shardline_router_buffer_depth"} <= seen
    # Last, as it needs no operator: the restarted actors resumed the tick flow by themselves.
    assert result["recovered_by_itself"], result["why_not"]


def main(argv: list[str]) -> None:
    command, *args = argv
    try:
        if command == "multinode":
            drive_multinode(*args)
        else:
            raise SystemExit(f"unknown driver command {command!r}")
    except BaseException as err:
        where = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == __file__][-3:]
        at = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(where))
        emit("FAILED", {"error": f"{type(err).__name__}: {err} (at {at})"})
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
