"""Windowed reads for the stages after ingest (never the whole raster at once).

``iter_windows`` says *which* windows to read (tiles with overlap, optionally only those
touching an AOI); ``read_window`` reads one as 8-bit: 16-bit and float images are scaled
to 0..255 by per-band 2nd-98th percentiles, taken once per image from a sparse sample of
blocks (``band_scaling``) so that every window of an image is scaled alike. A 1-band
panchromatic image is returned as one band (``rgb=True`` repeats it to three).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from shapely.geometry import box

#: Percentiles used to stretch 16-bit and float imagery to 8-bit.
SCALE_PERCENTILES = (2.0, 98.0)


@dataclass(frozen=True)
class Scaling:
    """How an image's bands map to 8-bit: ``(value - lo) / (hi - lo) * 255``."""

    bands: tuple[int, ...]  # 1-based band indexes read (RGB order, or the one pan band)
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    note: str = ""


def rgb_bands(ds: Any) -> tuple[int, ...]:
    """Band indexes in R, G, B order (by colour interpretation, else 1-3); (1,) for pan."""
    if ds.count < 3:
        return (1,)
    ci = list(ds.colorinterp)
    want = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in ci for c in want):
        return tuple(ci.index(c) + 1 for c in want)
    return (1, 2, 3)


def _sample_windows(ds: Any, n: int = 4, size: int = 256) -> list[Window]:
    wins = []
    for fy in np.linspace(0, 1, n):
        for fx in np.linspace(0, 1, n):
            w, h = min(size, ds.width), min(size, ds.height)
            wins.append(Window(int(fx * (ds.width - w)), int(fy * (ds.height - h)), w, h))
    return wins


@functools.lru_cache(maxsize=64)
def _scaling_cached(path: str, mtime: float) -> Scaling:
    with rasterio.open(path) as ds:
        bands = rgb_bands(ds)
        dtype = ds.dtypes[0]
        if dtype == "uint8":
            return Scaling(bands, (0.0,) * len(bands), (255.0,) * len(bands))
        samples = [ds.read(list(bands), window=w, masked=True) for w in _sample_windows(ds)]
    lo, hi = [], []
    for b in range(len(bands)):
        vals = np.concatenate([np.ma.compressed(s[b]) for s in samples]).astype(np.float64)
        vals = vals[np.isfinite(vals) & (vals != 0)] if vals.size else vals
        if vals.size == 0:
            lo.append(0.0)
            hi.append(1.0)
            continue
        p_lo, p_hi = np.percentile(vals, SCALE_PERCENTILES)
        lo.append(float(p_lo))
        hi.append(float(p_hi if p_hi > p_lo else p_lo + 1.0))
    note = (f"{dtype} scaled to 8-bit by per-band {SCALE_PERCENTILES[0]:g}-"
            f"{SCALE_PERCENTILES[1]:g} percentiles")
    return Scaling(bands, tuple(lo), tuple(hi), note)


def band_scaling(path: str | Path) -> Scaling:
    """The image's 8-bit scaling (cached per file and modification time)."""
    p = Path(path)
    return _scaling_cached(str(p.resolve()), p.stat().st_mtime)


def read_window(
    path: str | Path, window: Window, *, rgb: bool = False, scaling: Scaling | None = None
) -> np.ndarray:
    """Pixels of ``window`` as uint8, shape (bands, rows, cols): 3 for colour, 1 for pan.

    Parts of the window outside the image are 0. ``rgb=True`` always returns 3 bands.
    """
    sc = scaling or band_scaling(path)
    with rasterio.open(path) as ds:
        inside = (window.col_off >= 0 and window.row_off >= 0
                  and window.col_off + window.width <= ds.width
                  and window.row_off + window.height <= ds.height)
        # a boundless read goes through a VRT (several times slower): only when needed
        data = ds.read(list(sc.bands), window=window, boundless=not inside,
                       **({} if inside else {"fill_value": 0}))
    if data.dtype == np.uint8 and sc.lo == (0.0,) * len(sc.bands):
        out = data
    else:
        lo = np.asarray(sc.lo, dtype=np.float64)[:, None, None]
        hi = np.asarray(sc.hi, dtype=np.float64)[:, None, None]
        scaled = (data.astype(np.float64) - lo) / (hi - lo) * 255.0
        out = np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
    if rgb and out.shape[0] == 1:
        out = np.repeat(out, 3, axis=0)
    return out


def iter_windows(
    path_or_shape: str | Path | tuple[int, int],
    size: int = 1024,
    overlap: int = 128,
    aoi: Any | None = None,
) -> Iterator[Window]:
    """Windows of ``size`` pixels with ``overlap`` covering the image, row by row.

    ``path_or_shape``: an image path or ``(height, width)``. Edge windows are shifted
    inwards so each is full size where the image allows. With ``aoi`` (a lon/lat shapely
    geometry; needs a path) only windows touching the AOI are yielded.
    """
    if size <= overlap:
        raise ValueError("window size must be larger than the overlap")
    transform = crs = None
    if isinstance(path_or_shape, tuple):
        height, width = path_or_shape
    else:
        with rasterio.open(path_or_shape) as ds:
            height, width, transform, crs = ds.height, ds.width, ds.transform, ds.crs
    local_aoi = None
    if aoi is not None:
        if transform is None or crs is None:
            raise ValueError("an AOI filter needs a georeferenced image path")
        import shapely

        tr = Transformer.from_crs(4326, crs.to_wkt(), always_xy=True)
        local_aoi = shapely.transform(aoi, tr.transform, interleaved=False)
    step = size - overlap

    def starts(n: int) -> list[int]:
        if n <= size:
            return [0]
        s = list(range(0, n - size, step))
        return [*s, n - size]

    for row in starts(height):
        for col in starts(width):
            win = Window(col, row, min(size, width - col), min(size, height - row))
            if local_aoi is not None:
                assert transform is not None
                x0, y0 = transform @ (col, row)
                x1, y1 = transform @ (col + win.width, row + win.height)
                if not box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)).intersects(
                    local_aoi
                ):
                    continue
            yield win
