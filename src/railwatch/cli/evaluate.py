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


def _with_ci(m: dict[str, Any], key: str) -> str:
    """``0.916 (0.89-0.94)`` when the summary carries a bootstrap interval."""
    from railwatch.evaluate import interval_text

    ci = interval_text(m, key)
    return _fmt(m.get(key)) + (f" ({ci})" if ci else "")


def evaluate_cmd(
    truth: Path = typer.Option(..., "--truth", help="Folder of *.truth.geojson (+ manifest)."),
    pred: Path = typer.Option(..., "--pred", help="Folder of <stem>.geojson predictions."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    max_dist: float = typer.Option(4.0, "--max-dist", help="Match radius in metres."),
    ci: int = typer.Option(1000, "--ci", min=0,
                           help="Bootstrap resamples of the images for 95 % intervals "
                                "(0: none)."),
) -> None:
    """Precision, recall, F1, count error, class/covered accuracy, by slice, with 95 %
    bootstrap intervals over the images."""
    from railwatch.evaluate import error_lines, evaluate, interval_text

    res = evaluate(truth, pred, max_dist_m=max_dist, bootstrap=ci)
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
    console.print(f"railcar F1 {_with_ci(o, 'f1')}   count error {_with_ci(o, 'count_error')}")
    console.print(f"class accuracy {_with_ci(o, 'class_accuracy')}   covered accuracy "
                  f"{_with_ci(o, 'covered_accuracy')}   container F1 "
                  f"{_with_ci(o, 'container_f1')}")
    for line in error_lines(o["errors"]):
        console.print(line)
    if ci:
        console.print(f"(95 % intervals from {ci} bootstrap resamples of the "
                      f"{o['images']} images)")
    labels = o["confusion"]["labels"]
    c = Table("truth \\ predicted", *labels, title="railcar class confusion")
    for lab, row in zip(labels, o["confusion"]["matrix"], strict=True):
        c.add_row(lab, *(str(v) for v in row))
    console.print(c)
    if o.get("class_reliability"):
        r = Table("class score", "cars", "share", "mean score", "class accuracy",
                  title="is the class score right? (matched railcars)")
        for b in o["class_reliability"]:
            r.add_row(f"{b['from']:.1f}-{b['to']:.1f}", str(b["cars"]), _fmt(b["share"]),
                      _fmt(b["mean_score"]), _fmt(b["accuracy"]))
        console.print(r)
    if o.get("length_error"):
        ln = o["length_error"]
        g = Table("true class", "cars", "median error (m)", "median |error| (m)",
                  title="railcar length (predicted minus true, matched railcars)")
        for lab, m in [("all", ln), *ln["by_class"].items()]:
            g.add_row(lab, str(m["cars"]), f"{m['median_m']:+.1f}", f"{m['median_abs_m']:.1f}")
        console.print(g)
    s = Table("slice", title="by condition")
    s.add_column("value", no_wrap=True)
    for head in ("images", "prec.", "recall", "F1"):
        s.add_column(head)
    s.add_column("F1 95 %", no_wrap=True)
    s.add_column("count err.")
    s.add_column("class acc.")
    for dim, by in res["slices"].items():
        for label, m in by.items():
            s.add_row(dim, label, *(_fmt(m[k]) for k in ("images", "precision", "recall", "f1")),
                      interval_text(m, "f1") or "-",
                      _fmt(m["count_error"]), _fmt(m["class_accuracy"]))
    console.print(s)
    if res["missing_predictions"]:
        console.print(f"[yellow]no predictions for {len(res['missing_predictions'])} "
                      "truth file(s)[/]")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
