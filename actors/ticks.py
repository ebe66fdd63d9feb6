"""The tick batch: the one shape market data has between the feed, the router and the shards.

Prices are int64 in the exchange's minor unit (paise; currency derivatives 1e-7 rupee), exactly
as Angel sends them; a shard converts them to Nautilus `Price` once. LTP and QUOTE modes carry no
best bid/ask (0 here): only SNAP_QUOTE does.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import pyarrow as pa


class FeedMode(IntEnum):
    LTP = 1
    QUOTE = 2
    SNAP_QUOTE = 3


TICK_FIELDS: list[tuple[str, str]] = [
    ("iid", "<i4"),
    ("ts_exchange_ns", "<i8"),
    ("ts_recv_ns", "<i8"),
    ("seq", "<i8"),
    ("ltp", "<i8"),
    ("ltq", "<i8"),
    ("volume", "<i8"),
    ("bid", "<i8"),
    ("ask", "<i8"),
    ("bid_qty", "<i8"),
    ("ask_qty", "<i8"),
    ("oi", "<i8"),
    ("mode", "u1"),
]

TICK_DTYPE = np.dtype(TICK_FIELDS)

TICK_SCHEMA = pa.schema(
    [
        ("iid", pa.int32()),
        ("ts_exchange_ns", pa.int64()),
        ("ts_recv_ns", pa.int64()),
        ("seq", pa.int64()),
        ("ltp", pa.int64()),
        ("ltq", pa.int64()),
        ("volume", pa.int64()),
        ("bid", pa.int64()),
        ("ask", pa.int64()),
        ("bid_qty", pa.int64()),
        ("ask_qty", pa.int64()),
        ("oi", pa.int64()),
        ("mode", pa.uint8()),
    ]
)


def ticks_to_batch(ticks: np.ndarray) -> pa.RecordBatch:
    """A structured array of `TICK_DTYPE` as an Arrow batch (column copies, no per-row work)."""
    return pa.RecordBatch.from_arrays([pa.array(ticks[name]) for name, _ in TICK_FIELDS], schema=TICK_SCHEMA)


def batch_to_ticks(batch: pa.RecordBatch) -> np.ndarray:
    """An Arrow tick batch as a structured array of `TICK_DTYPE`."""
    out = np.empty(batch.num_rows, dtype=TICK_DTYPE)
    for i, (name, _) in enumerate(TICK_FIELDS):
        out[name] = batch.column(i).to_numpy(zero_copy_only=False)
    return out


def empty_ticks(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=TICK_DTYPE)
