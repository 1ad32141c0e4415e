"""Per-image structure features and per-pair change maps on the common grid.

Everything works in log intensity, so that a global or slowly varying change of
brightness (exposure, haze, season, snow on open ground) becomes an offset that a local
robust median removes. What is left is compared through three cues:

* ``appearance``: the locally normalised log-intensity difference (a new roof differs
  from the ground it replaced more than the surroundings changed);
* ``edges``: binary edges of log intensity, new (in the later image, absent nearby in the
  earlier) and lost - buildings, platforms and tracks are bounded by long straight edges,
  snow and sun do not create them;
* ``shadow``: pixels much darker than their surroundings. Shadows move with the sun, so
  they are left out of the appearance cue in both images, and they serve as the height
  cue that tells a structure from a flat change.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from railwatch.analytics.coregister import gray

#: Log-intensity offset, keeps log() finite in black pixels.
_EPS = 0.02


@dataclass
class ImageFeatures:
    """Structure features of one image on the common grid.

    ``usable``: valid, cloud-free and free of moving objects; ``log``: log intensity;
    ``edges``: binary edges; ``shadow``: shadow mask; ``gsd_m``: the image's native GSD.
    """

    log: np.ndarray
    edges: np.ndarray
    shadow: np.ndarray
    usable: np.ndarray
    gsd_m: float


def _blur_to(img: np.ndarray, native_gsd: float, target_gsd: float, grid_gsd: float) -> np.ndarray:
    """Blur ``img`` so that its effective resolution matches ``target_gsd``."""
    if target_gsd <= native_gsd * 1.05:
        return img
    sigma = 0.5 * np.sqrt(target_gsd**2 - native_gsd**2) / grid_gsd
    return cv2.GaussianBlur(img, (0, 0), sigma) if sigma > 0.3 else img


def edge_map(log: np.ndarray, usable: np.ndarray, threshold: float) -> np.ndarray:
    """Binary edges of log intensity: smoothed gradient magnitude above ``threshold``."""
    lg = cv2.GaussianBlur(log, (0, 0), 1.0)
    gx = cv2.Sobel(lg, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(lg, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    mag = np.sqrt(gx * gx + gy * gy)
    inner = ndimage.binary_erosion(usable, iterations=2, border_value=0)
    return (mag > threshold) & inner


def shadow_map(log: np.ndarray, usable: np.ndarray, *, darker: float = 0.45,
               window_px: int = 41) -> np.ndarray:
    """Pixels more than ``darker`` (log units) below their neighbourhood's median."""
    fill = log.copy()
    if (~usable).any() and usable.any():
        fill[~usable] = float(np.median(log[usable]))
    ref = block_median(fill, usable, window_px)
    sh = (log < ref - darker) & usable
    # Keep thin shadows (walls, 2 px strips of high sun); drop isolated dark specks.
    lab, n = ndimage.label(sh)
    if n:
        sizes = ndimage.sum_labels(sh, lab, index=np.arange(1, n + 1))
        sh = np.isin(lab, np.flatnonzero(sizes >= 4) + 1)
    return sh


def block_median(img: np.ndarray, mask: np.ndarray, block: int) -> np.ndarray:
    """A smooth local median: medians of ``block`` blocks over their 3x3 neighbourhood.

    Masked pixels are ignored; blocks with no usable pixel borrow from neighbours.
    Bilinearly resampled back to the full grid.
    """
    h, w = img.shape
    nb_y, nb_x = max(1, -(-h // block)), max(1, -(-w // block))
    pad = np.full((nb_y * block, nb_x * block), np.nan, dtype=np.float32)
    pad[:h, :w] = np.where(mask, img, np.nan)
    blocks = pad.reshape(nb_y, block, nb_x, block).transpose(0, 2, 1, 3).reshape(nb_y, nb_x, -1)
    # Neighbourhood of 3x3 blocks, so that one large new building cannot bias its block.
    padded = np.pad(blocks, ((1, 1), (1, 1), (0, 0)), constant_values=np.nan)
    hood = np.concatenate(
        [padded[dy : dy + nb_y, dx : dx + nb_x] for dy in range(3) for dx in range(3)], axis=-1
    )
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(hood, axis=-1)
    if np.isnan(med).all():
        return np.zeros_like(img, dtype=np.float32)
    med = np.where(np.isnan(med), np.nanmedian(med), med).astype(np.float32)
    # Block centres -> pixel grid.
    up = cv2.resize(med, (nb_x * block, nb_y * block), interpolation=cv2.INTER_LINEAR)
    return up[:h, :w]


def image_features(
    rgb: np.ndarray,
    usable: np.ndarray,
    gsd_m: float,
    *,
    grid_gsd: float,
    target_gsd: float | None = None,
    edge_threshold: float = 0.045,
) -> ImageFeatures:
    """Features of one aligned image; ``target_gsd`` blurs it to a coarser partner's GSD."""
    g = gray(rgb)
    log = np.log(np.clip(g, 0, None) + _EPS).astype(np.float32)
    eff = max(gsd_m, grid_gsd)
    if target_gsd is not None:
        log = _blur_to(log, eff, target_gsd, grid_gsd)
    return ImageFeatures(
        log=log,
        edges=edge_map(log, usable, edge_threshold),
        shadow=shadow_map(log, usable),
        usable=usable,
        gsd_m=gsd_m,
    )


@dataclass
class PairMaps:
    """What changed from ``before`` to ``after`` (same grid), pixel by pixel.

    ``appearance``: |locally normalised log difference|, NaN where not comparable;
    ``new_edges`` / ``lost_edges``: edges only in the later / earlier image;
    ``both``: usable in both and not shadow in either.
    """

    appearance: np.ndarray
    new_edges: np.ndarray
    lost_edges: np.ndarray
    both: np.ndarray


def pair_maps(before: ImageFeatures, after: ImageFeatures, *, block_px: int = 48,
              edge_tolerance_px: int = 2, shadow_margin_px: int = 2) -> PairMaps:
    """Change cues between two aligned images' features."""
    both = before.usable & after.usable
    # Shadows move with the sun: leave them and their borders out of every cue.
    no_shadow = ~ndimage.binary_dilation(before.shadow | after.shadow, iterations=shadow_margin_px)
    cmp = both & no_shadow
    diff = after.log - before.log
    offset = block_median(diff, cmp, block_px)
    app = np.abs(cv2.GaussianBlur(diff - offset, (0, 0), 1.0))
    app = np.where(cmp, app, np.nan).astype(np.float32)
    tol = np.ones((2 * edge_tolerance_px + 1,) * 2, bool)
    new_edges = after.edges & ~ndimage.binary_dilation(before.edges, tol) & cmp
    lost_edges = before.edges & ~ndimage.binary_dilation(after.edges, tol) & cmp
    return PairMaps(app, new_edges, lost_edges, cmp)
