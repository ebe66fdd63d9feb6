"""Who may do what in the terminal: users and roles from config, argon2 passwords, JWT tokens.

Plain classes with no web framework in them: the routes and the WebSocket call these. Clocks are
passed in (``now`` in epoch seconds) so expiry is testable without waiting.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cluster.config import Role, UserConfig

JWT_ALGORITHM = "HS256"
ISSUER = "shardline"


class Permission(StrEnum):
    READ = "read"  # market data, books, positions, deployments
    TRADE = "trade"  # manual orders, GTT, brackets, square-off
    DEPLOY = "deploy"  # start, stop, scale and swap strategy deployments
    ADMIN = "admin"  # risk limits, kill switch, users


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.TRADER: frozenset({Permission.READ, Permission.TRADE}),
    Role.QUANT: frozenset({Permission.READ, Permission.DEPLOY}),
    Role.ADMIN: frozenset(Permission),
}


class AuthError(Exception):
    """Credentials or a token that do not identify a user (HTTP 401)."""


class PermissionDenied(Exception):
    """A known user asking for something their role does not allow (HTTP 403)."""


@dataclass(frozen=True)
class User:
    username: str
    role: Role

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise PermissionDenied(f"role {self.role.value!r} may not {permission.value}")


class UserDirectory:
    """The configured users; verifies passwords against their argon2 hashes.

    An unknown username costs one argon2 verification too, against a throwaway hash, so the
    response time does not tell which usernames exist.
    """

    def __init__(self, users: Iterable[UserConfig]) -> None:
        self._users = {u.username: u for u in users}
        self._hasher = PasswordHasher()
        self._decoy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def __len__(self) -> int:
        return len(self._users)

    def describe(self) -> list[dict[str, str]]:
        """Usernames and roles (never hashes)."""
        return [{"username": u.username, "role": u.role.value} for u in self._users.values()]

    def get(self, username: str) -> User | None:
        entry = self._users.get(username)
        return User(entry.username, entry.role) if entry else None

    def authenticate(self, username: str, password: str) -> User:
        entry = self._users.get(username)
        try:
            self._hasher.verify(entry.password_hash if entry else self._decoy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            raise AuthError("unknown username or wrong password") from None
        if entry is None:  # the decoy hash can only match its random password, but be explicit
            raise AuthError("unknown username or wrong password")
        return User(entry.username, entry.role)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_at: int  # epoch seconds
    refresh_expires_at: int


@dataclass(frozen=True)
class AccessGrant:
    """A verified access token: who, and until when."""

    user: User
    expires_at: int


class TokenIssuer:
    """Signs and checks HS256 access and refresh tokens.

    Parameters
    ----------
    secret
        The signing key; every replica must share it, so it is chosen once when the app is built.
    directory
        Refresh re-reads the user from here, so a removed user or a changed role takes effect at
        the next refresh rather than lasting the refresh token's whole life.
    """

    def __init__(self, secret: str, directory: UserDirectory, access_ttl_s: int, refresh_ttl_s: int) -> None:
        if len(secret.encode()) < 32:  # RFC 7518: an HS256 key at least as long as the hash
            raise ValueError("the JWT secret must be at least 32 bytes")
        if access_ttl_s <= 0 or refresh_ttl_s <= 0:
            raise ValueError("token lifetimes must be positive")
        self._secret = secret
        self._directory = directory
        self._access_ttl_s = access_ttl_s
        self._refresh_ttl_s = refresh_ttl_s

    def issue(self, user: User, now: float) -> TokenPair:
        issued = int(now)
        access_exp = issued + self._access_ttl_s
        refresh_exp = issued + self._refresh_ttl_s
        return TokenPair(
            access_token=self._sign(user, "access", issued, access_exp),
            refresh_token=self._sign(user, "refresh", issued, refresh_exp),
            access_expires_at=access_exp,
            refresh_expires_at=refresh_exp,
        )

    def verify_access(self, token: str, now: float) -> AccessGrant:
        claims = self._decode(token, "access", now)
        return AccessGrant(User(claims["sub"], Role(claims["role"])), int(claims["exp"]))

    def refresh(self, refresh_token: str, now: float) -> TokenPair:
        claims = self._decode(refresh_token, "refresh", now)
        user = self._directory.get(claims["sub"])
        if user is None:
            raise AuthError("the user no longer exists")
        return self.issue(user, now)

    def _sign(self, user: User, kind: str, issued: int, expires: int) -> str:
        claims = {
            "iss": ISSUER,
            "sub": user.username,
            "role": user.role.value,
            "typ": kind,
            "iat": issued,
            "exp": expires,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=JWT_ALGORITHM)

    def _decode(self, token: str, kind: str, now: float) -> dict:
        try:
            # Expiry is checked below against the clock passed in, not pyjwt's own.
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[JWT_ALGORITHM],
                issuer=ISSUER,
                options={"verify_exp": False, "verify_iat": False, "require": ["exp", "sub", "typ", "role"]},
            )
        except jwt.PyJWTError as err:
            raise AuthError(f"invalid token: {err}") from None
        if claims["typ"] != kind:
            raise AuthError(f"a {claims['typ']} token was given where a {kind} token is needed")
        if now >= claims["exp"]:
            raise AuthError(f"the {kind} token has expired")
        try:
            Role(claims["role"])
        except ValueError:
            raise AuthError("invalid token: unknown role") from None
        return claims
