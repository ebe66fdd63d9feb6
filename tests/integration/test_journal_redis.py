"""The journal's Redis Streams backend against a real redis-server."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
import pytest

from actors.journal.journal import JournalError, JournalWriteError, open_journal
from actors.journal.redis_journal import KEY_PREFIX, RedisJournal

if TYPE_CHECKING:
    from conftest import RedisServer


class Placed(msgspec.Struct, tag="placed", frozen=True):
    order_id: str
    quantity: int


class Cancelled(msgspec.Struct, tag="cancelled", frozen=True):
    order_id: str


def test_append_and_replay_typed_records(redis_url: str) -> None:
    with RedisJournal(redis_url, "orders") as journal:
        records = [Placed("a", 5), Cancelled("a"), Placed("b", 7)]
        assert [journal.append(r) for r in records] == [1, 2, 3]
        assert [e.record for e in journal.replay(record_type=Placed | Cancelled)] == records
        assert [e.seq for e in journal.replay(after=1)] == [2, 3]
    with RedisJournal(redis_url, "orders") as journal:  # a new process continues the sequence
        assert journal.last_seq == 3
        assert journal.append(Cancelled("b")) == 4


def test_replay_pages_through_long_streams(redis_url: str) -> None:
    with RedisJournal(redis_url, "long") as journal:
        for n in range(2_345):
            journal.append({"n": n})
        assert [e.record["n"] for e in journal.replay()] == list(range(2_345))
        assert [e.seq for e in journal.replay(after=2_000)][:2] == [2_001, 2_002]


def test_open_journal_uses_redis_when_a_url_is_given(redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    journal = open_journal("execution", tmp_path, redis_url=redis_url)
    try:
        journal.append({"n": 1})
        assert journal.stats().backend == "redis"
        assert not (tmp_path / "journal").exists()
    finally:
        journal.close()


def test_a_second_writer_on_the_same_stream_is_refused_not_interleaved(redis_url: str) -> None:
    first = RedisJournal(redis_url, "shared")
    second = RedisJournal(redis_url, "shared")
    assert first.append({"by": "first"}) == 1
    with pytest.raises(JournalWriteError, match="another process writing"):
        second.append({"by": "second"})  # it also thinks it is writing seq 1
    assert second.stats().failures == 1
    assert [e.record["by"] for e in first.replay()] == ["first"]
    first.close()
    second.close()


def test_records_survive_a_redis_crash_and_restart(make_redis_server: Callable[[], RedisServer]) -> None:
    server = make_redis_server()
    journal = RedisJournal(server.url, "durable")
    for n in range(10):
        journal.append({"n": n})
    journal.close()
    server.stop(hard=True)  # SIGKILL: only what was fsync'd to the append-only file survives
    server.start()
    with RedisJournal(server.url, "durable") as journal:
        assert [e.record["n"] for e in journal.replay()] == list(range(10))


def test_a_write_while_redis_is_down_raises_and_is_counted(
    make_redis_server: Callable[[], RedisServer],
) -> None:
    server = make_redis_server()
    journal = RedisJournal(server.url, "flaky", socket_timeout_s=1.0)
    journal.append({"n": 0})
    server.stop()
    with pytest.raises(JournalWriteError, match="record 2 was not written"):
        journal.append({"n": 1})
    assert journal.stats().failures == 1 and journal.last_seq == 1
    server.start()
    assert journal.append({"n": 2}) == 2
    assert [e.record["n"] for e in journal.replay()] == [0, 2]
    journal.close()


def test_opening_against_no_server_says_where_it_looked() -> None:
    with pytest.raises(JournalError, match=re.escape("cannot reach Redis at redis://127.0.0.1:1/0")):
        RedisJournal("redis://127.0.0.1:1/0", "x", socket_timeout_s=0.5)


def test_a_non_durable_server_is_warned_about(
    redis_url: str, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_server.client()
    client.config_set("appendfsync", "everysec")
    try:
        with caplog.at_level(logging.WARNING), RedisJournal(redis_url, "weak"):
            pass
    finally:
        client.config_set("appendfsync", "always")
        client.close()
    assert "appendfsync=everysec" in caplog.text


def test_a_corrupt_entry_is_reported(redis_url: str, redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.xadd(KEY_PREFIX + "bad", {"e": b"not json"}, id="0-1")
    client.close()
    with RedisJournal(redis_url, "bad") as journal, pytest.raises(JournalError, match="0-1 is not valid"):
        list(journal.replay())
