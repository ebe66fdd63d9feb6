"""The terminal's ASGI app: REST under /api/v1, the WebSocket at /ws, the UI at /.

`create_api` is plain FastAPI (no Ray): `serve.app` wraps it in a Ray Serve deployment, and tests
can run it on any ASGI server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from cluster.errors import ShardlineError
from serve.dependencies import TerminalState
from serve.errors import InvalidRequest, TerminalError
from serve.metrics import RequestTimer, TerminalMetrics
from serve.ratelimit import RateLimited, UserRateLimiter
from serve.routes import auth, deployments, market, orders, portfolio, risk, system
from serve.security import AuthError, PermissionDenied, TokenIssuer, UserDirectory
from serve.websocket import Broadcaster

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from cluster.config import ShardlineConfig
    from serve.hub import HubFeed
    from serve.service import TerminalService

logger = logging.getLogger(__name__)

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
# Sign-in attempts per username: a burst of ten, then one every ten seconds.
LOGIN_RATE_PER_S = 0.1
LOGIN_BURST = 10.0
API_PREFIX = "/api/v1"

# The terminal loads nothing from elsewhere: scripts, styles and the chart library are served here.
CSP_UI = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
# FastAPI's interactive docs page pulls Swagger UI from its CDN and runs one inline script.
CSP_DOCS = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Pure ASGI middleware (it must not wrap WebSockets the way BaseHTTPMiddleware would)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (CSP_DOCS if scope["path"].startswith("/api/docs") else CSP_UI).encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                headers.append((b"content-security-policy", csp))
                if scope["path"].startswith(API_PREFIX):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def origin_allowed(websocket: WebSocket, allowed: frozenset[str]) -> bool:
    """No Origin (a non-browser client), the page's own host, or a configured origin."""
    origin = websocket.headers.get("origin")
    if origin is None or origin in allowed:
        return True
    host = websocket.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def error_body(code: str, message: str, detail: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": code, "message": message, "detail": detail or []}


_FIELD_PREFIX = re.compile(r"^(?:Value error, )?([a-z_.]+): (.*)$", re.S)


def validation_details(err: RequestValidationError) -> list[dict[str, Any]]:
    """Each problem as {field, reason}; model-level checks name their field as a "field: " prefix."""
    out = []
    for e in err.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")]
        reason = str(e.get("msg", "invalid"))
        field = ".".join(loc) or None
        match = _FIELD_PREFIX.match(reason)
        if match:
            prefix, rest = match.groups()
            field = ".".join([*loc, prefix]) if loc else prefix
            reason = rest
        elif reason.startswith("Value error, "):
            reason = reason[len("Value error, ") :]
        out.append({"field": field, "reason": reason})
    return out


def add_error_handlers(app: FastAPI) -> None:
    async def on_validation(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestValidationError)
        detail = validation_details(err)
        summary = "; ".join(f"{d['field']}: {d['reason']}" if d["field"] else d["reason"] for d in detail)
        return JSONResponse(error_body("validation_error", summary, detail), status_code=422)

    async def on_terminal(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, TerminalError)
        detail = None
        if isinstance(err, InvalidRequest) and err.field:
            message = str(err)
            reason = message.split(": ", 1)[1] if message.startswith(f"{err.field}: ") else message
            detail = [{"field": err.field, "reason": reason}]
        return JSONResponse(error_body(err.code, str(err), detail), status_code=err.status)

    async def on_auth(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse(
            error_body("unauthenticated", str(err)), status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    async def on_forbidden(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse(error_body("forbidden", str(err)), status_code=403)

    async def on_rate(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RateLimited)
        retry = max(1, round(err.retry_after_s + 0.5))
        return JSONResponse(
            error_body("rate_limited", str(err)), status_code=429, headers={"Retry-After": str(retry)}
        )

    async def on_shardline(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse(error_body("bad_request", str(err)), status_code=400)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(TerminalError, on_terminal)
    app.add_exception_handler(AuthError, on_auth)
    app.add_exception_handler(PermissionDenied, on_forbidden)
    app.add_exception_handler(RateLimited, on_rate)
    app.add_exception_handler(ShardlineError, on_shardline)


def create_api(
    config: ShardlineConfig,
    service: TerminalService,
    jwt_secret: str,
    feed: HubFeed | None,
    heartbeat_s: float = 10.0,
    replica: str = "local",
) -> FastAPI:
    """Build the terminal app.

    Parameters
    ----------
    config
        The validated configuration (users, ``serve`` section).
    service
        The one object the routes call.
    jwt_secret
        Shared by every replica, so a token from one is good at all.
    feed
        The hub subscription that feeds the WebSocket fan-out; None runs without live updates.
    """
    users = UserDirectory(config.users)
    tokens = TokenIssuer(jwt_secret, users, config.serve.access_token_ttl_s, config.serve.refresh_token_ttl_s)
    broadcaster = Broadcaster(
        service, tokens, config.serve.ws_max_rate_hz, heartbeat_s=heartbeat_s, replica=replica
    )
    state = TerminalState(
        config=config,
        service=service,
        users=users,
        tokens=tokens,
        order_limiter=UserRateLimiter(config.serve.order_rate_per_user_per_s),
        login_limiter=UserRateLimiter(LOGIN_RATE_PER_S, burst=LOGIN_BURST, what="sign-in"),
        broadcaster=broadcaster,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(broadcaster.run_heartbeats(), name="heartbeats"),
            asyncio.create_task(broadcaster.run_market_loop(), name="market-data"),
        ]
        if feed is not None:
            tasks.append(
                asyncio.create_task(feed.run(broadcaster.deliver, broadcaster.hub_ready), name="hub-feed")
            )
        logger.info(
            "terminal up: %d users, ws_max_rate_hz=%s, order_rate_per_user_per_s=%s, cors=%s",
            len(users),
            config.serve.ws_max_rate_hz,
            config.serve.order_rate_per_user_per_s,
            config.serve.cors_origins,
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="shardline terminal API",
        version="1",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.terminal = state
    app.state.metrics = metrics = TerminalMetrics()
    add_error_handlers(app)

    for module in (auth, market, orders, portfolio, deployments, risk, system):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(system.probes)

    allowed_origins = frozenset(config.serve.cors_origins)

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        if not origin_allowed(websocket, allowed_origins):
            # Browsers do not apply CORS to WebSockets: refuse other sites' pages here.
            await websocket.close(code=1008, reason="origin not allowed")
            return
        await broadcaster.serve(websocket)

    if UI_DIR.is_dir():
        app.mount("/", StaticFiles(directory=UI_DIR, html=True), name="ui")

    # Outermost last: CORS answers preflights before anything else runs.
    app.add_middleware(RequestTimer, metrics=metrics)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(config.serve.cors_origins),
        allow_credentials=False,  # tokens travel in the Authorization header, never in cookies
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    return app
