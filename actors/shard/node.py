"""One Nautilus `TradingNode` on a thread of its own, with its own event loop.

Why a thread: the node's engines, timers and clients live on one asyncio loop; the Ray actor has
its own loop for incoming calls. Keeping them apart means `on_ticks` only hands a batch over
(`call_soon_threadsafe`) and returns, while the node works through batches on its own loop.

Why `ShardNode`: a stock `TradingNode`'s kernel installs process-wide SIGINT/SIGTERM handlers on
its loop — which only works on the main thread, and would take the signals away from the host
process (Ray's worker, or a test runner). `ShardNode` builds the same kernel and builder as
`TradingNode.__init__`, with a kernel that leaves signal handling to the host; everything else is
the stock node.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from nautilus_trader.config import TradingNodeConfig
from nautilus_trader.live.node import TradingNode
from nautilus_trader.live.node_builder import TradingNodeBuilder
from nautilus_trader.system.kernel import NautilusKernel

T = TypeVar("T")


class HostSignalsKernel(NautilusKernel):
    """A kernel that leaves process signals to the host process."""

    def _setup_loop(self) -> None:
        self._log.debug("signal handling left to the host process")


class ShardNode(TradingNode):
    """A `TradingNode` on a given loop, whose kernel installs no signal handlers.

    Parameters
    ----------
    config : TradingNodeConfig
        The node's configuration.
    loop : asyncio.AbstractEventLoop
        The loop the node runs on (any thread's).
    """

    def __init__(self, config: TradingNodeConfig, loop: asyncio.AbstractEventLoop) -> None:
        self._config = config
        self.kernel = HostSignalsKernel(name=type(self).__name__, config=config, loop=loop)
        self._builder = TradingNodeBuilder(
            loop=loop,
            data_engine=self.kernel.data_engine,
            exec_engine=self.kernel.exec_engine,
            portfolio=self.kernel.portfolio,
            msgbus=self.kernel.msgbus,
            cache=self.kernel.cache,
            clock=self.kernel.clock,
            logger=self.kernel.logger,
        )
        self._stream_processors: list[Callable] = []
        self._task_streaming: asyncio.Future | None = None
        self._is_built = False


class NodeThread:
    """A daemon thread running one asyncio loop forever, and ways to run work on it from outside.

    Parameters
    ----------
    name : str
        The thread's name (shows in stack dumps and py-spy).
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the node's loop; the future completes on the caller's side."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run a plain function on the node's loop (in call order with other calls)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args))
            except BaseException as err:
                future.set_exception(err)

        self.loop.call_soon_threadsafe(run)
        return future

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop and wait for the thread to end."""
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)
