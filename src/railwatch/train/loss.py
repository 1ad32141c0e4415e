"""Losses: penalty-reduced focal loss on centre heatmaps, weighted L1 / CE / BCE heads."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from railwatch.train.model import CHANNELS


def focal_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet focal loss; ``target`` == 1 marks centres, Gaussian values reduce penalties."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = (target >= 0.999).float() * mask
    neg = (1 - pos) * mask
    pos_loss = -torch.log(p) * (1 - p) ** alpha * pos
    neg_loss = -torch.log(1 - p) * p**alpha * (1 - target) ** beta * neg
    n = pos.sum().clamp(min=1.0)
    return (pos_loss.sum() + neg_loss.sum()) / n


#: Weights of the class and covered terms. Covered loads are a minority (and the cue, a
#: tarp's texture, is subtle at 0.5 m), so positives count double in their BCE.
CLS_WEIGHT = 1.0
COVERED_WEIGHT = 1.5
COVERED_POS_WEIGHT = 2.0
_POS_WEIGHT = torch.tensor(COVERED_POS_WEIGHT)


def detection_loss(raw: torch.Tensor, t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All loss terms for one batch of raw model outputs and encoded targets."""
    heat = focal_loss(raw[:, CHANNELS["heat"]], t["heat"], t["heat_mask"])
    w = t["reg_w"]
    wsum = w.sum().clamp(min=1.0)
    off = (F.smooth_l1_loss(raw[:, 2:4], t["reg"][:, 0:2], reduction="none").sum(1) * w).sum()
    size = (F.smooth_l1_loss(raw[:, 4:6], t["reg"][:, 2:4], reduction="none").sum(1) * w).sum()
    ang = (F.smooth_l1_loss(raw[:, 6:8], t["reg"][:, 4:6], reduction="none").sum(1) * w).sum()
    cls_t = t["cls"]
    valid = cls_t >= 0
    if valid.any():
        ce = F.cross_entropy(raw[:, CHANNELS["cls"]], cls_t.clamp(min=0), reduction="none")
        cls = (ce * w * valid).sum() / (w * valid).sum().clamp(min=1.0)
        cv = t["covered"]
        cvalid = (cv >= 0).float()
        bce = F.binary_cross_entropy_with_logits(
            raw[:, 15], cv.clamp(min=0), reduction="none",
            pos_weight=_POS_WEIGHT)
        cov = (bce * w * cvalid).sum() / (w * cvalid).sum().clamp(min=1.0)
    else:
        cls = raw.sum() * 0
        cov = raw.sum() * 0
    parts = {
        "heat": heat,
        "offset": off / wsum,
        "size": size / wsum * 2.0,
        "angle": ang / wsum,
        "cls": cls * CLS_WEIGHT,
        "covered": cov * COVERED_WEIGHT,
    }
    parts["total"] = sum(parts.values())  # type: ignore[assignment]
    return parts
