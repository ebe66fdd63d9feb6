"""The one place smartapi-python is imported, with its import-time side effects contained.

Importing `SmartApi` (a) looks up the machine's public IP over the internet, with no timeout,
while the class body runs, and (b) makes every `SmartConnect()` create `logs/<date>/app.log`
in the current directory. Its logger also writes request headers (the API key) and request
bodies (PIN and TOTP on a failed login) at error level. So: the lookup is refused during the
import, the SDK's logger is switched off, and its relative `logs` folder is rerouted under the
data directory. Nothing outside this module imports `SmartApi`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

from actors.angel.common import RATE_LIMIT_MESSAGE
from actors.angel.errors import (
    AngelError,
    BrokerRejectedError,
    BrokerResponseError,
    RateLimitedError,
    TokenError,
    TransientBrokerError,
    envelope_ok,
    error_from_envelope,
)

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
    with _lock, warnings.catch_warnings():
        # The SDK sets deprecated TLS option flags on a context it never uses.
        warnings.simplefilter("ignore", DeprecationWarning)
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


class SmartApiGateway:
    """One `SmartConnect`, called off the event loop, answering data or a typed `AngelError`.

    Every call runs in a small thread pool (the SDK is blocking `requests`). The SDK's own answer
    shapes are smoothed over here: `status: false` envelopes, plain-text rate-limit refusals
    (which the SDK raises as `DataException`), SDK exceptions and network errors all become
    `actors.angel.errors` exceptions carrying the broker's code and message.

    Parameters
    ----------
    api_key : str
        Sent as `X-PrivateKey` on every call.
    root : str
        REST root URL (Angel's, or the simulator's).
    log_dir : Path
        Where the SDK's log folder goes.
    timeout_s : float
        Per-request timeout.
    workers : int
        Threads for concurrent calls.
    """

    def __init__(
        self, api_key: str, root: str, log_dir: Path, timeout_s: float = 7.0, workers: int = 4
    ) -> None:
        self.root = root
        self._sdk = new_smart_connect(api_key, root, log_dir, timeout_s)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smartapi")
        self._exceptions = sdk_exceptions()
        self.calls = 0

    def set_tokens(self, jwt_token: str, refresh_token: str, feed_token: str) -> None:
        self._sdk.setAccessToken(jwt_token)
        self._sdk.setRefreshToken(refresh_token)
        self._sdk.setFeedToken(feed_token)

    def clear_tokens(self) -> None:
        self._sdk.setAccessToken(None)

    async def call(self, operation: str, method: str, *args: Any) -> Any:
        """Run SDK method `method(*args)`; return the envelope's `data`, or raise its error."""
        return self._data(operation, await self._run(operation, getattr(self._sdk, method), *args))

    async def post(self, operation: str, route: str, params: dict[str, Any]) -> Any:
        """POST `params` to the SDK route named `route` (e.g. "api.gtt.create"); return `data`.

        For the calls whose SDK wrapper indexes into the answer before checking it (GTT create
        and modify, token renewal) and so loses the broker's error message on a refusal.
        """
        return self._data(operation, await self._run(operation, self._sdk._postRequest, route, params))

    async def login(self, client_code: str, pin: str, totp: str) -> dict[str, Any]:
        """`generateSession`: the envelope's `data` with jwtToken, refreshToken, feedToken."""
        answer = await self._run("login", self._sdk.generateSession, client_code, pin, totp)
        data = self._data("login", answer)
        if not isinstance(data, dict) or not all(
            data.get(k) for k in ("jwtToken", "refreshToken", "feedToken")
        ):
            raise BrokerResponseError("login", "", "login answer has no jwtToken/refreshToken/feedToken")
        return data

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, operation: str, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls += 1
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except self._exceptions.SmartAPIException as err:
            raise self._from_sdk_exception(operation, err) from None
        except requests.RequestException as err:
            raise TransientBrokerError(operation, "NETWORK", f"{type(err).__name__}: {err}") from None
        except (KeyError, TypeError, IndexError) as err:
            # An SDK wrapper tripped over an answer it did not expect (e.g. `data: null`).
            raise BrokerResponseError(
                operation, "", f"unexpected answer shape ({type(err).__name__}: {err})"
            ) from None

    def _from_sdk_exception(self, operation: str, err: Exception) -> AngelError:
        message = str(err)
        if RATE_LIMIT_MESSAGE in message.lower():
            return RateLimitedError(operation, "", _quoted_body(message))
        if isinstance(err, self._exceptions.TokenException):
            return TokenError(operation, "", message)
        if isinstance(err, self._exceptions.NetworkException):
            return TransientBrokerError(operation, "", message)
        if isinstance(err, self._exceptions.DataException):
            return BrokerResponseError(operation, "", message[:300])
        return BrokerRejectedError(operation, "", message)

    @staticmethod
    def _data(operation: str, answer: Any) -> Any:
        if not isinstance(answer, dict):
            raise error_from_envelope(operation, answer)
        if not envelope_ok(answer):
            raise error_from_envelope(operation, answer)
        return answer.get("data")


def _quoted_body(message: str) -> str:
    """The body text inside the SDK's "Couldn't parse the JSON response...: b'...'" message."""
    _, _, body = message.partition(": b")
    return body.strip("'\"") if body else message
