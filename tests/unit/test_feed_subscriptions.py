from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors.feed.subscriptions import SubscriptionBook


def test_first_owner_subscribes_and_last_owner_unsubscribes() -> None:
    book = SubscriptionBook()
    assert book.acquire("deployment:ema", ["NSE:1", "NSE:2"]) == ["NSE:1", "NSE:2"]
    assert book.acquire("user:trader", ["NSE:2", "NSE:3", "NSE:3"]) == ["NSE:3"]
    assert book.acquire("user:trader", ["NSE:2"]) == []  # holding twice is holding once
    assert book.release("deployment:ema", ["NSE:2"]) == []  # trader still holds it
    assert book.release("user:trader") == ["NSE:2", "NSE:3"]
    assert book.keys() == ["NSE:1"]
    assert book.release("nobody", ["NSE:1"]) == []
    assert book.release("deployment:ema") == ["NSE:1"]
    assert len(book) == 0 and book.owners() == {}


ops = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from(["a", "b", "c"]),
        st.lists(st.sampled_from([f"NSE:{i}" for i in range(6)]), max_size=4),
    ),
    max_size=60,
)


@given(ops)
def test_socket_set_always_equals_the_union_of_holdings(operations) -> None:
    book = SubscriptionBook()
    holdings: dict[str, set[str]] = {}
    socket: set[str] = set()
    for acquire, owner, keys in operations:
        if acquire:
            added = book.acquire(owner, keys)
            assert not socket & set(added)
            socket |= set(added)
            holdings.setdefault(owner, set()).update(keys)
        else:
            removed = book.release(owner, keys)
            assert set(removed) <= socket
            socket -= set(removed)
            holdings.get(owner, set()).difference_update(keys)
        union = set().union(*holdings.values()) if holdings else set()
        assert socket == union == set(book.keys())
