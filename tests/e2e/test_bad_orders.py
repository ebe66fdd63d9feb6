"""Absurd orders through the running system's REST API: each refused with a message that names
what is wrong, and nothing half-done.

"Nothing half-done": after the refusal, no order with that client order id is live at the
execution actor (a pre-trade risk refusal is journaled there as REJECTED, for the audit trail,
and never sent), the paper venue has never heard of it, and the book's trades and positions are
as they were.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray

BOOK = "badorders"
PASSWORDS = {"trader": "trader-local", "viewer": "viewer-local"}


@pytest.fixture(scope="module")
def instruments(system: dict[str, Any]) -> dict[str, str]:
    from catalog.sources import load_default_catalog

    catalog = load_default_catalog(system["config"])
    streamed = catalog.select("NSE equities", 1)[0]  # in the sample deployment: it has a last price
    return {
        "equity": streamed.key,
        "option": catalog.select("NIFTY options", 1)[0].key,  # lot 65
        "index": catalog.select("NSE indices", 1)[0].key,
    }


def token(base: str, user: str) -> str:
    response = httpx.post(f"{base}/api/v1/auth/login", json={"username": user, "password": PASSWORDS[user]})
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def http(system: dict[str, Any], wait_until: Any) -> Iterator[dict[str, httpx.Client]]:
    base = system["serve_url"]
    wait_until(lambda: httpx.get(f"{base}/health").status_code == 200, timeout_s=90, what="the terminal")
    clients = {
        user: httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token(base, user)}"}, timeout=30
        )
        for user in PASSWORDS
    }
    clients["anonymous"] = httpx.Client(base_url=base, timeout=30)
    yield clients
    for client in clients.values():
        client.close()


def book_state() -> tuple[list[Any], list[Any], list[Any]]:
    execution = ray.get_actor("execution", namespace="shardline")
    portfolio = ray.get_actor("portfolio", namespace="shardline")
    return ray.get(
        [execution.orders.remote(BOOK), portfolio.trades.remote(BOOK), portfolio.positions.remote(BOOK)],
        timeout=30,
    )


def assert_nothing_half_done(coid: str, trades_before: list[Any], positions_before: list[Any]) -> None:
    execution = ray.get_actor("execution", namespace="shardline")
    portfolio = ray.get_actor("portfolio", namespace="shardline")
    known = ray.get(execution.order.remote(coid), timeout=30)
    if known is not None:
        assert known.status.value == "REJECTED" and known.venue_order_id is None, known
    assert coid not in {o.client_order_id for o in ray.get(portfolio.orders.remote(BOOK), timeout=30)}
    _, trades, positions = book_state()
    assert len(trades) == len(trades_before)
    assert [(p.instrument, p.quantity) for p in positions] == [
        (p.instrument, p.quantity) for p in positions_before
    ]


def order(instrument: str, **fields: Any) -> dict[str, Any]:
    return {"instrument": instrument, "side": "BUY", "quantity": 1, "book": BOOK, **fields}


# (what, user, body or raw text, HTTP status, a phrase the message must contain)
CASES: list[tuple[str, str, Any, int, str]] = [
    ("negative quantity", "trader", order("{equity}", quantity=-5), 422, "quantity"),
    ("zero quantity", "trader", order("{equity}", quantity=0), 422, "quantity"),
    ("huge quantity", "trader", order("{equity}", quantity=10**15), 422, "quantity"),
    ("fractional quantity", "trader", order("{equity}", quantity=1.5), 422, "quantity"),
    ("quantity as text", "trader", order("{equity}", quantity="ten"), 422, "quantity"),
    ("NaN price", "trader", order("{equity}", order_type="LIMIT", price="NaN"), 422, "price"),
    ("infinite price", "trader", order("{equity}", order_type="LIMIT", price="Infinity"), 422, "price"),
    ("negative price", "trader", order("{equity}", order_type="LIMIT", price="-10"), 422, "price"),
    ("sub-paisa price", "trader", order("{equity}", order_type="LIMIT", price="100.001"), 422, "price"),
    ("off-tick price", "trader", order("{equity}", order_type="LIMIT", price="100.03"), 422, "tick size"),
    ("astronomical price", "trader", order("{equity}", order_type="LIMIT", price="1e30"), 422, "price"),
    ("limit without a price", "trader", order("{equity}", order_type="LIMIT"), 422, "price"),
    ("market with a price", "trader", order("{equity}", price="100"), 422, "takes no price"),
    ("wrong lot", "trader", order("{option}", quantity=1), 422, "lot size"),
    ("unknown instrument", "trader", order("NSE:99999999"), 404, "NSE:99999999"),
    ("malformed instrument", "trader", order("SBIN"), 422, "instrument"),
    ("unknown side", "trader", order("{equity}", side="HOLD"), 422, "side"),
    ("extra field", "trader", order("{equity}", leverage=100), 422, "leverage"),
    ("bad book name", "trader", order("{equity}", book="Bad Book!"), 422, "book"),
    ("not JSON", "trader", "{quantity: 1", 422, "JSON"),
    # Refused by the framework before any route runs, in its own words.
    ("nested too deep", "trader", "[" * 50_000 + "]" * 50_000, 400, "parsing the body"),
    ("viewer may not trade", "viewer", order("{equity}"), 403, "trade"),
    ("no token", "anonymous", order("{equity}"), 401, "sign in"),
]

# Well-formed orders that pre-trade risk refuses: 201 with status REJECTED and the reason.
RISK_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("over the maximum quantity", order("{equity}", quantity=200_000), "maximum order quantity"),
    ("far outside the price band", order("{equity}", order_type="LIMIT", price="1000000"), "band"),
    ("an index", order("{index}"), "index"),
    ("a derivatives product in cash", order("{equity}", product="CARRYFORWARD"), "not available in cash"),
    (
        "a buy stop-limit triggering above its limit",
        order("{equity}", order_type="SL", price="100", trigger_price="105"),
        "trigger",
    ),
]


def filled(body: Any, instruments: dict[str, str]) -> Any:
    if isinstance(body, dict):
        return {k: filled(v, instruments) for k, v in body.items()}
    is_template = isinstance(body, str) and body.startswith("{") and body.endswith("}")
    return body.format(**instruments) if is_template else body


@pytest.mark.parametrize(("what", "user", "body", "status", "phrase"), CASES, ids=[c[0] for c in CASES])
def test_absurd_orders_are_refused_by_name_and_leave_nothing(
    http: dict[str, httpx.Client],
    instruments: dict[str, str],
    what: str,
    user: str,
    body: Any,
    status: int,
    phrase: str,
) -> None:
    coid = f"bad{uuid.uuid4().hex[:12]}"
    _, trades_before, positions_before = book_state()
    if isinstance(body, dict):
        response = http[user].post(
            "/api/v1/orders", json={**filled(body, instruments), "client_order_id": coid}
        )
    else:
        response = http[user].post(
            "/api/v1/orders", content=body.encode(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == status, (what, response.status_code, response.text[:500])
    answer = response.json()
    message = answer.get("message") or answer.get("detail")
    assert isinstance(message, str) and message, answer
    assert phrase.lower() in message.lower(), (what, message)
    assert_nothing_half_done(coid, trades_before, positions_before)


@pytest.mark.parametrize(("what", "body", "phrase"), RISK_CASES, ids=[c[0] for c in RISK_CASES])
def test_orders_risk_refuses_come_back_rejected_with_the_reason_and_never_reach_the_venue(
    http: dict[str, httpx.Client], instruments: dict[str, str], what: str, body: dict[str, Any], phrase: str
) -> None:
    coid = f"risk{uuid.uuid4().hex[:12]}"
    _, trades_before, positions_before = book_state()
    response = http["trader"].post(
        "/api/v1/orders", json={**filled(body, instruments), "client_order_id": coid}
    )
    assert response.status_code == 201, response.text[:500]
    answer = response.json()
    assert answer["status"] == "REJECTED", answer
    assert phrase.lower() in answer["reason"].lower(), (what, answer["reason"])
    assert_nothing_half_done(coid, trades_before, positions_before)


def test_a_client_order_id_reused_for_another_order_is_refused_and_the_first_stands(
    http: dict[str, httpx.Client], instruments: dict[str, str]
) -> None:
    coid = f"dup{uuid.uuid4().hex[:12]}"
    first = http["trader"].post(
        "/api/v1/orders",
        json={**order(instruments["equity"], order_type="LIMIT", price="1"), "client_order_id": coid},
    )
    assert first.status_code == 201, first.text
    again = http["trader"].post(
        "/api/v1/orders", json={**order(instruments["equity"], quantity=2), "client_order_id": coid}
    )
    assert 400 <= again.status_code < 500, again.text
    assert coid in again.json()["message"]
    execution = ray.get_actor("execution", namespace="shardline")
    kept = ray.get(execution.order.remote(coid), timeout=30)
    assert kept is not None and kept.instrument == instruments["equity"]
