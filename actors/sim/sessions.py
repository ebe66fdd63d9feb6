"""Logins for the simulator: PIN + TOTP, HS256 JWTs with an expiry, refresh and feed tokens.

The clock is passed in (wall-clock seconds), so tests can age a session past its expiry.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import pyotp

from cluster.config import SimConfig


class LoginError(Exception):
    """A refused login or token, with Angel's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Session:
    client_code: str
    jwt_token: str
    refresh_token: str
    feed_token: str
    expires_at: float


class SessionStore:
    """Issues and checks the tokens of the one simulated account."""

    def __init__(self, config: SimConfig, now: Callable[[], float]) -> None:
        if not config.pin or not config.client_code:
            raise ValueError("sim: client_code and pin must not be empty")
        try:
            pyotp.TOTP(config.totp_secret).now()
        except Exception as err:  # pyotp raises binascii.Error and friends for bad base32
            raise ValueError(f"sim.totp_secret is not valid base32: {err}") from None
        self._config = config
        self._now = now
        self._secret = secrets.token_bytes(32)  # tokens die with the process, as a restart should
        self._by_jwt: dict[str, Session] = {}
        self._by_refresh: dict[str, Session] = {}
        self._feed_tokens: set[str] = set()

    @property
    def client_code(self) -> str:
        return self._config.client_code

    def login(self, client_code: str, pin: str, totp: str) -> Session:
        cfg = self._config
        if not hmac.compare_digest(str(client_code), cfg.client_code) or not hmac.compare_digest(
            str(pin), cfg.pin
        ):
            raise LoginError("AB1007", "Invalid client code or PIN")
        if not pyotp.TOTP(cfg.totp_secret).verify(str(totp), for_time=int(self._now()), valid_window=1):
            raise LoginError("AB1050", "Invalid totp")
        return self._issue(client_code)

    def refresh(self, refresh_token: str) -> Session:
        old = self._by_refresh.get(refresh_token)
        if old is None:
            raise LoginError("AB8050", "Invalid Refresh Token")
        if old.expires_at <= self._now():
            raise LoginError("AB8051", "Refresh Token Expired")
        self._revoke(old)
        return self._issue(old.client_code)

    def check(self, authorization: str | None) -> Session:
        """The session behind an ``Authorization`` header ("Bearer <jwt>" or the bare jwt)."""
        if not authorization:
            raise LoginError("AG8003", "Token missing")
        token = authorization.removeprefix("Bearer ").strip()
        session = self._by_jwt.get(token)
        if session is None:
            raise LoginError("AG8001", "Invalid Token")
        if session.expires_at <= self._now():
            self._revoke(session)
            raise LoginError("AG8001", "Invalid Token")
        return session

    def check_feed_token(self, feed_token: str | None) -> bool:
        return bool(feed_token) and feed_token in self._feed_tokens

    def logout(self, session: Session) -> None:
        self._revoke(session)

    def _issue(self, client_code: str) -> Session:
        issued = self._now()
        expires = issued + self._config.session_ttl_s
        claims = {
            "sub": client_code,
            "iat": int(issued),
            "exp": int(expires),
            "jti": secrets.token_hex(8),
            "iss": "shardline-sim",
        }
        token = jwt.encode(claims, self._secret, algorithm="HS256")
        feed = jwt.encode({**claims, "typ": "feed"}, self._secret, algorithm="HS256")
        session = Session(client_code, token, secrets.token_urlsafe(32), feed, expires)
        self._by_jwt[token] = session
        self._by_refresh[session.refresh_token] = session
        self._feed_tokens.add(feed)
        return session

    def _revoke(self, session: Session) -> None:
        self._by_jwt.pop(session.jwt_token, None)
        self._by_refresh.pop(session.refresh_token, None)
        self._feed_tokens.discard(session.feed_token)
