"""`shardline bench orders --path rest`: limit and market orders through the terminal's REST API.

A private local Ray runs the whole `sim` system (`launcher.up`: simulator, feed, router, the sample
deployment, execution, portfolio, the terminal on Serve). This process signs in as a trader and
places orders at a fixed offered rate with bounded concurrency (open loop: order n is due at
t0 + n/rate whatever happened to the orders before it), then reconciles its own ledger of client
order ids against the execution actor's orders and the paper venue's orders, trades and positions.

The figures: submit → acknowledgement latency (the POST round trip, which covers the REST edge, the
journal write and the venue's answer), how late orders left against their schedule (the client or
the system falling behind), lost and duplicated orders, and rejects by reason. `RestOrderLoad` and
`reconcile_orders` are reused by `shardline chaos`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import socket
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import yaml

from cluster.config import DEFAULT_CONFIG_PATH, ShardlineConfig, parse_config
from cluster.errors import ShardlineError
from cluster.topology import NAMESPACE

log = logging.getLogger(__name__)

LOAD_BOOK = "loadtest"
TRADER = ("trader", "trader-local")
# What each order is, in turn: most fill at once (market, or a limit through the touch); a share
# rests on the book as a passive limit, so working orders build up as they do in a session.
ORDER_MIX = ("market", "limit_marketable", "market", "limit_marketable", "limit_passive")
# Refusals that may pass if sent again; resending is safe because the client order id is the same
# (the execution actor answers a repeat with the order it already has). A 500 is an outcome unknown.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DRAIN_S = 10.0  # how long after the window queued orders may still be sent
NOT_SENT = "not_sent_window_closed"
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute))?\s*$")


def parse_rate(text: str) -> float:
    """Orders per second from "10000/min", "150/s" or "150" (per second)."""
    match = _RATE.match(text)
    if not match:
        raise ShardlineError(f"rate {text!r}: give orders per second or per minute, e.g. 10000/min or 150/s")
    value = float(match.group(1))
    per_minute = (match.group(2) or "s").startswith("m")
    rate = value / 60 if per_minute else value
    if rate <= 0:
        raise ShardlineError(f"rate {text!r}: must be above zero")
    return rate


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    if not seconds:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    values = np.asarray(seconds) * 1e3
    p50, p95, p99, top = np.percentile(values, [50, 95, 99, 100])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(top), 3),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class LoadInstrument:
    """An instrument the load trades, with what a limit price needs (rupees, exact)."""

    key: str
    tick: Decimal
    lot: int


@dataclass
class OrderOutcome:
    """One order as the client saw it. `latency_s` is the successful attempt's round trip."""

    client_order_id: str
    instrument: str
    side: str
    kind: str
    due_s: float  # when the schedule wanted it sent, from the start of the run
    sent_s: float = 0.0  # when its first attempt left
    latency_s: float | None = None
    http_status: int | None = None
    status: str = ""  # the order's status in the answer
    reason: str = ""
    error: str = ""  # the error code of the last refused attempt, or the transport error
    attempts: int = 0
    answered_at_s: float = 0.0

    @property
    def acknowledged(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300


@dataclass(frozen=True)
class OrderLoadConfig:
    """How the load runs.

    Parameters
    ----------
    rate_per_s
        Offered orders per second (open loop).
    seconds
        How long orders are offered.
    concurrency
        Requests in flight at most (and HTTP connections).
    retry_for_s
        Keep retrying a refused or unanswered order (same client order id) this long; 0: one try.
    """

    rate_per_s: float
    seconds: float
    concurrency: int = 32
    book: str = LOAD_BOOK
    retry_for_s: float = 0.0
    request_timeout_s: float = 15.0
    quantity_lots: int = 1

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.seconds <= 0:
            raise ShardlineError("the order load needs a rate and a duration above zero")
        if not 1 <= self.concurrency <= 1024:
            raise ShardlineError("concurrency must be between 1 and 1024")


def to_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).to_integral_value(rounding=rounding) * tick


class RestOrderLoad:
    """Places orders through the terminal's REST API at a fixed rate and keeps a ledger of them.

    Parameters
    ----------
    base_url
        The terminal, e.g. ``http://127.0.0.1:8000``.
    instruments
        What to trade; each order takes the next instrument in turn.
    config
        Rate, duration, concurrency, retries.
    run_id
        Prefix of the client order ids, so a ledger never collides with another run's.
    """

    def __init__(
        self,
        base_url: str,
        instruments: Sequence[LoadInstrument],
        config: OrderLoadConfig,
        credentials: tuple[str, str] = TRADER,
        run_id: str | None = None,
    ) -> None:
        if not instruments:
            raise ShardlineError("the order load needs at least one instrument")
        self.base_url = base_url.rstrip("/")
        self.instruments = list(instruments)
        self.config = config
        self.credentials = credentials
        self.run_id = run_id or uuid.uuid4().hex[:6]
        self.ledger: list[OrderOutcome] = []
        self.ltp: dict[str, Decimal] = {}
        self.stop = asyncio.Event()
        self.started_at = 0.0
        self.last_ack_s = 0.0  # when the latest acknowledgement arrived, from the start
        self._token = ""
        self._signed_in = asyncio.Lock()

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> list[OrderOutcome]:
        """Offer orders for `config.seconds` (or until `stop` is set); returns the ledger."""
        limits = httpx.Limits(
            max_connections=self.config.concurrency + 2, max_keepalive_connections=self.config.concurrency + 2
        )
        timeout = httpx.Timeout(self.config.request_timeout_s)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=timeout) as http:
            await self.sign_in(http)
            await self.refresh_prices(http, wait_for_all=True)
            queue: asyncio.Queue[OrderOutcome | None] = asyncio.Queue()
            prices = asyncio.create_task(self._follow_prices(http))
            workers = [asyncio.create_task(self._work(http, queue)) for _ in range(self.config.concurrency)]
            try:
                await self._schedule(queue)
            finally:
                for _ in workers:
                    queue.put_nowait(None)
                await asyncio.gather(*workers, return_exceptions=True)
                prices.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prices
        return self.ledger

    async def _schedule(self, queue: asyncio.Queue[OrderOutcome | None]) -> None:
        rate = self.config.rate_per_s
        total = math.floor(rate * self.config.seconds)
        self.started_at = time.monotonic()
        for n in range(total):
            due = n / rate
            wait = self.started_at + due - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), wait)  # the schedule, not a race
            if self.stop.is_set():
                return
            outcome = self._next_order(n, due)
            self.ledger.append(outcome)
            queue.put_nowait(outcome)

    def _next_order(self, n: int, due: float) -> OrderOutcome:
        instrument = self.instruments[n % len(self.instruments)]
        # Alternate sides per instrument so positions stay near flat and inside the risk limits.
        side = "BUY" if (n // len(self.instruments)) % 2 == 0 else "SELL"
        kind = ORDER_MIX[n % len(ORDER_MIX)]
        return OrderOutcome(f"L{self.run_id}-{n}", instrument.key, side, kind, due)

    def order_body(self, outcome: OrderOutcome) -> dict[str, Any]:
        instrument = next(i for i in self.instruments if i.key == outcome.instrument)
        body: dict[str, Any] = {
            "client_order_id": outcome.client_order_id,
            "instrument": instrument.key,
            "side": outcome.side,
            "quantity": instrument.lot * self.config.quantity_lots,
            "book": self.config.book,
            "product": "INTRADAY",
            "order_type": "MARKET",
        }
        if outcome.kind != "market":
            ltp = self.ltp[instrument.key]
            # Through the touch (fills now) or 3% away (rests), well inside the ±10% price band.
            away = Decimal("0.01") if outcome.kind == "limit_marketable" else Decimal("-0.03")
            buy = outcome.side == "BUY"
            target = ltp * (1 + away) if buy else ltp * (1 - away)
            price = to_tick(target, instrument.tick, ROUND_CEILING if buy else ROUND_FLOOR)
            body |= {"order_type": "LIMIT", "price": str(max(price, instrument.tick))}
        return body

    async def _work(self, http: httpx.AsyncClient, queue: asyncio.Queue[OrderOutcome | None]) -> None:
        # Orders still queued this long after the window are not sent: the run measures a window,
        # and a system that fell behind shows it here (and in the schedule lag), not by running on.
        closes_at = self.started_at + self.config.seconds + max(DRAIN_S, self.config.retry_for_s)
        while (outcome := await queue.get()) is not None:
            if time.monotonic() > closes_at:
                outcome.error = NOT_SENT
                continue
            await self.place(http, outcome)

    async def place(self, http: httpx.AsyncClient, outcome: OrderOutcome) -> OrderOutcome:
        """POST the order; retry refusals that may pass later with the same client order id."""
        body = self.order_body(outcome)
        outcome.sent_s = time.monotonic() - self.started_at
        give_up_at = time.monotonic() + self.config.retry_for_s
        pause = 0.05
        while True:
            outcome.attempts += 1
            started = time.perf_counter()
            retry_after = 0.0
            try:
                response = await http.post(
                    "/api/v1/orders", json=body, headers={"Authorization": f"Bearer {self._token}"}
                )
            except httpx.HTTPError as err:
                outcome.error = type(err).__name__
                outcome.http_status = None
            else:
                elapsed = time.perf_counter() - started
                outcome.http_status = response.status_code
                answer = _json(response)
                if response.is_success:
                    self.last_ack_s = time.monotonic() - self.started_at
                    outcome.latency_s = elapsed
                    outcome.status = str(answer.get("status", ""))
                    outcome.reason = str(answer.get("reason", ""))
                    outcome.error = ""
                    break
                outcome.error = str(answer.get("error") or f"http_{response.status_code}")
                outcome.reason = str(answer.get("message", ""))[:300]
                if response.status_code == 401:
                    await self.sign_in(http, stale=self._token)
                    continue
                if response.status_code not in RETRY_STATUSES:
                    break
                retry_after = float(response.headers.get("retry-after", 0) or 0)
            if time.monotonic() >= give_up_at:
                break
            await asyncio.sleep(max(pause, min(retry_after, 2.0)))  # back-off between retries
            pause = min(pause * 2, 1.0)
        outcome.answered_at_s = time.monotonic() - self.started_at
        return outcome

    # -- session and prices ------------------------------------------------------------------

    async def sign_in(self, http: httpx.AsyncClient, stale: str | None = None) -> str:
        """Log in (once for all workers; again only if `stale` is still the current token)."""
        async with self._signed_in:
            if self._token and self._token != stale:
                return self._token
            deadline = time.monotonic() + max(30.0, self.config.retry_for_s)
            while True:
                try:
                    response = await http.post(
                        "/api/v1/auth/login",
                        json={"username": self.credentials[0], "password": self.credentials[1]},
                    )
                    if response.is_success:
                        self._token = str(response.json()["access_token"])
                        return self._token
                    if response.status_code not in RETRY_STATUSES or time.monotonic() > deadline:
                        raise ShardlineError(
                            f"login refused: HTTP {response.status_code} {response.text[:200]}"
                        )
                except httpx.HTTPError as err:
                    if time.monotonic() > deadline:
                        raise ShardlineError(
                            f"the terminal at {self.base_url} did not answer a login: {err}"
                        ) from None
                await asyncio.sleep(0.2)  # the terminal is (re)starting

    async def refresh_prices(self, http: httpx.AsyncClient, wait_for_all: bool = False) -> None:
        """Last prices of the instruments, from the terminal's quotes route."""
        deadline = time.monotonic() + 120
        while True:
            for start in range(0, len(self.instruments), 50):
                keys = [i.key for i in self.instruments[start : start + 50]]
                with contextlib.suppress(httpx.HTTPError):
                    response = await http.get(
                        "/api/v1/quotes",
                        params=[("instruments", k) for k in keys],
                        headers={"Authorization": f"Bearer {self._token}"},
                    )
                    if response.is_success:
                        for quote in response.json():
                            if quote.get("ltp") and Decimal(quote["ltp"]) > 0:
                                self.ltp[quote["instrument"]] = Decimal(quote["ltp"])
            if not wait_for_all or len(self.ltp) == len(self.instruments):
                return
            if time.monotonic() > deadline:
                missing = sorted({i.key for i in self.instruments} - set(self.ltp))
                raise ShardlineError(f"no last price within 120 s for {', '.join(missing[:5])}")
            await asyncio.sleep(0.25)  # quotes start once the feed streams

    async def _follow_prices(self, http: httpx.AsyncClient) -> None:
        while True:
            await asyncio.sleep(1.0)  # a terminal refreshes its quotes about this often
            await self.refresh_prices(http)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def load_instruments(
    base_url: str, keys: Sequence[str], credentials: tuple[str, str] = TRADER
) -> list[LoadInstrument]:
    """Tick and lot sizes of `keys`, from the terminal's instrument route."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        login = await http.post(
            "/api/v1/auth/login", json={"username": credentials[0], "password": credentials[1]}
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        out = []
        for key in keys:
            response = await http.get(f"/api/v1/instruments/{key}", headers=headers)
            response.raise_for_status()
            data = response.json()
            out.append(LoadInstrument(key, Decimal(data["tick_size"]), int(data["lot_size"])))
        return out


# ----------------------------------------------------------------------------------- reconciling


@dataclass
class OrderReconciliation:
    """Every order of one book accounted for: the client's ledger, the journal, the venue.

    `lost` and `duplicated` are the two numbers that must be zero. The lists hold examples.
    """

    ordered: int = 0  # client order ids the client offered
    acknowledged: int = 0  # answered 2xx
    unanswered: int = 0  # never got a 2xx (the client knows it failed)
    at_execution: int = 0
    at_venue: int = 0
    lost: int = 0
    duplicated: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    problems: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    positions_exact: bool = True
    position_mismatches: list[str] = field(default_factory=list)

    def note(self, kind: str, example: str) -> None:
        self.problems[kind] += 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < 5:
            examples.append(example)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ordered": self.ordered,
            "acknowledged": self.acknowledged,
            "unanswered": self.unanswered,
            "at_execution": self.at_execution,
            "at_venue": self.at_venue,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "statuses": dict(sorted(self.statuses.items())),
            "rejects_by_reason": dict(sorted(self.rejects_by_reason.items())),
            "problems": dict(sorted(self.problems.items())),
            "problem_examples": self.examples,
            "positions_exact": self.positions_exact,
            "position_mismatches": self.position_mismatches[:10],
        }


def _field(row: Any, name: str, default: Any = None) -> Any:
    return row.get(name, default) if isinstance(row, Mapping) else getattr(row, name, default)


def _status(row: Any) -> str:
    value = _field(row, "status", "")
    return str(getattr(value, "value", value))


TERMINAL = frozenset({"FILLED", "CANCELLED", "REJECTED"})


def reconcile_orders(
    ledger: Sequence[OrderOutcome],
    execution_orders: Sequence[Any],
    venue_orders: Sequence[Any],
    venue_trades: Sequence[Any],
    venue_positions: Sequence[Any],
    execution_positions: Mapping[str, int] | None = None,
    classify: Any = None,
) -> OrderReconciliation:
    """Account for every order of one book exactly once.

    Parameters
    ----------
    ledger
        The client's orders (every client order id it offered, answered or not).
    execution_orders, venue_orders
        The execution actor's and the venue's orders of the book (`OrderUpdate`s or dicts).
    venue_trades
        The venue's trades of the book (each with client_order_id, trade_id, side, quantity).
    venue_positions
        The venue's positions of the book (instrument, quantity).
    execution_positions
        The execution actor's net quantity by instrument, if known (its risk view).

    Lost: the API acknowledged it but the journal has no such order; or the journal says it went
    to the venue and the venue never heard of it. Duplicated: an order nobody placed; a trade
    booked twice; fills beyond an order's quantity; the venue and the journal disagreeing on what
    filled.
    """
    from cluster.metrics import classify_reject_reason

    classify = classify or classify_reject_reason
    out = OrderReconciliation(ordered=len(ledger))
    by_id = {o.client_order_id: o for o in ledger}
    execution = {_field(o, "client_order_id"): o for o in execution_orders}
    venue = {_field(o, "client_order_id"): o for o in venue_orders}
    out.at_execution, out.at_venue = len(execution), len(venue)
    if len(by_id) != len(ledger):
        out.duplicated += len(ledger) - len(by_id)
        out.note("ledger_reused_id", "the client offered an id twice")
    for outcome in ledger:
        if outcome.acknowledged:
            out.acknowledged += 1
        else:
            out.unanswered += 1
        known = execution.get(outcome.client_order_id)
        if known is None:
            if outcome.acknowledged:
                out.lost += 1
                out.note("acknowledged_not_journaled", outcome.client_order_id)
            continue
        if not outcome.acknowledged:
            # Not lost and not doubled, but the client was told it failed: a trader would resend.
            out.note("placed_but_client_told_it_failed", f"{outcome.client_order_id}: {outcome.error}")
        status = _status(known)
        out.statuses[status] = out.statuses.get(status, 0) + 1
        if status == "REJECTED":
            reason = str(_field(known, "reason", ""))
            cls = classify(reason)
            out.rejects_by_reason[cls] = out.rejects_by_reason.get(cls, 0) + 1
    for coid in execution.keys() - by_id.keys():
        out.duplicated += 1
        out.note("journaled_but_never_ordered", str(coid))
    for coid in venue.keys() - execution.keys():
        out.duplicated += 1
        out.note("at_venue_not_journaled", str(coid))

    filled_by_trades: Counter[str] = Counter()
    seen_trades: set[str] = set()
    for trade in venue_trades:
        trade_id = str(_field(trade, "trade_id"))
        if trade_id in seen_trades:
            out.duplicated += 1
            out.note("trade_booked_twice", trade_id)
            continue
        seen_trades.add(trade_id)
        filled_by_trades[str(_field(trade, "client_order_id"))] += int(_field(trade, "quantity", 0))

    for coid, order in execution.items():
        status = _status(order)
        at_venue = venue.get(coid)
        if at_venue is None:
            # Refused by risk (or lost before sending and said so): never sent, so never at the venue.
            if status != "REJECTED":
                out.lost += 1
                out.note("sent_but_unknown_to_venue", str(coid))
            continue
        venue_status = _status(at_venue)
        if status in TERMINAL and venue_status in TERMINAL and status != venue_status:
            out.note("status_disagrees", f"{coid}: journal {status}, venue {venue_status}")
        filled = int(_field(order, "filled_quantity", 0))
        booked = filled_by_trades.get(str(coid), 0)
        venue_filled = int(_field(at_venue, "filled_quantity", booked))
        quantity = int(_field(at_venue, "quantity", 0) or 0) or None
        if booked != venue_filled:
            out.note("venue_trades_disagree_with_its_order", f"{coid}: trades {booked}, order {venue_filled}")
        if booked != filled:
            out.note("journal_fills_disagree_with_venue", f"{coid}: journal {filled}, venue trades {booked}")
        if quantity is not None and booked > quantity:
            out.note("overfilled", f"{coid}: {booked} > {quantity}")
        # One order counts once, whichever of the three views gave it away.
        if booked > filled or booked > venue_filled or (quantity is not None and booked > quantity):
            out.duplicated += 1
        elif booked < filled or booked < venue_filled:
            out.lost += 1

    expected: Counter[str] = Counter()
    for trade in {str(_field(t, "trade_id")): t for t in venue_trades}.values():
        side = str(getattr(_field(trade, "side"), "value", _field(trade, "side")))
        qty = int(_field(trade, "quantity", 0))
        expected[str(_field(trade, "instrument"))] += qty if side == "BUY" else -qty
    held: Counter[str] = Counter()
    for position in venue_positions:
        held[str(_field(position, "instrument"))] += int(_field(position, "quantity", 0))
    for instrument in sorted(set(expected) | set(held)):
        if expected[instrument] != held[instrument]:
            out.positions_exact = False
            out.position_mismatches.append(
                f"{instrument}: trades net {expected[instrument]}, venue position {held[instrument]}"
            )
        if execution_positions is not None and execution_positions.get(instrument, 0) != held[instrument]:
            out.positions_exact = False
            out.position_mismatches.append(
                f"{instrument}: execution {execution_positions.get(instrument, 0)}, venue {held[instrument]}"
            )
    return out


def execution_net_positions(risk_state: Any, book: str) -> dict[str, int]:
    """The execution actor's net quantity by instrument for `book`, from its risk state."""
    books = _field(risk_state, "books", {}) or {}
    state = books.get(book) if isinstance(books, Mapping) else None
    if state is None:
        return {}
    net: Counter[str] = Counter()
    for key, quantity in (_field(state, "positions", {}) or {}).items():
        net[str(key).split("|", 1)[0]] += int(quantity)
    return dict(net)


# ----------------------------------------------------------------------------------- a private system


def system_config(
    data_dir: str, port: int, tick_rate: int | None = None, shards: int | None = None
) -> ShardlineConfig:
    """The shipped config on a private data dir and port, with the per-user order limit lifted
    (the load is one user at hundreds of orders a second; the limit is for people)."""
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["data_dir"] = data_dir
    data["serve"]["port"] = port
    data["serve"]["cors_origins"] = [f"http://127.0.0.1:{port}"]
    data["serve"]["order_rate_per_user_per_s"] = 100_000
    if tick_rate is not None:
        data["sim"]["tick_rate"] = tick_rate
    if shards is not None:
        for deployment in data["deployments"]:
            deployment["shards"] = shards
    return parse_config(data, "load config")


@contextlib.contextmanager
def private_system(config: ShardlineConfig, num_cpus: int = 2) -> Iterator[dict[str, Any]]:
    """`shardline up` on a private local Ray (never a running cluster); everything stops after."""
    import ray
    from ray import serve

    from cluster import launcher

    os.environ.pop("RAY_ADDRESS", None)
    for attempt in range(3):
        try:
            ray.init(
                address="local",
                num_cpus=num_cpus,
                namespace=NAMESPACE,
                resources={config.execution.pin_resource: 1.0},
                include_dashboard=False,
                log_to_driver=False,
            )
            break
        except Exception as err:  # Ray gives its raylet 30 s to register; a busy machine can miss that
            ray.shutdown()
            if attempt == 2:
                raise ShardlineError(f"could not start a private Ray: {err}") from None
            log.warning("private Ray did not start (%s); trying again", err)
    try:
        state = launcher.up(config)
        yield state
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def book_view(book: str) -> dict[str, Any]:
    """The execution actor's and the venue's orders, trades and positions of `book` (via Ray)."""
    import ray

    execution = ray.get_actor("execution", namespace=NAMESPACE)
    portfolio = ray.get_actor("portfolio", namespace=NAMESPACE)
    answers: list[Any] = ray.get(
        [
            execution.orders.remote(book),
            portfolio.orders.remote(book),
            portfolio.trades.remote(book),
            portfolio.positions.remote(book),
            execution.risk_state.remote(),
        ],
        timeout=60,
    )
    orders, venue_orders, trades, positions, risk = answers
    return {
        "execution_orders": orders,
        "venue_orders": venue_orders,
        "venue_trades": trades,
        "venue_positions": positions,
        "execution_positions": execution_net_positions(risk, book),
    }


def settled_view(book: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """`book_view` once every journaled order has reached the venue (or was refused) and the two
    agree on every order's fills, or at the deadline: an order is journaled before it is sent, and
    fills reach the execution actor a moment after the venue books them."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = book_view(book)
        venue = {_field(o, "client_order_id"): o for o in view["venue_orders"]}
        on_its_way = any(
            _field(o, "client_order_id") not in venue and _status(o) != "REJECTED"
            for o in view["execution_orders"]
        )
        agreed = not on_its_way and all(
            int(_field(o, "filled_quantity", 0)) == int(_field(venue[c], "filled_quantity", 0))
            and (_status(o) == _status(venue[c]) or _status(venue[c]) not in TERMINAL)
            for c, o in ((_field(o, "client_order_id"), o) for o in view["execution_orders"])
            if c in venue
        )
        if agreed or time.monotonic() > deadline:
            view["settled"] = agreed
            return view
        time.sleep(0.2)  # venue reports are on their way to the execution actor


def order_figures(ledger: Sequence[OrderOutcome], seconds: float) -> dict[str, Any]:
    """Latency, schedule lag and answers of a ledger."""
    acked = [o for o in ledger if o.acknowledged]
    http = Counter(o.error or str(o.http_status) for o in ledger if not o.acknowledged and o.attempts)
    answered = Counter(o.status for o in acked)
    return {
        "orders_offered": len(ledger),
        "orders_sent": sum(1 for o in ledger if o.attempts),
        "orders_not_sent_in_window": sum(1 for o in ledger if o.error == NOT_SENT),
        "orders_acknowledged": len(acked),
        "achieved_per_s": round(len(acked) / seconds, 1) if seconds else 0.0,
        "submit_to_ack_ms": percentiles_ms([o.latency_s for o in acked if o.latency_s is not None]),
        "schedule_lag_ms": percentiles_ms([max(0.0, o.sent_s - o.due_s) for o in ledger if o.attempts]),
        "answered_status": dict(sorted(answered.items())),
        "refused_by_api": dict(sorted(http.items())),
        "retried": sum(1 for o in ledger if o.attempts > 1),
        "by_kind_ms": {
            kind: percentiles_ms([o.latency_s for o in acked if o.kind == kind and o.latency_s is not None])
            for kind in sorted(set(ORDER_MIX))
        },
    }


def run(
    rate_per_s: float,
    seconds: float,
    concurrency: int = 32,
    instruments: int = 20,
    tick_rate: int | None = None,
) -> dict[str, Any]:
    """The whole benchmark on a private system; returns its JSON-able figures."""
    config_load = OrderLoadConfig(rate_per_s=rate_per_s, seconds=seconds, concurrency=concurrency)
    with tempfile.TemporaryDirectory(prefix="shardline-orders-") as tmp:
        port = free_port()
        config = system_config(str(Path(tmp) / "data"), port, tick_rate)
        with private_system(config) as state:
            return _measure(state["serve_url"], config, config_load, instruments)


def deployment_keys(config: ShardlineConfig, count: int) -> list[str]:
    """Instruments the running topology streams (the first deployment's universe), up to `count`."""
    from catalog.sources import load_default_catalog
    from cluster.launcher import resolve_universes

    universes = resolve_universes(config, load_default_catalog(config))
    keys = next(iter(universes.values()), [])
    if not keys:
        raise ShardlineError("the config has no deployment, so nothing streams quotes to trade on")
    return keys[:count]


def _measure(
    base_url: str, config: ShardlineConfig, load_config: OrderLoadConfig, instruments: int
) -> dict[str, Any]:
    keys = deployment_keys(config, instruments)
    chosen = asyncio.run(load_instruments(base_url, keys))
    load = RestOrderLoad(base_url, chosen, load_config)
    process = psutil.Process()
    cpu_before = process.cpu_times()
    started = time.perf_counter()
    ledger = asyncio.run(load.run())
    elapsed = time.perf_counter() - started
    cpu_after = process.cpu_times()
    view = settled_view(load_config.book)
    reconciliation = reconcile_orders(
        ledger,
        view["execution_orders"],
        view["venue_orders"],
        view["venue_trades"],
        view["venue_positions"],
        view["execution_positions"],
    )
    client_cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return {
        "bench": "orders",
        "path": "rest",
        "offered_per_min": round(load_config.rate_per_s * 60),
        "offered_per_s": round(load_config.rate_per_s, 2),
        "window_s": load_config.seconds,
        "seconds": round(elapsed, 2),
        "concurrency": load_config.concurrency,
        "instruments": len(chosen),
        "tick_rate": config.sim.tick_rate,
        **order_figures(ledger, elapsed),
        "lost": reconciliation.lost,
        "duplicated": reconciliation.duplicated,
        "rejects_by_reason": reconciliation.rejects_by_reason,
        "reconciliation": reconciliation.as_dict(),
        "settled": view["settled"],
        "client_cpu_pct": round(100 * client_cpu / elapsed, 1) if elapsed else 0.0,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }
