"""The one place the Angel One parts are wired together (gateway, limiter, session, clients)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from actors.angel.auth import AngelAuth, AngelCredentials, SessionCache
from actors.angel.codec import TickDecoder
from actors.angel.common import ORDER_UPDATES_URL, REST_URL, STREAM_URL
from actors.angel.limits import RateLimiter
from actors.angel.order_updates import OrderUpdateClient, OrderUpdateSink
from actors.angel.rest import AngelRestClient, RetryPolicy
from actors.angel.sdk import SmartApiGateway
from actors.angel.stream import ReceivePath, SmartStreamClient, TickSink
from cluster.config import FeedConfig, Mode, Secrets, ShardlineConfig


@dataclass(frozen=True)
class AngelEndpoints:
    rest_url: str = REST_URL
    stream_url: str = STREAM_URL
    order_url: str = ORDER_UPDATES_URL


@dataclass
class AngelConnection:
    """One login's REST client and session; streams and order updates hang off it."""

    credentials: AngelCredentials
    endpoints: AngelEndpoints
    auth: AngelAuth
    rest: AngelRestClient

    async def stream_headers(self) -> dict[str, str]:
        """SmartStream handshake headers from the current (fresh) session."""
        session = await self.auth.ensure_session()
        return {
            "Authorization": session.bearer,
            "x-api-key": self.credentials.api_key,
            "x-client-code": session.client_code,
            "x-feed-token": session.feed_token,
        }

    async def order_update_headers(self) -> dict[str, str]:
        session = await self.auth.ensure_session()
        return {"Authorization": session.bearer}

    async def renew_session(self) -> None:
        """After a socket's credentials were refused: renew the session the socket used."""
        session = self.auth.session
        if session is None:
            await self.auth.ensure_session()
        else:
            await self.auth.renew(session)

    def stream_client(
        self,
        iid_by_key: Mapping[str, int],
        on_ticks: TickSink,
        config: FeedConfig | None = None,
        receive_path: ReceivePath | None = None,
        on_depth: TickSink | None = None,
    ) -> SmartStreamClient:
        return SmartStreamClient(
            self.endpoints.stream_url,
            self.stream_headers,
            TickDecoder.from_keys(iid_by_key),
            on_ticks,
            config,
            on_auth_refused=self.renew_session,
            on_depth=on_depth,
            receive_path=receive_path,
        )

    def order_update_client(
        self,
        on_update: OrderUpdateSink,
        config: FeedConfig | None = None,
        on_reconnected: Callable[[], Awaitable[None]] | None = None,
    ) -> OrderUpdateClient:
        return OrderUpdateClient(
            self.endpoints.order_url,
            self.order_update_headers,
            on_update,
            config,
            on_auth_refused=self.renew_session,
            on_reconnected=on_reconnected,
        )

    async def close(self) -> None:
        await self.rest.close()


def connect(
    credentials: AngelCredentials,
    endpoints: AngelEndpoints,
    data_dir: Path,
    *,
    cache: SessionCache | None = None,
    retry: RetryPolicy | None = None,
    limiter: RateLimiter | None = None,
    clock: Callable[[], float] | None = None,
    renew_margin_s: float = 600.0,
    timeout_s: float = 7.0,
) -> AngelConnection:
    """Wire one login: SDK gateway, Angel's rate limits, the session keeper and the REST client.

    Nothing goes over the network until the first call (which logs in).
    """
    gateway = SmartApiGateway(
        credentials.api_key, endpoints.rest_url, data_dir / "angel" / "sdk-logs", timeout_s
    )
    limiter = limiter or RateLimiter()
    extra: dict[str, Callable[[], float]] = {"clock": clock} if clock is not None else {}
    auth = AngelAuth(
        credentials, gateway, limiter=limiter, cache=cache, renew_margin_s=renew_margin_s, **extra
    )
    return AngelConnection(credentials, endpoints, auth, AngelRestClient(gateway, auth, limiter, retry))


def connect_from_config(
    config: ShardlineConfig, secrets: Secrets, endpoints: AngelEndpoints | None = None
) -> AngelConnection:
    """The login the config's mode calls for.

    In `sim` and `sim-live` the simulator's demo account (pass the running simulator's
    endpoints); in `paper` and `live` the broker credentials from the environment and Angel's
    own endpoints. The session is cached, encrypted, when `SHARDLINE_SESSION_KEY` is set.
    """
    if config.mode in (Mode.SIM, Mode.SIM_LIVE):
        if endpoints is None:
            raise ValueError(f"mode {config.mode.value} needs the running simulator's endpoints")
        credentials = AngelCredentials.for_simulator(config.sim)
    else:
        credentials = AngelCredentials.from_secrets(secrets)
        endpoints = endpoints or AngelEndpoints()
    cache = SessionCache.from_secrets(secrets, config.data_path)
    return connect(credentials, endpoints, config.data_path, cache=cache)
