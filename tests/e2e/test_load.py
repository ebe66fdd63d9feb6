"""A short order load through the running system's REST API, reconciled order by order.

The figures (latency, lag) are the benchmark's business (`shardline bench orders`); here the
load must come out exact: every order answered, each journaled once, each sent one known to the
venue, fills equal on both sides, positions equal to the trades. The reconciliation itself is
checked first on ledgers with known faults, so a clean result means something.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cluster.bench_orders_rest import (
    OrderLoadConfig,
    OrderOutcome,
    RestOrderLoad,
    deployment_keys,
    load_instruments,
    order_figures,
    reconcile_orders,
    settled_view,
)

BOOK = "loadtest"


@dataclass
class Row:
    """An order, trade or position as the actors report them (only the fields reconciling reads)."""

    client_order_id: str = ""
    status: str = "FILLED"
    filled_quantity: int = 1
    quantity: int = 1
    reason: str = ""
    trade_id: str = ""
    instrument: str = "NSE:1"
    side: str = "BUY"


def acked(coid: str) -> OrderOutcome:
    return OrderOutcome(coid, "NSE:1", "BUY", "market", 0.0, http_status=201, status="FILLED", attempts=1)


def clean() -> dict[str, Any]:
    return {
        "ledger": [acked("a"), acked("b")],
        "execution_orders": [Row("a"), Row("b")],
        "venue_orders": [Row("a"), Row("b")],
        "venue_trades": [Row("a", trade_id="t1"), Row("b", trade_id="t2")],
        "venue_positions": [Row(instrument="NSE:1", quantity=2)],
    }


def broken(**change: Any) -> dict[str, Any]:
    return clean() | change


@pytest.mark.parametrize(
    ("books", "lost", "duplicated", "problem", "positions_exact"),
    [
        (clean(), 0, 0, None, True),
        (
            broken(execution_orders=[Row("a")], venue_orders=[Row("a")]),
            1,
            0,
            "acknowledged_not_journaled",
            True,
        ),
        (broken(venue_orders=[Row("a")]), 1, 0, "sent_but_unknown_to_venue", True),
        (
            broken(
                execution_orders=[Row("a"), Row("b"), Row("x", status="OPEN", filled_quantity=0)],
                venue_orders=[Row("a"), Row("b"), Row("x", status="OPEN", filled_quantity=0)],
            ),
            0,
            1,
            "journaled_but_never_ordered",
            True,
        ),
        (
            broken(venue_trades=[*clean()["venue_trades"], Row("b", trade_id="t2")]),
            0,
            1,
            "trade_booked_twice",
            True,
        ),
        (
            broken(
                venue_trades=[*clean()["venue_trades"], Row("b", trade_id="t3")],
                venue_positions=[Row(instrument="NSE:1", quantity=3)],
            ),
            0,
            1,
            "journal_fills_disagree_with_venue",
            True,
        ),
        (broken(venue_trades=[Row("a", trade_id="t1")]), 1, 0, "venue_trades_disagree_with_its_order", False),
        (broken(venue_positions=[Row(instrument="NSE:1", quantity=5)]), 0, 0, None, False),
    ],
)
def test_reconciliation_finds_each_kind_of_fault(
    books: dict[str, Any], lost: int, duplicated: int, problem: str | None, positions_exact: bool
) -> None:
    result = reconcile_orders(
        books["ledger"],
        books["execution_orders"],
        books["venue_orders"],
        books["venue_trades"],
        books["venue_positions"],
    )
    assert (result.lost, result.duplicated) == (lost, duplicated), result.as_dict()
    if problem is not None:
        assert result.problems[problem] >= 1, result.as_dict()
    else:
        assert not result.problems, result.as_dict()
    assert result.positions_exact is positions_exact, result.position_mismatches


def test_a_risk_refusal_is_not_lost_and_is_counted_by_reason() -> None:
    ledger = [acked("a")]
    refused = Row(
        "a",
        status="REJECTED",
        filled_quantity=0,
        reason="quantity 9 exceeds the global maximum order quantity 5",
    )
    result = reconcile_orders(ledger, [refused], [], [], [])
    assert (result.lost, result.duplicated) == (0, 0)
    assert result.rejects_by_reason and sum(result.rejects_by_reason.values()) == 1


def test_a_short_load_through_rest_is_exact(system: dict[str, Any], wait_until: Any) -> None:
    base = system["serve_url"]
    wait_until(lambda: httpx.get(f"{base}/health").status_code == 200, timeout_s=90, what="the terminal")
    instruments = asyncio.run(load_instruments(base, deployment_keys(system["config"], 10)))
    # Under the shipped per-user order limit (50/s): the limit is not what is under test here.
    load = RestOrderLoad(
        base, instruments, OrderLoadConfig(rate_per_s=10, seconds=8, concurrency=8, book=BOOK)
    )
    ledger = asyncio.run(load.run())
    view = settled_view(BOOK, timeout_s=60)
    result = reconcile_orders(
        ledger,
        view["execution_orders"],
        view["venue_orders"],
        view["venue_trades"],
        view["venue_positions"],
        view["execution_positions"],
    )
    figures = order_figures(ledger, 8)
    sent = [o for o in ledger if o.attempts]
    assert len(ledger) == 80 and sent, figures
    # A busy machine may leave some orders unsent when the window closes; every one sent is answered.
    assert result.acknowledged == len(sent), figures["refused_by_api"]
    assert (result.lost, result.duplicated) == (0, 0), result.as_dict()
    assert result.positions_exact, result.position_mismatches
    assert view["settled"]
    assert result.at_execution == len(sent) and result.at_venue >= result.statuses.get("FILLED", 0)
    assert figures["submit_to_ack_ms"]["p50"] > 0
