"""Strategy deployments on a running cluster: start, list, show, scale, swap, stop and logs.

A deployment is one strategy (a Nautilus `Strategy` class and its config) over one universe,
split by the router's consistent-hash ring over N shard actors, each one Nautilus node. Its spec
is a `cluster.config.DeploymentConfig`, from `config/shardline.yaml` (started by `shardline up`)
or a YAML file of its own (`shardline submit`, see `config/deployments/`).

`DeploymentManager` is the logic, without Ray: it validates before anything starts, keeps one
`DeploymentRecord` per deployment in a write-ahead journal (each change is journaled before it
is acted on, so a restarted manager knows what runs), and drives the cluster through the
`ClusterControl` protocol. `cluster.jobs` implements that protocol on Ray and wraps the manager
in the named actor "deployments"; `cluster.swap` holds the two shard-changing procedures (hot
swap and rescale).

Book, route and shards: a deployment's name is its book in the execution actor (orders,
positions, P&L and risk limits) and its route in the router. Its shards are named
`shard-<name>-<k>` and, after a hot swap to generation g, `shard-<name>.<g>-<k>`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import yaml
from pydantic import ValidationError

from actors.orders import TERMINAL_STATUSES, OrderUpdate
from cluster.config import DeploymentConfig, Mode, ShardlineConfig, format_validation_error
from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from actors.journal.journal import Journal
    from actors.shard.shard import ShardSpec
    from actors.shard.universe import ShardInstrument
    from catalog.catalog import InstrumentCatalog
    from catalog.instrument import Instrument

log = logging.getLogger(__name__)

JOURNAL_STREAM = "deployments"
HISTORY_KEPT = 20

RuntimeEnv = dict[str, Any]


class DeploymentState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"


class DeploymentError(ShardlineError, ValueError):
    """A request that cannot be done as asked: an invalid spec, a strategy that does not load."""


class UnknownDeployment(ShardlineError, LookupError):
    """No deployment of that name (the message lists the known ones)."""


class DeploymentBusy(ShardlineError, PermissionError):
    """The deployment is in a state, or in the middle of an operation, that refuses the request."""


class ShardStartError(ShardlineError):
    """A shard actor did not come up; the message carries the shard's own reason."""


# ----------------------------------------------------------------------------------- specs


def parse_deployment_spec(data: Any, source: str = "deployment") -> DeploymentConfig:
    """Validate a deployment spec mapping; errors name the source and the dotted key."""
    if not isinstance(data, Mapping):
        raise DeploymentError(f"{source}: a deployment spec is a mapping (name, strategy, universe, ...)")
    try:
        return DeploymentConfig.model_validate(dict(data))
    except ValidationError as err:
        raise DeploymentError(format_validation_error(source, err)) from None


def load_deployment_spec(path: str | Path) -> DeploymentConfig:
    """Read and validate a deployment spec YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise DeploymentError(f"{path}: cannot read: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DeploymentError(f"{path}: not valid YAML: {err}") from None
    return parse_deployment_spec(data, str(path))


def resolve_universe(
    spec: DeploymentConfig, catalog: InstrumentCatalog, prices: Mapping[str, int] | None = None
) -> list[Instrument]:
    """The spec's instruments: its explicit list, then its catalog query, without repeats.

    `prices` ("EXCH:token" -> last price, minor units) centre option chains on the live ATM.
    """
    try:
        chosen = [catalog.resolve(s) for s in spec.universe.instruments]
        if spec.universe.query:
            chosen += catalog.select(spec.universe.query, spec.universe.limit, prices)
    except ShardlineError as err:
        raise DeploymentError(f"deployment {spec.name!r}: {err}") from None
    unique = list({i.key: i for i in chosen}.values())
    if not unique:
        raise DeploymentError(f"deployment {spec.name!r}: its universe resolved to no instruments")
    return unique


def spec_json(spec: DeploymentConfig) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


# ----------------------------------------------------------------------------------- records


class DeploymentRecord(msgspec.Struct, kw_only=True):
    """What the manager knows of one deployment; journaled whole at every change."""

    name: str
    spec: dict[str, Any]  # the DeploymentConfig, as JSON
    instruments: list[str]  # resolved "EXCH:token" keys, fixed for the deployment's life
    shards: int
    generation: int = 0
    runtime_env: RuntimeEnv | None = None  # where the strategy's code comes from (a job's working_dir)
    state: str = DeploymentState.STARTING.value  # the manager's own view; shards may say failed
    operation: str = ""  # the operation in progress, if any
    error: str = ""
    source: str = "submit"  # "config" (started by `shardline up`), "submit", "api"
    spares: int = 0  # idle processes started for the next generation's shards (`warm_spares`)
    spares_env: RuntimeEnv | None = None  # the runtime_env the spares were started with
    # A swap in progress: the new version's spec and runtime_env, so a restarted manager can finish it.
    pending_spec: dict[str, Any] | None = None
    pending_env: RuntimeEnv | None = None
    pending_shards: int | None = None  # a rescale in progress: its target
    history: list[str] = msgspec.field(default_factory=list)
    started_ns: int = 0
    updated_ns: int = 0

    @property
    def config(self) -> DeploymentConfig:
        return parse_deployment_spec(self.spec, f"deployment {self.name}")

    @property
    def strategy(self) -> str:
        return str(self.spec.get("strategy", ""))

    def shard_names(self, generation: int | None = None, shards: int | None = None) -> list[str]:
        g = self.generation if generation is None else generation
        return [shard_actor_name(self.name, g, k) for k in range(self.shards if shards is None else shards)]

    def note(self, now_ns: int, text: str) -> None:
        stamp = datetime.fromtimestamp(now_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.history = [*self.history, f"{stamp} {text}"][-HISTORY_KEPT:]
        self.updated_ns = now_ns


def shard_actor_name(deployment: str, generation: int, index: int) -> str:
    """The actor name of a shard (as `actors.shard.shard.ShardSpec.name` makes it)."""
    if generation:
        return f"shard-{deployment}.{generation}-{index}"
    return f"shard-{deployment}-{index}"


def parse_shard_actor_name(name: str) -> tuple[str, int, int] | None:
    """(deployment, generation, index) of a shard actor name, or None if it is not one."""
    if not name.startswith("shard-"):
        return None
    head, _, index = name[len("shard-") :].rpartition("-")
    deployment, dot, generation = head.partition(".")
    if not head or not index.isdigit() or (dot and not generation.isdigit()):
        return None
    return deployment, int(generation or 0), int(index)


def trader_tag(generation: int, index: int) -> str:
    """The trader tag in the client order ids of a shard (as `ShardSpec.trader_tag` makes it)."""
    return f"{generation}G{index:03d}" if generation else f"{index:03d}"


def order_trader_tag(client_order_id: str) -> str | None:
    """The trader tag of a Nautilus client order id "O-YYYYMMDD-HHMMSS-<trader>-<strategy>-<n>"."""
    parts = client_order_id.split("-")
    return parts[3] if len(parts) >= 6 and parts[0] == "O" else None


def working(order: OrderUpdate) -> bool:
    return order.status not in TERMINAL_STATUSES


class DeploymentRegistry:
    """The records, rebuilt from the journal at start; `put` journals before it changes anything.

    Parameters
    ----------
    journal : Journal, optional
        Where each record is appended; None keeps records in memory only (tests, one-off tools).
    """

    def __init__(self, journal: Journal | None = None) -> None:
        self._journal = journal
        self._records: dict[str, DeploymentRecord] = {}
        if journal is not None:
            for entry in journal.replay(record_type=DeploymentRecord):
                self._records[entry.record.name] = entry.record

    def get(self, name: str) -> DeploymentRecord:
        record = self._records.get(name)
        if record is None:
            known = ", ".join(sorted(self._records)) or "none"
            raise UnknownDeployment(f"no deployment named {name!r} (deployments: {known})")
        return record

    def find(self, name: str) -> DeploymentRecord | None:
        return self._records.get(name)

    def __iter__(self) -> Iterator[DeploymentRecord]:
        return iter(sorted(self._records.values(), key=lambda r: r.name))

    def put(self, record: DeploymentRecord) -> None:
        if self._journal is not None:
            self._journal.append(record)
        self._records[record.name] = msgspec.structs.replace(record)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()


# ----------------------------------------------------------------------------------- status


def derive_state(
    record: DeploymentRecord, shard_stats: Mapping[str, Mapping[str, Any] | None]
) -> tuple[str, str]:
    """(state, error) of a deployment from its record and its shards' `stats()` (None: no answer).

    A stopped, starting or failed-to-start record says so; otherwise one failed or missing shard
    makes the whole deployment failed (with that shard's reason), and it is running only when
    every shard is.
    """
    if record.state != DeploymentState.RUNNING:
        return record.state, record.error
    problems = []
    starting = False
    for name, stats in shard_stats.items():
        if stats is None:
            problems.append(f"{name} is not answering")
            continue
        state = str(stats.get("state", ""))
        if state == DeploymentState.FAILED:
            problems.append(f"{name} failed: {stats.get('error') or 'no reason given'}")
        elif state == DeploymentState.STARTING:
            starting = True
        elif state != DeploymentState.RUNNING:
            problems.append(f"{name} is {state or 'in an unknown state'}")
    if problems:
        return DeploymentState.FAILED.value, "; ".join(problems)
    return (DeploymentState.STARTING.value if starting else DeploymentState.RUNNING.value), ""


def summarize(
    record: DeploymentRecord,
    shard_stats: Mapping[str, Mapping[str, Any] | None],
    route: Mapping[str, Any] | None = None,
    orders: Iterable[OrderUpdate] = (),
    risk: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The document `deployments show` prints and the REST layer returns."""
    state, error = derive_state(record, shard_stats)
    by_status = Counter(o.status.value for o in orders)
    shards = []
    for index, (name, stats) in enumerate(shard_stats.items()):
        stats = stats or {}
        shards.append(
            {
                "index": index,
                "name": name,
                "state": stats.get("state", "unreachable"),
                "instruments_routed": _routed(route, index),
                "ticks_handled": stats.get("ticks_handled", 0),
                "rows_dropped": stats.get("rows_dropped", 0),
                "orders_sent": stats.get("orders_sent", 0),
                "fills": stats.get("fills", 0),
                "positions": stats.get("positions", {}),
                "error": stats.get("error"),
            }
        )
    ticks = sum(int(s["ticks_handled"] or 0) for s in shards)
    doc: dict[str, Any] = {
        "name": record.name,
        "state": state,
        "error": error,
        "strategy": record.strategy,
        "config": record.spec.get("config", {}),
        "generation": record.generation,
        "shards": record.shards,
        "instruments": len(record.instruments),
        "flow": record.spec.get("flow", "block"),
        "source": record.source,
        "operation": record.operation,
        "ticks_handled": ticks,
        "orders": {"total": sum(by_status.values()), **dict(sorted(by_status.items()))},
        "shard_detail": shards,
        "history": list(record.history),
    }
    if route is not None:
        doc["router"] = {
            k: route.get(k, 0)
            for k in ("ticks_in", "ticks_out", "in_flight", "buffered", "conflated", "dropped")
        }
    if risk is not None:
        doc["pnl"] = {
            k: str(risk[k]) for k in ("realized_pnl", "unrealized_pnl", "charges", "pnl") if k in risk
        }
        doc["positions"] = dict(risk.get("positions", {}))
    return doc


def _routed(route: Mapping[str, Any] | None, index: int) -> int | None:
    if route is None:
        return None
    for shard in route.get("shards", ()):
        if shard.get("index") == index:
            return int(shard.get("instruments", 0))
    return None


# ----------------------------------------------------------------------------------- the cluster


class ClusterControl(Protocol):
    """What the manager needs of the running cluster; `cluster.jobs.RayClusterControl` on Ray.

    Shards are named by their actor names. Routes are the router's deployments.
    """

    @property
    def mode(self) -> Mode: ...

    async def check_strategy(
        self, strategy: str, config: Mapping[str, Any], runtime_env: RuntimeEnv | None
    ) -> None:
        """Import the strategy and validate its config where shards would (DeploymentError if not)."""
        ...

    async def latest_prices(self) -> dict[int, int]:
        """The router's last traded price per instrument id."""
        ...

    async def route_stats(self, route: str) -> dict[str, Any] | None: ...

    async def add_route(self, route: str, universe: dict[int, str], shards: int, flow: str) -> None: ...

    async def remove_route(self, route: str) -> dict[str, Any] | None: ...

    async def set_route_active(self, route: str, active: bool) -> None: ...

    async def hold_route(self, route: str) -> dict[str, Any]:
        """Stop delivering to the route's shards; returns once none has ticks in flight."""
        ...

    async def resize_route(self, route: str, shards: int) -> dict[str, Any]: ...

    async def attach_shard(self, route: str, index: int, shard: str) -> None:
        """Deliver the route's shard `index` ticks to actor `shard` (releases a hold)."""
        ...

    async def start_shard(self, spec: ShardSpec, runtime_env: RuntimeEnv | None, *, attach: bool) -> None:
        """Start a shard actor and wait until it runs (ShardStartError with its reason if not).

        `attach` lets it register with the router itself; otherwise `attach_shard` does it.
        """
        ...

    async def start_spare(self, shard: str, runtime_env: RuntimeEnv | None) -> None:
        """Start an idle process named `shard` (imports done, no node) without waiting for it."""
        ...

    async def launch_spare(self, spec: ShardSpec) -> None:
        """Start `spec`'s node in the spare named `spec.name`, not attached (ShardStartError if not)."""
        ...

    async def drain_shard(self, shard: str) -> None: ...

    async def save_shard_state(self, shard: str) -> dict[str, bytes]: ...

    async def load_shard_state(self, shard: str, state: dict[str, bytes]) -> None: ...

    async def shard_stats(self, shard: str, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The shard's `stats()`, or None when it does not answer (within `timeout_s`)."""
        ...

    async def stop_shard(self, shard: str, *, graceful: bool) -> dict[str, Any] | None:
        """Stop the node (its strategy's `on_stop` runs when `graceful`), then end the actor.

        Returns the shard's last stats (None if it was gone).
        """
        ...

    async def shard_logs(self, shard: str, lines: int) -> list[str]: ...

    async def book_orders(self, book: str) -> list[OrderUpdate]: ...

    async def cancel_order(self, client_order_id: str) -> bool: ...

    async def book_risk(self, book: str) -> dict[str, Any] | None: ...

    async def subscribe_feed(self, owner: str, keys: list[str], unstreamed: list[str]) -> None:
        """Have the feed stream `keys` for `owner`; `unstreamed` are those no other owner has yet."""
        ...

    async def unsubscribe_feed(self, owner: str) -> None: ...

    async def watch(self, names: list[str]) -> None: ...

    async def forget(self, names: list[str]) -> None: ...


def shard_specs(
    spec: DeploymentConfig,
    instruments: tuple[ShardInstrument, ...],
    generation: int,
    count: int,
    indices: Iterable[int],
) -> list[ShardSpec]:
    from actors.shard.shard import ShardSpec

    return [
        ShardSpec(
            deployment=spec.name,
            strategy=spec.strategy,
            config=dict(spec.config),
            instruments=instruments,
            index=k,
            count=count,
            generation=generation,
        )
        for k in indices
    ]


async def start_shards(
    control: ClusterControl, specs: list[ShardSpec], runtime_env: RuntimeEnv | None, *, attach: bool
) -> None:
    """Start shards side by side; if any fails, stop the ones that came up and raise its reason."""
    results = await asyncio.gather(
        *(control.start_shard(s, runtime_env, attach=attach) for s in specs), return_exceptions=True
    )
    failures = [(s, r) for s, r in zip(specs, results, strict=True) if isinstance(r, BaseException)]
    if not failures:
        return
    await asyncio.gather(*(control.stop_shard(s.name, graceful=False) for s in specs), return_exceptions=True)
    spec, first = failures[0]
    reason = str(first) if isinstance(first, ShardlineError) else f"{type(first).__name__}: {first}"
    raise ShardStartError(f"{spec.name} did not start: {reason}")


async def launch_spares(control: ClusterControl, specs: list[ShardSpec]) -> None:
    """Launch each spec in its spare; if any fails, stop them all and raise its reason."""
    results = await asyncio.gather(*(control.launch_spare(s) for s in specs), return_exceptions=True)
    failures = [(s, r) for s, r in zip(specs, results, strict=True) if isinstance(r, BaseException)]
    if not failures:
        return
    await asyncio.gather(*(control.stop_shard(s.name, graceful=False) for s in specs), return_exceptions=True)
    spec, first = failures[0]
    reason = str(first) if isinstance(first, ShardlineError) else f"{type(first).__name__}: {first}"
    raise ShardStartError(f"{spec.name} did not start: {reason}")


def recovery_action(
    record: DeploymentRecord, routed: int, current_ok: bool, routed_ok: bool, following_ok: bool
) -> str:
    """What to do with a deployment whose swap or rescale a restart cut short.

    Parameters
    ----------
    record : DeploymentRecord
        As journaled before the operation (generation and shard count of the old version).
    routed : int
        The shards the router's route has now (0: no route).
    current_ok, routed_ok, following_ok : bool
        Whether every shard runs: of the record's generation and count; of its generation at the
        routed count; of the next generation at the routed count.

    Returns
    -------
    str
        "undo" (re-attach the record's shards), "finish-swap", "finish-rescale" or "fail".
    """
    if not routed:
        return "fail"
    if routed == record.shards:
        if current_ok:
            return "undo"  # the old shards are whole (a swap may have attached the new ones: prefer these)
        if record.pending_spec is not None and following_ok:
            return "finish-swap"  # the old version was already being retired
        return "fail"
    if record.pending_shards == routed and routed_ok:
        return "finish-rescale"  # the ring was resized; every shard it has runs
    return "fail"


# ----------------------------------------------------------------------------------- the manager


class DeploymentManager:
    """Start, inspect, rescale, hot-swap and stop strategy deployments on a running cluster.

    Parameters
    ----------
    config : ShardlineConfig
        The cluster's configuration (mode, configured deployments).
    control : ClusterControl
        The running cluster.
    catalog : InstrumentCatalog
        Resolves universes ("EXCH:token" keys and catalog queries).
    registry : DeploymentRegistry
        The journaled records.
    clock : callable
        Wall-clock nanoseconds, for records and history.
    """

    def __init__(
        self,
        config: ShardlineConfig,
        control: ClusterControl,
        catalog: InstrumentCatalog,
        registry: DeploymentRegistry,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._config = config
        self._control = control
        self._catalog = catalog
        self._registry = registry
        self._clock = clock
        self._busy: dict[str, str] = {}
        log.info(
            "deployments: mode=%s configured=%s journaled=%s",
            config.mode.value,
            [d.name for d in config.deployments],
            [r.name for r in registry],
        )

    @property
    def registry(self) -> DeploymentRegistry:
        return self._registry

    @property
    def control(self) -> ClusterControl:
        return self._control

    # -- one operation at a time per deployment --------------------------------------------

    @contextmanager
    def _operation(self, name: str, what: str) -> Iterator[None]:
        current = self._busy.get(name)
        if current is not None:
            raise DeploymentBusy(f"deployment {name!r} is busy {current}; try again when it is done")
        self._busy[name] = what
        try:
            yield
        finally:
            del self._busy[name]

    def _save(self, record: DeploymentRecord, note: str | None = None) -> None:
        now = self._clock()
        if note:
            record.note(now, note)
        record.updated_ns = now
        self._registry.put(record)

    # -- adopting what `shardline up` started -----------------------------------------------

    async def adopt_configured(self) -> list[str]:
        """Record the configured deployments the router routes but the journal does not know."""
        adopted = []
        for spec in self._config.deployments:
            if not spec.enabled or self._registry.find(spec.name) is not None:
                continue
            route = await self._control.route_stats(spec.name)
            if route is None:
                continue
            keys = [i.key for i in resolve_universe(spec, self._catalog)]  # as `shardline up` resolved it
            now = self._clock()
            record = DeploymentRecord(
                name=spec.name,
                spec=spec_json(spec),
                instruments=keys,
                shards=len(route.get("shards", ())) or spec.shards,
                state=DeploymentState.RUNNING.value,
                source="config",
                started_ns=now,
            )
            self._save(record, "adopted from the cluster config")
            adopted.append(spec.name)
        return adopted

    # -- start ------------------------------------------------------------------------------

    async def start(
        self, spec: DeploymentConfig, runtime_env: RuntimeEnv | None = None, source: str = "submit"
    ) -> dict[str, Any]:
        """Validate, then start `spec`: route, shards, feed subscriptions. Returns its summary.

        Raises
        ------
        DeploymentError
            The spec asks for another mode, its strategy does not load, or its universe is empty.
        DeploymentBusy
            A deployment of that name runs (stop it first) or is in an operation.
        ShardStartError
            A shard failed to start; nothing of the deployment is left running.
        """
        await self.adopt_configured()
        with self._operation(spec.name, "starting"):
            previous = self._registry.find(spec.name)
            if previous is not None and previous.state != DeploymentState.STOPPED:
                raise DeploymentBusy(
                    f"deployment {spec.name!r} is {previous.state}; stop it before starting it again"
                )
            if spec.mode is not None and spec.mode != self._control.mode:
                raise DeploymentError(
                    f"deployment {spec.name!r} is meant for mode {spec.mode.value}, "
                    f"but the cluster runs in mode {self._control.mode.value}"
                )
            await self._control.check_strategy(spec.strategy, spec.config, runtime_env)
            chosen = resolve_universe(spec, self._catalog, await self._prices())
            if await self._control.route_stats(spec.name) is not None:
                raise DeploymentBusy(f"the router already routes {spec.name!r}; stop that deployment first")
            from actors.shard.universe import ShardInstrument

            instruments = tuple(ShardInstrument.from_catalog(i) for i in chosen)
            # A restarted deployment gets a new generation: fresh actor names and client order ids.
            generation = 0 if previous is None else previous.generation + 1
            now = self._clock()
            record = DeploymentRecord(
                name=spec.name,
                spec=spec_json(spec),
                instruments=[i.key for i in chosen],
                shards=spec.shards,
                generation=generation,
                runtime_env=runtime_env,
                state=DeploymentState.STARTING.value,
                operation="starting",
                source=source,
                history=list(previous.history) if previous else [],
                started_ns=now,
            )
            self._save(record, f"starting {spec.strategy}: {len(chosen)} instruments, {spec.shards} shard(s)")
            try:
                await self._control.add_route(
                    spec.name, {i.iid: i.key for i in chosen}, spec.shards, spec.flow.value
                )
                try:
                    specs = shard_specs(spec, instruments, generation, spec.shards, range(spec.shards))
                    await start_shards(self._control, specs, runtime_env, attach=True)
                except BaseException:
                    await self._control.remove_route(spec.name)
                    raise
            except BaseException as err:
                record.state = DeploymentState.FAILED.value
                record.operation = ""
                record.error = str(err)
                self._save(record, f"start failed: {err}")
                raise
            await self._control.subscribe_feed(spec.name, record.instruments, self._unstreamed(record))
            await self._control.watch(record.shard_names())
            record.state = DeploymentState.RUNNING.value
            record.operation = ""
            record.error = ""
            self._save(record, "running")
            await self._prepare_spares(record)
        return await self.show(spec.name)

    async def start_configured(self, name: str) -> dict[str, Any]:
        """Start the deployment `name` of the cluster's config (after a stop, or one not enabled)."""
        spec = next((d for d in self._config.deployments if d.name == name), None)
        if spec is None:
            record = self._registry.find(name)
            if record is None:
                configured = ", ".join(d.name for d in self._config.deployments) or "none"
                raise UnknownDeployment(f"no deployment {name!r} in the config (configured: {configured})")
            return await self.start(record.config, record.runtime_env, record.source)
        return await self.start(spec, None, "config")

    # -- inspect ------------------------------------------------------------------------------

    async def summaries(self) -> list[dict[str, Any]]:
        """One summary per deployment (shards, ticks, orders, P&L), stopped ones included."""
        await self.adopt_configured()
        return list(await asyncio.gather(*(self._summary(r) for r in self._registry)))

    async def show(self, name: str) -> dict[str, Any]:
        await self.adopt_configured()
        return await self._summary(self._registry.get(name))

    async def _summary(self, record: DeploymentRecord) -> dict[str, Any]:
        if record.state in (DeploymentState.STOPPED, DeploymentState.FAILED):
            return summarize(record, {})  # no shards run (a failed start stopped those that came up)
        names = record.shard_names()
        spares = record.shard_names(generation=record.generation + 1, shards=record.spares)
        stats, route, orders, risk, spare_stats = await asyncio.gather(
            asyncio.gather(*(self._control.shard_stats(n) for n in names)),
            self._control.route_stats(record.name),
            self._control.book_orders(record.name),
            self._control.book_risk(record.name),
            # a spare still importing does not answer yet: ask briefly
            asyncio.gather(*(self._control.shard_stats(n, timeout_s=0.5) for n in spares)),
        )
        doc = summarize(record, dict(zip(names, stats, strict=True)), route, orders, risk)
        doc["spares"] = {
            "count": len(spares),
            "ready": sum(1 for s in spare_stats if s is not None and s.get("state") == "spare"),
        }
        if record.name in self._busy:
            doc["operation"] = self._busy[record.name]
        return doc

    async def logs(self, name: str, lines: int = 200) -> list[str]:
        """The deployment's history, then each shard's recent errors and log lines."""
        if lines <= 0:
            raise DeploymentError(f"lines must be positive, got {lines}")
        record = self._registry.get(name)
        out = [f"[deployment] {h}" for h in record.history]
        if record.state == DeploymentState.STOPPED:
            return out[-lines:]
        for shard in record.shard_names():
            stats = await self._control.shard_stats(shard)
            for error in (stats or {}).get("errors", []):
                out.append(f"[{shard}] error: {error}")
            out += [f"[{shard}] {line}" for line in await self._control.shard_logs(shard, lines)]
        return out[-lines:]

    # -- change -------------------------------------------------------------------------------

    async def scale(self, name: str, shards: int) -> dict[str, Any]:
        """Rescale to `shards` shards; see `cluster.swap.Rescale`. Returns its report."""
        from cluster.swap import Rescale

        if not 0 < shards <= 64:
            raise DeploymentError(f"shards must be between 1 and 64, got {shards}")
        with self._operation(name, f"scaling to {shards} shards"):
            record = self._running(name, "scaled")
            if shards == record.shards:
                return {"name": name, "shards": shards, "changed": False}
            record.operation = f"scaling {record.shards} -> {shards} shards"
            record.pending_shards = shards
            self._save(record)
            try:
                report = await Rescale(self._control, record, self._instruments(record), shards).run()
            except BaseException as err:
                record.operation, record.pending_shards = "", None
                self._save(record, f"rescale to {shards} shards failed, nothing changed: {err}")
                raise
            record.operation, record.pending_shards = "", None
            self._set_shards(record, shards)
            self._save(record, f"scaled {report['from_shards']} -> {shards} shards")
            await self._prepare_spares(record)
            return report

    async def swap(
        self,
        name: str,
        *,
        spec: DeploymentConfig | None = None,
        strategy: str | None = None,
        config: Mapping[str, Any] | None = None,
        runtime_env: RuntimeEnv | None = None,
        cancel_old_orders: bool = True,
    ) -> dict[str, Any]:
        """Hot-swap `name` to a new strategy version; see `cluster.swap.HotSwap`. Returns its report.

        The new version comes as a whole spec (same name, universe, flow and shard count), or as
        a strategy path and config over the current spec. `runtime_env` is where its code is
        (default: where the current version's is).

        Raises
        ------
        SwapFailed
            The new version did not start or load the state; the old one runs on, nothing lost.
        """
        from cluster.swap import HotSwap

        with self._operation(name, "swapping"):
            record = self._running(name, "swapped")
            new_spec = self._swap_target(record, spec, strategy, config)
            env = runtime_env if runtime_env is not None else record.runtime_env
            await self._control.check_strategy(new_spec.strategy, new_spec.config, env)
            old_strategy = record.strategy
            # Spares hold the next generation's names: used when they run the same code, else freed.
            use_spares = record.spares == record.shards and record.spares_env == env
            if record.spares and not use_spares:
                await self._drop_spares(record)
            record.operation = f"swapping to generation {record.generation + 1}"
            record.pending_spec, record.pending_env = spec_json(new_spec), env
            self._save(record)
            try:
                report = await HotSwap(
                    self._control,
                    record,
                    new_spec,
                    env,
                    self._instruments(record),
                    cancel_old_orders=cancel_old_orders,
                    use_spares=use_spares,
                ).run()
            except BaseException as err:
                record.operation = ""
                record.pending_spec = record.pending_env = None
                record.spares = 0 if use_spares else record.spares  # a failed launch stopped them
                self._save(record, f"swap to {new_spec.strategy} failed, old version kept: {err}")
                await self._prepare_spares(record)
                raise
            record.spares = 0
            await self._control.forget(record.shard_names())
            record.generation = report["generation"]
            record.spec = spec_json(new_spec)
            record.runtime_env = env
            record.operation = ""
            record.pending_spec = record.pending_env = None
            self._save(record, f"swapped {old_strategy} -> {new_spec.strategy} (gen {record.generation})")
            await self._control.watch(record.shard_names())
            await self._prepare_spares(record)
            return report

    async def stop(self, name: str) -> dict[str, Any]:
        """Stop routing, let the shards finish what they hold, stop them, cancel the book's orders."""
        with self._operation(name, "stopping"):
            record = self._registry.get(name)
            if record.state == DeploymentState.STOPPED:
                return {"name": name, "state": record.state, "changed": False}
            record.operation = "stopping"
            self._save(record)
            await self._drop_spares(record)
            names = record.shard_names()
            route = await self._control.route_stats(name)
            if route is not None:
                await self._control.set_route_active(name, False)
                await self._drain_route(name)
                route = await self._control.remove_route(name)
            await self._control.unsubscribe_feed(name)
            final = await asyncio.gather(*(self._control.stop_shard(n, graceful=True) for n in names))
            cancelled = await self._cancel_working(name, lambda _: True)
            await self._control.forget(names)
            record.state = DeploymentState.STOPPED.value
            record.operation = ""
            self._save(record, f"stopped; {len(cancelled)} working order(s) cancelled")
            return {
                "name": name,
                "state": record.state,
                "changed": True,
                "orders_cancelled": cancelled,
                "ticks_handled": sum(int((s or {}).get("ticks_handled", 0)) for s in final),
                "router": route,
            }

    # -- after a restart ----------------------------------------------------------------------

    async def recover(self) -> list[str]:
        """Finish or undo what a previous incarnation of the manager left half done.

        A swap or rescale interrupted between the router's hold and its release would leave the
        route holding ticks (and, under `block`, the feed waiting): the route is re-attached to
        whichever complete set of shards runs (see `recovery_action`), leftovers are stopped.
        Returns the deployments it touched.
        """
        touched = []
        for record in list(self._registry):
            if not record.operation:
                continue
            touched.append(record.name)
            if record.state != DeploymentState.RUNNING:  # a start or stop cut short
                record.state = DeploymentState.FAILED.value
                record.operation, record.error = "", "interrupted while " + (record.operation or "changing")
                self._save(record, record.error)
                continue
            route = await self._control.route_stats(record.name)
            routed = len(route.get("shards", ())) if route is not None else 0
            current = record.shard_names()
            at_routed = record.shard_names(shards=routed)
            following = record.shard_names(generation=record.generation + 1, shards=routed)
            alive = await asyncio.gather(
                *(self._running_shard(n) for n in [*current, *at_routed, *following])
            )
            ok_current = all(alive[: len(current)])
            ok_routed = all(alive[len(current) : len(current) + routed])
            ok_following = all(alive[len(current) + routed :])
            action = recovery_action(record, routed, ok_current, ok_routed, ok_following)
            await self._recover(record, action, routed)
        return touched

    async def _running_shard(self, name: str) -> bool:
        stats = await self._control.shard_stats(name)
        return stats is not None and stats.get("state") == DeploymentState.RUNNING

    async def _recover(self, record: DeploymentRecord, action: str, routed: int) -> None:
        name, control = record.name, self._control
        if action == "undo":  # the old shards never stopped: they take the held ticks again
            unattached = [
                *record.shard_names(generation=record.generation + 1, shards=max(record.spares, routed)),
                *record.shard_names(shards=max(record.pending_shards or 0, record.shards))[record.shards :],
            ]
            await asyncio.gather(*(control.stop_shard(n, graceful=False) for n in unattached))
            for k, shard in enumerate(record.shard_names()):
                await control.attach_shard(name, k, shard)
        elif action == "finish-swap":  # the new version was attached: retire the old one
            for k, shard in enumerate(record.shard_names(generation=record.generation + 1)):
                await control.attach_shard(name, k, shard)
            await asyncio.gather(*(control.stop_shard(n, graceful=True) for n in record.shard_names()))
            record.generation += 1
            record.spec = record.pending_spec or record.spec
            record.runtime_env = record.pending_env if record.pending_spec else record.runtime_env
        elif action == "finish-rescale":  # the ring was resized: attach the shards it now has
            for k, shard in enumerate(record.shard_names(shards=routed)):
                await control.attach_shard(name, k, shard)
            extra = record.shard_names(shards=max(record.shards, routed))[routed:]
            await asyncio.gather(*(control.stop_shard(n, graceful=True) for n in extra))
            self._set_shards(record, routed)
        else:
            record.state = DeploymentState.FAILED.value
            record.error = f"interrupted while {record.operation}; its shards are not all running"
        note = f"recovered after a restart ({action}) from: {record.operation}"
        record.operation = ""
        record.pending_spec = record.pending_env = record.pending_shards = None
        record.spares, record.spares_env = 0, None
        self._save(record, note)
        await self._prepare_spares(record)

    @staticmethod
    def _set_shards(record: DeploymentRecord, shards: int) -> None:
        record.shards = shards
        record.spec = {**record.spec, "shards": shards}

    # -- warm spares --------------------------------------------------------------------------

    async def _prepare_spares(self, record: DeploymentRecord) -> None:
        """Have one spare per shard for the next generation when the spec asks for them."""
        wanted = record.shards if record.spec.get("warm_spares") and record.state == "running" else 0
        if record.spares and record.spares_env != record.runtime_env:
            await self._drop_spares(record)
        names = record.shard_names(generation=record.generation + 1, shards=max(wanted, record.spares))
        for name in names[wanted:]:
            await self._control.stop_shard(name, graceful=False)
        for name in names[record.spares : wanted]:
            await self._control.start_spare(name, record.runtime_env)
        target = (wanted, record.runtime_env if wanted else None)
        if (record.spares, record.spares_env) != target:
            record.spares, record.spares_env = target
            self._save(record)

    async def _drop_spares(self, record: DeploymentRecord) -> None:
        names = record.shard_names(generation=record.generation + 1, shards=record.spares)
        await asyncio.gather(*(self._control.stop_shard(n, graceful=False) for n in names))
        record.spares, record.spares_env = 0, None

    def spare_spec(self, name: str) -> ShardSpec | None:
        """What a restarted spare named `name` runs: its shard's spec once its generation is live."""
        parsed = parse_shard_actor_name(name)
        if parsed is None:
            return None
        deployment, generation, index = parsed
        record = self._registry.find(deployment)
        if (
            record is None
            or record.state != DeploymentState.RUNNING
            or record.generation != generation
            or index >= record.shards
        ):
            return None
        return shard_specs(record.config, self._instruments(record), generation, record.shards, [index])[0]

    # -- helpers ------------------------------------------------------------------------------

    async def _prices(self) -> dict[str, int]:
        """Last prices by "EXCH:token", to centre option universes on the live ATM strike."""
        prices = {}
        for iid, price in (await self._control.latest_prices()).items():
            entry = self._catalog.by_iid(iid) if 0 <= iid < len(self._catalog) else None
            if entry is not None and price > 0:
                prices[entry.key] = price
        return prices

    def _unstreamed(self, record: DeploymentRecord) -> list[str]:
        """The record's keys no configured or other running deployment has the feed stream already."""
        streamed: set[str] = set()
        for spec in self._config.deployments:
            if spec.enabled and spec.name != record.name:
                try:
                    streamed.update(i.key for i in resolve_universe(spec, self._catalog))
                except DeploymentError:
                    continue
        for other in self._registry:
            if other.name != record.name and other.state != DeploymentState.STOPPED:
                streamed.update(other.instruments)
        return [k for k in record.instruments if k not in streamed]

    def _running(self, name: str, verb: str) -> DeploymentRecord:
        record = self._registry.get(name)
        if record.state != DeploymentState.RUNNING:
            raise DeploymentBusy(f"deployment {name!r} is {record.state}; only a running one can be {verb}")
        return record

    def _instruments(self, record: DeploymentRecord) -> tuple[ShardInstrument, ...]:
        from actors.shard.universe import ShardInstrument

        found = []
        for key in record.instruments:
            entry = self._catalog.get(key)
            if entry is None:
                raise DeploymentError(f"deployment {record.name!r}: {key} is no longer in the catalog")
            found.append(ShardInstrument.from_catalog(entry))
        return tuple(found)

    def _swap_target(
        self,
        record: DeploymentRecord,
        spec: DeploymentConfig | None,
        strategy: str | None,
        config: Mapping[str, Any] | None,
    ) -> DeploymentConfig:
        current = record.config
        if spec is None:
            if strategy is None:
                raise DeploymentError("a swap needs the new version: a spec, or a strategy path")
            data = spec_json(current)
            data["strategy"] = strategy
            data["config"] = dict(config if config is not None else current.config)
            spec = parse_deployment_spec(data, f"swap of {record.name}")
        if spec.name != record.name:
            raise DeploymentError(f"the new version is named {spec.name!r}, not {record.name!r}")
        if spec.mode is not None and spec.mode != self._control.mode:
            raise DeploymentError(
                f"the new version is meant for mode {spec.mode.value}, "
                f"but the cluster runs in mode {self._control.mode.value}"
            )
        keys = [i.key for i in resolve_universe(spec, self._catalog)]
        if sorted(keys) != sorted(record.instruments):
            raise DeploymentError(
                f"the new version of {record.name!r} trades another universe ({len(keys)} instruments, "
                f"not the running {len(record.instruments)}); a swap keeps the universe: stop, then start"
            )
        if spec.flow.value != record.spec.get("flow", "block"):
            raise DeploymentError(f"a swap keeps the flow policy ({record.spec.get('flow')})")
        if spec.shards != record.shards:
            raise DeploymentError(
                f"the new version asks for {spec.shards} shards, the running one has {record.shards}; "
                "a swap keeps the shard count: scale before or after"
            )
        return spec

    async def _drain_route(self, route: str, timeout_s: float = 10.0) -> None:
        """Wait (bounded) until the route has nothing buffered or in flight."""
        deadline = time.monotonic() + timeout_s
        delay = 0.01
        while time.monotonic() < deadline:
            stats = await self._control.route_stats(route)
            if stats is None or not (stats.get("buffered", 0) or stats.get("in_flight", 0)):
                return
            await asyncio.sleep(delay)  # polling the router's counters until they reach zero
            delay = min(delay * 2, 0.2)
        log.warning("deployments: %s still held ticks after %.0f s; they count as dropped", route, timeout_s)

    async def _cancel_working(self, book: str, owned: Callable[[OrderUpdate], bool]) -> list[str]:
        orders = await self._control.book_orders(book)
        doomed = [o.client_order_id for o in orders if working(o) and owned(o)]
        results = await asyncio.gather(*(self._control.cancel_order(c) for c in doomed))
        return [c for c, ok in zip(doomed, results, strict=True) if ok]
