from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serve.hub import HubActor, HubUpdate, LatestStateHub


def test_since_returns_what_changed_in_order() -> None:
    hub = LatestStateHub()
    hub.publish([("quote:NSE:1", "", {"ltp": 1}), ("quote:NSE:2", "", {"ltp": 2})])
    cursor, first = hub.since(0)
    assert cursor == 2
    assert [(u.seq, u.channel) for u in first] == [(1, "quote:NSE:1"), (2, "quote:NSE:2")]
    hub.publish([("quote:NSE:1", "", {"ltp": 3})])
    cursor, changed = hub.since(2)
    assert cursor == 3
    assert changed == [HubUpdate(3, "quote:NSE:1", "", {"ltp": 3})]
    assert hub.since(3) == (3, [])


def test_keys_conflate_within_a_channel() -> None:
    hub = LatestStateHub()
    hub.publish(
        [("orders", "A", {"s": "OPEN"}), ("orders", "B", {"s": "OPEN"}), ("orders", "A", {"s": "FILLED"})]
    )
    _, state = hub.since(0)
    assert [(u.key, u.data["s"]) for u in state] == [("B", "OPEN"), ("A", "FILLED")]
    assert len(hub) == 2


def test_eviction_drops_the_least_recently_published() -> None:
    hub = LatestStateHub(max_entries=2)
    hub.publish([("alerts", "1", {}), ("alerts", "2", {}), ("alerts", "3", {})])
    _, state = hub.since(0)
    assert [u.key for u in state] == ["2", "3"]
    assert hub.stats() == {"seq": 3, "entries": 2, "published": 3, "evicted": 1, "stale": 0}


def test_limit_pages_through_a_backlog() -> None:
    hub = LatestStateHub()
    hub.publish([("alerts", str(i), {}) for i in range(5)])
    cursor, page = hub.since(0, limit=2)
    assert (cursor, [u.key for u in page]) == (2, ["0", "1"])
    cursor, page = hub.since(cursor, limit=2)
    assert (cursor, [u.key for u in page]) == (4, ["2", "3"])
    cursor, page = hub.since(cursor, limit=2)
    assert (cursor, [u.key for u in page]) == (5, ["4"])


@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 3), st.integers()), max_size=8),
        max_size=20,
    )
)
def test_property_a_follower_converges_to_the_latest_state(batches: list[list[tuple[str, int, int]]]) -> None:
    hub = LatestStateHub(max_entries=1000)
    truth: dict[tuple[str, str], int] = {}
    follower: dict[tuple[str, str], int] = {}
    cursor = 0
    for batch in batches:
        hub.publish([(c, str(k), {"v": v}) for c, k, v in batch])
        truth.update({(c, str(k)): v for c, k, v in batch})
        cursor, changed = hub.since(cursor, limit=3)  # a follower that lags behind on purpose
        follower.update({(u.channel, u.key): u.data["v"] for u in changed})
    while True:
        cursor, changed = hub.since(cursor, limit=3)
        if not changed:
            break
        follower.update({(u.channel, u.key): u.data["v"] for u in changed})
    assert follower == truth


async def test_poll_waits_for_a_publish() -> None:
    actor = HubActor()
    waiting = asyncio.create_task(actor.poll(0, timeout_s=30))
    await asyncio.sleep(0)  # let the poll reach its wait before publishing
    assert not waiting.done()
    await actor.publish([("quote:NSE:1", "", {"ltp": 5})])
    cursor, changed = await asyncio.wait_for(waiting, 5)
    assert cursor == 1
    assert [u.data for u in changed] == [{"ltp": 5}]


async def test_poll_times_out_empty_and_returns_at_once_when_behind() -> None:
    actor = HubActor()
    assert await actor.poll(0, timeout_s=0.01) == (0, [])
    await actor.publish([("quote:NSE:1", "", {"ltp": 5})])
    cursor, changed = await asyncio.wait_for(actor.poll(0, timeout_s=30), 5)
    assert cursor == 1 and len(changed) == 1


async def test_a_cursor_from_before_a_hub_restart_gets_everything() -> None:
    actor = HubActor()
    await actor.publish([("quote:NSE:1", "", {"ltp": 5})])
    cursor, changed = await asyncio.wait_for(actor.poll(1_000, timeout_s=30), 5)
    assert cursor == 1 and [u.channel for u in changed] == ["quote:NSE:1"]


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LatestStateHub(0)


async def test_router_quotes_become_iid_keyed_updates() -> None:
    import numpy as np

    from actors.router.router import QUOTE_DTYPE

    quotes = np.zeros(2, dtype=QUOTE_DTYPE)
    quotes["iid"] = [7, 9]
    quotes["ltp"] = [81_255, 12_000]
    quotes["ts_exchange_ns"] = [1, 2]
    actor = HubActor()
    await actor.on_quotes(quotes)
    _, state = await actor.poll(0, timeout_s=0)
    assert [(u.channel, u.key) for u in state] == [("quote", "7"), ("quote", "9")]
    assert state[0].data == {"ltp": 81_255, "bid": 0, "ask": 0, "volume": 0, "ts_ns": 1}


async def test_order_updates_merge_with_what_the_terminal_published() -> None:
    from actors.orders import Fill, OrderStatus, OrderUpdate, Product, Side

    actor = HubActor()
    await actor.publish([("orders", "t1", {"side": "BUY", "quantity": 5, "price": 81_255})])
    fill = Fill(
        client_order_id="t1",
        venue_order_id="v1",
        trade_id="T1",
        book="manual",
        instrument="NSE:3045",
        side=Side.BUY,
        quantity=5,
        price=81_250,
        product=Product.INTRADAY,
        ts_ns=3,
    )
    update = OrderUpdate(
        client_order_id="t1",
        venue_order_id="v1",
        book="manual",
        instrument="NSE:3045",
        status=OrderStatus.FILLED,
        filled_quantity=5,
        avg_price=81_250,
        ts_ns=3,
        fill=fill,
    )
    await actor.on_order_update(update)
    _, state = await actor.poll(0, timeout_s=0)
    (order,) = [u.data for u in state if u.channel == "orders"]
    assert order["side"] == "BUY" and order["quantity"] == 5 and order["price"] == 81_255
    assert order["status"] == "FILLED" and order["avg_price"] == 81_250
    assert order["last_fill"] == {"trade_id": "T1", "quantity": 5, "price": 81_250, "ts_ns": 3}
    assert "fill" not in order


def test_a_late_call_from_the_same_publisher_is_dropped() -> None:
    hub = LatestStateHub()
    hub.publish([("quote:NSE:1", "", {"ltp": 2})], origin="router", origin_seq=2)
    hub.publish([("quote:NSE:1", "", {"ltp": 1})], origin="router", origin_seq=1)  # delivered late
    hub.publish([("quote:NSE:1", "", {"ltp": 3})], origin="other", origin_seq=1)  # another publisher
    _, state = hub.since(0)
    assert [u.data["ltp"] for u in state] == [3]
    assert hub.stats()["stale"] == 1


async def test_order_updates_never_go_back_from_finished() -> None:
    from actors.orders import OrderStatus, OrderUpdate

    def update(status: OrderStatus, filled: int) -> OrderUpdate:
        return OrderUpdate(
            client_order_id="t9", venue_order_id="v", book="manual", instrument="NSE:3045", status=status,
            filled_quantity=filled,
        )  # fmt: skip

    actor = HubActor()
    await actor.on_order_update(update(OrderStatus.FILLED, 5))
    await actor.on_order_update(update(OrderStatus.OPEN, 0))  # an earlier state, delivered late
    await actor.on_order_update(update(OrderStatus.PARTIALLY_FILLED, 2))
    _, state = await actor.poll(0, timeout_s=0)
    assert [(u.data["status"], u.data["filled_quantity"]) for u in state] == [("FILLED", 5)]


async def test_a_batch_of_order_updates_publishes_each_order_once_at_its_latest_state() -> None:
    from actors.orders import OrderStatus, OrderUpdate

    def update(coid: str, status: OrderStatus, filled: int) -> OrderUpdate:
        return OrderUpdate(
            client_order_id=coid, venue_order_id="v", book="manual", instrument="NSE:3045", status=status,
            filled_quantity=filled,
        )  # fmt: skip

    actor = HubActor()
    await actor.on_order_updates(
        [
            update("a", OrderStatus.OPEN, 0),
            update("b", OrderStatus.OPEN, 0),
            update("a", OrderStatus.PARTIALLY_FILLED, 2),
            update("a", OrderStatus.FILLED, 5),
            update("a", OrderStatus.PARTIALLY_FILLED, 3),  # older than what came before it
            update("b", OrderStatus.CANCELLED, 0),
        ]
    )
    seq, state = await actor.poll(0, timeout_s=0)
    assert seq == 2  # one change per order: the states in between were never published
    latest = {u.key: (u.data["status"], u.data["filled_quantity"]) for u in state if u.channel == "orders"}
    assert latest == {"a": ("FILLED", 5), "b": ("CANCELLED", 0)}
