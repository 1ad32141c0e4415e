"""`railwatch analyze [--site NAME]`: detect (and observe) every unprocessed ingested image."""

from __future__ import annotations

import typer

from railwatch.cli.options import info, progress, state


def analyze_cmd(
    site: str = typer.Option(None, "--site", help="Only images of this site."),
) -> None:
    """Detect every ingested image not yet processed; store detections and observations."""
    from railwatch.detect.analyze import analyze
    from railwatch.store import Store

    with Store(state.db) as store, progress() as bar:
        task = bar.add_task("analyze", total=None)

        def cb(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=f"analyze {name}")

        summary = analyze(store, site=site, progress=cb)
    info(f"{summary['processed']} image(s) analysed, {summary['railcars']} railcars found"
         + (f", {len(summary['skipped'])} skipped" if summary["skipped"] else ""))
    for s in summary["skipped"]:
        info(f"[yellow]skipped:[/] {s['reason']}")


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze_cmd)
