"""Angel One SmartAPI integration, split by role.

- `common`: endpoints, endpoint groups and their rate limits, error codes, candle limits.
- `schemas`: wire structs in Angel's field names, each with a pure `parse_to_*` into our units.
- `codec`: vectorised SmartStream V2 decoding into the tick batch.
- `sdk`: the one place smartapi-python is imported (side effects contained), off the event loop.
- `auth`: login with PIN and TOTP, session renewal, the encrypted session cache.
- `limits`: Angel's per-second/minute/hour limits with urgent calls first.
- `rest`: typed REST calls (orders, books, market data, candles, GTT).
- `stream`: the SmartStream V2 client; `order_updates`: the order-update socket client.
- `errors`: broker errors as typed exceptions; `factories`: wiring one login's clients.
"""
