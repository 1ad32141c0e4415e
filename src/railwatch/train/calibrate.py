"""Choose the detector's score threshold on fresh validation scenes (not the test set).

Validation scenes come from both renderers at 0.3/0.5/0.8 m with seeds 600000+ (training
never uses them; the benchmark test set uses 700000+). The threshold maximising the
mean of railcar F1 and container F1 is written to ``model.json`` as ``score_threshold``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from railwatch.detect.model import Detector
from railwatch.detect.pipeline import detect
from railwatch.evaluate import evaluate_pair, summarise
from railwatch.geojson import from_geojson
from railwatch.train.testsets import write_own_scene, write_sim_scene

THRESHOLDS = tuple(np.round(np.arange(0.15, 0.66, 0.05), 2))


def calibrate(model: str | os.PathLike[str], per_gsd: int = 2, size_m: float = 300.0,
              write: bool = True) -> dict[str, Any]:
    """Sweep ``THRESHOLDS`` on validation scenes; optionally store the best in model.json."""
    model_path = Path(model)
    det = Detector(model_path, threshold=min(THRESHOLDS))
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for gi, gsd in enumerate((0.3, 0.5, 0.8)):
            for k in range(per_gsd):
                seed = 600000 + 100 * gi + k
                for writer, tag in ((write_own_scene, "own"), (write_sim_scene, "sim")):
                    name = f"{tag}_{gsd:g}_{k}"
                    writer(d, name, seed, round(size_m / gsd), gsd)
                    truth = from_geojson(d / f"{name}.truth.geojson")
                    pairs.append((truth, detect(d / f"{name}.tif", det).to_crs(4326)))
    table = {}
    for t in THRESHOLDS:
        rs = [evaluate_pair(truth, pred[pred.score >= t]) for truth, pred in pairs]
        s = summarise(rs)
        table[float(t)] = {"f1": s["f1"], "container_f1": s["container_f1"],
                           "count_error": s["count_error"]}
    best = max(table, key=lambda t: (table[t]["f1"] + table[t]["container_f1"]) / 2)
    if write:
        meta_path = (model_path if model_path.is_dir() else model_path.parent) / "model.json"
        meta = json.loads(meta_path.read_text())
        meta["score_threshold"] = best
        meta["score_threshold_sweep"] = {str(k): v for k, v in table.items()}
        tmp_path = meta_path.with_suffix(".tmp")
        tmp_path.write_text(json.dumps(meta, indent=2))
        os.replace(tmp_path, meta_path)
    return {"best": best, "table": table}
