"""Fourth step, for containers: look beside every found container for the next stack.

Containers in a yard stand in rows side by side, about 0.3-0.6 m apart. Through its
small receptive field the detector often puts one peak on two neighbouring stacks
(measured on the fresh test scenes: 88 of 105 missed containers had a found one 2-3 m
across), and lowering its threshold finds no second peak. So the gap is filled from the
boxes already found: each container proposes a box of its own size one stack across on
either side, proposals that overlap a box already kept are dropped, and the slot
classifier (``railwatch-slot.onnx``) says whether a container stands centred on each.
Found neighbours propose their own in the next round, so a block of rows fills out
from any stack found in it.

The verifier cannot make this call: it was trained to accept a candidate within 4 m of
an object (the evaluation's match distance), so it accepts the empty slot beside a
container too (on validation scenes it took 328 empty slots for 38 true neighbours).
The slot classifier is trained on such proposals with a 1.25 m label radius
(:mod:`railwatch.train.slots`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from railwatch.detect.decode import Boxes, rotated_nms
from railwatch.detect.session import open_session
from railwatch.detect.verify import oriented_crops
from railwatch.errors import InputError

SLOT_FILE = "railwatch-slot.onnx"
#: A slot holds a container when a true container's centre lies this close (metres).
SLOT_RADIUS_M = 1.25

Judge = Callable[[np.ndarray], np.ndarray]  # (N, H, W, 3) crops -> (N,) P(container)


@dataclass(frozen=True)
class NeighbourSearch:
    """How far across a neighbour stack is looked for, and how sure the judge must be.

    ``gap_m``: the gap between two stacks of a row (a proposal's centre lies its
    parent's width plus this gap across from the parent's). ``min_prob``: the container
    probability a proposal needs. ``rounds``: how many times found neighbours propose
    their own. ``file``: the slot classifier beside the detector. ``check_prob``: the
    containers the verifier kept are dropped when the slot classifier gives them less
    (0: not checked).
    """

    gap_m: float = 0.4
    min_prob: float = 0.5
    rounds: int = 2
    file: str = SLOT_FILE
    check_prob: float = 0.0

    @staticmethod
    def from_meta(block: dict[str, Any] | None) -> NeighbourSearch | None:
        """The ``container_neighbours`` member of model.json's ``verifier`` block (None
        when absent, or when ``enabled`` is false: calibration found it did not help)."""
        if not block or not block.get("enabled", True):
            return None
        return NeighbourSearch(float(block.get("gap_m", 0.4)),
                               float(block.get("min_prob", 0.5)),
                               int(block.get("rounds", 2)), str(block.get("file", SLOT_FILE)),
                               float(block.get("check_prob", 0.0)))


class SlotClassifier:
    """The slot classifier on onnxruntime: ``__call__(crops)`` -> (N,) P(container)."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        p = Path(path)
        if not p.exists():
            raise InputError("container slot classifier not found", p)
        self.path = p
        self.session = open_session(p, threads, providers)

    def __call__(self, crops: np.ndarray, batch: int = 256) -> np.ndarray:
        x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), np.float32)
        out = np.zeros(len(x))
        for i in range(0, len(x), batch):
            out[i:i + batch] = self.session.run(None, {"crops": x[i:i + batch]})[0][:, 0]
        return out


def neighbour_proposals(parents: Boxes, gap_px: float | np.ndarray) -> Boxes:
    """Two boxes per parent: its copy moved its width plus ``gap_px`` across its long
    axis, on either side (scores those of the parents, object probability unknown)."""
    if len(parents) == 0:
        return parents
    step = parents.width + gap_px
    ax, ay = -np.sin(parents.angle), np.cos(parents.angle)  # across the long axis
    out = []
    for sign in (-1.0, 1.0):
        b = parents.take(np.arange(len(parents)))
        b.cx = parents.cx + sign * step * ax
        b.cy = parents.cy + sign * step * ay
        b.object_prob = np.full(len(b), np.nan)
        out.append(b)
    return Boxes.concat(out)


def open_slots(kept: Boxes, prop: Boxes, width: int, height: int,
               nms_iou: float = 0.3) -> Boxes:
    """The proposals whose centres lie in the image and that no kept box (of any kind)
    or stronger proposal overlaps past the common NMS rule (IoU ``nms_iou``, cover 0.5)."""
    prop = prop.within(0, 0, width, height)
    if len(prop) == 0:
        return prop
    # proposals rank below every kept box (scores <= 1): only they can be dropped
    prop.score = prop.score - 2.0
    pool = rotated_nms(Boxes.concat([kept, prop]), nms_iou)
    out = pool.take(np.nonzero(pool.score < -1.0)[0])
    out.score = out.score + 2.0
    return out


def find_neighbours(tile: np.ndarray, boxes: Boxes, judge: Judge, search: NeighbourSearch,
                    px_m: float, nms_iou: float = 0.3) -> Boxes:
    """``boxes`` and the neighbouring containers ``judge`` confirms beside them (less the
    containers it refuses, with ``search.check_prob`` set).

    A confirmed proposal is a container whose object probability is the judge's and
    whose score is sqrt(parent score x that probability).
    """
    h, w = tile.shape[:2]
    kept = boxes
    if search.check_prob > 0 and (boxes.kind == 1).any():
        rows = np.nonzero(boxes.kind == 1)[0]
        p = np.asarray(judge(oriented_crops(tile, boxes.cx[rows], boxes.cy[rows],
                                            boxes.angle[rows])), float)
        drop = np.zeros(len(boxes), bool)
        drop[rows[p < search.check_prob]] = True
        kept = boxes.take(np.nonzero(~drop)[0])
    parents = kept.take(np.nonzero(kept.kind == 1)[0])
    for _ in range(search.rounds):
        prop = open_slots(kept, neighbour_proposals(parents, search.gap_m / px_m), w, h,
                          nms_iou)
        if len(prop) == 0:
            break
        p = np.asarray(judge(oriented_crops(tile, prop.cx, prop.cy, prop.angle)), float)
        ok = np.nonzero(p >= search.min_prob)[0]
        if len(ok) == 0:
            break
        found = prop.take(ok)
        found.kind = np.ones(len(ok), int)
        found.cls = np.full(len(ok), -1)
        found.cls_prob = np.zeros(len(ok))
        found.covered_prob = np.zeros(len(ok))
        found.object_prob = p[ok]
        found.score = np.sqrt(np.clip(found.score, 0, 1) * p[ok])
        kept = Boxes.concat([kept, found])
        parents = found
    return kept
