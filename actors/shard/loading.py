"""Import a strategy class from "module.path:ClassName" and validate its config, with clear errors."""

from __future__ import annotations

import importlib
import typing
from collections.abc import Sequence
from typing import Any

import msgspec
from nautilus_trader.config import StrategyConfig
from nautilus_trader.trading.strategy import Strategy

from cluster.errors import ShardlineError


class StrategyLoadError(ShardlineError):
    """The strategy class cannot be imported, or its config is not valid; the message says which."""


def import_strategy_class(path: str) -> type[Strategy]:
    """Import the `Strategy` subclass named by "module.path:ClassName"."""
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise StrategyLoadError(f"strategy {path!r}: expected 'module.path:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any import-time failure of user code is reported, not raised raw
        raise StrategyLoadError(f"strategy {path}: cannot import module {module_name!r}: {err!r}") from err
    cls = getattr(module, class_name, None)
    if cls is None:
        raise StrategyLoadError(f"strategy {path}: module {module_name!r} has no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyLoadError(f"strategy {path}: {class_name!r} is not a nautilus_trader Strategy subclass")
    return cls


def strategy_config_class(cls: type[Strategy]) -> type[StrategyConfig]:
    """The config class a strategy takes: its `__init__` annotation, else `<ClassName>Config` beside it."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations: fall back to the naming convention
        hints = {}
    candidate = hints.get("config")
    if not (isinstance(candidate, type) and issubclass(candidate, StrategyConfig)):
        module = importlib.import_module(cls.__module__)
        candidate = getattr(module, f"{cls.__name__}Config", None)
    if not (isinstance(candidate, type) and issubclass(candidate, StrategyConfig)):
        raise StrategyLoadError(
            f"strategy {cls.__module__}:{cls.__name__}: cannot find its StrategyConfig subclass "
            f"(annotate __init__(self, config: MyConfig) or define {cls.__name__}Config)"
        )
    return candidate


def build_strategy(
    path: str,
    config: dict[str, Any],
    strategy_id_tag: str | None = None,
    claims: Sequence[str] = (),
) -> Strategy:
    """Import, validate the config of, and instantiate one strategy.

    Parameters
    ----------
    path : str
        "module.path:ClassName".
    config : dict[str, Any]
        The deployment's config mapping (JSON-compatible values).
    strategy_id_tag : str, optional
        The order id tag, unless `config` sets `order_id_tag` itself.
    claims : sequence of str
        Instrument ids whose orders placed by others on the strategy's book (the venue's
        square-offs, GTT and bracket legs) count as the strategy's own, unless `config` sets
        `external_order_claims` itself.

    Raises
    ------
    StrategyLoadError
        If the class cannot be imported, the config does not validate, or the strategy's own
        checks refuse it; the message names the class and the reason.
    """
    cls = import_strategy_class(path)
    config_cls = strategy_config_class(cls)
    values = dict(config)
    known = {f.name for f in msgspec.structs.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise StrategyLoadError(
            f"strategy {path}: unknown config key(s) for {config_cls.__name__}: {', '.join(unknown)}"
        )
    if strategy_id_tag is not None:
        values.setdefault("order_id_tag", strategy_id_tag)
    if claims:
        values.setdefault("external_order_claims", list(claims))
    try:
        parsed = config_cls.parse(msgspec.json.encode(values))
    except (msgspec.ValidationError, msgspec.DecodeError, TypeError, ValueError) as err:
        raise StrategyLoadError(f"strategy {path}: invalid config for {config_cls.__name__}: {err}") from None
    try:
        return cls(config=parsed)
    except Exception as err:  # the strategy's own invariants (e.g. fast < slow)
        raise StrategyLoadError(f"strategy {path}: refused its config: {err}") from None
