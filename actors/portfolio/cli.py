"""`shardline bench portfolio`: the paper portfolio's order acknowledgement, quote rate and replay."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @bench_app.command("portfolio")
    def bench_portfolio(
        orders: Annotated[int, typer.Option(min=1, help="Orders to submit, one after another.")] = 2_000,
        brackets: Annotated[int, typer.Option(min=0, help="Live brackets while quotes are timed.")] = 100,
        gtts: Annotated[int, typer.Option(min=0, help="Active GTT rules while quotes are timed.")] = 100,
        with_ray: Annotated[
            bool, typer.Option("--ray", help="Also through the portfolio actor on a private local Ray.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = True,
    ) -> None:
        """Paper fills: submit → acknowledgement (p50/p95/p99), quotes per second, journal replay."""
        from actors.portfolio.bench import bench_actor, bench_plain

        result: dict[str, object] = {
            "bench": "portfolio",
            "plain": bench_plain(orders, brackets=brackets, gtts=gtts),
        }
        if with_ray:
            import ray

            ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="shardline")
            try:
                result["actor"] = bench_actor(orders)
            finally:
                ray.shutdown()
        typer.echo(json.dumps(result, indent=None if as_json else 2))
