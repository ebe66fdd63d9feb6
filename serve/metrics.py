"""Prometheus metrics of one terminal replica (its own registry, so apps in one process never clash)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

API_PREFIX = "/api/v1"

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from serve.websocket import Broadcaster


class TerminalMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "shardline_http_request_seconds",
            "REST request latency by route",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.ws_sessions = Gauge("shardline_ws_sessions", "Open WebSocket sessions", registry=self.registry)
        self.ws_messages = Gauge(
            "shardline_ws_messages_sent", "WebSocket messages sent", registry=self.registry
        )
        self.ws_conflated = Gauge(
            "shardline_ws_conflated",
            "Updates replaced before a slow client took them",
            registry=self.registry,
        )
        self.hub_updates = Gauge("shardline_hub_updates", "Hub updates received", registry=self.registry)
        self.auth_failures = Counter("shardline_login_failures", "Refused logins", registry=self.registry)

    def render(self, broadcaster: Broadcaster) -> bytes:
        stats = broadcaster.stats
        self.ws_sessions.set(broadcaster.session_count)
        self.ws_messages.set(stats.messages_sent)
        self.ws_conflated.set(broadcaster.conflated_total())
        self.hub_updates.set(stats.hub_updates)
        return generate_latest(self.registry)


class RequestTimer:
    """ASGI middleware timing each HTTP request under its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: TerminalMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_template(scope)
            if route is not None:
                self.metrics.requests.labels(scope["method"], route, str(status)).observe(
                    time.perf_counter() - started
                )


def _route_template(scope: Scope) -> str | None:
    """The matched route's template (FastAPI leaves the route in the scope), or None when none matched."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not path:
        return None
    # Routes of an included router carry their path without the router's prefix.
    if scope["path"].startswith(API_PREFIX) and not str(path).startswith(API_PREFIX):
        return API_PREFIX + str(path)
    return str(path)
