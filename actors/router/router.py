"""The tick router: split each tick batch per strategy shard, buffer it, count every tick.

`TickRouter` is plain (no Ray): the router actor calls `push` with each batch from a feed and
`take` / `complete` / `fail` from one delivery loop per shard. All per-tick work is numpy over the
whole batch; the only Python loops run over deployments and shards.

Counting: for every shard, ``ticks_in + moved_in == ticks_out + in_flight + conflated + dropped +
buffered + moved_out`` at all times (moves happen when the ring is re-seeded), so for every
deployment ``ticks_in == ticks_out + in_flight + conflated + dropped + buffered``.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec
import numpy as np

from actors.router.ring import ConsistentHashRing, hash_keys
from actors.ticks import TICK_DTYPE, FeedMode
from cluster.config import FlowPolicy, RouterConfig

NOT_IN_UNIVERSE = -1
# Largest instrument id the router accepts; the catalog's ids are dense (a few hundred thousand).
DEFAULT_MAX_IID = 1 << 22

QUOTE_DTYPE = np.dtype(
    [
        ("iid", "<i4"),
        ("ltp", "<i8"),
        ("bid", "<i8"),
        ("ask", "<i8"),
        ("volume", "<i8"),
        ("ts_exchange_ns", "<i8"),
    ]
)


class RouterError(ValueError):
    """A router call with bad arguments: unknown deployment or shard, malformed batch or universe."""


def last_index_per_iid(iids: np.ndarray) -> np.ndarray:
    """Indices of the last occurrence of each distinct iid, in ascending order."""
    _, first_in_reversed = np.unique(iids[::-1], return_index=True)
    return np.sort(len(iids) - 1 - first_in_reversed)


class TickBuffer:
    """A bounded FIFO of ticks for one shard, held as a queue of numpy chunks (no per-tick objects)."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise RouterError(f"buffer capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._chunks: deque[np.ndarray] = deque()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def free(self) -> int:
        return max(self.capacity - self._count, 0)

    def append(self, ticks: np.ndarray) -> None:
        if len(ticks):
            self._chunks.append(ticks)
            self._count += len(ticks)

    def take(self, limit: int) -> np.ndarray:
        """Remove and return up to `limit` of the oldest ticks, oldest first."""
        parts: list[np.ndarray] = []
        wanted = min(limit, self._count)
        while wanted:
            head = self._chunks[0]
            if len(head) <= wanted:
                parts.append(self._chunks.popleft())
                wanted -= len(head)
            else:
                parts.append(head[:wanted])
                self._chunks[0] = head[wanted:]
                wanted = 0
        if not parts:
            return np.empty(0, dtype=TICK_DTYPE)
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._count -= len(out)
        return out

    def take_all(self) -> np.ndarray:
        return self.take(self._count)

    def conflate(self) -> int:
        """Keep only the latest tick of each instrument (in the order of those latest ticks).

        Returns how many ticks were conflated away.
        """
        ticks = self.take_all()
        kept = ticks[last_index_per_iid(ticks["iid"])]
        self.append(kept)
        return len(ticks) - len(kept)

    def drop_oldest(self, count: int) -> int:
        return len(self.take(count))

    def split_off(self, mask_of: np.ndarray) -> np.ndarray:
        """Remove and return the ticks whose `mask_of[iid]` is true, keeping both parts in order."""
        ticks = self.take_all()
        moving = mask_of[ticks["iid"]]
        self.append(ticks[~moving])
        return ticks[moving]


@dataclass
class ShardCounters:
    ticks_in: int = 0
    ticks_out: int = 0
    in_flight: int = 0
    conflated: int = 0
    dropped: int = 0
    dropped_at_failure: int = 0  # part of `dropped`: in flight to a shard that died
    moved_in: int = 0
    moved_out: int = 0


class ShardStats(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    up: bool
    on_ring: bool
    generation: int
    instruments: int
    ticks_in: int
    ticks_out: int
    in_flight: int
    conflated: int
    dropped: int
    dropped_at_failure: int
    moved_in: int
    moved_out: int
    buffered: int

    @property
    def balanced(self) -> bool:
        return self.ticks_in + self.moved_in == (
            self.ticks_out + self.in_flight + self.conflated + self.dropped + self.buffered + self.moved_out
        )


class DeploymentStats(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    policy: str
    active: bool
    instruments: int
    ticks_in: int
    ticks_out: int
    in_flight: int
    conflated: int
    dropped: int
    buffered: int
    shards: list[ShardStats]

    @property
    def balanced(self) -> bool:
        totals_add_up = self.ticks_in == (
            self.ticks_out + self.in_flight + self.conflated + self.dropped + self.buffered
        )
        return totals_add_up and all(s.balanced for s in self.shards)


class RouterStats(msgspec.Struct, frozen=True, kw_only=True):
    received: int  # ticks accepted by `push`
    unrouted: int  # accepted ticks that no active deployment trades
    rejected_iids: int  # ticks with an iid outside 0..max_iid, never routed
    deployments: dict[str, DeploymentStats]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Ticks taken from a shard's buffer, to be reported back with `complete` or `fail` exactly once."""

    ticket: int
    deployment: str
    shard: int
    generation: int
    ticks: np.ndarray


@dataclass(frozen=True, slots=True)
class PushResult:
    accepted: int  # a prefix of the batch; the caller pushes the rest again once there is space
    touched: tuple[tuple[str, int], ...]  # (deployment, shard) buffers that received ticks


class _Shard:
    def __init__(self, index: int, capacity: int) -> None:
        self.index = index
        self.buffer = TickBuffer(capacity)
        self.counters = ShardCounters()
        self.up = False  # a shard is up once registered; down = its ticks are held
        self.on_ring = True
        self.generation = 0  # bumped by each registration; failures of older deliveries are stale
        self.in_flight_batches = 0


class _Deployment:
    def __init__(
        self,
        name: str,
        universe: Mapping[int, str],
        shards: int,
        policy: FlowPolicy,
        config: RouterConfig,
        max_iid: int,
        active: bool,
    ) -> None:
        if not universe:
            raise RouterError(f"deployment {name!r}: the universe is empty")
        iids = np.fromiter(universe.keys(), dtype=np.int64, count=len(universe))
        bad = iids[(iids < 0) | (iids > max_iid)]
        if len(bad):
            raise RouterError(
                f"deployment {name!r}: instrument ids out of range 0..{max_iid}: {bad[:5].tolist()}"
            )
        keys = list(universe.values())
        malformed = [k for k in keys if not isinstance(k, str) or ":" not in k]
        if malformed:
            raise RouterError(f"deployment {name!r}: keys must look like 'EXCH:token', got {malformed[:5]}")
        if len(set(keys)) != len(keys):
            raise RouterError(f"deployment {name!r}: two instrument ids share one key")
        if not 0 < shards <= np.iinfo(np.int16).max:
            raise RouterError(f"deployment {name!r}: shards must be between 1 and 32767, got {shards}")
        self.name = name
        self.policy = FlowPolicy(policy)
        self.active = active
        self.iids = iids.astype(np.intp)
        self.key_hashes = hash_keys(keys)
        self.ring = ConsistentHashRing(range(shards), virtual_nodes=config.virtual_nodes)
        self.shards = [_Shard(k, config.buffer_ticks) for k in range(shards)]
        self.retired = ShardCounters()  # counts of shards removed by `resize`, kept for the totals
        # iid -> shard index; the extra last slot (NOT_IN_UNIVERSE) absorbs out-of-range ids.
        self.table = np.full(int(iids.max()) + 2, NOT_IN_UNIVERSE, dtype=np.int16)
        self.table[self.iids] = self.ring.assign_hashes(self.key_hashes)

    def lookup(self, iids: np.ndarray) -> np.ndarray:
        idx = iids.astype(np.intp)
        sentinel = len(self.table) - 1
        idx[(idx < 0) | (idx > sentinel)] = sentinel
        return self.table[idx]

    def shard(self, index: int) -> _Shard:
        if not 0 <= index < len(self.shards):
            raise RouterError(f"deployment {self.name!r} has shards 0..{len(self.shards) - 1}, not {index}")
        return self.shards[index]

    def reseed(self) -> None:
        """Recompute ownership from the ring and move buffered ticks to their new owners, in order."""
        self.table[self.iids] = self.ring.assign_hashes(self.key_hashes)
        # Each instrument's buffered ticks sit in exactly one buffer (its previous owner), so moving
        # them as a block keeps per-instrument order.
        for source in self.shards:
            if not len(source.buffer):
                continue
            moving = source.buffer.split_off(self.table != source.index)
            if not len(moving):
                continue
            source.counters.moved_out += len(moving)
            targets = self.table[moving["iid"]]
            for target_index in np.unique(targets):
                part = moving[targets == target_index]
                target = self.shards[int(target_index)]
                target.buffer.append(part)
                target.counters.moved_in += len(part)
        if self.policy is FlowPolicy.CONFLATE:
            for shard in self.shards:
                enforce_capacity(shard)

    def stats(self) -> DeploymentStats:
        instruments = np.bincount(self.table[self.iids], minlength=len(self.shards))
        shard_stats = [
            ShardStats(
                index=s.index,
                up=s.up,
                on_ring=s.on_ring,
                generation=s.generation,
                instruments=int(instruments[s.index]),
                buffered=len(s.buffer),
                **vars(s.counters),
            )
            for s in self.shards
        ]
        retired = self.retired
        return DeploymentStats(
            name=self.name,
            policy=self.policy.value,
            active=self.active,
            instruments=len(self.iids),
            ticks_in=retired.ticks_in + sum(s.ticks_in for s in shard_stats),
            ticks_out=retired.ticks_out + sum(s.ticks_out for s in shard_stats),
            in_flight=sum(s.in_flight for s in shard_stats),
            conflated=retired.conflated + sum(s.conflated for s in shard_stats),
            dropped=retired.dropped + sum(s.dropped for s in shard_stats),
            buffered=sum(s.buffered for s in shard_stats),
            shards=shard_stats,
        )

    def resize(self, shards: int, capacity: int) -> None:
        """Grow or shrink to shards 0..shards-1; buffered ticks move to their new owners, in order."""
        current = len(self.shards)
        if shards > current:
            for index in range(current, shards):
                self.shards.append(_Shard(index, capacity))
                self.ring.add(index)
        elif shards < current:
            removed = self.shards[shards:]
            busy = [s.index for s in removed if s.in_flight_batches]
            if busy:
                raise RouterError(
                    f"deployment {self.name!r}: shards {busy} have ticks in flight; hold them before removing"
                )
            kept_on_ring = [s for s in self.shards[:shards] if s.on_ring]
            if not kept_on_ring:
                raise RouterError(f"deployment {self.name!r}: no remaining shard is on the ring")
            for shard in removed:
                if shard.on_ring:
                    self.ring.remove(shard.index)
        else:
            return
        self.reseed()  # the removed shards are still listed here, so their buffers move too
        for shard in self.shards[shards:]:
            counters = shard.counters
            for field_name in ("ticks_in", "ticks_out", "conflated", "dropped", "dropped_at_failure"):
                setattr(
                    self.retired,
                    field_name,
                    getattr(self.retired, field_name) + getattr(counters, field_name),
                )
            self.retired.moved_in += counters.moved_in
            self.retired.moved_out += counters.moved_out
        del self.shards[shards:]


def enforce_capacity(shard: _Shard) -> None:
    """Conflate policy: past capacity, keep the latest tick per instrument, then drop the oldest."""
    if len(shard.buffer) <= shard.buffer.capacity:
        return
    shard.counters.conflated += shard.buffer.conflate()
    excess = len(shard.buffer) - shard.buffer.capacity
    if excess > 0:  # more distinct instruments than the buffer holds
        shard.counters.dropped += shard.buffer.drop_oldest(excess)


class QuoteBoard:
    """The latest quote per instrument (ltp, bid/ask, volume, time) for the terminal.

    Bid and ask are only taken from SNAP_QUOTE ticks, the only mode that carries them. `publish_due`
    hands out the instruments changed since the last call, at most once per `min_interval_ns`.
    """

    def __init__(self, min_interval_ns: int, max_iid: int = DEFAULT_MAX_IID) -> None:
        self._min_interval_ns = min_interval_ns
        self._max_iid = max_iid
        self._quotes = np.zeros(0, dtype=QUOTE_DTYPE)
        self._version = np.zeros(0, dtype=np.int64)
        self._updates = 0
        self._published_version = 0
        self._last_publish_ns: int | None = None

    def update(self, ticks: np.ndarray) -> None:
        ticks = ticks[(ticks["iid"] >= 0) & (ticks["iid"] <= self._max_iid)]
        if not len(ticks):
            return
        self._grow(int(ticks["iid"].max()) + 1)
        latest = ticks[last_index_per_iid(ticks["iid"])]
        ids = latest["iid"]
        quotes = self._quotes
        quotes["iid"][ids] = ids
        for name in ("ltp", "volume", "ts_exchange_ns"):
            quotes[name][ids] = latest[name]
        # The latest SNAP_QUOTE of each instrument in this batch, which may be older than its last tick.
        snaps = ticks[ticks["mode"] == FeedMode.SNAP_QUOTE]
        if len(snaps):
            snaps = snaps[last_index_per_iid(snaps["iid"])]
            quotes["bid"][snaps["iid"]] = snaps["bid"]
            quotes["ask"][snaps["iid"]] = snaps["ask"]
        self._updates += 1
        self._version[ids] = self._updates

    def snapshot(self, iids: Iterable[int] | None = None) -> np.ndarray:
        """Latest quotes of `iids` (default: every instrument seen), skipping ones never seen."""
        seen = self._version > 0
        if iids is None:
            return self._quotes[seen].copy()
        wanted = np.fromiter(iids, dtype=np.int64)
        wanted = wanted[(wanted >= 0) & (wanted < len(self._quotes))]
        return self._quotes[wanted[seen[wanted]]].copy()

    def publish_due(self, now_ns: int) -> np.ndarray | None:
        """Quotes changed since the last publish, or None if it is too soon or nothing changed."""
        if self._last_publish_ns is not None and now_ns - self._last_publish_ns < self._min_interval_ns:
            return None
        if self._updates == self._published_version:
            return None
        changed = self._quotes[self._version > self._published_version].copy()
        self._published_version = self._updates
        self._last_publish_ns = now_ns
        return changed

    def _grow(self, size: int) -> None:
        if size <= len(self._quotes):
            return
        size = max(size, 2 * len(self._quotes))
        quotes = np.zeros(size, dtype=QUOTE_DTYPE)
        quotes[: len(self._quotes)] = self._quotes
        version = np.zeros(size, dtype=np.int64)
        version[: len(self._version)] = self._version
        self._quotes, self._version = quotes, version


class TickRouter:
    """Per-deployment consistent-hash routing of tick batches into bounded per-shard buffers.

    Parameters
    ----------
    config
        Virtual nodes per shard, buffer size per shard and the terminal's quote rate.
    max_in_flight
        Deliveries a shard may have outstanding at once (`take` returns None past it).
    max_batch
        Most ticks handed to a shard in one delivery.
    max_iid
        Largest instrument id accepted.
    """

    def __init__(
        self,
        config: RouterConfig,
        *,
        max_in_flight: int = 1,
        max_batch: int = 16_384,
        max_iid: int = DEFAULT_MAX_IID,
    ) -> None:
        if max_in_flight <= 0 or max_batch <= 0:
            raise RouterError("max_in_flight and max_batch must be positive")
        self.config = config
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        self.max_iid = max_iid
        self.quotes = QuoteBoard(int(1e9 / config.ui_snapshot_hz), max_iid)
        self._deployments: dict[str, _Deployment] = {}
        self._tickets = itertools.count(1)
        self._outstanding: dict[int, Delivery] = {}
        self._received = 0
        self._unrouted = 0
        self._rejected_iids = 0

    # -- deployments -------------------------------------------------------------------------

    def add_deployment(
        self,
        name: str,
        universe: Mapping[int, str],
        shards: int,
        policy: FlowPolicy | str = FlowPolicy.BLOCK,
        *,
        active: bool = True,
    ) -> None:
        """Route the instruments of `universe` (iid -> "EXCH:token") over `shards` shards.

        Shards start down (ticks are held for them) until `shard_up` registers each one.
        """
        if name in self._deployments:
            raise RouterError(f"deployment {name!r} already exists")
        try:
            policy = FlowPolicy(policy)
        except ValueError:
            raise RouterError(
                f"deployment {name!r}: flow policy must be 'block' or 'conflate', not {policy!r}"
            ) from None
        self._deployments[name] = _Deployment(
            name, universe, shards, policy, self.config, self.max_iid, active
        )

    def remove_deployment(self, name: str) -> DeploymentStats:
        """Stop routing to `name`; its buffered ticks count as dropped in the returned final stats."""
        deployment = self._deployment(name)
        for shard in deployment.shards:
            shard.counters.dropped += len(shard.buffer)
            shard.buffer.take_all()
        for ticket in [t for t, d in self._outstanding.items() if d.deployment == name]:
            delivery = self._outstanding.pop(ticket)
            counters = deployment.shards[delivery.shard].counters
            counters.in_flight -= len(delivery.ticks)
            counters.dropped += len(delivery.ticks)
        del self._deployments[name]
        return deployment.stats()

    def set_active(self, name: str, active: bool) -> None:
        """Start or stop routing new batches to `name`; buffered ticks are still delivered."""
        self._deployment(name).active = active

    def swap(self, old: str, new: str) -> None:
        """Between two batches, stop routing to `old` and start routing to `new` (a hot swap)."""
        old_deployment, new_deployment = self._deployment(old), self._deployment(new)
        old_deployment.active = False
        new_deployment.active = True

    def resize_deployment(self, name: str, shards: int) -> None:
        """Grow or shrink `name` to shards 0..shards-1; the ring moves about 1/N of the instruments.

        New shards start down (their ticks are held until `shard_up`). A shard being removed must
        have nothing in flight (`shard_down` it and let its deliveries finish first); its buffered
        ticks move to their new owners in feed order, and its counts stay in the deployment's totals.
        """
        if not 0 < shards <= np.iinfo(np.int16).max:
            raise RouterError(f"deployment {name!r}: shards must be between 1 and 32767, got {shards}")
        self._deployment(name).resize(shards, self.config.buffer_ticks)

    @property
    def deployments(self) -> tuple[str, ...]:
        return tuple(self._deployments)

    def shard_count(self, name: str) -> int:
        return len(self._deployment(name).shards)

    def owner(self, name: str, iid: int) -> int:
        """The shard of deployment `name` that `iid` is routed to now (NOT_IN_UNIVERSE if none)."""
        return int(self._deployment(name).lookup(np.array([iid]))[0])

    # -- shard membership --------------------------------------------------------------------

    def shard_up(self, name: str, index: int) -> int:
        """A shard (re)registered: deliver to it again, and put it back on the ring if it was off.

        Returns its new generation; deliveries taken before this call are stale.
        """
        deployment = self._deployment(name)
        shard = deployment.shard(index)
        shard.generation += 1
        shard.up = True
        if not shard.on_ring:
            deployment.ring.add(index)
            shard.on_ring = True
            deployment.reseed()
        return shard.generation

    def is_up(self, name: str, index: int) -> bool:
        return self._deployment(name).shard(index).up

    def shard_down(self, name: str, index: int) -> None:
        """Stop delivering to a shard; its share is held in its buffer (by the deployment's policy)."""
        self._deployment(name).shard(index).up = False

    def fail_over(self, name: str, index: int) -> bool:
        """Take a down shard off the ring so its instruments and buffered ticks go to the others.

        Returns False (and keeps holding) if it is the last shard on the ring or already off it.
        """
        deployment = self._deployment(name)
        shard = deployment.shard(index)
        if not shard.on_ring or len(deployment.ring) <= 1:
            return False
        deployment.ring.remove(index)
        shard.on_ring = False
        deployment.reseed()
        return True

    # -- the hot path ------------------------------------------------------------------------

    def push(self, ticks: np.ndarray) -> PushResult:
        """Route a batch. Accepts the longest prefix that fits every `block` shard's free space.

        Conflate shards always accept: past capacity they keep the latest tick per instrument.
        """
        if not isinstance(ticks, np.ndarray) or ticks.dtype != TICK_DTYPE:
            got = ticks.dtype if isinstance(ticks, np.ndarray) else type(ticks).__name__
            raise RouterError(f"a tick batch must be a numpy array of TICK_DTYPE, got {got}")
        if not len(ticks):
            return PushResult(0, ())
        iids = ticks["iid"]
        routes = [(d, d.lookup(iids)) for d in self._deployments.values() if d.active]
        accepted = len(ticks)
        for deployment, shard_of in routes:
            if deployment.policy is FlowPolicy.BLOCK:
                accepted = min(accepted, _block_prefix(deployment, shard_of))
        if accepted == 0:
            return PushResult(0, ())
        ticks = ticks[:accepted]
        routed = np.zeros(accepted, dtype=bool)
        touched: list[tuple[str, int]] = []
        for deployment, shard_of in routes:
            shard_of = shard_of[:accepted]
            routed |= shard_of != NOT_IN_UNIVERSE
            touched += [(deployment.name, s) for s in _route(deployment, ticks, shard_of)]
        valid = (ticks["iid"] >= 0) & (ticks["iid"] <= self.max_iid)
        self._received += accepted
        self._rejected_iids += int(accepted - np.count_nonzero(valid))
        self._unrouted += int(np.count_nonzero(~routed & valid))
        self.quotes.update(ticks)
        return PushResult(accepted, tuple(touched))

    def take(self, name: str, index: int, limit: int | None = None) -> Delivery | None:
        """The next ticks for a shard, or None if it is down, empty or at its in-flight limit."""
        deployment = self._deployments.get(name)
        if deployment is None:
            return None
        shard = deployment.shard(index)
        if not shard.up or not len(shard.buffer) or shard.in_flight_batches >= self.max_in_flight:
            return None
        ticks = shard.buffer.take(min(limit or self.max_batch, self.max_batch))
        shard.counters.in_flight += len(ticks)
        shard.in_flight_batches += 1
        delivery = Delivery(next(self._tickets), name, index, shard.generation, ticks)
        self._outstanding[delivery.ticket] = delivery
        return delivery

    def complete(self, delivery: Delivery) -> None:
        """The shard processed the delivery."""
        shard = self._settle(delivery)
        if shard is not None:
            shard.counters.ticks_out += len(delivery.ticks)

    def fail(self, delivery: Delivery) -> bool:
        """The shard died with the delivery in flight: count it dropped, and hold the shard's share.

        Returns True if this marked the shard down (False if it had already re-registered since).
        """
        shard = self._settle(delivery)
        if shard is None:
            return False
        shard.counters.dropped += len(delivery.ticks)
        shard.counters.dropped_at_failure += len(delivery.ticks)
        if delivery.generation == shard.generation and shard.up:
            shard.up = False
            return True
        return False

    def pending(self, name: str, index: int) -> int:
        """Ticks buffered for a shard."""
        return len(self._deployment(name).shard(index).buffer)

    def stats(self) -> RouterStats:
        return RouterStats(
            received=self._received,
            unrouted=self._unrouted,
            rejected_iids=self._rejected_iids,
            deployments={name: d.stats() for name, d in self._deployments.items()},
        )

    def _settle(self, delivery: Delivery) -> _Shard | None:
        if self._outstanding.pop(delivery.ticket, None) is None:
            if delivery.deployment in self._deployments:
                raise RouterError(f"delivery {delivery.ticket} was already completed or failed")
            return None  # its deployment was removed; already counted as dropped there
        shard = self._deployments[delivery.deployment].shards[delivery.shard]
        shard.counters.in_flight -= len(delivery.ticks)
        shard.in_flight_batches -= 1
        return shard

    def _deployment(self, name: str) -> _Deployment:
        try:
            return self._deployments[name]
        except KeyError:
            known = ", ".join(self._deployments) or "none"
            raise RouterError(f"no deployment named {name!r} (deployments: {known})") from None


def _block_prefix(deployment: _Deployment, shard_of: np.ndarray) -> int:
    """Length of the longest prefix of the batch that fits every shard's free buffer space."""
    prefix = len(shard_of)
    counts = np.bincount(shard_of[shard_of != NOT_IN_UNIVERSE], minlength=len(deployment.shards))
    for index in np.flatnonzero(counts):
        free = deployment.shards[index].buffer.free
        if counts[index] > free:
            prefix = min(prefix, int(np.flatnonzero(shard_of == index)[free]))
    return prefix


def _route(deployment: _Deployment, ticks: np.ndarray, shard_of: np.ndarray) -> list[int]:
    """Append each shard's ticks to its buffer, keeping batch order; returns the shards touched."""
    shard_count = len(deployment.shards)
    if shard_count == 1:
        parts = [ticks[shard_of == 0]]
    else:
        # A stable sort groups ticks by shard and keeps feed order inside each group.
        order = np.argsort(shard_of, kind="stable")
        bounds = np.searchsorted(shard_of[order], np.arange(shard_count + 1), side="left")
        parts = [ticks[order[bounds[s] : bounds[s + 1]]] for s in range(shard_count)]
    touched = []
    for index, part in enumerate(parts):
        if not len(part):
            continue
        shard = deployment.shards[index]
        shard.counters.ticks_in += len(part)
        shard.buffer.append(part)
        if deployment.policy is FlowPolicy.CONFLATE:
            enforce_capacity(shard)
        touched.append(index)
    return touched
