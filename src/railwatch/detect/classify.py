"""Fifth step, for railcars: name each kept car's class again, on a crop cut at its
final box.

The verifier names the class on the candidate's crop, before the refiner has moved the
box onto its car, and it was trained on the detector's candidates (most of them
background or containers), so only part of its training speaks to the class. The class
stage (``railwatch-cls.onnx``, the verifier's network) is trained on true cars only, of
both chip renderers, with the small offsets a refined box still has
(:mod:`railwatch.train.classes`), and looks at every railcar kept after the railcar NMS.
Its class probabilities are mixed with the verifier's: ``weight`` on the stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from railwatch.detect.decode import Boxes
from railwatch.detect.verify import Verifier, oriented_crops
from railwatch.types import RAILCAR_CLASSES

CLASSIFIER_FILE = "railwatch-cls.onnx"


@dataclass(frozen=True)
class ClassStage:
    """How the class stage's answer is used. ``weight``: its share of the mixed class
    probabilities (1: it alone decides). ``covered``: whether it also decides covered
    (mixed with the same weight). ``file``: the network beside the detector."""

    weight: float = 1.0
    covered: bool = False
    file: str = CLASSIFIER_FILE

    @staticmethod
    def from_meta(block: dict[str, Any] | None) -> ClassStage | None:
        """The ``classifier`` block of model.json (None when absent or ``enabled`` false)."""
        if not block or block.get("enabled", True) is False:
            return None
        return ClassStage(float(block.get("weight", 1.0)), bool(block.get("covered", False)),
                          str(block.get("file", CLASSIFIER_FILE)))


def verifier_class_probs(cls: np.ndarray, cls_prob: np.ndarray) -> np.ndarray:
    """(N, 7) class probabilities rebuilt from the verifier's answer: ``cls_prob`` on its
    class, the rest shared evenly by the other classes (boxes keep only the top one)."""
    k = len(RAILCAR_CLASSES)
    p = np.repeat(((1.0 - cls_prob) / (k - 1))[:, None], k, axis=1)
    p[np.arange(len(cls)), cls] = cls_prob
    return p


def classify_railcars(tile: np.ndarray, boxes: Boxes, classifier: Verifier,
                      stage: ClassStage) -> Boxes:
    """A copy of ``boxes`` whose railcars carry the mixed class (and, with
    ``stage.covered``, covered) of the verifier and the class stage."""
    b = boxes.take(np.arange(len(boxes)))
    rows = np.flatnonzero(b.kind == 0)
    if len(rows) == 0:
        return b
    p = classifier.predict(oriented_crops(tile, b.cx[rows], b.cy[rows], b.angle[rows]))
    w = stage.weight
    mixed = (1.0 - w) * verifier_class_probs(b.cls[rows], b.cls_prob[rows]) + w * p["cls"]
    b.cls[rows] = mixed.argmax(axis=1)
    b.cls_prob[rows] = mixed.max(axis=1)
    if stage.covered:
        b.covered_prob[rows] = (1.0 - w) * b.covered_prob[rows] + w * p["covered"]
    return b
