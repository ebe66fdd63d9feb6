"""Downloading the day's scrip master, refusing a bad one, and keeping the last good copy.

A refresh streams the file to a temporary name, parses it with the same code a load uses, and
only then replaces the last good copy. It is refused, with the last good copy left in place, when:

- the download fails or is cut short (HTTP error, connection closed before Content-Length);
- the body is empty, not a JSON array of records, or lacks a field in every record;
- it has fewer records than `min_row_ratio` of the last good copy (a collapsed file);
- any exchange:token repeats (the key every other part of the system relies on);
- fewer than half its records make usable instruments (the format has changed under us).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from catalog.scrip import DUPLICATE_KEY, LoadReport, ScripFormatError, read_scrip_master
from catalog.store import LastGood, ScripMasterStore, cached_catalog
from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from catalog.catalog import InstrumentCatalog

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]  # (bytes received, total bytes if known)

_MIN_USABLE_FRACTION = 0.5
_CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class RefreshResult:
    """A refresh that succeeded: the new last good copy, already loaded."""

    path: Path
    meta: LastGood
    report: LoadReport
    catalog: InstrumentCatalog


def download(url: str, dest: Path, timeout_s: float, progress: ProgressCallback | None = None) -> str:
    """Stream `url` into `dest`; returns the SHA-256 of what was written.

    Raises
    ------
    ShardlineError
        On an HTTP error status, a network failure or a body shorter than its Content-Length.
    """
    digest = hashlib.sha256()
    try:
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
            if response.status_code != httpx.codes.OK:
                raise ShardlineError(f"download of {url} failed: HTTP {response.status_code}")
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            with dest.open("wb") as out:
                for chunk in response.iter_bytes(_CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    if progress is not None:
                        progress(response.num_bytes_downloaded, total)
            if total is not None and response.num_bytes_downloaded != total:
                raise ShardlineError(
                    f"download of {url} was cut short: {response.num_bytes_downloaded} of {total} bytes"
                )
    except httpx.HTTPError as err:
        raise ShardlineError(f"download of {url} failed: {type(err).__name__}: {err}") from None
    return digest.hexdigest()


def _keeping(store: ScripMasterStore) -> str:
    previous = store.last_good()
    if previous is None:
        return "there is no last good copy yet"
    when = f"{previous.downloaded_at:%Y-%m-%d %H:%M} UTC"
    return f"keeping the last good copy ({previous.records} records from {when})"


def validate(report: LoadReport, previous: LastGood | None, min_row_ratio: float) -> str | None:
    """Why a parsed download must be refused, or None if it is acceptable."""
    if report.records == 0:
        return "it holds no records"
    if previous is not None and report.records < min_row_ratio * previous.records:
        return (
            f"it has {report.records} records, fewer than {min_row_ratio:.0%} of the last good "
            f"copy's {previous.records}"
        )
    duplicates = report.skipped.get(DUPLICATE_KEY, 0)
    if duplicates:
        example = "; ".join(report.examples.get(DUPLICATE_KEY, []))
        return f"{duplicates} records repeat an exchange:token ({example})"
    if report.loaded < _MIN_USABLE_FRACTION * report.records:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
        return f"only {report.loaded} of {report.records} records are usable ({reasons})"
    return None


def refresh_scrip_master(
    store: ScripMasterStore,
    url: str,
    *,
    timeout_s: float,
    min_row_ratio: float,
    now: datetime,
    progress: ProgressCallback | None = None,
) -> RefreshResult:
    """Download, validate and keep the scrip master at `url` as the new last good copy.

    Parameters
    ----------
    store : ScripMasterStore
        Where the last good copy and the cache live.
    url : str
        The file to download.
    timeout_s : float
        Network timeout (connect and between reads).
    min_row_ratio : float
        Refuse a file with fewer records than this fraction of the last good copy.
    now : datetime
        The download time to record (UTC).
    progress : callable, optional
        Called with (bytes received, total bytes or None) as the body arrives.

    Raises
    ------
    ShardlineError
        If the download fails or is refused; the last good copy is left as it was.
    """
    store.directory.mkdir(parents=True, exist_ok=True)
    part = store.directory / f".{store.last_good_path.name}.{os.getpid()}.part"
    try:
        try:
            sha256 = download(url, part, timeout_s, progress)
        except ShardlineError as err:
            raise ShardlineError(f"{err}; {_keeping(store)}") from None
        try:
            frame, report = read_scrip_master(part)
        except ScripFormatError as err:
            reason = str(err).removeprefix(f"{part}: ")
            raise ShardlineError(
                f"refused the scrip master from {url}: {reason}; {_keeping(store)}"
            ) from None
        report.source = url
        refusal = validate(report, store.last_good(), min_row_ratio)
        if refusal is not None:
            raise ShardlineError(f"refused the scrip master from {url}: {refusal}; {_keeping(store)}")
        meta = LastGood(
            url=url,
            downloaded_at=now,
            records=report.records,
            loaded=report.loaded,
            bytes=part.stat().st_size,
            sha256=sha256,
        )
        path = store.promote(part, meta)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    catalog = cached_catalog(path, frame, report, store.cache_dir)
    log.info("scrip master refreshed from %s: %s", url, report.summary())
    return RefreshResult(path=path, meta=meta, report=report, catalog=catalog)
