"""The order-update socket (``/smart-order-update``): order changes pushed as JSON text.

Angel's shape: ``{"user-id", "status-code", "order-status", "error-message", "orderData"}`` with
``AB00`` once on connect, then AB01..AB11 as orders change. At most three sockets per user.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from actors.sim.sessions import LoginError, SessionStore

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 3
QUEUE_LIMIT = 10_000


@dataclass(eq=False)
class OrderUpdateConnection:
    client_code: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    dropped: int = 0


class OrderUpdateHub:
    """Pushes every order change of the account to its open order-update sockets."""

    def __init__(self, sessions: SessionStore) -> None:
        self.sessions = sessions
        self.connections: list[OrderUpdateConnection] = []
        self.published = 0

    def publish(self, message: dict[str, Any]) -> None:
        """Queue a message for every socket of its user (called from the event loop)."""
        text = json.dumps(message)
        self.published += 1
        for conn in self.connections:
            if conn.client_code != message.get("user-id"):
                continue
            try:
                conn.queue.put_nowait(text)
            except asyncio.QueueFull:
                conn.dropped += 1

    def drop_connections(self) -> int:
        cut = 0
        for conn in list(self.connections):
            conn.transport.abort()
            cut += 1
        return cut

    async def stop(self) -> None:
        for conn in list(self.connections):
            await conn.ws.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            session = self.sessions.check(request.headers.get("Authorization"))
        except LoginError as err:
            return web.Response(status=401, text=f"{err.code}: {err.message}")
        mine = [c for c in self.connections if c.client_code == session.client_code]
        if len(mine) >= MAX_CONNECTIONS:
            return web.Response(
                status=429, text=f"at most {MAX_CONNECTIONS} order-update connections per user"
            )
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        assert request.transport is not None
        conn = OrderUpdateConnection(session.client_code, ws, request.transport)
        self.connections.append(conn)
        hello = {
            "user-id": session.client_code,
            "status-code": "200",
            "order-status": "AB00",
            "error-message": "",
            "orderData": {},
        }
        await ws.send_str(json.dumps(hello))
        sender = asyncio.get_running_loop().create_task(self._send(conn))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT and msg.data == "ping":
                    await ws.send_str("pong")
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            sender.cancel()
            self.connections.remove(conn)
        return ws

    @staticmethod
    async def _send(conn: OrderUpdateConnection) -> None:
        try:
            while True:
                text = await conn.queue.get()
                await conn.ws.send_str(text)
        except (ConnectionError, RuntimeError) as err:
            log.info("order updates: socket of %s closed while sending: %s", conn.client_code, err)
