"""`shardline bench all`: the benchmark suite, its plot and its sections in docs/benchmarks.md.

Each part runs as its own `shardline bench ...` process (each starts and stops its own private
Ray), so one part's leftovers never colour the next. The tick matrix is three sweeps through one
centre point (50,000 ticks/s, 2 shards, 1000 instruments) rather than the full cube:

- offered rate 10k, 25k, 50k, 100k ticks/s at 2 shards × 1000 instruments (the plot);
- shards 1, 2, 4 at 50k × 1000 instruments;
- instruments 100, 1000, 3000 at 50k × 2 shards;

8 runs of about 1.5 minutes each instead of 27 (the cube would take over 40 minutes and says little
more: the sweeps show which axis saturates). During the highest-rate run, py-spy samples every
process of that private cluster, so the scaling table names what is busy from profiles rather
than guesses. The many-deployments probe starts N one-shard deployments with small universes on
one cluster (as many as the memory allows), and extrapolates to 100.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import psutil

from cluster.errors import ShardlineError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCS = PROJECT_ROOT / "docs" / "benchmarks.md"
PLOT = PROJECT_ROOT / "docs" / "benchmarks-ticks.png"
PARTS = ("catalog", "feed", "ticks", "orders", "swap", "ui", "chaos", "deployments")
CENTRE = (50_000, 2, 1000)  # rate, shards, instruments


@dataclass(frozen=True)
class TickRun:
    rate: int
    shards: int
    instruments: int

    @property
    def label(self) -> str:
        return f"{self.rate // 1000}k/s × {self.shards} shards × {self.instruments} instruments"


@dataclass(frozen=True)
class SuitePlan:
    """Which parts run, and how long each measures."""

    parts: tuple[str, ...] = PARTS
    rates: tuple[int, ...] = (10_000, 25_000, 50_000, 100_000)
    shard_counts: tuple[int, ...] = (1, 2, 4)
    instrument_counts: tuple[int, ...] = (100, 1000, 3000)
    tick_seconds: float = 20.0
    order_seconds: float = 60.0
    chaos_seconds: float = 120.0
    deployment_counts: tuple[int, ...] = (1, 4, 8, 16)
    profile_seconds: float = 10.0
    part_timeout_s: float = 1800.0
    sections: dict[str, str] = field(default_factory=dict)

    @classmethod
    def full(cls) -> SuitePlan:
        return cls()

    @classmethod
    def quick(cls) -> SuitePlan:
        return cls(
            rates=(10_000, 50_000),
            shard_counts=(2,),
            instrument_counts=(1000,),
            tick_seconds=8.0,
            order_seconds=15.0,
            chaos_seconds=45.0,
            deployment_counts=(1, 4),
            profile_seconds=5.0,
        )

    def restricted_to(self, parts: Iterable[str]) -> SuitePlan:
        chosen = tuple(p.strip() for p in parts if p.strip())
        unknown = [p for p in chosen if p not in PARTS]
        if unknown:
            raise ShardlineError(f"unknown suite parts {unknown}; choose from {', '.join(PARTS)}")
        return replace(self, parts=chosen)

    def tick_runs(self) -> list[TickRun]:
        rate, shards, instruments = CENTRE
        runs = [TickRun(r, shards, instruments) for r in self.rates]
        runs += [TickRun(rate, k, instruments) for k in self.shard_counts]
        runs += [TickRun(rate, shards, n) for n in self.instrument_counts]
        return list(dict.fromkeys(runs))


# ----------------------------------------------------------------------------------- running parts


def machine() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(memory.total / 2**30, 1),
        "available_gib": round(memory.available / 2**30, 1),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
    }


def shardline(args: list[str], timeout_s: float) -> dict[str, Any]:
    """Run `shardline <args>` in its own process; its last JSON line, or an error document."""
    command = [sys.executable, "-m", "cluster.cli", *args]
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, cwd=PROJECT_ROOT, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s", "command": " ".join(args)}
    wall = round(time.monotonic() - started, 1)
    for line in reversed(done.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            doc["_wall_s"] = wall
            doc["_load_avg_before"] = round(load_before, 2)
            return doc
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {done.returncode}: {' | '.join(tail)[:500]}", "command": " ".join(args)}


def profile_tree(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """py-spy over `pid` and all its children for `seconds`: the busiest functions per process."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"error": "py-spy is not installed (pip install py-spy)"}
    command = [spy, "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds))]
    command += ["--format", "raw", "--rate", "50", "--nonblocking", "--output", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if not out.exists():
        return {"error": f"py-spy: {done.stderr.strip().splitlines()[-1:] or done.returncode}"}
    return summarise_profile(out.read_text().splitlines())


_PROCESS = re.compile(r"^process \d+:\"?([^;\"]*)")


def summarise_profile(lines: Iterable[str], top: int = 6) -> dict[str, Any]:
    """Collapsed py-spy stacks → per process: share of samples, and the top leaf functions.

    A line is ``process 123:"cmdline";frame;frame;...;leaf count``.
    """
    per_process: Counter[str] = Counter()
    leaves: dict[str, Counter[str]] = {}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        head = _PROCESS.match(frames[0])
        name = _process_name(head.group(1) if head else frames[0])
        count = int(count_text)
        per_process[name] += count
        leaf = re.sub(r" \(/[^)]*/(site-packages|main)/", " (", frames[-1])
        leaves.setdefault(name, Counter())[leaf] += count
    total = sum(per_process.values()) or 1
    return {
        name: {
            "share_pct": round(100 * n / total, 1),
            "top": [f"{leaf} {round(100 * c / n, 1)}%" for leaf, c in leaves[name].most_common(top)],
        }
        for name, n in per_process.most_common()
    }


def _process_name(cmdline: str) -> str:
    match = re.search(r"ray::(\w+)", cmdline)
    if match:
        return match.group(1)
    for known in ("gcs_server", "raylet", "dashboard", "cluster.cli"):
        if known in cmdline:
            return known
    return cmdline.strip()[:40] or "?"


def run_tick(
    run: TickRun, seconds: float, profile_s: float = 0.0, workdir: Path | None = None
) -> dict[str, Any]:
    args = ["bench", "ticks", "--rate", str(run.rate), "--seconds", str(seconds)]
    args += ["--instruments", str(run.instruments), "--shards", str(run.shards), "--json"]
    if not profile_s:
        return shardline(args, timeout_s=seconds + 600)
    # Profile the middle of the measured window: start the bench, wait for its warm-up, sample.
    command = [sys.executable, "-m", "cluster.cli", *args]
    out_dir = workdir or Path(tempfile.mkdtemp(prefix="shardline-profile-"))
    stdout = out_dir / "ticks.json"
    with stdout.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL, cwd=PROJECT_ROOT)
        try:
            profile = _profile_when_warm(process, profile_s, out_dir / "profile.txt")
            process.wait(timeout=seconds + 600)
        finally:
            if process.poll() is None:
                process.kill()
    doc = _last_json(stdout.read_text())
    doc["profile"] = profile
    return doc


def _profile_when_warm(process: subprocess.Popen[bytes], seconds: float, out: Path) -> dict[str, Any]:
    """Wait until the bench's shards run (its cluster has many processes), then sample them."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            children = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            break
        if sum("StrategyShard" in _cmdline(c) for c in children) >= 1:
            time.sleep(15)  # the bench's own warm-up: shards first handle ticks, then 5 s settle
            return profile_tree(process.pid, seconds, out)
        time.sleep(1)  # polling a cluster that is starting
    return {"error": "the bench ended before its shards started"}


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.strip().startswith("{"):
            try:
                doc: dict[str, Any] = json.loads(line)
                return doc
            except ValueError:
                continue
    return {"error": "no JSON from the bench"}


# ----------------------------------------------------------------------------------- the suite


def run_suite(
    plan: SuitePlan, write_docs: bool = True, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Every part of `plan`; returns the figures (and writes the docs sections when asked)."""
    result: dict[str, Any] = {"bench": "all", "date": date.today().isoformat(), "machine": machine()}
    parts: dict[str, Any] = {}
    started = time.monotonic()
    for part in plan.parts:
        progress(f"bench all: {part} …")
        t0 = time.monotonic()
        parts[part] = _run_part(part, plan)
        progress(f"bench all: {part} done in {time.monotonic() - t0:.0f} s")
    result["parts"] = parts
    result["machine_after"] = machine()
    result["wall_s"] = round(time.monotonic() - started, 1)
    if "ticks" in parts:
        result["scaling"] = scaling_table(parts["ticks"])
    if write_docs:
        if "ticks" in parts:
            plot_ticks(parts["ticks"], PLOT)
        write_sections(result, DOCS)
    return result


def _run_part(part: str, plan: SuitePlan) -> Any:
    if part == "catalog":
        return shardline(["bench", "catalog", "--json"], plan.part_timeout_s)
    if part == "feed":
        return shardline(
            ["bench", "feed", "--rate", "100000", "--seconds", "10", "--json"], plan.part_timeout_s
        )
    if part == "ticks":
        top = max(plan.rates)
        runs = []
        for run in plan.tick_runs():
            profile = plan.profile_seconds if run == TickRun(top, CENTRE[1], CENTRE[2]) else 0.0
            doc = run_tick(run, plan.tick_seconds, profile_s=profile)
            runs.append({"run": run.__dict__, **doc})
        return runs
    if part == "orders":
        args = ["bench", "orders", "--rate", "10000/min", "--seconds", str(plan.order_seconds), "--json"]
        return shardline(args, plan.part_timeout_s)
    if part == "swap":
        return shardline(["bench", "swap", "--json"], plan.part_timeout_s)
    if part == "ui":
        return shardline(["bench", "ui", "--json"], plan.part_timeout_s)
    if part == "chaos":
        return shardline(["chaos", "--seconds", str(plan.chaos_seconds), "--json"], plan.part_timeout_s)
    if part == "deployments":
        return probe_deployments(plan.deployment_counts)
    raise ShardlineError(f"unknown part {part!r}")


def scaling_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per tick run: offered, processed, loss, p99 latency, and where CPU went."""
    rows = []
    for doc in runs:
        run = doc["run"]
        if "error" in doc:
            rows.append({**run, "error": doc["error"]})
            continue
        per_actor = doc.get("per_actor", {})
        busiest = sorted(per_actor.items(), key=lambda kv: -kv[1].get("cpu_pct", 0))[:3]
        offered = doc.get("offered_ticks_per_s", 0) or run["rate"]
        processed = doc.get("processed_ticks_per_s", 0)
        rows.append(
            {
                **run,
                "offered_per_s": offered,
                "processed_per_s": processed,
                "kept_up": bool(offered) and processed >= 0.97 * offered and doc.get("lost", 0) == 0,
                "lost": doc.get("lost", 0),
                "p99_ms": round(doc.get("latency_exchange_to_strategy_us", {}).get("p99", 0) / 1000, 2),
                "cpu_pct_total": doc.get("cpu_pct_total", 0),
                "busiest": [f"{name} {a.get('cpu_pct', 0)}%" for name, a in busiest],
                "load_avg_1m": doc.get("load_avg_1m"),
            }
        )
    return rows


def highest_sustained(rows: list[dict[str, Any]]) -> int | None:
    centre = [r for r in rows if (r.get("shards"), r.get("instruments")) == CENTRE[1:] and "error" not in r]
    kept = [r["rate"] for r in centre if r.get("kept_up")]
    return max(kept) if kept else None


def plot_ticks(runs: list[dict[str, Any]], path: Path) -> Path | None:
    """Processed rate and p99 latency against offered rate (the centre's rate sweep)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        r for r in scaling_table(runs) if "error" not in r and (r["shards"], r["instruments"]) == CENTRE[1:]
    ]
    rows.sort(key=lambda r: r["rate"])
    if not rows:
        return None
    offered = [r["offered_per_s"] / 1000 for r in rows]
    fig, left = plt.subplots(figsize=(7, 4), dpi=110)
    left.plot(offered, [r["processed_per_s"] / 1000 for r in rows], "o-", label="processed (k ticks/s)")
    left.plot(offered, offered, ":", color="grey", label="offered = processed")
    left.set_xlabel("offered rate (k ticks/s)")
    left.set_ylabel("processed (k ticks/s)")
    right = left.twinx()
    right.plot(
        offered, [r["p99_ms"] for r in rows], "s--", color="tab:red", label="p99 exchange→strategy (ms)"
    )
    right.set_ylabel("p99 latency (ms)", color="tab:red")
    right.set_yscale("log")
    lines = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(lines, labels, loc="upper left", fontsize=8)
    left.set_title(f"ticks end to end, {CENTRE[1]} shards × {CENTRE[2]} instruments")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------- docs


def write_sections(result: Mapping[str, Any], path: Path = DOCS) -> None:
    """Replace (or append) this suite's sections in `path`, leaving every other section as it is."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    for name, body in render_sections(result).items():
        text = replace_section(text, name, body)
    path.write_text(text)


def replace_section(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- bench-all:{name} -->", f"<!-- /bench-all:{name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        return head + block + tail
    return text.rstrip("\n") + "\n\n" + block + "\n"


def render_sections(result: Mapping[str, Any]) -> dict[str, str]:
    m = result.get("machine", {})
    when = (
        f"Measured {result.get('date')} by `shardline bench all` on {m.get('cores')} cores / "
        f"{m.get('ram_gib')} GiB, 1/5/15-minute load average {m.get('load_avg')} at the start "
        f"and {result.get('machine_after', {}).get('load_avg')} at the end (the machine is shared)."
    )
    sections: dict[str, str] = {}
    parts = result.get("parts", {})
    if "ticks" in parts:
        sections["scaling"] = _scaling_section(result, when)
    if "deployments" in parts:
        sections["deployments"] = _deployments_section(parts["deployments"], when)
    if isinstance(parts.get("orders"), dict) and "error" not in parts["orders"]:
        sections["orders"] = _orders_section(parts["orders"], when)
    if isinstance(parts.get("chaos"), dict) and "error" not in parts["chaos"]:
        sections["chaos"] = _chaos_section(parts["chaos"], when)
    return sections


def _scaling_section(result: Mapping[str, Any], when: str) -> str:
    rows = result.get("scaling") or scaling_table(result["parts"]["ticks"])
    top = highest_sustained(rows)
    lines = [
        "## Scaling on this machine (`shardline bench all`)",
        "",
        when,
        "",
        "Three sweeps through one centre point (50k ticks/s, 2 shards, 1000 instruments), each run",
        "its own private Ray measuring after a warm-up; the whole cube (27 runs) is not run because",
        "the sweeps already show which axis saturates.",
        "",
        "![processed rate and p99 latency against offered rate](benchmarks-ticks.png)",
        "",
        "| offered | shards | instruments | processed/s | kept up | lost | p99 ms | CPU % (all) "
        "| busiest (CPU %) | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['rate']:,} | {r['shards']} | {r['instruments']} | error: {r['error'][:80]} |||||||"
            )
            continue
        lines.append(
            f"| {r['offered_per_s']:,} | {r['shards']} | {r['instruments']} | {r['processed_per_s']:,} | "
            f"{'yes' if r['kept_up'] else 'no'} | {r['lost']} | {r['p99_ms']} | {r['cpu_pct_total']} | "
            f"{', '.join(r['busiest'])} | {r['load_avg_1m']} |"
        )
    lines += ["", f"Highest offered rate kept up with at the centre: **{top:,} ticks/s**." if top else ""]
    profiled = [d for d in result["parts"]["ticks"] if isinstance(d.get("profile"), dict)]
    for doc in profiled:
        profile = doc["profile"]
        lines += ["", f"py-spy over every process of the {TickRun(**doc['run']).label} run:", ""]
        if "error" in profile:
            lines.append(f"(profile failed: {profile['error']})")
            continue
        lines += ["| process | share of samples | top leaf functions |", "|---|---|---|"]
        for name, entry in list(profile.items())[:8]:
            lines.append(f"| {name} | {entry['share_pct']}% | {'; '.join(entry['top'][:4])} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- many deployments

SHARD_BUDGET_MB = 450  # what one more one-shard deployment is allowed to need before it is tried
RESERVE_GB = 4.0  # left free for the rest of the machine


def probe_deployments(counts: Iterable[int], instruments: int = 5, seconds: float = 10.0) -> dict[str, Any]:
    """N one-shard deployments with small universes on one private cluster, for each N that fits.

    All universes are the same `instruments` NSE equities, so every tick fans out to all N
    deployments: the router's cost per tick is measured at its worst.
    """
    rows = []
    for n in counts:
        available_gb = psutil.virtual_memory().available / 2**30
        needed_gb = n * SHARD_BUDGET_MB / 1024 + RESERVE_GB
        if available_gb < needed_gb:
            rows.append(
                {"deployments": n, "skipped": f"needs ~{needed_gb:.1f} GiB, {available_gb:.1f} available"}
            )
            continue
        try:
            rows.append(_probe_once(n, instruments, seconds))
        except Exception as err:  # one size failing (e.g. out of memory) still reports the others
            rows.append({"deployments": n, "error": f"{type(err).__name__}: {err}"[:300]})
    return {"instruments_each": instruments, "rows": rows, "extrapolated_100": extrapolate(rows, 100)}


def _probe_once(n: int, instruments: int, seconds: float) -> dict[str, Any]:
    import ray
    import yaml

    from cluster import launcher
    from cluster.config import DEFAULT_CONFIG_PATH, parse_config
    from cluster.topology import NAMESPACE, shard_name

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    with tempfile.TemporaryDirectory(prefix="shardline-deployments-") as tmp:
        data["data_dir"] = str(Path(tmp) / "data")
        data["sim"]["tick_rate"] = 2000
        data["deployments"] = [
            {
                "name": f"d{i:03d}",
                "strategy": "actors.shard.strategies.ema_cross:EMACross",
                "config": {"fast_period": 10, "slow_period": 30, "trade_size": 1},
                "universe": {"query": "NSE equities", "limit": instruments},
                "shards": 1,
            }
            for i in range(n)
        ]
        config = parse_config(data, "deployments probe")
        ray.init(
            address="local",
            num_cpus=2,
            namespace=NAMESPACE,
            resources={config.execution.pin_resource: 1.0},
            include_dashboard=False,
            log_to_driver=False,
        )
        try:
            started = time.monotonic()
            launcher.up(config, serve_terminal=False)
            start_s = time.monotonic() - started
            shards = [shard_name(f"d{i:03d}", 0) for i in range(n)]

            def stats(names: list[str]) -> dict[str, dict[str, Any]]:
                handles: dict[str, Any] = {x: ray.get_actor(x, namespace=NAMESPACE) for x in names}
                answers: list[dict[str, Any]] = ray.get(
                    [h.stats.remote() for h in handles.values()], timeout=120
                )
                return dict(zip(names, answers, strict=True))

            deadline = time.monotonic() + 300
            while not all(s.get("ticks_handled", 0) > 0 for s in stats(shards).values()):
                if time.monotonic() > deadline:
                    raise ShardlineError("shards handled no ticks within 300 s")
                time.sleep(1)  # polling shards that are warming up
            ready_s = time.monotonic() - started
            before = stats(["router", *shards])
            router = psutil.Process(int(before["router"]["pid"]))
            cpu0 = sum(router.cpu_times()[:2])
            time.sleep(seconds)  # the measured window
            after = stats(["router", *shards])
            cpu = sum(router.cpu_times()[:2]) - cpu0
            ticks_in = after["router"]["ticks_in"] - before["router"]["ticks_in"]
            ticks_out = after["router"]["ticks_out"] - before["router"]["ticks_out"]
            rss = [psutil.Process(int(after[x]["pid"])).memory_info().rss / 2**20 for x in shards]
            return {
                "deployments": n,
                "start_s": round(start_s, 1),
                "until_all_trading_s": round(ready_s, 1),
                "shard_rss_mb_mean": round(sum(rss) / len(rss), 1),
                "shard_rss_mb_total": round(sum(rss), 1),
                "ticks_in_per_s": round(ticks_in / seconds),
                "deliveries_per_s": round(ticks_out / seconds),
                "router_cpu_us_per_tick_in": round(1e6 * cpu / ticks_in, 2) if ticks_in else None,
                "router_cpu_us_per_delivery": round(1e6 * cpu / ticks_out, 2) if ticks_out else None,
                "available_gib_after": round(psutil.virtual_memory().available / 2**30, 1),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        finally:
            ray.shutdown()


def extrapolate(rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """A straight line through the measured sizes (least squares), read at `n` deployments."""
    measured = [r for r in rows if "start_s" in r]
    if len(measured) < 2:
        return {"note": "fewer than two sizes measured; nothing to extrapolate from"}
    xs = [float(r["deployments"]) for r in measured]

    def line(key: str) -> float | None:
        ys = [float(r[key]) for r in measured if r.get(key) is not None]
        if len(ys) != len(xs):
            return None
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
        return round(my + slope * (n - mx), 1)

    mean_rss = sum(r["shard_rss_mb_mean"] for r in measured) / len(measured)
    return {
        "deployments": n,
        "until_all_trading_s": line("until_all_trading_s"),
        "shard_memory_gib": round(n * mean_rss / 1024, 1),
        "router_cpu_us_per_tick_in": line("router_cpu_us_per_tick_in"),
        "fits_in_24_gib": n * mean_rss / 1024 < 24 - RESERVE_GB,
    }


def _deployments_section(doc: Mapping[str, Any], when: str) -> str:
    lines = [
        "## Many deployments on one cluster (`shardline bench all`)",
        "",
        when,
        "",
        f"N deployments of one shard each, every one trading the same {doc.get('instruments_each')} NSE "
        "equities (so each tick fans out to all N), the simulator at 2,000 ticks/s. A size is tried",
        f"only if about {SHARD_BUDGET_MB} MB per shard plus {RESERVE_GB:g} GiB stay free.",
        "",
        "| deployments | up (s) | all trading (s) | RSS per shard (MB) | ticks in/s | deliveries/s "
        "| router CPU µs per tick in | per delivery | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc.get("rows", []):
        if "start_s" not in r:
            lines.append(f"| {r['deployments']} | {r.get('skipped') or r.get('error')} ||||||||")
            continue
        lines.append(
            f"| {r['deployments']} | {r['start_s']} | {r['until_all_trading_s']} | "
            f"{r['shard_rss_mb_mean']} | {r['ticks_in_per_s']:,} | {r['deliveries_per_s']:,} | "
            f"{r['router_cpu_us_per_tick_in']} | "
            f"{r['router_cpu_us_per_delivery']} | {r['load_avg_1m']} |"
        )
    x = doc.get("extrapolated_100", {})
    if "shard_memory_gib" in x:
        fits = "fits" if x["fits_in_24_gib"] else "does **not** fit"
        lines += [
            "",
            f"Extrapolated to 100 deployments (a straight line through the sizes measured, not a "
            f"measurement): shards alone need about **{x['shard_memory_gib']} GiB**, which {fits} in "
            f"24 GiB beside the rest; all trading after about {x['until_all_trading_s']} s; the router "
            f"would spend about {x['router_cpu_us_per_tick_in']} µs of CPU per incoming tick on the "
            "fan-out. One Nautilus node per process is the floor on memory: 100 deployments need "
            "several nodes, or deployments that share a shard's process (not possible with Nautilus).",
        ]
    else:
        lines += ["", x.get("note", "")]
    return "\n".join(lines)


def _orders_section(doc: Mapping[str, Any], when: str) -> str:
    latency = doc.get("submit_to_ack_ms", {})
    lag = doc.get("schedule_lag_ms", {})
    rec = doc.get("reconciliation", {})
    return "\n".join(
        [
            "## Orders through REST under load (`shardline bench orders`)",
            "",
            when,
            "",
            f"`shardline bench orders --rate {doc.get('offered_per_min'):,}/min --seconds "
            f"{round(doc.get('window_s') or doc.get('seconds', 0))}` on a private `sim` system "
            "(the shipped config: simulator at "
            f"{doc.get('tick_rate'):,} ticks/s, the sample deployment, paper venue, one terminal user), "
            f"{doc.get('concurrency')} requests in flight, market and limit orders over "
            f"{doc.get('instruments')} instruments. Submit → acknowledgement is the POST round trip: REST "
            "edge, journal write (fsync) and the venue's answer.",
            "",
            "| offered/s | acknowledged/s | p50 ms | p95 ms | p99 ms | max ms | schedule lag p50 / p99 ms "
            "| lost | duplicated | client CPU % | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {doc.get('offered_per_s')} | {doc.get('achieved_per_s')} | {latency.get('p50')} | "
            f"{latency.get('p95')} | {latency.get('p99')} | {latency.get('max')} | {lag.get('p50')} / "
            f"{lag.get('p99')} | {doc.get('lost')} | {doc.get('duplicated')} | {doc.get('client_cpu_pct')} | "
            f"{doc.get('load_avg_1m')} |",
            "",
            f"Statuses at the end: {rec.get('statuses')}; refused by the API: "
            f"{doc.get('refused_by_api') or 'none'}; "
            f"rejects by reason: {doc.get('rejects_by_reason') or 'none'}; positions equal to the trades: "
            f"{rec.get('positions_exact')}. Schedule lag is how late orders left against the open-loop "
            "schedule: when it grows, the client and the system together could not keep the offered rate.",
            *(["", str(doc["note"])] if doc.get("note") else []),
        ]
    )


def _chaos_section(doc: Mapping[str, Any], when: str) -> str:
    verdict = doc.get("verdict", {})
    ticks = doc.get("ticks", {})
    rec = doc.get("orders", {}).get("reconciliation", {})
    lines = [
        "## Faults under load (`shardline chaos`)",
        "",
        when,
        "",
        f"`shardline chaos --seconds {round(doc.get('seconds', 0))}`: simulator at {doc.get('tick_rate'):,} "
        f"ticks/s and {doc.get('order_rate_per_s')} orders/s through REST (retried with the same client "
        "order id when refused or unanswered) while each part is killed in turn (SIGKILL; `ray.kill` for "
        "the Serve replica; every simulator socket cut). Answered: the part answers from a new process. "
        "Recovered: the counter it is measured by moves again.",
        "",
        "| fault | answered (s) | recovered (s) | measured by | note |",
        "|---|---|---|---|---|",
    ]
    for f in doc.get("faults", []):
        lines.append(
            f"| {f['fault']} | {f.get('answered_s')} | {f.get('recovered_s')} | {f.get('rate_key')} | "
            f"{f.get('detail', '')} |"
        )
    lines += [
        "",
        f"Orders: {rec.get('ordered')} offered, {rec.get('acknowledged')} acknowledged, "
        f"**{rec.get('lost')} lost, {rec.get('duplicated')} duplicated**, {verdict.get('orders_in_doubt')} "
        f"still in doubt; statuses {rec.get('statuses')}; positions equal to the trades: "
        f"{rec.get('positions_exact')}.",
        "",
        f"Ticks at the router, over {ticks.get('router_incarnations')} incarnation(s): "
        f"in {ticks.get('in'):,} = "
        f"out {ticks.get('out'):,} + conflated {ticks.get('conflated')} + dropped {ticks.get('dropped')} + "
        f"in flight at the kill {ticks.get('in_flight_at_kill')} + held at the end "
        f"{ticks.get('held_at_end')}: "
        f"balanced **{ticks.get('balanced')}**. Around it: the feeds pushed {ticks.get('pushed_by_feeds'):,} "
        f"(the difference, {ticks.get('pushed_not_counted_by_router')}, is what a killed actor did between "
        f"its last reading and the kill), the shards received {ticks.get('received_by_shards'):,}.",
        "",
        f"Verdict: {'passed' if verdict.get('passed') else 'failed'} ({verdict}).",
    ]
    return "\n".join(lines)
