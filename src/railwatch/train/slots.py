"""Training the container slot classifier (see :mod:`railwatch.detect.neighbours`).

Data: fresh random chips from both renderers (as for the verifier, with more of the
simulator's container lots laid out as yards); the shipped detector, verifier and
refiner run on each chip; every found container and every true one proposes the slot
one stack across on either side (gaps of 0.2-0.8 m), and the proposals that a kept box
already holds are dropped, exactly as at inference. A proposal is a container when a
visible true container's centre lies within ``SLOT_RADIUS_M`` (1.25 m) of it, empty when
no container's lies within 2.5 m (a railcar there is not a container); the ones in
between (half on a stack, or on an occluded one) are left out.

Model: ``SlotNet``, the verifier's plain CNN (centre and global pooling) with one
logit, exported with the sigmoid inside.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import torch
from torch import nn
from torch.nn import functional as F

from railwatch.detect.decode import Boxes, box_corners, empty_boxes
from railwatch.detect.model import Detector
from railwatch.detect.neighbours import SLOT_FILE, SLOT_RADIUS_M, neighbour_proposals, open_slots
from railwatch.detect.verify import CROP_H, CROP_W, oriented_crops
from railwatch.train.augment import sensor_jitter
from railwatch.train.loop import NATIVE_GSD
from railwatch.train.verifier import (
    Budget,
    _augment,
    _center,
    _chip,
    chips_per_worker,
    crop_cnn,
    export_crop_model,
    holdout,
    quantize_crop_model,
    run_workers,
    save_npz,
    update_model_meta,
)

SLOT_VERSION = "0.3.0"
#: Crops are stored with this margin: training shifts them by at most 1 px (0.5 m), well
#: inside the label radius.
SLOT_MARGIN = 1
#: No container's centre within this distance (metres): the slot is empty.
EMPTY_M = 2.5
#: A found box covering this share of a true container holds it (labelled 1); one
#: covering less than ``COVER_HELD`` but at least ``COVER_SOME`` is left out.
COVER_HELD, COVER_SOME = 0.5, 0.1


def _truth_boxes(objs: list[dict[str, Any]], rng: np.random.Generator) -> Boxes:
    """The visible true containers as boxes (raster convention), jittered by a little."""
    c = [o for o in objs if o["kind"] == "container" and not o.get("occluded")]
    if not c:
        return empty_boxes()
    n = len(c)
    cx = np.array([o["cx"] for o in c]) + rng.normal(0, 0.5, n)
    cy = np.array([o["cy"] for o in c]) + rng.normal(0, 0.5, n)
    width = np.array([o["width_px"] for o in c]) * rng.uniform(0.9, 1.1, n)
    angle = np.array([o["angle_rad"] for o in c]) + rng.normal(0, 0.02, n)
    return Boxes(cx, cy, np.array([o["length_px"] for o in c]), width, angle,
                 np.ones(n, int), np.full(n, -1), np.zeros(n), np.zeros(n), np.full(n, 0.5),
                 np.zeros((n, 3), np.uint8), np.full(n, np.nan))


def slot_labels(cx: np.ndarray, cy: np.ndarray, objs: list[dict[str, Any]],
                radius_px: float = SLOT_RADIUS_M / NATIVE_GSD,
                empty_px: float = EMPTY_M / NATIVE_GSD) -> np.ndarray:
    """(N,) int8: 1 where a visible true container's centre lies within ``radius_px``;
    -1 where some container's (an occluded one, or one half across the slot) lies within
    ``empty_px`` (neither taught nor scored); 0 elsewhere, railcars included (a missed
    railcar beside a container is not one)."""
    out = np.zeros(len(cx), np.int8)
    box = [o for o in objs if o["kind"] == "container"]
    if len(cx) == 0 or not box:
        return out
    t = np.array([[o["cx"], o["cy"]] for o in box], float)
    seen = np.array([not o.get("occluded") for o in box], bool)
    d = np.hypot(t[None, :, 0] - cx[:, None], t[None, :, 1] - cy[:, None])
    out[d.min(axis=1) <= empty_px] = -1
    if seen.any():
        out[d[:, seen].min(axis=1) <= radius_px] = 1
    return out


def container_cover(boxes: Boxes, objs: list[dict[str, Any]]) -> np.ndarray:
    """(N,) the largest share of a visible true container's footprint that each box
    covers (0 where it covers none)."""
    out = np.zeros(len(boxes))
    box = [o for o in objs if o["kind"] == "container" and not o.get("occluded")]
    if len(boxes) == 0 or not box:
        return out
    t = shapely.polygons(box_corners(*(np.array([o[k] for o in box], float) for k in
                                      ("cx", "cy", "length_px", "width_px", "angle_rad"))))
    b = shapely.polygons(boxes.corners())
    i, j = shapely.STRtree(t).query(b, predicate="intersects")
    if len(i):
        share = shapely.area(shapely.intersection(b[i], t[j])) / shapely.area(t[j])
        np.maximum.at(out, i, share)
    return out


def held_labels(centre: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Labels of the detector's own boxes: ``centre`` (``slot_labels``) raised to 1 where
    the box covers at least ``COVER_HELD`` of a container, and left out (-1) where it is
    not centred on one but covers at least ``COVER_SOME``."""
    out = np.where(cover >= COVER_HELD, 1, centre)
    return np.where((out == 0) & (cover >= COVER_SOME), -1, out).astype(np.int8)


#: Harvested sample flags: an open slot beside a container, a container the detector found.
FLAG_SLOT, FLAG_FOUND = 0, 1


def chip_slots(rng: np.random.Generator, det: Detector, container_yards: float = 0.5,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops (N, H+2m, W+2m, 3), labels (N,) and flags (N,) (``FLAG_*``) of the open slots
    beside the found and the true containers of one random chip, and of the containers
    the detector found there (so the classifier may also check those)."""
    image, objs = _chip(rng, container_lines=0.5, container_yards=container_yards)
    kept = det.boxes(image)
    found = kept.take(np.nonzero(kept.kind == 1)[0])
    parents = Boxes.concat([found, _truth_boxes(objs, rng)])
    gap = rng.uniform(0.2, 0.8, len(parents)) / NATIVE_GSD
    h, w = image.shape[:2]
    prop = open_slots(kept, neighbour_proposals(parents, gap), w, h)
    both = Boxes.concat([prop, found])
    flags = np.r_[np.full(len(prop), FLAG_SLOT), np.full(len(found), FLAG_FOUND)]
    labels = slot_labels(both.cx, both.cy, objs)
    # a found box may hold a container without being centred on one: a box on two
    # containers end to end is centred on the gap between them but covers both
    labels[len(prop):] = held_labels(labels[len(prop):], container_cover(found, objs))
    sel = np.nonzero(labels >= 0)[0]
    m = SLOT_MARGIN
    crops = oriented_crops(image, both.cx[sel], both.cy[sel], both.angle[sel],
                           (CROP_H + 2 * m, CROP_W + 2 * m))
    return crops, labels[sel], flags[sel].astype(np.int8)


def _worker(args: tuple[int, int, int, str | None, float]) -> dict[str, np.ndarray]:
    seed, wid, n, model, yards = args
    det = Detector(model, threads=1)
    det.neighbours = det.slots = None  # the proposals are what the search would ask
    rng = np.random.default_rng([seed, wid, 7])
    parts = [chip_slots(rng, det, yards) for _ in range(n)]
    return {k: np.concatenate([p[i] for p in parts])
            for i, k in enumerate(("crops", "labels", "flags"))}


def build_slot_data(out: str | os.PathLike[str], chips: int, seed: int = 0, workers: int = 2,
                    model: str | None = None, container_yards: float = 0.5,
                    ) -> dict[str, int]:
    """Write ``out`` (.npz) with the crops, labels and flags of the open slots and found
    containers of ``chips`` random chips (``model``: the detector folder whose boxes
    propose; default the shipped one). Returns the counts."""
    per = chips_per_worker(chips, workers)
    jobs = [(seed, w, per[w], model, container_yards) for w in range(workers) if per[w]]
    parts = run_workers(_worker, jobs)
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    save_npz(out, **data)
    y, f = data["labels"], data["flags"]
    return {"samples": len(y), "container": int((y == 1).sum()), "empty": int((y == 0).sum()),
            "found": int((f == FLAG_FOUND).sum()),
            "found_false": int(((f == FLAG_FOUND) & (y == 0)).sum())}


class SlotNet(nn.Module):
    """The verifier's plain CNN on (3, 32, 96) crops, one logit: a container centred here."""

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        self.features = crop_cnn(width)
        f = 6 * width
        self.head = nn.Sequential(nn.Linear(2 * f, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x / 255.0 - 0.5)  # (N, f, 4, 12)
        mid = z[:, :, 1:3, 4:8].mean(dim=(2, 3))
        return self.head(torch.cat([z.mean(dim=(2, 3)), mid], dim=1))


class ExportedSlotNet(nn.Module):
    """Probability for ONNX."""

    def __init__(self, net: SlotNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


def slot_probabilities(net: SlotNet, crops: np.ndarray) -> np.ndarray:
    """(N,) P(container) of stored (margined) crops."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), 512):
            x = torch.from_numpy(np.ascontiguousarray(
                _center(crops[i:i + 512], SLOT_MARGIN).transpose(0, 3, 1, 2))).float()
            out.append(torch.sigmoid(net(x))[:, 0].numpy())
    return np.concatenate(out) if out else np.zeros(0)


def slot_metrics(p: np.ndarray, y: np.ndarray, t: float = 0.5) -> dict[str, float]:
    """Share of occupied slots accepted and of empty ones refused at ``t`` (NaN: none)."""
    occ, emp = y == 1, y == 0
    return {"occupied_accepted": float((p[occ] >= t).mean()) if occ.any() else float("nan"),
            "empty_refused": float((p[emp] < t).mean()) if emp.any() else float("nan")}


def train_slots(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                out_dir: str | os.PathLike[str], *,
                minutes: float = 12.0, seed: int = 0, batch: int = 128, lr: float = 2e-3,
                width: int = 12, threads: int = 2, val_fraction: float = 0.05,
                max_steps: int | None = None) -> dict[str, Any]:
    """Train SlotNet on ``build_slot_data`` files (one or several, pooled) for ``minutes``
    (or ``max_steps``); write ``railwatch-slot.onnx`` and the ``container_neighbours``
    member of the ``verifier`` block of ``out_dir/model.json``. Returns that member."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    files = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    parts = [np.load(f) for f in files]
    crops = np.concatenate([d["crops"] for d in parts])
    labels = np.concatenate([d["labels"] for d in parts]).astype(np.float32)
    flags = np.concatenate([d["flags"] if "flags" in d else
                            np.full(len(d["labels"]), FLAG_SLOT, np.int8) for d in parts])
    del parts
    n = len(crops)
    if n < 2 or len(np.unique(labels)) < 2:
        raise ValueError("slot training needs both occupied and empty slots")
    val, tr = holdout(n, val_fraction, rng)
    n_val = len(val)
    net = SlotNet(width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    budget = Budget(minutes, max_steps)
    for idx in budget.batches(opt, lr, tr, batch, rng):
        net.train()
        x = np.stack([sensor_jitter(c, rng) for c in _augment(crops[idx], rng, SLOT_MARGIN)])
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()
        loss = F.binary_cross_entropy_with_logits(net(xt)[:, 0], torch.from_numpy(labels[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    p = slot_probabilities(net, crops[val])
    metrics = slot_metrics(p, labels[val])
    found = flags[val] == FLAG_FOUND
    if found.any():  # the detector's own containers: true ones kept, false ones dropped
        f = slot_metrics(p[found], labels[val][found])
        metrics.update(found_true_kept=f["occupied_accepted"],
                       found_false_dropped=f["empty_refused"])
    out = Path(out_dir)
    export_crop_model(ExportedSlotNet(net), out / SLOT_FILE, ["container"])
    block = {
        "file": SLOT_FILE, "version": SLOT_VERSION, "gap_m": 0.4, "min_prob": 0.5,
        "rounds": 2,
        "architecture": f"SlotNet: 7 conv3x3-BN-ReLU layers (width {width}), global + centre "
                        "pooling, one logit (a container centred in the crop)",
        "parameters": sum(p.numel() for p in net.parameters()),
        "label_radius_m": SLOT_RADIUS_M, "empty_beyond_m": EMPTY_M,
        "training": {"samples": len(tr), "validation_samples": int(n_val),
                     "found_containers": int((flags == FLAG_FOUND).sum()),
                     "occupied_share": round(float(labels.mean()), 4),
                     "steps": budget.step, "batch": batch, "lr": lr, "seed": seed,
                     "minutes": round(budget.elapsed() / 60, 1),
                     "validation": {k: round(v, 4) for k, v in metrics.items()
                                    if v == v}},  # (NaN: no such samples held out)
    }
    meta = update_model_meta(out, "verifier", {"container_neighbours": block})
    return dict(meta["container_neighbours"])


def quantize_slots(model_dir: str | os.PathLike[str],
                   data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                   n: int = 600, seed: int = 0) -> dict[str, Any]:
    """Make ``model_dir``'s slot classifier 8-bit in place (``quantize_crop_model`` on
    ``build_slot_data`` crops; about twice as fast on CPU) and note it in model.json.
    Returns how closely its container probabilities follow the float model's."""
    path = Path(model_dir) / SLOT_FILE
    ka, kb, method = quantize_crop_model(path, path, data, n, seed, margin=SLOT_MARGIN)
    q = {"method": method,
         "prob_mean_abs_diff": round(float(np.abs(ka - kb).mean()), 4),
         "decision_agreement": round(float(((ka >= 0.5) == (kb >= 0.5)).mean()), 4)}
    meta = json.loads((Path(model_dir) / "model.json").read_text())
    block = {**meta["verifier"]["container_neighbours"], "quantized": q}
    update_model_meta(model_dir, "verifier", {"container_neighbours": block})
    return q
