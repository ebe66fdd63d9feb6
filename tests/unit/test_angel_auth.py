"""Session objects, the encrypted session cache, credentials that never show their secrets."""

from __future__ import annotations

import itertools
import logging
from datetime import datetime
from pathlib import Path

import jwt
import pyotp
import pytest
from cryptography.fernet import Fernet

from actors.angel.auth import AngelCredentials, AngelSession, SessionCache, session_from_tokens
from actors.angel.common import CANDLE_MAX_DAYS, SESSION_TTL_S, CandleInterval
from actors.angel.factories import AngelEndpoints, connect_from_config
from actors.angel.rest import RetryPolicy, candle_windows
from cluster.config import ConfigError, Secrets, parse_config
from cluster.errors import ShardlineError

SECRET = pyotp.random_base32()


def session(**overrides: object) -> AngelSession:
    fields: dict[str, object] = {
        "client_code": "A1",
        "jwt_token": "jwt-secret-value",
        "refresh_token": "refresh-secret-value",
        "feed_token": "feed-secret-value",
        "issued_at": 1000.0,
        "expires_at": 1000.0 + 28 * 3600,
    }
    fields.update(overrides)
    return AngelSession(**fields)  # type: ignore[arg-type]


def test_credentials_never_show_secrets() -> None:
    creds = AngelCredentials(client_code="A1", api_key="api-secret", pin="4321", totp_secret=SECRET)
    shown = repr(creds) + str(creds)
    assert "A1" in shown
    assert "api-secret" not in shown and "4321" not in shown and SECRET not in shown


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pin": ""}, "pin empty"),
        ({"client_code": "", "api_key": ""}, "client_code, api_key empty"),
        ({"totp_secret": "not base32!"}, "not valid base32"),
    ],
)
def test_incomplete_credentials_are_refused_by_name(fields: dict[str, str], message: str) -> None:
    base = {"client_code": "A1", "api_key": "k", "pin": "1", "totp_secret": SECRET}
    with pytest.raises(ShardlineError, match=message) as err:
        AngelCredentials(**{**base, **fields})
    assert "not base32!" not in str(err.value)


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "ANGEL_API_KEY": "k",
        "ANGEL_CLIENT_CODE": "A1",
        "ANGEL_PIN": "9",
        "ANGEL_TOTP_SECRET": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    creds = AngelCredentials.from_secrets(Secrets(_env_file=None))  # type: ignore[call-arg]
    assert (creds.client_code, creds.api_key, creds.pin) == ("A1", "k", "9")
    monkeypatch.delenv("ANGEL_PIN")
    with pytest.raises(Exception, match="ANGEL_PIN"):
        AngelCredentials.from_secrets(Secrets(_env_file=None))  # type: ignore[call-arg]


def test_session_repr_hides_tokens() -> None:
    shown = repr(session())
    assert "secret-value" not in shown and "A1" in shown


def test_expiry_comes_from_the_jwt_when_it_has_one() -> None:
    token = jwt.encode({"sub": "A1", "exp": 5000}, "k" * 32, algorithm="HS256")
    made = session_from_tokens(
        "A1", {"jwtToken": f"Bearer {token}", "refreshToken": "r", "feedToken": "f"}, 1000.0
    )
    assert made.jwt_token == token  # the "Bearer " the SDK adds is not part of the token
    assert made.expires_at == 5000.0
    opaque = session_from_tokens("A1", {"jwtToken": "opaque", "refreshToken": "r", "feedToken": "f"}, 1000.0)
    assert opaque.expires_at == 1000.0 + SESSION_TTL_S


@pytest.mark.parametrize(
    ("lifetime", "margin", "renew_after"),
    [(28 * 3600, 600, 28 * 3600 - 600), (60, 600, 54), (3600, 60, 3540)],
)
def test_renewal_point(lifetime: float, margin: float, renew_after: float) -> None:
    s = session(issued_at=0.0, expires_at=lifetime)
    assert s.renew_at(margin) == pytest.approx(renew_after)


def test_cache_round_trip_is_encrypted_at_rest(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    cache = SessionCache(tmp_path / "s.fernet", key)
    cache.save(session())
    raw = (tmp_path / "s.fernet").read_bytes()
    assert b"secret-value" not in raw  # too long to turn up in a token by chance, unlike "A1"
    assert b'"A1"' in Fernet(key.encode()).decrypt(raw)  # the account is in it, readable with the key
    assert (tmp_path / "s.fernet").stat().st_mode & 0o777 == 0o600
    assert cache.load("A1") == session()
    assert cache.load("OTHER") is None  # a cache of another account is not used
    cache.clear()
    assert cache.load("A1") is None


def test_cache_written_with_another_key_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    SessionCache(tmp_path / "s.fernet", Fernet.generate_key().decode()).save(session())
    with caplog.at_level(logging.WARNING):
        assert SessionCache(tmp_path / "s.fernet", Fernet.generate_key().decode()).load("A1") is None
    assert "another key" in caplog.text


def test_a_bad_key_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ShardlineError, match="SHARDLINE_SESSION_KEY is not a Fernet key"):
        SessionCache(tmp_path / "s", "too-short")


def test_no_key_means_no_cache(tmp_path: Path) -> None:
    assert SessionCache.from_secrets(Secrets(_env_file=None), tmp_path) is None  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("interval", "days", "windows"),
    [
        (CandleInterval.ONE_MINUTE, 10, 1),
        (CandleInterval.ONE_MINUTE, 30, 1),
        (CandleInterval.ONE_MINUTE, 31, 2),
        (CandleInterval.ONE_MINUTE, 95, 4),
        (CandleInterval.FIVE_MINUTE, 250, 3),
        (CandleInterval.ONE_DAY, 3650, 2),
    ],
)
def test_candle_ranges_are_cut_to_angels_max_days(interval: CandleInterval, days: int, windows: int) -> None:
    start = datetime(2026, 1, 1, 9, 15)
    end = datetime.fromtimestamp(start.timestamp() + days * 86400)
    cut = candle_windows(start, end, interval)
    assert len(cut) == windows
    assert cut[0][0] == start and cut[-1][1] == end
    max_days = CANDLE_MAX_DAYS[interval]
    for (a_start, a_end), (b_start, _) in itertools.pairwise(cut):
        assert (a_end - a_start).days <= max_days
        assert (b_start - a_end).total_seconds() == 60  # no minute fetched twice, none skipped


def test_candle_range_backwards_is_refused() -> None:
    with pytest.raises(ValueError, match=r"ends .* before it starts"):
        candle_windows(datetime(2026, 2, 1), datetime(2026, 1, 1), CandleInterval.ONE_DAY)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 10])
def test_back_off_doubles_up_to_its_cap_with_jitter(attempt: int) -> None:
    policy = RetryPolicy(backoff_initial_s=0.25, backoff_max_s=2.0)
    ceiling = min(2.0, 0.25 * 2 ** (attempt - 1))
    assert all(ceiling / 2 <= policy.backoff(attempt) <= ceiling for _ in range(100))


def test_the_login_follows_the_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "ANGEL_API_KEY",
        "ANGEL_CLIENT_CODE",
        "ANGEL_PIN",
        "ANGEL_TOTP_SECRET",
        "SHARDLINE_SESSION_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    secrets = Secrets(_env_file=None)  # type: ignore[call-arg]
    sim_config = parse_config({"mode": "sim-live", "data_dir": str(tmp_path)})
    with pytest.raises(ValueError, match="needs the running simulator's endpoints"):
        connect_from_config(sim_config, secrets)
    conn = connect_from_config(sim_config, secrets, AngelEndpoints("http://127.0.0.1:1", "ws://x", "ws://y"))
    assert conn.credentials.client_code == sim_config.sim.client_code
    assert conn.endpoints.rest_url == "http://127.0.0.1:1"
    with pytest.raises(ConfigError, match="ANGEL_API_KEY, ANGEL_CLIENT_CODE, ANGEL_PIN, ANGEL_TOTP_SECRET"):
        connect_from_config(parse_config({"mode": "live", "data_dir": str(tmp_path)}), secrets)
