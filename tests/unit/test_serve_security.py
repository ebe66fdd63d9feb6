from __future__ import annotations

from collections.abc import Callable

import jwt
import pytest
from argon2 import PasswordHasher

from cluster.config import Role, UserConfig, load_config
from serve.security import (
    ROLE_PERMISSIONS,
    AuthError,
    Permission,
    PermissionDenied,
    TokenIssuer,
    User,
    UserDirectory,
)

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SECRET = "test-secret-0123456789abcdef-0123456789"
NOW = 1_780_000_000.0


def user_config(name: str, role: Role, password: str) -> UserConfig:
    return UserConfig(username=name, role=role, password_hash=FAST_HASHER.hash(password))


@pytest.fixture
def directory() -> UserDirectory:
    return UserDirectory(
        [user_config("asha", Role.TRADER, "pw-asha"), user_config("ravi", Role.VIEWER, "pw-ravi")]
    )


@pytest.fixture
def issuer(directory: UserDirectory) -> TokenIssuer:
    return TokenIssuer(SECRET, directory, access_ttl_s=900, refresh_ttl_s=3600)


def test_authenticate_returns_the_user_and_role(directory: UserDirectory) -> None:
    assert directory.authenticate("asha", "pw-asha") == User("asha", Role.TRADER)


@pytest.mark.parametrize(("name", "password"), [("asha", "wrong"), ("nobody", "pw-asha"), ("asha", "")])
def test_authenticate_refuses_with_one_message(directory: UserDirectory, name: str, password: str) -> None:
    # The same message whether the user exists or not: it must not reveal usernames.
    with pytest.raises(AuthError, match=r"^unknown username or wrong password$"):
        directory.authenticate(name, password)


@pytest.mark.parametrize(
    ("username", "password", "role"),
    [
        ("trader", "trader-local", Role.TRADER),
        ("quant", "quant-local", Role.QUANT),
        ("admin", "admin-local", Role.ADMIN),
        ("viewer", "viewer-local", Role.VIEWER),
    ],
)
def test_the_default_config_users_match_the_documented_passwords(
    username: str, password: str, role: Role
) -> None:
    directory = UserDirectory(load_config().users)
    assert directory.authenticate(username, password) == User(username, role)


@pytest.mark.parametrize(
    ("role", "allowed", "denied"),
    [
        (Role.VIEWER, {Permission.READ}, {Permission.TRADE, Permission.DEPLOY, Permission.ADMIN}),
        (Role.TRADER, {Permission.READ, Permission.TRADE}, {Permission.DEPLOY, Permission.ADMIN}),
        (Role.QUANT, {Permission.READ, Permission.DEPLOY}, {Permission.TRADE, Permission.ADMIN}),
        (Role.ADMIN, set(Permission), set()),
    ],
)
def test_role_permissions(role: Role, allowed: set[Permission], denied: set[Permission]) -> None:
    user = User("u", role)
    assert ROLE_PERMISSIONS[role] == allowed
    for permission in allowed:
        user.require(permission)
    for permission in denied:
        with pytest.raises(PermissionDenied, match=f"role '{role.value}' may not {permission.value}"):
            user.require(permission)


def test_access_token_round_trip(issuer: TokenIssuer) -> None:
    pair = issuer.issue(User("asha", Role.TRADER), NOW)
    grant = issuer.verify_access(pair.access_token, NOW + 10)
    assert grant.user == User("asha", Role.TRADER)
    assert grant.expires_at == int(NOW) + 900 == pair.access_expires_at
    assert pair.refresh_expires_at == int(NOW) + 3600


def test_access_token_expires_by_the_clock_given(issuer: TokenIssuer) -> None:
    pair = issuer.issue(User("asha", Role.TRADER), NOW)
    issuer.verify_access(pair.access_token, NOW + 899)
    with pytest.raises(AuthError, match="access token has expired"):
        issuer.verify_access(pair.access_token, NOW + 900)


def test_refresh_token_is_not_an_access_token(issuer: TokenIssuer) -> None:
    pair = issuer.issue(User("asha", Role.TRADER), NOW)
    with pytest.raises(AuthError, match="a refresh token was given where a access token is needed"):
        issuer.verify_access(pair.refresh_token, NOW)
    with pytest.raises(AuthError, match="a access token was given where a refresh token is needed"):
        issuer.refresh(pair.access_token, NOW)


def test_refresh_issues_a_new_pair_and_rereads_the_user(
    issuer: TokenIssuer, directory: UserDirectory
) -> None:
    pair = issuer.issue(User("asha", Role.TRADER), NOW)
    renewed = issuer.refresh(pair.refresh_token, NOW + 1000)
    assert issuer.verify_access(renewed.access_token, NOW + 1000).user.username == "asha"
    with pytest.raises(AuthError, match="refresh token has expired"):
        issuer.refresh(pair.refresh_token, NOW + 3600)
    # A token for a user the directory no longer has cannot be refreshed.
    ghost = issuer.issue(User("ghost", Role.ADMIN), NOW)
    with pytest.raises(AuthError, match="no longer exists"):
        issuer.refresh(ghost.refresh_token, NOW)


def test_refresh_picks_up_a_changed_role(directory: UserDirectory) -> None:
    old = TokenIssuer(SECRET, directory, 900, 3600).issue(User("ravi", Role.ADMIN), NOW)
    renewed = TokenIssuer(SECRET, directory, 900, 3600).refresh(old.refresh_token, NOW)
    assert (
        TokenIssuer(SECRET, directory, 900, 3600).verify_access(renewed.access_token, NOW).user.role
        is Role.VIEWER
    )


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), id="tampered signature"),
        pytest.param(lambda t: "not.a.jwt", id="garbage"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(
            lambda t: jwt.encode(
                {"iss": "shardline", "sub": "asha", "role": "admin", "typ": "access", "exp": NOW + 60},
                "another-secret-0123456789-0123456789",
                algorithm="HS256",
            ),
            id="other secret",
        ),
        pytest.param(
            lambda t: jwt.encode(
                {"iss": "shardline", "sub": "asha", "role": "admin", "typ": "access", "exp": NOW + 60},
                "",
                algorithm="none",
            ),
            id="alg none",
        ),
        pytest.param(
            lambda t: jwt.encode(
                {"iss": "shardline", "sub": "asha", "role": "root", "typ": "access", "exp": NOW + 60},
                SECRET,
                algorithm="HS256",
            ),
            id="unknown role",
        ),
    ],
)
def test_forged_or_broken_tokens_are_refused(issuer: TokenIssuer, mutate: Callable[[str], str]) -> None:
    token = issuer.issue(User("asha", Role.TRADER), NOW).access_token
    with pytest.raises(AuthError, match="invalid token"):
        issuer.verify_access(mutate(token), NOW)


@pytest.mark.parametrize(
    ("secret", "ttl", "reason"), [("short", 900, "at least 32 bytes"), (SECRET, 0, "positive")]
)
def test_issuer_checks_its_settings(directory: UserDirectory, secret: str, ttl: int, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        TokenIssuer(secret, directory, ttl, 3600)
