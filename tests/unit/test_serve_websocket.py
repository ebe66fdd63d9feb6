"""The WebSocket fan-out in-process (no Ray): protocol, conflation, acknowledgement window, candles.

The app is the real one from `serve.api.create_api`, with the real catalog; hub updates are handed
to the replica's broadcaster on the app's own event loop, as the hub feed would.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from cluster.config import load_config
from serve.api import create_api
from serve.hub import HubUpdate
from serve.security import TokenIssuer, User, UserDirectory
from serve.service import ActorDirectory, CatalogLookup, TerminalService

warnings.filterwarnings("ignore", message=".*httpx.*", category=DeprecationWarning)
from starlette.testclient import TestClient  # noqa: E402

SECRET = "unit-secret-0123456789-0123456789-0123"
WINDOW = 4


@pytest.fixture(scope="module")
def catalog() -> CatalogLookup:
    return CatalogLookup.load(load_config())


@pytest.fixture
def app_client(catalog: CatalogLookup) -> Iterator[tuple[TestClient, Any]]:
    token()
    config = load_config()
    service = TerminalService(config, catalog, ActorDirectory())
    app = create_api(config, service, SECRET, feed=None, heartbeat_s=3600)
    app.state.terminal.broadcaster._ack_window = WINDOW
    with TestClient(app) as client:
        yield client, app.state.terminal.broadcaster


@functools.cache
def token(username: str = "viewer") -> str:
    # Made once, before any socket opens: the server gives a new connection 5 s to authenticate.
    directory = UserDirectory(load_config().users)
    user = directory.get(username)
    assert user is not None
    return (
        TokenIssuer(SECRET, directory, 900, 3600)
        .issue(User(user.username, user.role), time.time())
        .access_token
    )


def messages(frame: Any) -> list[dict[str, Any]]:
    return frame if isinstance(frame, list) else [frame]


def receive_until(ws: Any, match: Any, limit: int = 50) -> dict[str, Any]:
    for _ in range(limit):
        for message in messages(ws.receive_json()):
            if match(message):
                return message
    raise AssertionError("no matching message")


def deliver(client: TestClient, broadcaster: Any, *updates: tuple[str, str, dict[str, Any]]) -> None:
    assert client.portal is not None
    client.portal.call(broadcaster.deliver, [HubUpdate(0, c, k, d) for c, k, d in updates])


def test_auth_then_snapshot_then_updates(app_client: tuple[TestClient, Any]) -> None:
    client, broadcaster = app_client
    deliver(client, broadcaster, ("quote:NSE:3045", "", {"ltp": 81_255, "volume": 10, "ts_ns": 1}))
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": token()})
        hello = ws.receive_json()
        assert hello["type"] == "authenticated" and hello["ack_window"] == WINDOW
        ws.send_json({"type": "subscribe", "channels": ["quote:NSE:3045"]})
        snapshot = receive_until(ws, lambda m: m["type"] == "snapshot")
        assert snapshot["data"] == {"ltp": "812.55", "volume": 10, "ts_ns": 1, "instrument": "NSE:3045"}
        deliver(client, broadcaster, ("quote:NSE:3045", "", {"ltp": 81_300, "volume": 12, "ts_ns": 2}))
        update = receive_until(ws, lambda m: m["type"] == "update")
        assert update["data"]["ltp"] == "813.00"


def test_quotes_keyed_by_iid_reach_the_instrument_channel(
    app_client: tuple[TestClient, Any], catalog: CatalogLookup
) -> None:
    client, broadcaster = app_client
    sbin = catalog.get("NSE:3045")
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": token()})
        ws.receive_json()
        ws.send_json({"type": "subscribe", "channels": ["quote:NSE:3045"]})
        receive_until(ws, lambda m: m["type"] == "snapshot")
        deliver(client, broadcaster, ("quote", str(sbin.iid), {"ltp": 70_005, "ts_ns": 5}))
        update = receive_until(ws, lambda m: m["type"] == "update")
        assert update["channel"] == "quote:NSE:3045" and update["data"]["ltp"] == "700.05"


def test_a_client_that_stops_acknowledging_gets_only_latest_state(app_client: tuple[TestClient, Any]) -> None:
    client, broadcaster = app_client
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": token()})
        ws.receive_json()  # frame 1
        ws.send_json({"type": "subscribe", "channels": ["alerts"]})
        receive_until(ws, lambda m: m["type"] == "snapshot")  # frame 2
        for i in range(WINDOW - 2):
            deliver(client, broadcaster, ("alerts", f"a{i}", {"message": str(i)}))
            receive_until(ws, lambda m: m["type"] == "update")
        # The window is full: further updates wait in the outbox, newer replacing older per key.
        for round_ in range(5):
            deliver(client, broadcaster, ("alerts", "same", {"message": f"v{round_}"}))
        session = next(iter(broadcaster._sessions))
        assert session.frames_sent == WINDOW
        assert session.outbox.stats.conflated == 4
        ws.send_json({"type": "ack", "frames": WINDOW})
        latest = receive_until(ws, lambda m: m["type"] == "update")
        assert latest["key"] == "same" and latest["data"]["message"] == "v4"


def test_live_candles_fold_quotes(app_client: tuple[TestClient, Any]) -> None:
    client, broadcaster = app_client
    t0 = 1_780_000_020  # inside one IST minute
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": token()})
        ws.receive_json()
        ws.send_json({"type": "subscribe", "channels": ["candles:NSE:3045:1m"]})
        snapshot = receive_until(ws, lambda m: m["type"] == "snapshot")
        assert snapshot["data"] is None
        for price, volume, dt in ((10_000, 100, 0), (10_500, 130, 5), (9_800, 150, 10)):
            deliver(
                client,
                broadcaster,
                ("quote:NSE:3045", "", {"ltp": price, "volume": volume, "ts_ns": (t0 + dt) * 10**9}),
            )
        ws.send_json({"type": "ack", "frames": 100})
        candle = receive_until(ws, lambda m: m["type"] == "update" and m["data"]["close"] == "98.00")
        assert candle["data"]["high"] == "105.00" and candle["data"]["low"] == "98.00"
        assert candle["data"]["open"] == "100.00" and candle["data"]["volume"] == 50
        assert candle["data"]["time"] % 60 == 0


def test_order_details_merge_into_rest_answers(app_client: tuple[TestClient, Any]) -> None:
    client, broadcaster = app_client
    deliver(client, broadcaster, ("orders", "t-1", {"side": "BUY", "quantity": 5, "price": 81_255}))
    service = client.app.state.terminal.service  # type: ignore[attr-defined]
    body = service._order_body(
        {"client_order_id": "t-1", "venue_order_id": None, "book": "manual", "instrument": "NSE:3045",
         "status": "OPEN", "filled_quantity": 0, "avg_price": 0}
    )  # fmt: skip
    assert body["side"] == "BUY" and body["quantity"] == 5 and body["price"] == "812.55"


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ({"type": "subscribe", "channels": ["orders"]}, "unauthenticated"),
        ({"type": "auth"}, "unauthenticated"),
        ({"type": "auth", "token": "x.y.z"}, "unauthenticated"),
    ],
)
def test_unauthenticated_connections_are_closed(
    app_client: tuple[TestClient, Any], first: dict[str, Any], code: str
) -> None:
    from starlette.websockets import WebSocketDisconnect

    client, _ = app_client
    with client.websocket_connect("/ws") as ws:
        ws.send_json(first)
        error = ws.receive_json()
        assert error["type"] == "error" and error["code"] == code
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4401


def test_account_channels_snapshot_an_error_when_the_actors_are_away(
    app_client: tuple[TestClient, Any],
) -> None:
    client, _ = app_client
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": token()})
        ws.receive_json()
        ws.send_json({"type": "subscribe", "channels": ["orders"]})
        snapshot = receive_until(ws, lambda m: m["type"] == "snapshot")
        assert snapshot["data"] is None and "execution actor is not reachable" in snapshot["error"]
