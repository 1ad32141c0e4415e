"""Second stage: a crop classifier that checks every candidate box of the detector.

The detector (RailDet) is a tiny fully-convolutional net that sees each car through a
small receptive field; most of its false railcars are long straight things (snowy empty
track, shadow strips beside trains, wall tops, rows of ground containers). The verifier
(``railwatch-ver.onnx``) looks at each candidate again, through a crop cut along the
candidate's own long axis (so every car lies the same way) with its neighbourhood, and
says: background, railcar or container; for railcars also the class and whether the
load is covered. Candidates it calls background are dropped; class and covered come
from the verifier, which sees the whole car at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from railwatch.detect.decode import Boxes
from railwatch.detect.session import open_session
from railwatch.errors import InputError

if TYPE_CHECKING:
    from railwatch.detect.refine import Refiner

VERIFIER_FILE = "railwatch-ver.onnx"
#: Crop the verifier sees (rows x columns at the model's native GSD): 16 m across the
#: car (the car, its shadow and the neighbouring tracks) by 48 m along it (longer than
#: the longest car, so both couplings and the neighbouring cars are in view).
CROP_H, CROP_W = 32, 96


def oriented_crops(image: np.ndarray, cx: np.ndarray, cy: np.ndarray, angle: np.ndarray,
                   size: tuple[int, int] = (CROP_H, CROP_W)) -> np.ndarray:
    """(N, H, W, 3) uint8 crops centred on each box, rotated so its long axis runs along
    the crop's columns. Box centres are raster-convention pixels (pixel (0, 0) spans
    [0, 1) x [0, 1)); outside the image the edge pixels are repeated."""
    h, w = size
    n = len(cx)
    out = np.zeros((n, h, w, 3), np.uint8)
    img = np.ascontiguousarray(image[..., :3])
    u0, v0 = (w - 1) / 2, (h - 1) / 2  # the crop's centre, OpenCV convention
    # cos/sin in the angles' own precision, the matrices in float64
    c, s = np.cos(angle).astype(np.float64), np.sin(angle).astype(np.float64)
    x0 = np.asarray(cx, np.float64) - 0.5  # OpenCV: pixel centres on integers
    y0 = np.asarray(cy, np.float64) - 0.5
    # destination (u, v) -> source (x, y): along-axis = u, across = v; all boxes at once
    m = np.empty((n, 2, 3), np.float64)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = c, -s, x0 - c * u0 + s * v0
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = s, c, y0 - s * u0 - c * v0
    for i in range(n):
        out[i] = cv2.warpAffine(img, m[i], (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


@dataclass(frozen=True)
class Cascade:
    """How a verifier of two parts (``file`` and ``second.file`` in model.json) splits the
    work: every crop goes through the first part; the second is asked only where the
    first is unsure, and then the two are averaged with ``weight`` on the second. Most
    crops are clear cars or clear background, and an ensemble mostly helps on the rest.

    The first part is sure of a crop when its largest kind probability is at least
    ``kind`` and, for a railcar, its largest class probability is at least ``cls`` and
    its covered probability lies at least ``covered`` away from 0.5.
    """

    file: str
    weight: float = 0.5
    kind: float = 0.95
    cls: float = 0.8
    covered: float = 0.4

    @staticmethod
    def from_meta(block: dict[str, Any] | None) -> Cascade | None:
        """The ``second`` member of model.json's ``verifier`` block (None when absent)."""
        if not block:
            return None
        names = {f.name for f in fields(Cascade)}
        return Cascade(**{k: v for k, v in block.items() if k in names})

    def sure(self, p: dict[str, np.ndarray]) -> np.ndarray:
        """(N,) bool: crops the first part decides alone."""
        kind = p["kind"]
        railcar = kind.argmax(axis=1) == 1
        clear_car = (p["cls"].max(axis=1) >= self.cls) & (
            np.abs(p["covered"] - 0.5) >= self.covered)
        return (kind.max(axis=1) >= self.kind) & (~railcar | clear_car)


class Verifier:
    """The crop classifier on onnxruntime: ``predict(crops)`` -> probabilities.

    With a ``second`` part (:class:`Cascade`) the crops the first part is unsure of are
    checked again by the second and the two are averaged; ``asked`` / ``seen`` count the
    crops the second part saw and all crops.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None,
                 providers: list[str] | None = None, second: Cascade | None = None) -> None:
        p = Path(path)
        if not p.exists():
            raise InputError("verifier model not found", p)
        self.path = p
        self.session = open_session(p, threads, providers)
        self.cascade = second
        self.second_session: Any = None
        if second is not None:
            q = p.with_name(second.file)
            if not q.exists():
                raise InputError("the verifier's second part is missing", q)
            self.second_session = open_session(q, threads, providers)
        self.asked = self.seen = 0

    @staticmethod
    def _run(session: Any, x: np.ndarray, batch: int) -> dict[str, np.ndarray]:
        """Probabilities of one part for ``x`` (N, 3, H, W) float32."""
        n = len(x)
        kind, cls, cov = np.zeros((n, 3)), np.zeros((n, 7)), np.zeros(n)
        for i in range(0, n, batch):
            k, c, v = session.run(None, {"crops": x[i:i + batch]})
            kind[i:i + batch], cls[i:i + batch], cov[i:i + batch] = k, c, v[:, 0]
        return {"kind": kind, "cls": cls, "covered": cov}

    def predict(self, crops: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
        """``kind`` (N, 3) background/railcar/container, ``cls`` (N, 7), ``covered`` (N,)."""
        x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), np.float32)  # once for both parts
        p = self._run(self.session, x, batch)
        self.seen += len(crops)
        if self.cascade is None or len(crops) == 0:
            return p
        ask = np.nonzero(~self.cascade.sure(p))[0]
        self.asked += len(ask)
        if len(ask):
            q = self._run(self.second_session, x[ask], batch)
            w = self.cascade.weight
            for k in p:
                p[k][ask] = (1.0 - w) * p[k][ask] + w * q[k]
        return p


def verifier_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``verifier`` block of model.json with defaults."""
    v = dict(meta.get("verifier") or {})
    v.setdefault("file", VERIFIER_FILE)
    v.setdefault("max_background", 0.5)
    v.setdefault("min_score", 0.0)
    v.setdefault("candidate_nms", True)  # NMS on the candidates before the verifier
    return v


def apply_verifier(tile: np.ndarray, boxes: Boxes, verifier: Verifier,
                   max_background: float = 0.5, min_score: float = 0.0,
                   refiner: Refiner | None = None) -> Boxes:
    """Check every candidate with the verifier; kind, class and covered come from it.

    The score becomes the geometric mean of the detector's score and the verifier's
    object probability (kept in ``object_prob``); a candidate is dropped when the verifier
    calls it background with probability >= ``max_background`` or its new score is below
    ``min_score``. With a ``refiner`` each kept railcar is then moved onto its car (same
    crop; ``railwatch.detect.refine``).
    """
    if len(boxes) == 0:
        return boxes
    crops = oriented_crops(tile, boxes.cx, boxes.cy, boxes.angle)
    p = verifier.predict(crops)
    obj = 1.0 - p["kind"][:, 0]
    score = np.sqrt(np.clip(boxes.score, 0, 1) * obj)
    keep = np.nonzero((obj > 1.0 - max_background) & (score >= min_score))[0]
    b = boxes.take(keep)
    kind = (p["kind"][keep, 2] > p["kind"][keep, 1]).astype(int)
    b.kind = kind
    b.cls = np.where(kind == 0, np.argmax(p["cls"][keep], axis=1), -1)
    b.cls_prob = p["cls"][keep].max(axis=1)
    b.covered_prob = np.where(kind == 0, p["covered"][keep], 0.0)
    b.score = score[keep]
    b.object_prob = obj[keep]
    if refiner is not None:
        rows = np.nonzero(kind == 0)[0]
        b = refiner.refine(tile, b, rows, crops[keep[rows]])
    return b
