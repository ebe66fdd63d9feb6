"""A quant's strategy file submitted as a real Ray job, then scaled, hot-swapped, read and stopped
from the `shardline` command line, as a user would.

Self-contained: the test starts its own Ray head with the dashboard (the Jobs API needs it) in a
temp dir on free ports, with its own shardline config, and stops it afterwards. It never joins that
cluster from the test process (which may be attached to the session's Ray): everything goes through
the CLI, the Jobs API and small driver scripts in subprocesses.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import free_port, poll_until

from cluster.jobs import ray_auth_headers

# Starting a Ray head with its dashboard takes minutes on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

BIN = Path(sys.executable).parent

STRATEGY = '''
"""A quant's own strategy, outside the shardline package: counts the trade ticks it handles."""
from nautilus_trader.config import StrategyConfig
from nautilus_trader.trading.strategy import Strategy


class TickCounterConfig(StrategyConfig, frozen=True):
    label: str = "{label}"


class TickCounter(Strategy):
    def __init__(self, config: TickCounterConfig) -> None:
        super().__init__(config)
        self.count = 0

    def on_start(self) -> None:
        for instrument in self.cache.instruments():
            self.subscribe_trade_ticks(instrument.id)

    def on_trade_tick(self, tick) -> None:
        self.count += 1

    def on_save(self) -> dict[str, bytes]:
        return {{"count": str(self.count).encode(), "label": self.config.label.encode()}}

    def on_load(self, state: dict[str, bytes]) -> None:
        self.count += int(state["count"])
'''

SETUP = """
import ray
from cluster.config import load_config
from cluster.topology import NAMESPACE
from actors.router.actor import start_router
from actors.execution.actor import start_execution
from cluster.jobs import start_deployments_actor

ray.init(namespace=NAMESPACE, log_to_driver=False)
config = load_config()
options = {"lifetime": "detached", "num_cpus": 0, "get_if_exists": True}  # a retry finds them
router = start_router(config, options=options)
execution = start_execution(config, options=options, venue="local", redis_url="")
ray.get([router.stats.remote(), execution.stats.remote()], timeout=180)
ray.get(start_deployments_actor(config, redis_url="").stats.remote(), timeout=180)
print("ready")
"""

PUSH = """
import sys, threading, ray
from cluster.config import load_config
from cluster.topology import NAMESPACE
from catalog.sources import load_default_catalog
from actors.shard.universe import ShardInstrument
from cluster.swap import TickStream

ray.init(namespace=NAMESPACE, log_to_driver=False)
config = load_config()
universe = [ShardInstrument.from_catalog(i) for i in load_default_catalog(config).select("NSE equities", 4)]
router = ray.get_actor("router", namespace=NAMESPACE)
stream = TickStream(lambda ticks: ray.get(router.push.remote(ticks)), universe, rate=1000)
thread = threading.Thread(target=stream.run)
thread.start()
stream.wait_for(int(sys.argv[1]))
stream.stop()
thread.join()
print(stream.sent)
"""


@dataclass
class JobsCluster:
    home: Path
    gcs: str
    dashboard: str
    env: dict[str, str]

    def run(self, *args: str, timeout_s: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                args,
                env=self.env,
                cwd=self.home,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            said = (err.stderr or b"").decode() if isinstance(err.stderr, bytes) else str(err.stderr or "")
            pytest.fail(f"{' '.join(args[:4])} still running after {timeout_s:.0f} s:\n{said[-3000:]}")
        if check and done.returncode != 0:
            pytest.fail(f"{' '.join(args[:4])} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def shardline(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(BIN / "shardline"), *args, check=check)

    def driver(self, code: str, *args: str) -> str:
        return self.run(sys.executable, "-c", code, *args).stdout

    def show(self, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(
            self.shardline("deployments", "show", name, "--address", self.gcs).stdout
        )
        return doc


def _answers_or_exited(head: subprocess.Popen[bytes], url: str) -> bool:
    return _dashboard_up(url) or head.poll() is not None


def _dashboard_up(url: str) -> bool:
    request = urllib.request.Request(f"{url}/api/version", headers=ray_auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError:
        return True  # it answers (a token it does not take is the submit's problem, with a clear error)
    except OSError:
        return False


@pytest.fixture(scope="module")
def jobs_cluster() -> Iterator[JobsCluster]:
    # A short root: Ray's unix socket paths under the temp dir must stay under ~107 bytes.
    home = Path(tempfile.mkdtemp(prefix="slj-", dir="/tmp"))
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "shardline.yaml").read_text())
    config.update(
        data_dir=str(home / "data"), deployments=[], catalog={"source": "synth", "synth_count": 2000}
    )
    (home / "shardline.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        SHARDLINE_CONFIG=str(home / "shardline.yaml"),
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # stop at once at teardown
        RAY_DASHBOARD_STARTUP_TIMEOUT_S="600",  # Ray's own 60 s is short on a loaded machine
        PYTHONUNBUFFERED="1",
        # `ray start` turns token auth on when a token is at hand; then every client needs it too.
        RAY_AUTH_MODE="token" if ray_auth_headers() else "disabled",
    )
    head, port, url = _start_head(home, env)
    try:
        env["RAY_ADDRESS"] = f"127.0.0.1:{port}"  # for the driver scripts
        cluster = JobsCluster(home, f"127.0.0.1:{port}", url, env)
        # The first driver may meet a GCS still too busy to answer (Ray's own RPC timeouts): retry.
        for attempt in range(3):
            done = cluster.run(sys.executable, "-c", SETUP, check=False)
            if done.returncode == 0 and done.stdout.strip().endswith("ready"):
                break
            if attempt == 2:
                pytest.fail(f"setting up router, execution and deployments failed:\n{done.stderr[-3000:]}")
        yield cluster
    finally:
        _stop(head)
        shutil.rmtree(home, ignore_errors=True)


def _start_head(
    home: Path, env: dict[str, str], attempts: int = 3
) -> tuple[subprocess.Popen[bytes], int, str]:
    """`ray start --head --block` with the dashboard on free ports; returns (process, port, dashboard URL).

    Ray gives its raylet a fixed 30 s to register, which a heavily loaded machine can miss: a head
    that exits while starting is started again, on new ports, a few times.
    """
    log = ""
    for attempt in range(attempts):
        port, dashboard = free_port(), free_port()
        log_path = home / f"head-{attempt}.log"
        head = subprocess.Popen(
            [
                str(BIN / "ray"), "start", "--head", "--block",
                f"--port={port}",
                "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
                "--num-cpus=2", '--resources={"broker_ip": 1}', f"--temp-dir={home / f'ray{attempt}'}",
                "--disable-usage-stats",
            ],
            env=env,
            stdout=log_path.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the teardown stops all of it
        )  # fmt: skip
        url = f"http://127.0.0.1:{dashboard}"
        try:
            poll_until(functools.partial(_answers_or_exited, head, url), 600, "the Ray dashboard")
        except TimeoutError:
            _stop(head)
            pytest.fail(f"no Ray dashboard after 600 s; ray start said: {log_path.read_text()[-2000:]}")
        if head.poll() is None:
            return head, port, url
        log = log_path.read_text()[-2000:]
        _stop(head)
    pytest.fail(f"ray start failed {attempts} times; the last said: {log}")


def _stop(head: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        try:
            head.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def write_quant_files(directory: Path, module: str, label: str, spec: dict[str, Any] | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{module}.py"
    path.write_text(textwrap.dedent(STRATEGY.format(label=label)))
    if spec is not None:
        (directory / f"{module}.yaml").write_text(yaml.safe_dump(spec))
    return path


def test_a_strategy_file_runs_as_a_job_then_scales_swaps_and_stops(
    jobs_cluster: JobsCluster, wait_until: Callable[..., Any]
) -> None:
    c = jobs_cluster
    quant = c.home / "quant"
    spec = {
        "name": "momentum",
        "strategy": "momentum:TickCounter",
        "config": {"label": "v1"},
        "universe": {"query": "NSE equities", "limit": 4},
        "shards": 2,
    }
    strategy = write_quant_files(quant, "momentum", "v1", spec)

    submitted = c.shardline(
        "submit", str(strategy), "--deployment", str(quant / "momentum.yaml"), "--address", c.dashboard
    )
    assert "submitted job" in submitted.stdout
    started = json.loads(submitted.stdout[submitted.stdout.index("{") :])
    assert (started["state"], started["strategy"], started["shards"]) == (
        "running",
        "momentum:TickCounter",
        2,
    )

    sent = int(c.driver(PUSH, "2000").strip().splitlines()[-1])
    shown = wait_until(lambda: (d := c.show("momentum"))["ticks_handled"] == sent and d, 120, "ticks handled")
    assert shown["source"] == "submit" and shown["state"] == "running"

    scaled = json.loads(c.shardline("deployments", "scale", "momentum", "3", "--address", c.gcs).stdout)
    assert (scaled["to_shards"], scaled["added"]) == (3, ["shard-momentum-2"])

    # the new version is another file (and module) beside the first: shipped by a second job
    v2 = write_quant_files(quant, "momentum_v2", "v2", None)
    swapped = c.shardline("swap", "momentum", "--to", str(v2), "--address", c.dashboard)
    report = json.loads(swapped.stdout[swapped.stdout.index("{") :])
    assert (report["generation"], report["to_strategy"]) == (1, "momentum_v2:TickCounter")
    assert report["shards"] == ["shard-momentum.1-0", "shard-momentum.1-1", "shard-momentum.1-2"]

    sent += int(c.driver(PUSH, "1000").strip().splitlines()[-1])
    after = wait_until(
        lambda: (d := c.show("momentum"))["router"]["ticks_out"] == sent and d, 120, "ticks after the swap"
    )
    assert after["strategy"] == "momentum_v2:TickCounter" and after["generation"] == 1

    listed = json.loads(c.shardline("deployments", "list", "--json", "--address", c.gcs).stdout)
    assert [(d["name"], d["state"], d["shards"]) for d in listed] == [("momentum", "running", 3)]
    logs = c.shardline("deployments", "logs", "momentum", "--lines", "400", "--address", c.gcs).stdout
    assert "swapped momentum:TickCounter -> momentum_v2:TickCounter" in logs
    # with the dashboard up, Ray's log API gives the shard actors' own output
    assert "[shard-momentum.1-0]" in logs and "running momentum_v2:TickCounter" in logs

    stopped = json.loads(c.shardline("deployments", "stop", "momentum", "--address", c.gcs).stdout)
    assert stopped["state"] == "stopped"
    assert c.show("momentum")["state"] == "stopped"


def test_a_broken_submit_fails_with_its_reason_and_starts_nothing(jobs_cluster: JobsCluster) -> None:
    c = jobs_cluster
    quant = c.home / "broken"
    spec = {
        "name": "broken",
        "strategy": "broken:TickCounter",
        "config": {"labl": "typo"},
        "universe": {"query": "NSE equities", "limit": 2},
    }
    strategy = write_quant_files(quant, "broken", "x", spec)
    done = c.shardline(
        "submit",
        str(strategy),
        "--deployment",
        str(quant / "broken.yaml"),
        "--address",
        c.dashboard,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown config key(s) for TickCounterConfig: labl" in done.stderr
    listed = json.loads(c.shardline("deployments", "list", "--json", "--address", c.gcs).stdout)
    assert "broken" not in [d["name"] for d in listed]


def test_submit_refuses_a_spec_whose_strategy_is_not_in_the_file(
    jobs_cluster: JobsCluster, tmp_path: Path
) -> None:
    spec = {"name": "elsewhere", "strategy": "other_module:Thing", "universe": {"query": "NSE equities"}}
    strategy = write_quant_files(tmp_path, "mine", "x", spec)
    done = jobs_cluster.shardline(
        "submit",
        str(strategy),
        "--deployment",
        str(tmp_path / "mine.yaml"),
        "--address",
        jobs_cluster.dashboard,
        check=False,
    )
    assert done.returncode == 2 and "strategy 'other_module:Thing' is not in mine.py" in done.stderr
