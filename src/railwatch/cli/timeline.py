"""`railwatch timeline`: a site's counts with baselines, flags and onsets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from railwatch.cli.options import console, info, state


def _fmt(v: float | None, digits: int = 0) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def register(app: typer.Typer) -> None:
    """Add the ``timeline`` command."""

    @app.command("timeline")
    def timeline(
        site: str = typer.Argument(
            None, help="Site name, or 'crossing' / 'tumangang+khasan' for the combined series."
        ),
        from_csv: Path = typer.Option(
            None, "--from-csv",
            help="Analyze a count table (site,date,total,...) instead of the store.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the JSON contract."),
        events: Path = typer.Option(
            None, "--events", help="Events CSV (date,name); default: the site registry."
        ),
        plot: Path = typer.Option(None, "--plot", help="Also draw the timeline (.png or .svg)."),
        window_years: float = typer.Option(
            5.0, "--window-years", min=0.1, help="Trailing baseline window in years."
        ),
        reference: str = typer.Option(
            None, "--reference", help="Named reference period NAME:START..END "
            "(e.g. pre-covid:2018-01-01..2020-01-31)."
        ),
        pair_days: int = typer.Option(
            3, "--pair-days", min=0, help="Crossing: pair the sites' images up to N days apart."
        ),
    ) -> None:
        """A site's observations with baselines, 'unprecedented' flags and onsets."""
        from railwatch.analytics.timeline import Reference, build_timeline

        ref = Reference.parse(reference) if reference else None
        if from_csv is not None:
            result = build_timeline(site, csv_path=from_csv, events_path=events,
                                    window_years=window_years, reference=ref,
                                    tolerance_days=pair_days)
        else:
            from railwatch.store import Store

            with Store(state.db) as store:
                result = build_timeline(site, store=store, events_path=events,
                                        window_years=window_years, reference=ref,
                                        tolerance_days=pair_days)
        if plot is not None:
            from railwatch.analytics.plot import plot_timeline

            plot_timeline(result, plot)
            info(f"plot written to {plot}")
        if as_json:
            typer.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=str))
            return
        s, b = result.series, result.base
        table = Table(title=f"Timeline (baseline: previous {window_years:g} years)")
        for col in ("site", "date", "total", "range", "baseline max", "z", "note"):
            table.add_column(col, justify="right" if col in ("total", "z") else "left",
                             overflow="fold", min_width=24 if col == "note" else None)
        for i in range(len(s)):
            note = []
            if not b.complete[i]:
                note.append("[yellow]partial: lower bound[/]")
            if b.unprecedented[i]:
                note.append("[bold red]UNPRECEDENTED[/]")
            if b.highest_since[i] is not None and b.complete[i]:
                note.append(f"highest since {b.highest_since[i]}")
            table.add_row(
                str(s.site[i]), str(s.date[i]), str(int(s.total[i])),
                f"{_fmt(b.count_low[i])}–{_fmt(b.count_high[i])}", _fmt(b.baseline_max[i]),
                _fmt(b.zscore[i], 1), ", ".join(note),
            )
        console.print(table)
        for line in result.findings():
            console.print(f"• {line}", highlight=False)
