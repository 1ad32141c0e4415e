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
    ``strength``: relative edge strength; ``edges``: strong edges; ``shadow``: shadow
    mask; ``gsd_m``: the image's native GSD; ``occluded``: snow or cloud, where the image
    cannot show that something is absent; ``bands``: log intensity per colour band (a roof
    may differ from the ground in hue only).
    """

    log: np.ndarray
    strength: np.ndarray
    edges: np.ndarray
    shadow: np.ndarray
    usable: np.ndarray
    gsd_m: float
    occluded: np.ndarray | None = None
    bands: np.ndarray | None = None  # (3, H, W) log colour bands


def _blur_to(img: np.ndarray, native_gsd: float, target_gsd: float, grid_gsd: float) -> np.ndarray:
    """Blur ``img`` so that its effective resolution matches ``target_gsd``."""
    if target_gsd <= native_gsd * 1.05:
        return img
    sigma = 0.5 * np.sqrt(target_gsd**2 - native_gsd**2) / grid_gsd
    return cv2.GaussianBlur(img, (0, 0), sigma) if sigma > 0.3 else img


def edge_strength(
    logs: np.ndarray, usable: np.ndarray, stable: np.ndarray | None = None, *, straight: bool = True
) -> np.ndarray:
    """Edge strength: the largest gradient over the log colour bands, each relative to a
    reference contrast of the image (0 outside ``usable``).

    The reference is the median gradient on ``stable`` pixels (edges of structures seen in
    most images of the site: rails, old buildings) when given, else the band's 99th
    percentile. Relative, so haze and exposure do not move it; the bands are taken
    separately so that a roof that differs from the ground only in hue still has an edge.
    Terrain texture and soft season patches stay weak. With ``straight`` the strength is
    weighted by the local orientation coherence (structure tensor over about 5 px): the
    straight outlines of roofs, platforms and tracks keep it, curly terrain, snow-patch
    and texture edges lose most of it.
    """
    inner = ndimage.binary_erosion(usable, iterations=3, border_value=0)
    out = np.zeros(usable.shape, np.float32)
    if not inner.any():
        return out
    jxx = np.zeros(usable.shape, np.float32)
    jyy = np.zeros(usable.shape, np.float32)
    jxy = np.zeros(usable.shape, np.float32)
    for band in logs:
        lg = cv2.GaussianBlur(band, (0, 0), 1.0)
        gx = cv2.Sobel(lg, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(lg, cv2.CV_32F, 0, 1, ksize=3)
        mag = np.sqrt(gx * gx + gy * gy)
        ref = stable & inner if stable is not None else None
        if ref is not None and ref.sum() >= 100:
            top = float(np.median(mag[ref]))
        else:
            top = float(np.percentile(mag[inner], 99))
        if top > 0:
            np.maximum(out, mag / top, out=out)
            jxx += gx * gx / top**2
            jyy += gy * gy / top**2
            jxy += gx * gy / top**2
    if straight:
        jxx, jyy, jxy = (cv2.GaussianBlur(j, (0, 0), 2.0) for j in (jxx, jyy, jxy))
        coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-9)
        out *= np.clip((coherence - 0.3) / 0.4, 0.0, 1.0)
    out[~inner] = 0.0
    return out


def shadow_map(
    log: np.ndarray,
    usable: np.ndarray,
    strength: np.ndarray,
    *,
    darker: float = 0.45,
    block_px: int = 40,
    sharp: float = 0.35,
) -> np.ndarray:
    """Shadows: regions more than ``darker`` (log units) below the local median that are
    bounded by sharp edges.

    The local median ignores the few bright roofs; the sharp-boundary test keeps cast
    shadows (hard edges) and drops darker season patches of terrain (soft edges). Thin
    shadows (walls, high sun) are kept, isolated dark specks dropped.
    """
    ref = block_median(log, usable, block_px)
    dark = (log < ref - darker) & usable
    lab, n = ndimage.label(dark)
    if n == 0:
        return dark
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(dark, lab, index=index)
    edge = ndimage.maximum_filter(strength, size=3) > 0.3
    rim = dark & ~ndimage.binary_erosion(dark)
    rim_lab = np.where(rim, lab, 0)
    rim_n = ndimage.sum_labels(rim, rim_lab, index=index)
    rim_sharp = ndimage.sum_labels(rim & edge, rim_lab, index=index)
    keep = (sizes >= 4) & (rim_sharp >= sharp * np.maximum(rim_n, 1))
    return np.isin(lab, index[keep])


def grown(win: tuple[slice, slice], pad: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The window ``win`` grown by ``pad`` cells on every side, kept inside ``shape``."""
    return (slice(max(0, win[0].start - pad), min(shape[0], win[0].stop + pad)),
            slice(max(0, win[1].start - pad), min(shape[1], win[1].stop + pad)))


def tiles(img: np.ndarray, mask: np.ndarray, block: int) -> np.ndarray:
    """``img`` cut into ``block`` x ``block`` tiles (the last row and column of tiles
    padded), masked and padded pixels NaN: shape (tile rows, tile columns, block²)."""
    h, w = img.shape
    nb_y, nb_x = max(1, -(-h // block)), max(1, -(-w // block))
    pad = np.full((nb_y * block, nb_x * block), np.nan, dtype=np.float32)
    pad[:h, :w] = np.where(mask, img, np.nan)
    return pad.reshape(nb_y, block, nb_x, block).transpose(0, 2, 1, 3).reshape(nb_y, nb_x, -1)


def block_quantile(
    img: np.ndarray, mask: np.ndarray, block: int, q: float, min_share: float = 0.25
) -> np.ndarray:
    """The ``q`` quantile of ``img`` over ``mask`` in each tile (:func:`tiles`), one value
    per tile; NaN where under ``min_share`` of the tile is in ``mask``."""
    t = tiles(img, mask, block)
    out = np.full(t.shape[:2], np.nan, np.float32)
    ok = np.isfinite(t).mean(axis=-1) >= min_share
    if ok.any():
        out[ok] = np.nanquantile(t[ok], q, axis=-1)
    return out


def block_median(img: np.ndarray, mask: np.ndarray, block: int) -> np.ndarray:
    """A smooth local median: medians of ``block`` blocks over their 3x3 neighbourhood.

    Masked pixels are ignored; blocks with no usable pixel borrow from neighbours.
    Bilinearly resampled back to the full grid.
    """
    h, w = img.shape
    blocks = tiles(img, mask, block)
    nb_y, nb_x = blocks.shape[:2]
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
    edge_threshold: float = 0.3,
    stable: np.ndarray | None = None,
    occluded: np.ndarray | None = None,
) -> ImageFeatures:
    """Features of one aligned image; ``target_gsd`` blurs it to a coarser partner's GSD;
    ``stable`` (edges seen in most images) sets the reference contrast."""
    eff = max(gsd_m, grid_gsd)
    bands = np.log(np.clip(rgb, 0, None) + _EPS).astype(np.float32).transpose(2, 0, 1)
    log = np.log(np.clip(gray(rgb), 0, None) + _EPS).astype(np.float32)
    if target_gsd is not None:
        log = _blur_to(log, eff, target_gsd, grid_gsd)
        bands = np.stack([_blur_to(b, eff, target_gsd, grid_gsd) for b in bands])
    strength = edge_strength(bands, usable, stable)
    return ImageFeatures(
        log=log,
        strength=strength,
        edges=strength > edge_threshold,
        shadow=shadow_map(log, usable, strength),
        usable=usable,
        gsd_m=gsd_m,
        occluded=occluded,
        bands=bands,
    )


@dataclass
class PairMaps:
    """What changed from ``before`` to ``after`` (same grid), pixel by pixel.

    ``appearance``: |locally normalised log difference|, NaN where not comparable;
    ``new_edges`` / ``lost_edges``: edges only in the later / earlier image;
    ``both``: usable in both and not shadow in either; ``can_new`` / ``can_lost``: where
    the earlier / later image is not snow or cloud, so that it can show an absence.
    """

    appearance: np.ndarray
    new_edges: np.ndarray
    lost_edges: np.ndarray
    both: np.ndarray
    can_new: np.ndarray
    can_lost: np.ndarray


def pair_maps(
    before: ImageFeatures,
    after: ImageFeatures,
    *,
    block_px: int = 48,
    edge_tolerance_px: int = 1,
    shadow_margin_px: int = 3,
    edge_ratio: float = 0.5,
) -> PairMaps:
    """Change cues between two aligned images' features."""
    both = before.usable & after.usable
    # Shadows move with the sun: leave them and their borders out of every cue.
    no_shadow = ~ndimage.binary_dilation(before.shadow | after.shadow, iterations=shadow_margin_px)
    cmp = both & no_shadow
    diff = after.log - before.log
    offset = block_median(diff, cmp, block_px)
    app = np.abs(cv2.GaussianBlur(diff - offset, (0, 0), 1.0))
    app = np.where(cmp, app, np.nan).astype(np.float32)
    # An edge is new where the earlier image had nothing half as strong close by.
    size = 2 * edge_tolerance_px + 1
    near_b = ndimage.maximum_filter(before.strength, size=size)
    near_a = ndimage.maximum_filter(after.strength, size=size)
    # Snow and cloud hide detail and draw edges of their own: neither image may have
    # them where an outline is called new or lost.
    can = cmp
    for f in (before, after):
        if f.occluded is not None:
            can = can & ~f.occluded
    can_new = can_lost = can
    new_edges = after.edges & (near_b < edge_ratio * after.strength) & can_new
    lost_edges = before.edges & (near_a < edge_ratio * before.strength) & can_lost
    return PairMaps(app, new_edges, lost_edges, cmp, can_new, can_lost)
