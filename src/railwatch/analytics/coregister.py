"""Co-registration: put every image of a site on one grid, then remove residual shifts.

1. :func:`site_grid` picks the common grid: the site's local metric CRS (its
   ``local_crs`` property, else the UTM zone of its AOI) at a common GSD, covering the AOI.
2. :func:`read_on_grid` resamples an image onto that grid through a
   :class:`rasterio.vrt.WarpedVRT` (only the needed window is read; finer images are
   averaged down), returning a float RGB array and a validity mask.
3. :func:`estimate_shift` measures the sub-pixel shift between two grids' worth of pixels
   by phase correlation (:func:`cv2.phaseCorrelate`) of Hann-windowed gradient-magnitude
   images, which are far less sensitive to season and illumination than raw colour;
   :func:`apply_shift` moves an image by that shift. The residual after alignment is
   measured again and reported, and an image whose correlation response is too weak is
   flagged as not alignable, with the reason.
"""

from __future__ import annotations

import os
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


def structure_image(g: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Gradient magnitude of log intensity, zero outside ``valid``: the image that is matched."""
    lg = np.log(np.clip(g, 0, None) + 0.02).astype(np.float32)
    if (~valid).any():
        lg = lg.copy()
        lg[~valid] = float(np.median(lg[valid])) if valid.any() else 0.0
    lg = cv2.GaussianBlur(lg, (0, 0), 1.0)
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
    ``ok`` False means the image was not used, for the stated ``reason``.
    """

    dx: float
    dy: float
    response: float
    residual_px: float
    ok: bool
    reason: str = ""


def estimate_shift(
    ref: np.ndarray,
    mov: np.ndarray,
    ref_valid: np.ndarray | None = None,
    mov_valid: np.ndarray | None = None,
    *,
    min_response: float = 0.03,
    max_shift_px: float = 40.0,
) -> Alignment:
    """Sub-pixel shift of gray image ``mov`` against ``ref`` (same grid), with its check.

    Phase correlation of Hann-windowed gradient-magnitude images; the shift is applied and
    measured again to report the residual. Too weak a correlation peak or a shift larger
    than ``max_shift_px`` gives ``ok=False`` with the reason.
    """
    ref_valid = np.ones(ref.shape, bool) if ref_valid is None else ref_valid
    mov_valid = np.ones(mov.shape, bool) if mov_valid is None else mov_valid
    both = ref_valid & mov_valid
    if both.mean() < 0.05:
        return Alignment(0.0, 0.0, 0.0, np.nan, False, "no overlap with the reference image")
    a = structure_image(ref, ref_valid)
    b = structure_image(mov, mov_valid)
    a[~both], b[~both] = 0.0, 0.0
    win = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    (sx, sy), response = cv2.phaseCorrelate(a, b, win)
    if not np.isfinite(response) or response < min_response:
        return Alignment(float(sx), float(sy), float(response), np.nan, False,
                         f"too weak a correlation with the reference ({response:.3f})")
    if np.hypot(sx, sy) > max_shift_px:
        return Alignment(float(sx), float(sy), float(response), np.nan, False,
                         f"shift of {np.hypot(sx, sy):.1f} px exceeds {max_shift_px:.0f} px")
    # Residual: move the image, rebuild its structure image, correlate again.
    moved_valid = apply_shift(mov_valid, float(sx), float(sy), order=0)
    common = ref_valid & moved_valid
    a2 = structure_image(ref, ref_valid)
    b2 = structure_image(apply_shift(mov, float(sx), float(sy)), moved_valid)
    a2[~common], b2[~common] = 0.0, 0.0
    (rx, ry), _ = cv2.phaseCorrelate(a2, b2, win)
    return Alignment(float(sx), float(sy), float(response), float(np.hypot(rx, ry)), True)


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
