"""Test rasters made by code: georeferenced GeoTIFFs over the Tumangang AOI (reusable).

``make_geotiff(path, ...)`` writes a small GeoTIFF centred on the Tumangang station
(or anywhere else) in EPSG:32652, EPSG:4326 or any CRS, with chosen size, resolution,
bands, dtype, tags, tiling/compression, sparse (no data written) or given pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import CRS, Transformer
from rasterio.transform import from_origin

#: Tumangang station, about (lon, lat); the built-in AOI is centred near here.
TUMANGANG_CENTER = (130.6026, 42.4217)
DEFAULT_TAGS = {
    "ACQUISITION_DATETIME": "2023-10-05T02:30:00Z",
    "TIFFTAG_DATETIME": "2023:10:05 02:30:00",
    "SENSOR": "SkySat",
}


def default_res(crs: Any, metres: float = 5.0) -> tuple[float, float]:
    """A pixel size of about ``metres`` in the units of ``crs`` (degrees for geographic)."""
    crs = CRS.from_user_input(crs)
    if crs.is_geographic:
        lat = np.radians(TUMANGANG_CENTER[1])
        return metres / (111_320.0 * np.cos(lat)), metres / 111_132.0
    return metres, metres


def make_geotiff(
    path: str | Path,
    *,
    crs: Any = "EPSG:32652",
    center: tuple[float, float] = TUMANGANG_CENTER,
    res: float | tuple[float, float] | None = None,
    width: int = 256,
    height: int = 256,
    count: int = 3,
    dtype: str = "uint8",
    tags: Mapping[str, str] | None = None,
    data: np.ndarray | None = None,
    sparse: bool = False,
    tiled: bool = False,
    blocksize: int = 256,
    compress: str | None = "deflate",
    georeferenced: bool = True,
    seed: int = 0,
    colorinterp: list[Any] | None = None,
) -> Path:
    """Write a GeoTIFF whose centre is ``center`` (lon, lat); returns the path.

    Default: 256 × 256 RGB uint8 at 5 m in UTM 52N (1.28 km square, covers the whole
    Tumangang AOI), tagged like the simulator's output (``DEFAULT_TAGS``). ``sparse``
    writes no pixels at all (with ``tiled`` and compression the file stays tiny at any
    size). ``tags=None`` means ``DEFAULT_TAGS``; pass ``{}`` for none.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": count, "dtype": dtype,
    }
    if compress:
        profile["compress"] = compress
    if tiled:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if sparse:
        profile["sparse_ok"] = True
    if georeferenced:
        crs_obj = CRS.from_user_input(crs)
        xres, yres = (res, res) if isinstance(res, int | float) else (res or default_res(crs_obj))
        cx, cy = Transformer.from_crs(4326, crs_obj, always_xy=True).transform(*center)
        profile["crs"] = crs_obj.to_wkt()
        profile["transform"] = from_origin(cx - width * xres / 2, cy + height * yres / 2,
                                           xres, yres)
    with rasterio.open(path, "w", **profile) as ds:
        if not sparse:
            if data is None:
                rng = np.random.default_rng(seed)
                hi = 255 if dtype == "uint8" else 4000
                data = rng.integers(0, hi, size=(count, height, width)).astype(dtype)
            ds.write(np.asarray(data, dtype=dtype).reshape(count, height, width))
        ds.update_tags(**(DEFAULT_TAGS if tags is None else dict(tags)))
        if colorinterp is not None:
            ds.colorinterp = colorinterp
    return path


def utm_outline(site_aoi: Any, crs: Any = "EPSG:32652") -> tuple[float, float, float, float]:
    """Bounds of a lon/lat polygon in ``crs`` (for placing rasters relative to an AOI)."""
    tr = Transformer.from_crs(4326, crs, always_xy=True)
    xs, ys = tr.transform(*np.asarray(site_aoi.exterior.coords).T)
    return float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))
