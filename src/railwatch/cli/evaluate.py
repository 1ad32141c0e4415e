"""`railwatch evaluate --truth DIR --pred DIR [--json]`: detection accuracy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from railwatch.cli.options import console


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def evaluate_cmd(
    truth: Path = typer.Option(..., "--truth", help="Folder of *.truth.geojson (+ manifest)."),
    pred: Path = typer.Option(..., "--pred", help="Folder of <stem>.geojson predictions."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    max_dist: float = typer.Option(4.0, "--max-dist", help="Match radius in metres."),
) -> None:
    """Precision, recall, F1, count error, class/covered accuracy, by slice."""
    from railwatch.evaluate import evaluate

    res = evaluate(truth, pred, max_dist_m=max_dist)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    o = res["overall"]
    t = Table("kind", "precision", "recall", "F1", "count error", "truth", "predicted",
              title=f"detections ({o['images']} images)")
    for kind, m in o["by_kind"].items():
        t.add_row(kind, *(_fmt(m[k]) for k in ("precision", "recall", "f1", "count_error",
                                                "truth", "predicted")))
    console.print(t)
    console.print(f"class accuracy {_fmt(o['class_accuracy'])}   covered accuracy "
                  f"{_fmt(o['covered_accuracy'])}   container F1 {_fmt(o['container_f1'])}")
    labels = o["confusion"]["labels"]
    c = Table("truth \\ predicted", *labels, title="railcar class confusion")
    for lab, row in zip(labels, o["confusion"]["matrix"], strict=True):
        c.add_row(lab, *(str(v) for v in row))
    console.print(c)
    s = Table("slice", "value", "images", "precision", "recall", "F1", "count error",
              "class acc.", title="by condition")
    for dim, by in res["slices"].items():
        for label, m in by.items():
            s.add_row(dim, label, *(_fmt(m[k]) for k in ("images", "precision", "recall", "f1",
                                                          "count_error", "class_accuracy")))
    console.print(s)
    if res["missing_predictions"]:
        console.print(f"[yellow]no predictions for {len(res['missing_predictions'])} "
                      "truth file(s)[/]")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
