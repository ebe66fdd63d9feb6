"""`shardline up` / `down`: turn the topology plan into named, detached Ray actors and the terminal.

Order matters: the simulator first (its URLs are the broker's), then the journaled singletons
(portfolio, execution, router, hub), then shards (they register with execution and the router),
then the feed (ticks flow only once someone is there to take them), then the supervisor and Serve.
Everything is idempotent (`get_if_exists`): running `up` twice leaves one of each.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from catalog.catalog import InstrumentCatalog
from catalog.sources import load_default_catalog
from cluster.config import Secrets, ShardlineConfig
from cluster.errors import ShardlineError
from cluster.topology import (
    EXECUTION,
    NAMESPACE,
    PORTFOLIO,
    ROUTER,
    SIMULATOR,
    SUPERVISOR,
    TopologyPlan,
    feed_name,
    plan_topology,
)

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0


def resolve_universes(config: ShardlineConfig, catalog: InstrumentCatalog) -> dict[str, list[str]]:
    """Each enabled deployment's instruments as "EXCH:token" keys; unknown ones fail by name."""
    universes: dict[str, list[str]] = {}
    for spec in config.deployments:
        if not spec.enabled:
            continue
        try:
            chosen = [catalog.resolve(s) for s in spec.universe.instruments]
            if spec.universe.query:
                chosen += catalog.select(spec.universe.query, spec.universe.limit)
        except ShardlineError as err:
            raise ShardlineError(f"deployment {spec.name!r}: {err}") from None
        universes[spec.name] = list(dict.fromkeys(i.key for i in chosen))
    return universes


# ----------------------------------------------------------------------------------- Ray itself


def _ray_executable() -> str:
    return shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"


def run_state_path(config: ShardlineConfig) -> Path:
    return config.data_path / "run" / "cluster.json"


def local_cluster_address() -> str | None:
    """The GCS address of the local cluster Ray last started here, if it still answers.

    Ray's `auto` keeps retrying a cluster that died without `ray stop` (its address file stays
    behind); a refused connection here means: start a fresh head instead.
    """
    path = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        host, port = path.read_text().strip().rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=2):
            return f"{host}:{port}"
    except (OSError, ValueError):
        return None


def connect_ray(config: ShardlineConfig, address: str | None, dashboard: bool = True) -> bool:
    """Join the cluster at `address`, or the local one, starting a local head if none runs.

    Returns True when this call started the local head (so `down` stops it again).
    """
    if ray.is_initialized():  # the caller (a test, a job driver) is already connected
        return False
    if address:
        # Nodes of a real cluster have the project installed by their setup commands (deploy/ray).
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        return False
    if local_cluster_address() is not None:
        ray.init(address="auto", namespace=NAMESPACE, log_to_driver=False)
        return False
    resources = json.dumps({config.execution.pin_resource: 1})
    cmd = [
        _ray_executable(),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--resources={resources}",
        "--disable-usage-stats",
        f"--include-dashboard={'true' if dashboard else 'false'}",
        "--dashboard-host=127.0.0.1",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ShardlineError(f"could not start a local Ray head: {done.stderr.strip().splitlines()[-1:]}")
    ray.init(address="auto", namespace=NAMESPACE, log_to_driver=False)
    return True


def _detached(name: str, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        # Logical CPUs are for placement, not a cap; these actors mostly wait on sockets.
        "num_cpus": 0,
    }
    options.update(extra)
    return options


def _wait(what: str, refs: list[Any], timeout_s: float = READY_TIMEOUT_S) -> list[Any]:
    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise ShardlineError(f"{what} did not become ready within {timeout_s:.0f} s") from None
    except ray.exceptions.RayTaskError as err:
        raise ShardlineError(f"{what} failed to start: {err.cause if err.cause else err}") from None
    except ray.exceptions.RayActorError as err:
        raise ShardlineError(f"{what} died while starting: {str(err).splitlines()[0]}") from None


# ----------------------------------------------------------------------------------- up / down


def up(
    config: ShardlineConfig,
    address: str | None = None,
    *,
    dashboard: bool = True,
    serve_terminal: bool = True,
    start_feed: bool = True,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Start everything the config asks for; returns where to find it."""
    from actors.angel.auth import AngelCredentials
    from actors.angel.factories import AngelEndpoints
    from actors.execution.actor import start_execution
    from actors.feed.actor import FeedActor
    from actors.portfolio.actor import PaperPortfolioActor
    from actors.router.actor import RouterActor
    from actors.shard.actor import start_shard_actor
    from actors.shard.shard import ShardSpec
    from actors.shard.universe import ShardInstrument
    from actors.sim.actor import SimulatorActor
    from cluster.supervisor import Supervisor

    progress("loading the instrument catalog")
    catalog = load_default_catalog(config)
    universes = resolve_universes(config, catalog)
    plan = plan_topology(config, universes)
    # Strategy classes are imported and their configs validated before anything starts.
    from actors.shard.loading import build_strategy

    for deployment in config.deployments:
        if deployment.enabled:
            try:
                build_strategy(deployment.strategy, deployment.config)
            except ShardlineError as err:
                raise ShardlineError(f"deployment {deployment.name!r}: {err}") from None

    progress("connecting to Ray")
    started_head = connect_ray(config, address, dashboard)
    remote: Any = ray.remote  # handles are dynamic; keep mypy from typing them as the classes

    endpoints = AngelEndpoints()
    if plan.runs_simulator:
        progress("starting the Angel One simulator")
        sim = remote(SimulatorActor).options(**_detached(SIMULATOR)).remote(config, list(plan.subscriptions))
        (urls,) = _wait("the simulator", [sim.start.remote()])
        endpoints = AngelEndpoints(urls["rest_url"], urls["stream_url"], urls["order_url"])
        s = config.sim
        credentials = AngelCredentials(
            client_code=s.client_code, api_key=s.api_key, pin=s.pin, totp_secret=s.totp_secret
        )
    else:
        credentials = AngelCredentials.from_secrets(Secrets())

    progress("starting portfolio, execution and router")
    portfolio = remote(PaperPortfolioActor).options(**_detached(PORTFOLIO)).remote(config)
    execution = start_execution(
        config,
        options={"lifetime": "detached", "get_if_exists": True, "num_cpus": 0},
        endpoints=endpoints,
        credentials=credentials,
    )
    # A fresh journal stream per router; Ray hands the same arguments to every restart of it.
    router = (
        remote(RouterActor)
        .options(**_detached(ROUTER, max_concurrency=1000))
        .remote(config, journal_stream=f"router-{uuid.uuid4().hex[:12]}")
    )
    _wait("portfolio, execution and router", [a.stats.remote() for a in (portfolio, execution, router)])
    # Latest quotes reach risk (price bands, market order values) and paper fills at a bounded rate.
    _wait(
        "quote listeners",
        [router.register_quote_listener.remote(name, "on_quotes") for name in (EXECUTION, PORTFOLIO)],
    )
    hub = _start_hub(config)

    (router_stats,) = _wait("the router", [router.stats.remote()])
    for deployment_plan in plan.deployments:
        spec = next(d for d in config.deployments if d.name == deployment_plan.name)
        iids = {catalog.iid_of(k): k for k in deployment_plan.instruments}  # the ring hashes the key
        if spec.name not in router_stats["deployments"]:  # `up` again leaves running ones be
            _wait(
                f"router deployment {spec.name}",
                [router.add_deployment.remote(spec.name, iids, spec.shards, spec.flow.value)],
            )
        instruments = [ShardInstrument.from_catalog(catalog.get(k)) for k in deployment_plan.instruments]
        progress(f"starting {spec.shards} shard(s) of {spec.name}")
        shards = [
            start_shard_actor(
                ShardSpec.from_deployment(spec, instruments, k),
                lifetime="detached",
                get_if_exists=True,
                num_cpus=0,
            )
            for k in range(spec.shards)
        ]
        _wait(f"shards of {spec.name}", [s.ready.remote() for s in shards])

    feeds = []
    for i in range(plan.feeds if start_feed else 0):
        progress("connecting the market feed")
        feed = (
            remote(FeedActor)
            .options(**_detached(feed_name(i)))
            .remote(config, list(plan.feed_subscriptions(i)), endpoints, credentials)
        )
        feeds.append(feed)
    _wait("the market feed", [f.start.remote() for f in feeds])

    serve_url = ""
    if serve_terminal:
        progress("serving the terminal")
        serve_url = _start_serve(config)

    supervisor = remote(Supervisor).options(**_detached(SUPERVISOR)).remote(plan, serve_url)
    _wait("the supervisor", [supervisor.run.remote()])
    # Deployments (`shardline deployments`, submit, swap, the terminal's /deployments) adopt the above.
    from cluster.jobs import DEPLOYMENTS, start_deployments_actor

    _wait("the deployments actor", [start_deployments_actor(config).summaries.remote()])

    state = {
        "started_head": started_head,
        "address": address or "auto",
        "serve_url": serve_url,
        "actors": [*plan.actor_names, DEPLOYMENTS],
        "hub": hub is not None,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = run_state_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.exists() else {}
    state["started_head"] = state["started_head"] or bool(previous.get("started_head"))
    path.write_text(json.dumps(state, indent=2))
    return state


def _start_hub(config: ShardlineConfig) -> Any:
    """The Ray hub actor carries the terminal fan-out unless Redis pub/sub does (REDIS_URL)."""
    from serve.hub import get_or_create_hub_actor

    return None if Secrets().redis_url else get_or_create_hub_actor()


def _start_serve(config: ShardlineConfig) -> str:
    from serve.app import run as run_terminal

    run_terminal(config)
    return f"http://{config.serve.host}:{config.serve.port}"


def down(config: ShardlineConfig, address: str | None = None, stop_ray: bool | None = None) -> list[str]:
    """Stop the terminal and every shardline actor; stop the local Ray head if `up` started it."""
    path = run_state_path(config)
    state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if not _join(address):
        path.unlink(missing_ok=True)
        return []
    stopped = []
    try:
        from ray import serve

        serve.shutdown()
    except Exception as err:  # Serve may never have started; stopping goes on regardless
        log.info("serve shutdown: %s", err)
    from ray.util import list_named_actors

    for entry in list_named_actors(all_namespaces=True):
        if entry.get("namespace") != NAMESPACE:
            continue
        try:
            ray.kill(ray.get_actor(entry["name"], namespace=NAMESPACE), no_restart=True)
            stopped.append(entry["name"])
        except ValueError:
            continue
    ray.shutdown()
    if stop_ray if stop_ray is not None else state.get("started_head", False):
        subprocess.run([_ray_executable(), "stop", "--force"], capture_output=True, check=False)
    path.unlink(missing_ok=True)
    return sorted(stopped)


def _join(address: str | None) -> bool:
    """Connect to the running cluster (or keep the current connection); False if none runs."""
    if ray.is_initialized():
        return True
    try:
        ray.init(address=address or "auto", namespace=NAMESPACE, log_to_driver=False)
    except ConnectionError:
        return False
    return True


def status(address: str | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
    """The supervisor's status document (ShardlineError when nothing runs)."""
    if not _join(address):
        raise ShardlineError("no Ray cluster is running here; start one with `shardline up`")
    try:
        supervisor = ray.get_actor(SUPERVISOR, namespace=NAMESPACE)
    except ValueError:
        raise ShardlineError("Ray runs but shardline is not up; start it with `shardline up`") from None
    supervisor_handle: Any = supervisor
    doc: dict[str, Any] = ray.get(supervisor_handle.status.remote(), timeout=timeout_s)
    doc["ready"] = ray.get(supervisor_handle.ready.remote(), timeout=timeout_s)
    return doc


def plan_only(config: ShardlineConfig) -> TopologyPlan:
    catalog = load_default_catalog(config)
    return plan_topology(config, resolve_universes(config, catalog))
