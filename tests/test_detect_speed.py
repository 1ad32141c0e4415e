"""The faster per-image helpers give exactly what the simpler code they replace gave."""

from __future__ import annotations

import cv2
import numpy as np

from railwatch.detect.decode import box_corners
from railwatch.detect.model import footprint_colors, median_u8


def _colors_reference(image: np.ndarray, corners: np.ndarray, shrink: float = 0.6) -> np.ndarray:
    """footprint_colors as it was: one box at a time, np.median."""
    out = np.zeros((len(corners), 3), np.uint8)
    h, w = image.shape[:2]
    for i, c in enumerate(corners):
        ctr = c.mean(axis=0)
        pts = ctr + (c - ctr) * shrink - 0.5
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, np.round(pts - [x0, y0]).astype(np.int32), 1)
        px = image[y0:y1, x0:x1, :3][mask.astype(bool)]
        if len(px) == 0:
            px = image[min(int(ctr[1]), h - 1), min(int(ctr[0]), w - 1), :3][None]
        out[i] = np.median(px, axis=0).astype(np.uint8)
    return out


def test_median_u8_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 4, 5, 16, 17, 200, 201):
        for _ in range(20):
            px = rng.integers(0, 256, (k, 3)).astype(np.uint8)
            assert np.array_equal(median_u8(px), np.median(px, axis=0).astype(np.uint8))


def test_footprint_colors_match_the_per_box_loop() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 150, 3)).astype(np.uint8)
    n = 300  # inside, across the edges, outside, tiny (empty mask) and long boxes
    corners = box_corners(rng.uniform(-20, 170, n), rng.uniform(-20, 140, n),
                          rng.uniform(0.2, 60, n), rng.uniform(0.2, 12, n),
                          rng.uniform(-np.pi / 2, np.pi / 2, n))
    assert np.array_equal(footprint_colors(image, corners), _colors_reference(image, corners))
    assert footprint_colors(image, corners[:0]).shape == (0, 3)


def _crops_reference(image: np.ndarray, cx: np.ndarray, cy: np.ndarray, angle: np.ndarray,
                     size: tuple[int, int] = (32, 96)) -> np.ndarray:
    """oriented_crops as it was: each box's matrix from Python floats."""
    h, w = size
    out = np.zeros((len(cx), h, w, 3), np.uint8)
    u0, v0 = (w - 1) / 2, (h - 1) / 2
    for i in range(len(cx)):
        c, s = float(np.cos(angle[i])), float(np.sin(angle[i]))
        x0, y0 = float(cx[i]) - 0.5, float(cy[i]) - 0.5
        m = np.array([[c, -s, x0 - c * u0 + s * v0], [s, c, y0 - s * u0 - c * v0]])
        out[i] = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def test_oriented_crops_match_the_per_box_matrices() -> None:
    from railwatch.detect.verify import oriented_crops

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (200, 240, 3)).astype(np.uint8)
    n = 500
    for dtype in (np.float64, np.float32):  # the detector's angles are float32
        cx, cy = rng.uniform(-10, 250, n).astype(dtype), rng.uniform(-10, 210, n).astype(dtype)
        angle = rng.uniform(-np.pi / 2, np.pi / 2, n).astype(dtype)
        assert np.array_equal(oriented_crops(image, cx, cy, angle),
                              _crops_reference(image, cx, cy, angle))

