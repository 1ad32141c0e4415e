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



def test_overlap_areas_agree_with_geos() -> None:
    import shapely

    from railwatch.detect.decode import overlap_areas

    rng = np.random.default_rng(4)
    p = 20000
    cx, cy = rng.uniform(0, 60, (2, p)), rng.uniform(0, 60, (2, p))
    length, width = rng.uniform(0.2, 60, (2, p)), rng.uniform(0.2, 12, (2, p))
    angle = rng.uniform(-np.pi / 2, np.pi / 2, (2, p))
    angle[1, :2000] = angle[0, :2000]  # parallel
    cx[1, 2000:3000], cy[1, 2000:3000] = cx[0, 2000:3000], cy[0, 2000:3000]  # same centre
    angle[1, 2000:3000] = angle[0, 2000:3000]
    length[1, 2000:2500], width[1, 2000:2500] = length[0, 2000:2500], width[0, 2000:2500]
    a = box_corners(cx[0], cy[0], length[0], width[0], angle[0])
    b = box_corners(cx[1], cy[1], length[1], width[1], angle[1])
    pa, pb = shapely.polygons(a), shapely.polygons(b)
    geos = shapely.area(shapely.intersection(pa, pb))
    scale = np.minimum(shapely.area(pa), shapely.area(pb))
    assert (geos > 0).sum() > 1000
    for aa, bb in ((a, b), (a[:, ::-1], b), (a, b[:, ::-1])):  # either way round
        assert np.abs(overlap_areas(aa, bb) - geos).max() <= 1e-9 * scale.max()
    far = np.array([29000.0, 31000.0])  # far from the origin, as in a whole-site image
    geos_far = shapely.area(shapely.intersection(shapely.polygons(a + far),
                                                 shapely.polygons(b + far)))
    assert np.abs(overlap_areas(a + far, b + far) - geos_far).max() <= 1e-9 * scale.max()
    flat = b.copy()
    flat[:, 2:] = flat[:, 1::-1]  # no area: left to GEOS
    assert np.isnan(overlap_areas(a[:3], flat[:3])).all()


def _nms_reference(boxes, iou, iomin, railcar, px_m):  # type: ignore[no-untyped-def]
    """rotated_nms as it was: every overlap measured by GEOS."""
    import shapely

    from railwatch.detect.decode import RailcarRule, _side_by_side

    n = len(boxes)
    if n < 2:
        return boxes
    polys = shapely.polygons(boxes.corners())
    areas = shapely.area(polys)
    tree = shapely.STRtree(polys)
    rule = RailcarRule(*railcar) if railcar is not None else None
    spacing = rule.spacing_m / px_m if rule is not None else 0.0
    if spacing > 0:
        left, right = tree.query(polys, predicate="dwithin", distance=spacing)
    else:
        left, right = tree.query(polys, predicate="intersects")
    sel = left < right
    left, right = left[sel], right[sel]
    inter = shapely.area(shapely.intersection(polys[left], polys[right]))
    ious = inter / np.maximum(areas[left] + areas[right] - inter, 1e-9)
    iomins = inter / np.maximum(np.minimum(areas[left], areas[right]), 1e-9)
    both = (boxes.kind[left] == 0) & (boxes.kind[right] == 0)
    if rule is None:
        hit = (ious > iou) | (iomins > iomin)
    else:
        hit = (ious > np.where(both, rule.iou, iou)) | (iomins > np.where(both, rule.iomin, iomin))
        if spacing > 0:
            hit |= both & _side_by_side(boxes, left, right, spacing)
    order = np.argsort(-boxes.score, kind="stable")
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    keep = np.ones(n, bool)
    for i in order.tolist():
        if keep[i]:
            for a, b in zip(left[hit].tolist(), right[hit].tolist(), strict=True):
                j = b if a == i else a if b == i else -1
                if j >= 0 and rank[j] > rank[i]:
                    keep[j] = False
    return boxes.take(np.nonzero(keep)[0])


def test_rotated_nms_keeps_what_geos_kept() -> None:
    from railwatch.detect.decode import Boxes, RailcarRule, rotated_nms

    rng = np.random.default_rng(5)
    for trial in range(150):
        n = int(rng.integers(2, 80))
        cx, cy = rng.uniform(0, 70, n), rng.uniform(0, 70, n)
        dup = rng.random(n) < 0.25  # boxes on the same spot, some the same box
        cx[dup], cy[dup] = np.round(cx[dup] / 4) * 4, np.round(cy[dup] / 4) * 4
        angle = (rng.choice([0.0, 0.3, -1.2], n) if trial % 2
                 else rng.uniform(-1.5, 1.5, n))
        z = np.zeros(n)
        boxes = Boxes(cx, cy, rng.choice([8.0, 20.0, 30.0], n), rng.choice([3.0, 5.0], n),
                      angle, rng.integers(0, 2, n), np.zeros(n, int), z, z, rng.random(n),
                      np.zeros((n, 3), np.uint8), z)
        rule = (None, RailcarRule(0.15, 0.15, 3.0), RailcarRule(0.15, 0.15))[trial % 3]
        got = rotated_nms(boxes, 0.3, 0.5, railcar=rule, px_m=0.5)
        want = _nms_reference(boxes, 0.3, 0.5, rule, 0.5)
        assert np.array_equal(got.cx, want.cx) and np.array_equal(got.cy, want.cy)


def test_rotated_nms_on_a_threshold_decides_as_geos() -> None:
    """A 20 m box half inside a 40 m one on the same axis: it covers exactly iomin = 0.5 of
    the smaller (rounding decides), iou 0.2."""
    from railwatch.detect.decode import Boxes, rotated_nms

    for angle in (0.0, 0.3, -1.1, np.pi / 4):
        c, s = np.cos(angle), np.sin(angle)
        along = np.array([0.0, 25.0])  # the small box's centre 25 along: 10 of it inside
        z = np.zeros(2)
        boxes = Boxes(10 + along * c, 10 + along * s, np.array([40.0, 20.0]),
                      np.array([4.0, 4.0]), np.full(2, angle), np.ones(2, int),
                      np.zeros(2, int), z, z, np.array([0.9, 0.8]), np.zeros((2, 3), np.uint8),
                      z)
        got = rotated_nms(boxes, 0.3, 0.5)
        assert np.array_equal(got.cx, _nms_reference(boxes, 0.3, 0.5, None, 0.5).cx)
