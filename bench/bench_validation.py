"""Accuracy of model folders, or of settings of one, on validation scenes (never the test
set): the numbers a choice between them is made on.

    .venv/bin/python bench/bench_validation.py shipped OTHER_MODEL_DIR --draw 0 --draw 1
    .venv/bin/python bench/bench_validation.py shipped --set railcar_nms=0.15/0.15/3 \\
        --set candidate_nms=false --set refiner_steps=1 --set container_neighbours=0.7/2
    .venv/bin/python bench/bench_validation.py CLASS_MODEL --set classes=off \
        --set classes=0.5 --set classes=1/covered

A draw is 36 scenes (6 per GSD and renderer, 300 x 300 m; ``write_validation_scenes``
with ``first`` = 6 x draw), written once into ``--cache`` and reused. Each model is scored
as shipped and then with each ``--set`` (one at a time, not combined).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from railwatch.detect import Detector
from railwatch.detect.classify import ClassStage
from railwatch.detect.decode import RailcarRule
from railwatch.detect.neighbours import NeighbourSearch, SlotClassifier
from railwatch.evaluate import evaluate_pair, summarise
from railwatch.train.calibrate import scene_pairs, write_validation_scenes

LENGTH_KEYS = ("length_abs_m", "locomotive_m", "passenger_m")
KEYS = ("precision", "recall", "f1", "count_error", "class_accuracy", "covered_accuracy",
        "container_f1")


def draw_scenes(cache: Path, draw: int, per_gsd: int = 6) -> tuple[Path, list[str]]:
    """The folder and scene names of validation draw ``draw`` (written on first use)."""
    folder = cache / f"draw{draw}"
    names_file = folder / "names.json"
    if not names_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        names = write_validation_scenes(folder, per_gsd, first=draw * per_gsd)
        names_file.write_text(json.dumps(names))
    return folder, json.loads(names_file.read_text())


def apply_setting(det: Detector, spec: str) -> None:
    """``railcar_nms=IOU/IOMIN[/SPACING_M]``, ``candidate_nms=true|false``,
    ``refiner_steps=N``, ``refiner_length=off|all``, ``threshold=T``,
    ``container_neighbours=PROB/ROUNDS[/CHECK]|off`` or ``classes=WEIGHT[/covered]|off`` on
    a loaded detector."""
    key, _, value = spec.partition("=")
    if key == "railcar_nms":
        det.railcar_nms = RailcarRule(*map(float, value.split("/")))
    elif key == "candidate_nms":
        det.candidate_nms = value.lower() in ("1", "true", "yes")
    elif key == "refiner_length":  # all: boxes take the refiner's lengths; off: their own
        if det.refiner is None:
            raise SystemExit(f"{spec!r}: this model has no box refiner")
        det.refiner.set_length = value == "all"
    elif key == "refiner_steps":
        if det.refiner is None:
            raise SystemExit(f"{spec!r}: this model has no box refiner")
        det.refiner.steps = int(value)
    elif key == "container_neighbours":  # PROB/ROUNDS[/CHECK], or off
        if value.lower() == "off":
            det.neighbours = det.slots = None
            return
        block = dict(det.meta.get("verifier", {}).get("container_neighbours") or {})
        search = NeighbourSearch.from_meta({**block, "enabled": True})
        if search is None:
            raise SystemExit(f"{spec!r}: this model has no container slot classifier")
        prob, rounds, *check = value.split("/")
        det.neighbours = replace(search, min_prob=float(prob), rounds=int(rounds),
                                 check_prob=float(check[0]) if check else search.check_prob)
        det.slots = det.slots or SlotClassifier(det.path.with_name(search.file))
    elif key == "classes":  # WEIGHT[/covered], or off
        if value.lower() == "off":
            det.classifier = det.class_stage = None
            return
        if det.classifier is None:
            raise SystemExit(f"{spec!r}: this model has no class stage")
        weight, *cov = value.split("/")
        det.class_stage = ClassStage(float(weight), cov == ["covered"], det.classifier.path.name)
    elif key == "threshold":
        det.threshold = float(value)
    else:
        raise SystemExit(f"unknown setting {spec!r}")


def score(det: Detector, folder: Path, names: list[str]) -> dict[str, Any]:
    """The summary of ``det`` over the scenes ``names`` of ``folder``: ``KEYS``, then the
    median absolute length error of matched railcars and the median (signed) error of
    locomotives and passenger cars (``LENGTH_KEYS``, metres)."""
    s = summarise([evaluate_pair(t, p) for t, p in scene_pairs(folder, names, det)])
    ln = s.get("length_error") or {"by_class": {}}
    by = ln["by_class"]
    return {**{k: s.get(k) for k in KEYS}, "length_abs_m": ln.get("median_abs_m"),
            "locomotive_m": by.get("locomotive", {}).get("median_m"),
            "passenger_m": by.get("passenger", {}).get("median_m")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model folders, or 'shipped'")
    ap.add_argument("--draw", type=int, action="append", help="validation draw(s), default 0")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--cache", type=Path, default=Path(".bench-validation"),
                    help="where the scenes are written once (default: .bench-validation)")
    args = ap.parse_args()
    draws = args.draw or [0]
    cols = (*KEYS, *LENGTH_KEYS)
    print("| model | setting | draw | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 3) + "|")
    for draw in draws:
        folder, names = draw_scenes(args.cache, draw)
        for m in args.models:
            for spec in ["as shipped", *args.settings]:
                det = Detector(None if m == "shipped" else m)
                if spec != "as shipped":
                    apply_setting(det, spec)
                s = score(det, folder, names)
                cells = " | ".join(f"{s[k]:.4f}" if s[k] is not None else "-" for k in cols)
                print(f"| {m} | {spec} | {draw} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
