"""Find facility changes in a time series of images of one site.

The flow of :func:`find_changes`:

1. every image is resampled onto the site's common grid (:mod:`..coregister`), masked
   (outside the image or the AOI, cloud, dilated footprints of detected railcars and
   containers) and aligned to the best-covered image by phase correlation; images that
   cover too little of the site, are too cloudy or cannot be aligned are skipped with a
   reason;
2. stepping through the usable images in time, the images ``B`` just before a step and
   the ``persist`` images ``A`` from it on are compared pairwise (:mod:`.maps`); a pixel
   is a candidate only if it changed in *every* before/after pair, so that one odd image
   neither creates nor hides a change;
3. candidate regions become polygons (morphology, connected components), are classified
   from their edges, shadows (height) and shape, and dated: ``last_absent`` is the last
   image before the step, ``first_seen`` the first image of the step;
4. with ``method="both"`` (the default) the learned structure maps of :mod:`.structures`
   (a structure network's map of every image, each region's history read image by image)
   give their changes, with their tighter outlines, and check the edge method's: an edge
   change stands only where it is none of their own (:func:`_same_change`) and, if of a
   structure, where the maps see one on its built side and none on the other; a narrow
   strip along a roof that stands throughout is dropped (:func:`.structures.leaning`).
"""

from __future__ import annotations

import datetime as dt
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS
from rasterio import features
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.ops import unary_union

from railwatch.analytics.changes.maps import (
    ImageFeatures,
    PairMaps,
    block_quantile,
    edge_strength,
    grown,
    image_features,
    pair_maps,
)
from railwatch.analytics.changes.structures import (
    StructureModel,
    StructureRules,
    align_by_maps,
    leaning,
    map_sides,
    merge_pieces,
    structure_changes,
    structure_maps,
)
from railwatch.analytics.coregister import (
    Alignment,
    Grid,
    apply_shift,
    estimate_shift,
    gray,
    read_on_grid,
    site_grid,
    to_local,
)
from railwatch.errors import InputError
from railwatch.types import Detections, Site

#: Change kinds (the ``kind`` property of a change feature).
CHANGE_KINDS: tuple[str, ...] = (
    "new structure",
    "removed structure",
    "new track",
    "cleared/graded ground",
    "other",
)

ImageInput = tuple[str | os.PathLike[str], dt.datetime, Detections | None]

#: How changes are found (``find_changes(method=...)``, ``railwatch changes --method``).
METHODS = ("edges", "structures", "both")
#: Kinds of change a roof leaning with the view can fake (:func:`.structures.leaning`).
LEANING_KINDS = ("new structure", "removed structure", "new track")


@dataclass
class Change:
    """One facility change: a polygon in the site's local CRS, its kind and its date bracket.

    The change happened after ``last_absent`` (the last usable image without it) and on or
    before ``first_seen`` (the first image with it); ``before``/``after`` are those images.
    """

    geometry: Polygon | MultiPolygon
    crs: CRS
    kind: str
    first_seen: dt.datetime
    last_absent: dt.datetime
    area_m2: float
    zone: str | None
    score: float
    before: str = ""
    after: str = ""
    seen_in: int = 0  # images that confirmed it (the persistence window)
    id: int | None = None
    cues: dict[str, float] = field(default_factory=dict)


@dataclass
class UsedImage:
    """An image as the change finder saw it: alignment, coverage, or why it was skipped."""

    path: str
    acquired: dt.datetime
    gsd_m: float
    coverage: float
    alignment: Alignment | None = None
    skipped: str = ""


@dataclass
class ChangeSet:
    """The changes of one site over a period, with the images used and skipped."""

    site: str
    changes: list[Change]
    images: list[UsedImage]
    grid: Grid | None = None
    persist: int = 2
    reference: str = ""  # the image whose frame the positions are in

    @property
    def skipped(self) -> list[UsedImage]:
        return [im for im in self.images if im.skipped]

    @property
    def used(self) -> list[UsedImage]:
        return [im for im in self.images if not im.skipped]


@dataclass
class _Prepared:
    info: UsedImage
    rgb: np.ndarray
    usable: np.ndarray
    occluded: np.ndarray  # snow- or cloud-like: shows no ground detail, proves no absence
    objects: np.ndarray  # under detected railcars and containers (dilated)
    footprint: np.ndarray | None = None  # inside the image and the AOI
    # Deep-snow images only: the ground left bare (clear of snow patches and cloud). The
    # whole image is ``occluded``, but the structure maps may read an empty place there.
    bare: np.ndarray | None = None


def _native_gsd(path: str) -> float:
    with rasterio.open(path) as src:
        res = abs(float(src.transform.a))
        if src.crs is not None and src.crs.is_geographic:
            return res * 111_320.0
        try:
            return res * float(src.crs.linear_units_factor[1])
        except Exception:
            return res


def _mask_objects(det: Detections | None, grid: Grid, buffer_m: float) -> np.ndarray:
    """Grid pixels under (dilated) detected railcars and containers: moving things."""
    if det is None or len(det) == 0:
        return np.zeros(grid.shape, bool)
    local = det.to_crs(grid.crs)
    shapes = [(Polygon(fp).buffer(buffer_m), 1) for fp in local.footprints]
    return features.rasterize(
        shapes, out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8"
    ).astype(bool)


def _cloud(
    rgb: np.ndarray, valid: np.ndarray, gsd_m: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """(opaque cloud, snow or cloud): the imagery cloud mask, and that mask less where
    structure still shows through.

    Bright, grey, smooth snow looks like cloud to a colour test; but rails, roofs and
    their shadows stay sharp under snow and vanish under cloud, so flagged pixels near
    strong edges are kept as usable. Both hide the ground's detail, though: the wider
    mask is kept to say where an image cannot prove that something was absent.
    """
    try:
        from railwatch.imagery.cloud import cloud_mask
    except ImportError:
        return None
    # 8-bit in, so that brightness is absolute (float input is rescaled to its maximum).
    rgb8 = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    cloud = np.asarray(cloud_mask(rgb8, gsd_m), dtype=bool) & valid
    if not cloud.any():
        return cloud, cloud
    bands = np.log(np.clip(rgb, 0, None) + 0.02).astype(np.float32).transpose(2, 0, 1)
    strong = edge_strength(bands, valid) > 0.3
    visible = ndimage.maximum_filter(strong, size=max(3, round(10 / gsd_m)) | 1)
    sharp_share = ndimage.uniform_filter(visible.astype(np.float32), size=41)
    return cloud & (sharp_share < 0.05), cloud


def _cloud_shadow(
    rgb: np.ndarray,
    valid: np.ndarray,
    gsd_m: float,
    bright: np.ndarray | None = None,
    solid: np.ndarray | None = None,
    *,
    darker: float = 0.25,
    rim_darker: float = 0.1,
    sigma_m: float = 6.0,
    block_m: float = 8.0,
    quantile: float = 0.9,
    min_area_m2: float = 5000.0,
) -> np.ndarray:
    """Cloud shadows: patches where even the light ground is dark: the ``quantile`` of
    the brightness in ``block_m`` tiles, smoothed over ``sigma_m``, more than ``darker``
    (log units) below its median over the image (``bright``: cloud and snow, left out of
    that median), of at least ``min_area_m2`` (larger than any roof), grown over the
    connected ground still ``rim_darker`` below it (the shadow's soft rim).

    A cloud shadow darkens everything under it, the lightest ground too; a yard of dark
    roofs, trains, ballast and building shadows is dark on average but keeps lit ground
    between them. ``solid`` (railcars, containers) and dark rectangles of roof size
    (:func:`_roof_like`) are left out: a tile that is mostly roof says nothing.

    A cloud (inside the image or outside it) darkens the ground under its shadow by up to
    half. Under such a patch shadows and edges come and go with the cloud, so, like snow,
    it cannot show that something is there or was not.
    """
    ground = valid if bright is None else valid & ~bright
    if ground.sum() < 100:
        return np.zeros(valid.shape, bool)
    g = np.log(gray(np.clip(rgb, 0, None)) + 0.02).astype(np.float32)
    roofs = _roof_like((g < float(np.median(g[ground])) - darker) & valid, gsd_m)
    open_ground = valid & ~roofs & (~solid if solid is not None else True)
    block = max(1, round(block_m / gsd_m))
    light = block_quantile(g, open_ground, block, quantile)
    if not np.isfinite(light).any():
        return np.zeros(valid.shape, bool)
    ref = float(np.nanmedian(block_quantile(g, open_ground & ground, block, quantile)))
    h, w = g.shape
    light = np.repeat(np.repeat(light, block, axis=0), block, axis=1)[:h, :w]
    seen = np.isfinite(light)
    sigma = max(sigma_m / gsd_m, 1.0)
    wt = cv2.GaussianBlur(seen.astype(np.float32), (0, 0), sigma)
    smooth = cv2.GaussianBlur(np.where(seen, light, 0).astype(np.float32), (0, 0), sigma)
    # Where no open ground lies within reach the patch cannot be judged: not dark.
    smooth = np.where(wt > 0.05, smooth / np.maximum(wt, 1e-3), ref)
    dark = (smooth < ref - darker) & valid
    lab, n = ndimage.label(dark)
    if n == 0:
        return dark
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(dark, lab, index=index) * gsd_m * gsd_m
    # A patch cut by the edge of the image (or of the site) goes on beyond it: half the
    # area seen is enough there.
    rim_px = valid & ~ndimage.binary_erosion(valid, iterations=2, border_value=0)
    cut = ndimage.maximum(rim_px, lab, index=index).astype(bool)
    core = np.isin(lab, index[(sizes >= min_area_m2) | (cut & (sizes >= min_area_m2 / 2))])
    # The rim fades out: grow the core over connected ground that is still darker.
    rim, _ = ndimage.label((smooth < ref - rim_darker) & valid)
    return np.isin(rim, np.unique(rim[core])) & (rim > 0)


def _roof_like(
    white: np.ndarray,
    gsd_m: float,
    *,
    min_area_m2: float = 30.0,
    max_area_m2: float = 5000.0,
    min_fill: float = 0.85,
) -> np.ndarray:
    """The connected pieces of ``white`` that are rectangles of roof size: at least
    ``min_fill`` of their minimum-area rotated rectangle, ``min_area_m2``..``max_area_m2``.
    A light roof in a summer image is as white and grey as snow; snow patches are blobs."""
    out = np.zeros(white.shape, bool)
    # Cut thin bridges (a roof beside a light yard): pieces are taken 2 px in, then grown.
    core = ndimage.binary_erosion(white, iterations=2)
    _, lab, stats, _ = cv2.connectedComponentsWithStats(core.astype(np.uint8), connectivity=4)
    area = stats[:, cv2.CC_STAT_AREA] * gsd_m * gsd_m
    for k in np.flatnonzero((area >= min_area_m2) & (area <= max_area_m2)):
        if k == 0:
            continue
        x, y, w, h = stats[k, :4]
        comp = lab[y : y + h, x : x + w] == k
        rows, cols = np.nonzero(comp)
        (_, _), (rw, rh), _ = cv2.minAreaRect(np.stack([cols, rows], axis=1).astype(np.float32))
        if stats[k, cv2.CC_STAT_AREA] >= min_fill * (rw + 1) * (rh + 1):
            out[y : y + h, x : x + w] |= comp
    return ndimage.binary_dilation(out, iterations=3) & white


def _snow(
    rgb: np.ndarray,
    valid: np.ndarray,
    gsd_m: float = 1.0,
    *,
    min_share: float = 0.05,
    max_share: float = 0.25,
    local_share: float = 0.3,
    window_m: float = 40.0,
    sunlit: float = 0.7,
) -> np.ndarray:
    """Snow: bright, nearly grey pixels (and a margin), in an image where sunlit snow is
    common (at least ``min_share`` of it brighter than ``sunlit``; nothing otherwise, so
    that a white roof or light gravel in a bright summer image stays what it is), and the
    places where they cover more than ``local_share`` of the ground around (``window_m``
    across): between dense patches the outlines are snow's own. The whole image where
    they cover more than ``max_share`` of it (a thin cover need not be sunlit-bright).
    White rectangles of roof size are roofs, not snow (:func:`_roof_like`)."""
    g = gray(rgb)
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    white = (g > 0.6) & ((mx - mn) < 0.12 * np.maximum(mx, 1e-6)) & valid
    white &= ~_roof_like(white, gsd_m)
    n_valid = max(valid.sum(), 1)
    share = white.sum() / n_valid
    if share <= max_share and (white & (g > sunlit)).sum() / n_valid < min_share:
        return np.zeros(valid.shape, bool)
    if share > max_share:
        # Deep snow: the outlines left to see are snow's own; the image proves nothing.
        return valid.copy()
    size = max(3, round(window_m / gsd_m)) | 1
    w = ndimage.uniform_filter(valid.astype(np.float32), size=size)
    dense = ndimage.uniform_filter(white.astype(np.float32), size=size) > local_share * np.maximum(
        w, 1e-3
    )
    white = ndimage.binary_opening(white, iterations=1)
    return (ndimage.binary_dilation(white, iterations=6) | dense) & valid


def _prepare(
    images: Sequence[ImageInput],
    site: Site,
    grid: Grid,
    *,
    min_coverage: float,
    min_clear: float,
    object_buffer_m: float,
    on_image: Callable[[str], None] | None,
) -> list[_Prepared | UsedImage]:
    aoi = features.rasterize(
        [(to_local(site.aoi, grid.crs), 1)],
        out_shape=grid.shape,
        transform=grid.transform,
        fill=0,
        dtype="uint8",
    ).astype(bool)
    out: list[_Prepared | UsedImage] = []
    for path, when, det in images:
        path = str(path)
        rgb, valid = read_on_grid(path, grid)
        valid &= aoi
        coverage = float(valid.sum() / max(aoi.sum(), 1))
        info = UsedImage(path, when, _native_gsd(path), coverage)
        if coverage == 0:
            raise InputError(
                f"image does not overlap site {site.name!r} (is it an image of another site?)",
                path,
            )
        if coverage < min_coverage:
            info.skipped = f"covers only {coverage:.0%} of the site"
            out.append(info)
            continue
        usable = valid.copy()
        objects = _mask_objects(det, grid, object_buffer_m)
        snow = _snow(rgb, valid, grid.gsd_m)
        cloudy = np.zeros_like(valid)
        masks = _cloud(rgb, valid, grid.gsd_m)
        if masks is not None:
            cloud, cloud_or_snow = masks
            cloudy = ndimage.binary_dilation(cloud_or_snow, iterations=8)
            # Cloud shadows hide as much as cloud (shadows and edges come and go).
            shade = _cloud_shadow(rgb, valid, grid.gsd_m, snow | cloudy, objects)
            cloudy |= ndimage.binary_dilation(shade, iterations=5)
            usable &= ~ndimage.binary_dilation(cloud, iterations=3)
            clear = float(usable.sum() / max(aoi.sum(), 1))
            if clear < min_clear:
                share = float(cloud.sum() / max(valid.sum(), 1))
                info.skipped = f"too much cloud ({share:.0%} of the covered site)"
                out.append(info)
                continue
        occluded = snow | cloudy
        bare = None
        if valid.any() and snow[valid].all():
            # Deep snow: the patches of it, without the whole-image rule (and however
            # dull: a thin cover is snow too, not bare ground).
            bare = valid & ~_snow(rgb, valid, grid.gsd_m, max_share=1.0, sunlit=0.0) & ~cloudy
        usable &= ~objects
        out.append(_Prepared(info, rgb, usable, occluded, objects, valid.copy(), bare))
        if on_image:
            on_image(path)
    return out


def _move(p: _Prepared, al: Alignment) -> None:
    """Move ``p`` (image and masks) by the shift ``al`` into the reference's frame."""
    p.info.alignment = al
    p.rgb = apply_shift(p.rgb, al.dx, al.dy)
    p.usable = apply_shift(p.usable, al.dx, al.dy, order=0)
    p.occluded = apply_shift(p.occluded, al.dx, al.dy, order=0)
    p.objects = apply_shift(p.objects, al.dx, al.dy, order=0)
    if p.footprint is not None:
        p.footprint = apply_shift(p.footprint, al.dx, al.dy, order=0)
    if p.bare is not None:
        p.bare = apply_shift(p.bare, al.dx, al.dy, order=0)


def _align(prepared: list[_Prepared], **kw: Any) -> list[_Prepared]:
    """Align every image to the reference; chain the ones that cannot be aligned directly.

    An image that does not correlate with the reference (deep snow on one of them, little
    common ground) is aligned to its nearest neighbours in time that did align, already
    moved into the reference's frame, so the shift is chained through them; its residual
    is measured against that neighbour. Only an image that aligns with neither is skipped.
    """
    # The reference: the earliest image that shows nearly as much ground as the best one,
    # so that positions are in the frame of an early, well-covered image. Ground under
    # snow or cloud does not count: a deep-snow reference has little to correlate with,
    # and the shifts measured against it go wrong.
    shown = [float((p.usable & ~p.occluded).mean()) for p in prepared]
    if max(shown) == 0:  # snow or cloud everywhere in every image: coverage alone
        shown = [float(p.usable.mean()) for p in prepared]
    best = max(shown)
    ref = next(p for p, v in zip(prepared, shown, strict=True) if v >= 0.9 * best)
    aligned: set[int] = set()
    failed: dict[int, str] = {}
    tried: dict[int, set[str]] = {}
    # Deep snow (or cloud) everywhere: such an image proves nothing, and chained in it
    # would only stand in a persistence window for a clear image (tuning seeds: recall
    # 0.76 -> 0.75). It is not chained.
    blind = {id(p) for p in prepared if not (p.usable & ~p.occluded).any()}

    # Each image as it came, for chaining: a shift measured against a neighbour's own
    # frame adds to the neighbour's shift (a neighbour already moved into the reference's
    # frame would leave the whole shift to measure, beyond the search for a far one).
    raw = {id(p): (gray(p.rgb), p.usable) for p in prepared}

    def move(p: _Prepared, al: Alignment) -> None:
        _move(p, al)
        aligned.add(id(p))

    for p in prepared:
        if p is ref:
            p.info.alignment = Alignment(0.0, 0.0, 1.0, 0.0, True)
            aligned.add(id(p))
            continue
        al = estimate_shift(raw[id(ref)][0], raw[id(p)][0], ref.usable, p.usable, **kw)
        p.info.alignment = al
        if al.ok:
            move(p, al)
        else:
            failed[id(p)] = al.reason
    # Chain: repeat while an image that failed can be bridged by an aligned neighbour.
    progress = True
    while failed and progress:
        progress = False
        for i, p in enumerate(prepared):
            if id(p) not in failed or id(p) in blind:
                continue
            before = next((q for q in reversed(prepared[:i]) if id(q) in aligned), None)
            after = next((q for q in prepared[i + 1 :] if id(q) in aligned), None)
            near = sorted(
                (q for q in (before, after) if q is not None),
                key=lambda q: abs((q.info.acquired - p.info.acquired).total_seconds()),
            )
            for q in near:
                name = os.path.basename(q.info.path)
                if name in tried.setdefault(id(p), set()):
                    continue  # already tried (an earlier round)
                tried[id(p)].add(name)
                al = estimate_shift(raw[id(q)][0], raw[id(p)][0], raw[id(q)][1], p.usable, **kw)
                if al.ok:
                    qa = q.info.alignment
                    assert qa is not None
                    move(p, replace(al, dx=qa.dx + al.dx, dy=qa.dy + al.dy, via=name))
                    del failed[id(p)]
                    progress = True
                    break
    for p in prepared:
        if id(p) in failed:
            via = ", ".join(sorted(tried.get(id(p), ())))
            p.info.skipped = f"not aligned: {failed[id(p)]}" + (
                f"; nor through its neighbour(s) in time ({via})"
                if via
                else "; snow or cloud everywhere, so not through its neighbours either"
                if id(p) in blind
                else ""
            )
    return [p for p in prepared if id(p) in aligned]


def _polygon(mask: np.ndarray, transform: Affine, simplify_m: float) -> Polygon | MultiPolygon:
    polys = [
        shape(geom)
        for geom, val in features.shapes(mask.astype(np.uint8), mask=mask, transform=transform)
        if val == 1
    ]
    geom = unary_union(polys)
    return geom.simplify(simplify_m, preserve_topology=True) if simplify_m > 0 else geom


def _zone(geom: Any, zones: dict[str, Any]) -> str | None:
    best, best_area = None, 0.0
    for name, z in zones.items():
        a = geom.intersection(z).area
        if a > best_area:
            best, best_area = name, a
    return best


def _classify(
    region: np.ndarray,
    geom: Any,
    before: list[ImageFeatures],
    after: list[ImageFeatures],
    new_all: np.ndarray,
    lost_all: np.ndarray,
    gsd: float,
    *,
    shadow_min: float = 0.4,
    min_edges: float = 0.12,
    dark: float = 0.35,
    contrast_min: float = 0.2,
    min_fill: float = 0.9,
    max_texture: float = 0.3,
    in_shadow: float = 0.3,
    min_roof_width_m: float = 5.0,
    one_side: bool = False,
    frame: Any = None,
) -> tuple[str | None, dict[str, float]]:
    """The kind of change of one region, or None when it is not a facility change.

    ``one_side``: the region is a roof grown from one lost side (:func:`_roof_beside`);
    its shadow then need not be gone entirely, only down to a quarter (what is left
    nearby may be another building's). ``frame``: the area looked at (the AOI, local
    CRS); a building that straddles its border is seen as the part inside, so an
    outline's fill is measured against the part of its rectangle inside it."""
    ring = ndimage.binary_dilation(region, iterations=2) & ~ndimage.binary_erosion(
        region, iterations=2
    )
    inner = ndimage.binary_erosion(region, iterations=2)
    # Shadows in and around the region: a standing structure casts one on some side
    # (its far edge may have been taken into the region's outline). Measured as a width:
    # shadow area over half the perimeter, in metres.
    attached = ndimage.binary_dilation(region, iterations=max(2, round(8 / gsd)))
    half_perimeter = max(float(geom.length) / 2, gsd)

    def frac(m: np.ndarray, where: np.ndarray) -> float:
        return float(m[where].mean()) if where.any() else 0.0

    def shadow_m(f: ImageFeatures) -> float:
        return float(f.shadow[attached].sum()) * gsd * gsd / half_perimeter

    def clear(f: ImageFeatures) -> bool:
        return f.occluded is None or f.occluded[attached].mean() < 0.3

    # Shadows count only from images that show the ground there (dark gaps between snow
    # patches are not shadows of anything).
    sb = [shadow_m(f) for f in before if clear(f)] or [0.0]
    sa = [shadow_m(f) for f in after if clear(f)] or [0.0]
    cues = {
        "new_edges": frac(new_all, ring),
        "lost_edges": frac(lost_all, ring),
        "shadow_before": float(np.mean(sb)),
        "shadow_after": float(np.mean(sa)),
        "texture_before": float(np.mean([frac(f.edges, inner) for f in before])),
        "texture_after": float(np.mean([frac(f.edges, inner) for f in after])),
    }
    rect = geom.minimum_rotated_rectangle
    length, width = outline_sides(geom)
    width = max(width, gsd)
    cues["length_m"], cues["width_m"] = length, width
    tall_before = cues["shadow_before"] > shadow_min
    flat_before = max(sb) < shadow_min / 2
    flat_after = max(sa) < shadow_min / 2
    new, lost = cues["new_edges"], cues["lost_edges"]
    gained_shadow = cues["shadow_after"] - cues["shadow_before"]
    # A "new" outline that is itself dark against its surroundings in the later images is
    # a shadow that grew with a lower sun, not a roof.
    around = ndimage.binary_dilation(region, iterations=max(2, round(6 / gsd))) & ~region

    def contrast(f: ImageFeatures) -> float:
        # Inside against a ring around it, shadows left out: a roof stands out from the
        # ground it stands on; the same ground before it was built (or after it went) not.
        # Per colour band, the largest difference: a roof may differ in hue only.
        a, b = region & f.usable & ~f.shadow, around & f.usable & ~f.shadow
        if not a.any() or not b.any():
            return 0.0
        bands = [f.log] if f.bands is None else list(f.bands)
        return max(abs(float(np.median(x[a]) - np.median(x[b]))) for x in bands)

    cues["dark_after"] = float(
        np.mean(
            [
                np.median(f.log[region & f.usable]) - np.median(f.log[around & f.usable])
                if (region & f.usable).any() and (around & f.usable).any()
                else 0.0
                for f in after
            ]
        )
    )
    for name, views in (("before", before), ("after", after)):
        cues[f"contrast_{name}"] = float(np.mean([contrast(f) for f in views if clear(f)] or [0.0]))
    # A roof cut by the border of the area looked at is a rectangle cut by a line: its
    # rectangle's part outside is no gap in it.
    seen_rect = rect if frame is None or frame.contains(rect) else rect.intersection(frame)
    cues["fill"] = float(geom.area / max(seen_rect.area, 1e-9))
    cgain = cues["contrast_after"] - cues["contrast_before"]
    if new >= min_edges and new > lost:
        if width <= 10.0 and length >= max(5 * width, 40.0) and flat_after:
            # A track bed is laid on open ground: strong straight edges already there in
            # the earlier images mean an existing track seen differently (GSD, blur);
            # and ballast stands out from the earth it covers, where a faint line that
            # only shows in some light (a path, a siding's old bed) does not.
            near = ndimage.binary_dilation(region, iterations=2)
            cues["edges_before"] = float(
                np.mean([frac(f.edges, near) for f in before if clear(f)] or [1.0])
            )
            if cues["edges_before"] < 0.1 and cgain >= contrast_min:
                return "new track", cues
            return None, cues
        if cues["dark_after"] < -dark:
            return None, cues
        # A strip a few metres wide that is no track bed (it has a shadow after, or is
        # short) is the side of a standing building seen in other light: its shadow under
        # a lower sun or through less haze, its wall leaning with the view. The narrowest
        # true new roof outlined on the tuning seeds is 7 m wide (the no-construction
        # series' strips 3.5-4.1 m).
        if width < min_roof_width_m:
            return None, cues
        # Ground that lay in a shadow in the earlier images (a low winter sun's long
        # shadow of a standing building, taken for a cloud's there or too faint under
        # haze to count as its shadow) shows new edges when a higher sun shortens the
        # shadow: it could not show an absence. True new roofs: at most 0.21 of the
        # footprint in shadow before (tuning seeds).
        cues["shadow_in_before"] = float(np.mean([frac(f.shadow, region) for f in before]))
        if cues["shadow_in_before"] >= in_shadow:
            return None, cues
        # A new roof replaces ground: before, its footprint neither stood out from the
        # ground around it nor was full of straight edges. One that did was there already
        # (a parked truck, a wall's end, a roof in other light or at another GSD).
        if cues["contrast_before"] >= contrast_min / 2 or cues["texture_before"] >= max_texture:
            return None, cues
        height = gained_shadow >= shadow_min and cues["shadow_before"] < 1.5 * shadow_min
        open_ground = flat_before and new >= 1.5 * min_edges
        # A roof stands out from the ground: some shadow gained, or the footprint now
        # differs from its surroundings where it did not before. An outline that does
        # neither (a faint line seen in other light, a vehicle's edge) is not a building.
        stands_out = gained_shadow >= shadow_min / 4 or cgain >= contrast_min
        if (height or open_ground) and stands_out:
            # No shadow before, or clearly more after: height appeared. Low structures
            # (platforms) and a high sun leave little shadow, so a new outline on
            # shadow-free ground counts too when it stands out from it.
            return "new structure", cues
        return None, cues  # new edges on a standing structure (lean, sun, snow)
    if lost >= min_edges and lost > new:
        # A building's outline is a filled rectangle; a thin, ragged lost strip with a lost
        # shadow is a wall or a lean seen differently.
        lost_height = (
            tall_before
            and flat_after
            and -gained_shadow >= shadow_min
            and lost >= 2.5 * min_edges
            and cues["fill"] >= 0.8
        )
        # A removed roof: its rectangle stood out from the ground and no longer does.
        lost_roof = (
            (flat_after or (one_side and max(sa) < 0.25 * cues["shadow_before"]))
            and cues["fill"] >= min_fill
            and lost >= 1.25 * min_edges
            and cues["contrast_before"] - cues["contrast_after"] >= contrast_min / 2
        )
        # Where a structure went, the ground looks like the ground around it: a footprint
        # that still stands out, or is darker than around it, is still there (a shadow, a
        # dark truck seen in other light).
        gone = cues["contrast_after"] < contrast_min and cues["dark_after"] >= -dark
        if (lost_height or lost_roof) and gone:
            return "removed structure", cues
        if (
            lost >= 1.5 * min_edges
            and cues["texture_before"] - cues["texture_after"] > 0.15
            and geom.area >= 200
            and flat_before
            and flat_after
        ):
            return "cleared/graded ground", cues
    # Lost outlines without lost shadows are what snow does to flat things: not reported.
    return None, cues


def _score(kind: str, cues: dict[str, float], threshold: float) -> float:
    """0..1 from how clear the edges, the shadow (height) and the look change are."""
    edge = float(np.clip(max(cues["new_edges"], cues["lost_edges"]) / 0.5, 0, 1))
    height = float(np.clip(abs(cues["shadow_after"] - cues["shadow_before"]) / 2.0, 0, 1))
    look = float(np.clip(cues["appearance"] / (2 * threshold), 0, 1))
    if cues.get("one_side"):
        # A roof found from one lost side: its outline is one side by nature; that the
        # rectangle stood out from the ground and no longer does is the look change.
        drop = cues["contrast_before"] - cues["contrast_after"]
        look = max(look, float(np.clip(drop / (2 * threshold), 0, 1)))
    if kind in ("new track", "cleared/graded ground", "other"):
        height = 1.0 - height
    return round(0.4 * edge + 0.35 * height + 0.25 * look, 3)


def _regions(
    edges: np.ndarray, *, min_edge_px: int, min_px: float, closing_px: int = 3, pad: int = 16
) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """Footprints outlined by persistent changed edges, as (window, mask in the window).

    Edges are closed into outlines and filled; an outline left open (a side hidden by a
    shadow margin or a mask) becomes the rectangle its edges outline, which for the L or
    U of a rectangular building's visible sides is the building. Windows are padded by
    ``pad`` pixels so that later steps can look around the footprint.
    """
    closed = ndimage.binary_closing(edges, iterations=closing_px) | edges
    lab, count = ndimage.label(closed)
    out: list[tuple[tuple[slice, slice], np.ndarray]] = []
    if count == 0:
        return out
    counts = ndimage.sum_labels(edges, lab, index=np.arange(1, count + 1))
    objects = ndimage.find_objects(lab)
    for k in np.flatnonzero(counts >= min_edge_px):
        sl = objects[k]
        win = grown(sl, pad, edges.shape)
        comp = lab[win] == k + 1
        filled = ndimage.binary_fill_holes(comp)
        hull = _hull_mask(comp, edges[win])
        if filled.sum() < 0.75 * hull.sum():
            filled = hull
        # Edges straddle the outline: take one pixel back.
        filled = ndimage.binary_erosion(filled, iterations=1)
        if filled.sum() < min_px:
            continue
        out.append((win, filled))
    return out


def _min_rect(mask: np.ndarray) -> tuple[Any, np.ndarray]:
    """The minimum-area rectangle around a mask's pixels (OpenCV's ``((cx, cy), (w, h),
    angle)``) and that rectangle filled, as a mask of the same shape."""
    r, c = np.nonzero(mask)
    rect = cv2.minAreaRect(np.stack([c, r], axis=-1).astype(np.float32))
    box = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(box, [np.round(cv2.boxPoints(rect)).astype(np.int32)], 1)
    return rect, box.astype(bool)


def _roof_colour(
    region: np.ndarray,
    before: list[ImageFeatures],
    after: list[ImageFeatures],
    *,
    diff: float,
    ring_px: int = 6,
) -> np.ndarray:
    """Pixels whose colour differs from the earlier images in every later one (in some
    log band by ``diff``, after the two images' offset on the ground around ``region``
    is taken out), and that are no shadow there."""
    around = ndimage.binary_dilation(region, iterations=ring_px) & ~region
    out = np.ones(region.shape, bool)
    for fa in after:
        if fa.bands is None:
            continue
        ok = fa.usable & ~fa.shadow
        dmax = None
        for fb in before:
            if fb.bands is None:
                continue
            both = around & ok & fb.usable & ~fb.shadow
            if both.sum() < 10:
                continue
            dm = np.zeros(region.shape, np.float32)
            for xa, xb in zip(fa.bands, fb.bands, strict=True):
                d = xa - xb
                dm = np.maximum(dm, np.abs(d - float(np.median(d[both]))))
            dmax = dm if dmax is None else np.maximum(dmax, dm)
        if dmax is None:  # no earlier image to compare with here
            return np.zeros(region.shape, bool)
        out &= ok & (dmax >= diff)
    return out


def _roof_pieces(
    outline: np.ndarray,
    before: list[ImageFeatures],
    after: list[ImageFeatures],
    *,
    min_px: float,
    diff: float = 0.2,
    cover: float = 0.6,
) -> list[np.ndarray]:
    """The roofs inside a new outline that is no roof as drawn, or [] when there is
    nothing to split.

    Changed edges outline a new roof together with its shadow and whatever changed edges
    the closing joins to it (a second roof's shadow, a truck): the rectangle around all of
    them is mostly ground. The roofs themselves are the blobs whose colour differs from
    the earlier images in every later one (:func:`_roof_colour`); each blob of at least
    ``min_px`` becomes its minimum-area rectangle (within the outline). Not split when one
    blob already covers ``cover`` of the outline.
    """
    roof = _roof_colour(outline, before, after, diff=diff) & outline
    blobs = ndimage.binary_opening(roof, iterations=2)  # no thin bridges
    lab, n = ndimage.label(blobs)
    if n == 0:
        return []
    sizes = ndimage.sum_labels(blobs, lab, index=np.arange(1, n + 1))
    big = [k + 1 for k in np.flatnonzero(sizes >= min_px)]
    if not big or (len(big) == 1 and sizes[big[0] - 1] >= cover * outline.sum()):
        return []
    near = ndimage.binary_dilation(outline, iterations=2)
    pieces = []
    for k in big:
        blob = ndimage.binary_fill_holes(ndimage.binary_closing(lab == k, iterations=2))
        pieces.append((_min_rect(blob)[1] | blob) & near)
    return pieces


def _crop(f: ImageFeatures, win: tuple[slice, slice]) -> ImageFeatures:
    """The features of one window (views, no copies)."""
    return ImageFeatures(
        log=f.log[win],
        strength=f.strength[win],
        edges=f.edges[win],
        shadow=f.shadow[win],
        usable=f.usable[win],
        gsd_m=f.gsd_m,
        occluded=None if f.occluded is None else f.occluded[win],
        bands=None if f.bands is None else f.bands[:, win[0], win[1]],
    )


def _outline_seen(
    changed: np.ndarray, views: list[ImageFeatures], *, tolerance_px: int = 3
) -> float | None:
    """The median share of the ``changed`` outline pixels that ``views`` show an edge at
    (within ``tolerance_px``: lean and GSD move outlines a little), over the views that
    see them clearly; None when none does."""
    if not changed.any():
        return None
    shares = []
    for f in views:
        if f.usable[changed].mean() < 0.7 or (
            f.occluded is not None and f.occluded[changed].mean() > 0.3
        ):
            continue
        near = ndimage.binary_dilation(f.edges, iterations=tolerance_px)
        shares.append(float(near[changed].mean()))
    return float(np.median(shares)) if shares else None


def _hull_mask(comp: np.ndarray, edges: np.ndarray | None = None) -> np.ndarray:
    """The rectangle that the component's edge pixels outline, as a mask of the same shape.

    Of the rectangles enclosing the pixels at each orientation (1 degree steps), the one
    with most edge pixels on its sides wins (then the smaller): for the L of two visible
    sides of a building that is the building, where a minimum-area rectangle may take
    the diagonal.
    """
    rows, cols = np.nonzero(comp if edges is None else (edges & comp))
    if len(rows) < 3:
        return comp.copy()
    pts = np.stack([cols, rows], axis=-1).astype(np.float64)
    best = None
    for deg in range(90):
        t = np.radians(deg)
        rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        q = pts @ rot.T
        lo, hi = q.min(axis=0), q.max(axis=0)
        d = np.minimum(np.abs(q - lo), np.abs(q - hi)).min(axis=1)
        on_side = float(np.mean(d <= 2.0))
        area = float(np.prod(hi - lo + 1))
        key = (round(on_side, 2), -area)
        if best is None or key > best[0]:
            best = (key, rot, lo, hi)
    _, rot, lo, hi = best
    corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    box_pts = corners @ rot  # back to (col, row)
    out = np.zeros(comp.shape, np.uint8)
    cv2.fillPoly(out, [np.round(box_pts).astype(np.int32)], 1)
    return out.astype(bool) | comp


def _can(pm: PairMaps, sign: str) -> np.ndarray:
    """Where an image pair can show a change of this ``sign`` ("new" or "lost")."""
    return pm.can_new if sign == "new" else pm.can_lost


def _roof_beside(
    strip: np.ndarray,
    views: list[ImageFeatures],
    *,
    tolerance: float = 0.07,
    max_px: float = 5000.0,
    min_fill: float = 0.8,
    within: np.ndarray | None = None,
) -> list[np.ndarray]:
    """The roofs a thin lost strip bordered: on each side of it, the pixels that look like
    the ground right beside the strip (each log colour band within ``tolerance`` of its
    median there, not shadow, in every one of ``views``, and inside ``within``: the earlier
    images' footprint), connected to that side. Kept are the
    ones that nearly fill their minimum-area rectangle (``min_fill``), of roof size, with
    the strip along one of their sides: that rectangle, best first.

    A removed warehouse often shows only one lost side: the yard side is traffic ground
    and the far side lies in its own shadow's margin. The earlier images still show the
    whole roof beside that side.
    """
    rows, cols = np.nonzero(strip)
    if len(rows) < 6 or not views:
        return []
    pts = np.stack([cols, rows], axis=-1).astype(np.float64)
    centre = pts.mean(axis=0)
    _, vecs = np.linalg.eigh(np.cov((pts - centre).T))
    normal = vecs[:, 0]  # across the strip
    yy, xx = np.mgrid[: strip.shape[0], : strip.shape[1]]
    across = (xx - centre[0]) * normal[0] + (yy - centre[1]) * normal[1]
    dist = ndimage.distance_transform_edt(~strip)
    band = (dist >= 2) & (dist <= 4)
    out: list[tuple[float, np.ndarray]] = []
    for side in (1.0, -1.0):
        seed = band & (side * across > 0)
        like = ~strip if within is None else ~strip & within
        for f in views:
            s = seed & f.usable & ~f.shadow
            if s.sum() < 6:
                like = np.zeros_like(strip)
                break
            for x in [f.log] if f.bands is None else list(f.bands):
                like &= np.abs(x - float(np.median(x[s]))) < tolerance
            like &= f.usable & ~f.shadow
        like = ndimage.binary_opening(like, iterations=2)  # no thin bridges to the yard
        lab, _ = ndimage.label(like)
        keep = np.unique(lab[seed & like])
        roof = np.isin(lab, keep[keep > 0])
        area = float(roof.sum())
        if area < 4 * strip.sum() ** 0.5 or area > max_px:
            continue
        # The lost edge straddles the roof's outline: its inner half is roof. Close notches
        # (a pixel of noise, a corner cut by the opening) before measuring.
        roof |= strip & ndimage.binary_dilation(roof, iterations=2)
        roof = ndimage.binary_fill_holes(ndimage.binary_closing(roof, iterations=2))
        rect, box = _min_rect(roof)
        (_, _), (w, h), _ = rect
        fill = float(roof.sum()) / max((w + 1) * (h + 1), 1.0)
        # The strip lies along the rectangle's side: most of it on the roof's rim.
        rim = ndimage.binary_dilation(roof, iterations=2) & ~ndimage.binary_erosion(
            roof, iterations=3
        )
        on_rim = float((strip & rim).sum()) / max(float(strip.sum()), 1.0)
        if fill >= min_fill and on_rim >= 0.6:
            # The roof is the rectangle (its corners and a rim pixel lost to noise too).
            grown = box | roof
            out.append((fill, grown if within is None else grown & within))
    return [m for _, m in sorted(out, key=lambda t: -t[0])]


def _refine(
    region: np.ndarray, views: list[ImageFeatures], *, reach_px: int = 6, tolerance: float = 0.18
) -> np.ndarray:
    """The footprint as the image that shows the structure sees it.

    The outline found from changed edges stops short where shadows and their margins
    were left out; here the roof is grown from the outline's core over pixels that look
    like it (log intensity within ``tolerance``, not shadow) in every image of ``views``,
    up to ``reach_px`` beyond the outline. Kept only when the result stays plausible
    (between half and twice the outline's area).
    """
    core = ndimage.binary_erosion(region, iterations=2)
    if core.sum() < 4:
        return region
    zone = ndimage.binary_dilation(region, iterations=reach_px)
    like = zone.copy()
    for f in views:
        ref = float(np.median(f.log[core]))
        like &= (np.abs(f.log - ref) < tolerance) & ~f.shadow & f.usable
    lab, _ = ndimage.label(like | core)
    grown = np.isin(lab, np.unique(lab[core]))
    grown = ndimage.binary_opening(ndimage.binary_fill_holes(grown), iterations=1)
    if 0.5 * region.sum() <= grown.sum() <= 2.0 * region.sum():
        return grown | core
    return region


def find_changes(
    images: Sequence[ImageInput],
    site: Site,
    *,
    persist: int = 2,
    gsd_m: float = 1.0,
    min_area_m2: float = 100.0,
    min_region_m2: float = 60.0,
    threshold: float = 0.25,
    min_edge_px: int = 12,
    edge_threshold: float = 0.25,
    min_score: float = 0.3,
    min_coverage: float = 0.25,
    min_clear: float = 0.1,
    object_buffer_m: float = 3.0,
    min_response: float = 0.08,
    on_image: Callable[[str], None] | None = None,
    method: str = "both",
    structure_model: StructureModel | None = None,
) -> ChangeSet:
    """Facility changes of ``site`` in ``images`` (path, acquisition time, detections or None).

    ``persist``: a change must be seen in this many consecutive usable images (and be
    absent from up to as many before them). ``edge_threshold``: an edge counts when its
    straightness-weighted strength reaches this share of the image's 99th-percentile
    gradient; ``min_edge_px``: changed edge pixels an outline needs; ``min_area_m2``: the
    smallest footprint reported (100 m²: the structures the method is measured on; smaller
    outlines are mostly shadow rims and grass patches); ``min_region_m2``: the smallest
    outline looked at (a lost side this small may grow into the roof it bordered; an
    outline between the two is drawn and claims its place, but is not reported);
    ``min_score``: changes scoring lower are dropped.
    ``method``: "edges" (changed outlines, classified by rules), "structures" (the
    learned structure maps of :mod:`.structures`; ``structure_model``: another model than
    the shipped one) or "both" (the default: the structure changes, and the edge changes
    that report none of theirs (:func:`_same_change`) and, if of a structure, that the maps
    see a structure in on the built side and not on the other:
    :func:`.structures.map_sides`; less the narrow strips along roofs that stand
    throughout: :func:`.structures.leaning`).
    ``threshold`` only scales the appearance part of the score. Detected railcars and
    containers are masked out (``object_buffer_m`` around each, and their ground in every
    image). Raises :class:`InputError` for fewer than two usable images, too few to
    confirm a change over ``persist`` images, or an image that does not overlap the site.
    """
    if persist < 1:
        raise InputError(f"--persist must be at least 1, got {persist}")
    if method not in METHODS:
        raise InputError(f"unknown change method {method!r} (one of {', '.join(METHODS)})")
    if len(images) < 2:
        raise InputError(f"site {site.name!r}: need at least two images, got {len(images)}")
    grid = site_grid(site, gsd_m)
    order = sorted(images, key=lambda im: im[1])
    prepared = _prepare(
        order,
        site,
        grid,
        min_coverage=min_coverage,
        min_clear=min_clear,
        object_buffer_m=object_buffer_m,
        on_image=on_image,
    )
    candidates = [p for p in prepared if isinstance(p, _Prepared)]
    used = _align(candidates, min_response=min_response) if len(candidates) >= 2 else []
    if used:
        # Where railcars or containers stood in any image is traffic ground: what shows
        # between them (rails, gaps, their shadows) changes all the time. Left out.
        traffic = np.logical_or.reduce([p.objects for p in used])
        for p in used:
            p.usable &= ~traffic
    infos = [p.info if isinstance(p, _Prepared) else p for p in prepared]
    if len(used) < 2:
        reasons = "; ".join(f"{os.path.basename(i.path)}: {i.skipped}" for i in infos if i.skipped)
        raise InputError(
            f"site {site.name!r}: fewer than two usable images "
            f"({len(used) if len(candidates) >= 2 else len(candidates)} of {len(images)})"
            + (f" - {reasons}" if reasons else "")
        )
    if len(used) < persist + 1:
        raise InputError(
            f"site {site.name!r}: {len(used)} usable images cannot confirm a change that must "
            f"persist over {persist} images (need {persist + 1}; use --persist 1 for a pair)"
        )
    changes: list[Change] = []
    if method in ("edges", "both"):
        changes = _changes_over_time(
            used,
            site,
            grid,
            persist=persist,
            min_area_m2=min_region_m2,
            threshold=threshold,
            min_edge_px=min_edge_px,
            edge_threshold=edge_threshold,
            min_score=min_score,
        )
    # (outlines under min_score were dropped as they were found)
    changes = [c for c in changes if c.area_m2 >= min_area_m2]
    if method in ("structures", "both"):
        maps = structure_maps(used, grid, structure_model)
        # Images whose ground edges did not align (deep snow) may by their buildings.
        ids = {id(p) for p in used}
        failed = [
            p for p in candidates
            if id(p) not in ids and p.info.alignment is not None and not p.info.alignment.ok
        ]
        late, late_maps = align_by_maps(failed, used, maps, grid, structure_model)
        for p in late:
            p.usable &= ~traffic
        series = sorted(zip(used + late, maps + late_maps, strict=True),
                        key=lambda pm: pm[0].info.acquired)
        s_used, s_maps = [p for p, _ in series], [m for _, m in series]
        learned = [
            c for c in structure_changes(s_used, site, grid, persist=persist, maps=s_maps,
                                         model=structure_model)
            if c.area_m2 >= min_area_m2
        ]
        edges = [c for c in changes if _supported(c, used, maps, grid)]
        # Where both found a change the maps' outline stands: it follows the roof, where a
        # changed outline often takes in its shadow and the ground beside it.
        changes = learned + [e for e in edges if not any(_same_change(e, c) for c in learned)]
        # A strip along a roof that stands throughout is the roof leaning with the view.
        changes = [
            c for c in changes
            if c.kind not in LEANING_KINDS or not leaning(c, s_used, s_maps, grid)
        ]
        # Pieces of one structure the maps cut on a line of unsure cells are one change.
        changes = merge_pieces(changes)
    for n, c in enumerate(changes, start=1):
        c.id = n
    ref = next(
        (
            u.info.path
            for u in used
            if u.info.alignment
            and u.info.alignment.response == 1.0
            and u.info.alignment.dx == 0.0
            and u.info.alignment.dy == 0.0
        ),
        "",
    )
    return ChangeSet(site.name, changes, infos, grid, persist, ref)


def _supported(c: Change, used: list[_Prepared], maps: list[np.ndarray], grid: Grid) -> bool:
    """Whether the structure maps let an edge change stand: changes of other kinds than
    structures, and structures on ground no image shows, always; a structure only where
    the maps see one on its built side (:attr:`StructureRules.edge_support`) and none on
    the other (:attr:`StructureRules.edge_other`)."""
    if c.kind not in ("new structure", "removed structure"):
        return True
    rules = StructureRules()
    support, other = map_sides(c, used, maps, grid, rules)
    return (support is None or support >= rules.edge_support) and (
        other is None or other <= rules.edge_other)


def outline_sides(geom: Any) -> tuple[float, float]:
    """Length and width (m) of an outline's minimum rotated rectangle (0, 0 for a
    degenerate one)."""
    rect = geom.minimum_rotated_rectangle
    if rect.geom_type != "Polygon":
        return 0.0, 0.0
    xy = np.asarray(rect.exterior.coords)[:4]
    sides = np.hypot(*(np.roll(xy, -1, axis=0) - xy).T)
    return float(sides.max()), float(sides.min())


def _same_change(a: Change, b: Change) -> bool:
    """Whether two changes found by different methods report one event: their outlines
    overlap, unless one is a removal and the other something new in a later or earlier
    bracket (an old shed cleared in summer, a warehouse built over part of it in autumn)."""
    if not _overlap(a.geometry, b.geometry):
        return False
    lost = (a.kind == "removed structure", b.kind == "removed structure")
    apart = a.first_seen <= b.last_absent or b.first_seen <= a.last_absent
    return lost[0] == lost[1] or not apart


def _overlap(a: Any, b: Any, share: float = 0.2) -> bool:
    """Whether two change outlines overlap by more than ``share`` of the smaller."""
    return bool(a.intersection(b).area > share * min(a.area, b.area))


@dataclass
class _Claim:
    """An outline that stands for a change: its footprint (buffered), the step that found
    it, its date bracket (indices of the last absent and first seen images), whether it is
    a roof piece (:func:`_roof_pieces`), and its reported change, if any. ``replaces``:
    the pieces it took the place of."""

    geom: Any
    step: int = 0
    bracket: tuple[int | None, int] | None = None
    piece: bool = False
    change: Change | None = None
    replaces: list[_Claim] = field(default_factory=list)


def _claim(
    found: list[_Claim],
    geom: Any,
    score: float,
    min_score: float,
    gsd: float,
    *,
    step: int = 0,
    bracket: tuple[int | None, int] | None = None,
    piece: bool = False,
) -> _Claim | None:
    """The claim of an outline that stands for a change not found yet (recorded in
    ``found``), or None.

    None when it overlaps (by over 0.3 of its area) one found at an earlier step (a later
    image showed more of it). An outline scoring under ``min_score`` is dropped and does
    not stand for the change either, so it claims nothing: a faint early outline (a step
    too early, the roof half seen) would otherwise hide the clear one at the right step.
    A whole outline takes the place of roof pieces found at an earlier step with the same
    bracket (that step's first later image could not see the place, so the pieces were
    cut from the next image's outline; this step sees the roof whole): they leave
    ``found`` and are listed in ``replaces``, for the caller to drop their changes.
    """
    if score < min_score:
        return None
    over = [c for c in found if geom.intersection(c.geom).area > 0.3 * geom.area]
    if over and (
        piece
        or bracket is None
        or not all(c.piece and c.step < step and c.bracket == bracket for c in over)
    ):
        return None
    claim = _Claim(geom.buffer(3 * gsd), step, bracket, piece, replaces=over)
    found[:] = [c for c in found if not any(c is o for o in over)]
    found.append(claim)
    return claim


def _changes_over_time(
    used: list[_Prepared],
    site: Site,
    grid: Grid,
    *,
    persist: int,
    min_area_m2: float,
    threshold: float,
    min_edge_px: int,
    edge_threshold: float = 0.2,
    transient: float = 0.35,
    first_visible: float = 0.5,
    min_score: float = 0.0,
) -> list[Change]:
    gsd = grid.gsd_m
    zones = {name: to_local(z, grid.crs) for name, z in site.zones.items()}
    frame = to_local(site.aoi, grid.crs).buffer(-4 * gsd)
    feat_cache: dict[tuple[int, float], ImageFeatures] = {}
    pair_cache: dict[tuple[int, int], PairMaps] = {}
    traffic = np.logical_or.reduce([p.objects for p in used])
    found: dict[str, list[_Claim]] = {"new": [], "lost": []}

    def feats(i: int, target: float) -> ImageFeatures:
        key = (i, round(target, 3))
        if key not in feat_cache:
            p = used[i]
            f = image_features(
                p.rgb,
                p.usable,
                p.info.gsd_m,
                grid_gsd=gsd,
                target_gsd=target,
                edge_threshold=edge_threshold,
                occluded=p.occluded,
            )
            # Shadows cast by railcars and containers reach past their masks: leave out
            # every shadow that touches traffic ground, with a margin.
            if traffic.any() and f.shadow.any():
                lab, _ = ndimage.label(f.shadow)
                touch = np.unique(lab[ndimage.binary_dilation(traffic, iterations=2) & f.shadow])
                cast = ndimage.binary_dilation(np.isin(lab, touch[touch > 0]), iterations=2)
                f.usable = f.usable & ~cast
                f.edges = f.edges & ~cast
                f.shadow = f.shadow & ~cast
            feat_cache[key] = f
        return feat_cache[key]

    def pair(b: int, a: int) -> PairMaps:
        if (b, a) not in pair_cache:
            target = max(used[b].info.gsd_m, used[a].info.gsd_m, gsd)
            pair_cache[(b, a)] = pair_maps(feats(b, target), feats(a, target))
        return pair_cache[(b, a)]

    def seen(changed: np.ndarray, win: tuple[slice, slice], js: range) -> float | None:
        views = [_crop(feats(j, max(used[j].info.gsd_m, gsd)), win) for j in js]
        return _outline_seen(changed, views)

    n = len(used)
    out: list[Change] = []
    min_px = min_area_m2 / gsd**2
    reach = round(60 / gsd)  # how far a lost side may reach into its roof
    thin_m = 8.0  # a lost outline this narrow is one side at most
    for i in range(1, n - persist + 1):
        before = list(range(max(0, i - persist), i))
        after = list(range(i, i + persist))
        pms = [pair(b, a) for b in before for a in after]
        app = np.fmin.reduce([pm.appearance for pm in pms])  # NaN only where never comparable
        app = np.nan_to_num(app, nan=0.0)
        # Changed in every before/after pair that can tell, and at least one can.
        new_all = np.logical_and.reduce([pm.new_edges | ~pm.can_new for pm in pms])
        new_all &= np.logical_or.reduce([pm.can_new for pm in pms])
        lost_all = np.logical_and.reduce([pm.lost_edges | ~pm.can_lost for pm in pms])
        lost_all &= np.logical_or.reduce([pm.can_lost for pm in pms])
        bf = [feats(b, max(used[b].info.gsd_m, gsd)) for b in before]
        af = [feats(a, max(used[a].info.gsd_m, gsd)) for a in after]
        for sign, edges in (("new", new_all), ("lost", lost_all)):
            # A new outline that is no roof as drawn is tried again as the roofs inside it
            # (:func:`_roof_pieces`), first thing after it. Items: window, outline, whether
            # it may be split, whether it is a piece.
            queue: deque[tuple[tuple[slice, slice], np.ndarray, bool, bool]] = deque(
                (win, outline, sign == "new", False)
                for win, outline in _regions(edges, min_edge_px=min_edge_px, min_px=min_px)
            )
            while queue:
                win, outline, splittable, piece = queue.popleft()
                tr = grid.transform @ Affine.translation(win[1].start, win[0].start)
                bfc = [_crop(f, win) for f in bf]
                afc = [_crop(f, win) for f in af]
                # Classify on the outline the changed edges drew; measure the footprint
                # as the image that shows the structure sees it.
                kind, cues = _classify(
                    outline, _polygon(outline, tr, 0.0), bfc, afc, new_all[win], lost_all[win], gsd,
                    frame=frame,
                )
                if sign == "lost" and kind != "removed structure" and cues["width_m"] <= thin_m:
                    # One lost side of a roof: grow it into the roof it bordered before
                    # and test that rectangle as a removed roof.
                    big = grown(win, reach, grid.shape)
                    strip = np.zeros((big[0].stop - big[0].start, big[1].stop - big[1].start), bool)
                    r0, c0 = win[0].start - big[0].start, win[1].start - big[1].start
                    strip[r0 : r0 + outline.shape[0], c0 : c0 + outline.shape[1]] = outline
                    bfb = [_crop(f, big) for f in bf]
                    afb = [_crop(f, big) for f in af]
                    trb = grid.transform @ Affine.translation(big[1].start, big[0].start)
                    clear_b = [
                        f for f in bfb if f.occluded is None or f.occluded[strip].mean() <= 0.3
                    ]
                    # Within the earlier images: a roof cut by an image's edge is not
                    # grown (nor boxed) past it.
                    within = np.logical_and.reduce(
                        [used[b].footprint[big] for b in before if used[b].footprint is not None]
                        or [np.ones(strip.shape, bool)]
                    )
                    for roof in _roof_beside(strip, clear_b, within=within):
                        geom2 = _polygon(roof, trb, 0.0)
                        k2, c2 = _classify(
                            roof, geom2, bfb, afb, new_all[big], lost_all[big], gsd,
                            one_side=True, frame=frame,
                        )
                        if k2 == "removed structure":
                            c2["one_side"] = 1.0
                            win, outline, tr, kind, cues = big, roof, trb, k2, c2
                            bfc, afc = bfb, afb
                            break
                if kind is None and splittable:
                    pieces = _roof_pieces(outline, bfc, afc, min_px=min_px)
                    queue.extendleft((win, p, False, True) for p in reversed(pieces))
                    continue
                if kind is None or (sign == "lost") != (kind == "removed structure"):
                    continue
                region = _refine(outline, afc if sign == "new" else bfc)
                # A new outline gone again in the later images, or a lost one that was not
                # there in the earlier images or is back in the later ones: a truck, machine
                # or pile that stood still for a while, not a facility change.
                changed = (new_all if sign == "new" else lost_all)[win]
                changed = changed & ndimage.binary_dilation(region, iterations=2)
                later = seen(changed, win, range(i + persist, n))
                if sign == "new":
                    passing = later is not None and later < transient
                else:
                    earlier = seen(changed, win, range(max(0, i - persist)))
                    passing = (later is not None and later >= 1 - transient) or (
                        earlier is not None and earlier < transient
                    )
                if passing:
                    continue
                geom = _polygon(region, tr, simplify_m=gsd * 0.7)
                cues["appearance"] = float(app[win][region].mean())
                score = _score(kind, cues, threshold)
                # The bracket closes at the first later image that can show the change
                # there: where the step's first image cannot see the place (cloud, its
                # shadow, snow), only the next one found it, and the change may have
                # come after the first.
                drawn = edges[win] & ndimage.binary_dilation(outline, iterations=2)
                a_first = next(
                    (
                        a
                        for a in after
                        if drawn.any()
                        and np.logical_or.reduce(
                            [_can(pair(b, a), sign)[win] for b in before]
                        )[drawn].mean()
                        >= first_visible
                    ),
                    i,
                )
                # The bracket opens at the last earlier image that saw the place (snow,
                # cloud or its shadow over it, or outside the image, proves nothing),
                # before the window too. Where none did, it cannot be dated: not reported.
                b_last = next(
                    (b for b in range(i - 1, -1, -1)
                     if (used[b].usable[win] & ~used[b].occluded[win])[region].mean() >= 0.5),
                    None,
                )
                claim = _claim(
                    found[sign], geom, score, min_score, gsd,
                    step=i, bracket=(b_last, a_first), piece=piece,
                )
                if claim is None:
                    continue
                replaced = [c.change for c in claim.replaces if c.change is not None]
                out[:] = [c for c in out if not any(c is r for r in replaced)]
                if b_last is None:
                    continue
                out.append(
                    Change(
                        geometry=geom,
                        crs=grid.crs,
                        kind=kind,
                        first_seen=used[a_first].info.acquired,
                        last_absent=used[b_last].info.acquired,
                        area_m2=float(region.sum() * gsd * gsd),
                        zone=_zone(geom, zones),
                        score=score,
                        before=used[b_last].info.path,
                        after=used[a_first].info.path,
                        seen_in=persist,
                        cues={k2: round(v, 4) for k2, v in cues.items()},
                    )
                )
                claim.change = out[-1]
        # Free maps that later steps no longer need.
        for key in [key for key in pair_cache if key[0] < i - persist]:
            del pair_cache[key]
    return out
