"""Angel One's scrip master as an indexed instrument catalog.

```python
from catalog import load_default_catalog

catalog = load_default_catalog(config)          # per config.catalog.source: synth | angel | file
sbin = catalog.resolve("NSE:SBIN-EQ")           # or catalog.get("NSE:3045"), resolve_token(...)
chain = catalog.option_chain("NIFTY", catalog.nearest_expiry("NIFTY"))
universe = catalog.select("NIFTY weekly options ±10 strikes")
```

Modules: `instrument` (the `Instrument` record), `scrip` (parsing), `columns` (what the
catalog is built from, as the cache keeps it), `catalog` (indices and lookups), `search`,
`universe` (selection queries), `store` (last good copy and columnar cache), `refresh`
(download and validation), `sources` (the default loader), `synth` (synthetic masters and
base prices), `nautilus` (Nautilus instruments), `cli`, `bench`.
"""

from __future__ import annotations

from catalog.catalog import InstrumentCatalog, OptionChain, OptionChainRow
from catalog.instrument import Instrument, InstrumentKind
from catalog.scrip import LoadReport
from catalog.sources import load_default_catalog

__all__ = [
    "Instrument",
    "InstrumentCatalog",
    "InstrumentKind",
    "LoadReport",
    "OptionChain",
    "OptionChainRow",
    "load_default_catalog",
]
