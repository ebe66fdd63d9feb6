"""Structured logs: one JSON object per line, the same shape from every shardline process.

Each actor calls :func:`configure_logging` once at start, naming itself; fields that hold for
all of its records (a shard's deployment and index) are given there, fields of one record go
through ``extra=``::

    configure_logging("shard", deployment="ema", shard=1)
    log.info("order sent", extra={"order_id": coid, "instrument": "NSE:3045"})

gives ``{"ts": "...Z", "level": "INFO", "logger": "...", "component": "shard", "msg": "order
sent", "pid": 4242, "deployment": "ema", "shard": 1, "order_id": "...", "instrument": "NSE:3045"}``.
The handlers, levels and formats live in ``config/logging.yaml``.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from cluster.config import ROOT
from cluster.errors import ShardlineError

DEFAULT_LOGGING_PATH = ROOT / "config" / "logging.yaml"
LEVEL_ENV = "SHARDLINE_LOG_LEVEL"
FORMAT_ENV = "SHARDLINE_LOG_FORMAT"

# The fields searches and dashboards key on, written first when a record has them.
CONTEXT_FIELDS = ("order_id", "deployment", "shard", "book", "instrument")

# Attributes every LogRecord has; anything else on a record came from `extra=` or the filter.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "component",
    "taskName",
}


class ContextFilter(logging.Filter):
    """Stamps each record with the process's component and fixed fields (a record's own win)."""

    def __init__(self, component: str = "shardline", fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.component = component
        self.fields = dict(fields or {})

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = self.component
        for key, value in self.fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON; values JSON cannot carry are written as their str()."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception as err:  # a bad %-format must not lose the record
            message = f"{record.msg!r} (unformattable with args {record.args!r}: {err})"
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "component": getattr(record, "component", "shardline"),
            "msg": message,
            "pid": record.process,
        }
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}
        for key in CONTEXT_FIELDS:
            if key in extras:
                doc[key] = extras.pop(key)
        doc.update(sorted(extras.items()))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def load_logging_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The dictConfig mapping in `path` (default ``config/logging.yaml``), or a ShardlineError saying why."""
    path = Path(path or DEFAULT_LOGGING_PATH)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ShardlineError(f"{path}: cannot read the logging config: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ShardlineError(f"{path}: the logging config is not valid YAML: {err}") from None
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ShardlineError(f"{path}: a logging config is a mapping with 'version: 1'")
    return data


def configure_logging(
    component: str,
    *,
    level: str | None = None,
    path: str | os.PathLike[str] | None = None,
    **fields: Any,
) -> None:
    """Send this process's logs through the shared config, stamped with `component` and `fields`.

    Parameters
    ----------
    component
        Who logs: an actor kind or name ("router", "shard", "terminal", "cli").
    level
        Root level; default ``SHARDLINE_LOG_LEVEL``, else the file's.
    path
        The config file; default ``config/logging.yaml``.
    **fields
        Added to every record that does not carry its own (e.g. ``deployment="ema", shard=1``).

    Calling it again replaces the previous setup (no duplicated handlers).
    """
    config = load_logging_config(path)
    config.setdefault("filters", {}).setdefault("context", {"()": "cluster.logs.ContextFilter"})
    config["filters"]["context"].update(component=component, fields=fields)
    chosen = level or os.environ.get(LEVEL_ENV)
    if chosen:
        name = chosen.upper()
        if not isinstance(logging.getLevelNamesMapping().get(name), int):
            source = "level" if level else LEVEL_ENV
            raise ShardlineError(
                f"{source}: unknown log level {chosen!r} (use DEBUG, INFO, WARNING or ERROR)"
            )
        config.setdefault("root", {})["level"] = name
    style = os.environ.get(FORMAT_ENV)
    if style:
        if style not in config.get("formatters", {}):
            known = ", ".join(sorted(config.get("formatters", {})))
            raise ShardlineError(f"{FORMAT_ENV}: unknown log format {style!r} (the config has: {known})")
        for handler in config.get("handlers", {}).values():
            handler["formatter"] = style
    try:
        logging.config.dictConfig(config)
    except (ValueError, TypeError, AttributeError, ImportError) as err:
        raise ShardlineError(
            f"{path or DEFAULT_LOGGING_PATH}: the logging config cannot be applied: {err}"
        ) from None
    logging.getLogger(__name__).debug("logging configured for %s", component)
