"""Facility changes from learned structure maps: where a building stands, image by image.

The edge method (:mod:`.find`) looks for outlines that changed between images and then
asks whether they are a roof. This one asks a small segmentation network
(``railwatch-struct.onnx``, trained on rendered yards: :mod:`railwatch.train.structures`)
where structures stand in each co-registered image of the series, then reads every
region's history: a new structure is absent in every earlier image that shows the place
and present in the next ``persist`` images that do (and in most after them); a removed
one the other way round. Per-image maps make it robust to what changes between images
but is no structure (season, sun, shadows, lean, trains) and let it date each change to
the last image that showed the place empty and the first that showed it built.

An image whose snow or cloud mask covers the place cannot prove the place empty (snow on
a roof hides it), but the network seeing a structure there still counts as presence.
Deep snow can leave an image without the ground edges co-registration matches; where the
network still finds the site's buildings in it, :func:`align_by_maps` aligns it by them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rasterio import features
from scipy import ndimage

from railwatch.analytics.changes.maps import grown
from railwatch.analytics.coregister import apply_shift, estimate_map_shift
from railwatch.errors import InputError

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from railwatch.analytics.changes.find import Change, _Prepared
    from railwatch.analytics.coregister import Grid
    from railwatch.types import Site

MODEL_DIR = Path(__file__).parent / "model"
STRUCTURE_MODEL = MODEL_DIR / "railwatch-struct.onnx"
#: ``Alignment.via`` of an image aligned by its structure map (:func:`align_by_maps`).
MAP_ALIGNED = "structure maps"
#: The grid spacing the network was trained on (metres): the change finder's default grid.
MODEL_GSD_M = 1.0
#: Larger images are mapped in tiles of this many cells with this margin (memory).
TILE, TILE_MARGIN = 1024, 64


class StructureModel:
    """The structure segmentation network on onnxruntime: ``predict(rgb)`` -> (H, W)
    probability that a structure (roof or wall of a building, platform) covers each cell
    of an RGB image on the site grid (float, about 0..1 as :func:`read_on_grid` gives)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, threads: int | None = 1) -> None:
        from railwatch.detect.session import open_session

        p = Path(path) if path is not None else STRUCTURE_MODEL
        if not p.exists():
            raise InputError("structure model not found", p)
        self.path = p
        self.session = open_session(p, threads)

    def predict(self, rgb: np.ndarray, gsd_m: float = MODEL_GSD_M) -> np.ndarray:
        """The map of ``rgb`` (cells of ``gsd_m``; resampled to the model's 1 m and the
        map back when they differ)."""
        if abs(gsd_m - MODEL_GSD_M) > 1e-6:
            import cv2

            h, w = rgb.shape[:2]
            f = gsd_m / MODEL_GSD_M
            small = cv2.resize(rgb.astype(np.float32), (max(8, round(w * f)), max(8, round(h * f))),
                               interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
            return cv2.resize(self.predict(small), (w, h), interpolation=cv2.INTER_LINEAR)
        h, w = rgb.shape[:2]
        if h * w <= TILE * TILE:
            return self._run(rgb)
        # Large sites in tiles (bounded memory), each with a margin the network can see
        # past, kept only in its middle.
        out = np.empty((h, w), np.float32)
        for r in range(0, h, TILE):
            for c in range(0, w, TILE):
                r0, c0 = max(0, r - TILE_MARGIN), max(0, c - TILE_MARGIN)
                r1, c1 = min(h, r + TILE + TILE_MARGIN), min(w, c + TILE + TILE_MARGIN)
                part = self._run(rgb[r0:r1, c0:c1])
                out[r:r + TILE, c:c + TILE] = part[r - r0:r - r0 + TILE, c - c0:c - c0 + TILE]
        return out

    def predict_turned(self, rgb: np.ndarray, gsd_m: float = MODEL_GSD_M) -> np.ndarray:
        """The mean of the maps of ``rgb`` turned and mirrored eight ways, each turned
        back: a steadier second look (the network can miss a roof in one orientation)."""
        maps = []
        for k in range(4):
            for flip in (False, True):
                x = np.rot90(rgb, k)
                x = x[:, ::-1] if flip else x
                m = self.predict(np.ascontiguousarray(x), gsd_m)
                maps.append(np.rot90(m[:, ::-1] if flip else m, -k))
        return np.mean(maps, axis=0)

    def _run(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        hp, wp = -(-h // 8) * 8, -(-w // 8) * 8  # three stride-2 stages
        x = np.zeros((1, 3, hp, wp), np.float32)
        x[0, :, :h, :w] = np.clip(rgb, 0.0, 1.5).transpose(2, 0, 1)
        return self.session.run(None, {"image": x})[0][0, 0, :h, :w]


@lru_cache(maxsize=2)
def shipped_model(threads: int = 1) -> StructureModel:
    """The packaged structure model, loaded once per process."""
    return StructureModel(STRUCTURE_MODEL, threads)


@dataclass(frozen=True)
class StructureRules:
    """The thresholds of :func:`structure_changes` (chosen on the tuning seeds of
    ``bench/bench_changes.py``; see docs/benchmarks.md)."""

    candidate: float = 0.45  # mean after minus mean before, per cell, to start a region
    core: float = 0.5  # mean probability on the built side, per cell
    present: float = 0.6  # region mean above which an image shows the structure
    absent: float = 0.08  # region mean below which an image shows the place empty
    footprint: float = 0.7  # mean probability on the built side inside the footprint
    seen: float = 0.5  # share of the region an image must show to say either
    min_region_m2: float = 60.0  # smallest region looked at
    later_share: float = 0.5  # of the images after the persistence window, agreeing
    min_score: float = 0.8  # region mean after minus before (before minus after: removals)
    # A new structure whose absence only one earlier image attests needs that image to be
    # sure of it: a network's miss of a standing roof in one image must not read as
    # construction.
    lone_absent: float = 0.01
    # ... and to stay sure of it when it looks again, turned and mirrored eight ways
    # (the maps' mean over them, :meth:`StructureModel.predict_turned`): a roof it missed
    # in one orientation it half sees in others.
    lone_absent_turned: float = 0.002
    # And a removed one whose presence only one earlier image attests needs that image
    # sure of the roof (region mean above this): small sheds the network half-saw once.
    lone_present: float = 0.95
    # A removal that only one later image can see (every image after it under snow or
    # cloud, so none will ever confirm it) stands on that image alone where it is as sure
    # of the empty place as a lone earlier witness must be (``lone_absent``, and
    # ``lone_absent_turned`` when it looks again) and at least this many earlier images
    # saw the roof (0: never; such a removal has ``seen_in`` 1). Snow itself never says
    # a roof is gone.
    gone_once_witnesses: int = 2
    # A place under deep snow in every earlier image: the network's map through the snow
    # may say "empty" before a new structure where its region mean is below this (as sure
    # as a lone witness must be; 0: never), and only for a region at least
    # ``snow_min_width_m`` wide: snow hides a low platform (about a metre high, 3 to 9 m
    # wide) whole, roof and shadow, where a building still shows its walls and shadow.
    # 6 m is the narrowest building the benchmarks build; wider platforms still pass.
    snow_absent: float = 0.01
    snow_min_width_m: float = 6.0
    # Earlier images may read a place unclear (part of it taken: an old shed on part of a
    # new warehouse's ground) where the last this many before the step say the old state
    # (0: every earlier image must say it; :func:`change_step`).
    settled: int = 2
    # With method "both": an edge change of a structure whose built side (the images after
    # a new one, up to a removed one) the maps see no structure in (footprint mean below
    # this) is a changed shadow, patch or rim, not a building.
    edge_support: float = 0.15
    # ... and one whose other side (before a new one, after a removed one) the maps see a
    # structure in (footprint mean above this) is a standing building's outline seen anew
    # (lean, shadow), not construction.
    edge_other: float = 0.5
    # With method "both": a change at most ``lean_width_m`` wide along a structure that
    # stands throughout (``lean_flank`` of a thin ring around it; :func:`flank`) is that
    # roof leaning with the view, and one beside ground no image shows (``lean_unseen``
    # of the ring) cannot be told from it.
    lean_width_m: float = 8.0
    lean_flank: float = 0.2
    lean_unseen: float = 0.2
    # ... where the built side's maps (after a new strip, before a removed one) may see
    # that roof up to this far off the ring (m): images align to within about 2 px, and
    # a thin platform 2 m off in the later images leaves no cell of the ring under it on
    # both sides.
    lean_shift_m: float = 2.0
    # Changes of one kind and one bracket whose footprints lie at most this far apart (m)
    # and together make one rectangle no wider than their widest piece are one structure
    # that a line of cells the maps were unsure of cut in two (:func:`merge_pieces`).
    piece_gap_m: float = 1.5


#: Region states in one image: present, absent, unclear (between the two).
PRESENT, ABSENT, UNCLEAR = "P", "A", "M"


def region_states(
    maps: list[np.ndarray],
    visible: list[np.ndarray],
    usable: list[np.ndarray],
    region: np.ndarray,
    rules: StructureRules,
    bare: list[np.ndarray | None] | None = None,
) -> tuple[list[str | None], list[float | None], list[str | None]]:
    """Each image's verdict on ``region`` (cells of the maps' shape): P/A/M where it shows
    at least ``seen`` of it, P where only its snow or cloud covers the place and the
    network still sees a structure there, A where a deep-snow image shows the place as
    bare ground (``bare``) and the network sees nothing there, else None; the region's
    mean probability; and how the verdict came through the image's snow or cloud mask
    (None: it did not; ``"mask"``: presence through it; ``"bare"``: bare ground in deep
    snow; ``"snow"``: an empty place through deep snow, see ``snow_absent``)."""
    states: list[str | None] = []
    values: list[float | None] = []
    via: list[str | None] = []
    for s, v, u, b in zip(maps, visible, usable, bare or [None] * len(maps), strict=True):
        s_r, v_r, u_r = s[region], v[region], u[region]
        b_r = b[region] if b is not None else None
        if v_r.mean() >= rules.seen:
            x = float(s_r[v_r].mean())
            states.append(PRESENT if x > rules.present else ABSENT if x < rules.absent else UNCLEAR)
            values.append(x)
            via.append(None)
        elif u_r.mean() >= rules.seen and float(s_r[u_r].mean()) > rules.present:
            states.append(PRESENT)
            values.append(float(s_r[u_r].mean()))
            via.append("mask")
        elif b_r is not None and b_r.mean() >= rules.seen and float(s_r[b_r].mean()) < rules.absent:
            states.append(ABSENT)
            values.append(float(s_r[b_r].mean()))
            via.append("bare")
        elif (b_r is not None and u_r.mean() >= rules.seen
              and float(s_r[u_r].mean()) < rules.snow_absent):
            states.append(ABSENT)
            values.append(float(s_r[u_r].mean()))
            via.append("snow")
        else:
            states.append(None)
            values.append(None)
            via.append(None)
    return states, values, via


def change_step(states: list[str | None], k: int, sign: str, persist: int,
                later_share: float, settled: int = 0) -> tuple[int, int] | None:
    """(last image before, first image after) when the history ``states`` shows a change
    of ``sign`` ("new" or "lost") at step ``k``, else None: every image before ``k`` that
    says anything says the old state (at least one), the first ``persist`` after it that
    say anything say the new one, and so do ``later_share`` of the rest.

    With ``settled`` > 0, earlier images may also be unclear (never the new state) where
    the last ``settled`` before ``k`` that say anything say the old state: part of the
    place was taken long before (an old shed on part of a new warehouse's ground)."""
    old, new = (ABSENT, PRESENT) if sign == "new" else (PRESENT, ABSENT)
    before = [i for i in range(k) if states[i] is not None]
    after = [i for i in range(k, len(states)) if states[i] is not None]
    if not before or len(after) < persist:
        return None
    if any(states[i] != new for i in after[:persist]):
        return None
    if any(states[i] != old for i in before) and not (
        settled > 0 and len(before) >= settled
        and all(states[i] == old for i in before[-settled:])
        and all(states[i] != new for i in before)
    ):
        return None
    rest = after[persist:]
    if rest and np.mean([states[i] == new for i in rest]) < later_share:
        return None
    return before[-1], after[0]


def gone_once(states: list[str | None], values: list[float | None], k: int,
              rules: StructureRules) -> tuple[int, int] | None:
    """(last image before, the one image after) when the history shows a removal at step
    ``k`` that a single later image sees, sure of it, with images after that one that
    cannot see the place and ``rules.gone_once_witnesses`` earlier images that saw the
    roof (``StructureRules.gone_once_witnesses``), else None."""
    if rules.gone_once_witnesses <= 0:
        return None
    after = [i for i in range(k, len(states)) if states[i] is not None]
    before = [i for i in range(k) if states[i] is not None]
    if len(after) != 1 or after[0] == len(states) - 1:
        return None
    v = values[after[0]]
    if v is None or v >= rules.lone_absent or len(before) < rules.gone_once_witnesses:
        return None
    return change_step(states, k, "lost", 1, rules.later_share, rules.settled)


def _width(region: np.ndarray) -> float:
    """The width of ``region`` (cells): twice its largest inscribed half-width."""
    return 2 * float(ndimage.distance_transform_edt(np.pad(region, 1)).max()) - 1


def _regions(cand: np.ndarray, only_snow: np.ndarray | None, min_width: float
             ) -> list[tuple[tuple[slice, slice], np.ndarray, float]]:
    """The candidate regions of ``cand`` (window, cells, width in cells), opened.

    Cells that only deep snow showed before (``only_snow``) join a region only where it
    is at least ``min_width`` wide: snow hides a low platform whole. The narrower ones
    are the regions of the other cells, as if snow had shown nothing."""
    opened = ndimage.binary_opening(cand, iterations=1)
    out = []
    wide = np.zeros_like(cand)
    if only_snow is not None and only_snow.any():
        labels, _ = ndimage.label(opened)
        for r, win in enumerate(ndimage.find_objects(labels), start=1):
            reg = labels[win] == r
            if (reg & only_snow[win]).any() and (w := _width(reg)) >= min_width:
                out.append((win, reg, w))
                wide[win] |= reg
        opened = ndimage.binary_opening(cand & ~only_snow, iterations=1) & ~wide
    labels, _ = ndimage.label(opened)
    for r, win in enumerate(ndimage.find_objects(labels), start=1):
        reg = labels[win] == r
        out.append((win, reg, _width(reg)))
    return out


def structure_maps(
    used: list[_Prepared], grid: Grid, model: StructureModel | None = None
) -> list[np.ndarray]:
    """The structure probability map of each image in ``used`` on ``grid``."""
    model = model or shipped_model()
    return [model.predict(p.rgb, grid.gsd_m) for p in used]


def _turned_mean(
    model: StructureModel, rgb: np.ndarray, win: tuple[slice, slice], region: np.ndarray,
    gsd_m: float,
) -> float:
    """The mean of ``region`` (cells of the window ``win``) in the turned maps of ``rgb``
    around it (:meth:`StructureModel.predict_turned` on the window with a margin)."""
    (r, c), (h, w) = (sl.start for sl in win), rgb.shape[:2]
    r0, c0 = max(0, r - TILE_MARGIN), max(0, c - TILE_MARGIN)
    r1, c1 = min(h, win[0].stop + TILE_MARGIN), min(w, win[1].stop + TILE_MARGIN)
    m = model.predict_turned(rgb[r0:r1, c0:c1], gsd_m)
    return float(m[r - r0:r - r0 + region.shape[0], c - c0:c - c0 + region.shape[1]][region].mean())


def align_by_maps(
    failed: list[_Prepared],
    used: list[_Prepared],
    maps: list[np.ndarray],
    grid: Grid,
    model: StructureModel | None = None,
) -> tuple[list[_Prepared], list[np.ndarray]]:
    """The images of ``failed`` (their own content did not align) whose structure map
    aligns with the mean map of the aligned images ``used`` (``maps``), moved into the
    reference's frame, with their maps; the others get the reason added to ``skipped``.

    Deep snow leaves little of the ground's edges to match, yet the network often still
    finds the buildings: their map is matched instead (:func:`.estimate_map_shift`, with
    stricter checks than the imagery's). Such an image then serves the structure maps
    only, where snow lets it confirm a structure but never prove a place empty.
    """
    from railwatch.analytics.changes.find import _move

    if not failed or not maps:
        return [], []
    model = model or shipped_model()
    ref = np.mean(maps, axis=0)
    out: list[_Prepared] = []
    out_maps: list[np.ndarray] = []
    for p in failed:
        s = model.predict(p.rgb, grid.gsd_m)
        al = estimate_map_shift(ref, np.where(p.usable, s, 0.0).astype(np.float32))
        if not al.ok:
            p.info.skipped += f"; nor by its structure map ({al.reason})"
            continue
        _move(p, replace(al, via=MAP_ALIGNED))
        p.info.skipped = ""
        out.append(p)
        out_maps.append(apply_shift(s, al.dx, al.dy))
    return out, out_maps


def _footprint(change: Change, grid: Grid) -> np.ndarray:
    """The cells of ``grid`` under ``change``'s outline."""
    return features.rasterize(
        [change.geometry], out_shape=grid.shape, transform=grid.transform
    ).astype(bool)


def _sides(change: Change, used: list[_Prepared]) -> tuple[list[int], list[int]]:
    """The indices of the images of ``used`` up to ``change`` (its last absent and
    before) and from it on (its first seen and after)."""
    when = [p.info.acquired for p in used]
    return ([i for i, t in enumerate(when) if t <= change.last_absent],
            [i for i, t in enumerate(when) if t >= change.first_seen])


def map_sides(
    change: Change,
    used: list[_Prepared],
    maps: list[np.ndarray],
    grid: Grid,
    rules: StructureRules | None = None,
) -> tuple[float | None, float | None]:
    """How sure the maps are that a structure stands in ``change``'s footprint on its
    built side (the images after a new structure, up to a removed one) and on the other:
    the mean probability there over the images of that side that show at least ``seen``
    of it; None for a side no such image is on."""
    rules = rules or StructureRules()
    foot = _footprint(change, grid)
    if not foot.any():
        return None, None
    means: list[float | None] = []
    for side in _sides(change, used):
        values = []
        for i in side:
            v = used[i].usable[foot] & ~used[i].occluded[foot]
            if v.sum() >= rules.seen * foot.sum():
                values.append(float(maps[i][foot][v].mean()))
        means.append(float(np.mean(values)) if values else None)
    early, late = means
    return (early, late) if change.kind == "removed structure" else (late, early)


def flank(
    change: Change,
    used: list[_Prepared],
    maps: list[np.ndarray],
    grid: Grid,
    rules: StructureRules | None = None,
) -> tuple[float, float, float]:
    """What stands around ``change``: its footprint's width (m, twice the largest
    inscribed half-width), the share of a thin ring around it (1 to 3 cells out) where
    the maps see a structure standing on both sides of its bracket (mean probability
    above ``present`` over the images before it and over those after it that show the
    cell; on the built side, after a new structure or before a removed one, at the cell
    or within ``lean_shift_m`` of it), and the share of the ring that no image shows (off
    every image, or always under cloud, snow or traffic).

    A narrow strip that comes or goes along the side of a building that stands
    throughout is that roof seen from another angle (a tall roof leans by metres with
    the view) or a little off (images align to about 2 px), not construction; beside
    ground no image shows, nothing says it is not."""
    rules = rules or StructureRules()
    foot = _footprint(change, grid)
    if not foot.any():
        return 0.0, 0.0, 0.0
    ring = ndimage.binary_dilation(foot, iterations=3) & ~ndimage.binary_dilation(foot)
    reach = round(rules.lean_shift_m / grid.gsd_m)
    win = grown(ndimage.find_objects(ring.astype(np.uint8))[0], reach, ring.shape)
    ring_w = ring[win]
    shown_ever = np.zeros(int(ring.sum()), bool)
    sides = []
    built = 0 if change.kind == "removed structure" else 1
    for k, side in enumerate(_sides(change, used)):
        seen = [
            np.where(used[i].usable[win] & ~used[i].occluded[win], maps[i][win], np.nan)
            for i in side
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # cells no image shows
            mean = np.nanmean(seen, axis=0) if seen else np.full(ring_w.shape, np.nan)
        shown = ~np.isnan(mean)
        if k == built and reach > 0:  # where the strip is, the roof may stand a little off
            mean = ndimage.maximum_filter(np.nan_to_num(mean, nan=0.0), size=2 * reach + 1)
        sides.append(np.where(shown, mean, np.nan)[ring_w])
        shown_ever |= shown[ring_w]
    both = ~np.isnan(sides[0]) & ~np.isnan(sides[1])
    standing = both & (np.nan_to_num(sides[0]) > rules.present) & (
        np.nan_to_num(sides[1]) > rules.present)
    return (
        _width(foot) * grid.gsd_m,
        float(standing.sum() / both.sum()) if both.any() else 0.0,
        float(1.0 - shown_ever.mean()),
    )


def _short_side(geom: BaseGeometry) -> float:
    """The short side (m) of ``geom``'s minimum rotated rectangle."""
    x, y = geom.minimum_rotated_rectangle.exterior.coords.xy
    sides = np.hypot(np.diff(x), np.diff(y))[:2]
    return float(sides.min())


def _joined(a: Change, b: Change, gap: float) -> BaseGeometry | None:
    """The union of ``a`` and ``b`` (the gap closed) when they are pieces of one structure
    (see :func:`merge_pieces`), else None."""
    if ((a.kind, a.last_absent, a.first_seen) != (b.kind, b.last_absent, b.first_seen)
            or a.geometry.distance(b.geometry) > gap):
        return None
    union = a.geometry.buffer(gap / 2).union(b.geometry.buffer(gap / 2)).buffer(-gap / 2)
    if (union.geom_type != "Polygon"
            or union.area < 0.7 * union.minimum_rotated_rectangle.area
            or _short_side(union) > 1.25 * max(_short_side(a.geometry),
                                               _short_side(b.geometry))):
        return None
    return union


def merge_pieces(changes: list[Change], rules: StructureRules | None = None) -> list[Change]:
    """``changes`` with the pieces of one structure made one change: pieces of one kind and
    one bracket at most ``piece_gap_m`` apart whose union (the gap closed) is one
    rectangle (at least 70 % of its minimum rotated rectangle) no wider than 1.25 times
    their widest piece: a long platform whose maps dip on a line of cells, not two
    buildings side by side."""
    gap = (rules or StructureRules()).piece_gap_m
    out = list(changes)
    i = 0
    while i < len(out):
        a = out[i]
        for j in range(i + 1, len(out)):
            b = out[j]
            union = _joined(a, b, gap)
            if union is None:
                continue
            big, small = (a, b) if a.area_m2 >= b.area_m2 else (b, a)
            area = a.area_m2 + b.area_m2
            out[i] = replace(
                big, geometry=union, area_m2=area,
                score=round((a.score * a.area_m2 + b.score * b.area_m2) / area, 4),
                seen_in=min(a.seen_in, b.seen_in),
                cues=big.cues | {"pieces": big.cues.get("pieces", 1.0)
                                 + small.cues.get("pieces", 1.0)},
            )
            del out[j]
            i = 0  # the grown piece may now join one checked before
            break
        else:
            i += 1
    return out


def leaning(
    change: Change,
    used: list[_Prepared],
    maps: list[np.ndarray],
    grid: Grid,
    rules: StructureRules | None = None,
) -> bool:
    """Whether ``change`` is a narrow strip along a standing roof or beside ground no
    image shows (:func:`flank`; ``lean_*`` rules): a roof seen from another angle."""
    rules = rules or StructureRules()
    width, standing, unseen = flank(change, used, maps, grid, rules)
    return width <= rules.lean_width_m and (
        standing >= rules.lean_flank or unseen >= rules.lean_unseen)


def structure_changes(
    used: list[_Prepared],
    site: Site,
    grid: Grid,
    *,
    persist: int = 2,
    model: StructureModel | None = None,
    rules: StructureRules | None = None,
    maps: list[np.ndarray] | None = None,
) -> list[Change]:
    """Changes of structures in the aligned, masked images ``used`` (date order), from
    the structure model's map of each (``maps``: given instead)."""
    from railwatch.analytics.changes.find import Change, _polygon, _zone
    from railwatch.analytics.coregister import to_local

    rules = rules or StructureRules()
    gsd = grid.gsd_m
    if maps is None:
        maps = structure_maps(used, grid, model)
    min_cells = rules.min_region_m2 / gsd**2
    n = len(used)
    visible = [p.usable & ~p.occluded for p in used]
    usable = [p.usable for p in used]
    zones = {name: to_local(z, grid.crs) for name, z in site.zones.items()}
    # What each image says cell by cell: everything where it shows the ground, and a
    # structure seen through its snow or cloud mask (it proves presence, never absence).
    # A structure seen through snow is good evidence that it stands; one "seen" in a
    # snowy image that no clear image confirms is not (the network finds roofs in snow
    # drifts): so presence through the mask confirms a new structure and vetoes a removal
    # or a new structure, but never opens a removal.
    # Deep snow hides everything from the edge method, but where it left the ground bare
    # the maps can still see that a place was empty before a new structure. Only that:
    # a roof under snow can look like bare ground, so such an image never says a
    # structure is gone, nor that one built before it is missing after it.
    bare = [None if p.bare is None else p.bare & p.usable for p in used]
    seen = np.stack([np.where(v, s, np.nan) for s, v in zip(maps, visible, strict=True)])
    seen_or_masked = np.stack([
        np.where(v | (u & (s > rules.present)), s, np.nan)
        for s, v, u in zip(maps, visible, usable, strict=True)
    ])
    seen_or_bare = np.stack([
        np.where(v | (u & (s > rules.present)) | (b if b is not None else False), s, np.nan)
        for s, v, u, b in zip(maps, visible, usable, bare, strict=True)
    ])
    through_snow = np.stack([
        np.where(u & (b is not None), s, np.nan)
        for s, u, b in zip(maps, usable, bare, strict=True)
    ])
    taken = np.zeros(grid.shape, bool)
    out: list[Change] = []
    for k in range(1, n - persist + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells: never seen
            after = np.nanmean(seen_or_masked[k:], axis=0)
            before_any = np.nanmean(seen_or_bare[:k], axis=0)
            only_snow = np.isnan(before_any)  # ... but through deep snow
            if rules.snow_absent > 0:
                before_any = np.where(only_snow, np.nanmean(through_snow[:k], axis=0),
                                      before_any)
            before_seen = np.nanmean(seen[:k], axis=0)
        for sign in ("new", "lost"):
            before = before_any if sign == "new" else before_seen
            diff = np.nan_to_num(after - before, nan=0.0)
            built = np.nan_to_num(after if sign == "new" else before, nan=0.0) > rules.core
            cand = (diff > rules.candidate) if sign == "new" else (diff < -rules.candidate)
            cand &= built & ~taken
            for win, reg, width in _regions(cand, only_snow if sign == "new" else None,
                                            rules.snow_min_width_m / gsd):
                width *= gsd
                if reg.sum() < min_cells:
                    continue
                states, values, via = region_states(
                    [m[win] for m in maps], [v[win] for v in visible], [u[win] for u in usable],
                    reg, rules, [None if b is None else b[win] for b in bare],
                )
                # What came through a mask: presence never opens a removal, bare ground
                # and deep snow only ever say "empty" before a new structure.
                drop = [
                    m is not None and ((sign == "lost" and (i < k or st == ABSENT))
                                       or (sign == "new" and i >= k and st == ABSENT)
                                       or (m == "snow" and width < rules.snow_min_width_m))
                    for i, (st, m) in enumerate(zip(states, via, strict=True))
                ]
                states = [None if d else st for st, d in zip(states, drop, strict=True)]
                values = [None if d else v for v, d in zip(values, drop, strict=True)]
                step = change_step(states, k, sign, persist, rules.later_share,
                                   rules.settled)
                seen_in = persist
                if step is None and sign == "lost" and persist > 1:
                    step, seen_in = gone_once(states, values, k, rules), 1
                if step is None:
                    continue
                b_last, a_first = step
                # The one image that alone says the place is empty (the only one after a
                # removal, or before a new structure), if any.
                lone_empty = used[a_first] if seen_in < persist else None
                witnesses = [v for v in values[:k] if v is not None]
                if len(witnesses) == 1:
                    if sign == "lost" and witnesses[0] <= rules.lone_present:
                        continue
                    if sign == "new" and witnesses[0] >= rules.lone_absent:
                        continue
                    if sign == "new":
                        lone_empty = next(used[i] for i in range(k) if values[i] is not None)
                if lone_empty is not None:  # sure at first sight; and when it looks again?
                    model = model or shipped_model()
                    if (_turned_mean(model, lone_empty.rgb, win, reg, gsd)
                            >= rules.lone_absent_turned):
                        continue
                v_before = float(np.mean(witnesses))
                v_after = float(np.mean([v for v in values[k:] if v is not None]))
                if abs(v_after - v_before) < rules.min_score:
                    continue
                mask = np.zeros(grid.shape, bool)
                mask[win] = reg
                taken |= ndimage.binary_dilation(mask, iterations=3)
                # The footprint: the cells the built side's maps are sure of (the maps
                # blur a roof's rim by about a cell, which adds a third to a small shed).
                side = np.nan_to_num(after if sign == "new" else before, nan=0.0)
                core = ndimage.binary_dilation(mask, iterations=1) & (side > rules.footprint)
                if core.sum() >= 0.5 * mask.sum():
                    mask = core
                geom = _polygon(mask, grid.transform, simplify_m=gsd * 0.7)
                out.append(
                    Change(
                        geometry=geom,
                        crs=grid.crs,
                        kind="new structure" if sign == "new" else "removed structure",
                        first_seen=used[a_first].info.acquired,
                        last_absent=used[b_last].info.acquired,
                        area_m2=float(mask.sum() * gsd * gsd),
                        zone=_zone(geom, zones),
                        score=round(abs(v_after - v_before), 4),
                        before=used[b_last].info.path,
                        after=used[a_first].info.path,
                        seen_in=seen_in,
                        cues={"structure_before": round(v_before, 4),
                              "structure_after": round(v_after, 4),
                              "width_m": round(width, 1),
                              "through_snow": float(sum(
                                  m == "snow" and not d
                                  for m, d in zip(via[:k], drop[:k], strict=True)))},
                    )
                )
    return out
