"""`railwatch` entry point: global options, then one module per command group."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer
from typer.core import TyperGroup

from railwatch import __version__
from railwatch.cli.options import configure, fail
from railwatch.errors import RailwatchError


class _Group(TyperGroup):
    """Turns a RailwatchError from any command into one red line and a non-zero exit."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except RailwatchError as exc:
            raise fail(str(exc), exc.exit_code) from None


app = typer.Typer(
    cls=_Group,
    name="railwatch",
    help="Find, count and classify freight railcars in satellite imagery of rail sites.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app)`; add a line here for a new command group.
COMMAND_MODULES: tuple[str, ...] = (
    "railwatch.cli.sites",
    "railwatch.cli.ingest",
    "railwatch.cli.report",
    "railwatch.cli.demo",
    "railwatch.cli.timeline",
    "railwatch.cli.alerts",
    "railwatch.cli.changes",
    "railwatch.cli.simulate",
    "railwatch.cli.detect",
    "railwatch.cli.analyze",
    "railwatch.cli.evaluate",
    "railwatch.cli.train",
    "railwatch.cli.trains",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"railwatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    db: Path = typer.Option(
        None, "--db", envvar="RAILWATCH_DB", help="SQLite store path (default: user data dir)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More log output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and results."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    configure(db, verbose, quiet)


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Run the CLI (console script and ``python -m railwatch``)."""
    app()
