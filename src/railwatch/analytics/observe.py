"""Observe: one site in one image -> counts, coverage and the range the count carries.

* Railcars and containers count when their footprint centre lies in the AOI (containers
  also per zone), in the site's local metric CRS. When the site has a track map, railcars
  count only on a track (`railwatch.analytics.trackmap`); those set aside are counted as
  ``off_track``.
* Usable fraction: the share of the AOI inside the image footprint and not cloud or
  no-data (`railwatch.imagery.cloud.cloud_fraction_in` on a decimated read, or a given
  cloud fraction). Below ``partial_threshold`` (0.95) the observation is ``partial``: a
  lower bound.
* Count range, from the detector's *measured* error rates (``detect/model/metrics.json``,
  the row for the nearest GSD; with a track map, the precision measured with one) —
  precision ``p``, recall ``r``, ``n`` cars detected:
  the rate-corrected count is ``n p / r``; with ``sd = sqrt(n p (1-p) + (n p / r)(1-r))``
  the range is ``[min(n, np/r) - 1.96 sd, max(n, np/r) + 1.96 sd]``. Without measured
  rates the range is the coverage part alone (and a warning says so). Then the high end
  is divided by the usable share of the track area (cars may stand in the unseen part).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from railwatch.analytics.trackmap import track_fit
from railwatch.errors import InputError
from railwatch.types import RAILCAR_CLASSES, Detections, Observation, Scene, Site

log = logging.getLogger(__name__)
DEFAULT_PARTIAL_THRESHOLD = 0.95
TRACK_ZONE = "track_area"


def load_metrics(path: str | Path | None = None) -> dict[str, Any] | None:
    """The shipped detector evaluation (``railwatch/detect/model/metrics.json``) or None."""
    try:
        if path is not None:
            text = Path(path).read_text(encoding="utf-8")
        else:
            ref = resources.files("railwatch.detect") / "model" / "metrics.json"
            if not ref.is_file():
                return None
            text = ref.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, ModuleNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def error_rates_for(
    gsd_m: float | None, metrics: Mapping[str, Any] | None, track_map: bool = False
) -> dict[str, float] | None:
    """The measured rates (precision, recall, ...) for the nearest evaluated GSD, else the
    overall row; None when there are no usable measurements. ``track_map``: precision as
    measured with railcars off a track map set aside (``with_track_map``, when there);
    recall stays the main measurement's (setting detections aside finds no more cars)."""
    if not metrics:
        return None
    rates = _rates_row(metrics, gsd_m)
    mapped = metrics.get("with_track_map")
    if rates is not None and track_map and isinstance(mapped, Mapping):
        row = _rates_row(mapped, gsd_m)
        if row is not None:
            rates["precision"] = row["precision"]
    return rates


def _rates_row(metrics: Mapping[str, Any], gsd_m: float | None) -> dict[str, float] | None:
    by = metrics.get("by_gsd") or {}
    row = None
    if by and gsd_m is not None:
        try:
            key = min(by, key=lambda k: abs(math.log(float(k) / gsd_m)))
            row = by[key]
        except (ValueError, ZeroDivisionError):
            row = None
    row = row or metrics.get("overall")
    if not isinstance(row, Mapping) or "precision" not in row or "recall" not in row:
        return None
    return {k: float(v) for k, v in row.items() if isinstance(v, int | float)}


def count_range(
    n: int, error_rates: Mapping[str, float] | None, usable_track: float = 1.0, z: float = 1.96
) -> tuple[int, int]:
    """(low, high) for ``n`` detected railcars (see module docstring)."""
    lo = hi = float(n)
    if error_rates is not None:
        p = min(max(float(error_rates["precision"]), 1e-3), 1.0)
        r = min(max(float(error_rates["recall"]), 1e-3), 1.0)
        est = n * p / r
        sd = math.sqrt(n * p * (1 - p) + est * (1 - r))
        lo = min(n, est) - z * sd
        hi = max(n, est) + z * sd
    hi = hi / max(usable_track, 0.05)
    return max(0, math.floor(lo)), max(math.ceil(hi - 1e-9), n)


def site_masks(det: Detections, site: Site) -> tuple[np.ndarray, np.ndarray]:
    """For each detection (any CRS): is its centre in the AOI, and is it a railcar there
    set aside off the site's track map; what ``observe`` counts, for pictures to match."""
    from railwatch.sites import site_local_crs, to_local

    if not len(det):
        return np.zeros(0, bool), np.zeros(0, bool)
    local = det.to_crs(site_local_crs(site))
    c = local.centers
    in_aoi = shapely.contains_xy(to_local(site.aoi, site), c[:, 0], c[:, 1])
    off = np.zeros(len(det), bool)
    fit = track_fit(local[in_aoi], site)
    if fit is not None:
        off[np.flatnonzero(in_aoi)[~fit.on_track]] = True
    return in_aoi, off


def _local(site: Site) -> tuple[Any, Any, dict[str, Any]]:
    from railwatch.sites import site_local_crs, to_local

    return site_local_crs(site), to_local(site.aoi, site), {
        k: to_local(z, site) for k, z in site.zones.items()}


def observe(
    site: Site | str,
    scene: Scene,
    detections: Detections,
    image_path: str | Path | None = None,
    cloud: float | None = None,
    error_rates: Mapping[str, float] | None = None,
    *,
    metrics_path: str | Path | None = None,
    partial_threshold: float = DEFAULT_PARTIAL_THRESHOLD,
    store: Any = None,
    measure_cloud: bool = True,
) -> Observation:
    """Count ``site`` in ``scene`` from its ``detections``.

    ``site``: a Site or a site name (resolved with ``store``).
    ``cloud``: the cloudy share of the AOI's part inside the image, if known; else it is
    measured (`cloud_fraction_in`) on ``image_path``, or on ``scene.path`` when that file
    exists and ``measure_cloud``; else no cloud is assumed.
    ``error_rates``: ``{"precision", "recall"}``; default: the shipped model's metrics for
    the scene's GSD (a warning when they are missing: the range is coverage only).
    """
    if scene.acquired is None:
        raise InputError("scene has no acquisition date; cannot place it in time", scene.path)
    if isinstance(site, str):
        from railwatch.sites import get_site

        site = get_site(site, store)
    auto = image_path is None and measure_cloud and bool(scene.path) and Path(
        scene.path).is_file()
    if auto:
        image_path = scene.path
    crs, aoi, zones = _local(site)
    det = detections.to_crs(crs) if len(detections) else detections
    c = det.centers if len(det) else np.zeros((0, 2))
    in_aoi, off = site_masks(det, site)
    rail = in_aoi & (det.kind == "railcar") & ~off
    cont = in_aoi & (det.kind == "container")
    counts = {k: int(np.sum(det.cls[rail] == k)) for k in RAILCAR_CLASSES}
    counts["total"] = int(rail.sum())
    counts["covered"] = int(np.sum(det.covered[rail]))
    counts["containers"] = int(cont.sum())
    if site.tracks is not None:
        counts["off_track"] = int(off.sum())
    by_zone = {
        name: int(np.sum(cont & shapely.contains_xy(z, c[:, 0], c[:, 1]))) if len(det) else 0
        for name, z in zones.items()
    }
    from railwatch.sites import to_local

    foot = to_local(scene.footprint, site)
    track = zones.get(TRACK_ZONE, aoi)

    def seen(geom: Any) -> float:
        return float(geom.intersection(foot).area / geom.area) if geom.area > 0 else 0.0

    usable_aoi, usable_track = seen(aoi), seen(track)
    if cloud is not None:
        if not 0.0 <= cloud <= 1.0:
            raise InputError(f"cloud fraction {cloud} is not in 0..1")
        usable_aoi *= 1.0 - cloud
        usable_track *= 1.0 - cloud
    elif image_path is not None:
        from railwatch.imagery.cloud import cloud_fraction_in

        try:
            usable_aoi = min(usable_aoi, cloud_fraction_in(image_path, site.aoi).usable)
            track_ll = site.zones.get(TRACK_ZONE, site.aoi)
            usable_track = min(usable_track, cloud_fraction_in(image_path, track_ll).usable)
        except InputError as exc:
            if not auto:
                raise
            log.warning("cloud not measured on %s (%s); usable fraction from the footprint"
                        " only", scene.path, exc)
    rates = error_rates
    if rates is None:
        rates = error_rates_for(scene.gsd_m, load_metrics(metrics_path),
                                site.tracks is not None)
        if rates is None:
            log.warning("detector error rates not found (detect/model/metrics.json missing):"
                        " count range covers the unseen area only")
    low, high = count_range(counts["total"], rates, usable_track)
    return Observation(
        site=site.name, scene_id=scene.id, acquired=scene.acquired, counts=counts,
        containers_by_zone=by_zone, usable_fraction=round(usable_aoi, 4), count_low=low,
        count_high=high, partial=usable_aoi < partial_threshold, sensor=scene.sensor,
        gsd_m=scene.gsd_m,
    )
