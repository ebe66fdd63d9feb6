"""The order-update socket: Angel pushes every order change as JSON; we hand on our view of it.

Messages are `{"user-id", "status-code", "order-status", "error-message", "orderData"}` with
AB00 (connected) first, then AB01..AB11 as orders change; each becomes a `BrokerOrder` whose
status is one of `actors.orders.OrderStatus`. The socket is kept open with a `ping` heartbeat and
a stall watchdog, and reopened with back-off when it drops. Updates sent while it was down are
not replayed by the broker, so `on_reconnected` is the cue to reconcile against the order book.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec

from actors.angel.errors import LoginError
from actors.angel.schemas import BrokerOrder, OrderUpdateMessage, WireFormatError
from actors.angel.stream import HeaderSource, StreamAuthError, reconnect_delay
from cluster.config import FeedConfig

log = logging.getLogger(__name__)

OrderUpdateSink = Callable[[BrokerOrder], Awaitable[None] | None]


def parse_order_update(text: str) -> BrokerOrder | None:
    """One socket message as our order view; None for messages about no order (AB00).

    Raises
    ------
    WireFormatError
        When the message is not an order update.
    """
    try:
        message = msgspec.json.decode(text, type=OrderUpdateMessage, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as err:
        raise WireFormatError(f"order update {text[:120]!r}: {err}") from None
    return message.parse_to_order()


class OrderUpdateClient:
    """Keeps one order-update socket open and passes each order change to `on_update`.

    Parameters
    ----------
    url : str
        The order-update socket URL (Angel's, or the simulator's `order_url`).
    headers : Callable[[], Awaitable[Mapping[str, str]]]
        Handshake headers (`Authorization: Bearer <jwt>`), asked for before every connect.
    on_update : Callable[[BrokerOrder], Awaitable[None] | None]
        Gets each order change, in the order the broker sent them.
    config : FeedConfig
        Heartbeat, stall and reconnect settings.
    on_auth_refused : Callable[[], Awaitable[None]], optional
        Called when the server refuses the token (renew the session there).
    on_reconnected : Callable[[], Awaitable[None]], optional
        Called after every reconnect (not the first connect): reconcile missed updates.
    """

    def __init__(
        self,
        url: str,
        headers: HeaderSource,
        on_update: OrderUpdateSink,
        config: FeedConfig | None = None,
        *,
        on_auth_refused: Callable[[], Awaitable[None]] | None = None,
        on_reconnected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.url = url
        self.config = config or FeedConfig()
        self._headers = headers
        self._on_update = on_update
        self._on_auth_refused = on_auth_refused
        self._on_reconnected = on_reconnected
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self.fatal_error: LoginError | None = None  # set when a refused login stopped the socket
        self.connected = asyncio.Event()
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "connects",
                "reconnects",
                "updates",
                "greetings",
                "malformed",
                "pongs",
                "stalls",
                "auth_refusals",
            ),
            0,
        )

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._http = aiohttp.ClientSession()
        self._task = asyncio.ensure_future(self._keep_open())

    async def stop(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def _keep_open(self) -> None:
        failures = 0
        while self._running:
            try:
                self._ws = await self._open()
            except StreamAuthError as err:
                self.counts["auth_refusals"] += 1
                log.warning("order-update socket: token refused (%s); renewing the session", err)
                failures += 1
                try:
                    if self._on_auth_refused is not None:
                        await self._on_auth_refused()
                except LoginError as login:
                    self._give_up(login)
                    return
                except Exception as renew:  # e.g. the broker unreachable: try again later
                    log.warning("order-update socket: session renewal failed: %s", renew)
                await asyncio.sleep(reconnect_delay(self.config, failures))
                continue
            except LoginError as err:
                # Wrong PIN or TOTP: retrying would only lock the account. Say so and stop.
                self._give_up(err)
                return
            except Exception as err:  # refused, unreachable, timed out, broker error: retry later
                failures += 1
                pause = reconnect_delay(self.config, failures)
                log.warning("order-update socket: cannot connect (%s); retrying in %.2f s", err, pause)
                await asyncio.sleep(pause)
                continue
            self.counts["connects"] += 1
            reconnected = self.counts["connects"] > 1
            if reconnected:
                self.counts["reconnects"] += 1
            self.connected.set()
            try:
                if reconnected and self._on_reconnected is not None:
                    await self._on_reconnected()
                if await self._serve(self._ws):
                    failures = 0
            except (ConnectionError, aiohttp.ClientError) as err:
                log.info("order-update socket: %s", err)
            except Exception:  # a bug here must not end the updates: log it and reconnect
                log.exception("order-update socket failed")
            finally:
                self.connected.clear()
                ws, self._ws = self._ws, None
                with contextlib.suppress(Exception):
                    await ws.close()
            if self._running:
                failures += 1
                pause = reconnect_delay(self.config, failures)
                log.info("order-update socket closed; reconnecting in %.2f s", pause)
                await asyncio.sleep(pause)

    def _give_up(self, err: LoginError) -> None:
        self.fatal_error = err
        log.error("order-update socket: giving up, the login is refused: %s", err)

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        assert self._http is not None
        headers = dict(await self._headers())
        try:
            return await self._http.ws_connect(
                self.url,
                headers=headers,
                autoping=True,
                compress=0,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            )
        except aiohttp.WSServerHandshakeError as err:
            if err.status == 401:
                raise StreamAuthError(err.message) from None
            raise ConnectionError(f"handshake refused: HTTP {err.status} {err.message}") from None

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Receive until the socket closes or stalls; True if anything arrived."""
        received = [0]
        receiver = asyncio.ensure_future(self._receive(ws, received))
        helpers = [
            asyncio.ensure_future(self._heartbeat(ws)),
            asyncio.ensure_future(self._watch(ws, received, receiver)),
        ]
        try:
            # `wait`, not `await receiver`: the watchdog cancelling the receiver is a stall to
            # recover from, not a cancellation of this task.
            await asyncio.wait({receiver})
            error = None if receiver.cancelled() else receiver.exception()
            if error is not None:
                raise error
        finally:
            for task in helpers:
                task.cancel()
            receiver.cancel()
            await asyncio.gather(receiver, *helpers, return_exceptions=True)
        return received[0] > 0

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse, received: list[int]) -> None:
        async for msg in ws:
            received[0] += 1
            if msg.type is aiohttp.WSMsgType.TEXT:
                await self._on_text(msg.data)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                return

    async def _on_text(self, text: str) -> None:
        if text == "pong":
            self.counts["pongs"] += 1
            return
        try:
            order = parse_order_update(text)
        except WireFormatError as err:
            self.counts["malformed"] += 1
            log.warning("%s", err)
            return
        if order is None:
            self.counts["greetings"] += 1
            return
        self.counts["updates"] += 1
        try:
            result: Any = self._on_update(order)
            if inspect.isawaitable(result):
                await result
        except Exception:  # the consumer's bug: count it, keep the socket
            self.counts["callback_errors"] += 1
            log.exception("order-update callback failed on order %s", order.venue_order_id)

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            await ws.send_str("ping")

    async def _watch(
        self, ws: aiohttp.ClientWebSocketResponse, received: list[int], receiver: asyncio.Task[None]
    ) -> None:
        """Silence for half the stall timeout earns a `ping` probe; for all of it, a reconnect."""
        half = self.config.stall_timeout_s / 2
        seen, probed = received[0], False
        while True:
            await asyncio.sleep(half)
            if received[0] != seen:
                seen, probed = received[0], False
                continue
            if not probed:
                probed = True
                with contextlib.suppress(Exception):
                    await ws.send_str("ping")
                continue
            self.counts["stalls"] += 1
            log.warning("order-update socket: nothing for %.1f s; reconnecting", self.config.stall_timeout_s)
            receiver.cancel()
            return
