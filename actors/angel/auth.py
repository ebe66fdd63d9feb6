"""Logging in to Angel One and keeping the session fresh.

A login takes the client code, the PIN and a TOTP made from the account's secret. It yields one
session: a JWT for REST calls, a refresh token to renew it, and a feed token for SmartStream.
The session is renewed before it expires and whenever the broker calls the token invalid; the
call that hit the invalid token is then retried once (by the REST client). A refused login says
why (wrong PIN, refused TOTP, a local clock that is off) and never shows the secrets. The session
may be cached at rest, encrypted with Fernet under `SHARDLINE_SESSION_KEY`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import jwt
import msgspec
import pyotp
from cryptography.fernet import Fernet, InvalidToken

from actors.angel.common import SESSION_TTL_S, EndpointGroup
from actors.angel.errors import (
    AngelError,
    BrokerRejectedError,
    LoginError,
    LoginFailure,
    RateLimitedError,
    RefreshTokenError,
    TokenError,
    TransientBrokerError,
    login_failure_for,
)
from actors.angel.limits import Priority, RateLimiter
from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from actors.angel.sdk import SmartApiGateway
    from cluster.config import Secrets, SimConfig

log = logging.getLogger(__name__)

# A TOTP step is 30 s; past this much disagreement with the broker's clock codes stop matching.
CLOCK_SKEW_LIMIT_S = 15.0


@dataclass(frozen=True)
class AngelCredentials:
    """What a login needs. Only the client code shows in `repr`."""

    client_code: str
    api_key: str = field(repr=False)
    pin: str = field(repr=False)
    totp_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        missing = [
            name for name in ("client_code", "api_key", "pin", "totp_secret") if not getattr(self, name)
        ]
        if missing:
            raise ShardlineError(f"Angel One credentials incomplete: {', '.join(missing)} empty")
        try:
            pyotp.TOTP(self.totp_secret).now()
        except Exception:  # pyotp raises binascii.Error, ValueError... for a bad secret
            raise ShardlineError("the TOTP secret is not valid base32 (check ANGEL_TOTP_SECRET)") from None

    @classmethod
    def from_secrets(cls, secrets: Secrets) -> AngelCredentials:
        """From the environment / `.env` (ANGEL_API_KEY, ANGEL_CLIENT_CODE, ANGEL_PIN, ANGEL_TOTP_SECRET)."""
        secrets.require_broker_credentials()
        assert secrets.angel_api_key and secrets.angel_pin and secrets.angel_totp_secret
        return cls(
            client_code=secrets.angel_client_code or "",
            api_key=secrets.angel_api_key.get_secret_value(),
            pin=secrets.angel_pin.get_secret_value(),
            totp_secret=secrets.angel_totp_secret.get_secret_value(),
        )

    @classmethod
    def for_simulator(cls, sim: SimConfig) -> AngelCredentials:
        """The local simulator's demo account (not secrets: they open only the simulator)."""
        return cls(client_code=sim.client_code, api_key=sim.api_key, pin=sim.pin, totp_secret=sim.totp_secret)


class AngelSession(msgspec.Struct, frozen=True):
    """The tokens of one login. `repr` hides them."""

    client_code: str
    jwt_token: str
    refresh_token: str
    feed_token: str
    issued_at: float  # epoch seconds
    expires_at: float

    def __repr__(self) -> str:
        return f"AngelSession(client_code={self.client_code!r}, expires_at={self.expires_at:.0f})"

    def renew_at(self, margin_s: float) -> float:
        """When to renew: `margin_s` before expiry, or a tenth of the lifetime for short sessions."""
        return self.expires_at - min(margin_s, 0.1 * (self.expires_at - self.issued_at))

    @property
    def bearer(self) -> str:
        return f"Bearer {self.jwt_token}"


def session_from_tokens(client_code: str, data: dict[str, str], now: float) -> AngelSession:
    """A session from the broker's token answer; expiry from the JWT's `exp` claim when it has one."""
    token = data["jwtToken"].removeprefix("Bearer ").strip()
    expires_at = now + SESSION_TTL_S
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        if isinstance(claims.get("exp"), int | float):
            expires_at = float(claims["exp"])
    except jwt.PyJWTError:
        pass  # an opaque token: assume the documented lifetime
    return AngelSession(
        client_code=client_code,
        jwt_token=token,
        refresh_token=data["refreshToken"],
        feed_token=data["feedToken"],
        issued_at=now,
        expires_at=expires_at,
    )


class SessionCache:
    """The session at rest, encrypted (Fernet). Never written in clear.

    Parameters
    ----------
    path : Path
        The cache file.
    key : str
        A Fernet key (urlsafe base64 of 32 bytes), from `SHARDLINE_SESSION_KEY`.
    """

    def __init__(self, path: Path, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
        except (ValueError, TypeError):
            raise ShardlineError(
                "SHARDLINE_SESSION_KEY is not a Fernet key (urlsafe base64 of 32 bytes); "
                "make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from None
        self.path = path

    @classmethod
    def from_secrets(cls, secrets: Secrets, data_dir: Path) -> SessionCache | None:
        """The cache under `data_dir`, or None (no caching) when no key is set."""
        if secrets.shardline_session_key is None:
            return None
        return cls(data_dir / "angel" / "session.fernet", secrets.shardline_session_key.get_secret_value())

    def load(self, client_code: str) -> AngelSession | None:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            session = msgspec.json.decode(self._fernet.decrypt(blob), type=AngelSession)
        except InvalidToken:
            log.warning("session cache %s was written with another key or is damaged; ignoring it", self.path)
            return None
        except msgspec.ValidationError as err:
            log.warning("session cache %s does not hold a session (%s); ignoring it", self.path, err)
            return None
        return session if session.client_code == client_code else None

    def save(self, session: AngelSession) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(self._fernet.encrypt(msgspec.json.encode(session)))
        tmp.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


async def broker_clock_offset(rest_url: str, now: Callable[[], float] = time.time) -> float | None:
    """Broker clock minus local clock in seconds, from the HTTP `Date` header (None if unknown)."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.head(rest_url)
    except httpx.HTTPError:
        return None
    header = response.headers.get("date")
    if not header:
        return None
    try:
        return email.utils.parsedate_to_datetime(header).timestamp() - now()
    except (TypeError, ValueError):
        return None


class AngelAuth:
    """Holds the session and renews it; every REST call asks it for a fresh one.

    Parameters
    ----------
    credentials : AngelCredentials
        Client code, API key, PIN and TOTP secret.
    gateway : SmartApiGateway
        The SDK, off the event loop.
    limiter : RateLimiter, optional
        Login and token renewal have their own rate limits.
    cache : SessionCache, optional
        Where the session is kept (encrypted) between runs.
    clock : Callable[[], float]
        Wall-clock epoch seconds (sessions expire in wall time; TOTP codes are wall time).
    renew_margin_s : float
        Renew this long before expiry (capped at a tenth of the session's lifetime).
    """

    def __init__(
        self,
        credentials: AngelCredentials,
        gateway: SmartApiGateway,
        *,
        limiter: RateLimiter | None = None,
        cache: SessionCache | None = None,
        clock: Callable[[], float] = time.time,
        renew_margin_s: float = 600.0,
    ) -> None:
        self.credentials = credentials
        self._gateway = gateway
        self._limiter = limiter
        self._cache = cache
        self._clock = clock
        self._renew_margin_s = renew_margin_s
        self._session: AngelSession | None = None
        self._lock = asyncio.Lock()
        self.logins = 0
        self.renewals = 0

    @property
    def session(self) -> AngelSession | None:
        return self._session

    async def ensure_session(self) -> AngelSession:
        """A session that is not about to expire: cached, renewed or from a fresh login."""
        session = self._session
        if session is not None and self._clock() < session.renew_at(self._renew_margin_s):
            return session
        async with self._lock:
            session = self._session
            if session is None and self._cache is not None:
                session = self._cache.load(self.credentials.client_code)
                if session is not None:
                    log.info("using the cached Angel One session for %s", session.client_code)
                    self._adopt(session, save=False)
            if session is None:
                return await self._login()
            if self._clock() >= session.renew_at(self._renew_margin_s):
                return await self._renew(session)
            return session

    async def renew(self, rejected: AngelSession) -> AngelSession:
        """Replace a session the broker refused, unless another caller already has."""
        async with self._lock:
            current = self._session
            if current is not None and current.jwt_token != rejected.jwt_token:
                return current
            return await self._renew(rejected)

    async def login(self) -> AngelSession:
        """A fresh login, whatever the current session."""
        async with self._lock:
            return await self._login()

    async def _renew(self, session: AngelSession) -> AngelSession:
        if self._limiter is not None:
            await self._limiter.acquire(EndpointGroup.TOKEN, Priority.URGENT)
        try:
            data = await self._gateway.post(
                "renew session", "api.token", {"refreshToken": session.refresh_token}
            )
        except RefreshTokenError as err:
            log.info("refresh token refused (%s); logging in again", err.code)
            return await self._login()
        except AngelError as err:
            if session.expires_at > self._clock():
                log.warning("session renewal failed (%s); keeping the current session until it expires", err)
                return session
            log.info("session renewal failed (%s) and the session has expired; logging in again", err)
            return await self._login()
        if not isinstance(data, dict) or not data.get("jwtToken"):
            return await self._login()
        renewed = session_from_tokens(
            session.client_code,
            {
                "jwtToken": data["jwtToken"],
                "refreshToken": data.get("refreshToken") or session.refresh_token,
                "feedToken": data.get("feedToken") or session.feed_token,
            },
            self._clock(),
        )
        self.renewals += 1
        log.info(
            "Angel One session renewed; valid until %s",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(renewed.expires_at)),
        )
        self._adopt(renewed)
        return renewed

    async def _login(self) -> AngelSession:
        creds = self.credentials
        if self._limiter is not None:
            await self._limiter.acquire(EndpointGroup.LOGIN, Priority.URGENT)
        totp = pyotp.TOTP(creds.totp_secret).at(self._clock())
        try:
            data = await self._gateway.login(creds.client_code, creds.pin, totp)
        except (TransientBrokerError, RateLimitedError):
            raise  # the broker was not reached, or asked us to slow down: not a refusal
        except (BrokerRejectedError, TokenError, RefreshTokenError) as err:
            raise await self._login_error(err) from None
        session = session_from_tokens(creds.client_code, data, self._clock())
        self.logins += 1
        log.info("logged in to Angel One as %s", creds.client_code)
        self._adopt(session)
        return session

    async def _login_error(self, err: AngelError) -> LoginError:
        reason = login_failure_for(err.code, err.broker_message)
        hint = ""
        if reason is LoginFailure.BAD_TOTP:
            offset = await broker_clock_offset(self._gateway.root, self._clock)
            if offset is not None and abs(offset) > CLOCK_SKEW_LIMIT_S:
                reason = LoginFailure.CLOCK_SKEW
                direction = "behind" if offset > 0 else "ahead of"
                hint = f" (this machine's clock is {abs(offset):.0f} s {direction} the broker's: sync it)"
            else:
                hint = " (check ANGEL_TOTP_SECRET: it is the secret behind the authenticator code)"
        elif reason is LoginFailure.WRONG_PIN:
            hint = " (check ANGEL_CLIENT_CODE and ANGEL_PIN)"
        elif reason is LoginFailure.INVALID_API_KEY:
            hint = " (check ANGEL_API_KEY)"
        return LoginError(reason, err.code, err.broker_message, hint)

    def _adopt(self, session: AngelSession, *, save: bool = True) -> None:
        self._session = session
        self._gateway.set_tokens(session.jwt_token, session.refresh_token, session.feed_token)
        if save and self._cache is not None:
            self._cache.save(session)

    def forget(self) -> None:
        """Drop the session (and the cached copy), e.g. after logging out."""
        self._session = None
        self._gateway.clear_tokens()
        if self._cache is not None:
            self._cache.clear()
