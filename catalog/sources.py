"""The catalog the rest of the system uses, from the source the configuration names.

- `synth`: the synthetic master for `synth_count`/`synth_seed`, generated once per trading day
  (expiries count from that day) and kept under `<data_dir>/catalog/synth/`;
- `angel`: the last good download of Angel's file, refreshed first when it is from an earlier
  trading day and the network allows; offline, the last good copy is used as it is;
- `file`: the scrip master at `catalog.path` (JSON or CSV).

Every source loads through the columnar cache under `<data_dir>/catalog/cache/`.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from catalog.refresh import ProgressCallback, refresh_scrip_master
from catalog.store import PhaseCallback, ScripMasterStore, load_catalog
from catalog.synth import synthesize, write_scrip_master
from cluster.config import ROOT
from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from catalog.catalog import InstrumentCatalog
    from cluster.config import ShardlineConfig

log = logging.getLogger(__name__)

IST = timezone(timedelta(hours=5, minutes=30), "IST")


def trading_day(now: datetime) -> date:
    """The Indian calendar day at `now` (the scrip master changes once per day, IST)."""
    return now.astimezone(IST).date()


def catalog_store(config: ShardlineConfig) -> ScripMasterStore:
    return ScripMasterStore(config.data_path / "catalog")


def synthetic_master_path(config: ShardlineConfig, day: date) -> Path:
    """The day's synthetic master, generated if it is not there yet."""
    store = catalog_store(config)
    count, seed = config.catalog.synth_count, config.catalog.synth_seed
    path = store.synth_path(count, seed, day.isoformat())
    if not path.exists():
        write_scrip_master(synthesize(count, seed, as_of=day), path, replace=False)
        for old in path.parent.glob(f"synth-{count}-{seed}-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    return path


def configured_file(config: ShardlineConfig) -> Path:
    if not config.catalog.path:
        raise ShardlineError("catalog.source is 'file' but catalog.path is not set")
    path = Path(config.catalog.path)
    return path if path.is_absolute() else ROOT / path


def load_default_catalog(
    config: ShardlineConfig,
    *,
    now: datetime | None = None,
    on_phase: PhaseCallback | None = None,
    progress: ProgressCallback | None = None,
) -> InstrumentCatalog:
    """The instrument catalog for `config.catalog.source` (see the module docstring).

    Parameters
    ----------
    config : ShardlineConfig
        The validated configuration.
    now : datetime, optional
        The current time (UTC); the wall clock when not given.
    on_phase, progress : callable, optional
        Told about load phases and download progress (for a progress bar).

    Raises
    ------
    ShardlineError
        If no catalog can be had: no file, or no last good copy and no way to download one.
    """
    now = now or datetime.now(UTC)
    store = catalog_store(config)
    source = config.catalog.source
    if source == "synth":
        path = synthetic_master_path(config, trading_day(now))
    elif source == "file":
        path = configured_file(config)
    else:
        refreshed = _refresh_if_stale(config, store, now, progress)
        if refreshed is not None:
            return refreshed
        path = store.last_good_path
    return load_catalog(path, store.cache_dir, on_phase)


def _refresh_if_stale(
    config: ShardlineConfig, store: ScripMasterStore, now: datetime, progress: ProgressCallback | None
) -> InstrumentCatalog | None:
    """The freshly downloaded catalog, or None to use the last good copy as it is."""
    previous = store.last_good()
    if previous is not None and trading_day(previous.downloaded_at) >= trading_day(now):
        return None
    try:
        result = refresh_scrip_master(
            store,
            config.catalog.url,
            timeout_s=config.catalog.download_timeout_s,
            min_row_ratio=config.catalog.min_row_ratio,
            now=now,
            progress=progress,
        )
    except ShardlineError as err:
        if previous is None:
            raise
        log.warning("scrip master refresh failed, using the copy from %s: %s", previous.downloaded_at, err)
        return None
    return result.catalog
