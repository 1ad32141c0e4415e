"""Training the box refiner (see :mod:`railwatch.detect.refine`).

Data: the verifier's harvest (``railwatch.train.verifier.build_data(..., far=True)``):
every crop that has a true railcar to move onto (``box_targets``: the detector's
candidates on or beside a car, jittered truth, and truth moved far along or across its
track) with the car's centre (along, across the crop) and length as the target.

Model: ``RefNet``, the verifier's plain CNN whose last feature map is flattened rather
than pooled (where the car's ends lie is the answer), regressing along/across offsets
and log length; exported to ONNX with the scaling inside, so the graph answers in pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from railwatch.detect.refine import MAX_SHIFT_M, REFINER_FILE
from railwatch.detect.verify import CROP_H, CROP_W
from railwatch.train.augment import sensor_jitter
from railwatch.train.verifier import (
    MARGIN,
    Budget,
    _center,
    crop_cnn,
    export_crop_model,
    holdout,
    quantize_crop_model,
    update_model_meta,
)

REFINER_VERSION = "0.1.0"
#: Offsets are learned in units of this many pixels, lengths as log(px / LENGTH0).
OFFSET_SCALE, LENGTH0 = 16.0, 36.0


class RefNet(nn.Module):
    """A plain CNN on (3, 32, 96) crops: (along, across, log length) of the car."""

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        self.features = crop_cnn(width)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * width * 4 * 12, 128),
                                  nn.ReLU(inplace=True), nn.Linear(128, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x / 255.0 - 0.5))


class ExportedRefNet(nn.Module):
    """Pixels for ONNX: along, across, length."""

    def __init__(self, net: RefNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return torch.cat([y[:, :2] * OFFSET_SCALE, LENGTH0 * torch.exp(y[:, 2:])], dim=1)


def export_refiner(net: RefNet, path: str | os.PathLike[str]) -> Path:
    """Write the refiner's ONNX (output ``box`` (N, 3): along, across, length in pixels)."""
    return export_crop_model(ExportedRefNet(net), path, ["box"])


def quantize_refiner(src: str | os.PathLike[str], out: str | os.PathLike[str],
                     data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                     n: int = 600, seed: int = 0) -> dict[str, Any]:
    """Write an 8-bit copy of a refiner (``quantize_crop_model``; the pixel scaling at its
    output stays float). Returns how far its moves and lengths stray from the float model's."""
    ka, kb, method = quantize_crop_model(src, out, data, n, seed,
                                         ("Mul", "Exp", "Concat", "Slice", "Gather"))
    d = np.hypot(ka[:, 0] - kb[:, 0], ka[:, 1] - kb[:, 1])
    return {"method": method,
            "move_diff_median_px": round(float(np.median(d)), 3),
            "move_diff_p95_px": round(float(np.percentile(d, 95)), 3),
            "length_diff_median": round(float(np.median(np.abs(kb[:, 2] / ka[:, 2] - 1))), 4)}


def augment(x: np.ndarray, t: np.ndarray, rng: np.random.Generator,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Random shift within the margin, 180-degree turn and mirror across the axis, with
    the targets (along, across, length) moved to match."""
    n = len(x)
    out = np.empty((n, CROP_H, CROP_W, 3), np.uint8)
    t = t.copy()
    dy = rng.integers(0, 2 * MARGIN + 1, n)
    dx = rng.integers(0, 2 * MARGIN + 1, n)
    t[:, 0] -= dx - MARGIN  # the crop's centre moved by (dx - MARGIN) along
    t[:, 1] -= dy - MARGIN
    for i in range(n):
        c = x[i, dy[i]:dy[i] + CROP_H, dx[i]:dx[i] + CROP_W]
        if rng.random() < 0.5:
            c = c[::-1, ::-1]
            t[i, :2] = -t[i, :2]
        if rng.random() < 0.5:
            c = c[::-1]
            t[i, 1] = -t[i, 1]
        out[i] = c
    return out, t


def _scaled(t: torch.Tensor) -> torch.Tensor:
    return torch.cat([t[:, :2] / OFFSET_SCALE, torch.log(t[:, 2:] / LENGTH0)], dim=1)


def evaluate_refiner(net: RefNet, crops: np.ndarray, targets: np.ndarray,
                     tol_px: float = 8.0) -> dict[str, float]:
    """How far the crops' centres are from their cars before and after the move (pixels),
    and the share within ``tol_px`` (4 m at 0.5 m: the evaluation's match distance)."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), 512):
            x = torch.from_numpy(np.ascontiguousarray(
                _center(crops[i:i + 512]).transpose(0, 3, 1, 2))).float()
            out.append(ExportedRefNet(net)(x).numpy())
    p = np.concatenate(out)
    before = np.hypot(targets[:, 0], targets[:, 1])
    after = np.hypot(targets[:, 0] - p[:, 0], targets[:, 1] - p[:, 1])
    far = before > tol_px
    return {
        "median_offset_before_px": float(np.median(before)),
        "median_offset_after_px": float(np.median(after)),
        "within_tol_before": float((before <= tol_px).mean()),
        "within_tol_after": float((after <= tol_px).mean()),
        "far_brought_within_tol": float((after[far] <= tol_px).mean()) if far.any()
        else math.nan,
        "near_kept_within_tol": float((after[~far] <= tol_px).mean()) if (~far).any()
        else math.nan,
        "median_length_error": float(np.median(np.abs(p[:, 2] / targets[:, 2] - 1))),
    }


def load_targets(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Crops and targets of the harvested samples that have a car to move onto."""
    files = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    crops, targets = [], []
    for f in files:
        d = np.load(f)
        if "targets" not in d:
            raise ValueError("no box targets in this harvest (made before the refiner existed)")
        sel = np.isfinite(d["targets"][:, 0])
        crops.append(d["crops"][sel])
        targets.append(d["targets"][sel].astype(np.float32))
    return np.concatenate(crops), np.concatenate(targets)


def train_refiner(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                  out_dir: str | os.PathLike[str], *, minutes: float = 20.0, seed: int = 0,
                  batch: int = 128, lr: float = 2e-3, width: int = 12, threads: int = 2,
                  val_fraction: float = 0.05, max_steps: int | None = None,
                  jitter: bool = True) -> dict[str, Any]:
    """Train RefNet on ``build_data`` files for ``minutes`` (or ``max_steps``); write
    ``railwatch-box.onnx`` and the ``refiner`` block of ``out_dir/model.json``. Returns
    that block."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    crops, targets = load_targets(data)
    n = len(crops)
    if n < 2:
        raise ValueError("no crops with box targets to train on")
    val, tr = holdout(n, val_fraction, rng)
    n_val = len(val)
    net = RefNet(width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    budget = Budget(minutes, max_steps)
    net.train()
    for idx in budget.batches(opt, lr, tr, batch, rng):
        x, t = augment(crops[idx], targets[idx], rng)
        if jitter:
            x = np.stack([sensor_jitter(c, rng) for c in x])
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()
        loss = F.smooth_l1_loss(net(xt), _scaled(torch.from_numpy(t)), beta=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    metrics = evaluate_refiner(net, crops[val], targets[val])
    out = Path(out_dir)
    export_refiner(net, out / REFINER_FILE)
    block = {
        "file": REFINER_FILE, "version": REFINER_VERSION,
        "architecture": f"RefNet: 7 conv3x3-BN-ReLU layers (width {width}), flattened last "
                        "map, dense 128, regression of along/across offset and log length",
        "parameters": sum(p.numel() for p in net.parameters()),
        "crop_px": [CROP_H, CROP_W], "max_shift_m": MAX_SHIFT_M, "set_length": False,
        "training": {"samples": len(tr), "validation_samples": int(n_val),
                     "epochs": budget.epoch, "steps": budget.step, "batch": batch, "lr": lr,
                     "seed": seed, "minutes": round(budget.elapsed() / 60, 1),
                     "validation": {k: round(v, 4) for k, v in metrics.items()}},
    }
    return update_model_meta(out, "refiner", block)
