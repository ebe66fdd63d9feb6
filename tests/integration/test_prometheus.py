"""shardline's metrics through a real Ray head's Prometheus endpoint, and a real Prometheus on top.

A Ray head runs as its own processes (see `RayProcessCluster`); a driver process (this file run
as a script) starts an actor that records metrics through `cluster.metrics` exactly as the
supervisor and the actors do. The test reads Ray's endpoint, then runs the `prometheus` binary
with `deploy/prometheus/` (the discovery-file path and intervals adjusted to the test) and asks
its HTTP API for the series, the rules' health and a firing alert.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from test_multinode import PROJECT_ROOT, Driver, RayNodeProcess, RayProcessCluster, connect, emit, free_port

from cluster import metrics

PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"

FEED_STATS = {
    "pid": 4242,
    "ticks_out": 990,
    "lost_router_restarting": 10,
    "subscriptions": 40,
    "push_wait_s": 1.5,
    "stream": {"ticks_delivered": 1000, "reconnects": 2, "missed_by_sequence": 3, "open_connections": 1},
}
STATUS = {
    "actors": [
        {"name": "feed-0", "kind": "feed", "healthy": True, "restarts": 1, "stats": FEED_STATS},
        {"name": "router", "kind": "router", "healthy": False, "restarts": 0, "stats": {}},
        {
            "name": "execution",
            "kind": "execution",
            "healthy": True,
            "restarts": 0,
            "stats": {
                "submitted": 7,
                "refused": 2,
                "refusals": {"max_quantity": 2},
                "journal": {"appended": 21, "failures": 0},
                "risk": {
                    "global_kill_switch": {"engaged": False},
                    "pnl": "-150.25",
                    "books": {"ema": {"kill_switch": {"engaged": True}, "pnl": "-150.25", "positions": {}}},
                },
            },
        },
    ]
}


class MetricsProbe:
    """Records through cluster.metrics from inside a Ray worker, as the supervisor does.

    Ray drops a gauge that is not set again within two metric report intervals, so the status
    is exported every second, like the supervisor's poll.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def start(self, status: dict[str, Any]) -> int:
        made = metrics.export_status(status)
        ack = metrics.ORDER_ACK_LATENCY.bind(venue="paper")
        for seconds in (0.003, 0.004, 0.2):
            ack.observe(seconds)
        metrics.record_slippage("ema", metrics.slippage("BUY", 80_000, 80_040, 10))
        self._task = asyncio.get_running_loop().create_task(self._keep_exporting(status))
        return made

    async def _keep_exporting(self, status: dict[str, Any]) -> None:
        while True:
            await asyncio.sleep(1.0)  # the supervisor's poll period, not a wait for a condition
            metrics.export_status(status)


def drive_metrics(address: str) -> None:
    import ray

    connect(address, "shardline")
    probe: Any = (
        ray.remote(MetricsProbe).options(name="metrics-probe", lifetime="detached", num_cpus=0).remote()
    )
    made = ray.get(probe.start.remote(STATUS), timeout=120)
    emit("RECORDED", {"made": made})


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Ray's endpoint as {series name: [(labels, value)]}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return series


def value(series: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float | None:
    found = [v for got, v in series.get(name, []) if all(got.get(k) == x for k, x in labels.items())]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
    return found[0] if found else None


def wait_for(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            result = condition()
        except OSError:  # not listening yet
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[tuple[RayProcessCluster, RayNodeProcess]]:
    """A Ray head whose metrics endpoint already shows what the probe recorded."""
    cluster = RayProcessCluster()
    try:
        head = cluster.start_head({"broker_ip": 1}, num_cpus=1, dashboard=True)
        driver = Driver(__file__, "metrics", cluster.address, env=cluster.env, cluster=cluster)
        try:
            recorded = driver.read("RECORDED", timeout_s=300)
        finally:
            driver.close()
        assert recorded["made"] > 20
        wait_for(
            lambda: value(scrape(head.metrics_port), "ray_shardline_order_ack_seconds_count", venue="paper"),
            300,
            "shardline metrics on Ray's endpoint",
        )
        yield cluster, head
    finally:
        cluster.stop()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_shardline_metrics_appear_on_rays_prometheus_endpoint(
    ray_head: tuple[RayProcessCluster, RayNodeProcess],
) -> None:
    _, head = ray_head
    # Ray's own node metrics come from its agent on a slower period than ours.
    series = wait_for(
        lambda: (s := scrape(head.metrics_port)) and all(n in s for n in metrics.RAY_BUILTIN_METRICS) and s,
        120,
        f"Ray's node metrics {metrics.RAY_BUILTIN_METRICS}",
    )
    feed = {"actor": "feed-0", "deployment": ""}
    assert value(series, "ray_shardline_ticks_in_total", **feed) == 1000
    assert value(series, "ray_shardline_ticks_out_total", **feed) == 990
    assert value(series, "ray_shardline_ticks_dropped_total", **feed) == 10
    assert value(series, "ray_shardline_feed_reconnects_total", actor="feed-0") == 2
    assert value(series, "ray_shardline_feed_push_wait_seconds_total", actor="feed-0") == 1.5
    assert value(series, "ray_shardline_actor_healthy", actor="router", kind="router") == 0
    assert value(series, "ray_shardline_actor_restarts_total", actor="feed-0", kind="feed") == 1
    assert value(series, "ray_shardline_orders_total", status="submitted") == 7
    assert value(series, "ray_shardline_order_rejects_total", source="risk", reason="max_quantity") == 2
    assert value(series, "ray_shardline_journal_appends_total", actor="execution") == 21
    assert value(series, "ray_shardline_journal_write_failures_total", actor="execution") == 0
    assert value(series, "ray_shardline_kill_switch_engaged", book="ema") == 1
    assert value(series, "ray_shardline_pnl_total_rupees") == -150.25
    # Histograms observed through bound metrics.
    assert value(series, "ray_shardline_order_ack_seconds_count", venue="paper") == 3
    assert value(series, "ray_shardline_order_ack_seconds_bucket", venue="paper", le="0.005") == 2
    assert value(series, "ray_shardline_fill_slippage_bps_count", book="ema", direction="adverse") == 1
    assert value(series, "ray_shardline_slippage_rupees_total", book="ema", direction="adverse") == 4.0
    # Every series name Prometheus sees here is one cluster.metrics declares (or Ray's own).
    ours = {n for n in series if n.startswith("ray_shardline_")}
    assert ours <= metrics.exported_names()
    # The Ray metrics the dashboards use are there (waited for above), with real values.
    memory = value(series, "ray_node_mem_total")
    assert memory is not None and memory > 0


def prometheus_config(tmp_path: Path, discovery_file: Path, terminal_port: int) -> Path:
    """deploy/prometheus/prometheus.yml pointed at this cluster, scraping every 2 s."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="2s", evaluation_interval="2s")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["ray"]["file_sd_configs"][0].update(files=[str(discovery_file)], refresh_interval="2s")
    jobs["shardline-terminal"]["static_configs"][0]["targets"] = [f"127.0.0.1:{terminal_port}"]
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def query(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_prometheus_scrapes_ray_through_the_discovery_file_and_evaluates_the_rules(
    ray_head: tuple[RayProcessCluster, RayNodeProcess], tmp_path: Path
) -> None:
    cluster, _ = ray_head
    exe = shutil.which("prometheus")
    assert exe, "prometheus is missing: install the 'prometheus' OS package (make os-packages)"
    # The head's dashboard writes the list of metrics endpoints beside the session (and links it here).
    discovery = cluster.root / "ray" / "prom_metrics_service_discovery.json"
    targets = wait_for(
        lambda: discovery.exists() and json.loads(discovery.read_text()), 120, "Ray's target file"
    )
    assert targets and targets[0]["targets"]
    port = free_port()
    config = prometheus_config(tmp_path, discovery, terminal_port=free_port())
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            exe,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            result = wait_for(
                lambda: query(port, "query", query='ray_shardline_ticks_out_total{actor="feed-0"}')["result"],
                120,
                "the feed's series in Prometheus",
            )
        except TimeoutError as err:
            pytest.fail(f"{err}; targets: {query(port, 'targets')}; discovery file: {discovery.read_text()}")
        assert float(result[0]["value"][1]) == 990
        assert result[0]["metric"]["job"] == "ray"

        # The rules load and every one of them evaluates against real series without error.
        groups = wait_for(
            lambda: (
                (g := query(port, "rules")["groups"])
                and all(r.get("lastEvaluation", "").startswith("20") for grp in g for r in grp["rules"])
                and g
            ),
            60,
            "every rule evaluated once",
        )
        rules = [r for g in groups for r in g["rules"]]
        declared = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
        assert len(rules) == sum(len(g["rules"]) for g in declared)
        broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
        assert not broken, broken

        # A kill switch engaged in the actors' metrics is a firing alert, with its book.
        firing = wait_for(
            lambda: [
                a
                for a in query(port, "alerts")["alerts"]
                if a["labels"]["alertname"] == "KillSwitchEngaged" and a["state"] == "firing"
            ],
            60,
            "KillSwitchEngaged to fire",
        )
        assert [a["labels"]["book"] for a in firing] == ["ema"]
        assert firing[0]["labels"]["severity"] == "critical"

        # Nothing listens at the terminal target: its scrape health says so.
        down = wait_for(
            lambda: query(port, "query", query='up{job="shardline-terminal"} == 0')["result"],
            60,
            "the terminal target to be down",
        )
        assert len(down) == 1
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    try:
        if command != "metrics":
            raise SystemExit(f"unknown driver command {command!r}")
        drive_metrics(*args)
    except BaseException as err:
        emit("FAILED", {"error": f"{type(err).__name__}: {err}"})
        raise
