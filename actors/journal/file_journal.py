"""The journal as one JSON-lines file per stream, fsync'd on every append."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

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

_TAIL_BLOCK = 64 * 1024


class FileJournal:
    """An append-only JSON-lines file: one ``{"seq", "ts_ns", "record"}`` object per line, synced
    to disk (``fdatasync``) before a synced `append` returns.

    Only one process may write a stream: the file is locked (``flock``) while open. A failed
    write is cut back off the file, so a later append never lands behind half a line.

    Parameters
    ----------
    path
        The file; its directory is created if missing.
    stream
        The stream's name, for messages.
    clock
        Nanosecond wall clock stamped on each entry.
    lock_timeout_s
        How long to wait for a previous writer (e.g. a process being restarted) to let go.
    """

    backend = "file"

    def __init__(
        self,
        path: str | Path,
        stream: str | None = None,
        *,
        clock: Clock = time.time_ns,
        lock_timeout_s: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self.stream = check_stream_name(stream or self.path.stem)
        self._clock = clock
        self._appended = 0
        self._failures = 0
        self._broken: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as err:
            raise JournalError(f"journal {self.stream}: cannot open {self.path}: {err.strerror}") from err
        try:
            self._lock(lock_timeout_s)
            if created:
                _fsync_directory(self.path.parent)
            self._size, self._last_seq = self._recover_tail()
        except BaseException:
            os.close(self._fd)
            raise
        log.info("journal %s: %s, last seq %d", self.stream, self.path, self._last_seq)

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def append(self, record: Any, sync: bool = True) -> int:
        if self._broken:
            self._failures += 1
            raise JournalWriteError(
                f"journal {self.stream}: unusable after an earlier failure: {self._broken}"
            )
        seq = self._last_seq + 1
        try:
            line = encode_entry(JournalEntry(seq, self._clock(), record)) + b"\n"
        except JournalWriteError:
            self._failures += 1
            raise
        try:
            _write_all(self._fd, line)
            if sync:
                _sync(self._fd)  # also makes earlier unsynced records durable
        except OSError as err:
            self._failures += 1
            self._undo_partial_write(err)
            raise JournalWriteError(
                f"journal {self.stream}: record {seq} was not written to {self.path}: {err.strerror}"
            ) from err
        self._size += len(line)
        self._last_seq = seq
        self._appended += 1
        return seq

    def sync(self) -> None:
        try:
            _sync(self._fd)
        except OSError as err:
            self._failures += 1
            raise JournalWriteError(
                f"journal {self.stream}: {self.path} could not be synced: {err.strerror}"
            ) from err

    def replay(self, after: int = 0, record_type: Any = Any) -> Iterator[JournalEntry[Any]]:
        decoder = entry_decoder(record_type)
        remaining = self._size  # only what this writer knows is complete
        with open(self.path, "rb") as file:
            for number, line in enumerate(file, start=1):
                if remaining <= 0:
                    break
                remaining -= len(line)
                try:
                    entry = decoder.decode(line)
                except msgspec.DecodeError as err:
                    raise JournalError(
                        f"journal {self.stream}: {self.path} line {number} is not valid: {err}"
                    ) from err
                if entry.seq > after:
                    yield entry

    def stats(self) -> JournalStats:
        return JournalStats(
            backend=self.backend,
            stream=self.stream,
            location=str(self.path),
            appended=self._appended,
            failures=self._failures,
            last_seq=self._last_seq,
        )

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1

    def __enter__(self) -> FileJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lock(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise JournalError(
                        f"journal {self.stream}: {self.path} is held by another writer "
                        f"(waited {timeout_s:g} s); only one process may write a stream"
                    ) from None
                time.sleep(delay)  # the previous owner is exiting; poll until its lock is gone
                delay = min(delay * 2, 0.2)

    def _recover_tail(self) -> tuple[int, int]:
        """Cut a torn last line off the file; return (size, last seq)."""
        size = os.fstat(self._fd).st_size
        lines = _last_lines(self._fd, size)
        good_size = size
        if lines and not lines[-1][1].endswith(b"\n"):
            offset, torn = lines.pop()
            log.warning(
                "journal %s: cutting a torn last line (%d bytes) off %s", self.stream, len(torn), self.path
            )
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
            good_size = offset
        if not lines:
            return good_size, 0
        offset, line = lines[-1]
        try:
            entry = entry_decoder(Any).decode(line)
        except msgspec.DecodeError as err:
            raise JournalError(
                f"journal {self.stream}: the last complete line of {self.path} "
                f"(byte {offset}) is not valid: {err}"
            ) from err
        return good_size, entry.seq

    def _undo_partial_write(self, err: OSError) -> None:
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as again:
            self._broken = f"{err.strerror}, then could not cut the partial record off: {again.strerror}"
            log.error("journal %s: %s", self.stream, self._broken)


def _sync(fd: int) -> None:
    # fdatasync flushes the data and the file size (what a reader needs), skipping timestamps.
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.EIO, "write returned 0 bytes")
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_lines(fd: int, size: int) -> list[tuple[int, bytes]]:
    """The last complete line and any unterminated tail, as (offset, bytes), reading from the end."""
    if size == 0:
        return []
    tail = b""
    start = size
    # Read backwards until two newlines precede the last byte (or the whole file is read).
    while start > 0 and tail.count(b"\n", 0, max(len(tail) - 1, 0)) < 2:
        block = min(_TAIL_BLOCK, start)
        start -= block
        tail = os.pread(fd, block, start) + tail
    pieces: list[tuple[int, bytes]] = []
    end = len(tail)
    if not tail.endswith(b"\n"):
        cut = tail.rfind(b"\n") + 1
        pieces.append((start + cut, tail[cut:]))
        end = cut
    if end:
        begin = tail.rfind(b"\n", 0, end - 1) + 1
        pieces.insert(0, (start + begin, tail[begin:end]))
    return pieces
