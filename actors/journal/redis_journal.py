"""The journal as a Redis Stream: ``XADD`` with the sequence number as the entry id, ``XRANGE`` to replay."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any, cast

import msgspec
import redis

from actors.journal.journal import (
    Clock,
    JournalEntry,
    JournalError,
    JournalStats,
    JournalWriteError,
    check_stream_name,
    encode_entry,
    entry_decoder,
)

log = logging.getLogger(__name__)

StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]

KEY_PREFIX = "shardline:journal:"
_PAGE = 1000


def _entry_id(seq: int) -> str:
    # The id's time part stays 0, so the id is the sequence itself and Redis refuses a reused one:
    # a second writer on the same stream fails loudly instead of interleaving.
    return f"0-{seq}"


class RedisJournal:
    """One Redis Stream per journal stream, under ``shardline:journal:<stream>``.

    Each entry holds the JSON of ``{"seq", "ts_ns", "record"}`` in field ``e``. `append` returns once
    Redis has answered; that answer is durable when the server runs with ``appendonly yes`` and
    ``appendfsync always`` (checked at open; a warning is logged otherwise).
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        clock: Clock = time.time_ns,
        socket_timeout_s: float = 5.0,
    ) -> None:
        self.stream = check_stream_name(stream)
        self.key = KEY_PREFIX + stream
        self._url = url
        self._clock = clock
        self._appended = 0
        self._failures = 0
        try:
            self._redis = redis.Redis.from_url(
                url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
            )
            last = self._top()
        except (redis.RedisError, ValueError) as err:
            raise JournalError(
                f"journal {self.stream}: cannot reach Redis at {self._safe_url}: {err}"
            ) from err
        self._last_seq = _seq_of(last[0][0]) if last else 0
        self._warn_if_not_durable()
        log.info(
            "journal %s: Redis stream %s at %s, last seq %d", stream, self.key, self._safe_url, self._last_seq
        )

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def append(self, record: Any, sync: bool = True) -> int:
        # Durability is the server's appendfsync policy; `sync` has nothing more to ask of it.
        seq = self._last_seq + 1
        try:
            payload = encode_entry(JournalEntry(seq, self._clock(), record))
            self._redis.xadd(self.key, {"e": payload}, id=_entry_id(seq))
        except JournalWriteError:
            self._failures += 1
            raise
        except redis.ResponseError as err:
            if not self._already_written(seq, payload):
                self._failures += 1
                raise JournalWriteError(
                    f"journal {self.stream}: Redis refused record {seq} ({err}); "
                    "is another process writing this stream?"
                ) from err
        except redis.RedisError as err:
            self._failures += 1
            raise JournalWriteError(
                f"journal {self.stream}: record {seq} was not written to Redis at {self._safe_url}: {err}"
            ) from err
        self._last_seq = seq
        self._appended += 1
        return seq

    def sync(self) -> None:
        """Nothing to do: durability is the server's appendfsync policy."""

    def replay(self, after: int = 0, record_type: Any = Any) -> Iterator[JournalEntry[Any]]:
        decoder = entry_decoder(record_type)
        start = f"({_entry_id(after)}" if after else "-"
        while True:
            try:
                page = cast(StreamEntries, self._redis.xrange(self.key, min=start, max="+", count=_PAGE))
            except redis.RedisError as err:
                raise JournalError(
                    f"journal {self.stream}: cannot read Redis at {self._safe_url}: {err}"
                ) from err
            for entry_id, fields in page:
                try:
                    yield decoder.decode(fields[b"e"])
                except (msgspec.DecodeError, KeyError) as err:
                    raise JournalError(
                        f"journal {self.stream}: Redis entry {entry_id.decode()} is not valid: {err}"
                    ) from err
            if len(page) < _PAGE:
                return
            start = f"({page[-1][0].decode()}"

    def stats(self) -> JournalStats:
        return JournalStats(
            backend=self.backend,
            stream=self.stream,
            location=f"{self._safe_url} {self.key}",
            appended=self._appended,
            failures=self._failures,
            last_seq=self._last_seq,
        )

    def close(self) -> None:
        self._redis.close()

    def __enter__(self) -> RedisJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _safe_url(self) -> str:
        kwargs = self._redis.connection_pool.connection_kwargs if hasattr(self, "_redis") else {}
        if "host" in kwargs:
            return f"redis://{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
        return "redis (url hidden)"  # never log a password from the URL

    def _already_written(self, seq: int, payload: bytes) -> bool:
        """A retried XADD whose first attempt landed: the stream's top entry is this very record."""
        try:
            top = self._top()
        except redis.RedisError:
            return False
        return bool(top) and _seq_of(top[0][0]) == seq and top[0][1].get(b"e") == payload

    def _top(self) -> StreamEntries:
        return cast(StreamEntries, self._redis.xrevrange(self.key, count=1))

    def _warn_if_not_durable(self) -> None:
        try:
            settings = self._redis.config_get("append*")
        except redis.RedisError:
            return  # CONFIG is often disabled on managed Redis; nothing to check
        if settings.get("appendonly") != "yes" or settings.get("appendfsync") != "always":
            log.warning(
                "journal %s: Redis at %s runs appendonly=%s appendfsync=%s; records acknowledged just "
                "before a Redis crash can be lost (set appendonly yes, appendfsync always)",
                self.stream,
                self._safe_url,
                settings.get("appendonly"),
                settings.get("appendfsync"),
            )


def _seq_of(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[1])
