"""Structured logging: the shipped config, one JSON object per line, context fields, bad input."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cluster.config import ROOT
from cluster.errors import ShardlineError
from cluster.logs import DEFAULT_LOGGING_PATH, configure_logging, load_logging_config


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test configures the root logger; put it back as it was afterwards."""
    monkeypatch.delenv("SHARDLINE_LOG_LEVEL", raising=False)
    monkeypatch.delenv("SHARDLINE_LOG_FORMAT", raising=False)
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), list(root.filters))
    yield
    for handler in root.handlers:
        if handler not in saved[1]:
            handler.close()
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    root.filters[:] = saved[2]


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    err = capsys.readouterr().err
    return [json.loads(line) for line in err.splitlines() if line]


def test_each_record_is_one_json_line_with_the_common_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("router")
    log = logging.getLogger("actors.router")
    log.info("pushed %d ticks", 4096)
    log.warning("shard %s is down", "shard-ema-1")
    first, second = lines(capsys)
    assert first["msg"] == "pushed 4096 ticks"
    assert first["level"] == "INFO" and second["level"] == "WARNING"
    assert first["logger"] == "actors.router"
    assert first["component"] == "router"
    assert first["pid"] > 0
    assert first["ts"].endswith("Z") and first["ts"][10] == "T"
    assert not {"order_id", "deployment", "shard"} & first.keys()


def test_context_fields_come_from_extra_and_from_the_component_setup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("shard", deployment="ema", shard=1)
    log = logging.getLogger("actors.shard")
    log.info("order sent", extra={"order_id": "ema-1-000042", "instrument": "NSE:3045"})
    log.info("moved", extra={"shard": 0})  # a record's own value wins over the setup's
    sent, moved = lines(capsys)
    assert sent["order_id"] == "ema-1-000042"
    assert sent["deployment"] == "ema" and sent["shard"] == 1
    assert sent["instrument"] == "NSE:3045"
    assert list(sent)[:6] == ["ts", "level", "logger", "component", "msg", "pid"]
    assert list(sent)[6:9] == ["order_id", "deployment", "shard"]
    assert moved["shard"] == 0


def test_values_json_cannot_carry_are_written_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("execution")

    class Venue:
        def __str__(self) -> str:
            return "venue<paper>"

    logging.getLogger("x").info(
        "fill", extra={"price": Decimal("812.35"), "venue": Venue(), "raw": b"\x01", "tags": {"a": 1}}
    )
    (doc,) = lines(capsys)
    assert doc["price"] == "812.35"
    assert doc["venue"] == "venue<paper>"
    assert doc["raw"] == "b'\\x01'"
    assert doc["tags"] == {"a": 1}


def test_an_exception_and_a_multiline_message_stay_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("feed")
    log = logging.getLogger("actors.feed")
    try:
        raise ConnectionResetError("socket closed\nby peer")
    except ConnectionResetError:
        log.exception("reconnecting\nin 0.2 s")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    doc = json.loads(err)
    assert doc["msg"] == "reconnecting\nin 0.2 s"
    assert doc["level"] == "ERROR"
    assert "ConnectionResetError: socket closed\nby peer" in doc["exc"]
    assert "Traceback" in doc["exc"]


def test_a_bad_format_string_keeps_the_record(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("cli")
    logging.getLogger("x").warning("%d ticks from %s", "many")
    (doc,) = lines(capsys)
    assert "unformattable" in doc["msg"] and "%d ticks from %s" in doc["msg"]


def test_configuring_again_replaces_the_handler_instead_of_adding_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("a")
    configure_logging("b")
    logging.getLogger("x").info("once")
    (doc,) = lines(capsys)
    assert doc["component"] == "b"


@pytest.mark.parametrize(
    ("level_env", "kwargs", "debug_shown", "info_shown"),
    [
        (None, {}, False, True),
        ("debug", {}, True, True),
        ("WARNING", {}, False, False),
        ("DEBUG", {"level": "ERROR"}, False, False),  # the argument wins over the environment
    ],
)
def test_the_level_comes_from_the_argument_the_environment_or_the_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    level_env: str | None,
    kwargs: dict[str, str],
    debug_shown: bool,
    info_shown: bool,
) -> None:
    if level_env:
        monkeypatch.setenv("SHARDLINE_LOG_LEVEL", level_env)
    configure_logging("x", **kwargs)
    log = logging.getLogger("app.level")
    log.debug("d")
    log.info("i")
    msgs = [d["msg"] for d in lines(capsys)]
    assert ("d" in msgs) is debug_shown
    assert ("i" in msgs) is info_shown


def test_chatty_libraries_are_held_at_warning(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("terminal")
    logging.getLogger("uvicorn.access").info('"GET /health HTTP/1.1" 200')
    logging.getLogger("SmartApi.smartConnect").info("login")
    logging.getLogger("uvicorn.access").warning("slow")
    assert [d["msg"] for d in lines(capsys)] == ["slow"]


def test_text_format_is_one_switch_away(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARDLINE_LOG_FORMAT", "text")
    configure_logging("cli")
    logging.getLogger("cluster.launcher").info("starting")
    err = capsys.readouterr().err
    assert "INFO" in err and "cli cluster.launcher: starting" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err)


@pytest.mark.parametrize(
    ("env", "value", "match"),
    [
        ("SHARDLINE_LOG_LEVEL", "LOUD", "SHARDLINE_LOG_LEVEL: unknown log level 'LOUD'"),
        ("SHARDLINE_LOG_FORMAT", "xml", "SHARDLINE_LOG_FORMAT: unknown log format 'xml'.*json, text"),
    ],
)
def test_bad_environment_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, match: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ShardlineError, match=match):
        configure_logging("x")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (None, "cannot read the logging config"),
        ("version: [1\n", "not valid YAML"),
        ("- a list\n", "a mapping with 'version: 1'"),
        ("version: 2\n", "a mapping with 'version: 1'"),
        ("version: 1\nhandlers: {h: {class: no.such.Handler}}\nroot: {handlers: [h]}\n", "cannot be applied"),
    ],
)
def test_a_broken_config_file_is_refused_with_its_path(tmp_path: Path, text: str | None, match: str) -> None:
    path = tmp_path / "logging.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ShardlineError, match=match) as err:
        configure_logging("x", path=path)
    assert str(path) in str(err.value)


def test_the_shipped_config_is_the_default_and_writes_json_to_stderr() -> None:
    assert DEFAULT_LOGGING_PATH == ROOT / "config" / "logging.yaml"
    config = load_logging_config()
    assert config["handlers"]["stderr"]["formatter"] == "json"
    assert config["root"]["handlers"] == ["stderr"]


def test_a_fresh_process_logs_json_lines_to_stderr_and_nothing_to_stdout() -> None:
    code = (
        "import logging; from cluster.logs import configure_logging;"
        "configure_logging('portfolio', book='manual');"
        "logging.getLogger('actors.portfolio').info('gtt %s triggered', 'G1', extra={'order_id': 'o-1'})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    )
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    doc = json.loads(line)
    assert doc["component"] == "portfolio" and doc["book"] == "manual" and doc["order_id"] == "o-1"
    assert doc["msg"] == "gtt G1 triggered"
