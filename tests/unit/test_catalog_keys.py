from __future__ import annotations

from pathlib import Path

from catalog.catalog import InstrumentCatalog
from cluster.config import parse_config


def test_keys_are_every_instrument_key_in_iid_order(tmp_path: Path) -> None:
    from catalog.sources import load_default_catalog

    config = parse_config({"data_dir": str(tmp_path), "catalog": {"synth_count": 3000, "synth_seed": 3}})
    catalog: InstrumentCatalog = load_default_catalog(config)
    keys = catalog.keys()
    assert len(keys) == len(catalog) > 0
    assert keys == [catalog.by_iid(i).key for i in range(len(catalog))]
    assert len(set(keys)) == len(keys)
