"""Training chips: randomised rail-yard images with oriented-box labels in pixels.

Each chip is a fresh random world (:func:`railwatch.simulate.layout.random_world`) under
random conditions (:func:`railwatch.simulate.layout.random_conditions`), rendered at a
GSD drawn from ``gsd_choices`` (jittered by up to 8 %) into ``chip_px`` x ``chip_px``
pixels. Labels are the visible (lean-displaced) footprints of railcars and ground
containers in PIXEL coordinates: ``cx, cy`` (pixel (0, 0) spans [0, 1) x [0, 1)),
``length_px``, ``width_px`` and ``angle_rad`` (the long axis, from +x towards +y, i.e.
down the image, in [-pi/2, pi/2)).

* :func:`generate_chip` - one chip in memory, for on-the-fly training.
* :func:`make_chips` - N chips on disk: ``images/chip_000000.png``,
  ``labels/chip_000000.json``, ``coco.json`` and a ``README.md`` describing the format.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from railwatch.errors import InputError
from railwatch.simulate.layout import random_conditions, random_world
from railwatch.simulate.render import render
from railwatch.simulate.world import Conditions, World
from railwatch.types import RAILCAR_CLASSES

#: Label categories: the 7 railcar classes, then ground containers. COCO ids are index+1.
CATEGORIES: tuple[str, ...] = (*RAILCAR_CLASSES, "container")

#: The in-memory object record of :func:`generate_chip`.
OBJECT_DTYPE = np.dtype([
    ("cx", "f4"), ("cy", "f4"), ("length_px", "f4"), ("width_px", "f4"), ("angle_rad", "f4"),
    ("category_id", "i1"), ("covered", "?"), ("occluded", "?"), ("truncated", "?"),
    ("length_m", "f4"), ("color", "u1", (3,)), ("corners", "f4", (4, 2)),
])


def _objects(rendered: Any, chip_px: int) -> np.ndarray:
    truth = rendered.truth
    pix = rendered.pixel_footprints
    n = len(truth)
    out = np.zeros(n, OBJECT_DTYPE)
    if n == 0:
        return out
    cat = np.array([CATEGORIES.index(c) if k == "railcar" else len(RAILCAR_CLASSES)
                    for k, c in zip(truth.kind, truth.cls, strict=True)], dtype=np.int8)
    across = pix[:, 1] - pix[:, 0]
    along = pix[:, 2] - pix[:, 1]
    ang = np.arctan2(along[:, 1], along[:, 0])
    ang = (ang + np.pi / 2) % np.pi - np.pi / 2
    out["cx"] = pix[:, :, 0].mean(axis=1)
    out["cy"] = pix[:, :, 1].mean(axis=1)
    out["length_px"] = np.hypot(along[:, 0], along[:, 1])
    out["width_px"] = np.hypot(across[:, 0], across[:, 1])
    out["angle_rad"] = ang
    out["category_id"] = cat
    out["covered"] = truth.covered
    out["occluded"] = truth.extra["occluded"].astype(bool)
    out["truncated"] = ((pix < 0) | (pix > chip_px)).any(axis=(1, 2))
    out["length_m"] = truth.length_m
    out["color"] = truth.color
    out["corners"] = pix
    inside = (out["cx"] >= 0) & (out["cx"] < chip_px) & (out["cy"] >= 0) & (out["cy"] < chip_px)
    return out[inside]


def generate_chip(rng: np.random.Generator, chip_px: int = 256, gsd: float | None = None,
                  gsd_choices: Sequence[float] = (0.3, 0.5, 0.8), container_lines: float = 0.4,
                  container_yards: float = 0.0,
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One random chip: ``(image (chip_px, chip_px, 3) uint8 RGB, objects, info)``.

    ``objects`` is a structured array of :data:`OBJECT_DTYPE` (pixel coordinates);
    ``info`` holds the chip's ``gsd_m`` and conditions. ``gsd`` fixes the GSD, else it is
    drawn from ``gsd_choices`` and jittered by up to 8 %. ``container_lines`` and
    ``container_yards`` shape the container lots (see :func:`random_world`).
    """
    cond = random_conditions(rng, gsd_choices if gsd is None else (gsd,))
    if gsd is None:
        cond.gsd_m = float(cond.gsd_m * rng.uniform(0.92, 1.08))
    size = chip_px * cond.gsd_m
    extent = (-size / 2, -size / 2, size / 2, size / 2)
    world = random_world(rng, extent, month=cond.when.month, container_lines=container_lines,
                         container_yards=container_yards)
    return chip_from_world(world, cond, chip_px)


def chip_from_world(world: World, cond: Conditions, chip_px: int = 256,
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Render a ``chip_px`` square chip centred on the world's local origin, with labels."""
    size = chip_px * cond.gsd_m
    extent = (-size / 2, -size / 2, size / 2, size / 2)
    rendered = render(world, cond, bounds=extent)
    image = rendered.image[:chip_px, :chip_px]
    info = {"gsd_m": round(cond.gsd_m, 5), "conditions": conditions_dict(cond),
            "sun_azimuth_deg": round(rendered.sun_azimuth_deg, 2),
            "sun_elevation_deg": round(rendered.sun_elevation_deg, 2),
            "cloud_fraction": round(rendered.cloud_fraction, 4),
            # track centrelines in chip pixels (col, row; 0.0 = a pixel's outer corner)
            "tracks_px": [np.round(np.column_stack(
                [(t.vertices[:, 0] - extent[0]) / cond.gsd_m,
                 (extent[3] - t.vertices[:, 1]) / cond.gsd_m]), 2).tolist()
                for t in world.tracks]}
    return image, _objects(rendered, chip_px), info


def conditions_dict(c: Conditions) -> dict[str, Any]:
    """The conditions as JSON-ready values."""
    return {
        "datetime": c.when.strftime("%Y-%m-%dT%H:%M:%SZ"), "lat": round(c.lat, 4),
        "lon": round(c.lon, 4), "sensor": c.sensor, "gsd_m": round(c.gsd_m, 5),
        "snow": round(c.snow, 3), "haze": round(c.haze, 3),
        "cloud_cover": round(c.cloud_cover, 3), "off_nadir_deg": round(c.off_nadir_deg, 2),
        "off_nadir_azimuth_deg": round(c.off_nadir_azimuth_deg, 1),
        "noise": round(c.noise, 4), "blur": round(c.blur, 3),
        "jpeg_quality": c.jpeg_quality, "seed": c.seed,
    }


def object_records(objects: np.ndarray) -> list[dict[str, Any]]:
    """Objects as the JSON label records (see the chips README)."""
    recs = []
    for o in objects:
        cat = CATEGORIES[int(o["category_id"])]
        r, g, b = (int(v) for v in o["color"])
        recs.append({
            "cx": round(float(o["cx"]), 3), "cy": round(float(o["cy"]), 3),
            "length_px": round(float(o["length_px"]), 3),
            "width_px": round(float(o["width_px"]), 3),
            "angle_rad": round(float(o["angle_rad"]), 5),
            "kind": "container" if cat == "container" else "railcar",
            "class": None if cat == "container" else cat,
            "category": cat, "category_id": int(o["category_id"]),
            "covered": bool(o["covered"]), "color": f"#{r:02x}{g:02x}{b:02x}",
            "length_m": round(float(o["length_m"]), 2),
            "occluded": bool(o["occluded"]), "truncated": bool(o["truncated"]),
            "corners": [[round(float(x), 3), round(float(y), 3)] for x, y in o["corners"]],
        })
    return recs


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_chips(n: int, out_dir: str | os.PathLike[str], seed: int = 0, chip_px: int = 256,
               gsd_choices: Sequence[float] = (0.3, 0.5, 0.8),
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write ``n`` random chips with labels, ``coco.json`` and ``README.md`` to ``out_dir``.

    Chip ``i`` depends only on ``(seed, i)``, so runs are reproducible and can be split.
    ``progress(done, total)`` is called after each chip. Returns the COCO dictionary.
    """
    if n < 0:
        raise InputError(f"number of chips must be >= 0, got {n}")
    if chip_px < 32:
        raise InputError(f"chip size must be at least 32 pixels, got {chip_px}")
    if not gsd_choices or any(g <= 0 for g in gsd_choices):
        raise InputError(f"GSD choices must be positive, got {list(gsd_choices)}")
    out = Path(out_dir)
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "labels").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder ({exc.strerror})", out) from None
    images, annotations = [], []
    ann_id = 1
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        image, objects, info = generate_chip(rng, chip_px, gsd_choices=gsd_choices)
        name = f"chip_{i:06d}"
        png = out / "images" / f"{name}.png"
        ok, buf = cv2.imencode(".png", image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise RuntimeError(f"PNG encoding failed for {name}")
        tmp = png.with_name(f".{png.name}.tmp")
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, png)
        recs = object_records(objects)
        label = {"image": f"images/{name}.png", "width": chip_px, "height": chip_px, **info,
                 "objects": recs}
        _atomic_write(out / "labels" / f"{name}.json", json.dumps(label))
        images.append({"id": i + 1, "file_name": f"images/{name}.png", "width": chip_px,
                       "height": chip_px, "gsd_m": info["gsd_m"]})
        for r in recs:
            xs = [c[0] for c in r["corners"]]
            ys = [c[1] for c in r["corners"]]
            x0, y0 = max(0.0, min(xs)), max(0.0, min(ys))
            x1, y1 = min(float(chip_px), max(xs)), min(float(chip_px), max(ys))
            annotations.append({
                "id": ann_id, "image_id": i + 1, "category_id": r["category_id"] + 1,
                "segmentation": [[v for c in r["corners"] for v in c]],
                "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)],
                "area": round(r["length_px"] * r["width_px"], 3), "iscrowd": 0,
                "rbox": [r["cx"], r["cy"], r["length_px"], r["width_px"], r["angle_rad"]],
                **{k: r[k] for k in ("kind", "class", "covered", "color", "length_m",
                                     "occluded", "truncated")},
            })
            ann_id += 1
        if progress is not None:
            progress(i + 1, n)
    coco = {
        "info": {"description": "railwatch synthetic training chips", "seed": seed,
                 "chip_px": chip_px, "gsd_choices": list(gsd_choices)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": c,
                        "supercategory": "container" if c == "container" else "railcar"}
                       for k, c in enumerate(CATEGORIES)],
    }
    _atomic_write(out / "coco.json", json.dumps(coco))
    _atomic_write(out / "README.md", README.format(n=n, seed=seed, chip_px=chip_px,
                                                   gsd=", ".join(f"{g:g}" for g in gsd_choices)))
    return coco


README = """# railwatch training chips

{n} synthetic chips of {chip_px} x {chip_px} pixels, seed {seed}, GSD drawn from ({gsd}) m
and jittered by up to 8 %. Made by `railwatch simulate --chips` (library:
`railwatch.simulate.chips.make_chips`). Chip `i` depends only on `(seed, i)`.

Every chip is a new random rail yard: straight or curved parallel tracks at any angle,
dense trains with 1 m coupling gaps or sparse cars, all seven railcar classes with real
lengths, liveries and off-palette colours, covered (tarp) loads, coal/ore in hoppers,
containers on flatcars; beside the tracks ground container stacks, trucks, warehouses,
platforms, walls, rubble and machines (not railcars). Random season and snow, sun
position (shadows), haze, partial clouds, off-nadir lean, blur, noise and JPEG artefacts.

## Layout

- `images/chip_000000.png` - RGB, 8 bits.
- `labels/chip_000000.json` - one chip's labels (below).
- `coco.json` - all chips in COCO style.

## `labels/*.json`

```
{{"image": "images/chip_000000.png", "width": W, "height": H, "gsd_m": 0.5,
 "conditions": {{"datetime", "lat", "lon", "sensor", "gsd_m", "snow", "haze", "cloud_cover",
                "off_nadir_deg", "off_nadir_azimuth_deg", "noise", "blur", "jpeg_quality",
                "seed"}},
 "sun_azimuth_deg": .., "sun_elevation_deg": .., "cloud_fraction": ..,
 "tracks_px": [ [[col, row], ...], ... ],
 "objects": [ {{...}}, ... ]}}
```

`tracks_px`: the centrelines of the tracks, in the pixel coordinates below.

Each object, in PIXEL coordinates (x right, y down; pixel (0, 0) covers [0, 1) x [0, 1),
so the centre of the top-left pixel is (0.5, 0.5)):

| field | meaning |
|---|---|
| `cx`, `cy` | centre of the oriented box |
| `length_px`, `width_px` | long and short side |
| `angle_rad` | angle of the long axis from +x towards +y (down), in [-pi/2, pi/2) |
| `corners` | the 4 corners, going round the box |
| `kind` | `railcar` or `container` (a ground container stack, seen from above) |
| `class` | railcar class (one of the seven above); null for containers |
| `category`, `category_id` | class name or `container`; index 0..7 in that order |
| `covered` | load under a tarp |
| `color` | body colour `#rrggbb` (the livery; a covered car shows its tarp on top) |
| `length_m` | length in metres |
| `occluded` | centre under a cloud or under a roof/canopy |
| `truncated` | the box is cut by the chip edge (objects whose centre is outside are left out) |

Boxes are the VISIBLE footprints: the roof, displaced by the off-nadir lean of the
object's height (under a metre for railcars).

## `coco.json`

Standard `images`, `annotations`, `categories` (ids 1..8: the seven railcar classes, then
`container`). Each annotation has `segmentation` (the 4 corners as one polygon), `bbox`
(axis-aligned, clipped to the chip), `area` (length x width), and the extra fields
`rbox` = [cx, cy, length_px, width_px, angle_rad], `kind`, `class`, `covered`, `color`,
`length_m`, `occluded`, `truncated`.
"""
