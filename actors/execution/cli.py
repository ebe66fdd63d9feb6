"""`shardline bench orders`: submit → acknowledgement latency, journal included.

`--path rest` (the default) drives the whole system through the terminal's REST API
(`cluster.bench_orders_rest`); `--path engine` is the engine alone; `--path actor` (or `--ray`)
adds the execution actor on a private local Ray.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @bench_app.command("orders")
    def bench_orders(
        path: Annotated[
            Literal["rest", "engine", "actor"],
            typer.Option(
                help="rest: the whole system via REST; engine: the engine alone; actor: + the actor."
            ),
        ] = "rest",
        rate: Annotated[
            str, typer.Option(help="REST: offered orders, e.g. 10000/min or 150/s.")
        ] = "10000/min",
        seconds: Annotated[float, typer.Option(min=1, help="REST: how long orders are offered.")] = 60.0,
        concurrency: Annotated[int, typer.Option(min=1, max=1024, help="REST: requests in flight.")] = 32,
        instruments: Annotated[int, typer.Option(min=1, help="REST: instruments traded.")] = 20,
        orders: Annotated[int, typer.Option(min=1, help="engine/actor: orders, one after another.")] = 2_000,
        redis_url: Annotated[
            str | None, typer.Option(help="engine/actor: journal to Redis Streams at this URL.")
        ] = None,
        with_ray: Annotated[bool, typer.Option("--ray", help="Same as --path actor.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = True,
    ) -> None:
        """Order submit → acknowledgement (p50/p95/p99): through REST (default), the engine, or the actor."""
        if path == "rest" and not with_ray:
            from cluster.bench_orders_rest import parse_rate, run

            rest = run(parse_rate(rate), seconds, concurrency=concurrency, instruments=instruments)
            typer.echo(json.dumps(rest, indent=None if as_json else 2))
            return
        from actors.execution.bench import bench_actor, bench_engine

        result: dict[str, object] = {"bench": "orders", "engine": bench_engine(orders, redis_url)}
        if with_ray or path == "actor":
            import ray

            ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="shardline")
            try:
                result["actor"] = bench_actor(orders, redis_url)
            finally:
                ray.shutdown()
        typer.echo(json.dumps(result, indent=None if as_json else 2))
