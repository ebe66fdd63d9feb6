"""`shardline catalog ...` and `shardline bench catalog`: outputs, JSON, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from catalog.cli import register
from catalog.synth import synthesize

SAMPLE = Path(__file__).resolve().parent.parent / "resources" / "scrip" / "OpenAPIScripMaster.sample.json"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    bench = typer.Typer()
    app.add_typer(bench, name="bench")
    register(app, bench)
    return app


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "shardline.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\ncatalog:\n  source: synth\n  synth_count: 500\n")
    return path


runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        ["catalog", "refresh"],
        ["catalog", "load"],
        ["catalog", "search"],
        ["catalog", "synth"],
        ["bench", "catalog"],
    ],
)
def test_every_command_has_help(cli: typer.Typer, command: list[str]) -> None:
    result = runner.invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_synth_writes_the_requested_master(cli: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    result = runner.invoke(cli, ["catalog", "synth", "--count", "300", "--seed", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == synthesize(300, 2)
    assert "wrote 300 records" in result.output
    csv = tmp_path / "m.csv"
    result = runner.invoke(
        cli, ["catalog", "synth", "--count", "50", "--out", str(csv), "--as-of", "2027-01-04"]
    )
    assert result.exit_code == 0 and csv.read_text().startswith("token,symbol,name,expiry,strike")


def test_load_summarises_counts_and_skips(cli: typer.Typer, config: Path) -> None:
    result = runner.invoke(cli, ["catalog", "load", "--path", str(SAMPLE), "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["loaded"] == 27 and summary["records"] == 41
    assert summary["counts"]["NFO"]["OPTIDX"] == 6 and summary["counts"]["CDS"]["OPTCUR"] == 1
    assert summary["skipped"]["missing token"] == 2
    table = runner.invoke(cli, ["catalog", "load", "--path", str(SAMPLE), "--config", str(config)])
    assert table.exit_code == 0
    assert "27 instruments" in table.output and "skipped 14 of 41 records" in table.output
    assert "unparsable expiry: record 31 (token '63999'" in table.output


def test_load_uses_the_configured_source(cli: typer.Typer, config: Path) -> None:
    result = runner.invoke(cli, ["catalog", "load", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["loaded"] == 500


def test_search_lists_matches_best_first(cli: typer.Typer, config: Path) -> None:
    result = runner.invoke(
        cli, ["catalog", "search", "sbin", "--path", str(SAMPLE), "--config", str(config), "--json"]
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert [row["key"] for row in found[:3]] == ["NSE:3045", "BSE:500112", "NFO:57020"]
    assert found[0]["tick_size"] == "0.05" and found[0]["nautilus_id"] == "SBIN-EQ.NSE"
    table = runner.invoke(
        cli, ["catalog", "search", "nifty", "--limit", "2", "--path", str(SAMPLE), "--config", str(config)]
    )
    assert "NIFTY 50" in table.output
    none = runner.invoke(cli, ["catalog", "search", "zzzz", "--path", str(SAMPLE), "--config", str(config)])
    assert "nothing matches 'zzzz'" in none.output


class _OneFile(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served_master() -> Iterator[str]:
    _OneFile.body = json.dumps(synthesize(400, 3)).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OneFile)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/OpenAPIScripMaster.json"
    server.shutdown()
    server.server_close()


def test_refresh_downloads_into_the_data_dir(cli: typer.Typer, config: Path, served_master: str) -> None:
    result = runner.invoke(
        cli, ["catalog", "refresh", "--url", served_master, "--config", str(config), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["loaded"] == 400
    assert (config.parent / "data" / "catalog" / "OpenAPIScripMaster.json").stat().st_size == len(
        _OneFile.body
    )


def shardline(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point, as a user runs it."""
    code = "import sys; from cluster.cli import main; sys.argv[0] = 'shardline'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["catalog", "load", "--path", "/nonexistent/master.json", "--no-cache"], "does not exist"),
        (
            ["catalog", "synth", "--out", "/tmp/x.json", "--as-of", "someday"],
            "--as-of 'someday': expected YYYY-MM-DD",
        ),
        (["catalog", "refresh", "--url", "http://127.0.0.1:9/none.json"], "failed: ConnectError"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(
    tmp_path: Path, config: Path, args: list[str], message: str
) -> None:
    result = shardline(*args, "--config", str(config)) if args[1] != "synth" else shardline(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_bench_prints_one_json_object(cli: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["bench", "catalog", "--count", "3000", "--workdir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    for key in (
        "load_cold_s", "load_warm_s", "resolve_token_p99_us", "resolve_symbol_p99_us", "search_p99_us",
        "option_chain_p99_us", "rss_mb", "instruments",
    ):  # fmt: skip
        assert isinstance(figures[key], int | float) and figures[key] > 0, key
    assert figures["instruments"] == 3000 and figures["skipped"] == 0
    assert 0 < figures["search_hit_ratio"] <= 1
