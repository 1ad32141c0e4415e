"""Facility changes out: RFC 7946 GeoJSON, one plain sentence each, before/after chips."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from shapely.geometry import mapping
from shapely.geometry.polygon import orient

from railwatch.analytics.changes.find import Change, ChangeSet, UsedImage, outline_sides
from railwatch.analytics.coregister import grid_from_bounds, read_on_grid, to_lonlat


def _date(value: dt.datetime | dt.date) -> str:
    return value.date().isoformat() if isinstance(value, dt.datetime) else value.isoformat()


def _oriented(geom: Any) -> Any:
    """Exterior rings counter-clockwise, holes clockwise (RFC 7946 right-hand rule)."""
    if geom.geom_type == "Polygon":
        return orient(geom, 1.0)
    return type(geom)([orient(g, 1.0) for g in geom.geoms])


def _rounded(coords: Any) -> Any:
    if isinstance(coords, (tuple, list)) and coords and isinstance(coords[0], float):
        return [round(c, 8) for c in coords]
    return [_rounded(c) for c in coords]


def change_feature(change: Change) -> dict[str, Any]:
    """One change as a GeoJSON Feature (lon/lat)."""
    geom = mapping(_oriented(to_lonlat(change.geometry, change.crs)))
    return {
        "type": "Feature",
        "geometry": {"type": geom["type"], "coordinates": _rounded(geom["coordinates"])},
        "properties": {
            "id": change.id,
            "kind": change.kind,
            "first_seen": _date(change.first_seen),
            "last_absent": _date(change.last_absent),
            "area_m2": round(change.area_m2, 1),
            "zone": change.zone,
            "score": round(change.score, 3),
            "before": change.before,
            "after": change.after,
            "seen_in": change.seen_in,
            "description": describe_change(change),
        },
    }


def changes_to_geojson(changes: ChangeSet | Sequence[Change]) -> dict[str, Any]:
    """A FeatureCollection of changes (RFC 7946); a ChangeSet adds a ``railwatch`` member."""
    items = changes.changes if isinstance(changes, ChangeSet) else list(changes)
    fc: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": [change_feature(c) for c in items],
    }
    if isinstance(changes, ChangeSet):
        fc["railwatch"] = {
            "site": changes.site,
            "persist": changes.persist,
            "images_used": [im.path for im in changes.used],
            "images_skipped": [{"path": im.path, "reason": im.skipped} for im in changes.skipped],
            "alignment": [_alignment(im) for im in changes.used],
        }
    return fc


def _alignment(image: UsedImage) -> dict[str, Any]:
    """How one used image was co-registered: its shift onto the reference (grid pixels),
    the residual a second correlation still measured, and what it was aligned through."""
    al = image.alignment
    out: dict[str, Any] = {"path": image.path, "acquired": _date(image.acquired)}
    if al is not None:
        out.update(
            dx_px=round(al.dx, 2),
            dy_px=round(al.dy, 2),
            residual_px=round(al.residual_px, 2) if np.isfinite(al.residual_px) else None,
            response=round(al.response, 3),
            via=al.via or None,
        )
    return out


def write_changes_geojson(
    changes: ChangeSet | Sequence[Change], path: str | os.PathLike[str]
) -> Path:
    """Write the changes GeoJSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(changes_to_geojson(changes), fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def zone_phrase(zone: str | None) -> str:
    """``freight_handling`` -> ``the freight-handling area``; None -> ``the site``."""
    if not zone:
        return "the site"
    words = zone.replace("-", "_").split("_")
    if words[-1] in ("area", "yard", "zone", "depot"):
        return "the " + " ".join(words)
    return "the " + "-".join(words) + " area"


def _about(area: float) -> str:
    """Round an area to two significant figures, with a thousands separator."""
    if area <= 0:
        return "0"
    value = round(area, 1 - int(np.floor(np.log10(area))))
    return f"{int(value):,}"


def describe_change(change: Change) -> str:
    """One plain sentence, e.g. "A new building of about 1,200 m² appeared in the
    freight-handling area between 2021-07-02 and 2021-08-15"."""
    where = zone_phrase(change.zone)
    when = f"between {_date(change.last_absent)} and {_date(change.first_seen)}"
    area = _about(change.area_m2)
    kind = change.kind
    if kind == "new structure":
        length, width = outline_sides(change.geometry)
        if length >= 6 * width and width <= 15:
            # A loading platform or a long shed, not a warehouse: say its size.
            return (
                f"A new long, narrow structure (a platform or long shed) of about {area} m² "
                f"(about {_about(length)} m by {_about(width)} m) appeared in {where} {when}."
            )
        what = "warehouse-sized building" if change.area_m2 >= 600 else "structure"
        return f"A new {what} of about {area} m² appeared in {where} {when}."
    if kind == "removed structure":
        once = (" (seen in one later image only: the images after it are under snow or "
                "cloud)" if change.seen_in == 1 else "")
        return f"A structure of about {area} m² was removed from {where} {when}{once}."
    if kind == "new track":
        length = change.cues.get("length_m") or np.sqrt(change.area_m2)
        return (
            f"A new track or track bed about {_about(float(length))} m long appeared in "
            f"{where} {when}."
        )
    if kind == "cleared/graded ground":
        return f"About {area} m² of ground was cleared or graded in {where} {when}."
    return f"A change of about {area} m² (unclassified) appeared in {where} {when}."


def _chip(
    path: str,
    bounds: tuple[float, float, float, float],
    crs: Any,
    size_px: int,
    outline: np.ndarray | None,
) -> bytes:
    minx, miny, maxx, maxy = bounds
    gsd = max(maxx - minx, maxy - miny) / size_px
    grid = grid_from_bounds(crs, bounds, gsd)
    rgb, valid = read_on_grid(path, grid)
    if valid.any():
        lo, hi = np.percentile(rgb[valid], [1, 99])
        rgb = (rgb - lo) / max(hi - lo, 1e-6)
    img = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)[..., ::-1].copy()  # BGR for OpenCV
    if outline is not None:
        cols = (outline[:, 0] - minx) / gsd
        rows = (maxy - outline[:, 1]) / gsd
        pts = np.round(np.stack([cols, rows], axis=-1)).astype(np.int32)
        cv2.polylines(img, [pts], True, (0, 215, 255), 1, lineType=cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def change_chips(
    change: Change,
    images: tuple[str, str] | None = None,
    *,
    size_px: int = 256,
    pad: float = 0.6,
) -> tuple[bytes, bytes]:
    """Before/after PNG chips of a change (the change outlined in amber on both).

    ``images`` overrides the (before, after) image paths recorded in the change. The chip
    is square, centred on the change, ``pad`` of its size added on each side.
    """
    before, after = images or (change.before, change.after)
    minx, miny, maxx, maxy = change.geometry.bounds
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    half = max(maxx - minx, maxy - miny, 20.0) * (0.5 + pad)
    bounds = (cx - half, cy - half, cx + half, cy + half)
    geom = change.geometry
    ring = np.asarray(
        (
            geom if geom.geom_type == "Polygon" else max(geom.geoms, key=lambda g: g.area)
        ).exterior.coords
    )
    return (
        _chip(before, bounds, change.crs, size_px, ring),
        _chip(after, bounds, change.crs, size_px, ring),
    )
