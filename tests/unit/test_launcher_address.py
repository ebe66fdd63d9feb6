from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from cluster.launcher import local_cluster_address


@pytest.fixture
def ray_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "ray").mkdir()
    return tmp_path / "ray" / "ray_current_cluster"


def test_no_address_file_means_no_local_cluster(ray_tmp: Path) -> None:
    assert local_cluster_address() is None


def test_a_listening_gcs_is_joined(ray_tmp: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        ray_tmp.write_text(f"127.0.0.1:{port}\n")
        assert local_cluster_address() == f"127.0.0.1:{port}"


def test_a_stale_address_left_by_a_dead_cluster_is_not(ray_tmp: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        ray_tmp.write_text(f"127.0.0.1:{port}")
        assert local_cluster_address() is None
    ray_tmp.write_text("garbage")
    assert local_cluster_address() is None
