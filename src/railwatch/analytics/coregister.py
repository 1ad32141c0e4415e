"""Co-registration: put every image of a site on one grid, then remove residual shifts.

1. :func:`site_grid` picks the common grid: the site's local metric CRS (its
   ``local_crs`` property, else the UTM zone of its AOI) at a common GSD, covering the AOI.
2. :func:`read_on_grid` resamples an image onto that grid through a
   :class:`rasterio.vrt.WarpedVRT` (only the needed window is read; finer images are
   averaged down), returning a float RGB array and a validity mask.
3. :func:`estimate_shift` measures the sub-pixel shift between two grids' worth of pixels
   by normalised cross-correlation (:func:`cv2.matchTemplate`) of gradient-magnitude
   images, which are far less sensitive to season and illumination than raw colour;
   :func:`apply_shift` moves an image by that shift. The residual after alignment is
   measured again and reported, and an image whose correlation response is too weak is
   flagged as not alignable, with the reason. :func:`estimate_map_shift` matches two maps
   as they are (the change finder's structure maps of images deep snow leaves no ground
   edges in).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from rasterio.enums import ColorInterp, Resampling
from rasterio.vrt import WarpedVRT
from scipy import ndimage
from shapely.geometry import Polygon

from railwatch.errors import InputError
from railwatch.types import Site


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid in a metric CRS: where every image of a site is compared."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def gsd_m(self) -> float:
        return float(self.transform.a)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def pixel_to_map(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of pixel positions (``rows``/``cols`` may be fractional)."""
        x = self.transform.c + self.transform.a * np.asarray(cols, dtype=float)
        y = self.transform.f + self.transform.e * np.asarray(rows, dtype=float)
        return x, y


def site_crs(site: Site) -> CRS:
    """The site's local metric CRS: its ``local_crs`` property, else the UTM zone of its AOI."""
    local = (site.properties or {}).get("local_crs")
    if local:
        return CRS.from_user_input(local)
    lon, lat = site.aoi.centroid.x, site.aoi.centroid.y
    info = query_utm_crs_info(
        datum_name="WGS 84",
        area_of_interest=AreaOfInterest(lon, lat, lon, lat),
    )
    if not info:
        raise InputError(f"site {site.name!r}: no UTM zone found for its AOI")
    return CRS.from_epsg(int(info[0].code))


def to_local(geom: Any, crs: CRS) -> Any:
    """A lon/lat (EPSG:4326) shapely geometry in ``crs``."""
    tr = Transformer.from_crs(4326, crs, always_xy=True)
    return shapely.transform(geom, tr.transform, interleaved=False)


def to_lonlat(geom: Any, crs: CRS) -> Any:
    """A shapely geometry in ``crs`` in lon/lat (EPSG:4326)."""
    tr = Transformer.from_crs(crs, 4326, always_xy=True)
    return shapely.transform(geom, tr.transform, interleaved=False)


def site_grid(site: Site, gsd_m: float = 1.0, margin_m: float = 0.0) -> Grid:
    """The common comparison grid of ``site``: its AOI in the local CRS at ``gsd_m``."""
    if gsd_m <= 0:
        raise InputError(f"GSD must be positive, got {gsd_m}")
    crs = site_crs(site)
    aoi: Polygon = to_local(site.aoi, crs)
    minx, miny, maxx, maxy = aoi.buffer(margin_m).bounds
    minx = np.floor(minx / gsd_m) * gsd_m
    maxy = np.ceil(maxy / gsd_m) * gsd_m
    width = int(np.ceil((maxx - minx) / gsd_m))
    height = int(np.ceil((maxy - miny) / gsd_m))
    return Grid(crs, Affine(gsd_m, 0.0, minx, 0.0, -gsd_m, maxy), width, height)


def grid_from_bounds(crs: Any, bounds: tuple[float, float, float, float], gsd_m: float) -> Grid:
    """A grid over ``bounds`` (minx, miny, maxx, maxy in ``crs``) at ``gsd_m``."""
    minx, miny, maxx, maxy = bounds
    width = round((maxx - minx) / gsd_m)
    height = round((maxy - miny) / gsd_m)
    transform = Affine(gsd_m, 0.0, minx, 0.0, -gsd_m, maxy)
    return Grid(CRS.from_user_input(crs), transform, width, height)


def _scale_band(band: np.ndarray, valid: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint8":
        return band / 255.0
    v = band[valid]
    top = float(np.percentile(v, 99.5)) if v.size else 1.0
    return band / (top if top > 0 else 1.0)


def read_on_grid(path: str | os.PathLike[str], grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Image ``path`` resampled onto ``grid``: (H, W, 3) float32 RGB about 0..1, valid mask.

    Finer images are averaged down, coarser ones interpolated bilinearly. Single-band
    images are repeated to three bands. Pixels outside the image or masked by its nodata
    or alpha are False in the mask.
    """
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError("not a readable raster image", path) from exc
    with src:
        if src.crs is None:
            raise InputError("image has no CRS (not georeferenced)", path)
        src_res = float(abs(src.transform.a))
        try:
            src_m = src_res * (src.crs.linear_units_factor[1] if src.crs.is_projected else 1e5)
        except Exception:
            src_m = src_res
        resampling = Resampling.average if src_m < grid.gsd_m * 0.9 else Resampling.bilinear
        with WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=resampling,
            src_nodata=src.nodata,
            nodata=src.nodata,
            # Without nodata, an alpha band is what tells "outside the image" from black.
            add_alpha=src.nodata is None and ColorInterp.alpha not in src.colorinterp,
        ) as vrt:
            bands = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
            data = vrt.read(bands, masked=False).astype(np.float32)
            valid = vrt.dataset_mask() > 0
            # WarpedVRT leaves partly covered edge pixels with blend; keep them out.
            valid = ndimage.binary_erosion(valid, iterations=1, border_value=0)
    out = np.stack([_scale_band(b, valid, src.dtypes[0]) for b in data], axis=-1)
    out[~valid] = 0.0
    return np.clip(out, 0.0, 4.0).astype(np.float32), valid


def gray(rgb: np.ndarray) -> np.ndarray:
    """Luminance of an (H, W, 3) float image."""
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)


def structure_image(g: np.ndarray, valid: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gradient magnitude of log intensity, zero outside ``valid``: the image that is matched.

    ``sigma`` (pixels) smooths first, so that fine texture that differs between sensors
    and seasons weighs less than the outlines of tracks, roads and buildings.
    """
    lg = np.log(np.clip(g, 0, None) + 0.02).astype(np.float32)
    if (~valid).any():
        lg = lg.copy()
        lg[~valid] = float(np.median(lg[valid])) if valid.any() else 0.0
    lg = cv2.GaussianBlur(lg, (0, 0), sigma)
    gx = cv2.Sobel(lg, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lg, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    inner = ndimage.binary_erosion(valid, iterations=3, border_value=0)
    mag[~inner] = 0.0
    # Compress the few strongest edges so that shadows do not dominate the match.
    top = float(np.percentile(mag[inner], 99)) if inner.any() else 1.0
    return np.minimum(mag, top if top > 0 else 1.0)


@dataclass(frozen=True)
class Alignment:
    """Shift of one image against the reference, in pixels of the common grid.

    ``dx``/``dy`` is how far the image content sits right/down of the reference;
    ``residual_px`` is what a second correlation still measures after the correction;
    ``ok`` False means the image was not used, for the stated ``reason``. ``via`` names
    the image it was aligned through (already aligned to the reference) when it could not
    be aligned to the reference directly; then ``response`` and ``residual_px`` are those
    against that image.
    """

    dx: float
    dy: float
    response: float
    residual_px: float
    ok: bool
    reason: str = ""
    via: str = ""


def _ncc_shift(a: np.ndarray, b: np.ndarray, margin: int) -> tuple[float, float, float]:
    """Shift (dx, dy) of ``b``'s content against ``a`` by normalised cross-correlation of
    ``a``'s interior (``margin`` px trimmed) over ``b``; sub-pixel by a parabola through
    the peak and its neighbours. Returns (dx, dy, peak correlation)."""
    h, w = a.shape
    margin = int(min(margin, h // 4, w // 4))
    tmpl = a[margin : h - margin, margin : w - margin]
    if tmpl.std() == 0 or b.std() == 0:
        return 0.0, 0.0, 0.0
    res = cv2.matchTemplate(b, tmpl, cv2.TM_CCOEFF_NORMED)
    _, peak, _, (px, py) = cv2.minMaxLoc(res)

    def sub(c0: float, c1: float, c2: float) -> float:
        den = c0 - 2 * c1 + c2
        return 0.5 * (c0 - c2) / den if den < 0 else 0.0

    fx = sub(res[py, px - 1], res[py, px], res[py, px + 1]) if 0 < px < res.shape[1] - 1 else 0.0
    fy = sub(res[py - 1, px], res[py, px], res[py + 1, px]) if 0 < py < res.shape[0] - 1 else 0.0
    return px + fx - margin, py + fy - margin, float(peak)


def estimate_shift(
    ref: np.ndarray,
    mov: np.ndarray,
    ref_valid: np.ndarray | None = None,
    mov_valid: np.ndarray | None = None,
    *,
    min_response: float = 0.08,
    max_shift_px: float = 30.0,
    max_residual_px: float = 2.0,
) -> Alignment:
    """Sub-pixel shift of gray image ``mov`` against ``ref`` (same grid), with its check.

    Normalised cross-correlation of gradient-magnitude images (the outlines of tracks,
    roads and buildings, far less sensitive to season and light than colour) over
    +-``max_shift_px``, refined to sub-pixel; the shift is applied and measured again to
    report the residual. A correlation peak below ``min_response``, a shift at the edge of
    the search, or a residual above ``max_residual_px`` gives ``ok=False`` with the reason.
    """
    ref_valid = np.ones(ref.shape, bool) if ref_valid is None else ref_valid
    mov_valid = np.ones(mov.shape, bool) if mov_valid is None else mov_valid
    if (ref_valid & mov_valid).mean() < 0.05:
        return Alignment(0.0, 0.0, 0.0, np.nan, False, "no overlap with the reference image")
    a = structure_image(ref, ref_valid)
    b = structure_image(mov, mov_valid)
    return _checked_shift(
        a, b,
        lambda dx, dy: structure_image(apply_shift(mov, dx, dy),
                                       apply_shift(mov_valid, dx, dy, order=0)),
        min_response=min_response, max_shift_px=max_shift_px, max_residual_px=max_residual_px,
    )


def estimate_map_shift(
    ref: np.ndarray,
    mov: np.ndarray,
    *,
    min_response: float = 0.75,
    max_shift_px: float = 30.0,
    max_residual_px: float = 0.3,
) -> Alignment:
    """Sub-pixel shift of map ``mov`` against ``ref`` (same grid), matched as they are.

    For images whose own content cannot be matched (deep snow hides the ground's edges)
    but in which a model still finds the site's buildings: the maps of where they stand
    are matched instead. Same search and checks as :func:`estimate_shift`, stricter
    defaults: roofs displaced by a different view angle move the maps a little apart.
    """
    return _checked_shift(
        ref, mov, lambda dx, dy: apply_shift(mov, dx, dy),
        min_response=min_response, max_shift_px=max_shift_px, max_residual_px=max_residual_px,
    )


def _checked_shift(
    a: np.ndarray,
    b: np.ndarray,
    moved: Callable[[float, float], np.ndarray],
    *,
    min_response: float,
    max_shift_px: float,
    max_residual_px: float,
) -> Alignment:
    """The shift of ``b`` against ``a`` and its check: ``moved(dx, dy)`` is ``b`` after
    the correction, correlated again for the residual."""
    m = int(np.ceil(max_shift_px))
    sx, sy, response = _ncc_shift(a, b, m)
    if not np.isfinite(response) or response < min_response:
        return Alignment(float(sx), float(sy), float(response), np.nan, False,
                         f"too weak a correlation with the reference ({response:.2f})")
    if max(abs(sx), abs(sy)) >= m - 1:
        return Alignment(float(sx), float(sy), float(response), np.nan, False,
                         f"shift beyond the {m} px search range")
    rx, ry, _ = _ncc_shift(a, moved(sx, sy), 3)
    residual = float(np.hypot(rx, ry))
    if residual > max_residual_px:
        return Alignment(float(sx), float(sy), float(response), residual, False,
                         f"inconsistent alignment (residual {residual:.1f} px after correction)")
    return Alignment(float(sx), float(sy), float(response), residual, True)


def apply_shift(img: np.ndarray, dx: float, dy: float, *, order: int = 1,
                cval: float = 0.0) -> np.ndarray:
    """``img`` moved by (-dx, -dy) so that it lines up with the reference (sub-pixel)."""
    m = np.float32([[1, 0, -dx], [0, 1, -dy]])
    interp = cv2.INTER_LINEAR if order else cv2.INTER_NEAREST
    src = img.astype(np.float32) if img.dtype == bool else img
    out = cv2.warpAffine(src, m, (img.shape[1], img.shape[0]), flags=interp,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=cval)
    if img.dtype == bool:
        return out > 0.5
    return out
