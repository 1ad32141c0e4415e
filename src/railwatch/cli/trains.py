"""`railwatch trains`: follow trains between two sites by the order and colours of cars."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer
from rich.table import Table

from railwatch.cli.options import console, info, progress, state
from railwatch.errors import InputError


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option}: expected a date YYYY-MM-DD, got {value!r}") from None


def register(app: typer.Typer) -> None:
    """Add the ``trains`` command."""

    @app.command("trains")
    def trains(
        site_a: str = typer.Argument(None, help="First site (e.g. khasan)."),
        site_b: str = typer.Argument(None, help="Second site (e.g. tumangang)."),
        start: str = typer.Option(None, "--from", help="First date (YYYY-MM-DD)."),
        end: str = typer.Option(None, "--to", help="Last date (YYYY-MM-DD), inclusive."),
        max_days: float = typer.Option(
            3.0, "--max-days", min=0.0, help="Images at the two sites at most N days apart."
        ),
        geojson: list[Path] = typer.Option(
            None, "--geojson", help="Two detections files instead of the store (give twice)."
        ),
        min_similarity: float = typer.Option(
            0.75, "--min-similarity", min=0.0, max=1.0, help="Drop weaker matches."
        ),
        alpha: float = typer.Option(
            0.05, "--alpha", min=0.0, max=1.0,
            help="p-value a match must reach (store: others are dropped; files: flagged).",
        ),
        max_gap_m: float = typer.Option(
            4.0, "--max-gap-m", min=0.0, help="Largest gap between coupled cars (metres)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the matches as JSON."),
    ) -> None:
        """Follow trains from one site to the other by the order and colours of their cars."""
        from railwatch.analytics.trains import follow_files, follow_trains

        if geojson:
            if len(geojson) != 2 or site_a or site_b:
                raise InputError("--geojson: give exactly two files (--geojson A --geojson B) "
                                 "and no site names")
            for p in geojson:
                if not p.is_file():
                    raise InputError("no such detections file", p)
            found = follow_files(geojson[0], geojson[1], max_gap_m=max_gap_m,
                                 min_similarity=min_similarity, alpha=alpha)
        else:
            if not site_a or not site_b:
                raise InputError("give two sites (railwatch trains SITE_A SITE_B) "
                                 "or two files (--geojson A --geojson B)")
            from railwatch.sites import get_site
            from railwatch.store import Store

            first, last = _date(start, "--from"), _date(end, "--to")
            with Store(state.db) as store, progress() as bar:
                a, b = get_site(site_a, store).name, get_site(site_b, store).name
                task = bar.add_task("images", total=None)

                def tick(done: int, total: int, name: str) -> None:
                    bar.update(task, completed=done, total=total, description=name)

                found = follow_trains(store, a, b, first, last, max_days,
                                      max_gap_m=max_gap_m, min_similarity=min_similarity,
                                      alpha=alpha, progress=tick)
        if as_json:
            typer.echo(json.dumps([s.to_json() for s in found], indent=2, ensure_ascii=False))
            return
        table = Table(title="Trains followed")
        for col in ("seen", "then", "cars", "similarity", "p", "locomotive", "reversed"):
            table.add_column(col, overflow="fold")
        for s in found:
            m = s.match
            table.add_row(m.a.label(), m.b.label(), f"{m.a.n_cars} / {m.b.n_cars}",
                          f"{m.similarity:.2f}", f"{m.p_value:.3g}",
                          m.locomotive_change or "", "yes" if m.reversed else "")
        if found:
            console.print(table)
        for s in found:
            console.print(f"- {s.sentence}", highlight=False)
        info(f"{len(found)} train(s) followed")
