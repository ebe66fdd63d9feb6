"""The `shardline` command line. Each area registers its own commands (see COMMAND_MODULES)."""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from cluster.config import ConfigError
from cluster.errors import ShardlineError

app = typer.Typer(
    name="shardline",
    help="Hybrid algorithmic trading for Indian markets on a Ray actor cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks; each prints one JSON object with --json.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

# Modules that define a `register(app, bench_app)` function adding their commands.
COMMAND_MODULES = [
    "cluster.commands",
    "catalog.cli",
    "actors.sim.cli",
    "actors.shard.cli",
    "actors.angel.cli",
    "actors.router.cli",
    "actors.execution.cli",
    "actors.portfolio.cli",
    "serve.cli",
    "cluster.deploy_cli",
    "cluster.load_cli",
    "cluster.research_cli",
]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app, bench_app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _register_all()
    try:
        app(standalone_mode=False)
    except (ShardlineError, ConfigError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:  # click's own usage errors arrive here with standalone_mode off
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
