"""Target encoding: objects in pixel coordinates -> stride-2 training maps (numpy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from railwatch.types import RAILCAR_CLASSES

STRIDE = 2
_CLS = {c: i for i, c in enumerate(RAILCAR_CLASSES)}


def encode(objects: Sequence[dict[str, Any]], chip_px: int, stride: int = STRIDE,
           min_visible: float = 0.45) -> dict[str, np.ndarray]:
    """Encode one chip's objects as dense targets on a (chip_px/stride)² grid.

    Returns ``heat`` (2, g, g) anisotropic Gaussian centre targets (railcar, container),
    ``heat_mask`` (2, g, g) 0 where the loss is ignored (occluded or mostly cut objects),
    ``reg`` (6, g, g) offset dx, dy (cells), log length, log width (px), sin 2θ, cos 2θ,
    ``reg_w`` (g, g) regression weight (Gaussian value near centres), ``cls`` (g, g) class
    id or -1, ``covered`` (g, g) 0/1 or -1 where not supervised.
    """
    g = chip_px // stride
    heat = np.zeros((2, g, g), np.float32)
    mask = np.ones((2, g, g), np.float32)
    reg = np.zeros((6, g, g), np.float32)
    reg_w = np.zeros((g, g), np.float32)
    cls = np.full((g, g), -1, np.int64)
    cov = np.full((g, g), -1.0, np.float32)
    ys, xs = np.mgrid[0:g, 0:g].astype(np.float32)
    centres = xs + 0.5, ys + 0.5  # cell centres in grid units
    for o in objects:
        k = 0 if o["kind"] == "railcar" else 1
        cx, cy = o["cx"] / stride, o["cy"] / stride
        L, W = o["length_px"] / stride, o["width_px"] / stride
        a = float(o["angle_rad"])
        ca, sa = math.cos(a), math.sin(a)
        r = math.ceil(max(L, W) / 2 + 2)
        x0, x1 = max(0, int(cx) - r), min(g, int(cx) + r + 1)
        y0, y1 = max(0, int(cy) - r), min(g, int(cy) + r + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = centres[0][y0:y1, x0:x1] - cx
        dy = centres[1][y0:y1, x0:x1] - cy
        u = dx * ca + dy * sa
        v = -dx * sa + dy * ca
        ignore = bool(o.get("occluded")) or float(o.get("visible", 1.0)) < min_visible
        if ignore:
            inside = (np.abs(u) <= L / 2 + 0.5) & (np.abs(v) <= W / 2 + 0.5)
            mask[k, y0:y1, x0:x1][inside] = 0.0
            continue
        su = max(0.7, L / 10.0)
        sv = max(0.6, W / 5.0)
        gauss = np.exp(-0.5 * ((u / su) ** 2 + (v / sv) ** 2)).astype(np.float32)
        hv = heat[k, y0:y1, x0:x1]
        np.maximum(hv, gauss, out=hv)
        near = gauss > 0.5
        take = near & (gauss > reg_w[y0:y1, x0:x1])
        if not take.any():
            continue
        sl = (slice(y0, y1), slice(x0, x1))
        reg[0][sl][take] = -dx[take]
        reg[1][sl][take] = -dy[take]
        reg[2][sl][take] = math.log(max(o["length_px"], 1.0))
        reg[3][sl][take] = math.log(max(o["width_px"], 1.0))
        reg[4][sl][take] = math.sin(2 * a)
        reg[5][sl][take] = math.cos(2 * a)
        reg_w[sl][take] = gauss[take]
        if k == 0:
            cls[sl][take] = _CLS.get(o.get("class") or "other", _CLS["other"])
            cov[sl][take] = 1.0 if o.get("covered") else 0.0
        else:
            cls[sl][take] = -1
            cov[sl][take] = -1.0
    # put exact 1.0 at each centre cell so focal loss sees positives
    for o in objects:
        if o.get("occluded") or float(o.get("visible", 1.0)) < min_visible:
            continue
        k = 0 if o["kind"] == "railcar" else 1
        ix, iy = int(o["cx"] / stride), int(o["cy"] / stride)
        if 0 <= ix < g and 0 <= iy < g:
            heat[k, iy, ix] = 1.0
    return {"heat": heat, "heat_mask": mask, "reg": reg, "reg_w": reg_w, "cls": cls,
            "covered": cov}
