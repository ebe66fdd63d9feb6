"""The terminal's WebSocket: authenticate, subscribe to channels, receive conflated state.

Protocol (JSON text frames; the server may batch several messages into one JSON array frame):

client → server
    ``{"type": "auth", "token": "<access token>"}``   first message; again later to extend the session
    ``{"type": "subscribe", "channels": ["quote:NSE:3045", "orders"], "id": 7}``
    ``{"type": "unsubscribe", "channels": [...]}``
    ``{"type": "ack", "frames": 40}``                   how many frames the client has handled so far
    ``{"type": "ping", "id": 8}``
server → client
    ``{"type": "authenticated", "user": ..., "role": ..., "expires_at": ..., "heartbeat_s": ...,
    "ack_window": 32}``
    ``{"type": "snapshot", "channel": ..., "data": ...}``       once per subscribe, before updates
    ``{"type": "update", "channel": ..., "key": ..., "data": ...}``
    ``{"type": "heartbeat", "ts": <epoch ms>}``, ``{"type": "pong", "id": 8}``
    ``{"type": "error", "code": ..., "message": ..., "id": <the request's id>}``

One `Broadcaster` per replica receives every hub update once, keeps the latest market state, and
offers each update to the outboxes of the sessions subscribed to its channel. Offering never
waits: each session has its own sender task, so a slow socket only delays itself, and its outbox
holds latest state only (see `serve.conflation`).

Flow control is by acknowledgement, not by the socket: behind Serve's proxy a replica's ``send``
never blocks (the proxy queues), so the replica cannot see a slow client through the socket. A
client may have at most ``ack_window`` frames sent and not yet acknowledged; past that its updates
wait in its outbox, where newer state replaces older.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from serve.candles import CandleBuilder
from serve.channels import CANDLE_INTERVALS, Channel, ChannelError, ChannelKind, parse_channel
from serve.conflation import ConflatingOutbox
from serve.errors import TerminalError
from serve.hub import HubUpdate
from serve.present import present
from serve.security import AccessGrant, AuthError, PermissionDenied, TokenIssuer

if TYPE_CHECKING:
    from serve.service import TerminalService

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
MAX_MESSAGE_BYTES = 64 * 1024
MAX_SUBSCRIPTIONS = 500
ACK_WINDOW = 32  # frames a client may be behind before its updates wait (and conflate)
RECENT_ALERTS = 50

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def frame(message: dict[str, Any]) -> str:
    return _encode(message).decode()


async def receive_frame(websocket: WebSocket) -> str | bytes:
    """The next text or binary frame (`receive_text` would raise KeyError on a binary one)."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    text = message.get("text")
    return text if text is not None else bytes(message.get("bytes") or b"")


@dataclass
class BroadcastStats:
    hub_updates: int = 0
    frames_sent: int = 0
    messages_sent: int = 0
    sessions_opened: int = 0
    auth_failures: int = 0
    bad_messages: int = 0


@dataclass(eq=False)
class ClientSession:
    websocket: WebSocket
    outbox: ConflatingOutbox
    grant: AccessGrant | None = None
    channels: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closing: tuple[int, str] | None = None  # set to close once the outbox is flushed
    frames_sent: int = 0
    frames_acked: int = 0

    def close_after_flush(self, code: int, reason: str) -> None:
        self.closing = (code, reason[:120])
        self.wake.set()

    def push_first(self, message: dict[str, Any]) -> None:
        self.outbox.put_first(frame(message))
        self.wake.set()


class Broadcaster:
    """Latest market state for one replica, and the sessions subscribed to it.

    Parameters
    ----------
    service
        For snapshots of account state (orders, positions, deployments) and instrument scales.
    tokens
        Verifies the access token a client authenticates with.
    max_rate_hz
        Updates per channel per client per second.
    heartbeat_s
        How often each client hears from the server when nothing else is sent.
    auth_timeout_s
        How long a new connection may take to authenticate.
    replica
        This replica's name, told to each client when it authenticates (for logs and tests).
    ack_window
        Frames a client may have unacknowledged before its updates wait in its outbox.
    clock, monotonic
        Wall time (token expiry) and a monotonic clock (rates), passed in for tests.
    """

    def __init__(
        self,
        service: TerminalService,
        tokens: TokenIssuer,
        max_rate_hz: float,
        heartbeat_s: float = 10.0,
        auth_timeout_s: float = 5.0,
        replica: str = "local",
        ack_window: int = ACK_WINDOW,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._tokens = tokens
        self._max_rate_hz = max_rate_hz
        self.heartbeat_s = heartbeat_s
        self._auth_timeout_s = auth_timeout_s
        self.replica = replica
        self._ack_window = ack_window
        self._clock = clock
        self._monotonic = monotonic
        self._subscribers: dict[str, set[ClientSession]] = {}
        self._sessions: set[ClientSession] = set()
        self._latest: dict[str, dict[str, Any]] = {}  # quote/depth channel -> raw data (paise)
        self._alerts: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)
        self._candles: dict[str, dict[str, CandleBuilder]] = {}  # instrument -> interval -> builder
        self._keys_by_iid: dict[str, str] = {}
        self._scales: dict[str, int] = {}  # minor units per rupee, by instrument
        self._closes: dict[str, int] = {}  # previous close by instrument, for day change
        self._closes_wanted: set[str] = set()
        self._closes_missing: set[str] = set()  # the broker had no close: asked again only hourly
        self._closes_missing_since = 0.0
        self._followed: set[str] = set()  # instruments this replica asked the feed to stream
        self.stats = BroadcastStats()
        self._closed_conflated = 0
        self.hub_ready = asyncio.Event()

    # Hub side: called once per batch of hub updates, never waits -----------------------------------

    def deliver(self, updates: list[HubUpdate]) -> None:
        self.stats.hub_updates += len(updates)
        for update in updates:
            try:
                self._deliver_one(update)
            except Exception:  # one malformed update must not stop the feed
                logger.exception("dropping malformed hub update on %s", update.channel)

    def _deliver_one(self, update: HubUpdate) -> None:
        channel, key, data = update.channel, update.key, update.data
        if channel == "quote":  # keyed by catalog iid: resolve it with this replica's catalog
            view = self._instrument_of(key)
            if view is None:
                return
            channel, key = f"quote:{view}", ""
        kind = channel.partition(":")[0]
        instrument: str | None
        if kind in ("quote", "depth"):
            instrument = channel.partition(":")[2]
            if kind == "quote":
                close = self._closes.get(instrument)
                if close is None and instrument not in self._closes_missing:
                    self._closes_wanted.add(instrument)
                elif "close" not in data:
                    data = {**data, "close": close}
                self._update_candles(instrument, data)
            self._latest[channel] = data
        else:
            instrument = data.get("instrument") if isinstance(data, dict) else None
            if kind == "alerts":
                self._alerts.append(data)
            elif kind == "orders" and isinstance(data, dict):
                self._service.remember_order(key, data)
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return
        body = self._present(data, instrument)
        text = frame({"type": "update", "channel": channel, "key": key, "data": body})
        for session in subscribers:
            session.outbox.offer(channel, key, text)
            session.wake.set()

    def _instrument_of(self, iid_text: str) -> str | None:
        key = self._keys_by_iid.get(iid_text)
        if key is None:
            try:
                view = self._service.catalog.by_iid(int(iid_text))
            except (TerminalError, ValueError):
                return None
            if view is None:
                return None
            key = self._keys_by_iid[iid_text] = view.key
        return key

    def _present(self, data: dict[str, Any], instrument: str | None) -> Any:
        scale = 100
        if instrument:
            if instrument not in self._scales:
                self._scales[instrument] = self._service.price_scale(instrument)
            scale = self._scales[instrument]
        body = present(data, scale)
        if instrument and isinstance(body, dict):
            body.setdefault("instrument", instrument)
        return body

    def _update_candles(self, instrument: str, quote: dict[str, Any]) -> None:
        builders = self._candles.get(instrument)
        if not builders:
            return
        ltp = int(quote.get("ltp") or 0)
        ts_ns = int(quote.get("ts_ns") or quote.get("ts_exchange_ns") or 0) or time.time_ns()
        volume = int(quote.get("volume") or 0)
        for interval, builder in builders.items():
            candle = builder.update(ts_ns, ltp, volume)
            if candle is None:
                continue
            channel = f"candles:{instrument}:{interval}"
            text = frame(
                {
                    "type": "update",
                    "channel": channel,
                    "key": "",
                    "data": self._present(candle.as_dict(), instrument),
                }
            )
            for session in self._subscribers.get(channel, ()):
                session.outbox.offer(channel, "", text)
                session.wake.set()

    def quoted_instruments(self) -> list[str]:
        """Instruments this replica has a live quote for (what the feed is streaming)."""
        return [channel[6:] for channel in self._latest if channel.startswith("quote:")]

    # Client side -------------------------------------------------------------------------------

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def serve(self, websocket: WebSocket) -> None:
        """Run one client connection until it closes."""
        await websocket.accept()
        session = ClientSession(websocket, ConflatingOutbox(self._max_rate_hz))
        if not await self._authenticate_first(session):
            return
        session.frames_sent = 1  # the "authenticated" frame counts, as clients count every frame
        self._sessions.add(session)
        self.stats.sessions_opened += 1
        sender = asyncio.create_task(self._send_loop(session))
        receiver = asyncio.create_task(self._receive_loop(session))
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if session.closing is not None and not sender.done():
                # The receiver asked to close: give the sender a moment to flush the error and close.
                await asyncio.wait({sender}, timeout=2.0)
        finally:
            for task in (sender, receiver):
                task.cancel()
            for task in (sender, receiver):
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                    await task
            self._drop(session)

    async def _authenticate_first(self, session: ClientSession) -> bool:
        websocket = session.websocket
        try:
            text = await asyncio.wait_for(receive_frame(websocket), self._auth_timeout_s)
            message = self._parse(text)
            if message.get("type") != "auth":
                raise AuthError("the first message must be {'type': 'auth', 'token': ...}")
            self._authorise(session, message)
        except (TimeoutError, AuthError, ValueError) as err:
            self.stats.auth_failures += 1
            reason = "authentication timed out" if isinstance(err, TimeoutError) else str(err)
            with contextlib.suppress(Exception):
                await websocket.send_text(
                    frame({"type": "error", "code": "unauthenticated", "message": reason})
                )
                await websocket.close(CLOSE_UNAUTHENTICATED, reason[:120])
            return False
        except WebSocketDisconnect:
            return False
        await websocket.send_text(frame(self._authenticated(session)))
        return True

    def _authorise(self, session: ClientSession, message: dict[str, Any]) -> None:
        token = message.get("token")
        if not isinstance(token, str) or not token:
            raise AuthError("auth needs a 'token'")
        session.grant = self._tokens.verify_access(token, self._clock())

    def _authenticated(self, session: ClientSession) -> dict[str, Any]:
        assert session.grant is not None
        return {
            "type": "authenticated",
            "user": session.grant.user.username,
            "role": session.grant.user.role.value,
            "expires_at": session.grant.expires_at,
            "heartbeat_s": self.heartbeat_s,
            "max_rate_hz": self._max_rate_hz,
            "replica": self.replica,
            "ack_window": self._ack_window,
        }

    async def _receive_loop(self, session: ClientSession) -> None:
        websocket = session.websocket
        while True:
            text = await receive_frame(websocket)
            ref = None
            try:
                message = self._parse(text)
                ref = message.get("id")
                await self._handle(session, message)
            except (ValueError, ChannelError, PermissionDenied, AuthError, TerminalError) as err:
                self.stats.bad_messages += 1
                code = (
                    err.code
                    if isinstance(err, TerminalError)
                    else {
                        ChannelError: "bad_channel",
                        PermissionDenied: "forbidden",
                        AuthError: "unauthenticated",
                    }.get(type(err), "bad_message")
                )
                session.push_first({"type": "error", "code": code, "message": str(err), "id": ref})
                if isinstance(err, AuthError):
                    session.close_after_flush(CLOSE_UNAUTHENTICATED, str(err))
                    return

    def _parse(self, text: str | bytes) -> dict[str, Any]:
        if not isinstance(text, str):
            raise ValueError("binary frames are not part of the protocol; send JSON text frames")
        if len(text) > MAX_MESSAGE_BYTES:
            raise ValueError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
        try:
            message = _decode(text)
        except msgspec.DecodeError:
            raise ValueError("message is not valid JSON") from None
        except RecursionError:  # msgspec refuses nesting past its depth limit this way
            raise ValueError("message is nested too deeply") from None
        if not isinstance(message, dict):
            raise ValueError("message must be a JSON object")
        return message

    async def _handle(self, session: ClientSession, message: dict[str, Any]) -> None:
        kind = message.get("type")
        self._check_grant(session)
        if kind == "subscribe":
            for name in self._channel_names(message):
                await self._subscribe(session, name)
        elif kind == "unsubscribe":
            for name in self._channel_names(message):
                self._unsubscribe(session, parse_channel(name).name)
        elif kind == "ack":
            frames = message.get("frames")
            if not isinstance(frames, int) or isinstance(frames, bool):
                raise ValueError("ack needs 'frames', the number of frames handled")
            session.frames_acked = max(session.frames_acked, min(frames, session.frames_sent))
            session.wake.set()
        elif kind == "ping":
            session.push_first({"type": "pong", "id": message.get("id"), "ts": int(self._clock() * 1000)})
        elif kind == "auth":
            self._authorise(session, message)
            session.push_first(self._authenticated(session))
        else:
            raise ValueError(
                f"unknown message type {kind!r}; one of: auth, subscribe, unsubscribe, ack, ping"
            )

    def _check_grant(self, session: ClientSession) -> None:
        if session.grant is None or self._clock() >= session.grant.expires_at:
            raise AuthError("the access token has expired; authenticate again")

    @staticmethod
    def _channel_names(message: dict[str, Any]) -> list[str]:
        names = message.get("channels", [message["channel"]] if "channel" in message else None)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError("give 'channels' as a non-empty list of channel names")
        return names

    async def _subscribe(self, session: ClientSession, name: str) -> None:
        channel = parse_channel(name)
        assert session.grant is not None
        session.grant.user.require(channel.permission)
        if channel.instrument is not None:
            self._service.catalog.get(channel.instrument)  # an unknown instrument is refused here
        if channel.name not in session.channels and len(session.channels) >= MAX_SUBSCRIPTIONS:
            raise ValueError(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
        # Register before taking the snapshot: updates that race it are held and sent after it.
        session.channels.add(channel.name)
        self._subscribers.setdefault(channel.name, set()).add(session)
        if channel.kind is ChannelKind.CANDLES:
            assert channel.instrument is not None and channel.interval is not None
            builders = self._candles.setdefault(channel.instrument, {})
            builders.setdefault(channel.interval, CandleBuilder(CANDLE_INTERVALS[channel.interval]))
        try:
            data = await self._snapshot(channel)
        except TerminalError as err:
            session.push_first({"type": "snapshot", "channel": channel.name, "data": None, "error": str(err)})
            return
        session.push_first({"type": "snapshot", "channel": channel.name, "data": data})

    async def _snapshot(self, channel: Channel) -> Any:
        kind, instrument = channel.kind, channel.instrument
        if kind in (ChannelKind.QUOTE, ChannelKind.DEPTH):
            assert instrument is not None
            latest = self._latest.get(channel.name)
            if latest is not None:
                return self._present(latest, instrument)
            if kind is ChannelKind.QUOTE:
                quotes = await self._service.quotes([instrument])
                return quotes[0] if quotes else None
            return await self._service.depth(instrument)
        if kind is ChannelKind.CANDLES:
            assert instrument is not None and channel.interval is not None
            current = self._candles[instrument][channel.interval].current
            return self._present(current.as_dict(), instrument) if current else None
        if kind is ChannelKind.ORDERS:
            return await self._service.orders()
        if kind is ChannelKind.POSITIONS:
            return await self._service.positions()
        if kind is ChannelKind.DEPLOYMENTS:
            return await self._service.deployments()
        return [self._present(a, a.get("instrument")) for a in self._alerts]

    def _unsubscribe(self, session: ClientSession, name: str) -> None:
        session.channels.discard(name)
        session.outbox.discard(name)
        subscribers = self._subscribers.get(name)
        if subscribers is not None:
            subscribers.discard(session)
            if not subscribers:
                del self._subscribers[name]
                if name.startswith("candles:"):
                    instrument, _, interval = name[8:].rpartition(":")
                    builders = self._candles.get(instrument, {})
                    builders.pop(interval, None)
                    if not builders:
                        self._candles.pop(instrument, None)

    def _drop(self, session: ClientSession) -> None:
        for name in list(session.channels):
            self._unsubscribe(session, name)
        self._sessions.discard(session)
        self._closed_conflated += session.outbox.stats.conflated

    def conflated_total(self) -> int:
        """Updates replaced in some client's outbox before they were sent, over this replica's life."""
        return self._closed_conflated + sum(s.outbox.stats.conflated for s in self._sessions)

    async def _send_loop(self, session: ClientSession) -> None:
        websocket, outbox = session.websocket, session.outbox
        try:
            while True:
                session.wake.clear()
                if session.closing is None and session.frames_sent - session.frames_acked >= self._ack_window:
                    await session.wake.wait()  # an ack (or a close) wakes it; the outbox conflates meanwhile
                    continue
                due = outbox.take_due(self._monotonic())
                if due:
                    texts = [str(t) for t in due]
                    await websocket.send_text(texts[0] if len(texts) == 1 else "[" + ",".join(texts) + "]")
                    session.frames_sent += 1
                    self.stats.frames_sent += 1
                    self.stats.messages_sent += len(due)
                    continue
                if session.closing is not None:
                    if websocket.client_state is WebSocketState.CONNECTED:
                        await websocket.close(*session.closing)
                    return
                wait = outbox.seconds_until_due(self._monotonic())
                if wait is None:
                    await session.wake.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(session.wake.wait(), wait)
        except (WebSocketDisconnect, RuntimeError, OSError):
            # The socket is gone; the receive loop sees it too and cleans up.
            return

    async def run_heartbeats(self) -> None:
        """Every ``heartbeat_s``: a heartbeat to each client, and the door for expired tokens."""
        while True:
            await asyncio.sleep(self.heartbeat_s)  # the heartbeat period itself
            now = self._clock()
            for session in list(self._sessions):
                if session.grant is not None and now >= session.grant.expires_at:
                    session.push_first(
                        {
                            "type": "error",
                            "code": "token_expired",
                            "message": "authenticate again",
                            "id": None,
                        }
                    )
                    session.close_after_flush(CLOSE_UNAUTHENTICATED, "token expired")
                    continue
                session.push_first({"type": "heartbeat", "ts": int(now * 1000)})

    async def run_market_loop(self, interval_s: float = 1.0) -> None:
        """Once a second: depth for subscribed depth channels, previous closes for new quotes, and
        feed subscriptions for instruments clients watch (one call each, for the whole replica)."""
        owner = f"terminal-{self.replica}"
        while True:
            await asyncio.sleep(interval_s)  # the refresh period itself
            await self._market_round(owner)

    async def _market_round(self, owner: str) -> None:
        depth_keys = [c[6:] for c in self._subscribers if c.startswith("depth:")]
        if depth_keys:
            try:
                found = await self._service.depth_many(depth_keys)
                self.deliver([HubUpdate(0, f"depth:{k}", "", data) for k, data in found.items()])
            except TerminalError as err:
                logger.debug("depth refresh failed: %s", err)
        if self._monotonic() - self._closes_missing_since > 3600:
            self._closes_missing.clear()
            self._closes_missing_since = self._monotonic()
        if self._closes_wanted:
            wanted = sorted(self._closes_wanted)[:200]
            self._closes_wanted.difference_update(wanted)
            closes: dict[str, int] = {}
            try:
                closes = await self._service.closes(wanted)
            except TerminalError as err:
                logger.debug("previous closes failed: %s", err)
            self._closes.update(closes)
            self._closes_missing.update(k for k in wanted if k not in closes)
        watched = {c[6:] for c in self._subscribers if c.startswith("quote:")}
        candles = (c for c in self._subscribers if c.startswith("candles:"))
        watched |= {c[8:].rpartition(":")[0] for c in candles}
        try:
            if added := sorted(watched - self._followed):
                await self._service.follow(owner, added)
                self._followed.update(added)
            if dropped := sorted(self._followed - watched):
                await self._service.unfollow(owner, dropped)
                self._followed.difference_update(dropped)
        except TerminalError as err:
            logger.debug("feed subscription change failed: %s", err)

    def describe(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "sessions": len(self._sessions),
            "channels": len(self._subscribers),
            "latest": len(self._latest),
            "candle_builders": sum(len(b) for b in self._candles.values()),
            "conflated": self.conflated_total(),
            **self.stats.__dict__,
            "hub_ready": self.hub_ready.is_set(),
        }
