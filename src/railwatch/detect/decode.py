"""Decoding: model output maps -> oriented boxes (numpy), oriented NMS, pixel CRS.

All coordinates here are image pixels in the raster (corner) convention: pixel (0, 0)
covers x in [0, 1), y in [0, 1); x is the column, y the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import shapely
from pyproj import CRS

#: An engineering CRS for detections in image pixel coordinates (x = column, y = row).
PIXEL_CRS = CRS.from_wkt(
    'ENGCRS["image pixels",EDATUM["image"],CS[Cartesian,2],'
    'AXIS["column (x)",east,ORDER[1],LENGTHUNIT["pixel",1]],'
    'AXIS["row (y)",south,ORDER[2],LENGTHUNIT["pixel",1]]]'
)


@dataclass
class Boxes:
    """Oriented boxes as parallel arrays (pixel units)."""

    cx: np.ndarray
    cy: np.ndarray
    length: np.ndarray
    width: np.ndarray
    angle: np.ndarray  # radians, direction of the long axis, in [-pi/2, pi/2)
    kind: np.ndarray  # 0 railcar, 1 container
    cls: np.ndarray  # railcar class id (0..6), -1 for containers
    cls_prob: np.ndarray
    covered_prob: np.ndarray
    score: np.ndarray
    color: np.ndarray  # (N, 3) uint8 RGB median inside the footprint (0 until measured)
    object_prob: np.ndarray  # the verifier's object probability (NaN: not verified)

    def __len__(self) -> int:
        return len(self.cx)

    def take(self, idx: np.ndarray) -> Boxes:
        """A subset by index or mask."""
        return Boxes(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[Boxes]) -> Boxes:
        """Join many."""
        if not parts:
            return empty_boxes()
        return Boxes(*(np.concatenate([getattr(p, f) for p in parts])
                       for f in Boxes.__dataclass_fields__))

    def within(self, x0: float, y0: float, x1: float, y1: float) -> Boxes:
        """The boxes whose centres lie in [x0, x1) x [y0, y1)."""
        return self.take(np.nonzero((self.cx >= x0) & (self.cx < x1)
                                    & (self.cy >= y0) & (self.cy < y1))[0])

    def corners(self) -> np.ndarray:
        """(N, 4, 2) corner coordinates going round each rectangle."""
        return box_corners(self.cx, self.cy, self.length, self.width, self.angle)


def empty_boxes() -> Boxes:
    """No boxes."""
    z = np.zeros(0)
    return Boxes(z, z, z, z, z, np.zeros(0, int), np.zeros(0, int), z, z, z,
                 np.zeros((0, 3), np.uint8), z)


def box_corners(cx: np.ndarray, cy: np.ndarray, length: np.ndarray, width: np.ndarray,
                angle: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners of oriented rectangles (vectorised)."""
    cx, cy, length, width, angle = (np.asarray(a, float).reshape(-1)
                                    for a in (cx, cy, length, width, angle))
    c, s = np.cos(angle), np.sin(angle)
    ux, uy = c * length / 2, s * length / 2
    vx, vy = -s * width / 2, c * width / 2
    xs = np.stack([cx - ux - vx, cx + ux - vx, cx + ux + vx, cx - ux + vx], axis=1)
    ys = np.stack([cy - uy - vy, cy + uy - vy, cy + uy + vy, cy - uy + vy], axis=1)
    return np.stack([xs, ys], axis=-1)


def decode(peaks: np.ndarray, maps: np.ndarray, stride: int = 2,
           threshold: float = 0.3, class_logits: bool = False) -> Boxes:
    """Boxes from one image's ``peaks`` (2, h, w) and ``maps`` (14, h, w) (ONNX outputs).

    Peaks are local maxima of the centre heatmaps (3x3 max-pool in the graph); every
    peak above ``threshold`` is a box. Centres, sizes and angles are in input pixels.
    ``class_logits``: the class channels hold logits (model.json ``class_maps``), turned
    into probabilities here, at the peaks only.
    """
    parts = []
    for k in (0, 1):
        ys, xs = np.nonzero(peaks[k] > threshold)
        if len(ys) == 0:
            continue
        m = maps[:, ys, xs]
        # maps are in the "pixel centre = integer" convention of the training labels;
        # +0.5 moves to the raster (corner) convention used everywhere else.
        cx = (xs + 0.5 + m[0]) * stride + 0.5
        cy = (ys + 0.5 + m[1]) * stride + 0.5
        length = np.exp(np.clip(m[2], -2, 6))
        width = np.exp(np.clip(m[3], -2, 5))
        angle = 0.5 * np.arctan2(m[4], m[5])
        probs = m[6:13]
        if class_logits:
            e = np.exp(probs - probs.max(axis=0))
            probs = e / e.sum(axis=0)
        cls = np.argmax(probs, axis=0) if k == 0 else np.full(len(ys), -1)
        cls_prob = probs.max(axis=0)
        parts.append(Boxes(cx, cy, length, width, angle,
                           np.full(len(ys), k), cls.astype(int), cls_prob, m[13],
                           peaks[k, ys, xs].astype(float), np.zeros((len(ys), 3), np.uint8),
                           np.full(len(ys), np.nan)))
    return Boxes.concat(parts)


#: Two railcars side by side must be this parallel (degrees) and share this much of the
#: shorter one's length before their across-track distance is checked.
SIDE_BY_SIDE_DEG, SIDE_BY_SIDE_SHARE = 20.0, 0.3


class RailcarRule(NamedTuple):
    """When a weaker railcar duplicates a stronger one (see ``rotated_nms``)."""

    iou: float
    iomin: float
    spacing_m: float = 0.0  # closest two parallel cars' centres stand across the track


def rotated_nms(boxes: Boxes, iou: float = 0.3, iomin: float = 0.5,
                railcar: RailcarRule | tuple[float, ...] | None = None,
                px_m: float = 0.5) -> Boxes:
    """Greedy non-maximum suppression on oriented footprints (any kind against any).

    A box is dropped when a higher-scoring one overlaps it by more than ``iou``
    (intersection over union) or covers more than ``iomin`` of the smaller of the two:
    coupled cars and cars on neighbouring tracks never overlap, so a second peak on the
    same car (e.g. on its roof and on its shadowed side) is a duplicate.

    ``railcar`` = RailcarRule(iou, iomin[, spacing_m]): a stricter rule for two railcars,
    whose true footprints never overlap (a box half a car along the track, across a
    coupling, is a duplicate), and which never stand side by side closer than the
    tightest track spacing: a parallel railcar whose centre is less than ``spacing_m``
    across from a stronger one (boxes at ``px_m`` metres per pixel) is a duplicate too,
    e.g. a box on the car's shadow. Containers stand in touching rows and keep
    ``iou``/``iomin``.
    """
    n = len(boxes)
    if n < 2:
        return boxes
    corners = boxes.corners()
    polys = shapely.polygons(corners)
    areas = shapely.area(polys)
    tree = shapely.STRtree(polys)
    rule = RailcarRule(*railcar) if railcar is not None else None
    spacing = rule.spacing_m / px_m if rule is not None else 0.0
    if spacing > 0:  # near pairs too: side by side cars need not touch
        left, right = tree.query(polys, predicate="dwithin", distance=spacing)
    else:
        left, right = tree.query(polys, predicate="intersects")
    sel = left < right
    left, right = left[sel], right[sel]
    if len(left) == 0:
        return boxes
    both = (boxes.kind[left] == 0) & (boxes.kind[right] == 0)
    t_iou = np.where(both, rule.iou, iou) if rule is not None else np.full(len(left), iou)
    t_iomin = np.where(both, rule.iomin, iomin) if rule is not None else np.full(len(left), iomin)
    # overlaps clipped in numpy (NMS in 70 % of the time); they agree with GEOS to rounding,
    # and pairs within 1e-6 of a threshold are measured by GEOS, so every decision is GEOS's
    inter = overlap_areas(corners[left], corners[right])
    near = _near_threshold(inter, areas[left], areas[right], t_iou, t_iomin)
    if near.any():
        inter[near] = shapely.area(shapely.intersection(polys[left[near]], polys[right[near]]))
    ious, iomins = _overlap_ratios(inter, areas[left], areas[right])
    hit = (ious > t_iou) | (iomins > t_iomin)
    if spacing > 0:
        hit |= both & _side_by_side(boxes, left, right, spacing)
    left, right = left[hit], right[hit]
    order = np.argsort(-boxes.score, kind="stable")
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    keep = np.ones(n, bool)
    for i in order.tolist():
        if not keep[i]:
            continue
        for j in neighbours.get(i, ()):
            if rank[j] > rank[i]:
                keep[j] = False
    return boxes.take(np.nonzero(keep)[0])


def _overlap_ratios(inter: np.ndarray, area_a: np.ndarray,
                    area_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection over union and over the smaller area, for pairs."""
    ious = inter / np.maximum(area_a + area_b - inter, 1e-9)
    iomins = inter / np.maximum(np.minimum(area_a, area_b), 1e-9)
    return ious, iomins


def _near_threshold(inter: np.ndarray, area_a: np.ndarray, area_b: np.ndarray,
                    t_iou: np.ndarray, t_iomin: np.ndarray, margin: float = 1e-6) -> np.ndarray:
    """Pairs whose overlap ratios lie within ``margin`` of their thresholds."""
    ious, iomins = _overlap_ratios(inter, area_a, area_b)
    return ((np.abs(ious - t_iou) < margin) | (np.abs(iomins - t_iomin) < margin)
            | ~np.isfinite(inter))


def overlap_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,) areas of the intersections of convex quadrilaterals ``a[i]`` and ``b[i]``
    ((P, 4, 2) corners going round, either way), vectorised over the pairs: ``a`` clipped
    by each edge of ``b`` in turn (Sutherland-Hodgman), then the shoelace formula. Agrees
    with ``shapely.area(shapely.intersection(...))`` to rounding (about 1e-12 of the area);
    NaN where it cannot tell (``b`` without area, or rounding that would give more than 8
    corners: the caller asks GEOS there).
    """
    p, k = len(a), 8  # a quadrilateral clipped four times keeps at most 8 corners
    rows = np.arange(p)[:, None]
    origin = b[:, :1]  # near the pair: products of small coordinates round less
    a, b = a - origin, b - origin
    poly = np.zeros((p, k, 2))
    poly[:, :4] = a
    count = np.full(p, 4)
    # +1 where b goes round counter-clockwise (x right, y up), -1 clockwise
    sign = np.sign(_shoelace(b, np.full(p, 4)))
    unsure = sign == 0
    slot = np.arange(k)[None]
    for e in range(4):
        e0, e1 = b[:, e], b[:, (e + 1) % 4]
        ex, ey = (e1 - e0)[:, 0, None], (e1 - e0)[:, 1, None]
        d = sign[:, None] * (ex * (poly[..., 1] - e0[:, 1, None])
                             - ey * (poly[..., 0] - e0[:, 0, None]))  # >= 0: inside
        valid = slot < count[:, None]
        prev = np.where(slot == 0, count[:, None] - 1, slot - 1)
        d_prev, p_prev = d[rows, prev], poly[rows, prev]
        inside, prev_inside = d >= 0, d_prev >= 0
        crossing = valid & (inside != prev_inside)
        t = np.where(crossing, d_prev / np.where(crossing, d_prev - d, 1.0), 0.0)
        cut = p_prev + t[..., None] * (poly - p_prev)
        # each corner gives the crossing into it (if any), then itself (if inside)
        pts = np.stack([cut, poly], axis=2).reshape(p, 2 * k, 2)
        keep = np.stack([crossing, valid & inside], axis=2).reshape(p, 2 * k)
        at = np.cumsum(keep, axis=1) - 1  # each kept point's place in the clipped polygon
        unsure |= at[:, -1] >= k
        keep[unsure] = False
        poly = np.zeros((p, k, 2))
        poly[np.nonzero(keep)[0], at[keep]] = pts[keep]
        count = keep.sum(axis=1)
    out = np.abs(_shoelace(poly, count))
    out[unsure] = np.nan
    return out


def _shoelace(poly: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Signed areas of (P, K, 2) polygons whose first ``count`` corners are used."""
    k = poly.shape[1]
    slot = np.arange(k)[None]
    nxt = np.where(slot + 1 >= count[:, None], 0, slot + 1)
    q = poly[np.arange(len(poly))[:, None], nxt]
    cross = poly[..., 0] * q[..., 1] - q[..., 0] * poly[..., 1]
    return 0.5 * np.where(slot < count[:, None], cross, 0.0).sum(axis=1)


def _side_by_side(boxes: Boxes, left: np.ndarray, right: np.ndarray,
                  spacing: float) -> np.ndarray:
    """For pairs (left, right): parallel boxes sharing much of their length whose centres
    are less than ``spacing`` (pixels) apart across the first one's axis."""
    a = boxes.angle[left]
    ux, uy = np.cos(a), np.sin(a)
    parallel = np.abs(np.cos(a - boxes.angle[right])) > np.cos(np.deg2rad(SIDE_BY_SIDE_DEG))
    dx, dy = boxes.cx[right] - boxes.cx[left], boxes.cy[right] - boxes.cy[left]
    along, across = np.abs(dx * ux + dy * uy), np.abs(dx * uy - dy * ux)
    shorter = np.minimum(boxes.length[left], boxes.length[right])
    share = ((boxes.length[left] + boxes.length[right]) / 2 - along) / np.maximum(shorter, 1e-9)
    return parallel & (share > SIDE_BY_SIDE_SHARE) & (across < spacing)
