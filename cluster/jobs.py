"""Deployments on Ray: the named actor "deployments", the calls that reach it, and Ray jobs.

- `RayClusterControl` is `cluster.deployments.ClusterControl` on the running cluster: the
  router, the shard actors, the execution actor, the feeds and the supervisor, by name.
- `DeploymentsActor` is the thin actor around `DeploymentManager` (named "deployments", detached;
  `shardline up` starts it, and the first caller otherwise). Its method names include the ones
  the terminal's service calls (`deployments`, `start_deployment`, `stop_deployment`,
  `scale_deployment`, `swap_deployment`, `deployment_logs`).
- `call` and friends are what the CLI (and any driver) use; a `ShardlineError` raised in the
  actor comes back as itself.
- `submit_job` wraps `ray job submit`: the strategy file's directory becomes the job's
  `working_dir`, and the job runs `python -m cluster.jobs`, which (in `main`) connects with
  `ray.init()` and asks the deployments actor to start (or swap to) the spec, passing the job's
  runtime_env on so the shards import the quant's module the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgspec
import ray

from actors.orders import OrderStatus, OrderUpdate
from actors.shard.actor import StrategyShardActor
from actors.shard.shard import ShardSpec
from cluster.config import Mode, Secrets, ShardlineConfig, load_config
from cluster.deployments import (
    DeploymentError,
    DeploymentManager,
    DeploymentRegistry,
    RuntimeEnv,
    ShardStartError,
    load_deployment_spec,
    parse_deployment_spec,
)
from cluster.errors import ShardlineError
from cluster.topology import EXECUTION, NAMESPACE, ROUTER, SUPERVISOR

log = logging.getLogger(__name__)

DEPLOYMENTS = "deployments"
DEFAULT_DASHBOARD = "http://127.0.0.1:8265"
SHARD_READY_TIMEOUT_S = 120.0
CALL_TIMEOUT_S = 10.0
# Starting, rescaling and swapping wait for Nautilus nodes to start.
LONG_CALL_TIMEOUT_S = 300.0


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value) if value is not None else None


def _first_line(err: BaseException) -> str:
    """The most telling line of a Ray error: the shard's own ShardlineError message if it has one."""
    text = str(err)
    for line in reversed(text.splitlines()):
        line = line.strip()
        for marker in ("ShardlineError: ", "StrategyLoadError: "):
            if marker in line:
                return line.split(marker, 1)[1]
    cause = getattr(err, "cause", None)
    if cause is not None and cause is not err:
        return str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    return text.splitlines()[0] if text else type(err).__name__


def _check_strategy(strategy: str, config: dict[str, Any]) -> str | None:
    """Runs where the shards would: import the strategy and validate its config."""
    from actors.shard.loading import build_strategy

    try:
        build_strategy(strategy, config)
    except ShardlineError as err:
        return str(err)
    return None


class RayClusterControl:
    """`ClusterControl` on the running cluster; every actor is found by name in `shardline`."""

    def __init__(self, config: ShardlineConfig, shard_ready_timeout_s: float = SHARD_READY_TIMEOUT_S) -> None:
        self._config = config
        self._ready_timeout_s = shard_ready_timeout_s

    @property
    def mode(self) -> Mode:
        return self._config.mode

    # -- lookups -------------------------------------------------------------------------------

    @staticmethod
    def _actor(name: str) -> Any:
        try:
            return ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return None

    def _required(self, name: str, what: str) -> Any:
        handle = self._actor(name)
        if handle is None:
            raise ShardlineError(
                f"the {what} actor {name!r} is not running; start shardline first (`shardline up`)"
            )
        return handle

    async def _router_call(self, method: str, *args: Any) -> Any:
        router = self._required(ROUTER, "router")
        return await getattr(router, method).remote(*args)

    # -- strategies and prices -----------------------------------------------------------------

    async def check_strategy(
        self, strategy: str, config: Mapping[str, Any], runtime_env: RuntimeEnv | None
    ) -> None:
        task: Any = ray.remote(num_cpus=0, max_retries=0)(_check_strategy)
        if runtime_env:
            task = task.options(runtime_env=runtime_env)
        problem = await task.remote(strategy, dict(config))
        if problem:
            raise DeploymentError(problem)

    async def latest_prices(self) -> dict[int, int]:
        router = self._actor(ROUTER)
        if router is None:
            return {}
        quotes = await router.latest_quotes.remote()
        return {int(i): int(p) for i, p in zip(quotes["iid"], quotes["ltp"], strict=True)}

    # -- the router ----------------------------------------------------------------------------

    async def route_stats(self, route: str) -> dict[str, Any] | None:
        stats = await self._router_call("stats")
        found = stats["deployments"].get(route)
        return dict(found) if found is not None else None

    async def add_route(self, route: str, universe: dict[int, str], shards: int, flow: str) -> None:
        await self._router_call("add_deployment", route, universe, shards, flow)

    async def remove_route(self, route: str) -> dict[str, Any] | None:
        return _plain(await self._router_call("remove_deployment", route))

    async def set_route_active(self, route: str, active: bool) -> None:
        await self._router_call("set_active", route, active)

    async def hold_route(self, route: str) -> dict[str, Any]:
        return dict(_plain(await self._router_call("hold", route)))

    async def resize_route(self, route: str, shards: int) -> dict[str, Any]:
        return dict(_plain(await self._router_call("resize_deployment", route, shards)))

    async def attach_shard(self, route: str, index: int, shard: str) -> None:
        handle = self._actor(shard)
        if handle is None:
            raise ShardlineError(f"shard actor {shard!r} is gone; cannot attach it to {route} shard {index}")
        await self._router_call("register_shard", route, index, handle)

    # -- shards --------------------------------------------------------------------------------

    async def start_shard(self, spec: Any, runtime_env: RuntimeEnv | None, *, attach: bool) -> None:
        from actors.shard.actor import start_shard_actor

        options: dict[str, Any] = {"lifetime": "detached", "num_cpus": 0}
        if runtime_env:
            options["runtime_env"] = runtime_env
        handle = await _create_named(
            spec.name, lambda: start_shard_actor(spec, router=ROUTER if attach else None, **options)
        )
        try:
            state = await asyncio.wait_for(handle.ready.remote(), self._ready_timeout_s)
        except TimeoutError:
            ray.kill(handle, no_restart=True)
            raise ShardStartError(f"{spec.name} did not start within {self._ready_timeout_s:.0f} s") from None
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:
            ray.kill(handle, no_restart=True)
            raise ShardStartError(_first_line(err)) from None
        if state != "running":
            ray.kill(handle, no_restart=True)
            raise ShardStartError(f"{spec.name} is {state} after starting")

    async def start_spare(self, shard: str, runtime_env: RuntimeEnv | None) -> None:
        options = spare_actor_options(shard)
        if runtime_env:
            options["runtime_env"] = runtime_env
        await _create_named(shard, lambda: ray.remote(SpareShardActor).options(**options).remote())

    async def launch_spare(self, spec: Any) -> None:
        spare = self._actor(spec.name)
        if spare is None:
            raise ShardStartError(f"the spare {spec.name} is gone")
        try:
            state = await asyncio.wait_for(spare.launch.remote(spec), self._ready_timeout_s)
        except TimeoutError:
            raise ShardStartError(f"{spec.name} did not start within {self._ready_timeout_s:.0f} s") from None
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:
            raise ShardStartError(_first_line(err)) from None
        if state != "running":
            raise ShardStartError(f"{spec.name} is {state} after starting")

    async def drain_shard(self, shard: str) -> None:
        handle = self._actor(shard)
        if handle is not None:
            await handle.drain.remote()

    async def save_shard_state(self, shard: str) -> dict[str, bytes]:
        try:
            state: dict[str, bytes] = await self._required(shard, "shard").save_state.remote()
        except ray.exceptions.RayTaskError as err:
            raise ShardlineError(f"{shard}: saving the strategy state failed: {_first_line(err)}") from None
        return state

    async def load_shard_state(self, shard: str, state: dict[str, bytes]) -> None:
        try:
            await self._required(shard, "shard").load_state.remote(state)
        except ray.exceptions.RayTaskError as err:
            raise ShardlineError(f"{shard}: loading the strategy state failed: {_first_line(err)}") from None

    async def shard_stats(self, shard: str, timeout_s: float | None = None) -> dict[str, Any] | None:
        handle = self._actor(shard)
        if handle is None:
            return None
        try:
            stats: dict[str, Any] = await asyncio.wait_for(handle.stats.remote(), timeout_s or CALL_TIMEOUT_S)
        except (TimeoutError, ray.exceptions.RayError):
            return None
        return stats

    async def stop_shard(self, shard: str, *, graceful: bool) -> dict[str, Any] | None:
        handle = self._actor(shard)
        if handle is None:
            return None
        final = None
        if graceful:
            try:
                await asyncio.wait_for(handle.shutdown.remote(), 30.0)
                final = await asyncio.wait_for(handle.stats.remote(), CALL_TIMEOUT_S)
            except (TimeoutError, ray.exceptions.RayError) as err:
                log.warning("deployments: %s did not stop cleanly: %s", shard, _first_line(err))
        ray.kill(handle, no_restart=True)
        return final

    async def shard_logs(self, shard: str, lines: int) -> list[str]:
        handle = self._actor(shard)
        if handle is None:
            return []
        actor_id = handle._actor_id.hex()
        # This cluster's GCS, not whichever one the local auto-detection would find first.
        gcs = ray.get_runtime_context().gcs_address

        def tail() -> list[str]:
            from ray.util.state import get_log

            out: list[str] = []
            problems = []
            for suffix in ("out", "err"):
                try:
                    for chunk in get_log(
                        address=gcs, actor_id=actor_id, tail=lines, suffix=suffix, timeout=10
                    ):
                        out += [line for line in chunk.splitlines() if line.strip()]
                except Exception as err:  # no dashboard (the log API needs it), or no such file
                    problems.append(
                        f"{suffix}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                    )
            if problems and not out:
                out.append(f"(no log lines from Ray's log API: {'; '.join(problems)[:300]})")
            return out[-lines:]

        return await asyncio.to_thread(tail)

    # -- execution -------------------------------------------------------------------------------

    async def book_orders(self, book: str) -> list[OrderUpdate]:
        execution = self._actor(EXECUTION)
        if execution is None:
            return []
        orders: list[OrderUpdate] = await execution.orders.remote(book)
        return orders

    async def cancel_order(self, client_order_id: str) -> bool:
        execution = self._actor(EXECUTION)
        if execution is None:
            return False
        update = await execution.cancel.remote(client_order_id)
        return update is not None and update.status is not OrderStatus.REJECTED

    async def book_risk(self, book: str) -> dict[str, Any] | None:
        execution = self._actor(EXECUTION)
        if execution is None:
            return None
        state = await execution.risk_state.remote()
        found = state.books.get(book)
        return _plain(found) if found is not None else None

    # -- feeds and the supervisor ----------------------------------------------------------------

    @staticmethod
    def _feeds() -> list[Any]:
        from ray.util import list_named_actors

        names = sorted(
            e["name"]
            for e in list_named_actors(all_namespaces=True)
            if e.get("namespace") == NAMESPACE and str(e.get("name", "")).startswith("feed-")
        )
        return [h for h in (RayClusterControl._actor(n) for n in names) if h is not None]

    async def subscribe_feed(self, owner: str, keys: list[str], unstreamed: list[str]) -> None:
        feeds = self._feeds()
        if not feeds:
            log.info("deployments: no feed actor; %s gets ticks only from whoever pushes them", owner)
            return
        if len(feeds) == 1:
            await feeds[0].subscribe.remote(owner, keys)
            return
        if unstreamed:  # one connection per instrument: a second would deliver every tick twice
            loads = await asyncio.gather(*(f.stats.remote() for f in feeds))
            least = min(range(len(feeds)), key=lambda i: int(loads[i].get("subscriptions", 0)))
            await feeds[least].subscribe.remote(owner, unstreamed)

    async def unsubscribe_feed(self, owner: str) -> None:
        await asyncio.gather(*(f.unsubscribe.remote(owner) for f in self._feeds()), return_exceptions=True)

    async def watch(self, names: list[str]) -> None:
        supervisor = self._actor(SUPERVISOR)
        if supervisor is not None and names:
            await supervisor.watch.remote(names)

    async def forget(self, names: list[str]) -> None:
        supervisor = self._actor(SUPERVISOR)
        if supervisor is not None and names:
            await supervisor.forget.remote(names)


async def _create_named(name: str, create: Any, timeout_s: float = 10.0) -> Any:
    """Create a named actor, waiting (bounded) for an actor of that name just killed to let go of it."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
            return create()
        except ValueError as err:  # "The name ... is already taken"
            if time.monotonic() >= deadline:
                raise ShardStartError(f"{name}: {err}") from None
        await asyncio.sleep(delay)  # the GCS frees a killed actor's name shortly after
        delay = min(delay * 2, 0.5)


class SpareShardActor(StrategyShardActor):
    """A shard process started ahead of a hot swap: Ray and Nautilus imported, no node yet.

    `launch(spec)` then starts the node (not attached to the router: the swap attaches it),
    which is all a swap to code already in this process's runtime_env has to wait for. A launched
    spare that Ray restarts asks the deployments actor what it was launched as and comes back as
    that shard (registering with the router like any restarted shard).
    """

    def __init__(self) -> None:  # the shard's own __init__ runs in `launch`
        self._spare = True
        name = ray.get_runtime_context().get_actor_name() or ""
        spec: ShardSpec | None
        try:
            deployments: Any = ray.get_actor(DEPLOYMENTS, namespace=NAMESPACE)
            spec = ray.get(deployments.spare_spec.remote(name), timeout=30)
        except Exception as err:  # no deployments actor: stay a spare
            log.info("%s: no launch spec (%s); waiting as a spare", name, err)
            spec = None
        if spec is not None:
            super().__init__(spec)
            self._spare = False

    async def launch(self, spec: ShardSpec) -> str:
        if not self._spare:
            raise ShardlineError(f"{spec.name} was launched already")
        await asyncio.to_thread(StrategyShardActor.__init__, self, spec, EXECUTION, None)
        self._spare = False
        return self._shard.state

    async def ready(self) -> str:
        return "spare" if self._spare else await super().ready()

    async def stats(self) -> dict[str, Any]:
        if self._spare:
            return {"pid": os.getpid(), "state": "spare"}
        return await super().stats()


def spare_actor_options(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": NAMESPACE,
        "lifetime": "detached",
        "num_cpus": 0,
        "max_restarts": -1,
        "max_task_retries": 0,
        "max_concurrency": 64,
    }


class DeploymentsActor:
    """The named "deployments" actor: a thin async shell around `DeploymentManager`.

    Parameters
    ----------
    config : ShardlineConfig
        The cluster's configuration (its data_dir holds the deployments journal, or Redis does).
    redis_url : str, optional
        Journal in Redis Streams; default from REDIS_URL (files under data_dir otherwise; "" for files).
    """

    def __init__(self, config: ShardlineConfig, redis_url: str | None = None) -> None:
        from actors.journal.journal import open_journal
        from catalog.sources import load_default_catalog
        from cluster.deployments import JOURNAL_STREAM

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        url = redis_url if redis_url is not None else Secrets().redis_url
        journal = open_journal(JOURNAL_STREAM, config.data_path, url)
        self._manager = DeploymentManager(
            config, RayClusterControl(config), load_default_catalog(config), DeploymentRegistry(journal)
        )
        self._recovery: asyncio.Task[list[str]] | None = None

    async def _recovered(self) -> None:
        """Before the first answer: finish or undo an operation a previous incarnation left half done."""
        if self._recovery is None:
            self._recovery = asyncio.get_running_loop().create_task(self._manager.recover())
        try:
            touched = await asyncio.shield(self._recovery)
        except Exception as err:  # a recovery that cannot finish is reported; the actor still answers
            log.error("deployments: recovery after a restart failed: %s", err)
            return
        if touched:
            log.warning("deployments: recovered %s after a restart", ", ".join(touched))

    # -- the manager's own operations ------------------------------------------------------------

    async def start(
        self, spec: dict[str, Any], runtime_env: RuntimeEnv | None = None, source: str = "submit"
    ) -> dict[str, Any]:
        await self._recovered()
        return await self._manager.start(parse_deployment_spec(spec), runtime_env, source)

    async def summaries(self) -> list[dict[str, Any]]:
        await self._recovered()
        return await self._manager.summaries()

    async def show(self, name: str) -> dict[str, Any]:
        await self._recovered()
        return await self._manager.show(name)

    async def scale(self, name: str, shards: int) -> dict[str, Any]:
        await self._recovered()
        return await self._manager.scale(name, shards)

    async def swap(
        self,
        name: str,
        spec: dict[str, Any] | None = None,
        strategy: str | None = None,
        config: dict[str, Any] | None = None,
        runtime_env: RuntimeEnv | None = None,
        cancel_old_orders: bool = True,
    ) -> dict[str, Any]:
        await self._recovered()
        return await self._manager.swap(
            name,
            spec=parse_deployment_spec(spec, f"swap of {name}") if spec is not None else None,
            strategy=strategy,
            config=config,
            runtime_env=runtime_env,
            cancel_old_orders=cancel_old_orders,
        )

    async def stop(self, name: str) -> dict[str, Any]:
        await self._recovered()
        return await self._manager.stop(name)

    async def logs(self, name: str, lines: int = 200) -> list[str]:
        await self._recovered()
        return await self._manager.logs(name, lines)

    # -- the terminal's names (serve.service) ----------------------------------------------------

    async def deployments(self) -> list[dict[str, Any]]:
        await self._recovered()
        return await self._manager.summaries()

    async def start_deployment(self, name: str) -> dict[str, Any]:
        await self._recovered()
        return await self._manager.start_configured(name)

    async def stop_deployment(self, name: str) -> dict[str, Any]:
        await self._recovered()
        return await self._manager.stop(name)

    async def scale_deployment(self, name: str, shards: int) -> dict[str, Any]:
        await self._recovered()
        return await self._manager.scale(name, shards)

    async def swap_deployment(self, name: str, strategy: str, config: dict[str, Any]) -> dict[str, Any]:
        await self._recovered()
        return await self._manager.swap(name, strategy=strategy, config=config)

    async def deployment_logs(self, name: str, lines: int = 200) -> list[str]:
        await self._recovered()
        return await self._manager.logs(name, lines)

    async def spare_spec(self, name: str) -> ShardSpec | None:
        return self._manager.spare_spec(name)

    async def stats(self) -> dict[str, Any]:
        records = list(self._manager.registry)
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id()[:12],
            "deployments": {r.name: r.state for r in records},
        }


def deployments_actor_options(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "name": DEPLOYMENTS,
        "namespace": NAMESPACE,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        "max_task_retries": 0,
        "num_cpus": 0,
    }
    options.update(overrides)
    return options


def start_deployments_actor(config: ShardlineConfig, redis_url: str | None = None, **options: Any) -> Any:
    """The "deployments" actor, created if it does not run yet (then `config` is its config)."""
    return (
        ray.remote(DeploymentsActor)
        .options(**deployments_actor_options(**options))
        .remote(config, redis_url=redis_url)
    )


# ----------------------------------------------------------------------------------- callers


def connect(address: str | None = None) -> None:
    """Join the running cluster (`address`, else RAY_ADDRESS or the local one)."""
    if ray.is_initialized():
        return
    if "RAY_AUTH_MODE" not in os.environ and ray_auth_headers():
        # `ray start` turns token authentication on when a token is at hand; a client must too.
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        ray.init(address=address or "auto", namespace=NAMESPACE, log_to_driver=False)
    except ConnectionError:
        raise ShardlineError("no Ray cluster is running here; start one with `shardline up`") from None


def deployments_handle(config: ShardlineConfig | None = None) -> Any:
    """The running "deployments" actor, started with `config` (default: the config file) if absent."""
    try:
        return ray.get_actor(DEPLOYMENTS, namespace=NAMESPACE)
    except ValueError:
        return start_deployments_actor(config or load_config())


def call(method: str, *args: Any, timeout_s: float = LONG_CALL_TIMEOUT_S, **kwargs: Any) -> Any:
    """Call the deployments actor; its own errors come back as themselves (ShardlineError)."""
    handle = deployments_handle()
    try:
        return ray.get(getattr(handle, method).remote(*args, **kwargs), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise ShardlineError(
            f"the deployments actor did not answer {method}() within {timeout_s:.0f} s"
        ) from None
    except ray.exceptions.RayTaskError as err:
        cause = err.cause
        if isinstance(cause, ShardlineError):
            raise cause from None
        raise ShardlineError(f"deployments.{method}() failed: {_first_line(err)}") from None
    except ray.exceptions.RayActorError as err:
        raise ShardlineError(f"the deployments actor is unavailable: {_first_line(err)}") from None


# ----------------------------------------------------------------------------------- Ray jobs


def ray_auth_headers() -> dict[str, str]:
    """The bearer token for a Ray cluster with token authentication, if one is at hand.

    Ray looks in RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH and ~/.ray/auth_token; a cluster
    started on this machine uses the last one.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        try:
            token = path.read_text().strip()
        except OSError:
            return {}
    return {"Authorization": f"Bearer {token}"} if token else {}


def default_python(address: str) -> str:
    """The entrypoint's interpreter: this one on a cluster on this machine, else `python` there."""
    host = urlparse(address).hostname or ""
    return sys.executable if host in ("127.0.0.1", "localhost", "::1") else "python"


def job_entrypoint(
    python: str,
    *,
    spec_path: str | None = None,
    spec: Mapping[str, Any] | None = None,
    swap: str | None = None,
    module: str | None = None,
    keep_orders: bool = False,
) -> str:
    """The command a job runs: `python -m cluster.jobs ...`, shell-quoted."""
    words = [python, "-m", "cluster.jobs"]
    if spec_path is not None:
        words += ["--deployment", spec_path]
    if spec is not None:
        words += ["--spec-json", json.dumps(spec, separators=(",", ":"))]
    if swap is not None:
        words += ["--swap", swap]
    if module is not None:
        words += ["--module", module]
    if keep_orders:
        words.append("--keep-orders")
    return shlex.join(words)


def submit_job(
    strategy_file: str | Path,
    *,
    spec_path: str | Path | None = None,
    swap: str | None = None,
    address: str | None = None,
    python: str | None = None,
    keep_orders: bool = False,
) -> tuple[Any, str]:
    """Submit a Ray job that starts (or, with `swap`, hot-swaps to) a strategy deployment.

    The strategy file's directory is the job's `working_dir`; the spec is checked here first
    (passed by path when it lives in that directory, inline otherwise).

    Returns
    -------
    (JobSubmissionClient, str)
        The client and the submission id.
    """
    from ray.job_submission import JobSubmissionClient

    strategy_path = Path(strategy_file).resolve()
    if not strategy_path.is_file() or strategy_path.suffix != ".py":
        raise ShardlineError(f"{strategy_file}: not a Python file")
    working_dir = strategy_path.parent
    spec_arg: str | None = None
    inline: dict[str, Any] | None = None
    if spec_path is not None:
        spec_file = Path(spec_path).resolve()
        spec = load_deployment_spec(spec_file)
        module = spec.strategy.partition(":")[0]
        if swap is None and module.split(".")[0] != strategy_path.stem and not _importable(module):
            raise DeploymentError(
                f"{spec_path}: strategy {spec.strategy!r} is not in {strategy_path.name} "
                f"(expected '{strategy_path.stem}:<ClassName>')"
            )
        if spec_file.is_relative_to(working_dir):
            spec_arg = str(spec_file.relative_to(working_dir))
        else:
            inline = spec.model_dump(mode="json", exclude_none=True)
    elif swap is None:
        raise DeploymentError("a submit needs the deployment spec (--deployment my.yaml)")
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or DEFAULT_DASHBOARD
    entrypoint = job_entrypoint(
        python or default_python(address),
        spec_path=spec_arg,
        spec=inline,
        swap=swap,
        module=strategy_path.stem if swap is not None and spec_path is None else None,
        keep_orders=keep_orders,
    )
    try:
        client = JobSubmissionClient(address, headers=ray_auth_headers())
        job_id = client.submit_job(
            entrypoint=entrypoint,
            runtime_env={"working_dir": str(working_dir)},
            metadata={"shardline": "swap" if swap else "deployment"},
        )
    except ConnectionError as err:
        raise ShardlineError(f"cannot reach the Ray Jobs API at {address}: {err}") from None
    except ray.exceptions.AuthenticationError as err:
        raise ShardlineError(
            f"the Ray cluster at {address} wants its auth token in RAY_AUTH_TOKEN: {str(err).splitlines()[0]}"
        ) from None
    except RuntimeError as err:  # the Jobs API answered with an error
        raise ShardlineError(f"the Ray Jobs API at {address} refused the job: {err}") from None
    return client, job_id


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def wait_for_job(client: Any, job_id: str, timeout_s: float = LONG_CALL_TIMEOUT_S) -> tuple[str, str]:
    """Wait until the job ends; returns (status, logs)."""
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout_s
    delay = 0.1
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        if time.monotonic() > deadline:
            raise ShardlineError(f"job {job_id} is still {status.value} after {timeout_s:.0f} s")
        time.sleep(delay)  # polling the Jobs API for the job's end
        delay = min(delay * 1.5, 1.0)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    return JobStatus(status).value, logs


# ----------------------------------------------------------------------------------- the job


RESULT_MARKER = "shardline-result: "


def main(argv: list[str] | None = None) -> int:
    """The job's entrypoint: start (or swap to) a deployment on the cluster the job runs in."""
    parser = argparse.ArgumentParser(prog="python -m cluster.jobs", description=main.__doc__)
    parser.add_argument("--deployment", help="deployment spec YAML (relative to the working dir)")
    parser.add_argument("--spec-json", help="the deployment spec as JSON")
    parser.add_argument("--swap", metavar="NAME", help="hot-swap the running deployment NAME")
    parser.add_argument("--module", help="for --swap without a spec: the new strategy's module")
    parser.add_argument("--keep-orders", action="store_true", help="leave the old version's orders working")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The working dir is the quant's: its modules import as they do on the shards.
    sys.path.insert(0, os.getcwd())
    try:
        result = _run_job(args)
    except ShardlineError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    sys.stdout.write(RESULT_MARKER + json.dumps(result, default=str) + "\n")
    return 0


def _run_job(args: argparse.Namespace) -> Any:
    from actors.shard.loading import build_strategy

    spec = None
    if args.deployment:
        spec = load_deployment_spec(args.deployment)
    elif args.spec_json:
        spec = parse_deployment_spec(json.loads(args.spec_json), "--spec-json")
    if spec is not None:
        build_strategy(spec.strategy, spec.config)  # fails here, before the cluster is touched
    if not ray.is_initialized():
        ray.init(namespace=NAMESPACE, log_to_driver=False)  # RAY_ADDRESS is the job's cluster
    runtime_env = dict(ray.get_runtime_context().runtime_env or {})
    if args.swap:
        if spec is None:
            if not args.module:
                raise DeploymentError("--swap needs --deployment, --spec-json or --module")
            current = call("show", args.swap)
            strategy = f"{args.module}:{current['strategy'].partition(':')[2]}"
            build_strategy(strategy, current["config"])
            return call(
                "swap",
                args.swap,
                strategy=strategy,
                config=current["config"],
                runtime_env=runtime_env,
                cancel_old_orders=not args.keep_orders,
            )
        return call(
            "swap",
            args.swap,
            spec=spec.model_dump(mode="json", exclude_none=True),
            runtime_env=runtime_env,
            cancel_old_orders=not args.keep_orders,
        )
    if spec is None:
        raise DeploymentError("give the deployment spec: --deployment my.yaml or --spec-json")
    return call("start", spec.model_dump(mode="json", exclude_none=True), runtime_env)


if __name__ == "__main__":
    sys.exit(main())
