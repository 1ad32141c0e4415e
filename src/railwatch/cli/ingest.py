"""`railwatch ingest PATH...`: register GeoTIFF/COG images in the store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from railwatch.cli.options import console, info, progress, state
from railwatch.imagery import IngestResult, collect_paths, ingest
from railwatch.store import Store


def _table(result: IngestResult) -> Table:
    table = Table("status", "scene", "acquired UTC", "GSD m", "sensor", "sites (AOI %)",
                  title="ingest")
    table.add_column("file", overflow="fold", ratio=1)
    for row in result.rows:
        s = row.scene
        table.add_row(
            row.status,
            str(s.id),
            s.acquired.strftime("%Y-%m-%d %H:%M") if s.acquired else "-",
            f"{s.gsd_m:.2f}",
            s.sensor or "-",
            ", ".join(f"{k} {v:.0%}" for k, v in row.coverage.items()),
            row.path.name,
        )
    return table


def ingest_cmd(
    paths: list[Path] = typer.Argument(..., help="GeoTIFF/COG files or folders (recursive)."),
    site: str = typer.Option(None, "--site", help="Link the images to this site only."),
    datetime: str = typer.Option(
        None, "--datetime", help="Acquisition time (ISO 8601) for images without one."
    ),
) -> None:
    """Register images: metadata, footprint, GSD, datetime, sites covered. All or nothing."""
    files = collect_paths(paths)
    with Store(state.db) as store:
        if len(files) > 1:
            with progress() as bar:
                task = bar.add_task("ingest", total=len(files))
                result = ingest(files, store, site=site, datetime=datetime,
                                progress=lambda n, total, p: bar.update(task, completed=n))
        else:
            result = ingest(files, store, site=site, datetime=datetime)
    console.print(_table(result))
    for row in result.rows:
        for note in row.notes:
            info(f"{row.path.name}: {note}")
    info(f"{len(result.new)} new, {len(result.already)} already in the store ({state.db})")


def register(app: typer.Typer) -> None:
    """Add the `ingest` command."""
    app.command("ingest")(ingest_cmd)
