"""`shardline submit | swap | deployments ... | bench swap`: strategy deployments from the terminal.

`submit` and `swap --to FILE` go through the Ray Jobs API (`--address` is the dashboard URL, as
for `ray job submit`): the file's directory travels as the job's working_dir. The other commands
talk to the running cluster's "deployments" actor (`--address` is the Ray address, as for
`shardline status`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cluster.errors import ShardlineError

deployments_app = typer.Typer(
    help="Running strategy deployments: list, show, scale, stop, logs.", no_args_is_help=True
)

RayAddress = Annotated[
    str | None, typer.Option("--address", help="Ray cluster address (default: RAY_ADDRESS or the local one).")
]
JobsAddress = Annotated[
    str | None,
    typer.Option(
        "--address", help="Ray dashboard / Jobs API URL (default: RAY_API_SERVER_ADDRESS or :8265)."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _call(address: str | None, method: str, *args: Any, **kwargs: Any) -> Any:
    from cluster import jobs

    jobs.connect(address)
    return jobs.call(method, *args, **kwargs)


def _echo_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, default=str))


def _run_job(client: Any, job_id: str, wait: bool) -> None:
    from cluster import jobs

    typer.echo(f"submitted job {job_id}")
    if not wait:
        typer.echo(f"follow it with `ray job logs {job_id} --follow`")
        return
    status, logs = jobs.wait_for_job(client, job_id)
    results = [line for line in logs.splitlines() if line.startswith(jobs.RESULT_MARKER)]
    if status != "SUCCEEDED" or not results:
        errors = [line for line in logs.splitlines() if line.startswith("error: ")]
        reason = errors[-1][len("error: ") :] if errors else f"see `ray job logs {job_id}`"
        raise ShardlineError(f"job {job_id} {status.lower()}: {reason}")
    _echo_json(json.loads(results[-1][len(jobs.RESULT_MARKER) :]))


# ----------------------------------------------------------------------------------- jobs


def submit(
    strategy_file: Annotated[Path, typer.Argument(help="The strategy's Python file.")],
    deployment: Annotated[Path, typer.Option("--deployment", "-d", help="The deployment spec YAML.")],
    address: JobsAddress = None,
    python: Annotated[
        str | None,
        typer.Option(help="The interpreter on the cluster (default: this one for a local cluster)."),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the deployment to run and print it.")] = True,
) -> None:
    """Start a strategy deployment as a Ray job (the file's directory is the job's working_dir)."""
    from cluster import jobs

    client, job_id = jobs.submit_job(strategy_file, spec_path=deployment, address=address, python=python)
    _run_job(client, job_id, wait)


def swap(
    name: Annotated[str, typer.Argument(help="The running deployment.")],
    to: Annotated[
        Path | None, typer.Option("--to", help="The new version's Python file (shipped as a Ray job).")
    ] = None,
    deployment: Annotated[
        Path | None,
        typer.Option("--deployment", "-d", help="The new version's spec (default: the running one)."),
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="Or: a strategy already on the cluster, 'module.path:ClassName'.")
    ] = None,
    config: Annotated[str | None, typer.Option(help="With --strategy: its config as JSON.")] = None,
    keep_orders: Annotated[
        bool, typer.Option("--keep-orders", help="Leave the old version's working orders in the book.")
    ] = False,
    address: Annotated[
        str | None, typer.Option("--address", help="Jobs API URL with --to; Ray address with --strategy.")
    ] = None,
    python: Annotated[str | None, typer.Option(help="The interpreter on the cluster (with --to).")] = None,
) -> None:
    """Hot-swap a running deployment to a new strategy version; every tick reaches exactly one version."""
    from cluster import jobs

    if (to is None) == (strategy is None):
        raise ShardlineError("give the new version either as --to FILE or as --strategy module:Class")
    if to is not None:
        client, job_id = jobs.submit_job(
            to, spec_path=deployment, swap=name, address=address, python=python, keep_orders=keep_orders
        )
        _run_job(client, job_id, wait=True)
        return
    try:
        parsed = json.loads(config) if config else None
    except json.JSONDecodeError as err:
        raise ShardlineError(f"--config is not valid JSON: {err}") from None
    if parsed is not None and not isinstance(parsed, dict):
        raise ShardlineError("--config must be a JSON object")
    spec = None
    if deployment is not None:
        from cluster.deployments import load_deployment_spec

        spec = load_deployment_spec(deployment).model_dump(mode="json", exclude_none=True)
    _echo_json(
        _call(
            address,
            "swap",
            name,
            spec=spec,
            strategy=strategy,
            config=parsed,
            cancel_old_orders=not keep_orders,
        )
    )


# ----------------------------------------------------------------------------------- deployments


@deployments_app.command("list")
def list_deployments(address: RayAddress = None, as_json: AsJson = False) -> None:
    """Every deployment: state, strategy, shards, ticks handled, orders, P&L."""
    docs = _call(address, "summaries")
    if as_json:
        _echo_json(docs)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "name", "state", "strategy", "gen", "shards", "instruments", "ticks", "orders", "P&L ₹", "note"
    )
    for d in docs:
        table.add_row(
            d["name"], d["state"], d["strategy"], str(d["generation"]), str(d["shards"]),
            str(d["instruments"]), f"{d['ticks_handled']:,}", str(d["orders"]["total"]),
            d.get("pnl", {}).get("pnl", ""), d["error"] or d["operation"],
        )  # fmt: skip
    Console().print(table)


@deployments_app.command()
def show(name: str, address: RayAddress = None) -> None:
    """One deployment in full (JSON): its shards, router counts, orders, P&L and history."""
    _echo_json(_call(address, "show", name))


@deployments_app.command()
def start(name: str, address: RayAddress = None) -> None:
    """Start a deployment of the cluster's config again (after `stop`)."""
    _echo_json(_call(address, "start_deployment", name))


@deployments_app.command()
def scale(
    name: str,
    shards: Annotated[int, typer.Argument(min=1, max=64, help="The new shard count.")],
    address: RayAddress = None,
) -> None:
    """Rescale a deployment to N shards; the ring moves about 1/N of the instruments."""
    _echo_json(_call(address, "scale", name, shards))


@deployments_app.command()
def stop(name: str, address: RayAddress = None) -> None:
    """Stop a deployment: routing ends, shards stop, its working orders are cancelled."""
    _echo_json(_call(address, "stop", name))


@deployments_app.command()
def logs(
    name: str,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, max=10_000)] = 200,
    address: RayAddress = None,
) -> None:
    """The deployment's history, its shards' errors and their recent log lines."""
    for line in _call(address, "logs", name, lines):
        typer.echo(line)


# ----------------------------------------------------------------------------------- bench


def bench_swap(
    as_json: AsJson = False,
    rate: Annotated[int, typer.Option(help="Ticks per second pushed through the router.")] = 5_000,
    instruments: Annotated[int, typer.Option(help="Instruments in the universe.")] = 20,
    shards: Annotated[int, typer.Option(help="Shards of the deployment.")] = 2,
    swaps: Annotated[int, typer.Option(help="Hot swaps in a row.")] = 3,
    warm_spares: Annotated[
        bool, typer.Option(help="Keep spare shard processes started (the fast path) or start new ones.")
    ] = True,
) -> None:
    """Hot swap under a tick stream: time to the new version handling ticks; ticks lost/duplicated."""

    doc = run_swap_bench(
        rate=rate, instruments=instruments, shards=shards, swaps=swaps, warm_spares=warm_spares
    )
    if as_json:
        typer.echo(json.dumps(doc, default=str))
        return
    _echo_json(doc)


def run_swap_bench(
    rate: int, instruments: int, shards: int, swaps: int, warm_spares: bool = True
) -> dict[str, Any]:
    """A private local Ray: router, execution (paper) and a `SequenceCheck` deployment fed at `rate`.

    Each hot swap is timed from the call to every new shard having handled a tick; at the end the
    shards' sequence runs are audited against what was pushed, and the orders the shards sent
    against the execution actor's book.
    """
    import concurrent.futures
    import statistics
    import tempfile
    import threading
    import time

    import ray

    from actors.execution.actor import start_execution
    from actors.router.actor import start_router
    from actors.shard.universe import ShardInstrument
    from catalog.sources import load_default_catalog
    from cluster import jobs
    from cluster.config import parse_config
    from cluster.swap import TickStream, audit_sequences
    from cluster.topology import NAMESPACE

    if ray.is_initialized():
        raise ShardlineError("bench swap starts its own local Ray; run it outside a Ray driver")
    name = "bench-swap"
    with tempfile.TemporaryDirectory(prefix="shardline-bench-swap-") as tmp:
        config = parse_config({"data_dir": tmp, "catalog": {"synth_count": 2000}})
        ray.init(
            address="local",
            num_cpus=2,
            namespace=NAMESPACE,
            resources={config.execution.pin_resource: 1.0},
            include_dashboard=False,
            object_store_memory=256 * 1024 * 1024,
            log_to_driver=False,
        )
        try:
            router = start_router(config)
            execution = start_execution(config, options={"num_cpus": 0}, venue="local")
            ray.get([router.stats.remote(), execution.stats.remote()])
            jobs.start_deployments_actor(config)
            catalog = load_default_catalog(config)
            universe = [ShardInstrument.from_catalog(i) for i in catalog.select("NSE equities", instruments)]
            ray.get(execution.update_marks.remote({i.key: 100_000 for i in universe}))
            spec = {
                "name": name,
                "strategy": "cluster.swap:SequenceCheck",
                "config": {"order_every": 500},
                "universe": {"instruments": [i.key for i in universe]},
                "shards": shards,
                "warm_spares": warm_spares,
            }
            jobs.call("start", spec)
            if warm_spares:
                _wait_spares_ready(name, shards)
            feeder = TickStream(lambda ticks: ray.get(router.push.remote(ticks)), universe, rate)
            thread = threading.Thread(target=feeder.run, daemon=True)
            thread.start()
            try:
                feeder.wait_for(rate)  # a second of flow before the first swap
                results = []
                orders_sent = 0
                for k in range(swaps):
                    # The new version's actor names are known before the call (generation k + 1):
                    # watch them from now on, so the time is not the call's (which also retires).
                    new = [f"shard-{name}.{k + 1}-{i}" for i in range(shards)]
                    watch = concurrent.futures.ThreadPoolExecutor(1)
                    began = time.perf_counter()
                    handled = watch.submit(_wait_new_version_handling, new, feeder)
                    report = jobs.call(
                        "swap",
                        name,
                        strategy="cluster.swap:SequenceCheck",
                        config={"order_every": 500 + k + 1},
                    )
                    handled_at = handled.result()
                    watch.shutdown()
                    if report["shards"] != new:
                        raise ShardlineError(f"swap {k + 1} started {report['shards']}, not {new}")
                    orders_sent += int(report["retired"]["orders_sent"])
                    results.append(
                        {
                            "swap_s": round(handled_at - began, 3),
                            "warm_spares": report["warm_spares"],
                            "paused_ms": report["timings_ms"]["paused"],
                            "warm_up_ms": report["timings_ms"]["warm_up"],
                            "ticks_held_at_switch": report["ticks_held_at_switch"],
                            "old_orders_in_execution": report["retired"]["orders_in_execution"],
                            "old_orders_sent": report["retired"]["orders_sent"],
                        }
                    )
                    if warm_spares:
                        _wait_spares_ready(name, shards)
                    feeder.wait_for(rate)
            finally:
                feeder.stop()
                thread.join()
            _wait_drained(name)
            current = jobs.call("show", name)["shard_detail"]
            handles = [ray.get_actor(s["name"], namespace=NAMESPACE) for s in current]
            ray.get([h.drain.remote() for h in handles])
            states: list[dict[str, bytes]] = ray.get([h.save_state.remote() for h in handles])
            stats: list[dict[str, Any]] = ray.get([h.stats.remote() for h in handles])
            orders_sent += sum(int(s["orders_sent"]) for s in stats)
            book = ray.get(execution.orders.remote(name))
            audit = audit_sequences(states, feeder.last_seq_by_instrument())
            jobs.call("stop", name)
        finally:
            ray.shutdown()
    swap_times = [r["swap_s"] for r in results]
    paused = [r["paused_ms"] for r in results]
    return {
        "bench": "swap",
        "rate": rate,
        "instruments": instruments,
        "shards": shards,
        "warm_spares": warm_spares,
        "swaps": results,
        "swap_s_median": round(statistics.median(swap_times), 3) if swap_times else None,
        "swap_s_max": max(swap_times, default=None),
        "paused_ms_median": round(statistics.median(paused), 1) if paused else None,
        "paused_ms_max": max(paused, default=None),
        "ticks_sent": feeder.sent,
        "ticks_seen": audit.seen,
        "lost": audit.lost,
        "duplicated": audit.duplicated,
        "orders_sent_by_shards": orders_sent,
        "orders_in_execution": len(book),
        "orders_distinct_ids": len({o.client_order_id for o in book}),
        "cpus": 2,
    }


def _wait_new_version_handling(shards: list[str], feeder: Any, timeout_s: float = 60.0) -> float:
    """When every shard in `shards` has handled a tick (perf_counter seconds)."""
    import time

    import ray

    from cluster.topology import NAMESPACE

    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        try:  # not yet there (no spares), or a spare not yet launched (no counters)
            handles = [ray.get_actor(n, namespace=NAMESPACE) for n in shards]
            stats: list[dict[str, Any]] = ray.get([h.stats.remote() for h in handles], timeout=5)
        except (ValueError, ray.exceptions.RayError):
            stats = []
        if stats and all(int(s.get("rows_handled", 0)) > 0 for s in stats):
            return time.perf_counter()
        time.sleep(0.002)  # polling the new shards' counters
    raise ShardlineError(
        f"the new version did not handle ticks within {timeout_s:.0f} s (sent {feeder.sent})"
    )


def _wait_spares_ready(name: str, shards: int, timeout_s: float = 120.0) -> None:
    """Until the deployment's spare processes have started (a swap right after one would wait)."""
    import time

    from cluster import jobs

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if jobs.call("show", name)["spares"]["ready"] >= shards:
            return
        time.sleep(0.1)  # polling the spares until they answer
    raise ShardlineError(f"{name}: the spares did not start within {timeout_s:.0f} s")


def _wait_drained(name: str, timeout_s: float = 60.0) -> None:
    import time

    from cluster import jobs

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        router = jobs.call("show", name).get("router") or {}
        if not router.get("buffered") and not router.get("in_flight"):
            return
        time.sleep(0.05)  # polling the router until the shards took every tick
    raise ShardlineError(f"{name}: the router still holds ticks after {timeout_s:.0f} s")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(swap)
    app.add_typer(deployments_app, name="deployments")
    bench_app.command("swap")(bench_swap)
