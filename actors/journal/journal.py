"""The write-ahead journal: every state change is appended, durably, before it is acted on.

One journal is one append-only stream of records (any value msgspec can encode as JSON: a Struct,
a dict, a list), each numbered 1, 2, 3, ... by `append`. On restart the owner replays the stream
to rebuild its exact state. Two backends share the interface:

- `FileJournal`: one JSON-lines file per stream under ``<data_dir>/journal/``, written with
  ``write`` + ``fdatasync`` before `append` returns; a torn last line (a crash mid-write) is cut
  off on open.
- `RedisJournal`: a Redis Stream per stream (``XADD`` with the sequence as the entry id), used
  when ``REDIS_URL`` is set. Durable as far as the server's ``appendfsync`` setting makes it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import msgspec

T = TypeVar("T")

STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

Clock = Callable[[], int]


class JournalError(Exception):
    """A journal that cannot be opened or read: locked, corrupt, or unreachable."""


class JournalWriteError(JournalError):
    """An append that did not become durable; the caller must not act on the record."""


class JournalEntry(msgspec.Struct, Generic[T], frozen=True):
    seq: int
    ts_ns: int
    record: T


class JournalStats(msgspec.Struct, frozen=True, kw_only=True):
    backend: str
    stream: str
    location: str
    appended: int  # by this process
    failures: int  # appends that raised
    last_seq: int


class Journal(Protocol):
    """What the execution and portfolio actors write through."""

    stream: str

    @property
    def last_seq(self) -> int: ...

    def append(self, record: Any, sync: bool = True) -> int:
        """Write `record` and return its sequence number; raise `JournalWriteError` if it fails.

        With `sync` the record, and every one written before it, is durable (on disk) when this
        returns; without, it survives the process but an OS crash may lose it until the next
        synced append (for facts that can be asked of their source again).
        """
        ...

    def sync(self) -> None:
        """Make every record appended so far durable, as a synced `append` would (group commit)."""
        ...

    def replay(self, after: int = 0, record_type: Any = Any) -> Iterator[JournalEntry[Any]]:
        """Entries with seq > `after`, oldest first, their records decoded as `record_type`."""
        ...

    def stats(self) -> JournalStats: ...

    def close(self) -> None: ...


def check_stream_name(stream: str) -> str:
    if not STREAM_NAME.match(stream):
        raise JournalError(
            f"journal stream name {stream!r} must be 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return stream


def encode_entry(entry: JournalEntry[Any]) -> bytes:
    try:
        return msgspec.json.encode(entry)
    except (TypeError, ValueError, OverflowError) as err:
        raise JournalWriteError(f"record {type(entry.record).__name__} cannot be journaled: {err}") from err


def entry_decoder(record_type: Any) -> msgspec.json.Decoder[JournalEntry[Any]]:
    return msgspec.json.Decoder(JournalEntry[record_type])


def open_journal(
    stream: str,
    data_dir: str | Path,
    redis_url: str | None = None,
    clock: Clock = time.time_ns,
) -> Journal:
    """The journal for `stream`: Redis Streams when `redis_url` is given, else a local file."""
    if redis_url:
        from actors.journal.redis_journal import RedisJournal

        return RedisJournal(redis_url, stream, clock=clock)
    from actors.journal.file_journal import FileJournal

    return FileJournal(Path(data_dir) / "journal" / f"{check_stream_name(stream)}.jsonl", stream, clock=clock)
