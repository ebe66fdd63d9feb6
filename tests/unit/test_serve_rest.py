"""The REST edge in-process (no Ray): errors, sign-in limits, headers, metrics, the UI's files.

Routes that need the trading actors answer 503 here, which is itself behaviour worth pinning: the
terminal stays up and says which actor is missing.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from cluster.config import load_config
from serve.api import LOGIN_BURST, LOGIN_RATE_PER_S, create_api
from serve.ratelimit import UserRateLimiter
from serve.service import ActorDirectory, CatalogLookup, TerminalService

warnings.filterwarnings("ignore", message=".*httpx.*", category=DeprecationWarning)
from starlette.testclient import TestClient  # noqa: E402

SECRET = "unit-secret-0123456789-0123456789-0123"
CHARTS = "/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    config = load_config()
    service = TerminalService(config, CatalogLookup.load(config), ActorDirectory())
    with TestClient(create_api(config, service, SECRET, feed=None, heartbeat_s=3600)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def trader(client: TestClient) -> dict[str, str]:
    answer = client.post("/api/v1/auth/login", json={"username": "trader", "password": "trader-local"})
    assert answer.status_code == 200
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_validation_errors_name_each_field(client: TestClient, trader: dict[str, str]) -> None:
    answer = client.post(
        "/api/v1/orders",
        json={"instrument": "NSE:3045", "side": "SIDEWAYS", "quantity": -1, "order_type": "LIMIT"},
        headers=trader,
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "validation_error"
    fields = {d["field"] for d in body["detail"]}
    assert {"side", "quantity"} <= fields
    assert all(d["reason"] for d in body["detail"])
    assert "side:" in body["message"] and "quantity:" in body["message"]


def test_a_missing_actor_is_a_clean_503(client: TestClient, trader: dict[str, str]) -> None:
    answer = client.get("/api/v1/positions", headers=trader)
    assert answer.status_code == 503
    assert answer.json() == {
        "error": "unavailable",
        "message": "the portfolio actor is not reachable: not connected to Ray",
        "detail": [],
    }


def test_off_tick_prices_are_refused_before_any_actor(client: TestClient, trader: dict[str, str]) -> None:
    order = {"instrument": "NSE:3045", "side": "BUY", "quantity": 1, "order_type": "LIMIT", "price": "812.53"}
    answer = client.post("/api/v1/orders", json=order, headers=trader)
    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {"field": "price", "reason": "812.53 is not a multiple of the tick size 0.05"}
    ]


def test_sign_in_attempts_are_limited_per_username(client: TestClient) -> None:
    # A limiter that refills too slowly to matter during the test (argon2 takes its time per try).
    client.app.state.terminal.login_limiter = UserRateLimiter(1e-6, burst=3, what="sign-in")  # type: ignore[attr-defined]
    statuses = [
        client.post("/api/v1/auth/login", json={"username": "quant", "password": "guess"}).status_code
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    limited = client.post("/api/v1/auth/login", json={"username": "quant", "password": "quant-local"})
    assert limited.status_code == 429 and "sign-in rate limit" in limited.json()["message"]
    assert int(limited.headers["retry-after"]) >= 1
    assert LOGIN_BURST >= 5 and LOGIN_RATE_PER_S <= 0.2  # the configured limiter is at least this strict
    # Other usernames are not held up by someone guessing this one.
    assert (
        client.post("/api/v1/auth/login", json={"username": "viewer", "password": "viewer-local"}).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("path", "content_type", "snippet"),
    [
        ("/", "text/html", '<script type="module" src="/js/main.js">'),
        ("/js/main.js", "javascript", "import { ApiError, Session }"),
        ("/css/terminal.css", "text/css", "--bg:"),
        (
            "/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs",
            "javascript",
            "TradingView",
        ),
    ],
)
def test_the_ui_is_served_with_strict_headers(
    client: TestClient, path: str, content_type: str, snippet: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    assert content_type in answer.headers["content-type"]
    assert snippet in answer.text
    assert answer.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self';")
    assert answer.headers["x-frame-options"] == "DENY"


def test_api_answers_are_not_cached(client: TestClient, trader: dict[str, str]) -> None:
    assert client.get("/api/v1/auth/me", headers=trader).headers["cache-control"] == "no-store"


def test_metrics_count_requests_by_route_template(client: TestClient, trader: dict[str, str]) -> None:
    client.get("/api/v1/instruments/NSE:3045", headers=trader)
    client.get("/api/v1/instruments/NSE:2885", headers=trader)
    text = client.get("/metrics").text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("shardline_http_request_seconds_count")
        and 'route="/api/v1/instruments/{key}"' in line
        and 'status="200"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 2
    assert "shardline_ws_sessions" in text
