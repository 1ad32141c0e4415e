"""Detections <-> RFC 7946 GeoJSON (lon/lat, EPSG:4326): the detections file contract.

One Feature per object: a Polygon (4 corners + closing point) with properties ``kind``,
``class``, ``score``, ``covered``, ``color`` (``#rrggbb``) and ``length_m``; extra columns
(e.g. ``train_id``, ``occluded``) become further properties. Truth files use the same
schema without ``score``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from railwatch.types import Detections

_CORE = {"kind", "class", "score", "covered", "color", "length_m"}


def _hex(rgb: np.ndarray | list[int]) -> str:
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _rgb(value: str | None) -> tuple[int, int, int]:
    if not value:
        return (0, 0, 0)
    s = value.lstrip("#")
    if len(s) != 6:
        raise ValueError(f"bad colour {value!r}, expected #rrggbb")
    return (int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16))


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def to_geojson(det: Detections, *, include_score: bool = True) -> dict[str, Any]:
    """A FeatureCollection of ``det`` in EPSG:4326, ready for ``json.dump``."""
    d = det.to_crs(4326)
    # columns as Python lists first: one conversion per column, not one per value
    extras = {k: [_jsonable(v) for v in col.tolist()] for k, col in d.extra.items()}
    features = []
    for i, (fp, kind, cls, score, covered, rgb, length) in enumerate(zip(
            d.footprints.tolist(), d.kind.tolist(), d.cls.tolist(), d.score.tolist(),
            d.covered.tolist(), d.color.tolist(), d.length_m.tolist(), strict=True)):
        ring = [[round(x, 8), round(y, 8)] for x, y in fp]
        ring.append(ring[0])
        props: dict[str, Any] = {
            "kind": str(kind),
            "class": str(cls) if kind == "railcar" else None,
        }
        if include_score:
            props["score"] = round(score, 4)
        props["covered"] = covered
        props["color"] = _hex(rgb)
        props["length_m"] = round(length, 2)
        for k, col in extras.items():
            props[k] = col[i]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": props,
            }
        )
    fc: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    meta = {k: v for k, v in det.meta.items() if isinstance(v, str | int | float | bool | list)}
    if meta:
        fc["railwatch"] = meta
    return fc


def from_geojson(data: dict[str, Any] | str | os.PathLike[str]) -> Detections:
    """Detections (EPSG:4326) from a FeatureCollection dict or a file path."""
    source = None
    if not isinstance(data, dict):
        source = str(data)
        try:
            data = json.loads(Path(data).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{source}: not a readable GeoJSON file ({exc})") from exc
    where = f"{source}: " if source else ""
    if data.get("type") != "FeatureCollection":
        raise ValueError(f"{where}not a GeoJSON FeatureCollection")
    feats = data.get("features") or []
    fps, kinds, classes, scores, covered, colors, lengths = [], [], [], [], [], [], []
    extra_keys: list[str] = []
    for f in feats:
        for k in (f.get("properties") or {}):
            if k not in _CORE and k not in extra_keys:
                extra_keys.append(k)
    extras: dict[str, list[Any]] = {k: [] for k in extra_keys}
    for n, f in enumerate(feats):
        geom = f.get("geometry") or {}
        if geom.get("type") != "Polygon":
            raise ValueError(f"{where}feature {n} is not a Polygon")
        ring = np.asarray(geom["coordinates"][0], dtype=float)
        if len(ring) >= 5 and np.allclose(ring[0], ring[-1]):
            ring = ring[:-1]
        if len(ring) != 4:
            raise ValueError(f"{where}feature {n} footprint must have 4 corners")
        p = f.get("properties") or {}
        kind = p.get("kind", "railcar")
        fps.append(ring)
        kinds.append(kind)
        classes.append(p.get("class") or ("" if kind == "container" else "other"))
        scores.append(float(p.get("score", 1.0)))
        covered.append(bool(p.get("covered", False)))
        colors.append(_rgb(p.get("color")))
        lengths.append(float(p.get("length_m", 0.0)))
        for k in extra_keys:
            extras[k].append(p.get(k))
    n = len(fps)
    return Detections(
        footprints=np.asarray(fps, dtype=float).reshape(n, 4, 2),
        kind=kinds,
        cls=classes,
        score=scores,
        covered=covered,
        color=np.asarray(colors, dtype=np.uint8).reshape(n, 3),
        length_m=lengths,
        crs=4326,
        extra={k: np.asarray(v, dtype=object) for k, v in extras.items()},
        meta=dict(data.get("railwatch") or {}),
    )


def write_geojson(det: Detections, path: str | os.PathLike[str], **kw: Any) -> Path:
    """Write atomically (temp file + rename), so a failure leaves nothing half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # dumps, not dump: json.dump streams through the pure-Python encoder (5x slower)
        text = json.dumps(to_geojson(det, **kw))
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
