"""The one place smartapi-python is imported, with its import-time side effects contained.

Importing `SmartApi` (a) looks up the machine's public IP over the internet, with no timeout,
while the class body runs, and (b) makes every `SmartConnect()` create `logs/<date>/app.log`
in the current directory. Its logger also writes request headers (the API key) and request
bodies (PIN and TOTP on a failed login) at error level. So: the lookup is refused during the
import, the SDK's logger is switched off, and its relative `logs` folder is rerouted under the
data directory. Nothing outside this module imports `SmartApi`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_modules: dict[str, ModuleType] = {}


class _PublicIpLookupRefused(OSError):
    pass


def _refuse_public_ip_lookup(*args: object, **kwargs: object) -> None:
    # The SDK falls back to fixed placeholder addresses when this lookup fails.
    raise _PublicIpLookupRefused("public IP lookup disabled for the SmartAPI SDK")


class _LogFolderPaths:
    """`os.path` as the SDK sees it: its relative "logs" folder resolves under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def join(self, first: str, *rest: str) -> str:
        if first == "logs":
            first = str(self.root)
        return os.path.join(first, *rest)

    def __getattr__(self, name: str) -> Any:
        return getattr(os.path, name)


class _SdkOs:
    """`os` as the SDK sees it; everything but `os.path.join("logs", ...)` is the real thing."""

    def __init__(self, log_root: Path) -> None:
        self.path = _LogFolderPaths(log_root)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def _load() -> dict[str, ModuleType]:
    with _lock:
        if _modules:
            return _modules
        import logzero
        import requests

        logzero.logger.disabled = True
        real_get = requests.get
        requests.get = _refuse_public_ip_lookup  # type: ignore[assignment]
        try:
            import SmartApi.smartConnect as smart_connect
            import SmartApi.smartExceptions as smart_exceptions
            import SmartApi.smartWebSocketV2 as smart_stream
        finally:
            requests.get = real_get
        smart_connect_os = _SdkOs(Path("data") / "angel" / "sdk-logs")
        smart_connect.os = smart_connect_os
        _modules.update(connect=smart_connect, exceptions=smart_exceptions, stream=smart_stream)
        log.debug("smartapi-python loaded (public IP lookup refused, SDK logger off)")
        return _modules


def sdk_exceptions() -> ModuleType:
    """The SDK's exception module (`SmartAPIException` and its subclasses)."""
    return _load()["exceptions"]


def new_smart_connect(api_key: str, root: str, log_dir: Path, timeout_s: float = 7.0) -> Any:
    """A `SmartConnect` for `root`, whose log folder is created under `log_dir`, not the cwd."""
    modules = _load()
    with _lock:
        modules["connect"].os.path.root = log_dir
        return modules["connect"].SmartConnect(api_key=api_key, root=root, timeout=timeout_s)


def sdk_packet_parser() -> Callable[[bytes], dict[str, Any]]:
    """The SDK's own SmartStream V2 packet parser (`SmartWebSocketV2._parse_binary_data`).

    Kept as the test oracle for the vectorised codec; it runs without a connection because the
    parser only reads class attributes.
    """
    cls = _load()["stream"].SmartWebSocketV2
    parser = cls.__new__(cls)
    return parser._parse_binary_data
