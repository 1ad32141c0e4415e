"""Choose the detector's score threshold on fresh validation scenes (not the test set).

Validation scenes come from both renderers at 0.3/0.5/0.8 m with seeds 600000+ (training
never uses them; the benchmark test set uses 700000+). The threshold maximising the
mean of railcar F1 and container F1 is written to ``model.json`` as ``score_threshold``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from railwatch.detect.decode import RailcarRule
from railwatch.detect.model import Detector
from railwatch.detect.pipeline import detect
from railwatch.evaluate import evaluate_pair, summarise
from railwatch.geojson import from_geojson
from railwatch.train.testsets import write_own_scene, write_sim_scene

THRESHOLDS = tuple(np.round(np.arange(0.15, 0.66, 0.05), 2))


def write_validation_scenes(folder: Path, per_gsd: int = 2, size_m: float = 300.0,
                            first: int = 0) -> list[str]:
    """Write fresh validation scenes of both renderers at 0.3/0.5/0.8 m; their names.

    Scene ``k`` of a GSD has seed 600000 + 100 * (GSD index) + k, for k from ``first`` to
    ``first + per_gsd - 1``: ``first`` = 6 with ``per_gsd`` = 6 is a second draw that shares
    no scene with the first six (a choice made on one draw can be checked on the other).
    """
    names = []
    for gi, gsd in enumerate((0.3, 0.5, 0.8)):
        for k in range(first, first + per_gsd):
            seed = 600000 + 100 * gi + k
            for writer, tag in ((write_own_scene, "own"), (write_sim_scene, "sim")):
                name = f"{tag}_{gsd:g}_{k}"
                writer(folder, name, seed, round(size_m / gsd), gsd)
                names.append(name)
    return names


def scene_pairs(folder: Path, names: list[str], det: Detector) -> list[tuple[Any, Any]]:
    """(truth, prediction) for the scenes ``names`` in ``folder``."""
    return [(from_geojson(folder / f"{n}.truth.geojson"),
             detect(folder / f"{n}.tif", det).to_crs(4326)) for n in names]


def validation_pairs(det: Detector, per_gsd: int = 2, size_m: float = 300.0,
                     ) -> list[tuple[Any, Any]]:
    """(truth, prediction) for fresh validation scenes of both renderers at 0.3/0.5/0.8 m."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        return scene_pairs(d, write_validation_scenes(d, per_gsd, size_m), det)


def _objective(s: dict[str, Any]) -> float:
    return (s["f1"] + s["container_f1"]) / 2


def _store(model_path: Path, **values: Any) -> None:
    meta_path = (model_path if model_path.is_dir() else model_path.parent) / "model.json"
    meta = json.loads(meta_path.read_text())
    for k, v in values.items():
        if isinstance(v, dict) and isinstance(meta.get(k), dict):
            meta[k].update(v)
        else:
            meta[k] = v
    tmp_path = meta_path.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(meta, indent=2))
    os.replace(tmp_path, meta_path)


def calibrate(model: str | os.PathLike[str], per_gsd: int = 2, size_m: float = 300.0,
              write: bool = True) -> dict[str, Any]:
    """Sweep ``THRESHOLDS`` on validation scenes; optionally store the best in model.json."""
    model_path = Path(model)
    pairs = validation_pairs(Detector(model_path, threshold=min(THRESHOLDS), verify=False),
                             per_gsd, size_m)
    table = {}
    for t in THRESHOLDS:
        rs = [evaluate_pair(truth, pred[pred.score >= t]) for truth, pred in pairs]
        s = summarise(rs)
        table[float(t)] = {"f1": s["f1"], "container_f1": s["container_f1"],
                           "count_error": s["count_error"]}
    best = max(table, key=lambda t: _objective(table[t]))
    if write:
        _store(model_path, score_threshold=best,
               score_threshold_sweep={str(k): v for k, v in table.items()})
    return {"best": best, "table": table}


#: Objective differences below this are noise on the validation scenes.
TIE = 0.001
#: Verifier sweep: largest background probability kept, and the floor on the joint score.
MAX_BACKGROUND = (0.3, 0.5, 0.7, 0.9)
MIN_SCORES = tuple(np.round(np.arange(0.2, 0.61, 0.05), 2))


def strictest_near_best(table: dict[tuple[float, float], dict[str, Any]],
                        tie: float = TIE) -> tuple[float, float]:
    """The (max_background, min_score) to use: among settings whose objective is within
    ``tie`` of the best, the strictest (smallest max_background, then highest min_score).
    For railwatch-det 0.3.0, 0.5/0.4, 0.7/0.4 and 0.9/0.4 came within 0.0002."""
    top = max(_objective(v) for v in table.values())
    return min((k for k in table if _objective(table[k]) >= top - tie),
               key=lambda k: (k[0], -k[1]))


def calibrate_verifier(model: str | os.PathLike[str], candidate_threshold: float = 0.15,
                       per_gsd: int = 2, size_m: float = 300.0,
                       write: bool = True) -> dict[str, Any]:
    """Choose the verifier's ``max_background`` and ``min_score`` on validation scenes
    (the detector proposing at ``candidate_threshold``); optionally store them."""
    model_path = Path(model)
    det = Detector(model_path, threshold=candidate_threshold, verify=True)
    det.max_background, det.min_score = 1.0, 0.0  # keep every candidate, filter below
    pairs = validation_pairs(det, per_gsd, size_m)
    table = {}
    for mb in MAX_BACKGROUND:
        for t in MIN_SCORES:
            rs = [evaluate_pair(truth, pred[(pred.score >= t)
                                            & (pred.extra["object_score"].astype(float)
                                               > 1.0 - mb)])
                  for truth, pred in pairs]
            s = summarise(rs)
            table[(mb, float(t))] = {"f1": s["f1"], "container_f1": s["container_f1"],
                                     "count_error": s["count_error"],
                                     "class_accuracy": s.get("class_accuracy"),
                                     "covered_accuracy": s.get("covered_accuracy")}
    best = strictest_near_best(table)
    if write:
        _store(model_path, verifier={
            "candidate_threshold": candidate_threshold, "max_background": best[0],
            "min_score": best[1],
            "sweep": {f"{k[0]:g}/{k[1]:g}": v for k, v in table.items()}})
    return {"best": best, "table": table}


#: Railcar-pair NMS sweep (iou, iomin): the common rule (0.3, 0.5) down to strict; then
#: the closest two parallel cars' centres may stand across the track (m; 0 = no rule;
#: real track centres are at least about 4.1 m apart).
RAILCAR_NMS = ((0.3, 0.5), (0.3, 0.4), (0.25, 0.3), (0.2, 0.25), (0.2, 0.2), (0.15, 0.15),
               (0.1, 0.1), (0.05, 0.05))
RAILCAR_SPACING_M = (0.0, 2.7, 3.0, 3.3, 3.6, 3.9)


def calibrate_railcar_nms(model: str | os.PathLike[str], per_gsd: int = 2,
                          size_m: float = 300.0, write: bool = True) -> dict[str, Any]:
    """Choose how much two railcar boxes may overlap, and how close side by side they may
    stand, before the weaker is a duplicate (model.json ``railcar_nms``), on validation
    scenes with the model's own two stages: first the overlap, then the spacing."""
    model_path = Path(model)
    det = Detector(model_path)
    table: dict[tuple[float, ...], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        names = write_validation_scenes(d, per_gsd, size_m)

        def score(rule: tuple[float, ...]) -> None:
            det.railcar_nms = RailcarRule(*rule)
            s = summarise([evaluate_pair(t, p) for t, p in scene_pairs(d, names, det)])
            table[rule] = {"f1": s["f1"], "container_f1": s["container_f1"],
                           "count_error": s["count_error"]}

        for iou, iomin in RAILCAR_NMS:
            score((iou, iomin, 0.0))
        iou, iomin, _ = max(table, key=lambda k: (_objective(table[k]), k[1]))
        for spacing in RAILCAR_SPACING_M[1:]:
            score((iou, iomin, spacing))
    # ties: the looser rule (larger iomin, smaller spacing)
    best = max(table, key=lambda k: (_objective(table[k]), k[1], -k[2]))
    if write:
        _store(model_path, railcar_nms={
            "iou": best[0], "iomin": best[1], "spacing_m": best[2],
            "sweep": {"/".join(f"{v:g}" for v in k): v for k, v in table.items()}})
    return {"best": best, "table": table}


#: Container-neighbour sweep: the slot classifier's probability and rounds; then the
#: probability below which it drops a container the verifier kept (0: never).
SLOT_PROBS = (0.5, 0.7, 0.8, 0.9)
SLOT_ROUNDS = (1, 2, 4)
SLOT_CHECKS = (0.0, 0.2, 0.4, 0.6, 0.8)


def best_slot_setting(table: dict[Any, dict[str, float]],
                      tie: float = TIE) -> tuple[float, ...] | None:
    """The setting of ``table`` with the best container F1 (ties: the higher probability,
    then fewer rounds, then the milder check), or None when it does not beat not looking
    (``table[None]``) by more than ``tie``."""
    on = [k for k in table if k is not None]
    top = max(on, key=lambda k: (table[k]["container_f1"], k[0], -k[1], -(k[2:] or (0,))[0]))
    return top if table[top]["container_f1"] > table[None]["container_f1"] + tie else None


def calibrate_slots(model: str | os.PathLike[str], per_gsd: int = 2, size_m: float = 300.0,
                    tie: float = TIE, write: bool = True) -> dict[str, Any]:
    """Choose the slot classifier's settings (model.json ``verifier.container_neighbours``)
    on validation scenes: probability and rounds first, then the check of the verifier's
    containers; the search is kept only when it beats not looking by more than ``tie``
    in container F1 (else ``best`` is None and the entry's ``enabled`` false)."""
    from railwatch.detect.neighbours import NeighbourSearch, SlotClassifier

    model_path = Path(model)
    det = Detector(model_path)
    block = dict((det.meta.get("verifier") or {}).get("container_neighbours") or {})
    search = NeighbourSearch.from_meta({**block, "enabled": True})
    if search is None:
        raise ValueError(f"{model_path}: the model has no container slot classifier")
    slots = SlotClassifier(det.path.with_name(search.file))
    table: dict[Any, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        names = write_validation_scenes(d, per_gsd, size_m)

        def score(setting: tuple[float, ...] | None) -> None:
            det.neighbours = None if setting is None else replace(
                search, min_prob=setting[0], rounds=int(setting[1]), check_prob=setting[2])
            det.slots = None if setting is None else slots
            s = summarise([evaluate_pair(t, p) for t, p in scene_pairs(d, names, det)])
            table[setting] = {"f1": s["f1"], "container_f1": s["container_f1"],
                              "count_error": s["count_error"]}

        score(None)
        for prob in SLOT_PROBS:
            for rounds in SLOT_ROUNDS:
                score((prob, rounds, 0.0))
        prob, rounds, _ = max((k for k in table if k is not None),
                              key=lambda k: (table[k]["container_f1"], k[0], -k[1]))
        for check in SLOT_CHECKS[1:]:
            score((prob, rounds, check))
    best = best_slot_setting(table, tie)
    if write:
        block.update(enabled=best is not None,
                     sweep={"off" if k is None else "/".join(f"{v:g}" for v in k): v
                            for k, v in table.items()})
        if best is not None:
            block.update(min_prob=best[0], rounds=int(best[1]), check_prob=best[2])
        _store(model_path, verifier={"container_neighbours": block})
    return {"best": best, "table": table}


#: When the verifier's first part decides alone (kind / class / covered sureness, see
#: ``railwatch.detect.verify.Cascade``): from never (the full mean everywhere) to bold.
CASCADE_SETTINGS = ((1.01, 1.01, 0.5), (0.95, 0.8, 0.4), (0.9, 0.8, 0.4), (0.9, 0.7, 0.35),
                    (0.85, 0.7, 0.3), (0.8, 0.6, 0.25), (0.7, 0.5, 0.2), (0.6, 0.4, 0.1))


def boldest_without_loss(table: dict[Any, dict[str, Any]], full: Any,
                         tie: float = TIE) -> Any:
    """The setting of ``table`` that asks the second part least while its objective and
    class accuracy stay within ``tie`` of the ``full`` setting's (which always qualifies)."""
    ref = table[full]
    ok = [k for k in table
          if _objective(table[k]) >= _objective(ref) - tie
          and (table[k]["class_accuracy"] or 0.0) >= (ref["class_accuracy"] or 0.0) - tie]
    return min(ok, key=lambda k: (table[k]["asked"], k != full))


def calibrate_cascade(model: str | os.PathLike[str], per_gsd: int = 2, size_m: float = 300.0,
                      tie: float = TIE, write: bool = True) -> dict[str, Any]:
    """Choose when a two-part verifier's first part decides alone (model.json
    ``verifier.second``): the boldest setting (fewest crops for the second part) whose
    objective and class accuracy on validation scenes stay within ``tie`` of asking the
    second part everywhere. Returns the choice and the sweep (with the share asked)."""
    model_path = Path(model)
    det = Detector(model_path)
    v = det.verifier
    if v is None or v.cascade is None:
        raise ValueError(f"{model_path}: the model's verifier has no second part")
    table: dict[tuple[float, float, float], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        names = write_validation_scenes(d, per_gsd, size_m)
        for kind, cls, covered in CASCADE_SETTINGS:
            v.cascade = replace(v.cascade, kind=kind, cls=cls, covered=covered)
            v.asked = v.seen = 0
            s = summarise([evaluate_pair(t, p) for t, p in scene_pairs(d, names, det)])
            table[(kind, cls, covered)] = {
                "f1": s["f1"], "container_f1": s["container_f1"],
                "count_error": s["count_error"], "class_accuracy": s.get("class_accuracy"),
                "covered_accuracy": s.get("covered_accuracy"),
                "asked": round(v.asked / max(v.seen, 1), 4)}
    best = boldest_without_loss(table, CASCADE_SETTINGS[0], tie)
    if write:  # the block as loaded, other entries (file, weight, notes) kept
        second = dict(det.meta["verifier"]["second"])
        second.update(kind=best[0], cls=best[1], covered=best[2],
                      sweep={"/".join(f"{x:g}" for x in k): r for k, r in table.items()})
        _store(model_path, verifier={"second": second})
    return {"best": best, "table": table}
