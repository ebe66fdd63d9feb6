"""The columnar cache: a warm load gives the same catalog as parsing, and damage or change is noticed."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from catalog.store import load_catalog
from catalog.synth import synthesize, write_scrip_master
from cluster.errors import ShardlineError


@pytest.fixture
def master(tmp_path: Path) -> Path:
    path = tmp_path / "master.json"
    rows = synthesize(3_000, seed=8)
    rows[5]["instrumenttype"] = "FUTIRC"  # one skipped record, so the report has something to carry
    write_scrip_master(rows, path)
    return path


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir()) if cache.exists() else []


def test_warm_load_equals_cold_load(master: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = load_catalog(master, cache)
    [entry] = entries(cache)
    files = {"columns.msgpack", "instruments.arrow", "report.json"}
    assert {p.name for p in entry.iterdir()} == files
    cold.search("sbin")  # the first search builds the index and keeps it for the next process
    assert {p.name for p in entry.iterdir()} == files | {"search"}
    warm = load_catalog(master, cache)
    assert warm.frame().equals(cold.frame())
    assert warm.report == cold.report and warm.report.skipped == {"unknown instrument type": 1}
    for query in ("sbin", "nifty", "23500ce", "q", "ce", "gold"):
        assert [i.key for i in warm.search(query, 15)] == [i.key for i in cold.search(query, 15)]
    assert list(warm.instruments) == list(cold.instruments)
    assert warm.keys() == cold.keys() == [i.key for i in cold.instruments]
    assert warm.counts() == cold.counts()
    assert sum(n for by_type in cold.counts().values() for n in by_type.values()) == len(cold)
    nifty = cold.nearest_expiry("NIFTY")
    assert warm.option_chain("NIFTY", nifty) == cold.option_chain("NIFTY", nifty)
    assert warm.spot("SBIN") == cold.spot("SBIN") is not None


def test_a_warm_load_reads_the_frame_only_when_asked(master: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = load_catalog(master, cache)
    cold.search("sbin")
    [entry] = entries(cache)
    warm = load_catalog(master, cache)
    (entry / "instruments.arrow").unlink()  # lookups, chains and search never need it
    sbin = warm.resolve("NSE:SBIN-EQ")
    assert warm.get(sbin.key) == sbin == cold.resolve("NSE:SBIN-EQ")
    assert [i.key for i in warm.search("sbin", 5)] == [i.key for i in cold.search("sbin", 5)]
    with pytest.raises(ShardlineError, match=r"instruments\.arrow is unreadable .*delete"):
        warm.frame()


def test_phases_tell_cache_from_parse(master: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    phases: list[str] = []
    load_catalog(master, cache, phases.append)
    assert phases == ["parsing", "indexing", "writing cache"]
    phases.clear()
    load_catalog(master, cache, phases.append)
    assert phases == ["reading cache"]
    phases.clear()
    load_catalog(master, None, phases.append)
    assert phases == ["parsing", "indexing"]


def test_a_changed_source_gets_a_new_entry_and_the_old_one_goes(master: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_catalog(master, cache)
    [old] = entries(cache)
    write_scrip_master(synthesize(2_000, seed=9), master)
    stat = master.stat()
    os.utime(master, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = load_catalog(master, cache)
    assert len(first) == 2_999 and len(second) == 2_000
    [new] = entries(cache)
    assert new != old


@pytest.mark.parametrize(
    ("damaged", "truncated"),
    [
        ("instruments.arrow", False),
        ("instruments.arrow", True),
        ("columns.msgpack", False),
        ("columns.msgpack", True),
        ("report.json", False),
    ],
)
def test_a_damaged_entry_is_rebuilt(
    master: Path, tmp_path: Path, damaged: str, truncated: bool, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    cold = load_catalog(master, cache)
    [entry] = entries(cache)
    whole = (entry / damaged).read_bytes()
    (entry / damaged).write_bytes(whole[: len(whole) // 2] if truncated else b"\x00garbage")
    with caplog.at_level(logging.WARNING, logger="catalog.store"):
        again = load_catalog(master, cache)
    assert "ignoring unreadable catalog cache" in caplog.text
    assert again.frame().equals(cold.frame())
    assert json.loads((entry / "report.json").read_text())["loaded"] == len(cold)  # written afresh
    caplog.clear()
    phases: list[str] = []
    load_catalog(master, cache, phases.append)
    assert phases == ["reading cache"] and "ignoring" not in caplog.text


def test_damaged_search_arrays_are_rebuilt_on_first_search(
    master: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    cold = load_catalog(master, cache)
    expected = [i.key for i in cold.search("sbin", 5)]
    [entry] = entries(cache)
    (entry / "search" / "gram_rows.npy").write_bytes(b"\x93NUMPY not really an array")
    warm = load_catalog(master, cache)
    with caplog.at_level(logging.WARNING, logger="catalog.store"):
        found = warm.search("sbin", 5)
    assert "rebuilding the search index" in caplog.text
    assert [i.key for i in found] == expected
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="catalog.store"):
        again = load_catalog(master, cache).search("sbin", 5)
    assert [i.key for i in again] == expected and caplog.text == "", "the rebuilt index was kept"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    from cluster.errors import ShardlineError

    with pytest.raises(ShardlineError, match="does not exist"):
        load_catalog(tmp_path / "absent.json", tmp_path / "cache")
