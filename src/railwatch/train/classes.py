"""Training the class stage (:mod:`railwatch.detect.classify`): the verifier's network,
trained on true railcars only.

The verifier learns the class from the detector's candidates, most of them background or
containers, on crops cut before the refiner moves the box onto its car. The class stage
sees every railcar again at its final box, so it is trained on what that looks like:
true cars of random chips from both renderers (half each by default, so it does not learn
the look of one), each crop's centre and angle moved by about what the refiner leaves.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from railwatch.detect.classify import CLASSIFIER_FILE
from railwatch.detect.verify import CROP_H, CROP_W, VERIFIER_FILE, oriented_crops
from railwatch.train.verifier import (
    FLAG_TRUTH,
    MARGIN,
    _chip,
    _label,
    chips_per_worker,
    run_workers,
    save_npz,
    train_verifier,
    update_model_meta,
)

CLASSIFIER_VERSION = "0.2.0"
#: Spread (standard deviation) of a crop's centre, native pixels, and angle, radians,
#: about the true car's: the refiner leaves boxes a median 0.6 px off.
CENTRE_JITTER_PX = 1.2
ANGLE_JITTER_RAD = 0.03


def chip_cars(rng: np.random.Generator, sim_share: float = 0.5,
              ) -> tuple[np.ndarray, np.ndarray]:
    """Crops (N, H+2m, W+2m, 3) of the whole, unoccluded true railcars of one random chip
    and their labels (N, 3) [kind, class, covered]."""
    image, objs = _chip(rng, sim_share=sim_share)
    cars = [o for o in objs if o["kind"] == "railcar" and not o.get("occluded")
            and not o.get("truncated")]
    size = (CROP_H + 2 * MARGIN, CROP_W + 2 * MARGIN)
    if not cars:
        return np.zeros((0, *size, 3), np.uint8), np.zeros((0, 3), np.int8)
    n = len(cars)
    cx = np.array([o["cx"] for o in cars]) + rng.normal(0, CENTRE_JITTER_PX, n)
    cy = np.array([o["cy"] for o in cars]) + rng.normal(0, CENTRE_JITTER_PX, n)
    angle = np.array([o["angle_rad"] for o in cars]) + rng.normal(0, ANGLE_JITTER_RAD, n)
    return oriented_crops(image, cx, cy, angle, size), np.array([_label(o) for o in cars],
                                                               np.int8)


def _worker(args: tuple[int, int, int, float]) -> tuple[np.ndarray, np.ndarray]:
    seed, wid, n, sim_share = args
    rng = np.random.default_rng([seed, wid])
    parts = [chip_cars(rng, sim_share) for _ in range(n)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def build_class_data(out: str | os.PathLike[str], chips: int, seed: int = 0,
                     workers: int = 2, sim_share: float = 0.5) -> dict[str, int]:
    """Write ``out`` (.npz: crops, labels, flags, as ``build_data``) with the true railcars
    of ``chips`` random chips (``sim_share`` of them from the scene simulator, the rest
    from the own renderer); returns counts."""
    per = chips_per_worker(chips, workers)
    parts = run_workers(_worker, [(seed, w, per[w], sim_share) for w in range(workers) if per[w]])
    crops = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    save_npz(out, crops=crops, labels=labels, flags=np.full(len(labels), FLAG_TRUTH, np.int8))
    return {"samples": len(labels), "covered": int((labels[:, 2] == 1).sum())}


def train_classifier(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                     out_dir: str | os.PathLike[str], *, minutes: float = 70.0,
                     seed: int = 0, threads: int = 2, max_steps: int | None = None,
                     on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                     init: str | os.PathLike[str] | None = None, lr: float = 2e-3,
                     width: int = 16) -> dict[str, Any]:
    """Train the class stage on ``build_class_data`` files (pooled); write
    ``railwatch-cls.onnx`` and the ``classifier`` block of ``out_dir/model.json``
    (weight 1, covered from the verifier, until a weight is chosen on validation scenes;
    an earlier stage's block is replaced whole). ``init``: a class stage (float or 8-bit)
    to go on training from, e.g. at a lower ``lr`` (of the same ``width``: VerNet's channel
    count, 16 for the verifier). Returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ver = train_verifier(data, tmp, minutes=minutes, seed=seed, threads=threads,
                             max_steps=max_steps, on_epoch=on_epoch, init=init, lr=lr,
                             width=width)
        shutil.move(str(Path(tmp) / VERIFIER_FILE), str(out / CLASSIFIER_FILE))
    v = ver["training"]["validation"]
    block = {
        "file": CLASSIFIER_FILE, "version": CLASSIFIER_VERSION,
        "architecture": ver["architecture"] + " (the verifier's network; its class and "
                        "covered heads are used)",
        "parameters": ver["parameters"], "crop_px": ver["crop_px"],
        "weight": 1.0, "covered": False,
        "training": {**ver["training"], "validation": {
            k: v[k] for k in ("class_accuracy", "covered_accuracy") if k in v}},
    }
    # a new stage: nothing said of an earlier one (its choice, harvest, commands) stays
    return update_model_meta(out, "classifier", block, replace=True)
