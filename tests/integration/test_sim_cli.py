"""`shardline sim` as a user runs it: a real process, its printed URLs, Ctrl-C to stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyotp

ROOT = Path(__file__).resolve().parents[2]


def shardline(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sim_command_serves_until_interrupted() -> None:
    proc = shardline("sim", "--instruments", "20", "--rate", "200", "--no-rate-limits")
    try:
        lines: dict[str, str] = {}
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while "Ctrl-C" not in lines:
            assert time.monotonic() < deadline, "the simulator never printed its URLs"
            line = proc.stdout.readline()
            assert line, f"the simulator exited early: {proc.stderr.read() if proc.stderr else ''}"
            words = line.split()
            if words:
                lines[words[0].rstrip(".")] = line
        rest = lines["REST"].split()[-1]
        assert lines["SmartStream"].split()[-1].endswith("/smart-stream")
        assert "client code SIM001, PIN 1234" in lines["login"]
        body = json.dumps(
            {
                "clientcode": "SIM001",
                "password": "1234",
                "totp": pyotp.TOTP("SHARDLINESIMULATORDEMOTOTPSECRET").now(),
            }
        ).encode()
        request = urllib.request.Request(
            f"{rest}/rest/auth/angelbroking/user/v1/loginByPassword",
            data=body,
            headers={"X-PrivateKey": "sim-api-key", "X-UserType": "USER", "X-SourceID": "WEB"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.loads(answer.read())["status"] is True
        with urllib.request.urlopen(f"{rest}/sim/v1/counters", timeout=10) as answer:
            assert json.loads(answer.read())["rest_calls"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code in (0, 130)  # stopped on Ctrl-C, cleanly


def test_sim_command_names_a_bad_option() -> None:
    proc = shardline("sim", "--replay", "/nonexistent/ticks.parquet")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "--replay /nonexistent/ticks.parquet: no such file" in err
    proc = shardline("sim", "--rate", "0")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "tick_rate" in err
