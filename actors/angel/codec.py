"""Vectorised SmartStream V2 decoding: a list of binary frames in, one tick array out.

Frames of one mode are joined and read with `np.frombuffer` through the packet dtypes of
`actors.angel.packets`; nothing runs per frame in Python beyond `len()` and the join. The key
(exchange type, token) becomes the catalog's dense `iid` through a sorted hash table. Frames that
cannot be decoded (text, short, unknown mode, wrong length, unknown token) are counted by reason
and skipped; decoding never raises on bad input. The SDK's `_parse_binary_data` is the oracle
the tests hold this module to.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from actors.angel.packets import EXCHANGE_TYPE, PACKET_DTYPE, PACKET_SIZE, TOKEN_BYTES
from actors.ticks import TICK_DTYPE, FeedMode

log = logging.getLogger(__name__)

_ModeGroups = list[tuple[FeedMode, np.ndarray, np.ndarray]]

DROP_REASONS = ("text", "short", "wrong_mode", "wrong_length", "unknown_token")

# Exchange type byte + token bytes, padded to four 8-byte words for hashing.
_KEY_BYTES = 1 + TOKEN_BYTES
_KEY_WIDTH = 32
_MIN_FRAME = PACKET_SIZE[FeedMode.LTP]

# Expected frame size for each value of the mode byte (0: not a mode we decode).
_SIZE_BY_MODE_BYTE = np.zeros(256, dtype=np.int64)
for _mode, _size in PACKET_SIZE.items():
    _SIZE_BY_MODE_BYTE[int(_mode)] = _size

LEVEL_DTYPE = np.dtype([("price", "<i8"), ("qty", "<i8"), ("orders", "<i4")])

# The full SNAP_QUOTE picture for consumers that want depth: five levels a side, OHLC, circuits.
DEPTH_DTYPE = np.dtype(
    [
        ("iid", "<i4"),
        ("ts_exchange_ns", "<i8"),
        ("seq", "<i8"),
        ("ltp", "<i8"),
        ("ltq", "<i8"),
        ("avg_price", "<i8"),
        ("volume", "<i8"),
        ("total_buy_qty", "<f8"),
        ("total_sell_qty", "<f8"),
        ("open", "<i8"),
        ("high", "<i8"),
        ("low", "<i8"),
        ("close", "<i8"),
        ("ts_last_trade_ns", "<i8"),
        ("oi", "<i8"),
        ("oi_change_pct", "<i8"),
        ("bids", LEVEL_DTYPE, (5,)),
        ("asks", LEVEL_DTYPE, (5,)),
        ("upper_circuit", "<i8"),
        ("lower_circuit", "<i8"),
        ("high_52w", "<i8"),
        ("low_52w", "<i8"),
    ]
)

_NS_PER_MS = 1_000_000


def _odd_multipliers(seed: int) -> np.ndarray:
    """Four odd 64-bit multipliers drawn from `seed` (odd keeps each word's bits in the hash)."""
    values = np.random.default_rng(seed).integers(0, 2**63, size=4, dtype=np.uint64)
    return (values << np.uint64(1)) | np.uint64(1)


def _instrument_key_bytes(key: str) -> bytes:
    """ "EXCH:token" as the 26 bytes a packet carries: exchange type byte, then the token."""
    exchange, sep, token = key.partition(":")
    if not sep or not token:
        raise ValueError(f"instrument key {key!r} is not 'EXCH:token'")
    if exchange not in EXCHANGE_TYPE:
        known = ", ".join(sorted(EXCHANGE_TYPE))
        raise ValueError(f"instrument key {key!r}: unknown exchange {exchange!r} (known: {known})")
    raw = token.encode("ascii", "strict") if token.isascii() else b""
    if not raw or len(raw) > TOKEN_BYTES or b"\0" in raw:
        raise ValueError(f"instrument key {key!r}: token must be 1-{TOKEN_BYTES} ASCII characters")
    return bytes([EXCHANGE_TYPE[exchange]]) + raw


class InstrumentIndex:
    """(exchange type, token) → dense iid, looked up for a whole batch at once.

    Parameters
    ----------
    iid_by_key : Mapping[str, int]
        The catalog's iid for each instrument key "EXCH:token" (e.g. "NSE:3045").
    """

    def __init__(self, iid_by_key: Mapping[str, int]) -> None:
        count = len(iid_by_key)
        keys = np.zeros((count, _KEY_WIDTH), dtype=np.uint8)
        iids = np.empty(count, dtype=np.int32)
        for row, (key, iid) in enumerate(iid_by_key.items()):
            raw = _instrument_key_bytes(key)
            keys[row, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
            if not 0 <= iid < 2**31:
                raise ValueError(f"instrument key {key!r}: iid {iid} is not a non-negative int32")
            iids[row] = iid
        self.size = count
        self.max_iid = int(iids.max()) if count else -1
        words = keys.view("<u8")
        self._multipliers = _odd_multipliers(seed=1)
        hashes = self._hash(words)
        # Re-seed until no two known keys share a hash, so a lookup needs one comparison.
        seed = 1
        while len(np.unique(hashes)) != count:
            seed += 1
            self._multipliers = _odd_multipliers(seed)
            hashes = self._hash(words)
        order = np.argsort(hashes)
        self._hashes = hashes[order]
        self._words = words[order]
        self._iids = iids[order]

    def _hash(self, words: np.ndarray) -> np.ndarray:
        # A multiply-add over the four key words (uint64 arithmetic wraps), then a shift-xor.
        h = words @ self._multipliers
        h ^= h >> np.uint64(29)
        return h

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """iids for keys of shape (n, 32) uint8 as built by `key_bytes`; -1 where unknown."""
        if self.size == 0:
            return np.full(len(keys), -1, dtype=np.int32)
        words = keys.view("<u8")
        hashes = self._hash(words)
        slot = np.searchsorted(self._hashes, hashes)
        np.minimum(slot, self.size - 1, out=slot)
        found = (self._words[slot] == words).all(axis=1)
        return np.where(found, self._iids[slot], np.int32(-1))

    @staticmethod
    def key_bytes(records: np.ndarray) -> np.ndarray:
        """The (n, 32) lookup keys of packet records: exchange type, then the token up to its NUL."""
        raw = records.view(np.uint8).reshape(len(records), records.dtype.itemsize)
        keys = np.zeros((len(records), _KEY_WIDTH), dtype=np.uint8)
        keys[:, :_KEY_BYTES] = raw[:, 1 : 1 + _KEY_BYTES]
        token = keys[:, 1:_KEY_BYTES]
        nul = token == 0
        # Bytes after the first NUL are not part of the token (the SDK stops reading there);
        # senders pad with NULs, so only clean up when a non-NUL byte follows a NUL.
        if (nul[:, :-1] & ~nul[:, 1:]).any():
            token[np.logical_or.accumulate(nul, axis=1)] = 0
        return keys


class FrameRecords(NamedTuple):
    """Decoded packet records of one mode, with their iids and their place in the input."""

    mode: FeedMode
    records: np.ndarray  # packet dtype of `mode`
    iids: np.ndarray  # int32
    positions: np.ndarray  # index of each record's frame in the input list


class DecodeStats:
    """Frames decoded and frames dropped, by reason."""

    def __init__(self) -> None:
        self.decoded = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, int]:
        return {"decoded": self.decoded, **{f"dropped_{k}": v for k, v in self.dropped.items()}}


class TickDecoder:
    """Decodes batches of SmartStream V2 frames into `TICK_DTYPE` arrays.

    Parameters
    ----------
    index : InstrumentIndex
        Maps each packet's (exchange type, token) to the catalog iid.
    """

    def __init__(self, index: InstrumentIndex) -> None:
        self.index = index
        self.stats = DecodeStats()

    @classmethod
    def from_keys(cls, iid_by_key: Mapping[str, int]) -> TickDecoder:
        return cls(InstrumentIndex(iid_by_key))

    def decode(self, frames: Sequence[bytes | str | np.ndarray], ts_recv_ns: int) -> np.ndarray:
        """Ticks for the decodable frames, in input order; the rest are counted in `stats`."""
        return self.ticks_from(self.split(frames), ts_recv_ns)

    def split(self, frames: Sequence[bytes | str | np.ndarray]) -> list[FrameRecords]:
        """Frames grouped by mode into packet records with iids (unknown tokens dropped).

        Besides one `bytes` per frame, an item may be a 2-D uint8 array holding one packet per
        row (a run of equal-sized frames already split off the socket).
        """
        if any(isinstance(f, np.ndarray) for f in frames[:1]):
            packed = self._packed(frames)  # type: ignore[arg-type]
            if packed is not None:
                return self._with_iids(packed)
        if any(isinstance(f, np.ndarray) for f in frames):
            frames = _one_per_frame(frames)
        try:
            joined = b"".join(frames)  # type: ignore[arg-type]
            binary: Sequence[bytes] = frames  # type: ignore[assignment]
        except TypeError:
            binary = [f for f in frames if isinstance(f, bytes | bytearray | memoryview)]
            self.stats.dropped["text"] += len(frames) - len(binary)
            joined = b"".join(binary)
        count = len(binary)
        if count == 0:
            return []
        groups = self._single_mode(binary, joined)
        if groups is None:
            groups = self._mixed_modes(binary, joined)
        return self._with_iids(groups)

    def _with_iids(self, groups: _ModeGroups) -> list[FrameRecords]:
        out = []
        for mode, records, positions in groups:
            iids = self.index.lookup(InstrumentIndex.key_bytes(records))
            known = iids >= 0
            unknown = len(iids) - int(known.sum())
            if unknown:
                self.stats.dropped["unknown_token"] += unknown
                records, iids, positions = records[known], iids[known], positions[known]
            self.stats.decoded += len(records)
            out.append(FrameRecords(mode, records, iids, positions))
        return out

    @staticmethod
    def _packed(blocks: Sequence[np.ndarray]) -> _ModeGroups | None:
        """Blocks of packets of one mode: one array, no copy per frame (None: not that case)."""
        width = blocks[0].shape[1] if blocks[0].ndim == 2 else 0
        mode_by_size = {size: mode for mode, size in PACKET_SIZE.items()}
        if width not in mode_by_size or not all(
            isinstance(b, np.ndarray) and b.ndim == 2 and b.shape[1] == width for b in blocks
        ):
            return None
        mode = mode_by_size[width]
        packed = np.ascontiguousarray(
            np.concatenate(blocks) if len(blocks) > 1 else blocks[0], dtype=np.uint8
        )
        records = packed.view(PACKET_DTYPE[mode]).reshape(len(packed))
        if not (records["mode"] == mode).all():
            return None
        return [(mode, records, np.arange(len(records)))]

    def _single_mode(self, frames: Sequence[bytes], joined: bytes) -> _ModeGroups | None:
        """The common case, every frame one well-formed mode: one `frombuffer`, no grouping."""
        first = frames[0]
        if not first:
            return None
        mode_byte = first[0]
        size = int(_SIZE_BY_MODE_BYTE[mode_byte])
        # No frame is longer than `size` and together they fill n × size: so each is `size` long.
        if size == 0 or len(joined) != size * len(frames) or max(map(len, frames)) != size:
            return None
        records = np.frombuffer(joined, dtype=PACKET_DTYPE[FeedMode(mode_byte)])
        if not (records["mode"] == mode_byte).all():
            return None
        return [(FeedMode(mode_byte), records, np.arange(len(records)))]

    def _mixed_modes(self, frames: Sequence[bytes], joined: bytes) -> _ModeGroups:
        lengths = np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))
        starts = np.cumsum(lengths) - lengths
        buffer = np.frombuffer(joined, dtype=np.uint8)
        nonempty = lengths > 0
        mode_bytes = np.zeros(len(frames), dtype=np.uint8)
        mode_bytes[nonempty] = buffer[starts[nonempty]]
        expected = _SIZE_BY_MODE_BYTE[mode_bytes]
        short = ~nonempty | (lengths < np.where(expected > 0, expected, _MIN_FRAME))
        wrong_mode = ~short & (expected == 0)
        wrong_length = ~short & (expected > 0) & (lengths > expected)
        self.stats.dropped["short"] += int(short.sum())
        self.stats.dropped["wrong_mode"] += int(wrong_mode.sum())
        self.stats.dropped["wrong_length"] += int(wrong_length.sum())
        valid = (expected > 0) & (lengths == expected)
        groups = []
        for mode in FeedMode:
            positions = np.flatnonzero(valid & (mode_bytes == mode))
            if len(positions):
                data = b"".join([frames[i] for i in positions.tolist()])
                groups.append((mode, np.frombuffer(data, dtype=PACKET_DTYPE[mode]), positions))
        return groups

    @staticmethod
    def ticks_from(groups: list[FrameRecords], ts_recv_ns: int) -> np.ndarray:
        """One `TICK_DTYPE` array from split frames, restoring the input order across modes."""
        if len(groups) == 1:
            return _ticks_of(groups[0], ts_recv_ns)
        total = sum(len(g.records) for g in groups)
        out = np.empty(total, dtype=TICK_DTYPE)
        if total == 0:
            return out
        order = np.argsort(np.concatenate([g.positions for g in groups]), kind="stable")
        out[:] = np.concatenate([_ticks_of(g, ts_recv_ns) for g in groups])[order]
        return out


def _one_per_frame(items: Sequence[bytes | str | np.ndarray]) -> list[bytes | str]:
    """Blocks of packets as one `bytes` per packet, in order, for the careful path."""
    out: list[bytes | str] = []
    for item in items:
        if isinstance(item, np.ndarray):
            out.extend(row.tobytes() for row in item)
        else:
            out.append(item)
    return out


def _ticks_of(group: FrameRecords, ts_recv_ns: int) -> np.ndarray:
    records = group.records
    out = np.zeros(len(records), dtype=TICK_DTYPE)
    out["iid"] = group.iids
    out["ts_exchange_ns"] = records["ts_exchange_ms"] * _NS_PER_MS
    out["ts_recv_ns"] = ts_recv_ns
    out["seq"] = records["seq"]
    out["ltp"] = records["ltp"]
    out["mode"] = group.mode
    if group.mode >= FeedMode.QUOTE:
        out["ltq"] = records["ltq"]
        out["volume"] = records["volume"]
    if group.mode == FeedMode.SNAP_QUOTE:
        out["oi"] = records["oi"]
        depth = records["depth"]
        is_buy = depth["flag"] != 0  # flag 1 = buy; the SDK counts any non-zero flag as buy
        if is_buy[:, :5].all() and not is_buy[:, 5:].any():
            # Angel's layout: five buy levels, then five sell levels.
            out["bid"] = depth["price"][:, 0]
            out["bid_qty"] = depth["qty"][:, 0]
            out["ask"] = depth["price"][:, 5]
            out["ask_qty"] = depth["qty"][:, 5]
            return out
        rows = np.arange(len(records))
        first_buy = np.argmax(is_buy, axis=1)
        has_buy = is_buy[rows, first_buy]
        first_sell = np.argmax(~is_buy, axis=1)
        has_sell = ~is_buy[rows, first_sell]
        out["bid"] = np.where(has_buy, depth["price"][rows, first_buy], 0)
        out["bid_qty"] = np.where(has_buy, depth["qty"][rows, first_buy], 0)
        out["ask"] = np.where(has_sell, depth["price"][rows, first_sell], 0)
        out["ask_qty"] = np.where(has_sell, depth["qty"][rows, first_sell], 0)
    return out


def depth_from(group: FrameRecords) -> np.ndarray:
    """The `DEPTH_DTYPE` view of SNAP_QUOTE records: best five a side in wire order, zero-padded.

    Buy levels are those with a non-zero flag (1 = buy), sell levels those with flag 0; a side
    with more than five levels on the wire (never seen from Angel) keeps its first five.
    """
    if group.mode != FeedMode.SNAP_QUOTE:
        raise ValueError(f"depth needs SNAP_QUOTE records, got {group.mode.name}")
    records = group.records
    out = np.zeros(len(records), dtype=DEPTH_DTYPE)
    out["iid"] = group.iids
    out["ts_exchange_ns"] = records["ts_exchange_ms"] * _NS_PER_MS
    out["ts_last_trade_ns"] = records["ts_last_trade_ms"] * _NS_PER_MS
    for name in (
        "seq",
        "ltp",
        "ltq",
        "avg_price",
        "volume",
        "total_buy_qty",
        "total_sell_qty",
        "open",
        "high",
        "low",
        "close",
        "oi",
        "oi_change_pct",
        "upper_circuit",
        "lower_circuit",
        "high_52w",
        "low_52w",
    ):
        out[name] = records[name]
    depth = records["depth"]
    for side, on_side in (("bids", depth["flag"] != 0), ("asks", depth["flag"] == 0)):
        # Each level's slot within its side: its rank among that side's levels, in wire order.
        slot = np.cumsum(on_side, axis=1) - 1
        rows, cols = np.nonzero(on_side & (slot < 5))
        dest = out[side]
        dest["price"][rows, slot[rows, cols]] = depth["price"][rows, cols]
        dest["qty"][rows, slot[rows, cols]] = depth["qty"][rows, cols]
        dest["orders"][rows, slot[rows, cols]] = depth["orders"][rows, cols]
    return out
