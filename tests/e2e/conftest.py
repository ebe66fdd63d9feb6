"""The whole system, up once per e2e session on a private local Ray: what `make up` starts.

Shared by every e2e test (CLI status, orders end to end, the browser): bringing shardline up costs
tens of seconds, so it happens once. The config is the shipped one with its own data directory,
a free port for the terminal and a modest tick rate.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def poll_until(condition: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., Any]:
    return poll_until


@pytest.fixture(scope="session")
def system_config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = yaml.safe_load((PROJECT_ROOT / "config" / "shardline.yaml").read_text())
    root = tmp_path_factory.mktemp("system")
    data["data_dir"] = str(root / "data")
    data["serve"]["port"] = free_port()
    data["serve"]["cors_origins"] = [f"http://127.0.0.1:{data['serve']['port']}"]
    # Ticks flow to every instrument several times a second, which is all these tests need; the
    # high rates are the benchmarks' business, and on two cores a busier system only slows every
    # request the tests make.
    data["sim"]["tick_rate"] = 200
    path = root / "shardline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def system(system_config_path: Path) -> Iterator[dict[str, Any]]:
    """`shardline up` on a private local Ray cluster; torn down at the end of the session."""
    import ray

    from cluster import launcher
    from cluster.config import load_config

    os.environ.pop("RAY_ADDRESS", None)
    config = load_config(system_config_path)
    ray.init(
        address="local",
        num_cpus=2,
        namespace="shardline",
        resources={config.execution.pin_resource: 1.0},
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
    )
    try:
        state = launcher.up(config)
        state["config"] = config
        state["config_path"] = system_config_path
        yield state
    finally:
        try:
            from ray import serve

            serve.shutdown()
        finally:
            ray.shutdown()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `faults` kill and restart the shared system's actors and cut its sockets: run
    them after the tests that expect a system that never faulted."""
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)
