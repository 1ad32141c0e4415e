"""`railwatch changes SITE`: facility changes between a site's images."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.table import Table

from railwatch.cli.options import console, info, progress, state
from railwatch.errors import InputError


def _date(value: str | None, option: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option} {value!r} is not an ISO date (YYYY-MM-DD)") from None


def register(app: typer.Typer) -> None:
    """Add the ``changes`` command."""

    @app.command("changes")
    def changes(
        site: str = typer.Argument(..., help="Site name (see `railwatch sites list`)."),
        date_from: str = typer.Option(None, "--from", help="First date (YYYY-MM-DD)."),
        date_to: str = typer.Option(None, "--to", help="Last date (YYYY-MM-DD), inclusive."),
        output: Path = typer.Option(
            None, "-o", "--output", help="Write the changes as GeoJSON (RFC 7946) here."
        ),
        persist: int = typer.Option(
            2, "--persist", min=1, help="A change must be seen in this many consecutive images."
        ),
        gsd: float = typer.Option(1.0, "--gsd", min=0.1, help="Comparison grid GSD (metres)."),
        method: str = typer.Option(
            "both", "--method", help="edges (changed outlines, by rules), structures (a "
            "learned map of where buildings stand in each image) or both."),
        every: int = typer.Option(
            0, "--every", min=0, help="Compare one image at least this many days after the "
            "last (e.g. 90: one a season; faster on long archives, wider date brackets). "
            "Default 0: every image."),
    ) -> None:
        """Facility changes (new or removed structures, tracks, cleared ground) over time."""
        from railwatch.analytics.changes import describe_change, site_changes
        from railwatch.analytics.changes.output import write_changes_geojson
        from railwatch.analytics.changes.stored import change_scenes
        from railwatch.analytics.changes.structures import MAP_ALIGNED
        from railwatch.store import Store

        start, end = _date(date_from, "--from"), _date(date_to, "--to")
        with Store(state.db) as store:
            n = len(change_scenes(store, site.strip().lower(), start, end, every))
            with progress() as bar:
                task = bar.add_task("reading images", total=n)
                result = site_changes(
                    store,
                    site,
                    start,
                    end,
                    persist=persist,
                    gsd_m=gsd,
                    every_days=every,
                    method=method,
                    on_image=lambda _p: bar.advance(task),
                )
        for im in result.skipped:
            info(f"[yellow]skipped[/] {im.path}: {im.skipped}")
        shifts = [im.alignment for im in result.used if im.alignment is not None]
        if shifts:
            worst = max(a.residual_px for a in shifts)
            info(f"{len(result.used)} images aligned; worst residual {worst:.2f} px")
        by_maps = [Path(im.path).name for im in result.used
                   if im.alignment and im.alignment.via == MAP_ALIGNED]
        if by_maps:
            info("aligned by their structure maps (snow hides their ground; used by the maps "
                 f"only): {', '.join(by_maps)}")
        if output is not None:
            write_changes_geojson(result, output)
            info(f"{len(result.changes)} changes written to {output}")
        table = Table(title=f"Facility changes at {result.site} (persist {persist})")
        for col in ("id", "kind", "area m²", "zone", "between", "score"):
            table.add_column(col, justify="right" if col in ("id", "area m²", "score") else "left")
        for c in result.changes:
            table.add_row(
                str(c.id),
                c.kind,
                f"{c.area_m2:,.0f}",
                c.zone or "",
                f"{c.last_absent.date()} – {c.first_seen.date()}",
                f"{c.score:.2f}",
            )
        console.print(table)
        for c in result.changes:
            console.print(f"  {c.id}. {describe_change(c)}", highlight=False)
