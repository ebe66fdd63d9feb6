"""Consistent hashing of instrument keys ("EXCH:token") onto a deployment's shards.

Each shard owns `virtual_nodes` points on a 64-bit ring; a key belongs to the first point at or
after its own hash, wrapping around. Adding or removing one of N shards therefore moves only the
keys that shard gains or loses, about 1/N of them. Hashes come from blake2b, never Python's
`hash`, so an assignment is the same in every process and on every day.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np


def stable_hash(text: str) -> int:
    """A 64-bit hash of `text` that is the same in every process, run and machine."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def hash_keys(keys: Sequence[str]) -> np.ndarray:
    """`stable_hash` of each key, as a uint64 array (one hashlib call per key, done once per universe)."""
    return np.fromiter((stable_hash(k) for k in keys), dtype=np.uint64, count=len(keys))


class RingError(ValueError):
    """A ring operation that cannot be done: unknown shard, duplicate shard, or an empty ring."""


class ConsistentHashRing:
    """Shards (small non-negative integers) placed on a hash ring with virtual nodes.

    Parameters
    ----------
    shards
        The shard indices to start with.
    virtual_nodes
        Points per shard; more points spread keys more evenly (relative spread ~ 1/sqrt(points)).
    """

    def __init__(self, shards: Iterable[int] = (), virtual_nodes: int = 128) -> None:
        if virtual_nodes <= 0:
            raise RingError(f"virtual_nodes must be positive, got {virtual_nodes}")
        self._virtual_nodes = virtual_nodes
        self._shard_points: dict[int, np.ndarray] = {}
        self._points = np.empty(0, dtype=np.uint64)
        self._owners = np.empty(0, dtype=np.int32)
        for shard in shards:
            self._place(shard)
        self._rebuild()

    @property
    def virtual_nodes(self) -> int:
        return self._virtual_nodes

    @property
    def shards(self) -> tuple[int, ...]:
        return tuple(sorted(self._shard_points))

    def __len__(self) -> int:
        return len(self._shard_points)

    def __contains__(self, shard: object) -> bool:
        return shard in self._shard_points

    def add(self, shard: int) -> None:
        """Place `shard` on the ring; it takes over about 1/(N+1) of the keys."""
        self._place(shard)
        self._rebuild()

    def remove(self, shard: int) -> None:
        """Take `shard` off the ring; only its keys move, each to the next shard along."""
        if shard not in self._shard_points:
            raise RingError(f"shard {shard} is not on the ring (shards: {list(self.shards)})")
        del self._shard_points[shard]
        self._rebuild()

    def assign(self, key: str) -> int:
        """The shard that owns `key`."""
        return int(self.assign_hashes(np.array([stable_hash(key)], dtype=np.uint64))[0])

    def assign_many(self, keys: Sequence[str]) -> np.ndarray:
        """The owning shard of each key, as an int32 array."""
        return self.assign_hashes(hash_keys(keys))

    def assign_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """The owning shard of each precomputed key hash (see `hash_keys`), as an int32 array."""
        if not len(self._points):
            raise RingError("the ring has no shards to assign keys to")
        slots = np.searchsorted(self._points, hashes, side="left")
        slots[slots == len(self._points)] = 0  # past the last point: wrap to the first
        return self._owners[slots]

    def _place(self, shard: int) -> None:
        if not isinstance(shard, int | np.integer) or shard < 0:
            raise RingError(f"a shard is a non-negative integer index, got {shard!r}")
        shard = int(shard)
        if shard in self._shard_points:
            raise RingError(f"shard {shard} is already on the ring")
        labels = [f"shard-{shard}#{v}" for v in range(self._virtual_nodes)]
        self._shard_points[shard] = hash_keys(labels)

    def _rebuild(self) -> None:
        if not self._shard_points:
            self._points = np.empty(0, dtype=np.uint64)
            self._owners = np.empty(0, dtype=np.int32)
            return
        points = np.concatenate(list(self._shard_points.values()))
        owners = np.concatenate(
            [np.full(len(p), shard, dtype=np.int32) for shard, p in self._shard_points.items()]
        )
        # Sort by point, then shard, so even a (vanishingly rare) collision resolves the same way.
        order = np.lexsort((owners, points))
        self._points = points[order]
        self._owners = owners[order]
