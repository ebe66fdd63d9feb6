"""Fuzzing the terminal's WebSocket message parser over a real socket (uvicorn, no Ray).

The app is the real one (`serve.api.create_api`, the real catalog and token issuer); the actors
are absent, so account snapshots answer with an error, which is not what is under test. Each
generated session signs in, sends a run of hostile messages (not JSON, JSON that is not an
object, oversized, deeply nested, binary frames, wrong types in every field, unknown message
types and channels) and checks that each one got its own error frame with a known code, that the
server counted each one, and that the session still answers a ping afterwards. A bad `auth`
message is the one that ends a session: the server says why and closes with 4401.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from cluster.config import load_config
from serve.api import create_api
from serve.security import TokenIssuer, User, UserDirectory
from serve.service import ActorDirectory, CatalogLookup, TerminalService
from serve.websocket import MAX_MESSAGE_BYTES

SECRET = "fuzz-secret-0123456789-0123456789-0123456"
ERROR_CODES = {"bad_message", "bad_channel", "forbidden", "unauthenticated", "not_found", "unavailable"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, Any]]:
    config = load_config()
    service = TerminalService(config, CatalogLookup.load(config), ActorDirectory())
    app = create_api(config, service, SECRET, feed=None, heartbeat_s=3600)
    port = free_port()
    uv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio")
    )
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)  # the server's own start-up
    directory = UserDirectory(config.users)
    trader = directory.get("trader")
    assert trader is not None
    token = TokenIssuer(SECRET, directory, 900, 3600).issue(User(trader.username, trader.role), time.time())
    yield {
        "url": f"ws://127.0.0.1:{port}/ws",
        "token": token.access_token,
        "broadcaster": app.state.terminal.broadcaster,
    }
    uv.should_exit = True
    thread.join(timeout=10)


@contextlib.contextmanager
def signed_in(server: dict[str, Any]) -> Iterator[ClientConnection]:
    with connect(server["url"], max_size=None, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": server["token"]}))
        assert next_message(ws)["type"] == "authenticated"
        yield ws


def next_message(ws: ClientConnection, timeout_s: float = 10.0) -> dict[str, Any]:
    """The next message, unbatching array frames and skipping heartbeats."""
    pending: list[dict[str, Any]] = getattr(ws, "_pending", [])
    while not pending:
        frame = json.loads(ws.recv(timeout=timeout_s))
        pending = frame if isinstance(frame, list) else [frame]
        pending = [m for m in pending if m.get("type") != "heartbeat"]
    message = pending.pop(0)
    ws._pending = pending  # type: ignore[attr-defined]
    return message


def ping_answers(ws: ClientConnection, ref: int) -> bool:
    ws.send(json.dumps({"type": "ping", "id": ref}))
    for _ in range(20):
        message = next_message(ws)
        if message.get("type") == "pong":
            return bool(message.get("id") == ref)
    return False


# ----------------------------------------------------------------------------------- what is sent

# Finite floats only: json.dumps writes NaN and Infinity, which are not JSON (the parser's own tests
# send those as malformed messages).
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
ANY_JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
UNPARSABLE_CHANNELS = [
    "quote:",
    "quote:NSE",
    "candles:NSE:3045:7m",
    "depth:nse:3045",
    "orders:x",
    "::",
    "",
    "trades",
]
CHANNEL_NAMES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["quote:", "quote:NSE", "candles:NSE:3045:7m", "depth:nse:3045", "orders:x", "::", "quote:NSE:"]
    ),
    st.builds(
        lambda k: f"quote:{k}", st.from_regex(r"[A-Z]{2,6}:[0-9]{7,9}", fullmatch=True)
    ),  # unknown instrument
)


@st.composite
def bad_messages(draw: Any) -> tuple[str, str | bytes]:
    """(kind, payload): one message the server must refuse with an error and survive."""
    kind = draw(
        st.sampled_from(
            [
                "not_json",
                "json_not_object",
                "oversized",
                "deep",
                "binary",
                "unknown_type",
                "wrong_type_type",
                "subscribe_bad_channels",
                "unsubscribe_bad_channel",
                "subscribe_bad_shape",
                "ack_bad_frames",
            ]
        )
    )
    if kind == "not_json":
        text = draw(st.text(min_size=1, max_size=200).filter(lambda t: not _is_json(t)))
        return kind, text
    if kind == "json_not_object":
        return kind, json.dumps(draw(st.one_of(JSON_LEAVES, st.lists(ANY_JSON, max_size=5))))
    if kind == "oversized":
        return kind, json.dumps(
            {"type": "ping", "pad": "x" * draw(st.integers(MAX_MESSAGE_BYTES, 3 * MAX_MESSAGE_BYTES))}
        )
    if kind == "deep":
        depth = draw(st.integers(500, 20_000))
        return kind, "[" * depth + "]" * depth
    if kind == "binary":
        return kind, draw(st.binary(min_size=0, max_size=300))
    if kind == "unknown_type":
        name = draw(
            st.text(max_size=20).filter(
                lambda t: t not in ("auth", "subscribe", "unsubscribe", "ack", "ping")
            )
        )
        return kind, json.dumps({"type": name, "id": draw(JSON_LEAVES)})
    if kind == "wrong_type_type":
        return kind, json.dumps(
            {"type": draw(st.one_of(st.integers(), st.lists(st.text(), max_size=2), st.none()))}
        )
    if kind == "subscribe_bad_channels":
        names = draw(st.lists(CHANNEL_NAMES, min_size=1, max_size=3))
        return kind, json.dumps({"type": "subscribe", "channels": names})
    if kind == "unsubscribe_bad_channel":
        names = draw(st.lists(st.sampled_from(UNPARSABLE_CHANNELS), min_size=1, max_size=3))
        return kind, json.dumps({"type": "unsubscribe", "channels": names})
    if kind == "subscribe_bad_shape":
        shape = draw(
            st.sampled_from(
                [{"channels": []}, {"channels": "quote:NSE:3045"}, {"channels": [1, 2]}, {}, {"channel": 5}]
            )
        )
        return kind, json.dumps({"type": "subscribe", **shape})
    frames = draw(
        st.one_of(
            st.text(max_size=5), st.floats(), st.booleans(), st.none(), st.lists(st.integers(), max_size=2)
        )
    )
    return kind, json.dumps({"type": "ack", "frames": frames})


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------- properties


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(bad_messages(), min_size=1, max_size=12))
def test_every_bad_message_gets_an_error_and_the_session_survives(
    server: dict[str, Any], messages: list[tuple[str, str | bytes]]
) -> None:
    broadcaster = server["broadcaster"]
    with signed_in(server) as ws:
        before = broadcaster.stats.bad_messages
        errors = 0
        for kind, payload in messages:
            ws.send(payload)
            reply = next_message(ws)
            if kind == "subscribe_bad_channels" and reply.get("type") == "snapshot":
                continue  # generated text happened to name a real channel: a snapshot, fairly
            assert reply.get("type") == "error", (
                kind,
                payload if len(payload) < 300 else payload[:300],
                reply,
            )
            assert reply.get("code") in ERROR_CODES, reply
            assert isinstance(reply.get("message"), str) and reply["message"], reply
            errors += 1
        assert ping_answers(ws, 424242), "the session must still answer after the bad messages"
        assert broadcaster.stats.bad_messages - before == errors


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{nope", "bad_message"),
        ('"a string"', "bad_message"),
        ('{"type": "subscribe", "channels": ["quote:NSE:999999999"]}', "not_found"),
        ('{"type": "subscribe", "channels": ["candles:NSE:3045:7m"]}', "bad_channel"),
        ('{"type": "ack", "frames": "10"}', "bad_message"),
        ('{"type": "explode"}', "bad_message"),
    ],
)
def test_each_refusal_names_what_was_wrong(server: dict[str, Any], message: str, code: str) -> None:
    with signed_in(server) as ws:
        ws.send(message)
        reply = next_message(ws)
        assert (reply["type"], reply["code"]) == ("error", code)
        assert ping_answers(ws, 1)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.one_of(
        st.builds(lambda v: json.dumps({"type": "auth", "token": v}), ANY_JSON),
        st.builds(lambda v: json.dumps({"type": "auth", "token": v}), st.text(min_size=1, max_size=500)),
    )
)
def test_a_bad_token_mid_session_is_refused_and_closes_with_4401(
    server: dict[str, Any], message: str
) -> None:
    with signed_in(server) as ws:
        ws.send(message)
        reply = next_message(ws)
        assert (reply["type"], reply["code"]) == ("error", "unauthenticated")
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(10):
                next_message(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(bad_messages())
def test_a_bad_first_message_is_refused_before_anything_else(
    server: dict[str, Any], message: tuple[str, str | bytes]
) -> None:
    with connect(server["url"], max_size=None, open_timeout=10) as ws:
        ws.send(message[1])
        reply = next_message(ws)
        assert (reply["type"], reply["code"]) == ("error", "unauthenticated")
        with pytest.raises(ConnectionClosed) as closed:
            next_message(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
