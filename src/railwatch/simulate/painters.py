"""Drawing of ground, tracks and objects onto a supersampled metric canvas (OpenCV).

A :class:`Canvas` is an RGB uint8 image whose pixels are ``res`` metres square, with
local metres mapped to pixels by ``col = (x - xmin) / res``, ``row = (ymax - y) / res``
(pixel ``(0, 0)`` spans ``[0, 1)`` in both). Polygons are drawn anti-aliased with
sub-pixel precision (``shift`` bits). Painters draw in a fixed order: ground, roads,
tracks, shadows, then objects from low to high.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from railwatch.simulate.textures import fractal_noise, smoothstep
from railwatch.simulate.world import (
    Building,
    Containers,
    Distractors,
    Railcars,
    Road,
    Track,
    Wall,
    Water,
    rect_corners,
)

SHIFT = 4
#: How far (canvas pixels) anti-aliased fills spread beyond a polygon's true edge.
AA_INSET = 0.7
_NEXT = {k: np.arange(1, k + 1) % k for k in (3, 4, 5, 6, 8)}
_SCALE = float(1 << SHIFT)
AA = cv2.LINE_AA

SNOW_RGB = np.array([236.0, 239.0, 244.0])
TARP_COLORS = (
    (78, 92, 62),
    (56, 86, 64),
    (66, 78, 108),
    (118, 118, 110),
    (140, 122, 84),
    (40, 60, 90),
    (96, 104, 72),
)
COAL_RGB = (40, 40, 43)
ORE_RGBS = ((126, 84, 62), (104, 98, 92), (140, 104, 70))


def _c(rgb: Sequence[float]) -> tuple[int, int, int]:
    r, g, b = (float(v) for v in rgb[:3])
    return (int(min(max(r, 0.0), 255.0)), int(min(max(g, 0.0), 255.0)),
            int(min(max(b, 0.0), 255.0)))


def _scale(rgb: Sequence[float], k: float) -> tuple[int, int, int]:
    return _c([v * k for v in rgb])


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> tuple[int, int, int]:
    return _c([x * (1 - t) + y * t for x, y in zip(a, b, strict=True)])


@dataclass
class Light:
    """Sun and view geometry used by the painters (local metres)."""

    shadow: np.ndarray  # (2,) shadow offset per metre of height
    lean: np.ndarray  # (2,) roof displacement per metre of height
    sun: np.ndarray  # (3,) unit vector towards the sun (east, north, up)
    snow: float = 0.0

    def facet(self, normal: np.ndarray) -> float:
        """Brightness of a facet with ``normal`` relative to a flat roof (Lambert + sky)."""
        n = normal / np.linalg.norm(normal)
        flat = max(self.sun[2], 0.05)
        lit = max(float(n @ self.sun), 0.0)
        return min(1.15, 0.4 + 0.6 * lit / flat) if lit > 0 else 0.4


class Canvas:
    """A supersampled RGB drawing surface in local metres."""

    def __init__(self, xmin: float, ymax: float, res: float, width: int, height: int) -> None:
        self.xmin, self.ymax, self.res = float(xmin), float(ymax), float(res)
        self.width, self.height = int(width), int(height)
        self.img = np.zeros((self.height, self.width, 3), np.uint8)

    # coordinates
    def px(self, xy: np.ndarray) -> np.ndarray:
        """Local metres (..., 2) -> cv2 fixed-point pixel coordinates (int32)."""
        xy = np.asarray(xy, dtype=np.float64)
        k = _SCALE / self.res
        out = (xy - (self.xmin, self.ymax)) * (k, -k) - 0.5 * _SCALE
        return np.rint(out).astype(np.int32)

    def inset(self, xy: np.ndarray) -> np.ndarray:
        """The polygon moved inwards by :data:`AA_INSET` canvas pixels.

        OpenCV's anti-aliased fill spreads about 0.7 px beyond the true edge; insetting
        keeps the drawn area equal to the true footprint.
        """
        xy = np.asarray(xy, dtype=np.float64)
        if len(xy) < 3:
            return xy
        d = AA_INSET * self.res
        nv = len(xy)
        nxt = xy[_NEXT[nv]] if nv in _NEXT else xy[np.arange(1, nv + 1) % nv]
        e = nxt - xy  # edge i: vertex i -> i+1
        area2 = float((xy[:, 0] * nxt[:, 1] - nxt[:, 0] * xy[:, 1]).sum())
        if abs(area2) < 1e-12:
            return xy
        e /= np.maximum(np.sqrt((e * e).sum(axis=1)), 1e-12)[:, None]
        n = e[:, ::-1] * (-1.0, 1.0) if area2 > 0 else e[:, ::-1] * (1.0, -1.0)
        n_prev = n[np.arange(-1, nv - 1)]
        denom = np.maximum(1.0 + (n * n_prev).sum(axis=1), 0.2)[:, None]
        return xy + d * (n + n_prev) / denom

    def spill(self, width_m: float) -> float:
        """How far (metres) an anti-aliased line of ``width_m`` reaches past its ends."""
        return (self.m2px(width_m) / 2 + 0.5) * self.res

    def m2px(self, metres: float) -> int:
        return max(1, round(metres / self.res))

    # primitives (target defaults to the colour image)
    def poly(
        self,
        xy: np.ndarray,
        color: Sequence[int] | int,
        target: np.ndarray | None = None,
        convex: bool = True,
    ) -> None:
        img = self.img if target is None else target
        pts = self.px(self.inset(xy))
        if convex:
            cv2.fillConvexPoly(img, pts, color, AA, SHIFT)
        else:
            cv2.fillPoly(img, [pts], color, AA, SHIFT)

    def polys(
        self,
        polys: np.ndarray,
        colors: Sequence[Sequence[int]] | Sequence[int],
        target: np.ndarray | None = None,
    ) -> None:
        img = self.img if target is None else target
        for poly, c in zip(polys, colors, strict=True):
            cv2.fillConvexPoly(img, self.px(self.inset(poly)), _color(c), AA, SHIFT)

    def line(
        self,
        xy: np.ndarray,
        color: Sequence[int] | int,
        width_m: float,
        target: np.ndarray | None = None,
        closed: bool = False,
    ) -> None:
        img = self.img if target is None else target
        cv2.polylines(img, [self.px(xy)], closed, color, self.m2px(width_m), AA, SHIFT)

    def lines(
        self,
        segs: np.ndarray,
        color: Sequence[int] | int,
        width_m: float,
        target: np.ndarray | None = None,
    ) -> None:
        """Many 2-point segments (N, 2, 2) in one call."""
        if len(segs) == 0:
            return
        img = self.img if target is None else target
        cv2.polylines(img, list(self.px(segs)), False, color, self.m2px(width_m), AA, SHIFT)

    def circle(
        self,
        xy: Sequence[float],
        r_m: float,
        color: Sequence[int] | int,
        target: np.ndarray | None = None,
    ) -> None:
        img = self.img if target is None else target
        c = self.px(np.asarray(xy))
        r_px = max(0.5, r_m / self.res - AA_INSET)
        cv2.circle(img, (int(c[0]), int(c[1])), round(r_px * _SCALE), color, -1, AA, SHIFT)


def _color(c: Sequence[int] | int | np.ndarray) -> tuple[int, ...] | int:
    if isinstance(c, int | np.integer):
        return int(c)
    return tuple(int(v) for v in c)


def _frame(x: float, y: float, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([x, y]),
        np.array([math.cos(h), math.sin(h)]),
        np.array([-math.sin(h), math.cos(h)]),
    )


def _rect(
    c: np.ndarray, u: np.ndarray, v: np.ndarray, u0: float, u1: float, v0: float, v1: float
) -> np.ndarray:
    """Rectangle in a car frame: along-axis u0..u1, across v0..v1 (metres)."""
    return np.array(
        [c + u0 * u + v0 * v, c + u1 * u + v0 * v, c + u1 * u + v1 * v, c + u0 * u + v1 * v]
    )


# -- ground, roads, tracks --------------------------------------------------------------


def season_palette(month: int, lat: float) -> tuple[np.ndarray, np.ndarray]:
    """(vegetation, soil) RGB for the month (northern hemisphere unless lat < 0)."""
    m = month if lat >= 0 else (month + 5) % 12 + 1
    if m in (6, 7, 8):
        return np.array([86.0, 100.0, 60.0]), np.array([130.0, 120.0, 98.0])
    if m in (5, 9):
        return np.array([104.0, 108.0, 70.0]), np.array([132.0, 122.0, 100.0])
    if m in (4, 10):
        return np.array([124.0, 114.0, 80.0]), np.array([134.0, 124.0, 104.0])
    return np.array([116.0, 108.0, 90.0]), np.array([130.0, 124.0, 112.0])


def paint_ground(
    cv: Canvas, rng: np.random.Generator, month: int, lat: float, snow: float
) -> np.ndarray:
    """Fill the canvas with textured terrain (and snow); returns the coarse snow cover."""
    k = max(1, round(0.8 / cv.res))  # terrain colour on a ~0.8 m grid, upsampled
    hc, wc = math.ceil(cv.height / k), math.ceil(cv.width / k)
    cell_m = cv.res * k
    # Low frequencies on a 4x coarser grid, upsampled (smooth anyway, much cheaper).
    lo = (max(2, hc // 4), max(2, wc // 4))
    n1 = cv2.resize(fractal_noise(rng, lo, 40.0 / cell_m, octaves=6, persistence=0.62),
                    (wc, hc), interpolation=cv2.INTER_LINEAR)
    n3 = cv2.resize(fractal_noise(rng, lo, 7.5 / cell_m, octaves=2, persistence=0.5),
                    (wc, hc), interpolation=cv2.INTER_LINEAR)
    n2 = fractal_noise(rng, (hc, wc), 8.0 / cell_m, octaves=3, persistence=0.7)
    n4 = rng.standard_normal((hc, wc), dtype=np.float32)
    veg, soil = season_palette(month, lat)
    veg, soil = veg.astype(np.float32), soil.astype(np.float32)
    t = 0.55 + 0.2 * n1 + 0.1 * n3 + 0.06 * n2
    np.clip(t, 0.0, 1.0, out=t)
    img = veg + t[..., None] * (soil - veg)
    img += (n2 * 3.5 + n3 * 2.5 + n4 * 2.5)[..., None]
    snow_cover = np.zeros((hc, wc), np.float32)
    if snow > 0:
        field = 0.6 * n1 + 0.4 * n2
        thr = float(np.quantile(field[::3, ::3], 1.0 - snow)) if snow < 1 else -1e9
        snow_cover = smoothstep(field, thr - 0.25, thr + 0.25) * min(1.0, 0.6 + snow)
        s = snow_cover[..., None]
        img *= 1.0 - s
        img += s * (SNOW_RGB.astype(np.float32) + (n2 * 4.0)[..., None])
    img8 = np.clip(img, 0, 255).astype(np.uint8)
    cv.img[:] = cv2.resize(img8, (wc * k, hc * k), interpolation=cv2.INTER_LINEAR)[
        : cv.height, : cv.width
    ]
    return snow_cover


def paint_water(cv: Canvas, water: Sequence[Water], month: int, snow: float,
                rng: np.random.Generator) -> None:
    """Water surfaces with a faint current texture; ice with snow in a cold winter."""
    if not water:
        return
    frozen = month in (12, 1, 2) or (month == 3 and snow > 0.5)
    for w in water:
        m = np.zeros((cv.height, cv.width), np.uint8)
        cv.poly(w.polygon, 255, target=m, convex=False)
        x, y, ww, hh = cv2.boundingRect(m)
        if ww == 0 or hh == 0:
            continue
        a = m[y : y + hh, x : x + ww].astype(np.float32)[..., None] / 255.0
        n = cv2.resize(fractal_noise(rng, (max(2, hh // 8), max(2, ww // 8)), 6.0, octaves=3),
                       (ww, hh), interpolation=cv2.INTER_LINEAR)[..., None]
        if frozen:
            col = np.array(_mix((188, 194, 200), SNOW_RGB, 0.7 * snow), np.float32)
            tex = col * (1.0 + 0.04 * n)
        else:
            tex = np.array(w.color, np.float32) * (1.0 + 0.05 * n)
        roi = cv.img[y : y + hh, x : x + ww].astype(np.float32)
        cv.img[y : y + hh, x : x + ww] = np.clip(roi * (1 - a) + tex * a, 0, 255).astype(
            np.uint8)


def _offset(vertices: np.ndarray, d: float) -> np.ndarray:
    """The polyline offset sideways by ``d`` metres (left of travel is positive)."""
    seg = np.diff(vertices, axis=0)
    seg /= np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-9)
    nrm = np.stack([-seg[:, 1], seg[:, 0]], axis=1)
    vn = np.empty_like(vertices)
    vn[0], vn[-1] = nrm[0], nrm[-1]
    if len(vertices) > 2:
        avg = nrm[:-1] + nrm[1:]
        avg /= np.maximum(np.linalg.norm(avg, axis=1, keepdims=True), 1e-9)
        cosang = np.clip(np.sum(avg * nrm[1:], axis=1), 0.3, 1.0)
        vn[1:-1] = avg / cosang[:, None]
    return vertices + d * vn


def paint_roads(cv: Canvas, roads: Sequence[Road], snow: float,
                rng: np.random.Generator | None = None) -> None:
    """Asphalt roads with sharp edges; gravel yards with soft, irregular, textured edges."""
    for r in roads:
        if r.surface == "gravel":
            _gravel(cv, r, snow, rng if rng is not None else np.random.default_rng(0))
        else:
            cv.line(r.vertices, _mix(r.color, SNOW_RGB, 0.5 * snow), r.width_m)


def _gravel(cv: Canvas, r: Road, snow: float, rng: np.random.Generator) -> None:
    f = max(1, round(1.0 / cv.res))  # work on a ~1 m grid
    hc, wc = math.ceil(cv.height / f), math.ceil(cv.width / f)
    small = Canvas(cv.xmin, cv.ymax, cv.res * f, wc, hc)
    m = np.zeros((hc, wc), np.uint8)
    small.line(r.vertices, 255, r.width_m, target=m)
    x, y, w, h = cv2.boundingRect(m)
    if w == 0 or h == 0:
        return
    pad = 8
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(wc, x + w + pad), min(hc, y + h + pad)
    a = cv2.GaussianBlur(m[y0:y1, x0:x1].astype(np.float32) / 255.0, (0, 0), 2.0)
    n = fractal_noise(rng, a.shape, 12.0, octaves=3)
    a = smoothstep(a + 0.18 * n, 0.35, 0.75)
    tex = 1.0 + 0.05 * fractal_noise(rng, a.shape, 4.0, octaves=2)
    Y0, X0 = y0 * f, x0 * f
    Y1, X1 = min(cv.height, y1 * f), min(cv.width, x1 * f)
    a_up = cv2.resize(a, ((x1 - x0) * f, (y1 - y0) * f), interpolation=cv2.INTER_LINEAR)
    t_up = cv2.resize(tex.astype(np.float32), ((x1 - x0) * f, (y1 - y0) * f),
                      interpolation=cv2.INTER_LINEAR)
    a_up, t_up = a_up[: Y1 - Y0, : X1 - X0, None], t_up[: Y1 - Y0, : X1 - X0, None]
    col = np.array(_mix(r.color, SNOW_RGB, 0.6 * snow), np.float32)
    roi = cv.img[Y0:Y1, X0:X1].astype(np.float32)
    roi = roi * (1.0 - a_up) + col * t_up * a_up
    cv.img[Y0:Y1, X0:X1] = np.clip(roi, 0, 255).astype(np.uint8)


def paint_tracks(
    cv: Canvas, tracks: Sequence[Track], snow: float, rng: np.random.Generator
) -> None:
    """Ballast beds, then sleepers, then the two rails of every track."""
    ballast = _mix((126, 118, 106), SNOW_RGB, 0.55 * snow)
    for t in tracks:
        cv.line(t.vertices, ballast, t.gauge_m + 2.4)
    stain = _scale(ballast, 0.84)  # oil and dirt between the rails
    for t in tracks:
        cv.line(t.vertices, stain, t.gauge_m - 0.3)
    fine = 0.55 / cv.res >= 3.5  # sleepers resolved on the canvas, else a blended band
    for t in tracks:
        concrete = rng.random() < 0.7
        sl = (158, 154, 146) if concrete else (78, 66, 54)
        sl = _mix(sl, SNOW_RGB, 0.35 * snow)
        if not fine:
            cv.line(t.vertices, _mix(ballast, sl, 0.47), 2.6)
            cv.line(t.vertices, _mix(stain, sl, 0.47), t.gauge_m - 0.3)
            continue
        s = np.arange(0.3, t.length, 0.55)
        if len(s) == 0:
            continue
        p = t.point_at(s)
        p2 = t.point_at(s + 0.05)
        tang = p2 - p
        tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
        nrm = np.stack([-tang[:, 1], tang[:, 0]], axis=1) * 1.3
        segs = np.stack([p - nrm, p + nrm], axis=1)
        cv.lines(segs, sl, 0.26)
    rail = (82, 76, 70)
    for t in tracks:
        half = t.gauge_m / 2 + 0.035
        for side in (-half, half):
            cv.line(_offset(t.vertices, side), rail, 0.1)


# -- shadows ----------------------------------------------------------------------------


def _prism_shadow(
    cv: Canvas, mask: np.ndarray, base: np.ndarray, height: float, light: Light
) -> None:
    """Shadow of a vertical prism with convex ``base`` (N, 2) and ``height``."""
    off = light.shadow * height
    pts = np.concatenate([base, base + off])
    hull = cv2.convexHull(cv.px(pts))
    cv2.fillConvexPoly(mask, hull, 255, AA, SHIFT)


def paint_shadows(
    cv: Canvas,
    light: Light,
    *,
    cars: Railcars,
    containers: Containers,
    distractors: Distractors,
    buildings: Sequence[Building],
    walls: Sequence[Wall],
) -> np.ndarray:
    """The shadow mask (uint8, fine canvas) of everything that stands up."""
    mask = np.zeros((cv.height, cv.width), np.uint8)
    trees = distractors.kind == "tree" if len(distractors) else np.zeros(0, bool)
    for i in np.nonzero(trees)[0]:
        h, r = float(distractors.height_m[i]), float(distractors.length_m[i]) / 2
        base = np.array([distractors.x[i], distractors.y[i]])
        crown = base + light.shadow * h * 0.7
        cv.line(np.array([base, crown]), 255, 0.4, target=mask)
        cv.circle(crown, r, 255, target=mask)
    for rec in (cars, containers, distractors[~trees] if len(distractors) else distractors):
        if len(rec) == 0:
            continue
        corners = rec.corners()
        heights = rec.height_m
        for base, h in zip(corners, heights, strict=True):
            _prism_shadow(cv, mask, base, float(h), light)
    for b in buildings:
        if b.height_m <= 0.2:
            continue
        off = light.shadow * b.height_m
        poly = b.polygon
        if b.kind == "canopy":
            # A roof on posts: the shadow is the roof outline shifted, not a solid prism.
            cv.poly(poly + off, 255, target=mask, convex=False)
            continue
        cv.poly(poly, 255, target=mask, convex=False)
        cv.poly(poly + off, 255, target=mask, convex=False)
        ring = np.concatenate([poly, poly[:1]])
        for a, b2 in itertools.pairwise(ring):
            cv.poly(np.array([a, b2, b2 + off, a + off]), 255, target=mask)
    for w in walls:
        off = light.shadow * w.height_m
        for a, b2 in zip(w.vertices[:-1], w.vertices[1:], strict=True):
            cv.poly(np.array([a, b2, b2 + off, a + off]), 255, target=mask)
    return mask


def apply_shadow(cv: Canvas, mask: np.ndarray, darkness: float) -> None:
    """Darken the canvas under ``mask`` by ``darkness`` (0..1), keeping a bluish sky fill."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    m = np.arange(256, dtype=np.float32) / 255.0 * darkness
    tint = (0.96, 0.98, 1.05)
    luts = [np.clip(255.0 * (1.0 - m) * (1.0 + (t - 1.0) * (m > 0)), 0, 255).astype(np.uint8)
            for t in tint]
    roi_m = mask[y : y + h, x : x + w]
    scale = cv2.merge([cv2.LUT(roi_m, lut) for lut in luts])
    roi = cv.img[y : y + h, x : x + w]
    cv.img[y : y + h, x : x + w] = cv2.multiply(roi, scale, scale=1.0 / 255.0)


# -- objects ----------------------------------------------------------------------------


def _box(
    cv: Canvas, base: np.ndarray, height: float, top_rgb: Sequence[float], light: Light
) -> np.ndarray:
    """A box seen from above with off-nadir lean: visible walls, then the roof.

    Returns the roof polygon (displaced by the lean)."""
    off = light.lean * height
    roof = base + off
    if float(np.hypot(*off)) > 0.05:
        hull = cv2.convexHull(cv.px(np.concatenate([base, roof])))
        cv2.fillConvexPoly(cv.img, hull, _scale(top_rgb, 0.62), AA, SHIFT)
    cv.poly(roof, _c(top_rgb))
    return roof


def paint_buildings(
    cv: Canvas,
    buildings: Sequence[Building],
    walls: Sequence[Wall],
    light: Light,
    snow: float,
    low: bool,
) -> None:
    """Buildings (``low``: only platforms, else everything else) and walls."""
    for b in buildings:
        is_low = b.kind == "platform"
        if is_low != low:
            continue
        roof_rgb = np.array(b.roof_color, dtype=float)
        off = light.lean * b.height_m
        if b.kind != "canopy" and float(np.hypot(*off)) > 0.05:
            ring = np.concatenate([b.polygon, b.polygon[:1]])
            for a, c in itertools.pairwise(ring):
                cv.poly(np.array([a, c, c + off, a + off]), _scale(roof_rgb, 0.6))
        roof = b.polygon + off
        snowy = (
            _mix(roof_rgb, SNOW_RGB, 0.85 * snow)
            if b.kind != "platform"
            else _mix(roof_rgb, SNOW_RGB, 0.6 * snow)
        )
        if b.kind in ("warehouse", "shed") and len(b.polygon) == 4:
            # Gable roof: ridge along the long axis, the two halves lit differently.
            p = roof
            e1, e2 = p[1] - p[0], p[2] - p[1]
            if np.hypot(*e1) >= np.hypot(*e2):
                a0, a1, b0, b1 = p[0], p[1], p[3], p[2]
                mid0, mid1 = (p[0] + p[3]) / 2, (p[1] + p[2]) / 2
            else:
                a0, a1, b0, b1 = p[1], p[2], p[0], p[3]
                mid0, mid1 = (p[1] + p[0]) / 2, (p[2] + p[3]) / 2
            across = b0 - a0
            across3 = np.array([across[0], across[1], 0.0]) / max(np.hypot(*across), 1e-6)
            up = np.array([0.0, 0.0, 1.0])
            k_a = light.facet(up * 0.97 - across3 * 0.24)
            k_b = light.facet(up * 0.97 + across3 * 0.24)
            cv.poly(np.array([a0, a1, mid1, mid0]), _scale(snowy, k_a))
            cv.poly(np.array([mid0, mid1, b1, b0]), _scale(snowy, k_b))
            ridge = mid1 - mid0
            rl = float(np.hypot(*ridge))
            if rl > 1 and 2.5 * cv.res <= 0.9:  # corrugated sheets down the slopes
                ud = ridge / rl
                us = np.arange(0.45, rl - 0.2, 0.9)
                inset = cv.spill(0.1)
                acr = (b0 - a0) / max(float(np.hypot(*(b0 - a0))), 1e-6)
                segs = np.stack([a0 + us[:, None] * ud + inset * acr,
                                 b0 + us[:, None] * ud - inset * acr], axis=1)
                cv.lines(segs, _scale(snowy, 0.93 * (k_a + k_b) / 2), 0.1)
            cv.line(np.array([mid0, mid1]), _scale(snowy, 1.08), 0.3)
        else:
            cv.poly(roof, snowy, convex=False)
            if b.kind == "canopy":
                ring = np.concatenate([roof, roof[:1]])
                cv.line(ring, _scale(snowy, 0.8), 0.3)
            elif b.kind == "watch post":
                cv.line(np.concatenate([roof, roof[:1]]), _scale(snowy, 0.7), 0.25)
    if low:
        return
    for w in walls:
        off = light.lean * w.height_m
        for a, c in zip(w.vertices[:-1], w.vertices[1:], strict=True):
            if float(np.hypot(*off)) > 0.05:
                cv.poly(np.array([a, c, c + off, a + off]), _scale(w.color, 0.65))
        top = _mix(w.color, SNOW_RGB, 0.7 * snow)
        cv.line(w.vertices + off, top, w.thickness_m)


def _corrugate(
    cv: Canvas,
    c: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    u0: float,
    u1: float,
    half_w: float,
    rgb: Sequence[float],
    pitch: float,
    k: float,
) -> None:
    us = np.arange(u0 + pitch / 2, u1, pitch)
    if len(us) == 0 or pitch < cv.res * 0.9:
        return
    lw = min(0.15, pitch / 3)
    half_w -= cv.spill(lw)  # keep the ribs' anti-aliased caps inside the body
    segs = np.stack([c + us[:, None] * u - half_w * v, c + us[:, None] * u + half_w * v], axis=1)
    cv.lines(segs, _scale(rgb, k), lw)


def paint_containers(cv: Canvas, cont: Containers, light: Light, snow: float) -> None:
    for i in range(len(cont)):
        base = cont.corners()[i] if len(cont) < 2 else None
        if base is None:
            base = rect_corners(
                cont.x[i], cont.y[i], cont.heading[i], cont.length_m[i], cont.width_m[i]
            )[0]
        h = float(cont.height_m[i])
        rgb = _mix(cont.color[i], SNOW_RGB, 0.8 * snow)
        roof = _box(cv, base, h, rgb, light)
        c, u, v = _frame(*(roof.mean(axis=0)), cont.heading[i])
        L = float(cont.length_m[i])
        _corrugate(cv, c, u, v, -L / 2, L / 2, cont.width_m[i] / 2 - 0.05, rgb, 0.6, 0.8)


def paint_distractors(
    cv: Canvas, d: Distractors, light: Light, rng: np.random.Generator, snow: float
) -> None:
    for i in range(len(d)):
        kind = d.kind[i]
        L, W, H = float(d.length_m[i]), float(d.width_m[i]), float(d.height_m[i])
        rgb = d.color[i].astype(float)
        if kind == "tree":
            _tree(cv, d.x[i], d.y[i], L / 2, H, rgb, light, rng, snow)
            continue
        if kind == "rubble":
            n = 14
            ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
            r = 0.5 * (1 + 0.35 * rng.standard_normal(n)).clip(0.4, 1.5)
            pts = np.stack(
                [d.x[i] + r * L * np.cos(ang), d.y[i] + r * W * np.sin(ang)], axis=1
            )
            rot = d.heading[i]
            cen = np.array([d.x[i], d.y[i]])
            R = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
            pts = (pts - cen) @ R.T + cen
            cv.poly(pts, _mix(rgb, SNOW_RGB, 0.6 * snow), convex=False)
            for _ in range(int(6 + L)):
                q = cen + (rng.random(2) - 0.5) * np.array([L, W]) * 0.6
                cv.circle(
                    q, float(rng.uniform(0.2, 0.6)), _scale(rgb, float(rng.uniform(0.6, 1.3)))
                )
            continue
        c, u, v = _frame(d.x[i], d.y[i], d.heading[i])
        off = light.lean * H
        if kind == "truck":
            cab_l = min(2.4, L * 0.3)
            cab = _rect(c, u, v, L / 2 - cab_l, L / 2, -W / 2, W / 2)
            body = _rect(c, u, v, -L / 2, L / 2 - cab_l - 0.3, -W / 2, W / 2)
            _box(cv, body, H, rgb, light)
            cv.poly(cab + light.lean * 2.8, _c(np.array(d.color[i][::-1], dtype=float) * 0.9 + 20))
        else:
            base = _rect(c, u, v, -L / 2, L / 2, -W / 2, W / 2)
            _box(cv, base, H, rgb, light)
            if kind == "machine":
                cv.poly(_rect(c + off, u, v, -L / 4, L / 4, -W / 3, W / 3), _scale(rgb, 0.5))


def _tree(cv: Canvas, x: float, y: float, r: float, h: float, rgb: np.ndarray, light: Light,
          rng: np.random.Generator, snow: float) -> None:
    """A crown of overlapping discs, lit on the sun's side; bare and grey when ``rgb`` is."""
    c = np.array([x, y]) + light.lean * h
    sun2 = light.sun[:2] / max(float(np.hypot(*light.sun[:2])), 1e-6)
    cv.circle(c, r, _scale(rgb, 0.8))
    for _ in range(int(rng.integers(4, 8))):
        d = rng.normal(0, 0.35, 2) * r
        rr = r * float(rng.uniform(0.35, 0.6))
        lit = float(np.dot(d / max(r, 1e-6), sun2))
        k = 0.9 + 0.35 * lit + float(rng.uniform(-0.08, 0.08))
        cv.circle(c + d, rr, _mix(_scale(rgb, k), SNOW_RGB, 0.3 * snow))


def _tarp(
    cv: Canvas,
    c: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    half_l: float,
    half_w: float,
    rgb: Sequence[float],
    rng: np.random.Generator,
) -> None:
    cv.poly(_rect(c, u, v, -half_l, half_l, -half_w, half_w), _c(rgb))
    n = int(rng.integers(5, 12))
    us = rng.uniform(-half_l * 0.95, half_l * 0.95, size=(n, 2))
    vs = np.stack([np.full(n, -half_w * 0.95), np.full(n, half_w * 0.95)], axis=1)
    for j in range(n):
        a = c + us[j, 0] * u + vs[j, 0] * v
        b = c + us[j, 1] * 0.3 * u + us[j, 0] * 0.7 * u + vs[j, 1] * v
        k = float(rng.choice([0.78, 0.85, 1.15, 1.22]))
        cv.line(np.array([a, b]), _scale(rgb, k), float(rng.uniform(0.15, 0.35)))
    # rope lines across
    for uu in np.linspace(-half_l * 0.8, half_l * 0.8, int(rng.integers(2, 5))):
        cv.line(
            np.array([c + uu * u - half_w * v, c + uu * u + half_w * v]), _scale(rgb, 0.7), 0.08
        )


def paint_cars(
    cv: Canvas, cars: Railcars, light: Light, seeds: Sequence[int], snow: float = 0.0
) -> None:
    """Draw every railcar with its class's roof detail, lean and shading.

    ``seeds`` (one per car) fix each car's random details (tarp colour, roof ribs), so a
    car looks the same in every image."""
    if len(cars) == 0:
        return
    heights = cars.height_m
    corners = cars.corners()
    up = np.array([0.0, 0.0, 1.0])
    for i in range(len(cars)):
        rng = np.random.default_rng(int(seeds[i]))
        cls = cars.cls[i]
        L, W, H = float(cars.length_m[i]), float(cars.width_m[i]), float(heights[i])
        rgb = cars.color[i].astype(float)
        base = corners[i]
        off = light.lean * H
        c, u, v = _frame(cars.x[i] + off[0], cars.y[i] + off[1], cars.heading[i])
        if float(np.hypot(*off)) > 0.05:
            hull = cv2.convexHull(cv.px(np.concatenate([base, base + off])))
            cv2.fillConvexPoly(cv.img, hull, _scale(rgb, 0.55), AA, SHIFT)
        hl, hw = L / 2, W / 2
        v3 = np.array([v[0], v[1], 0.0])
        snow_k = 0.0
        if snow > 0 and cls in ("boxcar", "passenger", "tank") and rng.random() < 0.3:
            snow_k = float(rng.uniform(0.2, 0.6)) * snow  # parked long enough to hold snow
        top = _mix(rgb, SNOW_RGB, snow_k)
        if cls == "tank":
            # Cylinder: strips across the width lit by the sun; chamfered ends; dome.
            cv.poly(_rect(c, u, v, -hl, hl, -hw * 0.85, hw * 0.85), _scale(rgb, 0.62))
            n = 6
            edges = np.linspace(-hw, hw, n + 1)
            for j in range(n):
                vm = (edges[j] + edges[j + 1]) / 2 / hw
                normal = up * math.sqrt(max(0.0, 1 - vm * vm)) + v3 * vm
                k = light.facet(normal) * (1.0 + 0.1 * max(0.0, 1 - abs(vm) * 3))
                ends = hl - 0.5 * abs(vm) ** 2 - 0.3
                cv.poly(_rect(c, u, v, -ends, ends, edges[j], edges[j + 1]), _scale(top, k))
            cv.circle(c + u * float(rng.uniform(-0.5, 0.5)), 0.55, _scale(top, 1.25))
            cv.line(np.array([c - u * (hl - 1.0), c + u * (hl - 1.0)]), _scale(top, 0.8), 0.12)
        elif cls == "hopper":
            cv.poly(_rect(c, u, v, -hl, hl, -hw, hw), _c(top))
            inner = _rect(c, u, v, -hl + 0.2, hl - 0.2, -hw + 0.18, hw - 0.18)
            load = cars.load[i]
            if cars.covered[i] or load == "tarp":
                trgb = TARP_COLORS[int(rng.integers(len(TARP_COLORS)))]
                _tarp(cv, c, u, v, hl - 0.1, hw - 0.05, trgb, rng)
            elif load in ("coal", "ore"):
                lrgb = COAL_RGB if load == "coal" else ORE_RGBS[int(rng.integers(len(ORE_RGBS)))]
                lrgb = _mix(lrgb, SNOW_RGB, 0.7 * snow)
                cv.poly(inner, lrgb)
                nb = max(2, int(L // 3.5))
                for j in range(nb):
                    uc = -hl + (j + 0.5) * L / nb
                    axes = (
                        max(1, int(L / nb / 2.6 / cv.res * 16)),
                        max(1, int(hw * 0.55 / cv.res * 16)),
                    )
                    p = cv.px(c + uc * u + 0.15 * hw * v)
                    ang = -math.degrees(math.atan2(u[1], u[0]))
                    cv2.ellipse(
                        cv.img,
                        (int(p[0]), int(p[1])),
                        axes,
                        ang,
                        0,
                        360,
                        _scale(lrgb, light.facet(up + 0.4 * v3) * 1.15),
                        -1,
                        AA,
                        SHIFT,
                    )
            else:
                cv.poly(inner, _scale(rgb, 0.4))
                nb = max(2, int(L // 3.0))
                us = np.linspace(-hl + 0.2, hl - 0.2, nb + 1)[1:-1]
                segs = np.stack(
                    [c + us[:, None] * u - (hw - 0.2) * v, c + us[:, None] * u + (hw - 0.2) * v],
                    axis=1,
                )
                cv.lines(segs, _scale(rgb, 0.85), 0.2)
        elif cls == "flatcar":
            deck = (96, 84, 70) if rng.random() < 0.6 else tuple(rgb)
            cv.poly(_rect(c, u, v, -hl, hl, -hw, hw), _c(deck))
            cv.lines(
                np.stack(
                    [
                        c + np.array([-1, 1])[:, None] * (hl - cv.spill(0.15)) * u
                        - (hw - cv.spill(0.15)) * v,
                        c + np.array([-1, 1])[:, None] * (hl - cv.spill(0.15)) * u
                        + (hw - cv.spill(0.15)) * v,
                    ],
                    axis=1,
                ),
                _scale(deck, 0.6),
                0.15,
            )
            load = cars.load[i]
            if cars.covered[i] or load == "tarp":
                trgb = TARP_COLORS[int(rng.integers(len(TARP_COLORS)))]
                _tarp(cv, c, u, v, hl - 0.6, hw - 0.1, trgb, rng)
            elif load == "containers":
                n40 = L >= 13.2 and rng.random() < 0.5
                lens = [12.19] if n40 else ([6.06, 6.06] if L >= 13.0 else [6.06])
                start = -sum(lens) / 2 - 0.1 * (len(lens) - 1)
                for ln in lens:
                    crgb = _c(
                        np.array([170, 60, 40]) if rng.random() < 0.2 else rng.integers(40, 210, 3)
                    )
                    cc = c + (start + ln / 2) * u
                    cv.poly(_rect(cc, u, v, -ln / 2, ln / 2, -1.22, 1.22), crgb)
                    _corrugate(cv, cc, u, v, -ln / 2, ln / 2, 1.17, crgb, 0.6, 0.8)
                    start += ln + 0.2
            else:
                # bare deck: planks along the car
                vs = np.linspace(-hw + 0.4, hw - 0.4, 4)
                segs = np.stack(
                    [c - (hl - 0.3) * u + vs[:, None] * v, c + (hl - 0.3) * u + vs[:, None] * v],
                    axis=1,
                )
                cv.lines(segs, _scale(deck, 0.8), 0.08)
        elif cls == "locomotive":
            cv.poly(_rect(c, u, v, -hl, hl, -hw, hw), _c(top))
            cabs = [hl - 2.6] if L < 28 else [hl - 2.6, -hl + 2.6]
            if L >= 28:
                cabs += [0.0]
            for cu in cabs:
                cv.poly(_rect(c, u, v, cu - 0.2, cu + 0.2, -hw + 0.2, hw - 0.2), _scale(top, 0.4))
            hood0, hood1 = -hl + 1.2, hl - 3.2
            cv.poly(_rect(c, u, v, hood0, hood1, -hw * 0.6, hw * 0.6), _scale(top, 0.82))
            nf = max(2, int((hood1 - hood0) // 3.2))
            for j in range(nf):
                uc = hood0 + (j + 0.5) * (hood1 - hood0) / nf
                if j % 2 == 0:
                    cv.circle(c + uc * u, 0.6, _scale(top, 0.35))
                else:
                    cv.poly(
                        _rect(c, u, v, uc - 0.8, uc + 0.8, -hw * 0.45, hw * 0.45), _scale(top, 0.5)
                    )
        elif cls == "passenger":
            roof = _mix((128, 130, 132), rgb, 0.35)
            roof = _mix(roof, SNOW_RGB, snow_k)
            cv.poly(_rect(c, u, v, -hl, hl, -hw, hw), _c(top))
            cv.poly(_rect(c, u, v, -hl + 0.4, hl - 0.4, -hw * 0.8, hw * 0.8), roof)
            for uc in np.arange(-hl + 2.0, hl - 1.0, 2.4):
                cv.poly(_rect(c, u, v, uc - 0.25, uc + 0.25, -0.3, 0.3), _scale(roof, 0.6))
        elif cls == "boxcar":
            cv.poly(_rect(c, u, v, -hl, hl, -hw, hw), _c(top))
            _corrugate(
                cv,
                c,
                u,
                v,
                -hl + 0.2,
                hl - 0.2,
                hw - 0.1,
                top,
                1.1,
                float(rng.choice([0.82, 1.12])),
            )
            if rng.random() < 0.4:
                cv.line(np.array([c - u * (hl - 0.3), c + u * (hl - 0.3)]), _scale(top, 0.75), 0.4)
            cv.lines(
                np.stack(
                    [
                        c + np.array([-1, 1])[:, None] * (hl - cv.spill(0.2)) * u
                        - (hw - cv.spill(0.2)) * v,
                        c + np.array([-1, 1])[:, None] * (hl - cv.spill(0.2)) * u
                        + (hw - cv.spill(0.2)) * v,
                    ],
                    axis=1,
                ),
                _scale(top, 0.7),
                0.2,
            )
        else:  # other: maintenance-of-way
            cv.poly(_rect(c, u, v, -hl, hl, -hw, hw), _c(top))
            cv.poly(_rect(c, u, v, -hl * 0.5, hl * 0.3, -hw * 0.7, hw * 0.7), _scale(top, 0.45))
            cv.line(
                np.array([c + u * hl * 0.3, c + u * (hl - 0.3) + v * hw * 0.4]),
                _scale(top, 0.3),
                0.3,
            )
            cv.poly(_rect(c, u, v, hl * 0.5, hl - 0.2, -hw * 0.8, hw * 0.8), _scale(top, 1.2))
