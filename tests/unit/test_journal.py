from __future__ import annotations

import itertools
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.journal.file_journal import FileJournal
from actors.journal.journal import JournalError, JournalWriteError, open_journal


class Placed(msgspec.Struct, tag="placed", frozen=True):
    order_id: str
    quantity: int
    price: int


class Cancelled(msgspec.Struct, tag="cancelled", frozen=True):
    order_id: str


Record = Placed | Cancelled


clock = itertools.count(1).__next__  # a deterministic nanosecond clock


def test_append_numbers_records_and_replay_returns_them_typed(tmp_path: Path) -> None:
    with FileJournal(tmp_path / "orders.jsonl", clock=clock) as journal:
        records = [Placed("a", 10, 250_050), Cancelled("a"), Placed("b", 1, 99)]
        assert [journal.append(r) for r in records] == [1, 2, 3]
        replayed = list(journal.replay(record_type=Record))
        assert [e.record for e in replayed] == records
        assert [e.seq for e in replayed] == [1, 2, 3]
        assert replayed[0].ts_ns < replayed[2].ts_ns
        assert [e.seq for e in journal.replay(after=2)] == [3]
        assert journal.stats().appended == 3 and journal.stats().failures == 0


def test_reopening_continues_the_sequence(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with FileJournal(path) as journal:
        journal.append({"n": 1})
        journal.append({"n": 2})
    with FileJournal(path) as journal:
        assert journal.last_seq == 2
        assert journal.append({"n": 3}) == 3
        assert [e.record["n"] for e in journal.replay()] == [1, 2, 3]


@pytest.mark.parametrize(
    "torn", [b"{", b'{"seq":3,"ts_ns":5,"record":{"n"', b'{"seq":3,"ts_ns":5,"record":{"n":3}}']
)
def test_a_torn_last_line_is_cut_off_on_open(tmp_path: Path, torn: bytes) -> None:
    path = tmp_path / "j.jsonl"
    with FileJournal(path) as journal:
        journal.append({"n": 1})
        journal.append({"n": 2})
    with open(path, "ab") as file:  # a crash mid-write leaves a line without its newline
        file.write(torn)
    with FileJournal(path) as journal:
        assert journal.last_seq == 2
        assert journal.append({"n": 3}) == 3
        assert [e.record["n"] for e in journal.replay()] == [1, 2, 3]
    assert path.read_bytes().count(b"\n") == 3


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(
        st.dictionaries(st.text(max_size=8), st.integers(-(2**62), 2**62) | st.text(max_size=30), max_size=4),
        min_size=1,
        max_size=20,
    ),
    cut=st.floats(min_value=0.0, max_value=0.999),
)
def test_any_crash_point_in_the_last_record_recovers_every_complete_one(
    tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]], cut: float
) -> None:
    path = tmp_path_factory.mktemp("j") / "j.jsonl"
    with FileJournal(path) as journal:
        for record in records:
            journal.append(record)
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last_start + int(cut * (len(data) - last_start))])
    with FileJournal(path) as journal:
        assert [e.record for e in journal.replay()] == records[:-1]
        assert journal.last_seq == len(records) - 1


def test_a_corrupt_line_in_the_middle_is_reported_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with FileJournal(path) as journal:
        for n in range(3):
            journal.append({"n": n})
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b"garbage\n"
    path.write_bytes(b"".join(lines))
    with FileJournal(path) as journal, pytest.raises(JournalError, match="line 2 is not valid"):
        list(journal.replay())


def test_only_one_writer_per_stream(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with FileJournal(path), pytest.raises(JournalError, match="held by another writer"):
        FileJournal(path, lock_timeout_s=0.05)
    with FileJournal(path, lock_timeout_s=0.05) as journal:  # free again once closed
        assert journal.last_seq == 0


def test_a_record_survives_the_writer_being_killed_right_after_append(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from actors.journal.file_journal import FileJournal
        journal = FileJournal({str(path)!r})
        for n in range(5):
            journal.append({{"n": n}}, sync=n % 2 == 0)  # unsynced records survive a process crash
        print(journal.last_seq, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.strip() == "5"
    with FileJournal(path, lock_timeout_s=1) as journal:
        assert [e.record["n"] for e in journal.replay()] == [0, 1, 2, 3, 4]


def test_a_failed_write_raises_is_counted_and_leaves_no_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = FileJournal(path)
    journal.append({"n": 0})
    size = path.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # A real "file too large" from the kernel: the record crosses the size limit part-way through.
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, hard))
    try:
        with pytest.raises(JournalWriteError, match="record 2 was not written"):
            journal.append({"n": 1, "pad": "x" * 200})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert path.stat().st_size == size  # the partial record was cut back off
    assert journal.stats().failures == 1 and journal.last_seq == 1
    assert journal.append({"n": 2}) == 2
    assert [e.record["n"] for e in journal.replay()] == [0, 2]
    journal.close()


def test_a_record_that_cannot_be_encoded_is_refused_without_using_a_sequence_number(tmp_path: Path) -> None:
    with FileJournal(tmp_path / "j.jsonl") as journal:
        with pytest.raises(JournalWriteError, match="cannot be journaled"):
            journal.append({"when": object()})
        assert journal.stats().failures == 1
        assert journal.append({"n": 1}) == 1


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "x" * 101])
def test_stream_names_that_could_escape_the_journal_directory_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(JournalError, match="stream name"):
        open_journal(name, tmp_path)


def test_open_journal_without_redis_uses_a_file_under_data_dir(tmp_path: Path) -> None:
    journal = open_journal("execution-20260728", tmp_path, redis_url=None)
    try:
        journal.append({"n": 1})
        assert journal.stats().backend == "file"
        assert (tmp_path / "journal" / "execution-20260728.jsonl").exists()
    finally:
        journal.close()


def test_an_unreadable_journal_location_says_why(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(JournalError, match="cannot open"):
        open_journal("execution", blocker)


def test_replay_stops_at_what_this_writer_knows_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with FileJournal(path) as journal:
        journal.append({"n": 1})
        with open(path, "ab") as file:
            file.write(b'{"seq":2,"ts_ns":1,"rec')  # someone else's half-written bytes
        assert [e.seq for e in journal.replay()] == [1]
