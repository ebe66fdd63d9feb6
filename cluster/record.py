"""`shardline record`: the live (or simulated) tick stream into a Nautilus data catalog.

The recorder is one more route on the router: a deployment of one "shard" whose actor,
`TickRecorderActor`, takes the tick batches the router delivers (`on_ticks`), so it sees every tick
of its instruments in the order the strategies' shards see them (`block` flow: nothing conflated,
nothing dropped; a recorder that falls behind back-pressures the feed like a slow shard would).

Two files come out of a recording, both under the catalog directory (`--out`, default
`data/catalog`):

- `raw/<name>.parquet`: the tick batches as they came, in the `actors.ticks` schema plus each
  row's `exchange` and `token`, which is what the simulator's replay mode plays
  (`shardline sim --replay ...`). Written while recording, one row group per flush.
- the Nautilus catalog itself: the instruments and, converted from the raw file when the
  recording stops by the shards' own `TickConverter`, a `TradeTick` for each trade and a
  `QuoteTick` for each SNAP_QUOTE book, with `ts_event` the exchange time. `ts_init` is the
  receive time made strictly increasing (1 ns steps where a batch shares one receive time), so
  the catalog, sorted by `ts_init` as Nautilus sorts it, keeps the feed's order exactly.

`TickRecording` and `import_ticks` are plain classes and functions (tested without Ray); the
actor and `start_recording` / `stop_recording` / `record` put them on the running cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actors.shard.conversion import TickConverter
from actors.shard.universe import ShardInstrument
from actors.ticks import TICK_DTYPE, TICK_FIELDS, TICK_SCHEMA, batch_to_ticks
from cluster.errors import ShardlineError

log = logging.getLogger(__name__)

RAW_DIR = "raw"
RAW_SCHEMA = TICK_SCHEMA.append(pa.field("exchange", pa.string())).append(pa.field("token", pa.string()))
FLUSH_ROWS = 65_536  # rows per raw row group
IMPORT_ROWS = 200_000  # rows converted and written to the catalog at a time
RECORDER_PREFIX = "recorder-"
READY_TIMEOUT_S = 180.0  # a new worker process imports Nautilus first; a busy machine takes a while
ROUTE_PREFIX = "record-"


class RecordingError(ShardlineError):
    """A recording that cannot start, stop or be converted; the message says why."""


def recording_name(now: datetime) -> str:
    return now.strftime("%Y%m%d-%H%M%S")


# ----------------------------------------------------------------------------------- the raw file


@dataclass
class RecordingSummary:
    name: str
    raw_path: str
    catalog_path: str
    instruments: int
    rows: int = 0
    unknown_rows: int = 0  # iids outside the recording's instruments (not written)
    first_ts_ns: int = 0
    last_ts_ns: int = 0
    quote_ticks: int = 0
    trade_ticks: int = 0
    invalid_rows: int = 0  # off-grid prices or bad timestamps (the shards refuse them too)
    import_seconds: float = 0.0
    silent: list[str] = field(default_factory=list)  # instruments no tick came for
    route: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TickRecording:
    """Appends tick batches to a raw Parquet file; `close` finishes it and fills the catalog.

    Parameters
    ----------
    instruments : Sequence[ShardInstrument]
        What may be recorded (iid → key, Nautilus instrument); rows of other iids are counted
        and left out.
    catalog_path : Path
        The Nautilus catalog directory; the raw file goes to `<catalog_path>/raw/<name>.parquet`.
    name : str
        The recording's name (its raw file's stem).
    flush_rows : int
        Rows held in memory before they are written as a row group.
    """

    def __init__(
        self,
        instruments: Sequence[ShardInstrument],
        catalog_path: Path,
        name: str,
        flush_rows: int = FLUSH_ROWS,
    ) -> None:
        if not instruments:
            raise RecordingError("a recording needs at least one instrument")
        if flush_rows <= 0:
            raise RecordingError(f"flush_rows must be positive, not {flush_rows}")
        self.instruments = list(instruments)
        self.catalog_path = catalog_path
        self.raw_path = catalog_path / RAW_DIR / f"{name}.parquet"
        if self.raw_path.exists():
            raise RecordingError(f"{self.raw_path} exists already; choose another recording name")
        self.raw_path.parent.mkdir(parents=True, exist_ok=True)
        size = max(i.iid for i in self.instruments) + 1
        self._known = np.zeros(size, dtype=bool)
        exchanges = np.full(size, "", dtype=object)
        tokens = np.full(size, "", dtype=object)
        for inst in self.instruments:
            exchange, _, token = inst.key.partition(":")
            self._known[inst.iid] = True
            exchanges[inst.iid] = exchange
            tokens[inst.iid] = token
        self._exchanges = exchanges
        self._tokens = tokens
        self._flush_rows = flush_rows
        self._rows_per_iid = np.zeros(size, dtype=np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.raw_path, RAW_SCHEMA)
        self.summary = RecordingSummary(
            name=name,
            raw_path=str(self.raw_path),
            catalog_path=str(catalog_path),
            instruments=len(instruments),
        )

    def write(self, ticks: np.ndarray | pa.RecordBatch) -> int:
        """Record a batch (feed order); returns the rows kept."""
        if self._writer is None:
            raise RecordingError(f"recording {self.summary.name} is closed")
        if isinstance(ticks, pa.RecordBatch):
            ticks = batch_to_ticks(ticks)
        if ticks.dtype != TICK_DTYPE:
            raise RecordingError(f"tick batch has dtype {ticks.dtype}, expected actors.ticks.TICK_DTYPE")
        if not len(ticks):
            return 0
        iid = ticks["iid"].astype(np.int64)
        known = (iid >= 0) & (iid < len(self._known))
        known[known] = self._known[iid[known]]
        kept = ticks if bool(known.all()) else ticks[known]
        self.summary.unknown_rows += len(ticks) - len(kept)
        if not len(kept):
            return 0
        if not self.summary.rows:
            self.summary.first_ts_ns = int(kept["ts_recv_ns"][0])
        self.summary.rows += len(kept)
        self._rows_per_iid += np.bincount(kept["iid"], minlength=len(self._rows_per_iid))
        self.summary.last_ts_ns = int(kept["ts_recv_ns"][-1])
        self._pending.append(kept.copy())
        self._pending_rows += len(kept)
        if self._pending_rows >= self._flush_rows:
            self.flush()
        return len(kept)

    def flush(self) -> None:
        if not self._pending or self._writer is None:
            return
        rows = np.concatenate(self._pending)
        self._pending, self._pending_rows = [], 0
        columns = [pa.array(rows[name]) for name, _ in TICK_FIELDS]
        iids = rows["iid"]
        columns.append(pa.array(self._exchanges[iids].tolist(), type=pa.string()))
        columns.append(pa.array(self._tokens[iids].tolist(), type=pa.string()))
        self._writer.write_table(pa.Table.from_arrays(columns, schema=RAW_SCHEMA))

    def close(self, import_to_catalog: bool = True) -> RecordingSummary:
        """Finish the raw file and (by default) convert it into the Nautilus catalog."""
        if self._writer is not None:
            self.flush()
            self._writer.close()
            self._writer = None
            self.summary.silent = [i.key for i in self.instruments if not self._rows_per_iid[i.iid]]
            if import_to_catalog and self.summary.rows:
                started = time.perf_counter()
                counts = import_ticks(self.raw_path, self.catalog_path, self.instruments)
                self.summary.quote_ticks = counts["quote_ticks"]
                self.summary.trade_ticks = counts["trade_ticks"]
                self.summary.invalid_rows = counts["invalid_rows"]
                self.summary.import_seconds = round(time.perf_counter() - started, 3)
            elif import_to_catalog:
                write_instruments(self.catalog_path, self.instruments)
        return self.summary


# ----------------------------------------------------------------------------------- the catalog


def write_instruments(catalog_path: Path, instruments: Sequence[ShardInstrument]) -> None:
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    catalog_path.mkdir(parents=True, exist_ok=True)
    ParquetDataCatalog(str(catalog_path)).write_data([i.instrument for i in instruments])


def read_raw(path: Path, batch_rows: int = IMPORT_ROWS) -> Iterator[np.ndarray]:
    """The rows of a raw recording as `TICK_DTYPE` arrays, in file order."""
    try:
        source = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise RecordingError(f"{path}: cannot read it as Parquet: {err}") from None
    missing = [name for name, _ in TICK_FIELDS if name not in source.schema_arrow.names]
    if missing:
        raise RecordingError(f"{path}: not a tick recording; missing columns {', '.join(missing)}")
    names = [name for name, _ in TICK_FIELDS]
    for batch in source.iter_batches(batch_size=batch_rows, columns=names):
        out = np.empty(batch.num_rows, dtype=TICK_DTYPE)
        for name in names:
            out[name] = batch.column(name).to_numpy(zero_copy_only=False)
        yield out


def strictly_increasing(ts: np.ndarray, first_index: int, carry: int) -> tuple[np.ndarray, int]:
    """`ts` raised where needed so it strictly increases (t'ᵢ = max(tᵢ, t'ᵢ₋₁ + 1)).

    `first_index` is the global row number of `ts[0]` and `carry` the running max of (t - row)
    so far, so chunks of one file continue each other. Returns (new times, new carry).
    """
    rows = first_index + np.arange(len(ts), dtype=np.int64)
    running = np.maximum.accumulate(np.maximum(ts.astype(np.int64) - rows, carry))
    return rows + running, int(running[-1]) if len(running) else carry


def receive_range(raw_path: Path) -> tuple[int, int] | None:
    """The first and last `ts_init` the catalog will hold for a raw recording (None when empty)."""
    try:
        column = pq.read_table(raw_path, columns=["ts_recv_ns"]).column("ts_recv_ns").to_numpy()
    except (OSError, pa.ArrowInvalid, KeyError) as err:
        raise RecordingError(f"{raw_path}: cannot read it as a tick recording: {err}") from None
    if not len(column):
        return None
    stamps, _ = strictly_increasing(column, 0, np.iinfo(np.int64).min // 2)
    return int(stamps[0]), int(stamps[-1])


def import_ticks(
    raw_path: Path,
    catalog_path: Path,
    instruments: Sequence[ShardInstrument],
    batch_rows: int = IMPORT_ROWS,
) -> dict[str, int]:
    """Convert a raw recording into the catalog: instruments, QuoteTicks and TradeTicks.

    Refused before anything is written when the catalog already holds ticks of these
    instruments within the recording's time range (Nautilus needs one file per time span).

    Returns
    -------
    dict[str, int]
        rows, quote_ticks, trade_ticks, invalid_rows, unknown_rows.
    """
    from nautilus_trader.model.data import QuoteTick, TradeTick
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    span = receive_range(raw_path)
    write_instruments(catalog_path, instruments)
    catalog = ParquetDataCatalog(str(catalog_path))
    if span is not None:
        for inst in instruments:
            for cls in (TradeTick, QuoteTick):
                if any(
                    a <= span[1] and b >= span[0]
                    for a, b in catalog.get_intervals(cls, inst.instrument_id.value)
                ):
                    raise RecordingError(
                        f"{catalog_path} already holds {inst.instrument_id} ticks overlapping "
                        f"{raw_path.name}'s time range; record into another --out, or remove that data"
                    )
    converter = TickConverter(instruments)
    ids = [i.instrument_id for i in instruments]
    converter.subscribe_trades(ids)
    converter.subscribe_quotes(ids)
    counts = {"rows": 0, "quote_ticks": 0, "trade_ticks": 0, "invalid_rows": 0, "unknown_rows": 0}
    carry = np.iinfo(np.int64).min // 2
    for chunk in read_raw(raw_path, batch_rows):
        chunk["ts_recv_ns"], carry = strictly_increasing(chunk["ts_recv_ns"], counts["rows"], carry)
        counts["rows"] += len(chunk)
        converted = converter.convert(chunk)
        counts["quote_ticks"] += converted.quotes
        counts["trade_ticks"] += converted.trades
        counts["invalid_rows"] += converted.invalid_rows
        counts["unknown_rows"] += converted.unknown_rows
        if converted.data:
            catalog.write_data(converted.data)
    return counts


# ----------------------------------------------------------------------------------- on the cluster


class TickRecorderActor:
    """Ray actor body around `TickRecording`: the router delivers to `on_ticks` as to a shard."""

    def __init__(self, instruments: Sequence[ShardInstrument], catalog_path: str, name: str) -> None:
        self._recording = TickRecording(instruments, Path(catalog_path), name)
        self._batches = 0

    def on_ticks(self, ticks: np.ndarray) -> int:
        self._batches += 1
        return self._recording.write(ticks)

    def stats(self) -> dict[str, Any]:
        summary = self._recording.summary
        return {"batches": self._batches, "rows": summary.rows, "unknown_rows": summary.unknown_rows}

    def finish(self) -> dict[str, Any]:
        return self._recording.close().as_dict()


@dataclass
class RecordingHandle:
    """A recording running on the cluster (what `stop_recording` needs)."""

    name: str
    route: str
    actor: Any
    keys: list[str]
    catalog_path: Path
    feed_owner: str | None = None


def resolve_keys(catalog: Any, specs: Sequence[str], option: str = "--instruments") -> list[str]:
    """Instrument specs ("NSE:SBIN-EQ", "NSE:3045") as catalog keys, unknown ones named."""
    keys = []
    for spec in specs:
        try:
            keys.append(catalog.resolve(spec).key)
        except ShardlineError as err:
            raise RecordingError(f"{option} {spec}: {err}") from None
    return list(dict.fromkeys(keys))


def start_recording(
    config: Any,
    catalog_path: Path,
    instruments: Sequence[str] | None = None,
    name: str | None = None,
    *,
    subscribe: bool = True,
) -> RecordingHandle:
    """Attach a recorder to the running cluster's router (the caller is connected to Ray).

    Parameters
    ----------
    config : ShardlineConfig
        The cluster's config (its catalog and, by default, the instruments its deployments trade).
    catalog_path : Path
        Where the catalog and the raw file go (absolute: the recorder runs on this node).
    instruments : Sequence[str], optional
        Instruments to record; default: every instrument of the configured deployments.
    subscribe : bool
        Ask the feed to stream instruments no deployment streams yet.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from catalog.sources import load_default_catalog
    from cluster.launcher import plan_only
    from cluster.topology import NAMESPACE, ROUTER

    catalog = load_default_catalog(config)
    keys = resolve_keys(catalog, instruments) if instruments else list(plan_only(config).subscriptions)
    if not keys:
        raise RecordingError(
            "nothing to record: no deployment trades any instrument; name some with --instruments"
        )
    shard_instruments = [ShardInstrument.from_catalog(catalog.get(k)) for k in keys]
    name = name or recording_name(datetime.now())
    route = f"{ROUTE_PREFIX}{name}"
    try:
        router = ray.get_actor(ROUTER, namespace=NAMESPACE)
    except ValueError:
        raise RecordingError("no router is running; start the system with `shardline up`") from None
    remote: Any = ray.remote  # handles are dynamic; keep mypy from typing them as the class
    actor = (
        remote(TickRecorderActor)
        .options(
            name=f"{RECORDER_PREFIX}{name}",
            namespace=NAMESPACE,
            num_cpus=0,
            max_concurrency=1,  # batches are written in the order they arrive
            # On this node, so the files land where the caller looks for them.
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False
            ),
        )
        .remote(shard_instruments, str(catalog_path), name)
    )
    try:
        ray.get(actor.stats.remote(), timeout=READY_TIMEOUT_S)
        universe = {i.iid: i.key for i in shard_instruments}
        ray.get(router.add_deployment.remote(route, universe, 1, "block", handles=[actor]), timeout=30)
    except Exception:
        ray.kill(actor, no_restart=True)
        raise
    handle = RecordingHandle(name, route, actor, keys, catalog_path)
    if subscribe:
        handle.feed_owner = _subscribe(config, route, keys)
    log.info("recording %s: %d instruments into %s", name, len(keys), catalog_path)
    return handle


def _feeds() -> list[Any]:
    import ray
    from ray.util import list_named_actors

    from cluster.topology import NAMESPACE

    names = sorted(
        str(e["name"])
        for e in list_named_actors(all_namespaces=True)
        if e.get("namespace") == NAMESPACE and str(e.get("name", "")).startswith("feed-")
    )
    return [ray.get_actor(n, namespace=NAMESPACE) for n in names]


def _subscribe(config: Any, owner: str, keys: list[str]) -> str | None:
    """Have the feed stream the keys; with several feeds only those no configured deployment
    streams (one connection per instrument, or its ticks would arrive twice)."""
    import ray

    from cluster.launcher import plan_only

    feeds = _feeds()
    if not feeds:
        log.warning("recording: no feed actor runs; only ticks someone else pushes are recorded")
        return None
    wanted = keys
    if len(feeds) > 1:
        streamed = set(plan_only(config).subscriptions)
        wanted = [k for k in keys if k not in streamed]
    if wanted:
        ray.get(feeds[0].subscribe.remote(owner, wanted), timeout=30)
    return owner


def _route_stats(router: Any, route: str) -> dict[str, Any] | None:
    import ray

    stats = ray.get(router.stats.remote(), timeout=30)
    found: dict[str, Any] | None = stats["deployments"].get(route)
    return found


def stop_recording(handle: RecordingHandle, drain_timeout_s: float = 60.0) -> RecordingSummary:
    """Stop routing to the recorder, let it take what is buffered, then finish the files."""
    import ray

    from cluster.topology import NAMESPACE, ROUTER

    router = ray.get_actor(ROUTER, namespace=NAMESPACE)
    ray.get(router.set_active.remote(handle.route, False), timeout=30)
    deadline = time.monotonic() + drain_timeout_s
    delay = 0.02
    while True:
        stats = _route_stats(router, handle.route)
        if stats is None or (stats["buffered"] == 0 and stats["in_flight"] == 0):
            break
        if time.monotonic() > deadline:
            raise RecordingError(
                f"recording {handle.name}: {stats['buffered'] + stats['in_flight']} ticks still on their way "
                f"after {drain_timeout_s:g} s"
            )
        time.sleep(delay)  # polling the router with a deadline, backing off
        delay = min(delay * 2, 0.5)
    final = ray.get(router.remove_deployment.remote(handle.route), timeout=30)
    if handle.feed_owner is not None:
        for feed in _feeds():
            ray.get(feed.unsubscribe.remote(handle.feed_owner), timeout=30)
    try:
        summary = RecordingSummary(**ray.get(handle.actor.finish.remote(), timeout=None))
    finally:
        ray.kill(handle.actor, no_restart=True)
    summary.route = {
        k: int(getattr(final, k)) for k in ("ticks_in", "ticks_out", "conflated", "dropped", "buffered")
    }
    return summary


def recorder_rows(handle: RecordingHandle) -> int:
    import ray

    return int(ray.get(handle.actor.stats.remote(), timeout=30)["rows"])


def record(
    config: Any,
    seconds: float,
    catalog_path: Path,
    instruments: Sequence[str] | None = None,
    address: str | None = None,
    on_progress: Callable[[float, int], None] | None = None,
) -> RecordingSummary:
    """Record the running cluster's ticks for `seconds` (Ctrl-C stops early, keeping what came)."""
    from cluster import jobs

    if seconds <= 0:
        raise RecordingError(f"--seconds must be positive, not {seconds}")
    jobs.connect(address)  # the running cluster, joined as `shardline deployments` joins it
    handle = start_recording(config, catalog_path.resolve(), instruments)
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            if on_progress is not None:
                on_progress(elapsed, recorder_rows(handle))
            time.sleep(min(0.5, seconds - elapsed))  # the recording's own duration
    except KeyboardInterrupt:
        log.info("recording %s stopped early after %.1f s", handle.name, time.monotonic() - started)
    return stop_recording(handle)
