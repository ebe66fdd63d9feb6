"""Refreshing the scrip master from a real HTTP server on loopback, and the default loader's sources.

The server serves whatever a test puts in `routes`: good files, truncated ones (with and
without Content-Length), empty, malformed, collapsed, duplicated, gzip-encoded, HTTP errors.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from catalog.refresh import ProgressCallback, RefreshResult, refresh_scrip_master
from catalog.sources import load_default_catalog
from catalog.store import LastGood, ScripMasterStore
from catalog.synth import synthesize
from cluster.config import ShardlineConfig, parse_config
from cluster.errors import ShardlineError

NOW = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)  # 09:30 IST


@dataclass
class Reply:
    body: bytes = b""
    status: int = 200
    declared_length: int | None = None  # Content-Length to claim; None: the true length
    send_length: bool = True
    headers: dict[str, str] = field(default_factory=dict)


class FakeAngel:
    """A loopback HTTP server; `routes[path]` says how to answer, `hits[path]` counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        self.hits: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                reply = outer.routes.get(self.path, Reply(b"not found", 404))
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.send_length:
                    length = reply.declared_length if reply.declared_length is not None else len(reply.body)
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(reply.body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture
def angel() -> Iterator[FakeAngel]:
    server = FakeAngel()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def master(count: int, seed: int = 1) -> bytes:
    return json.dumps(synthesize(count, seed)).encode()


GOOD = master(600)


@pytest.fixture
def store(tmp_path: Path) -> ScripMasterStore:
    return ScripMasterStore(tmp_path / "catalog")


def refresh(
    store: ScripMasterStore, url: str, now: datetime = NOW, progress: ProgressCallback | None = None
) -> RefreshResult:
    return refresh_scrip_master(store, url, timeout_s=5.0, min_row_ratio=0.8, now=now, progress=progress)


def test_a_good_download_becomes_the_last_good_copy(angel: FakeAngel, store: ScripMasterStore) -> None:
    angel.routes["/master.json"] = Reply(GOOD)
    seen: list[tuple[int, int | None]] = []
    result = refresh(
        store, angel.url("/master.json"), progress=lambda done, total: seen.append((done, total))
    )
    assert store.last_good_path.read_bytes() == GOOD
    assert len(result.catalog) == 600 and result.report.skipped == {}
    meta = store.last_good()
    assert meta is not None and (meta.records, meta.bytes, meta.downloaded_at) == (600, len(GOOD), NOW)
    assert seen and seen[-1] == (len(GOOD), len(GOOD))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert any(store.cache_dir.iterdir()), "the columnar cache is written"
    assert not list(store.directory.glob(".*part"))


def test_a_gzip_encoded_download_is_decoded(angel: FakeAngel, store: ScripMasterStore) -> None:
    angel.routes["/gz"] = Reply(gzip.compress(GOOD), headers={"Content-Encoding": "gzip"})
    result = refresh(store, angel.url("/gz"))
    assert store.last_good_path.read_bytes() == GOOD and len(result.catalog) == 600


def duplicated() -> bytes:
    rows = synthesize(600, 1)
    rows.append(dict(rows[0], symbol="ANOTHER-EQ"))
    return json.dumps(rows).encode()


def mostly_bad() -> bytes:
    rows = synthesize(600, 1)
    for row in rows[:400]:
        row["instrumenttype"] = "FUTIRC"
    return json.dumps(rows).encode()


REFUSALS = [
    (
        "truncated, with length",
        Reply(GOOD[: len(GOOD) // 2], declared_length=len(GOOD)),
        "failed: RemoteProtocolError",
    ),
    (
        "truncated, no length",
        Reply(GOOD[: len(GOOD) // 2], send_length=False),
        "not a valid scrip master JSON",
    ),
    ("empty body", Reply(b""), "the scrip master is empty"),
    ("html error page", Reply(b"<html><body>Service Unavailable</body></html>"), "not a scrip master"),
    ("json object", Reply(b'{"status": false, "message": "busy"}'), "found a single JSON object"),
    ("empty array", Reply(b"[]"), "it holds no records"),
    ("fields missing", Reply(b'[{"token": "1", "symbol": "A"}]'), "no record has the field(s) name"),
    ("http 500", Reply(b"oops", status=500), "failed: HTTP 500"),
    ("http 404", Reply(b"gone", status=404), "failed: HTTP 404"),
    ("collapsed", Reply(master(400)), "it has 400 records, fewer than 80% of the last good copy's 600"),
    ("duplicate keys", Reply(duplicated()), "1 records repeat an exchange:token"),
    (
        "mostly unusable",
        Reply(mostly_bad()),
        "only 200 of 600 records are usable (400 unknown instrument type)",
    ),
]


@pytest.mark.parametrize(("case", "reply", "message"), REFUSALS, ids=[c for c, _, _ in REFUSALS])
def test_bad_downloads_are_refused_and_the_last_good_copy_stays(
    angel: FakeAngel, store: ScripMasterStore, case: str, reply: Reply, message: str
) -> None:
    angel.routes["/good"] = Reply(GOOD)
    refresh(store, angel.url("/good"), now=NOW - timedelta(days=1))
    meta_before = store.last_good_meta_path.read_text()
    angel.routes["/bad"] = reply
    with pytest.raises(ShardlineError, match=re.escape(message)) as err:
        refresh(store, angel.url("/bad"))
    assert "keeping the last good copy (600 records from 2026-11-25 04:00 UTC)" in str(err.value)
    assert "\n" not in str(err.value), "one line for the CLI"
    assert store.last_good_path.read_bytes() == GOOD
    assert store.last_good_meta_path.read_text() == meta_before
    assert not list(store.directory.glob(".*part")), "the refused download is removed"


def test_refusal_without_a_previous_copy_says_so(angel: FakeAngel, store: ScripMasterStore) -> None:
    angel.routes["/empty"] = Reply(b"")
    with pytest.raises(ShardlineError, match="there is no last good copy yet"):
        refresh(store, angel.url("/empty"))
    assert not store.last_good_path.exists() and store.last_good() is None


def test_unreachable_server_is_a_clear_error(store: ScripMasterStore) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ShardlineError, match=r"download of http://127\.0\.0\.1:\d+/x failed: ConnectError"):
        refresh(store, f"http://127.0.0.1:{port}/x")


def test_collapse_threshold_follows_min_row_ratio(angel: FakeAngel, store: ScripMasterStore) -> None:
    angel.routes["/a"] = Reply(GOOD)
    angel.routes["/b"] = Reply(master(400))
    refresh(store, angel.url("/a"))
    result = refresh_scrip_master(store, angel.url("/b"), timeout_s=5, min_row_ratio=0.5, now=NOW)
    assert len(result.catalog) == 400


# ---- the default loader ------------------------------------------------------------------------


def config_for(tmp_path: Path, **catalog: object) -> ShardlineConfig:
    return parse_config({"data_dir": str(tmp_path / "data"), "catalog": catalog})


def seed_last_good(config: ShardlineConfig, body: bytes, downloaded_at: datetime) -> ScripMasterStore:
    store = ScripMasterStore(config.data_path / "catalog")
    store.directory.mkdir(parents=True)
    tmp = store.directory / "incoming.json"
    tmp.write_bytes(body)
    store.promote(
        tmp, LastGood("seed", downloaded_at, len(json.loads(body)), len(json.loads(body)), len(body), "-")
    )
    return store


def test_angel_source_uses_todays_copy_without_downloading(angel: FakeAngel, tmp_path: Path) -> None:
    config = config_for(tmp_path, source="angel", url=angel.url("/master.json"))
    seed_last_good(config, GOOD, NOW - timedelta(hours=1))
    catalog = load_default_catalog(config, now=NOW)
    assert len(catalog) == 600 and angel.hits == {}


def test_angel_source_refreshes_a_copy_from_an_earlier_day(angel: FakeAngel, tmp_path: Path) -> None:
    config = config_for(tmp_path, source="angel", url=angel.url("/master.json"))
    seed_last_good(config, GOOD, NOW - timedelta(days=1))
    angel.routes["/master.json"] = Reply(master(700, seed=2))
    catalog = load_default_catalog(config, now=NOW)
    assert len(catalog) == 700 and angel.hits == {"/master.json": 1}


def test_angel_source_falls_back_to_the_last_good_copy_offline(
    angel: FakeAngel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(tmp_path, source="angel", url=angel.url("/master.json"))
    seed_last_good(config, GOOD, NOW - timedelta(days=3))
    angel.routes["/master.json"] = Reply(b"busy", status=503)
    with caplog.at_level(logging.WARNING, logger="catalog.sources"):
        catalog = load_default_catalog(config, now=NOW)
    assert len(catalog) == 600
    assert "refresh failed" in caplog.text and "HTTP 503" in caplog.text


def test_angel_source_without_any_copy_and_no_network_fails(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = config_for(tmp_path, source="angel", url=f"http://127.0.0.1:{port}/m.json")
    with pytest.raises(ShardlineError, match="there is no last good copy yet"):
        load_default_catalog(config, now=NOW)


def test_synth_source_generates_the_days_master_once(tmp_path: Path) -> None:
    config = config_for(tmp_path, source="synth", synth_count=800, synth_seed=5)
    first = load_default_catalog(config, now=NOW)
    synth_dir = config.data_path / "catalog" / "synth"
    [path] = synth_dir.glob("*.json")
    assert path.name == "synth-800-5-2026-11-26.json"
    stamp = path.stat().st_mtime_ns
    second = load_default_catalog(config, now=NOW + timedelta(hours=2))
    assert path.stat().st_mtime_ns == stamp, "not regenerated the same day"
    assert len(first) == len(second) == 800
    assert first.frame().equals(second.frame())
    load_default_catalog(config, now=NOW + timedelta(days=1))
    assert [p.name for p in synth_dir.glob("*.json")] == ["synth-800-5-2026-11-27.json"]


def test_file_source(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_bytes(master(300))
    catalog = load_default_catalog(config_for(tmp_path, source="file", path=str(path)), now=NOW)
    assert len(catalog) == 300
    with pytest.raises(ShardlineError, match="does not exist"):
        load_default_catalog(config_for(tmp_path, source="file", path=str(tmp_path / "nope.json")), now=NOW)
    with pytest.raises(ShardlineError, match=r"catalog\.path is not set"):
        load_default_catalog(config_for(tmp_path, source="file"), now=NOW)
