"""`railwatch alerts`: evaluate alert rules over the store and record the hits."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from railwatch.cli.options import console, info, state


def register(app: typer.Typer) -> None:
    """Add the ``alerts`` command."""

    @app.command("alerts")
    def alerts(
        site: str = typer.Argument(None, help="Only this site (default: every site)."),
        rules: Path = typer.Option(
            None, "--rules", help="YAML rules file (default: the built-in rules)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the alerts as JSON."),
    ) -> None:
        """Evaluate alert rules (total above baseline, unprecedented, containers first
        seen in a zone, covered share) and record new hits in the store."""
        from railwatch.analytics.alerts import run_alerts
        from railwatch.store import Store

        with Store(state.db) as store:
            hits = run_alerts(store, site, rules)
        if as_json:
            typer.echo(json.dumps([
                {"rule": a.rule, "kind": a.kind, "site": a.site,
                 "acquired": a.acquired.isoformat(), "scene_id": a.scene_id, "value": a.value,
                 "message": a.message, "new": a.new} for a in hits], indent=2,
                ensure_ascii=False))
            return
        table = Table(title="Alerts")
        for col in ("", "date", "site", "rule", "message"):
            table.add_column(col, overflow="fold")
        for a in hits:
            table.add_row("[bold red]NEW[/]" if a.new else "", str(a.acquired.date()), a.site,
                          a.rule, a.message)
        console.print(table)
        info(f"{sum(a.new for a in hits)} new alert(s), {len(hits)} in all")
