"""Clouds and no-data: how much of an AOI an image really shows.

`cloud_mask` finds clouds as bright, low-saturation, low-texture regions at a coarse scale
(cells of about ``cell_m`` metres): rails, wagons, roofs and yards are textured or small;
cloud decks are smooth and large. `cloud_fraction_in` applies it to a decimated read of
an image (overviews when the file has them; at most ``max_side`` pixels on a side, never
the whole raster at full resolution) and returns the usable share of a polygon: inside
the image, with valid data, not under cloud.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from railwatch.errors import InputError


def _unit(rgb: np.ndarray) -> np.ndarray:
    """Colour in 0..1: 8-bit by 255, other types by their 99.8th percentile."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[-1] != 3 and a.shape[0] == 3:
        a = np.moveaxis(a, 0, -1)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    hi = float(np.percentile(a[a > 0], 99.8)) if np.any(a > 0) else 1.0
    return np.clip(a / max(hi, 1e-6), 0.0, 1.0)


def cloud_mask(
    rgb: np.ndarray,
    gsd_m: float,
    *,
    cell_m: float = 8.0,
    brightness: float = 0.62,
    max_saturation: float = 0.16,
    max_texture: float = 0.05,
    min_area_m2: float = 2500.0,
) -> np.ndarray:
    """Boolean (H, W) mask of cloud in an RGB image (H, W, 3) of ground sample ``gsd_m``.

    A coarse cell is cloud when its mean brightness is above ``brightness``, its
    saturation ((max - min) / max of the mean colour) below ``max_saturation`` and the
    brightness scatter inside it and over its 3x3 neighbourhood below ``max_texture``;
    cloud regions smaller than ``min_area_m2`` are dropped, gaps are closed.
    """
    img = _unit(rgb)
    h, w = img.shape[:2]
    k = max(1, round(cell_m / max(gsd_m, 1e-6)))
    hc, wc = -(-h // k), -(-w // k)
    pad = np.pad(img, ((0, hc * k - h), (0, wc * k - w), (0, 0)), mode="edge")
    cells = pad.reshape(hc, k, wc, k, 3)
    mean = cells.mean(axis=(1, 3))  # (hc, wc, 3)
    v = pad.mean(axis=2).reshape(hc, k, wc, k)
    inner = v.std(axis=(1, 3))
    bright = mean.mean(axis=2)
    mx, mn = mean.max(axis=2), mean.min(axis=2)
    sat = (mx - mn) / np.maximum(mx, 1e-6)
    m1 = ndimage.uniform_filter(bright, size=3, mode="nearest")
    m2 = ndimage.uniform_filter(bright * bright, size=3, mode="nearest")
    local = np.sqrt(np.maximum(m2 - m1 * m1, 0.0))
    loose = (bright > brightness) & (sat < max_saturation)
    core = loose & (inner < max_texture) & (local < 2 * max_texture)
    cell_area = (k * gsd_m) ** 2
    lab, n = ndimage.label(core)
    if n:
        sizes = ndimage.sum(core, lab, index=np.arange(1, n + 1)) * cell_area
        keep = np.zeros(n + 1, bool)
        keep[1:] = sizes >= min_area_m2
        core = keep[lab]
    # grow the smooth cores into neighbouring bright, grey cells (hysteresis), then one
    # more cell, and decide the edge pixel by pixel
    lab, n = ndimage.label(loose | core)
    if n:
        hit = np.zeros(n + 1, bool)
        hit[np.unique(lab[core])] = True
        hit[0] = False
        core = hit[lab]
    grown = ndimage.binary_dilation(core, iterations=1) if core.any() else core
    full = np.repeat(np.repeat(grown, k, axis=0), k, axis=1)[:h, :w]
    px = ndimage.uniform_filter(img, size=(3, 3, 1), mode="nearest")
    pmax, pmin = px.max(axis=2), px.min(axis=2)
    pix = (px.mean(axis=2) > brightness) & ((pmax - pmin) / np.maximum(pmax, 1e-6) < max_saturation)
    return full & pix


@dataclass(frozen=True)
class Coverage:
    """How much of a polygon an image shows (fractions of the polygon's area)."""

    inside: float  # within the image bounds
    nodata: float  # within the bounds but without valid data
    cloud: float  # valid data under cloud
    usable: float  # inside, valid and not cloud
    decimation: int  # the read was 1/decimation of full resolution per axis


def cloud_fraction_in(
    path: str | Path, polygon: Any, *, max_side: int = 1024, gsd_m: float | None = None
) -> Coverage:
    """The share of ``polygon`` (shapely, EPSG:4326) that ``path`` shows usably.

    Reads the RGB bands decimated to at most ``max_side`` pixels on the longer side of the
    polygon's window (rasterio uses overviews when present), plus the dataset mask.
    """
    import rasterio
    import shapely
    from rasterio.features import geometry_mask
    from rasterio.transform import Affine
    from rasterio.warp import transform_geom
    from rasterio.windows import Window, from_bounds
    from shapely.geometry import box, shape

    from railwatch.imagery.read import rgb_bands

    path = Path(path)
    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot open image ({exc})", path) from None
    with ds:
        if ds.crs is None:
            raise InputError("image has no CRS", path)
        poly = shape(transform_geom("EPSG:4326", ds.crs, shapely.geometry.mapping(polygon)))
        if poly.is_empty or poly.area <= 0:
            raise InputError("empty polygon", path)
        bounds = box(*ds.bounds)
        inside_geom = poly.intersection(bounds)
        inside = float(inside_geom.area / poly.area)
        if inside <= 0:
            return Coverage(0.0, 0.0, 0.0, 0.0, 1)
        win = from_bounds(*inside_geom.bounds, transform=ds.transform)
        c0, r0 = max(0, int(np.floor(win.col_off))), max(0, int(np.floor(win.row_off)))
        c1 = min(ds.width, int(np.ceil(win.col_off + win.width)))
        r1 = min(ds.height, int(np.ceil(win.row_off + win.height)))
        win = Window(c0, r0, max(1, c1 - c0), max(1, r1 - r0))
        dec = max(1, int(np.ceil(max(win.width, win.height) / max_side)))
        out_h, out_w = max(1, int(win.height // dec)), max(1, int(win.width // dec))
        bands = rgb_bands(ds)
        rgb = ds.read(list(bands), window=win, out_shape=(len(bands), out_h, out_w))
        valid = ds.read_masks(1, window=win, out_shape=(out_h, out_w)) > 0
        if ds.count >= 3:
            valid &= np.any(rgb > 0, axis=0)
        tr = ds.window_transform(win) @ Affine.scale(win.width / out_w, win.height / out_h)
        in_poly = ~geometry_mask([shapely.geometry.mapping(poly)], (out_h, out_w), tr,
                                 all_touched=False)
        if not in_poly.any():
            return Coverage(inside, 0.0, 0.0, inside, dec)
        if gsd_m is None:
            gsd_m = float(abs(ds.transform.a))
            if ds.crs.is_geographic:
                gsd_m *= 111_320.0 * np.cos(np.radians(polygon.centroid.y))
        rgb_hwc = np.moveaxis(rgb, 0, -1) if len(bands) == 3 else rgb[0]
        cloud = cloud_mask(rgb_hwc, gsd_m * dec) & valid
        npx = float(in_poly.sum())
        nodata = float((in_poly & ~valid).sum()) / npx
        cl = float((in_poly & cloud).sum()) / npx
    return Coverage(
        inside=inside,
        nodata=inside * nodata,
        cloud=inside * cl,
        usable=max(0.0, inside * (1.0 - nodata - cl)),
        decimation=dec,
    )
