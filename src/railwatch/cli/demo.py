"""`railwatch demo`: the whole flow on the built-in Tumangang–Khasan scenario."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from railwatch.cli.options import info, progress


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command."""

    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="Output folder."),
        max_images: int = typer.Option(None, "--max-images", min=2,
                                       help="Render at most N images (a reduced demo)."),
        start: str = typer.Option(None, "--start", help="First day of the scenario (YYYY-MM-DD)."),
        end: str = typer.Option(None, "--end", help="Last day of the scenario (YYYY-MM-DD)."),
        seed: int = typer.Option(0, "--seed", help="Scenario seed."),
        no_pdf: bool = typer.Option(False, "--no-pdf", help="Skip the PDF briefs."),
    ) -> None:
        """Render the scenario, ingest it into a fresh store, analyse it, write the briefs."""
        from railwatch.cli.report import _date
        from railwatch.demo import run_demo

        t0 = time.perf_counter()
        with progress() as bar:
            tasks: dict[str, int] = {}

            def tick(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total or None)
                bar.update(tasks[stage], completed=done, total=total or None)

            def say(stage: str, msg: str) -> None:
                bar.console.print(f"[bold]{stage}[/]: {msg}", highlight=False)

            res = run_demo(out, max_images=max_images, start=_date(start, "--start"),
                           end=_date(end, "--end"), seed=seed, pdf=not no_pdf,
                           progress=tick, on_stage=say)
        for r in res.reports.values():
            typer.echo(f"\nKey findings — {r.findings.title}:")
            for s in r.findings.sentences:
                typer.echo(f"  - {s}")
            typer.echo(f"  report: {r.html}")
            if r.pdf is not None:
                typer.echo(f"  pdf:    {r.pdf}")
            elif not no_pdf:
                info(f"  [yellow]PDF skipped:[/] {r.pdf_skipped}")
        if res.missing:
            info(f"[yellow]stages not available yet:[/] {', '.join(res.missing)}")
        info(f"demo finished in {time.perf_counter() - t0:.0f} s ({res.images} images);"
             f" store: {res.store_path}")
        if not res.reports:
            raise typer.Exit(1)
