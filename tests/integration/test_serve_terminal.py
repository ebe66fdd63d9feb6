"""The terminal on real Ray Serve: REST, auth and roles, the WebSocket protocol, hub fan-out.

Two replicas behind Serve's HTTP proxy, the Ray hub actor, and the real catalog. Order routes are
exercised up to the execution actor (its absence is a clean 503 here; the e2e tests run the whole
system).
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import websockets
from conftest import free_port, poll_until
from pydantic import SecretStr

from cluster.config import Secrets, load_config
from serve.hub import RayHubPublisher
from serve.security import TokenIssuer, UserDirectory

JWT_SECRET = "integration-secret-0123456789-0123456789"
ORDER_RATE = 10.0
WS_RATE = 20.0
PASSWORDS = {
    "trader": "trader-local",
    "viewer": "viewer-local",
    "quant": "quant-local",
    "admin": "admin-local",
}


@pytest.fixture(scope="module")
def terminal(ray_session: Any) -> Iterator[dict[str, Any]]:
    from ray import serve

    from serve.app import APP_NAME, run

    base = load_config()
    port = free_port()
    config = base.model_copy(
        update={
            "serve": base.serve.model_copy(
                update={
                    "port": port,
                    "autoscaling": base.serve.autoscaling.model_copy(
                        update={"min_replicas": 2, "max_replicas": 2}
                    ),
                    "order_rate_per_user_per_s": ORDER_RATE,
                    "ws_max_rate_hz": WS_RATE,
                    "cors_origins": ["http://allowed.example"],
                }
            )
        }
    )
    url = run(config, Secrets(shardline_jwt_secret=SecretStr(JWT_SECRET), redis_url=None), heartbeat_s=1.0)
    poll_until(lambda: _ok(f"{url}/health"), 60, "the terminal to answer /health")
    yield {"url": url, "ws": url.replace("http://", "ws://") + "/ws", "config": config}
    serve.delete(APP_NAME)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def tokens(terminal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for user, password in PASSWORDS.items():
        response = httpx.post(
            f"{terminal['url']}/api/v1/auth/login", json={"username": user, "password": password}, timeout=60
        )
        assert response.status_code == 200, response.text
        out[user] = response.json()
    return out


def bearer(tokens: dict[str, dict[str, Any]], user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[user]['access_token']}"}


# REST ---------------------------------------------------------------------------------------------


def test_health_static_ui_and_security_headers(terminal: dict[str, Any]) -> None:
    health = httpx.get(f"{terminal['url']}/health")
    assert health.json() == {"status": "ok"}
    page = httpx.get(f"{terminal['url']}/")
    assert page.status_code == 200
    assert '<script type="module" src="/js/main.js">' in page.text
    for response in (health, page):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    chart = httpx.get(
        f"{terminal['url']}/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs"
    )
    assert chart.status_code == 200 and "TradingView" in chart.text[:300]
    docs = httpx.get(f"{terminal['url']}/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_readiness_reports_each_dependency(terminal: dict[str, Any]) -> None:
    report = poll_until(
        lambda: (r := httpx.get(f"{terminal['url']}/ready").json())["checks"]["hub"] and r, 30, "the hub feed"
    )
    assert report["checks"]["catalog"] is True
    assert set(report["checks"]) >= {"execution", "portfolio", "router", "catalog", "hub"}
    assert report["ready"] == all(report["checks"].values())


def test_login_refresh_and_me(terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]) -> None:
    url = terminal["url"]
    wrong = httpx.post(
        f"{url}/api/v1/auth/login", json={"username": "trader", "password": "nope"}, timeout=60
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthenticated"
    assert wrong.headers["www-authenticate"] == "Bearer"
    me = httpx.get(f"{url}/api/v1/auth/me", headers=bearer(tokens, "trader"))
    assert me.json() == {"username": "trader", "role": "trader", "permissions": ["read", "trade"]}
    refreshed = httpx.post(
        f"{url}/api/v1/auth/refresh", json={"refresh_token": tokens["trader"]["refresh_token"]}
    )
    assert refreshed.status_code == 200
    again = httpx.get(
        f"{url}/api/v1/auth/me", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    )
    assert again.json()["username"] == "trader"
    misuse = httpx.post(
        f"{url}/api/v1/auth/refresh", json={"refresh_token": tokens["trader"]["access_token"]}
    )
    assert misuse.status_code == 401
    assert "refresh token is needed" in misuse.json()["message"]


def test_every_api_route_needs_a_token(terminal: dict[str, Any]) -> None:
    spec = httpx.get(f"{terminal['url']}/api/openapi.json").json()
    checked = 0
    for path, methods in spec["paths"].items():
        if not path.startswith("/api/v1") or path in ("/api/v1/auth/login", "/api/v1/auth/refresh"):
            continue
        concrete = (
            path.replace("{key}", "NSE:3045")
            .replace("{underlying}", "NIFTY")
            .replace("{name}", "ema-equities")
            .replace("{client_order_id}", "t1")
            .replace("{gtt_id}", "GTT-1")
            .replace("{bracket_id}", "BRK-1")
        )
        for method in methods:
            response = httpx.request(method.upper(), f"{terminal['url']}{concrete}", json={})
            assert response.status_code == 401, f"{method} {path}: {response.status_code}"
            checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    ("user", "method", "path", "body"),
    [
        ("viewer", "POST", "/api/v1/orders", {"instrument": "NSE:3045", "side": "BUY", "quantity": 1}),
        ("viewer", "POST", "/api/v1/positions/flatten", {"confirm": True}),
        ("quant", "POST", "/api/v1/orders", {"instrument": "NSE:3045", "side": "BUY", "quantity": 1}),
        ("trader", "POST", "/api/v1/deployments/ema-equities/stop", None),
        ("trader", "POST", "/api/v1/risk/kill-switch", {"engaged": True}),
        ("quant", "POST", "/api/v1/risk/kill-switch", {"engaged": True}),
        ("trader", "GET", "/api/v1/users", None),
    ],
)
def test_roles_are_enforced(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]], user: str, method: str, path: str, body: Any
) -> None:
    response = httpx.request(method, f"{terminal['url']}{path}", json=body, headers=bearer(tokens, user))
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "forbidden"
    assert f"role '{user}' may not" in response.json()["message"]


def test_admin_lists_users_without_hashes(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]
) -> None:
    users = httpx.get(f"{terminal['url']}/api/v1/users", headers=bearer(tokens, "admin")).json()
    assert {"username": "viewer", "role": "viewer"} in users
    assert "argon2" not in json.dumps(users)


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"order_type": "LIMIT"}, "price", "a LIMIT order needs a price above zero"),
        ({"order_type": "LIMIT", "price": "812.555"}, "price", "more than 2 decimal places"),
        ({"order_type": "LIMIT", "price": "812.52"}, "price", "not a multiple of the tick size 0.05"),
        ({"quantity": 0}, "quantity", "greater than 0"),
        ({"side": "HOLD"}, "side", "'BUY' or 'SELL'"),
        ({"instrument": "SBIN"}, "instrument", "should match pattern"),
        ({"price": "abc", "order_type": "LIMIT"}, "price", "not a number"),
        ({"instrument": "NSE:999999999"}, None, "no instrument 'NSE:999999999'"),
    ],
)
def test_bad_orders_are_422_with_field_and_reason(
    terminal: dict[str, Any],
    tokens: dict[str, dict[str, Any]],
    body: dict[str, Any],
    field: str | None,
    reason: str,
) -> None:
    order = {"instrument": "NSE:3045", "side": "BUY", "quantity": 1} | body
    response = httpx.post(f"{terminal['url']}/api/v1/orders", json=order, headers=bearer(tokens, "admin"))
    if field is None:
        assert response.status_code == 404
        assert reason in response.json()["message"]
        return
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["field"] == field and reason in d["reason"] for d in detail), detail


async def test_order_routes_are_rate_limited_per_user(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]
) -> None:
    # Each replica limits on its own, and the proxy may spread the requests over both or send
    # nearly all to one: send more than both buckets hold, all at once.
    order = {"instrument": "NSE:3045", "side": "BUY", "quantity": 1, "client_order_id": "rate-test"}
    async with httpx.AsyncClient(base_url=terminal["url"], timeout=30) as http:
        responses = await asyncio.gather(
            *(http.post("/api/v1/orders", json=order, headers=bearer(tokens, "trader")) for _ in range(60))
        )
        limited = [r for r in responses if r.status_code == 429]
        assert limited, [r.status_code for r in responses]
        assert len(limited) <= 60 - ORDER_RATE  # at least one replica's full bucket went through
        assert int(limited[0].headers["retry-after"]) >= 1
        assert "order rate limit of 10/s reached for trader" in limited[0].json()["message"]
        # Another user has buckets of their own.
        other = await http.post("/api/v1/orders", json=order, headers=bearer(tokens, "admin"))
        assert other.status_code != 429


def test_instrument_search_get_and_option_chain(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]
) -> None:
    url, headers = terminal["url"], bearer(tokens, "viewer")
    found = httpx.get(
        f"{url}/api/v1/instruments/search", params={"q": "SBIN", "limit": 5}, headers=headers
    ).json()
    assert "NSE:3045" in [i["key"] for i in found]
    sbin = httpx.get(f"{url}/api/v1/instruments/NSE:3045", headers=headers).json()
    assert sbin["symbol"] == "SBIN-EQ" and sbin["tick_size"] == "0.05" and sbin["lot_size"] == 1
    missing = httpx.get(f"{url}/api/v1/instruments/NSE:999999999", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    chain = httpx.get(f"{url}/api/v1/instruments/NIFTY/option-chain", headers=headers).json()
    assert chain["expiry"] == chain["expiries"][0]
    middle = chain["rows"][len(chain["rows"]) // 2]
    assert middle["call"]["option_type"] == "CE" and middle["put"]["option_type"] == "PE"
    assert middle["call"]["strike"] == middle["strike"]
    bad = httpx.get(
        f"{url}/api/v1/instruments/NIFTY/option-chain", params={"expiry": "2001-01-01"}, headers=headers
    )
    assert bad.status_code == 404 and "listed" in bad.json()["message"]
    not_a_day = httpx.get(
        f"{url}/api/v1/instruments/NIFTY/option-chain", params={"expiry": "2026-13-45"}, headers=headers
    )
    assert not_a_day.status_code == 422 and "not a date" in not_a_day.json()["message"]


def test_candle_ranges_are_bounded(terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]) -> None:
    url, headers = terminal["url"], bearer(tokens, "viewer")
    decades = httpx.get(
        f"{url}/api/v1/instruments/NSE:3045/candles",
        params={"interval": "1m", "from": 0, "to": 1_700_000_000},
        headers=headers,
    )
    assert decades.status_code == 422
    assert "at most 5000 per request" in decades.json()["message"]
    far_future = httpx.get(
        f"{url}/api/v1/instruments/NSE:3045/candles", params={"to": 10**12}, headers=headers
    )
    assert far_future.status_code == 422


def test_cors_allows_only_configured_origins(terminal: dict[str, Any]) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{terminal['url']}/api/v1/orders",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )

    allowed = preflight("http://allowed.example")
    assert allowed.headers.get("access-control-allow-origin") == "http://allowed.example"
    assert "access-control-allow-credentials" not in allowed.headers
    refused = preflight("http://evil.example")
    assert "access-control-allow-origin" not in refused.headers


# WebSocket ----------------------------------------------------------------------------------------


class Client:
    """A test WebSocket client: unpacks batched frames and acknowledges them as the protocol asks."""

    def __init__(self, ws: Any, ack: bool = True) -> None:
        self.ws = ws
        self.ack = ack
        self.frames = 0
        self.queue: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def next(self, timeout_s: float = 10.0) -> dict[str, Any]:
        while not self.queue:
            data = json.loads(await asyncio.wait_for(self.ws.recv(), timeout_s))
            self.frames += 1
            if self.ack and self.frames % 4 == 0:
                await self.send({"type": "ack", "frames": self.frames})
            self.queue.extend(data if isinstance(data, list) else [data])
        return self.queue.pop(0)

    async def until(self, match: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            message = await self.next(max(0.01, deadline - time.monotonic()))
            if match(message):
                return message


async def connect(
    terminal: dict[str, Any], token: str, ack: bool = True, **kwargs: Any
) -> tuple[Client, dict[str, Any]]:
    ws = await websockets.connect(terminal["ws"], **kwargs)
    client = Client(ws, ack)
    await client.send({"type": "auth", "token": token})
    hello = await client.next()
    return client, hello


@functools.cache
def publisher() -> RayHubPublisher:
    # One publisher, as an actor would hold: the hub orders one publisher's calls by its count.
    return RayHubPublisher()


def publish(*updates: tuple[str, str, dict[str, Any]]) -> None:
    publisher().publish(list(updates))


async def test_first_message_must_authenticate(terminal: dict[str, Any]) -> None:
    async with websockets.connect(terminal["ws"]) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channels": ["orders"]}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["code"] == "unauthenticated"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    async with websockets.connect(terminal["ws"]) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "forged"}))
        error = json.loads(await ws.recv())
        assert error["code"] == "unauthenticated" and "invalid token" in error["message"]


async def test_malformed_and_unknown_messages_get_error_frames(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]
) -> None:
    client, hello = await connect(terminal, tokens["viewer"]["access_token"])
    assert hello["type"] == "authenticated" and hello["role"] == "viewer"
    cases = [
        ("not json", "bad_message", "not valid JSON"),
        ("[1, 2]", "bad_message", "must be a JSON object"),
        (json.dumps({"type": "dance", "id": 3}), "bad_message", "unknown message type 'dance'"),
        (json.dumps({"type": "subscribe", "id": 4}), "bad_message", "non-empty list"),
        (
            json.dumps({"type": "subscribe", "channels": ["ticks:NSE:1"], "id": 5}),
            "bad_channel",
            "unknown channel",
        ),
        (
            json.dumps({"type": "subscribe", "channels": ["candles:NSE:3045:7m"]}),
            "bad_channel",
            "interval '7m'",
        ),
        (
            json.dumps({"type": "subscribe", "channels": ["quote:NSE:999999999"]}),
            "not_found",
            "no instrument",
        ),
    ]
    for text, code, message in cases:
        await client.ws.send(text)
        error = await client.until(lambda m: m["type"] == "error")
        assert error["code"] == code and message in error["message"], error
    # The connection survived all of that.
    await client.send({"type": "ping", "id": 99})
    pong = await client.until(lambda m: m["type"] == "pong")
    assert pong["id"] == 99
    await client.ws.close()


async def test_snapshot_then_updates_in_rupees(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]
) -> None:
    publish(("quote:NSE:3045", "", {"ltp": 81_255, "volume": 100, "bid": 81_250, "ask": 81_260, "ts_ns": 1}))
    client, _ = await connect(terminal, tokens["viewer"]["access_token"])
    await client.send({"type": "subscribe", "channels": ["quote:NSE:3045"]})
    snapshot = await client.until(lambda m: m["type"] == "snapshot")
    assert snapshot["channel"] == "quote:NSE:3045"
    if snapshot["data"] is not None:  # the replica had the quote from the hub already
        assert snapshot["data"] == {
            "ltp": "812.55",
            "volume": 100,
            "bid": "812.50",
            "ask": "812.60",
            "ts_ns": 1,
            "instrument": "NSE:3045",
        }
    publish(("quote:NSE:3045", "", {"ltp": 81_300, "volume": 150, "bid": 81_295, "ask": 81_305, "ts_ns": 2}))
    update = await client.until(lambda m: m["type"] == "update" and m["data"]["ltp"] == "813.00")
    assert update["data"]["bid"] == "812.95" and update["data"]["volume"] == 150
    await client.ws.close()


async def test_updates_are_conflated_to_the_channel_rate(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]
) -> None:
    client, _ = await connect(terminal, tokens["viewer"]["access_token"])
    await client.send({"type": "subscribe", "channels": ["quote:NSE:2885"]})
    await client.until(lambda m: m["type"] == "snapshot")
    started = time.monotonic()
    for batch in range(20):
        publish(*[("quote:NSE:2885", "", {"ltp": 100_000 + batch * 50 + i, "ts_ns": i}) for i in range(50)])
    last = f"{(100_000 + 19 * 50 + 49) / 100:.2f}"
    received = []
    while True:
        message = await client.until(lambda m: m["type"] == "update", timeout_s=30)
        received.append(message["data"]["ltp"])
        if message["data"]["ltp"] == last:
            break
    elapsed = time.monotonic() - started
    assert len(received) <= WS_RATE * elapsed + 2, (len(received), elapsed)
    assert len(received) < 1000  # 1000 were published
    await client.ws.close()


async def test_unsubscribe_stops_a_channel(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]
) -> None:
    client, _ = await connect(terminal, tokens["viewer"]["access_token"])
    await client.send({"type": "subscribe", "channels": ["quote:NSE:1333", "quote:NSE:1594"]})
    await client.until(lambda m: m["type"] == "snapshot" and m["channel"] == "quote:NSE:1594")
    await client.send({"type": "unsubscribe", "channels": ["quote:NSE:1333"]})
    await client.send({"type": "ping", "id": 1})
    await client.until(lambda m: m["type"] == "pong")
    publish(("quote:NSE:1333", "", {"ltp": 1}), ("quote:NSE:1594", "", {"ltp": 2}))
    seen = await client.until(lambda m: m["type"] == "update")
    assert seen["channel"] == "quote:NSE:1594"
    await client.ws.close()


async def test_every_replica_fans_out_hub_updates(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]
) -> None:
    clients: dict[str, Client] = {}
    spare = []
    for _ in range(40):  # the proxy picks replicas; keep connecting until both have a client
        client, hello = await connect(terminal, tokens["viewer"]["access_token"])
        if hello["replica"] in clients:
            spare.append(client)
        else:
            clients[hello["replica"]] = client
        if len(clients) == 2:
            break
    assert len(clients) == 2, "the proxy never reached the second replica"
    for client in clients.values():
        await client.send({"type": "subscribe", "channels": ["alerts"]})
        await client.until(lambda m: m["type"] == "snapshot")
    publish(("alerts", "fanout-1", {"message": "fan-out check", "level": "info"}))
    for client in clients.values():
        alert = await client.until(lambda m: m["type"] == "update" and m["key"] == "fanout-1")
        assert alert["data"]["message"] == "fan-out check"
    for client in [*clients.values(), *spare]:
        await client.ws.close()


async def test_a_stalled_client_does_not_slow_the_others(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]
) -> None:
    token = tokens["viewer"]["access_token"]
    channels = [f"quote:NSE:{t}" for t in (3045, 2885, 1333, 1594, 11536, 1660, 3456, 317)]
    # The stalled client: a raw socket that completes the handshake, subscribes, and never reads.
    stalled = socket.create_connection(("127.0.0.1", int(terminal["url"].rsplit(":", 1)[1])))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert stalled.recv(4096).startswith(b"HTTP/1.1 101")  # frames sent before the 101 would be lost
    for message in ({"type": "auth", "token": token}, {"type": "subscribe", "channels": channels}):
        stalled.sendall(_masked_frame(json.dumps(message).encode()))
    healthy, _ = await connect(terminal, token)
    await healthy.send({"type": "subscribe", "channels": ["alerts"]})
    await healthy.until(lambda m: m["type"] == "snapshot")
    filler = "x" * 20_000
    started = time.monotonic()
    for round_ in range(40):
        publish(*[(c, "", {"ltp": 1000 + round_, "note": filler}) for c in channels])
        publish(("alerts", f"stall-{round_}", {"message": f"round {round_}"}))
        alert = await healthy.until(key_is(f"stall-{round_}"), timeout_s=5)
        assert alert["data"]["message"] == f"round {round_}"
    assert time.monotonic() - started < 30

    # The stalled client's replica kept only latest state for it: updates were conflated, not queued.
    def conflated_somewhere() -> bool:
        stats = httpx.get(f"{terminal['url']}/api/v1/stats", headers=bearer(tokens, "viewer")).json()[
            "terminal"
        ]
        return stats["conflated"] > 0

    poll_until(conflated_somewhere, 30, "a replica to report conflated updates")
    stalled.close()
    await healthy.ws.close()


def key_is(key: str) -> Callable[[dict[str, Any]], bool]:
    return lambda message: message.get("key") == key


def _masked_frame(payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    header = bytes([0x81])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    else:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_heartbeats_and_expired_tokens(terminal: dict[str, Any]) -> None:
    directory = UserDirectory(terminal["config"].users)
    issuer = TokenIssuer(JWT_SECRET, directory, access_ttl_s=900, refresh_ttl_s=3600)
    viewer = directory.get("viewer")
    assert viewer is not None
    # A token issued 895 s ago: valid for five more seconds, with a heartbeat every second.
    token = issuer.issue(viewer, time.time() - 895).access_token
    client, hello = await connect(terminal, token)
    assert hello["type"] == "authenticated" and hello["expires_at"] - time.time() <= 5
    seen: list[dict[str, Any]] = []
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            seen.append(await client.next(timeout_s=30))
    kinds = [m["type"] for m in seen]
    assert "heartbeat" in kinds and all(m["ts"] > 0 for m in seen if m["type"] == "heartbeat")
    assert seen[-1]["type"] == "error" and seen[-1]["code"] == "token_expired"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_websocket_from_a_foreign_origin_is_refused(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]
) -> None:
    with pytest.raises((websockets.InvalidStatus, websockets.ConnectionClosed)):
        ws = await websockets.connect(terminal["ws"], origin="http://evil.example")  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "auth", "token": tokens["viewer"]["access_token"]}))
        await asyncio.wait_for(ws.recv(), 5)
    client, hello = await connect(terminal, tokens["viewer"]["access_token"], origin="http://allowed.example")
    assert hello["type"] == "authenticated"
    await client.ws.close()


async def test_the_ui_bench_clients_acknowledge_and_time_every_update(
    terminal: dict[str, Any], tokens: dict[str, dict[str, Any]]
) -> None:
    from serve.bench import ClientLoad, QuotePublisher
    from serve.websocket import ACK_WINDOW

    load = ClientLoad(terminal["ws"], tokens["viewer"]["access_token"], [["quote:NSE:3045"]] * 2)
    quotes = QuotePublisher(publisher(), ["NSE:3045"], rate_hz=WS_RATE)
    quotes.start()
    try:
        await load.run(warmup_s=0.5, seconds=5.0)
    finally:
        quotes.stopping.set()
        quotes.join(timeout=10)
    assert load.connected == 2 and load.errors == []
    # Unacknowledged, a client gets ACK_WINDOW frames and then nothing: both kept receiving.
    assert load.updates > 2 * ACK_WINDOW and load.frames > 2 * ACK_WINDOW
    assert len(load.lags_ms) == load.updates
    assert min(load.lags_ms) >= 0  # stamped by the publisher before it left
