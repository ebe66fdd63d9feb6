"""Files the catalog keeps under `<data_dir>/catalog/`, and loading a catalog through its cache.

```
<data_dir>/catalog/
  OpenAPIScripMaster.json         the last good download (used offline)
  OpenAPIScripMaster.meta.json    where and when it came from, how many records it had
  synth/synth-<count>-<seed>-<day>.json   generated masters (source: synth)
  cache/<stem>-<digest>/          columnar cache of one source file:
      columns.msgpack               what the catalog indexes (`catalog.columns`), read by every
                                    load without polars
      instruments.arrow             the normalised frame in iid order (Arrow IPC), read only
                                    when something asks for the frame
      report.json                   the load report of the original parse
      search/                       the search index arrays (.npy, memory-mapped), added by the
                                    first search
```

A cache entry is named after the source file's path, size and modification time, so a new
download or a regenerated file never meets a stale cache. Entries are written to a temporary
directory and renamed into place, so processes loading at the same time never see half an entry.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl

from catalog.catalog import InstrumentCatalog, build_search_arrays
from catalog.columns import CatalogColumns
from catalog.scrip import FRAME_SCHEMA, LoadReport, read_scrip_master
from catalog.search import SearchArrays
from cluster.errors import ShardlineError

log = logging.getLogger(__name__)

# Bump when the frame layout or the search arrays change, so old cache entries are ignored.
CACHE_FORMAT: Final = 4
LAST_GOOD_NAME: Final = "OpenAPIScripMaster.json"
_ARROW_MAGIC: Final = b"ARROW1"  # an Arrow IPC file starts and ends with it

PhaseCallback = Callable[[str], None]


@dataclass(frozen=True)
class LastGood:
    """What is known about the last good download."""

    url: str
    downloaded_at: datetime
    records: int
    loaded: int
    bytes: int
    sha256: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "url": self.url,
                "downloaded_at": self.downloaded_at.isoformat(),
                "records": self.records,
                "loaded": self.loaded,
                "bytes": self.bytes,
                "sha256": self.sha256,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> LastGood:
        data = json.loads(text)
        return cls(
            url=str(data["url"]),
            downloaded_at=datetime.fromisoformat(data["downloaded_at"]),
            records=int(data["records"]),
            loaded=int(data["loaded"]),
            bytes=int(data["bytes"]),
            sha256=str(data["sha256"]),
        )


class ScripMasterStore:
    """The catalog's directory: the last good download, generated masters and the cache.

    Parameters
    ----------
    directory : Path
        Usually `<data_dir>/catalog`.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def last_good_path(self) -> Path:
        return self.directory / LAST_GOOD_NAME

    @property
    def last_good_meta_path(self) -> Path:
        return self.directory / "OpenAPIScripMaster.meta.json"

    @property
    def cache_dir(self) -> Path:
        return self.directory / "cache"

    def synth_path(self, count: int, seed: int, day: str) -> Path:
        return self.directory / "synth" / f"synth-{count}-{seed}-{day}.json"

    def last_good(self) -> LastGood | None:
        """Metadata of the last good download, or None if there is none (or it is unreadable)."""
        if not self.last_good_path.exists():
            return None
        try:
            return LastGood.from_json(self.last_good_meta_path.read_text())
        except (OSError, ValueError, KeyError) as err:
            log.warning("ignoring unreadable %s: %s", self.last_good_meta_path, err)
            return None

    def promote(self, downloaded: Path, meta: LastGood) -> Path:
        """Make a validated download the last good copy (atomic replace), with its metadata."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.replace(downloaded, self.last_good_path)
        tmp = self.last_good_meta_path.with_name(f".{self.last_good_meta_path.name}.{os.getpid()}")
        tmp.write_text(meta.to_json())
        os.replace(tmp, self.last_good_meta_path)
        return self.last_good_path


def _cache_entry(cache_dir: Path, source: Path) -> Path:
    stat = source.stat()
    identity = f"{CACHE_FORMAT}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:20]
    return cache_dir / f"{source.stem}-{digest}"


def _search_arrays_at(entry: Path, frame: Callable[[], pl.DataFrame]) -> Callable[[], SearchArrays]:
    """Loader for the entry's search arrays: read them, or build them from the frame and keep
    them in the entry for the next process. Runs on the first search only."""
    path = entry / "search"

    def load() -> SearchArrays:
        try:
            return SearchArrays.load(path)
        except FileNotFoundError:
            pass  # nobody has searched this file yet
        except Exception as err:
            log.warning("rebuilding the search index: cannot read %s: %s", path, err)
            shutil.rmtree(path, ignore_errors=True)
        arrays = build_search_arrays(frame())
        if entry.is_dir():
            tmp = entry / f".search.{os.getpid()}.tmp"
            try:
                arrays.save(tmp)
                tmp.rename(path)
            except OSError as err:
                if not path.is_dir():  # unless another process kept the same index first
                    log.warning("could not keep the search index in %s: %s", entry, err)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return arrays

    return load


def _frame_reader(entry: Path) -> Callable[[], pl.DataFrame]:
    """Reads the entry's frame once, on first call (the catalog and its search share it)."""

    @functools.cache
    def read() -> pl.DataFrame:
        path = entry / "instruments.arrow"
        try:
            frame = pl.read_ipc(path)
        except Exception as err:
            raise ShardlineError(
                f"catalog cache {path} is unreadable ({err}); delete {entry} and load the catalog again"
            ) from err
        if dict(frame.schema) != FRAME_SCHEMA:
            raise ShardlineError(f"catalog cache {path} has unexpected columns; delete {entry}")
        return frame

    return read


def _check_arrow_file(path: Path) -> None:
    """Refuse a missing or truncated Arrow IPC file by its magic at both ends, without reading it."""
    with path.open("rb") as file:
        head = file.read(len(_ARROW_MAGIC))
        file.seek(max(0, path.stat().st_size - len(_ARROW_MAGIC)))
        tail = file.read()
    if head != _ARROW_MAGIC or tail != _ARROW_MAGIC or path.stat().st_size < 2 * len(_ARROW_MAGIC):
        raise ValueError(f"{path.name} is not a whole Arrow IPC file")


def _read_cache(entry: Path) -> InstrumentCatalog | None:
    """The entry's catalog, its frame left on disk; None if the entry is damaged."""
    try:
        columns = CatalogColumns.decode((entry / "columns.msgpack").read_bytes())
        report = LoadReport.from_dict(json.loads((entry / "report.json").read_text()))
        _check_arrow_file(entry / "instruments.arrow")
    except Exception as err:  # a damaged entry is rebuilt, whatever is wrong with it
        log.warning("ignoring unreadable catalog cache %s: %s", entry, err)
        return None
    frame = _frame_reader(entry)
    return InstrumentCatalog(frame, report, _search_arrays_at(entry, frame), columns=columns)


def cached_catalog(
    source: Path, frame: pl.DataFrame, report: LoadReport, cache_dir: Path
) -> InstrumentCatalog:
    """A catalog over a freshly parsed `source`, kept as that file's cache entry."""
    entry = _cache_entry(cache_dir, source)
    catalog = InstrumentCatalog(frame, report, _search_arrays_at(entry, lambda: frame))
    _write_cache(entry, catalog)
    return catalog


def _write_cache(entry: Path, catalog: InstrumentCatalog) -> None:
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        catalog.frame().write_ipc(tmp / "instruments.arrow", compression="lz4")  # ~10x smaller, reads faster
        (tmp / "columns.msgpack").write_bytes(catalog.columns.encode())
        (tmp / "report.json").write_text(json.dumps(catalog.report.to_dict()))
        try:
            tmp.rename(entry)
        except OSError:
            if not entry.exists():
                raise
            # another process wrote the same entry first; theirs is as good as ours
        for old in entry.parent.glob(f"{entry.name.rsplit('-', 1)[0]}-*"):
            if old != entry and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        log.warning("could not write the catalog cache %s: %s", entry, err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_catalog(
    path: Path,
    cache_dir: Path | None = None,
    on_phase: PhaseCallback | None = None,
) -> InstrumentCatalog:
    """Load a scrip master file (JSON or CSV), through the columnar cache when one is given.

    Parameters
    ----------
    path : Path
        The scrip master.
    cache_dir : Path, optional
        Where cache entries live; without it the file is parsed every time.
    on_phase : callable, optional
        Told what is happening ("reading cache", "parsing", "indexing", "writing cache").

    Raises
    ------
    ShardlineError
        If the file is missing or is not a scrip master.
    """
    phase = on_phase or (lambda _: None)
    if not path.is_file():
        raise ShardlineError(f"scrip master {path} does not exist")
    entry = _cache_entry(cache_dir, path) if cache_dir is not None else None
    started = time.perf_counter()
    if entry is not None and entry.is_dir():
        phase("reading cache")
        cached = _read_cache(entry)
        if cached is not None:
            log.info(
                "catalog: %d instruments from cache %s in %.3fs",
                len(cached),
                entry,
                time.perf_counter() - started,
            )
            return cached
        shutil.rmtree(entry, ignore_errors=True)  # damaged: make way for a fresh one
    phase("parsing")
    frame, report = read_scrip_master(path)
    phase("indexing")
    catalog = InstrumentCatalog(frame, report, _search_arrays_at(entry, lambda: frame) if entry else None)
    if entry is not None:
        phase("writing cache")
        _write_cache(entry, catalog)
    log.info("%s in %.3fs", report.summary(), time.perf_counter() - started)
    if report.skipped:
        log.warning("catalog: skipped %d bad records of %s: %s", report.skipped_total, path, report.skipped)
    return catalog
