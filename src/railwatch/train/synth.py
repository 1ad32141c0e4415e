"""A fast, widely randomised chip renderer for training the detector (numpy + OpenCV).

Independent of the demo simulator on purpose: training on two differently-made sources
(this one and ``railwatch.simulate.chips`` when present) keeps the model from learning
the look of one renderer. Objects are returned in PIXEL coordinates with the same keys
as the simulator's chips: ``cx, cy, length_px, width_px, angle_rad, kind, class, covered,
color, length_m, occluded, truncated``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from railwatch.types import RAILCAR_CLASSES

#: (min, max) length in metres per railcar class.
LENGTHS_M: dict[str, tuple[float, float]] = {
    "boxcar": (13.5, 17.5),
    "tank": (11.5, 18.5),
    "hopper": (11.5, 14.5),
    "flatcar": (12.5, 19.5),
    "locomotive": (16.5, 22.0),
    "passenger": (23.5, 26.5),
    "other": (9.0, 20.0),
}
_PALETTE = {
    "boxcar": [(120, 60, 40), (90, 50, 40), (70, 90, 130), (40, 60, 110), (150, 150, 150),
               (100, 110, 90), (140, 170, 200), (60, 70, 60)],
    "tank": [(30, 30, 30), (60, 60, 60), (160, 160, 160), (200, 200, 195), (50, 40, 35),
             (120, 120, 110), (180, 170, 150)],
    "hopper": [(110, 55, 40), (80, 70, 60), (60, 65, 70), (130, 120, 110), (90, 45, 35)],
    "flatcar": [(70, 60, 50), (90, 80, 70), (60, 60, 65), (110, 90, 70)],
    "locomotive": [(40, 90, 60), (150, 40, 40), (40, 60, 130), (200, 120, 30), (60, 60, 60),
                   (180, 180, 60), (30, 110, 120)],
    "passenger": [(60, 90, 60), (130, 50, 50), (60, 70, 120), (170, 170, 170), (40, 60, 50)],
    "other": [(200, 170, 40), (180, 100, 30), (100, 100, 100), (160, 60, 40), (70, 110, 60)],
}
_TARP = [(50, 80, 50), (40, 60, 110), (110, 110, 105), (90, 75, 55), (70, 75, 40),
         (30, 90, 140), (130, 130, 120)]
_CONTAINER = [(170, 50, 40), (40, 70, 140), (40, 110, 60), (160, 160, 160), (210, 120, 30),
              (220, 220, 215), (120, 80, 50), (30, 120, 130), (190, 170, 40)]

_SHIFT = 4  # fixed-point bits for sub-pixel drawing
_F = 1 << _SHIFT
#: Width (metres) of the lines that tell a car's class (a boxcar's roof ribs and centre
#: line, a hopper's bays, a flatcar's deck edges), at least 1 px. Drawn 1 px wide at
#: every GSD they were 0.3 m at 0.3 m GSD and faded when the image was resampled to the
#: model's 0.5 m: the boxcars of 0.3 m images became plain boxes (loaded flatcars).
DETAIL_M = 0.5


def _detail_px(px_m: float) -> int:
    """Line thickness (whole pixels, >= 1) of ``DETAIL_M`` at ``px_m`` pixels per metre."""
    return max(1, round(DETAIL_M * px_m))


def _corners(cx: float, cy: float, length: float, width: float, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2, width / 2
    ux, uy, vx, vy = c * hl, s * hl, -s * hw, c * hw
    return np.array(
        [[cx - ux - vx, cy - uy - vy], [cx + ux - vx, cy + uy - vy],
         [cx + ux + vx, cy + uy + vy], [cx - ux + vx, cy - uy + vy]]
    )


def _fill(img: np.ndarray, pts: np.ndarray, color: Any) -> None:
    cv2.fillPoly(img, [np.round(pts * _F).astype(np.int32)], _col(color), cv2.LINE_AA, _SHIFT)


def _line(img: np.ndarray, p0: Any, p1: Any, color: Any, thick: int = 1) -> None:
    a = (round(p0[0] * _F), round(p0[1] * _F))
    b = (round(p1[0] * _F), round(p1[1] * _F))
    cv2.line(img, a, b, _col(color), thick, cv2.LINE_AA, _SHIFT)


def _col(color: Any) -> tuple[float, float, float]:
    return tuple(float(np.clip(v, 0, 255)) for v in color)  # type: ignore[return-value]


def _jit(rng: np.random.Generator, color: Any, amount: float = 25) -> np.ndarray:
    return np.clip(np.asarray(color, float) + rng.normal(0, amount, 3), 0, 255)


def _noise_field(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    small = rng.normal(0, 1, (max(2, h // scale), max(2, w // scale))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, h: int, w: int, snow: bool) -> np.ndarray:
    if snow:
        base = np.array([225, 228, 232], float) + rng.normal(0, 10, 3)
    else:
        choices = [(95, 110, 70), (120, 115, 95), (140, 130, 110), (80, 95, 60), (150, 150, 145),
                   (110, 100, 85), (170, 160, 140), (60, 80, 50)]
        base = _jit(rng, choices[rng.integers(len(choices))], 15)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    for scale, amp in ((64, rng.uniform(5, 25)), (16, rng.uniform(2, 12)), (4, rng.uniform(0, 8))):
        img += (_noise_field(rng, h, w, scale) * amp)[..., None]
    return img


def _draw_car(rng: np.random.Generator, img: np.ndarray, cx: float, cy: float, length: float,
              width: float, angle: float, cls: str, color: np.ndarray, covered: bool,
              snow: bool, px_m: float) -> None:
    c, s = math.cos(angle), math.sin(angle)
    ax, ay, nx, ny = c, s, -s, c  # along / across unit vectors

    def at(u: float, v: float) -> tuple[float, float]:
        return (cx + ax * u + nx * v, cy + ay * u + ny * v)

    hl, hw = length / 2, width / 2
    detail = _detail_px(px_m)
    if cls == "tank":
        core = _corners(cx, cy, length - width * 0.6, width, angle)
        _fill(img, core, color)
        for sgn in (-1, 1):
            e = at(sgn * (hl - width * 0.3), 0)
            cv2.ellipse(img, (round(e[0] * _F), round(e[1] * _F)),
                        (round(width * 0.32 * _F), round(hw * _F)), math.degrees(angle), 0, 360,
                        _col(color), -1, cv2.LINE_AA, _SHIFT)
        hi = _col(np.asarray(color) * 0.5 + 110)
        _line(img, at(-hl + width * 0.5, 0), at(hl - width * 0.5, 0), hi, max(1, round(width / 4)))
        dome = at(rng.uniform(-1, 1) * px_m, 0)
        cv2.circle(img, (round(dome[0] * _F), round(dome[1] * _F)), round(width * 0.22 * _F),
                   _col(np.asarray(color) * 0.7), -1, cv2.LINE_AA, _SHIFT)
    else:
        _fill(img, _corners(cx, cy, length, width, angle), color)
    if covered:
        tarp = _jit(rng, _TARP[rng.integers(len(_TARP))], 15)
        _fill(img, _corners(cx, cy, length - 0.3 * px_m, width - 0.2 * px_m, angle), tarp)
        for _ in range(rng.integers(3, 9)):
            u = rng.uniform(-hl, hl)
            shade = tarp * rng.uniform(0.6, 1.35)
            _line(img, at(u, -hw * 0.9), at(u + rng.normal(0, 2), hw * 0.9), shade)
        _line(img, at(-hl * 0.9, 0), at(hl * 0.9, 0), tarp * 1.2)
    elif cls == "boxcar":
        _line(img, at(-hl + 1, 0), at(hl - 1, 0), np.asarray(color) * rng.uniform(0.7, 1.3),
              detail)
        for u in np.arange(-hl + 2 * px_m, hl - px_m, rng.uniform(1.2, 2.5) * px_m):
            _line(img, at(u, -hw + 0.5), at(u, hw - 0.5), np.asarray(color) * 0.85, detail)
    elif cls == "hopper":
        load = [(25, 25, 28), (120, 60, 40), (90, 80, 70), (150, 140, 120), None]
        inner = load[rng.integers(len(load))]
        fill = np.asarray(color) * 0.45 if inner is None else _jit(rng, inner, 12)
        _fill(img, _corners(cx, cy, length - 0.8 * px_m, width - 0.7 * px_m, angle), fill)
        for u in np.linspace(-hl * 0.6, hl * 0.6, int(rng.integers(2, 5))):
            _line(img, at(u, -hw + 0.4 * px_m), at(u, hw - 0.4 * px_m), np.asarray(color) * 0.8,
                  detail)
    elif cls == "flatcar":
        deck = np.asarray(color)
        _line(img, at(-hl, -hw + 0.5), at(hl, -hw + 0.5), deck * 0.6, detail)
        _line(img, at(-hl, hw - 0.5), at(hl, hw - 0.5), deck * 0.6, detail)
        if rng.random() < 0.6:  # cargo on the deck
            n = int(rng.integers(1, 4))
            seg = (length - 1.5 * px_m) / n
            for k in range(n):
                u0 = -hl + 0.75 * px_m + seg * (k + 0.5)
                cl = min(seg - 0.6 * px_m, rng.uniform(0.5, 1.0) * seg)
                cw = width * rng.uniform(0.6, 0.95)
                cc = _jit(rng, _CONTAINER[rng.integers(len(_CONTAINER))], 20)
                _fill(img, _corners(*at(u0, 0), cl, cw, angle), cc)
    elif cls == "locomotive":
        cab = rng.choice([-1, 1])
        _fill(img, _corners(*at(cab * (hl - 1.5 * px_m), 0), 3 * px_m, width, angle),
              _jit(rng, np.asarray(color) * 0.8, 15))
        for _ in range(rng.integers(2, 5)):
            u = rng.uniform(-hl * 0.6, hl * 0.6)
            box = _corners(*at(u, 0), rng.uniform(1, 3) * px_m, width * 0.5, angle)
            _fill(img, box, _jit(rng, (80, 80, 80), 30))
    elif cls == "passenger":
        _line(img, at(-hl + 1, 0), at(hl - 1, 0), np.asarray(color) * 0.8, max(1, round(width / 3)))
        for u in np.linspace(-hl * 0.8, hl * 0.8, int(rng.integers(4, 9))):
            p = at(u, 0)
            cv2.circle(img, (round(p[0] * _F), round(p[1] * _F)), _F, _col((90, 90, 90)), -1,
                       cv2.LINE_AA, _SHIFT)
    else:  # other: maintenance machinery, irregular top
        for _ in range(rng.integers(1, 4)):
            u = rng.uniform(-hl * 0.6, hl * 0.6)
            box = _corners(*at(u, rng.uniform(-0.3, 0.3) * width), rng.uniform(1.5, 5) * px_m,
                           width * rng.uniform(0.4, 0.9), angle)
            _fill(img, box, _jit(rng, color, 50))
    if snow and rng.random() < 0.5 and cls != "tank":
        white = np.array([235, 238, 240.0])
        inset = _corners(cx, cy, length * rng.uniform(0.5, 0.95),
                         width * rng.uniform(0.4, 0.85), angle)
        blend = np.asarray(color) * 0.3 + white * 0.7
        _fill(img, inset, blend)


def _shadow(img: np.ndarray, pts: np.ndarray, offset: np.ndarray, strength: float) -> None:
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round((pts + offset) * _F).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
    m = mask.astype(np.float32)[..., None] / 255.0
    img *= 1 - strength * m


def generate_chip(
    rng: np.random.Generator, chip_px: int = 256, gsd: float = 0.5,
    tracks_out: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Render one RGB uint8 chip at ``gsd`` metres/pixel and its objects (pixel coords).

    Scenes mix parallel tracks with trains (dense or sparse, mixed or homogeneous),
    container yards, buildings, roads and trucks (negatives), shadows, snow, haze,
    cloud (objects under thick cloud are ``occluded``), blur, noise and compression.
    ``tracks_out``, when given, receives each track's centreline ((N, 2) chip pixels, in
    the objects' convention); the chip itself does not depend on it.
    """
    px_m = 1.0 / gsd  # pixels per metre
    h = w = chip_px
    pad = 48  # draw on a larger canvas so objects can be truncated by the chip edge
    H, W = h + 2 * pad, w + 2 * pad
    snow = rng.random() < 0.18
    img = _background(rng, H, W, snow)
    objects: list[dict[str, Any]] = []
    sun = rng.uniform(0, 2 * math.pi)
    shadow_len = rng.uniform(0.5, 4.0) * px_m
    shadow_off = np.array([math.cos(sun), math.sin(sun)]) * shadow_len
    shadow_k = rng.uniform(0.15, 0.5)
    angle = rng.uniform(-math.pi, math.pi)
    ca, sa = math.cos(angle), math.sin(angle)
    mid = np.array([W / 2, H / 2]) + rng.uniform(-w / 4, w / 4, 2)
    diag = math.hypot(W, H)

    # roads and buildings (negatives) first
    for _ in range(rng.integers(0, 3)):
        ra = rng.uniform(-math.pi, math.pi)
        p = rng.uniform(0, W, 2)
        d = np.array([math.cos(ra), math.sin(ra)]) * diag
        road = _jit(rng, (95, 95, 95) if not snow else (180, 180, 185), 20)
        _line(img, p - d, p + d, road, max(1, round(rng.uniform(5, 9) * px_m)))
        for _ in range(rng.integers(0, 4)):  # trucks on the road
            t = rng.uniform(-0.4, 0.4) * diag / 2
            tc = p + np.array([math.cos(ra), math.sin(ra)]) * t
            tl, tw = rng.uniform(8, 16) * px_m, rng.uniform(2.3, 2.6) * px_m
            body = _jit(rng, _CONTAINER[rng.integers(len(_CONTAINER))], 30)
            pts = _corners(tc[0], tc[1], tl, tw, ra)
            _shadow(img, pts, shadow_off * 0.7, shadow_k)
            _fill(img, pts, body)
            cab = tc + np.array([math.cos(ra), math.sin(ra)]) * (tl / 2 + 1.2 * px_m)
            _fill(img, _corners(cab[0], cab[1], 2.2 * px_m, tw, ra), _jit(rng, (200, 200, 200), 40))
    for _ in range(rng.integers(0, 4)):
        bl, bw = rng.uniform(8, 60) * px_m, rng.uniform(6, 30) * px_m
        ba = angle + rng.choice([0, math.pi / 2]) + rng.normal(0, 0.05)
        bc = rng.uniform(0, W, 2)
        pts = _corners(bc[0], bc[1], bl, bw, ba)
        _shadow(img, pts, shadow_off * 2.5, shadow_k)
        roof = _jit(rng, [(150, 150, 150), (120, 60, 50), (60, 90, 120), (200, 200, 200),
                          (90, 110, 90)][rng.integers(5)], 20)
        _fill(img, pts, roof)
        if rng.random() < 0.5:
            _line(img, *_mid_line(pts), roof * 0.8, 1)

    # tracks and trains
    n_tracks = int(rng.choice([0, 1, 1, 2, 2, 3, 4, 5], p=[0.06, 0.17, 0.17, 0.2, 0.15, 0.1,
                                                          0.08, 0.07]))
    spacing = rng.uniform(4.4, 6.0) * px_m
    offsets = (np.arange(n_tracks) - (n_tracks - 1) / 2) * spacing
    dense_scene = rng.random() < 0.45
    curv = 0.0 if rng.random() < 0.55 else rng.choice([-1, 1]) / (rng.uniform(250, 1500) * px_m)
    normal = np.array([-sa, ca])
    us = np.linspace(-diag / 2, diag / 2, 64)
    for off in offsets:
        base = mid + normal * off

        def path(u: np.ndarray | float, base: np.ndarray = base) -> np.ndarray:
            u = np.asarray(u, float)[..., None]
            return base + np.array([ca, sa]) * u + normal * (curv * u**2 / 2)

        ballast = _jit(rng, (120, 110, 100) if not snow else (200, 200, 205), 15)
        _polyline(img, path(us), ballast, max(1, round(3.4 * px_m)))
        if tracks_out is not None:
            tracks_out.append(path(us) - pad)
        rail = _jit(rng, (55, 50, 45), 10)
        gauge = 0.76 * px_m
        for sg in (-1, 1):
            _polyline(img, path(us) + normal * gauge * sg, rail, 1)
        if rng.random() < (0.9 if dense_scene else 0.55):
            _train(rng, img, objects, path, diag, px_m, snow, dense_scene,
                   shadow_off, shadow_k)

    # container yard
    if rng.random() < 0.35:
        _yard(rng, img, objects, mid, angle + rng.choice([0, math.pi / 2]) + rng.normal(0, 0.03),
              px_m, shadow_off, shadow_k, avoid=offsets, track_angle=angle)

    # conditions
    img = _conditions(rng, img, objects, snow)

    # crop and finalise objects
    img = img[pad:pad + h, pad:pad + w]
    out: list[dict[str, Any]] = []
    for o in objects:
        o["cx"] -= pad
        o["cy"] -= pad
        c = _corners(o["cx"], o["cy"], o["length_px"], o["width_px"], o["angle_rad"])
        inside = (c[:, 0] >= 0) & (c[:, 0] < w) & (c[:, 1] >= 0) & (c[:, 1] < h)
        if not (-2 <= o["cx"] < w + 2 and -2 <= o["cy"] < h + 2):
            continue
        o["truncated"] = bool(not inside.all())
        if o["truncated"]:
            o["visible"] = _visible_fraction(c, w, h)
        else:
            o["visible"] = 1.0
        o["color"] = "#{:02x}{:02x}{:02x}".format(*(int(v) for v in o.pop("_rgb")))
        out.append(o)
    return np.clip(img, 0, 255).astype(np.uint8), out


def _mid_line(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (pts[0] + pts[3]) / 2, (pts[1] + pts[2]) / 2


def _visible_fraction(c: np.ndarray, w: int, h: int) -> float:
    from shapely.geometry import Polygon, box

    p = Polygon(c)
    return float(p.intersection(box(0, 0, w, h)).area / max(p.area, 1e-9))


def _polyline(img: np.ndarray, pts: np.ndarray, color: Any, thick: int) -> None:
    cv2.polylines(img, [np.round(pts * _F).astype(np.int32)], False, _col(color), thick,
                  cv2.LINE_AA, _SHIFT)


def _train(rng: np.random.Generator, img: np.ndarray, objects: list[dict[str, Any]],
           path: Callable[[float], np.ndarray], diag: float, px_m: float, snow: bool,
           dense: bool, shadow_off: np.ndarray, shadow_k: float) -> None:
    start = -diag / 2 if dense or rng.random() < 0.5 else rng.uniform(-diag / 2, diag / 4)
    end = diag / 2 if dense or rng.random() < 0.5 else rng.uniform(start + 20 * px_m, diag / 2)
    homo = rng.random() < 0.5
    weights = np.array([0.24, 0.2, 0.2, 0.14, 0.08, 0.06, 0.08])
    main_cls = RAILCAR_CLASSES[rng.choice(7, p=weights)]
    main_color = _jit(rng, _PALETTE[main_cls][rng.integers(len(_PALETTE[main_cls]))], 12)
    cover_rate = rng.choice([0.0, 0.1, 0.5, 0.9])
    u = start
    gap_m = rng.uniform(0.5, 1.6)
    while u < end:
        cls = main_cls if homo and rng.random() < 0.9 else RAILCAR_CLASSES[rng.choice(7, p=weights)]
        lo, hi = LENGTHS_M[cls]
        length_m = rng.uniform(lo, hi)
        if cls == "locomotive" and rng.random() < 0.15:
            length_m = rng.uniform(33, 36)
        width_m = rng.uniform(2.9, 3.4)
        L, Wd = length_m * px_m, width_m * px_m
        if cls == main_cls and rng.random() < 0.8:
            color = _jit(rng, main_color, 8)
        else:
            color = _jit(rng, _PALETTE[cls][rng.integers(len(_PALETTE[cls]))], 18)
        covered = bool(cls in ("flatcar", "hopper", "other", "boxcar") and rng.random() < cover_rate
                       and (cls != "boxcar" or rng.random() < 0.2))
        p0, p1 = path(u), path(u + L)
        ctr = (p0 + p1) / 2  # a car is the chord between its two ends on the centre line
        a = math.atan2(p1[1] - p0[1], p1[0] - p0[0]) + rng.normal(0, 0.01)
        pts = _corners(ctr[0], ctr[1], L, Wd, a)
        _shadow(img, pts, shadow_off, shadow_k)
        _draw_car(rng, img, ctr[0], ctr[1], L, Wd, a, cls, color, covered, snow, px_m)
        objects.append(dict(cx=ctr[0], cy=ctr[1], length_px=L, width_px=Wd, angle_rad=a,
                            kind="railcar", **{"class": cls}, covered=covered, _rgb=color,
                            length_m=length_m, occluded=False, truncated=False))
        gap = max(0.35, gap_m + rng.normal(0, 0.2)) * px_m
        if not dense and rng.random() < 0.08:
            gap += rng.uniform(3, 40) * px_m  # uncoupled cut
        u += L + gap


def _yard(rng: np.random.Generator, img: np.ndarray, objects: list[dict[str, Any]],
          mid: np.ndarray, angle: float, px_m: float, shadow_off: np.ndarray,
          shadow_k: float, avoid: np.ndarray, track_angle: float) -> None:
    ca, sa = math.cos(angle), math.sin(angle)
    along, across = np.array([ca, sa]), np.array([-sa, ca])
    # place the yard beside the tracks
    side = rng.choice([-1, 1])
    shift = (np.abs(avoid).max() if len(avoid) else 0) + rng.uniform(8, 25) * px_m
    tn = np.array([-math.sin(track_angle), math.cos(track_angle)])
    origin = mid + tn * side * shift + rng.uniform(-30, 30, 2) * px_m
    rows, cols = int(rng.integers(1, 6)), int(rng.integers(1, 8))
    long = rng.random() < 0.5
    lm = 12.19 if long else 6.06
    gap_row = rng.uniform(0.3, 2.5)
    gap_col = rng.uniform(0.4, 3.0)
    for r in range(rows):
        for k in range(cols):
            if rng.random() < 0.15:
                continue
            l_m = lm if rng.random() < 0.85 else (6.06 if long else 12.19)
            ctr = origin + along * k * (lm + gap_col) * px_m + across * r * (2.44 + gap_row) * px_m
            ctr = ctr + rng.normal(0, 0.15, 2) * px_m
            a = angle + rng.normal(0, 0.02)
            L, Wd = l_m * px_m, 2.44 * px_m
            color = _jit(rng, _CONTAINER[rng.integers(len(_CONTAINER))], 15)
            pts = _corners(ctr[0], ctr[1], L, Wd, a)
            _shadow(img, pts, shadow_off, shadow_k)
            _fill(img, pts, color)
            for uu in np.linspace(-L / 2 + 1, L / 2 - 1, int(l_m)):
                c0 = ctr + along * uu
                _line(img, c0 - across * Wd * 0.45, c0 + across * Wd * 0.45, color * 0.85)
            objects.append(dict(cx=ctr[0], cy=ctr[1], length_px=L, width_px=Wd, angle_rad=a,
                                kind="container", **{"class": ""}, covered=False, _rgb=color,
                                length_m=l_m, occluded=False, truncated=False))


def _conditions(rng: np.random.Generator, img: np.ndarray, objects: list[dict[str, Any]],
                snow: bool) -> np.ndarray:
    H, W = img.shape[:2]
    # illumination and colour balance
    img = img * rng.uniform(0.7, 1.25) + rng.normal(0, 12)
    img = img * rng.uniform(0.88, 1.12, 3)
    if rng.random() < 0.3:
        gamma = rng.uniform(0.7, 1.4)
        img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
    # haze
    if rng.random() < 0.3:
        a = rng.uniform(0.1, 0.55)
        haze = np.array([200, 205, 210.0]) + rng.normal(0, 10, 3)
        img = img * (1 - a) + haze * a
    # clouds
    if rng.random() < 0.2:
        field = _noise_field(rng, H, W, 48) + rng.uniform(-1.5, 0.5)
        alpha = np.clip(field * rng.uniform(0.6, 1.5), 0, 1)[..., None]
        img = img * (1 - alpha) + 240 * alpha
        for o in objects:
            x, y = int(np.clip(o["cx"], 0, W - 1)), int(np.clip(o["cy"], 0, H - 1))
            if alpha[y, x, 0] > 0.55:
                o["occluded"] = True
    # resampling: simulate imagery at another GSD resampled to this one
    if rng.random() < 0.5:
        f = rng.uniform(0.55, 1.0) if rng.random() < 0.7 else rng.uniform(1.0, 1.6)
        small = cv2.resize(img, (max(8, int(W * f)), max(8, int(H * f))),
                           interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        img = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.4:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.1))
    img = img + rng.normal(0, rng.uniform(0, 7), img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 95))])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return img.astype(np.float32)


def objects_to_detections(objects: list[dict[str, Any]], transform: Any, crs: Any) -> Any:
    """Truth ``Detections`` (map CRS) from chip objects in pixel-centre coordinates."""
    from railwatch.types import Detections

    n = len(objects)
    corners = np.array([_corners(o["cx"] + 0.5, o["cy"] + 0.5, o["length_px"], o["width_px"],
                                 o["angle_rad"]) for o in objects]).reshape(n, 4, 2)
    flat = corners.reshape(-1, 2)
    a, b, c, d, e, f = tuple(transform)[:6]
    xs = a * flat[:, 0] + b * flat[:, 1] + c
    ys = d * flat[:, 0] + e * flat[:, 1] + f
    fp = np.stack([np.asarray(xs), np.asarray(ys)], axis=-1).reshape(n, 4, 2)
    rgb = [tuple(int(o["color"][i:i + 2], 16) for i in (1, 3, 5)) for o in objects]
    return Detections(
        footprints=fp,
        kind=[o["kind"] for o in objects],
        cls=[o["class"] if o["kind"] == "railcar" else "" for o in objects],
        score=np.ones(n),
        covered=[bool(o["covered"]) for o in objects],
        color=np.asarray(rgb, np.uint8).reshape(n, 3),
        length_m=[float(o["length_m"]) for o in objects],
        crs=crs,
        extra={"occluded": np.array([bool(o["occluded"] or o.get("visible", 1.0) < 0.45)
                                     for o in objects], dtype=bool)},
    )


def write_scene(out_dir: Any, name: str, seed: int, size_px: int = 1024, gsd: float = 0.5,
                origin: tuple[float, float] = (500000.0, 4700000.0), crs: str = "EPSG:32652",
                ) -> tuple[Any, Any]:
    """Render one scene as a GeoTIFF ``name.tif`` plus ``name.truth.geojson`` (tests, bench).

    Returns both paths. Uses a UTM CRS with the given origin (upper-left corner).
    """
    from pathlib import Path

    import rasterio
    from rasterio.transform import from_origin

    from railwatch.geojson import write_geojson

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image, objects = generate_chip(rng, size_px, gsd)
    transform = from_origin(origin[0], origin[1], gsd, gsd)
    tif = out / f"{name}.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=size_px, height=size_px, count=3,
                       dtype="uint8", crs=crs, transform=transform, tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate") as ds:
        ds.write(np.transpose(image, (2, 0, 1)))
    truth = write_geojson(objects_to_detections(objects, transform, crs),
                          out / f"{name}.truth.geojson", include_score=False)
    return tif, truth
