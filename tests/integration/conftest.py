"""Shared integration fixtures: a real local Ray session and real redis-server processes.

- `ray_session` (session scope): a private local Ray cluster (never an existing one) with
  2 CPUs, the `shardline` namespace and the custom resource `broker_ip` that pins the
  execution actor. Actor classes defined in test modules are importable by the workers.
- `wait_until` (session scope): poll a condition with a deadline instead of sleeping.
- `redis_server` (session scope): `/usr/bin/redis-server` on a free loopback port in a temp
  dir, AOF on with `appendfsync always`; `redis_url` (per test) hands out its URL on a
  flushed database. `make_redis_server` starts private servers a test may stop and restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def poll_until(condition: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy, or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A real redis-server process in its own directory; `stop` then `start` keeps its data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        if not os.path.exists(REDIS_SERVER):
            pytest.fail("redis-server is not installed (run `make os-packages`)")
        for _attempt in range(5):  # the free port can be taken between picking and binding it
            self.port = self.port or free_port()
            self._process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--bind", self.host,
                    "--port", str(self.port),
                    "--dir", str(self.directory),
                    "--appendonly", "yes",
                    "--appendfsync", "always",
                    "--save", "",
                    "--daemonize", "no",
                    "--logfile", "redis.log",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                poll_until(lambda: self._ping() or not self.running, 10.0, f"redis-server on {self.port}")
            except TimeoutError:
                self.stop()
                raise
            if self.running:
                return self
            self.port = 0
        pytest.fail(f"redis-server would not start; see {self.directory / 'redis.log'}")

    def stop(self, hard: bool = False) -> None:
        """Stop the server: SIGTERM (clean) or SIGKILL (`hard`, like a crash)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill() if hard else self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None

    def client(self) -> Any:
        import redis

        return redis.Redis(host=self.host, port=self.port)

    def _ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., Any]:
    """`wait_until(condition, timeout_s=30, what="...")`: poll until truthy, fail at the deadline."""
    return poll_until


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, its data flushed before each test."""
    if not redis_server.running:
        redis_server.start()
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def make_redis_server(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Start private redis-servers (each in its own dir) that the test may stop; all stopped after."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """A private local Ray cluster for the whole test session, shut down at the end."""
    import ray

    os.environ.pop("RAY_ADDRESS", None)
    python_path = os.pathsep.join(
        [str(PROJECT_ROOT), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    context = ray.init(
        address="local",
        num_cpus=2,
        namespace="shardline",
        resources={"broker_ip": 1.0},
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
        runtime_env={"env_vars": {"PYTHONPATH": python_path}},
    )
    yield context
    ray.shutdown()
