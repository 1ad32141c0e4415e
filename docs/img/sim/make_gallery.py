"""Regenerate the simulator gallery in this folder (see docs/simulator.md).

    .venv/bin/python docs/img/sim/make_gallery.py

Renders small crops of the built-in Tumangang scenario world (or a random yard if the
scenario module is missing) and a sheet of labelled training chips, and prints the
Markdown table of parameters used.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import cv2
import numpy as np

from railwatch.simulate.chips import generate_chip
from railwatch.simulate.layout import random_world
from railwatch.simulate.render import render
from railwatch.simulate.world import Conditions, World

HERE = Path(__file__).parent
DISPLAY_W = 360


def site(when: dt.datetime) -> World:
    try:
        from railwatch.simulate import scenario as sc
        from railwatch.simulate.traffic import build_traffic

        spec = sc.load_scenario("tumangang-khasan")
        return sc.site_world(spec, "tumangang", when, build_traffic(spec, 0), 0)
    except ImportError:
        return random_world(np.random.default_rng(5), occupancy=0.95)


def save(name: str, img: np.ndarray, width: int = DISPLAY_W) -> int:
    h, w = img.shape[:2]
    if w != width:
        interp = cv2.INTER_NEAREST if w < width else cv2.INTER_AREA
        img = cv2.resize(img, (width, round(h * width / w)), interpolation=interp)
    path = HERE / f"{name}.png"
    cv2.imwrite(str(path), img[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if path.stat().st_size > 150_000:  # keep the repository small: a 256-colour palette
        from PIL import Image

        Image.fromarray(img).quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return path.stat().st_size


def main() -> None:
    rows = []
    yard = (280.0, -124.0, 388.0, -52.0)  # 108 m x 72 m of the yard's east end
    depot = (-60.0, 150.0, 60.0, 230.0)
    summer = dt.datetime(2024, 6, 17, 1, 50, tzinfo=dt.UTC)
    winter = dt.datetime(2024, 2, 8, 1, 40, tzinfo=dt.UTC)
    autumn = dt.datetime(2023, 10, 5, 2, 10, tzinfo=dt.UTC)
    cases = [
        ("gsd030_summer", summer, yard, dict(gsd_m=0.3, sensor="WorldView-3")),
        ("gsd050_summer", summer, yard, dict(gsd_m=0.5, sensor="SkySat")),
        ("gsd080_summer", summer, yard, dict(gsd_m=0.8, sensor="synthetic-0.8")),
        ("gsd300_summer", summer, yard, dict(gsd_m=3.0, sensor="PlanetScope")),
        ("gsd050_winter_snow", winter, (100.0, -170.0, 208.0, -98.0),
         dict(gsd_m=0.5, snow=0.9, sensor="SkySat")),
        ("gsd030_autumn_tarps", autumn, (-380.0, -100.0, -272.0, -28.0),
         dict(gsd_m=0.3, sensor="WorldView-3")),
        ("gsd050_haze", summer, yard, dict(gsd_m=0.5, haze=0.6, sensor="SkySat")),
        ("gsd050_offnadir_lowsun", dt.datetime(2024, 2, 8, 23, 50, tzinfo=dt.UTC), depot,
         dict(gsd_m=0.5, off_nadir_deg=20, off_nadir_azimuth_deg=250, snow=0.5,
              sensor="SkySat")),
        ("gsd030_autumn_depot", autumn, depot, dict(gsd_m=0.3, sensor="WorldView-3",
                                                    jpeg_quality=80)),
    ]
    for name, when, bounds, kw in cases:
        w = site(when)
        cond = Conditions(when=when, seed=4, **kw)  # type: ignore[arg-type]
        r = render(w, cond, bounds=bounds)
        size = save(name, r.image)
        rows.append((name, when, cond, r, size, bounds))
    # clouds over the whole site, downscaled
    w = site(autumn)
    cond = Conditions(when=autumn, gsd_m=0.8, cloud_cover=0.35, seed=9, sensor="synthetic-0.8")
    r = render(w, cond)
    rows.append(("site_clouds", autumn, cond, r, save("site_clouds", r.image, 480), w.extent))
    # training chips with their labels drawn
    tiles = []
    for i in range(4):
        img, objs, _ = generate_chip(np.random.default_rng([0, i]), 160)
        vis = img.copy()
        for o in objs:
            col = (255, 230, 0) if o["category_id"] < 7 else (255, 0, 255)
            pts = np.round((o["corners"] - 0.5) * 4).astype(np.int32)
            cv2.polylines(vis, [pts], True, col, 1, cv2.LINE_AA, 2)
        tiles.append(np.concatenate([img, vis], 0))
    sheet = np.concatenate(tiles, 1)
    size = save("chips_sheet", sheet, 640)
    print(json.dumps({"chips_sheet_bytes": size}))
    print("| image | date/time (UTC) | sensor, GSD | snow | haze | clouds | off-nadir | sun az/el "
          "| bytes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, when, c, r, size, _b in rows:
        print(f"| ![{name}](img/sim/{name}.png) | {when:%Y-%m-%d %H:%M} | {c.sensor}, "
              f"{c.gsd_m:g} m | {c.snow:g} | {c.haze:g} | {c.cloud_cover:g} | "
              f"{c.off_nadir_deg:g} deg | {r.sun_azimuth_deg:.0f} / {r.sun_elevation_deg:.0f} "
              f"deg | {size} |")


if __name__ == "__main__":
    main()
