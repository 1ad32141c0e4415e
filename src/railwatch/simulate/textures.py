"""Procedural textures: fractal value noise made by summing upsampled random grids."""

from __future__ import annotations

import cv2
import numpy as np


def fractal_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    cell_px: float,
    octaves: int = 4,
    persistence: float = 0.5,
) -> np.ndarray:
    """(H, W) float32 noise with zero mean and unit standard deviation.

    The coarsest octave has features about ``cell_px`` pixels across; each further
    octave halves the feature size and scales its amplitude by ``persistence``.
    """
    h, w = shape
    out = np.zeros((h, w), np.float32)
    amp, cell = 1.0, float(cell_px)
    for _ in range(octaves):
        gh = max(2, int(np.ceil(h / cell)) + 1)
        gw = max(2, int(np.ceil(w / cell)) + 1)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
        cell /= 2.0
        if cell < 1.0:
            break
    std = float(out.std())
    if std > 0:
        out -= float(out.mean())
        out /= std
    return out


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, a smooth ramp between (float32)."""
    t = np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)
    return t * t * (3.0 - 2.0 * t)
