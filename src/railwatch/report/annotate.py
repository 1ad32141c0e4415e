"""Annotated image chips: a decimated window of a GeoTIFF with every detection drawn.

Footprints are reprojected with pyproj (``Detections.to_crs``) into the image CRS and
mapped to pixels with the window's affine transform (rasterio); opencv draws them.
Railcars are outlined in their class colour; covered loads get a white cross; shipping
containers a thin white outline.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import transform_geom
from rasterio.windows import Window, from_bounds
from shapely.geometry import Polygon, mapping, shape

from railwatch.types import Detections

#: Drawing colour per railcar class (RGB); also used by the legend and the charts.
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "boxcar": (255, 140, 0),
    "tank": (30, 144, 255),
    "hopper": (220, 20, 60),
    "flatcar": (50, 205, 50),
    "locomotive": (255, 215, 0),
    "passenger": (186, 85, 211),
    "other": (160, 160, 160),
}
CONTAINER_COLOR: tuple[int, int, int] = (255, 255, 255)


def class_hex(cls: str) -> str:
    """``#rrggbb`` of a class colour."""
    r, g, b = CLASS_COLORS.get(cls, CLASS_COLORS["other"])
    return f"#{r:02x}{g:02x}{b:02x}"


@dataclass
class Chip:
    """An RGB picture (H, W, 3 uint8) with the map transform and CRS of its pixels."""

    image: np.ndarray
    transform: Affine
    crs: Any


def _to_uint8(data: np.ndarray) -> np.ndarray:
    """(bands, H, W) of any dtype -> (H, W, 3) uint8, stretched by 1/99 percentiles if needed."""
    data = data[:3] if data.shape[0] >= 3 else np.repeat(data[:1], 3, axis=0)
    if data.dtype == np.uint8:
        out = data
    else:
        valid = data[np.isfinite(data)] if np.issubdtype(data.dtype, np.floating) else data
        lo, hi = (np.percentile(valid, [1, 99]) if valid.size else (0, 1))
        hi = hi if hi > lo else lo + 1
        out = np.clip((data.astype(np.float64) - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.transpose(out, (1, 2, 0)))


def read_chip(
    path: str,
    bounds: tuple[float, float, float, float] | None = None,
    bounds_crs: Any = None,
    max_size: int = 1400,
) -> Chip:
    """Read ``bounds`` (minx, miny, maxx, maxy in ``bounds_crs``; default the whole image),
    decimated so the longer side is at most ``max_size`` pixels."""
    with rasterio.open(path) as src:
        if bounds is None:
            win = Window(0, 0, src.width, src.height)
        else:
            if bounds_crs is not None and src.crs is not None:
                g = transform_geom(bounds_crs, src.crs, mapping(_box(bounds)))
                bounds = shape(g).bounds
            win = from_bounds(*bounds, transform=src.transform)
            win = win.intersection(Window(0, 0, src.width, src.height))
            win = Window(
                int(np.floor(win.col_off)), int(np.floor(win.row_off)),
                max(1, int(np.ceil(win.width))), max(1, int(np.ceil(win.height))),
            )
        scale = max(win.width, win.height) / max_size
        scale = max(scale, 1.0)
        out_h = max(1, round(win.height / scale))
        out_w = max(1, round(win.width / scale))
        data = src.read(
            out_shape=(min(src.count, 3), out_h, out_w),
            indexes=list(range(1, min(src.count, 3) + 1)),
            window=win,
            resampling=Resampling.average if scale > 1 else Resampling.nearest,
        )
        wt = src.window_transform(win) @ Affine.scale(win.width / out_w, win.height / out_h)
        return Chip(_to_uint8(data), wt, src.crs)


def _box(b: tuple[float, float, float, float]) -> Polygon:
    x0, y0, x1, y1 = b
    return Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def draw_detections(chip: Chip, det: Detections, thickness: int | None = None) -> np.ndarray:
    """A copy of the chip's picture with ``det`` drawn on it."""
    img = chip.image.copy()
    if len(det) == 0:
        return img
    d = det.to_crs(chip.crs) if chip.crs is not None else det
    inv = ~chip.transform
    px_per_m = 1.0 / abs(chip.transform.a) if chip.transform.a else 1.0
    t = thickness or (1 if px_per_m < 0.8 else 2)
    for i in range(len(d)):
        x, y = d.footprints[i, :, 0], d.footprints[i, :, 1]
        cols, rows = inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f
        pts = np.round(np.stack([cols, rows], axis=-1)).astype(np.int32)
        if d.kind[i] == "container":
            cv2.polylines(img, [pts], True, CONTAINER_COLOR, 1, cv2.LINE_8)
            continue
        colour = CLASS_COLORS.get(str(d.cls[i]), CLASS_COLORS["other"])
        cv2.polylines(img, [pts], True, colour, t, cv2.LINE_8)
        if d.covered[i]:
            p = pts.astype(np.float64)
            if np.linalg.norm(p[1] - p[0]) >= 12 or np.linalg.norm(p[2] - p[1]) >= 12:
                # a cross inside the outline, shrunk so the class colour stays visible
                c = p.mean(axis=0)
                q = np.round(c + 0.7 * (p - c)).astype(np.int32)
                cv2.line(img, tuple(q[0]), tuple(q[2]), (255, 255, 255), 1, cv2.LINE_8)
                cv2.line(img, tuple(q[1]), tuple(q[3]), (255, 255, 255), 1, cv2.LINE_8)
            else:  # too small for a cross: a white centre dot
                cx, cy = np.round(p.mean(axis=0)).astype(int)
                if 0 <= cy < img.shape[0] and 0 <= cx < img.shape[1]:
                    img[cy, cx] = (255, 255, 255)
    return img


def annotated_image(
    path: str,
    det: Detections,
    aoi: Polygon | None = None,
    max_size: int = 1400,
    pad_m: float = 30.0,
) -> np.ndarray:
    """The image (cropped to the AOI, in EPSG:4326, if given) with every detection drawn."""
    bounds = None
    crs = None
    if aoi is not None:
        bounds, crs = aoi.bounds, "EPSG:4326"
    chip = read_chip(path, bounds, crs, max_size=max_size)
    return draw_detections(chip, det)


def busiest_window(
    det: Detections, size_m: float = 220.0
) -> tuple[float, float, float, float] | None:
    """Bounds (in the detections' CRS, which must be metric) of the square holding most railcars."""
    rail = det.railcars
    if len(rail) == 0:
        return None
    c = rail.centers
    best, best_n = c[0], -1
    half = size_m / 2
    for x, y in c:
        n = int(np.sum((np.abs(c[:, 0] - x) <= half) & (np.abs(c[:, 1] - y) <= half)))
        if n > best_n:
            best, best_n = (x, y), n
    inside = (np.abs(c[:, 0] - best[0]) <= half) & (np.abs(c[:, 1] - best[1]) <= half)
    cx, cy = c[inside].mean(axis=0)
    return (cx - half, cy - half, cx + half, cy + half)


def busiest_chip(
    path: str, det: Detections, size_m: float = 220.0, max_size: int = 700
) -> np.ndarray | None:
    """A zoomed chip around the densest group of railcars, detections drawn."""
    with rasterio.open(path) as src:
        crs = src.crs
    if crs is None or not crs.is_projected:
        return None
    d = det.to_crs(crs)
    b = busiest_window(d, size_m)
    if b is None:
        return None
    chip = read_chip(path, b, crs, max_size=max_size)
    img = draw_detections(chip, d)
    if max(img.shape[:2]) < max_size // 2:  # upsample small chips so they read
        f = (max_size // 2) / max(img.shape[:2])
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
    return img


def to_data_uri(img: np.ndarray, fmt: str = "jpeg", quality: int = 85) -> str:
    """An RGB uint8 array as a ``data:image/...;base64`` URI (JPEG or PNG)."""
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr)
        mime = "image/png"
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        mime = "image/jpeg"
    if not ok:
        raise ValueError("could not encode image")
    return f"data:{mime};base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def side_by_side(images: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """Pictures next to each other at a common height (for before/after pairs)."""
    h = min(i.shape[0] for i in images)
    resized = [cv2.resize(i, (max(1, round(i.shape[1] * h / i.shape[0])), h)) for i in images]
    spacer = np.full((h, gap, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for k, im in enumerate(resized):
        if k:
            parts.append(spacer)
        parts.append(im)
    return np.concatenate(parts, axis=1)
