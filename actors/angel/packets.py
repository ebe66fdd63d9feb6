"""SmartStream V2 binary packet layout, as numpy structured dtypes (little-endian, packed).

One fact, one place: the simulator encodes with these and the feed decodes with them. Offsets
follow Angel's published layout (see the project notes); the SDK's `_parse_binary_data` is the
test oracle. Best-five entries: flag 1 = buy, 0 = sell.
"""

from __future__ import annotations

import numpy as np

from actors.ticks import FeedMode

TOKEN_BYTES = 25

# Angel's exchangeType codes on the socket.
EXCHANGE_TYPE = {"NSE": 1, "NFO": 2, "BSE": 3, "BFO": 4, "MCX": 5, "NCDEX": 7, "CDS": 13}
EXCHANGE_BY_TYPE = {code: exch for exch, code in EXCHANGE_TYPE.items()}

_HEAD = [
    ("mode", "u1"),
    ("exchange_type", "u1"),
    ("token", f"S{TOKEN_BYTES}"),
    ("seq", "<i8"),
    ("ts_exchange_ms", "<i8"),
    ("ltp", "<i8"),
]
_QUOTE = [
    ("ltq", "<i8"),
    ("avg_price", "<i8"),
    ("volume", "<i8"),
    ("total_buy_qty", "<f8"),
    ("total_sell_qty", "<f8"),
    ("open", "<i8"),
    ("high", "<i8"),
    ("low", "<i8"),
    ("close", "<i8"),
]
DEPTH_LEVEL_DTYPE = np.dtype([("flag", "<u2"), ("qty", "<i8"), ("price", "<i8"), ("orders", "<u2")])
_SNAP = [
    ("ts_last_trade_ms", "<i8"),
    ("oi", "<i8"),
    ("oi_change_pct", "<i8"),
    ("depth", DEPTH_LEVEL_DTYPE, (10,)),
    ("upper_circuit", "<i8"),
    ("lower_circuit", "<i8"),
    ("high_52w", "<i8"),
    ("low_52w", "<i8"),
]

LTP_DTYPE = np.dtype(_HEAD)
QUOTE_DTYPE = np.dtype(_HEAD + _QUOTE)
SNAP_QUOTE_DTYPE = np.dtype(_HEAD + _QUOTE + _SNAP)

PACKET_DTYPE = {FeedMode.LTP: LTP_DTYPE, FeedMode.QUOTE: QUOTE_DTYPE, FeedMode.SNAP_QUOTE: SNAP_QUOTE_DTYPE}
PACKET_SIZE = {mode: dtype.itemsize for mode, dtype in PACKET_DTYPE.items()}

assert PACKET_SIZE == {FeedMode.LTP: 51, FeedMode.QUOTE: 123, FeedMode.SNAP_QUOTE: 379}, PACKET_SIZE
assert SNAP_QUOTE_DTYPE.fields is not None and SNAP_QUOTE_DTYPE.fields["depth"][1] == 147


def encode_packets(records: np.ndarray) -> list[bytes]:
    """One wire message per record of a packet dtype (the socket sends one packet per frame)."""
    raw = records.tobytes()
    size = records.dtype.itemsize
    return [raw[i : i + size] for i in range(0, len(raw), size)]
