"""Shared CLI state and helpers: the global options, console, progress, error exit."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from railwatch.config import default_db_path

console = Console()
err_console = Console(stderr=True)


@dataclass
class State:
    """Global options, set once by the top-level callback."""

    db: Path = field(default_factory=default_db_path)
    verbose: bool = False
    quiet: bool = False


state = State()


def configure(db: Path | None, verbose: bool, quiet: bool) -> None:
    state.db = Path(db) if db else default_db_path()
    state.verbose = verbose
    state.quiet = quiet
    level = logging.DEBUG if verbose else (logging.ERROR if quiet else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def info(message: str) -> None:
    """Print unless --quiet (to stderr, so stdout stays clean for data)."""
    if not state.quiet:
        err_console.print(message)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return an Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def progress() -> Progress:
    """A progress bar on stderr; silent under --quiet."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=state.quiet,
        transient=False,
    )
