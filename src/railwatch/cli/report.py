"""`railwatch report SITE --out DIR`: the analyst's brief (HTML, PDF, findings, exports)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from railwatch.cli.options import info, state


def _date(value: str | None, flag: str) -> dt.date | None:
    from railwatch.errors import InputError

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{flag} {value!r} is not a date (YYYY-MM-DD)") from None


def register(app: typer.Typer) -> None:
    """Add the ``report`` command."""

    @app.command("report")
    def report(
        site: str = typer.Argument(..., help="Site name, or 'crossing' for Tumangang + Khasan."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        start: str = typer.Option(None, "--from", help="First day (YYYY-MM-DD)."),
        end: str = typer.Option(None, "--to", help="Last day (YYYY-MM-DD)."),
        as_of: str = typer.Option(
            None, "--as-of", help="Write it as of this day: only earlier images."
        ),
        no_pdf: bool = typer.Option(False, "--no-pdf", help="Skip the PDF (HTML only)."),
    ) -> None:
        """Write the brief: DIR/report.html, report.pdf, findings.json and exports."""
        from railwatch.report import build_report
        from railwatch.store import Store

        with Store(state.db) as store:
            res = build_report(
                store, site, out, _date(start, "--from"), _date(end, "--to"),
                _date(as_of, "--as-of"), pdf=not no_pdf, progress=lambda s: info(f"report: {s}"),
            )
        for s in res.findings.sentences:
            typer.echo(f"- {s}")
        for n in res.notes:
            info(f"[yellow]note:[/] {n}")
        if res.pdf is None and not no_pdf:
            info(f"[yellow]PDF skipped:[/] {res.pdf_skipped}")
        typer.echo(f"report: {res.html}")
        if res.pdf is not None:
            typer.echo(f"pdf: {res.pdf}")
