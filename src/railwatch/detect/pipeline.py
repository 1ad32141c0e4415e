"""Whole-image detection: tiled windowed reads, resampling to the model GSD, seam de-dup,
georeferencing. Memory is bounded by one tile whatever the image size.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rasterio.windows import Window

from railwatch.detect.decode import Boxes, RailcarRule, empty_boxes, rotated_nms
from railwatch.detect.model import Detector, boxes_to_detections
from railwatch.errors import InputError, RailwatchError
from railwatch.geojson import write_geojson
from railwatch.types import Detections

log = logging.getLogger(__name__)

#: GSD range (metres) the detector accepts; outside it cars cannot be resolved/are untrained.
GSD_RANGE = (0.25, 1.0)
#: Native tile size (pixels at the model GSD) and overlap; the overlap exceeds the
#: longest railcar (~36 m = 72 px at 0.5 m) so every object lies whole in some tile.
TILE_PX = 1024
OVERLAP_PX = 96

Progress = Callable[[int, int], None]  # (done, total)

_DETECTORS: dict[int | None, Detector] = {}


def default_detector(threads: int | None = None) -> Detector:
    """The shipped model, loaded once per process (per ONNX thread count)."""
    if threads not in _DETECTORS:
        _DETECTORS[threads] = Detector(threads=threads)
    return _DETECTORS[threads]


def default_workers() -> int:
    """Images detected at once by default: one per core, at most four."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class Tile:
    """One window of the source image and the part of it that owns detections."""

    window: Window
    core: tuple[float, float, float, float]  # x0, y0, x1, y1 in source pixels


def _axis(n: int, size: int, overlap: int) -> tuple[list[int], int]:
    """Window starts and length along one axis: as few windows of at most ``size`` as cover
    ``n`` pixels with overlaps of at least ``overlap``, shrunk to share the axis evenly (a
    2,400 px side takes three 864 px windows, not three of 1,024 overlapping by 336)."""
    if n <= size:
        return [0], n
    k = math.ceil((n - overlap) / (size - overlap))
    length = min(size, math.ceil((n + (k - 1) * overlap) / k))
    return sorted({round(v) for v in np.linspace(0, n - length, k)}), length


def _cores(starts: list[int], size: int) -> list[tuple[float, float]]:
    """Split each overlap in its middle: every point belongs to exactly one window."""
    out = []
    for i, s in enumerate(starts):
        lo = -math.inf if i == 0 else (s + starts[i - 1] + size) / 2
        hi = math.inf if i == len(starts) - 1 else (starts[i + 1] + s + size) / 2
        out.append((lo, hi))
    return out


def plan_tiles(width: int, height: int, size: int, overlap: int) -> list[Tile]:
    """Windows of at most ``size`` source pixels overlapping by at least ``overlap``, and
    the core region each owns."""
    if size <= overlap:
        raise ValueError("tile size must exceed the overlap")
    (xs, wx), (ys, wy) = _axis(width, size, overlap), _axis(height, size, overlap)
    cx, cy = _cores(xs, wx), _cores(ys, wy)
    tiles = []
    for (y0, (ylo, yhi)) in zip(ys, cy, strict=True):
        for (x0, (xlo, xhi)) in zip(xs, cx, strict=True):
            tiles.append(Tile(Window(x0, y0, wx, wy), (xlo, ylo, xhi, yhi)))
    return tiles


def merge_tile_boxes(parts: Sequence[tuple[Tile, Boxes]], nms_iou: float = 0.3,
                     railcar_nms: RailcarRule | None = None,
                     px_m: float = 0.5) -> Boxes:
    """Keep each tile's boxes whose centre lies in its core, then NMS across seams
    (``railcar_nms``: the detector's stricter railcar-pair rule, see ``rotated_nms``;
    ``px_m``: the boxes' metres per pixel).

    Boxes must already be in source-image pixel coordinates, each tile's NMS-filtered
    by the detector with the same rules (``Detector.boxes``).
    """
    kept = [b.within(*tile.core) for tile, b in parts]
    if not kept:
        return empty_boxes()
    if len(kept) == 1:  # one tile: the detector's own NMS (same rules) already ran
        return kept[0]
    return rotated_nms(Boxes.concat(kept), nms_iou, railcar=railcar_nms, px_m=px_m)


def check_gsd(gsd: float, path: str | os.PathLike[str]) -> None:
    """InputError for GSDs outside ``GSD_RANGE`` (with the reason)."""
    lo, hi = GSD_RANGE
    if gsd > hi:
        raise InputError(
            f"GSD {gsd:.2f} m is too coarse for railcar detection: cars (about 3 m wide, "
            f"1 m apart) cannot be separated; supported {lo:g}-{hi:g} m", path)
    if gsd < lo:
        raise InputError(f"GSD {gsd:.3f} m is finer than the supported {lo:g}-{hi:g} m "
                         "(resample the image to 0.3-0.5 m first)", path)


def _read_rgb(path: str, window: Window, scaling: Any) -> np.ndarray:
    from railwatch.imagery import read_window

    data = read_window(path, window, rgb=True, scaling=scaling)
    if data.shape[1] == 0 or data.shape[2] == 0:
        return np.zeros((*data.shape[1:], 3), np.uint8)
    # cv2.merge interleaves the planes 20x faster than a transposed copy
    return cv2.merge(list(data[:3]))


def tile_boxes(path: str, detector: Detector, gsd: float, scaling: Any, tile: Tile) -> Boxes:
    """The detector's boxes in one tile of the image, in source pixel coordinates."""
    f = gsd / detector.native_gsd_m  # native px per source px
    win = tile.window
    rgb = _read_rgb(path, win, scaling)
    if rgb.size == 0 or int(rgb.max()) == 0 or float(rgb[::4, ::4].std()) < 1.0:
        return empty_boxes()  # nodata or featureless: nothing to find
    if abs(f - 1.0) > 1e-3:
        nw, nh = max(16, round(rgb.shape[1] * f)), max(16, round(rgb.shape[0] * f))
        interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
        native = cv2.resize(rgb, (nw, nh), interpolation=interp)
    else:
        native = rgb
    sx, sy = rgb.shape[1] / native.shape[1], rgb.shape[0] / native.shape[0]
    # the tile's core in its native pixels, widened by 2 px: boxes beyond it belong
    # to a neighbour tile (merge_tile_boxes drops them), so they are not verified
    x0, y0, x1, y1 = tile.core
    region = ((x0 - win.col_off) / sx - 2, (y0 - win.row_off) / sy - 2,
              (x1 - win.col_off) / sx + 2, (y1 - win.row_off) / sy + 2)
    b = detector.boxes(native, region)
    b.cx = b.cx * sx + win.col_off
    b.cy = b.cy * sy + win.row_off
    b.length = b.length * sx
    b.width = b.width * sx
    return b


def _in_order(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> Iterator[Any]:
    """``fn(item)`` for each item, in order, ``workers`` threads at once, at most
    ``2 * workers`` results in flight (memory stays bounded whatever the number of items)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="railwatch") as pool:
        pending: deque[Future[Any]] = deque()
        it = iter(items)
        for item in itertools.islice(it, 2 * workers):
            pending.append(pool.submit(fn, item))
        while pending:
            fut = pending.popleft()
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append(pool.submit(fn, nxt))
            yield fut.result()


_END = object()


def iter_tile_boxes(path: str, detector: Detector, gsd: float, scaling: Any,
                    tiles: list[Tile], workers: int = 1) -> Iterator[tuple[Tile, Boxes]]:
    """Run the detector tile by tile (``workers`` tiles at once); boxes come back in source
    pixel coordinates, in tile order."""
    boxes = _in_order(lambda t: tile_boxes(path, detector, gsd, scaling, t), tiles, workers)
    yield from zip(tiles, boxes, strict=True)


def image_tiles(scene: Any, path: str | os.PathLike[str], native_gsd_m: float,
                tile_px: int = TILE_PX, overlap_px: int = OVERLAP_PX) -> list[Tile]:
    """The tiles ``detect`` reads from an image (``scene``: its metadata); checks the GSD."""
    check_gsd(scene.gsd_m, path)
    f = scene.gsd_m / native_gsd_m
    return plan_tiles(scene.width, scene.height, max(64, round(tile_px / f)),
                      max(8, round(overlap_px / f)))


def detect(path: str | os.PathLike[str], detector: Detector | None = None,
           progress: Progress | None = None, *, tile_px: int = TILE_PX,
           overlap_px: int = OVERLAP_PX, workers: int = 1) -> Detections:
    """Detect railcars and containers in a GeoTIFF; footprints in the image's CRS.

    Images at 0.25-1.0 m GSD are resampled tile by tile to the model's native GSD
    (recorded in ``meta['resampling']``). ``progress(done, total)`` is called per tile.
    ``workers`` tiles run at once (give the detector one ONNX thread then); the result
    does not depend on it.
    """
    from railwatch.imagery import band_scaling, read_scene_metadata

    p = Path(path)
    scene = read_scene_metadata(p, hash_file=False)  # the content hash is ingest's
    det_ = detector or default_detector()
    tiles = image_tiles(scene, p, det_.native_gsd_m, tile_px, overlap_px)
    f = scene.gsd_m / det_.native_gsd_m
    scaling = band_scaling(p)
    parts = []
    for i, part in enumerate(iter_tile_boxes(str(p), det_, scene.gsd_m, scaling, tiles,
                                             workers)):
        parts.append(part)
        if progress is not None:
            progress(i + 1, len(tiles))
    boxes = merge_tile_boxes(parts, det_.nms_iou, det_.railcar_nms, scene.gsd_m)
    det = boxes_to_detections(boxes, scene.gsd_m, scene.crs_wkt, scene.transform)
    same = abs(f - 1.0) <= 1e-3
    det.meta.update(
        image=str(p), gsd_m=round(scene.gsd_m, 4), native_gsd_m=det_.native_gsd_m,
        resampling="none (image at the native GSD)" if same else
        f"resampled from {scene.gsd_m:.3f} m to {det_.native_gsd_m:g} m per tile with OpenCV "
        f"{'INTER_AREA' if f < 1 else 'INTER_LINEAR'} before detection",
        model=det_.path.name, model_version=det_.version, tiles=len(tiles),
        verifier=det_.verifier_note,
        refiner=det_.refiner_note,
        containers=det_.slots_note,
        classes=det_.classifier_note,
        scaling=scaling.note or "8-bit as stored",
    )
    if scene.acquired is not None:
        det.meta["acquired"] = scene.acquired.isoformat()
    return det


def detect_each(paths: Iterable[str | os.PathLike[str]], detector: Detector | None = None,
                workers: int | None = None,
                ) -> Iterator[tuple[Path, Detections | RailwatchError]]:
    """``(path, detections)`` for each image, in order, ``workers`` images at a time.

    A batch runs faster as several single-threaded streams than as one stream with
    threaded operators (small convolutions and the per-image Python work do not split
    well over cores). Without a ``detector`` each stream gets the shipped model on one
    ONNX thread. An image that fails with a ``RailwatchError`` yields the error in its
    place (the caller decides); at most ``2 * workers`` images are in flight, and each
    holds one tile at a time, so memory stays bounded.
    """
    n = workers or default_workers()
    det_ = detector or default_detector(1 if n > 1 else None)

    def one(p: Path) -> Detections | RailwatchError:
        try:
            return detect(p, det_)
        except RailwatchError as exc:
            return exc

    items = [Path(p) for p in paths]
    yield from zip(items, _in_order(one, items, n), strict=True)


def detect_many(paths: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                detector: Detector | None = None,
                progress: Callable[[int, int, str], None] | None = None,
                workers: int | None = None) -> list[Path]:
    """Detect every image, writing ``out_dir/<stem>.geojson`` (atomically) for each.

    Every image is checked before any is processed, so bad input fails fast.
    ``progress(done_images, total_images, name)`` is called after each image;
    ``workers`` images run at once (`detect_each`).
    """
    from railwatch.imagery import read_scene_metadata

    paths = [Path(p) for p in paths]
    for p in paths:
        check_gsd(read_scene_metadata(p, check=False).gsd_m, p)
    out = Path(out_dir)
    written = []
    for i, (p, det) in enumerate(detect_each(paths, detector, workers)):
        if isinstance(det, RailwatchError):
            raise det
        written.append(write_geojson(det, out / f"{p.stem}.geojson"))
        if progress is not None:
            progress(i + 1, len(paths), p.name)
    return written
