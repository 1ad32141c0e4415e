"""Fresh evaluation scenes as GeoTIFF + ``*.truth.geojson`` (+ manifest entries).

Two independent renderers: our training renderer (``railwatch.train.synth``) and the
project simulator (``railwatch.simulate.chips``, different code), so accuracy can be
measured on imagery the model was not tuned to. Seeds here are never used in training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

from railwatch.geojson import write_geojson
from railwatch.train.synth import generate_chip, objects_to_detections

ORIGIN = (500000.0, 4700000.0)
CRS = "EPSG:32652"


def _write_tif(path: Path, image: np.ndarray, gsd: float) -> Any:
    transform = from_origin(ORIGIN[0], ORIGIN[1], gsd, gsd)
    h, w = image.shape[:2]
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                       crs=CRS, transform=transform, tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate") as ds:
        ds.write(np.transpose(image[..., :3], (2, 0, 1)))
    return transform


def _write_tracks(path: Path, tracks_px: list[Any], transform: Any) -> None:
    """The scene's track centrelines as lon/lat LineStrings (its track map)."""
    from pyproj import Transformer

    tr = Transformer.from_crs(CRS, 4326, always_xy=True)
    feats = []
    for line in tracks_px:
        xy = np.asarray(line, float)
        x, y = transform * (xy[:, 0], xy[:, 1])
        lon, lat = tr.transform(x, y)
        feats.append({"type": "Feature", "properties": {"role": "track"},
                      "geometry": {"type": "LineString",
                                   "coordinates": np.round(np.column_stack([lon, lat]),
                                                           8).tolist()}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


def write_own_scene(out_dir: str | os.PathLike[str], name: str, seed: int,
                    size_px: int = 1024, gsd: float = 0.5) -> dict[str, Any]:
    """A scene from our renderer; returns its manifest entry."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tracks: list[np.ndarray] = []
    image, objects = generate_chip(np.random.default_rng([seed, 77]), size_px, gsd, tracks)
    transform = _write_tif(out / f"{name}.tif", image, gsd)
    write_geojson(objects_to_detections(objects, transform, CRS),
                  out / f"{name}.truth.geojson", include_score=False)
    # this renderer's pixel centres are whole numbers (objects_to_detections adds 0.5 too)
    _write_tracks(out / f"{name}.tracks.geojson", [t + 0.5 for t in tracks], transform)
    return {"file": f"{name}.tif", "gsd_m": gsd, "renderer": "railwatch.train.synth",
            "tracks": f"{name}.tracks.geojson",
            "seed": seed, "width": size_px, "height": size_px}


def write_sim_scene(out_dir: str | os.PathLike[str], name: str, seed: int,
                    size_px: int = 1024, gsd: float = 0.5) -> dict[str, Any]:
    """A scene from the project simulator (random world and conditions); manifest entry."""
    from railwatch.simulate.chips import generate_chip as sim_chip
    from railwatch.simulate.chips import object_records

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image, objects, info = sim_chip(np.random.default_rng([seed, 91]), size_px, gsd=gsd)
    recs = object_records(objects)
    for r in recs:  # simulator: raster convention; objects_to_detections adds half a pixel
        r["cx"] -= 0.5
        r["cy"] -= 0.5
        r["class"] = r["class"] or ""
    transform = _write_tif(out / f"{name}.tif", image, gsd)
    write_geojson(objects_to_detections(recs, transform, CRS),
                  out / f"{name}.truth.geojson", include_score=False)
    _write_tracks(out / f"{name}.tracks.geojson", info.get("tracks_px", []), transform)
    cond = info.get("conditions", {})
    return {"file": f"{name}.tif", "gsd_m": gsd, "renderer": "railwatch.simulate",
            "tracks": f"{name}.tracks.geojson",
            "seed": seed, "width": size_px, "height": size_px,
            "datetime": cond.get("datetime"), "snow": cond.get("snow", 0.0),
            "haze": cond.get("haze", 0.0),
            "cloud_fraction": info.get("cloud_fraction", cond.get("cloud_cover", 0.0))}
