"""The site's track map: railcars stand on tracks.

A railcar-shaped detection farther than ``tolerance_m`` (3 m) from every track centreline
of the site cannot be a railcar: track centres are at least ~4.1 m apart and a car's
centre lies on its track's centreline, so what the detector called a railcar there is a
row of ground containers beside a dark aisle, a truck trailer or a roof edge. Sites may
carry such a map (``role: track`` LineStrings in the site GeoJSON, e.g. OpenStreetMap's
``railway=rail`` ways); without one nothing is set aside.

Images are georeferenced only to a few metres, and a track map drawn from another source
is off by as much again. In a yard of parallel tracks that hardly matters (every point
lies within half a track spacing of some track), but at a single track it does. When
more than half of an image's railcars (and at least five) fall off the map, it is logged
(in the demo: 26 of 205 observations, all December–February images whose false
detections on snow and in long shadows lie off the tracks), and with ``search_m`` > 0
the detections are registered to the map first: the shift within ``search_m`` that
puts the most railcar centres close to a track (a soft count, Gaussian in the distance
with σ ``fit_m``, on a distance raster of the map), taken when it beats no shift by a
fifth of the cars and puts four in five on a track. That search is off by default: on
the scenario it moved two images whose "railcars" were a row of shadowed building edge
3.5 m beside a track (no train in either image) onto that track.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import shapely

from railwatch.types import Detections, Site

log = logging.getLogger(__name__)

#: Railcar centres farther than this from every track are set aside (metres).
TOLERANCE_M = 3.0
#: The largest georeferencing shift between an image and the track map searched for
#: (metres); 0 (the default) trusts the map as it lies (see the module docstring).
SEARCH_M = 0.0
#: Above this share of railcars off the map, the image is taken as misregistered.
MAX_OFF_SHARE = 0.5
#: A shift is taken only when it puts at least this share of the railcars on the map.
FITS_SHARE = 0.8
#: The spread (metres) of railcar centres about their track, for scoring shifts.
FIT_M = 0.75
_RES_M = 0.5  # distance raster resolution


@dataclass(frozen=True)
class TrackFit:
    """Which detections stand where a railcar can: ``on_track`` is True for every
    container and for railcars within the tolerance of a track after the ``shift_m``
    (dx, dy in the local metric CRS) that registers the detections to the map."""

    on_track: np.ndarray  # (N,) bool
    distance_m: np.ndarray  # (N,) to the nearest track after the shift (NaN: container)
    shift_m: tuple[float, float]

    @property
    def set_aside(self) -> int:
        """How many railcar detections lie off every track."""
        return int((~self.on_track).sum())


@lru_cache(maxsize=8)
def _distance_raster(wkb: bytes, pad_m: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Distance (m) to the nearest line of a MultiLineString (given as WKB), on a grid."""
    lines = shapely.from_wkb(wkb)
    x0, y0, x1, y1 = lines.bounds
    x0, y0, x1, y1 = x0 - pad_m, y0 - pad_m, x1 + pad_m, y1 + pad_m
    w, h = int(np.ceil((x1 - x0) / _RES_M)) + 1, int(np.ceil((y1 - y0) / _RES_M)) + 1
    mask = np.full((h, w), 255, np.uint8)
    for part in getattr(lines, "geoms", [lines]):
        xy = shapely.get_coordinates(part)
        cols, rows = (xy[:, 0] - x0) / _RES_M, (y1 - xy[:, 1]) / _RES_M
        pts = np.round(np.stack([cols, rows], -1) * 16).astype(np.int32)
        cv2.polylines(mask, [pts], False, 0, 1, cv2.LINE_8, 4)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) * _RES_M
    return dist, (x0, y1)


def register_to_tracks(centers: np.ndarray, tracks: Any, search_m: float = SEARCH_M,
                       fit_m: float = FIT_M) -> tuple[float, float]:
    """The shift (dx, dy, metres) that puts the most ``centers`` close to ``tracks`` (same
    metric CRS); (0, 0) unless it beats no shift by at least two cars and a fifth of them
    (a few cars, or a map that fits already, are not moved)."""
    c = np.asarray(centers, float).reshape(-1, 2)
    if len(c) < 5 or search_m <= 0:
        return 0.0, 0.0
    dist, (x0, y1) = _distance_raster(shapely.to_wkb(tracks), search_m + 4 * fit_m)
    steps = np.arange(-search_m, search_m + 1e-9, _RES_M)
    sx, sy = (g.ravel() for g in np.meshgrid(steps, steps))
    cols = np.round((c[None, :, 0] + sx[:, None] - x0) / _RES_M).astype(int)
    rows = np.round((y1 - c[None, :, 1] - sy[:, None]) / _RES_M).astype(int)
    inside = (cols >= 0) & (rows >= 0) & (cols < dist.shape[1]) & (rows < dist.shape[0])
    d = np.where(inside, dist[rows.clip(0, dist.shape[0] - 1), cols.clip(0, dist.shape[1] - 1)],
                 np.inf)
    score = np.exp(-0.5 * (d / fit_m) ** 2).sum(1)
    zero = int(np.argmin(np.hypot(sx, sy)))
    best = np.flatnonzero(score >= score.max() - 0.5)
    best = int(best[np.argmin(np.hypot(sx[best], sy[best]))])
    if score[best] < score[zero] + max(2.0, 0.2 * len(c)):
        return 0.0, 0.0
    return float(sx[best]), float(sy[best])


def fit_tracks(det: Detections, tracks: Any, tolerance_m: float = TOLERANCE_M,
               search_m: float = SEARCH_M, max_off_share: float = MAX_OFF_SHARE) -> TrackFit:
    """``TrackFit`` of detections in a metric CRS against track centrelines in the same CRS.

    With ``search_m`` > 0 and more than ``max_off_share`` of the railcars off the map, a
    shift is searched for (`register_to_tracks`) and taken when it puts ``FITS_SHARE`` of
    them on a track."""
    rail = np.asarray(det.kind) == "railcar"
    dist = np.full(len(det), np.nan)
    if not len(det):
        return TrackFit(np.ones(0, bool), dist, (0.0, 0.0))
    c = det.centers[rail]
    dist[rail] = shapely.distance(tracks, shapely.points(c))
    shift = (0.0, 0.0)
    if search_m > 0 and rail.any() and np.mean(dist[rail] > tolerance_m) > max_off_share:
        s = register_to_tracks(c, tracks, search_m)
        moved = shapely.distance(tracks, shapely.points(c + np.asarray(s)))
        if s != (0.0, 0.0) and np.mean(moved <= tolerance_m) >= FITS_SHARE:
            shift, dist[rail] = s, moved
    if rail.sum() >= 5 and np.mean(dist[rail] > tolerance_m) > max_off_share:
        # info, not a warning: in the demo's winter images (snow, long shadows) most
        # railcar detections are false and off the map, which is the map doing its job
        log.info("%d of %d railcar detections lie off the site's track map (by more than "
                 "%.1f m): set aside (false detections, or a misregistered image or map%s)",
                 int((dist[rail] > tolerance_m).sum()), int(rail.sum()), tolerance_m,
                 "" if search_m > 0 else ": then pass search_m")
    return TrackFit(~rail | (dist <= tolerance_m), dist, shift)


_LOCAL: dict[tuple[str, str], Any] = {}


def site_tracks_local(site: Site) -> Any:
    """The site's track map in its local metric CRS (None when it has none)."""
    if site.tracks is None:
        return None
    from railwatch.sites import to_local

    key = (site.name, hashlib.sha1(shapely.to_wkb(site.tracks)).hexdigest())
    if key not in _LOCAL:
        _LOCAL[key] = to_local(site.tracks, site)
    return _LOCAL[key]


def track_fit(det: Detections, site: Site, tolerance_m: float = TOLERANCE_M,
              search_m: float = SEARCH_M) -> TrackFit | None:
    """``TrackFit`` of ``det`` (any CRS) on ``site``'s track map; None without a map."""
    tracks = site_tracks_local(site)
    if tracks is None:
        return None
    from railwatch.sites import site_local_crs

    local = det.to_crs(site_local_crs(site)) if len(det) else det
    return fit_tracks(local, tracks, tolerance_m, search_m)


def mark_off_track(det: Detections, site: Site, tolerance_m: float = TOLERANCE_M) -> Detections:
    """A copy of ``det`` with an ``off_track`` column (True for railcars off ``site``'s
    track map) and the site and the number set aside in ``meta``; ``det`` itself without
    a map."""
    fit = track_fit(det, site, tolerance_m)
    if fit is None:
        return det
    out = det[slice(None)]
    out.extra["off_track"] = ~fit.on_track
    out.meta.update(track_map=site.name, off_track=fit.set_aside)
    return out
