"""Simulator speed: full-site renders per minute and training chips per second.

A full site is 1200 m x 800 m (2400 x 1600 px at 0.5 m): Tumangang on 2024-06-17 from
the built-in scenario (about 260 railcars), or a dense random yard. Renders run with
varying conditions (haze, clouds, snow, off-nadir, JPEG) in one process and in a pool of
``--workers`` processes. Prints a Markdown table.

    .venv/bin/python bench/bench_simulate.py [--images 12] [--chips 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import time

import numpy as np

from railwatch.simulate.chips import make_chips
from railwatch.simulate.layout import random_world
from railwatch.simulate.render import render
from railwatch.simulate.world import Conditions

EXTENT = (-600.0, -400.0, 600.0, 400.0)


def _world():  # type: ignore[no-untyped-def]
    """Tumangang on 2024-06-17 (~260 railcars) from the built-in scenario if present,
    else a dense random yard."""
    try:
        import datetime as dt

        from railwatch.simulate import scenario as sc
        from railwatch.simulate.traffic import build_traffic

        spec = sc.load_scenario("tumangang-khasan")
        when = dt.datetime(2024, 6, 17, 2, 0, tzinfo=dt.UTC)
        return sc.site_world(spec, "tumangang", when, build_traffic(spec, 0), 0)
    except ImportError:
        return random_world(np.random.default_rng(5), EXTENT, occupancy=0.95)


def _cond(i: int, gsd: float) -> Conditions:
    return Conditions(gsd_m=gsd, seed=i, haze=0.1 * (i % 4), cloud_cover=0.15 * (i % 3),
                      snow=0.8 if i % 5 == 4 else 0.0, off_nadir_deg=float(i % 15),
                      jpeg_quality=85 if i % 2 else 0)


def _one(args: tuple[int, float]) -> float:
    i, gsd = args
    world = _WORLD
    t = time.perf_counter()
    render(world, _cond(i, gsd))
    return time.perf_counter() - t


_WORLD = None


def _init() -> None:
    global _WORLD
    _WORLD = _world()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--chips", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    _init()
    w = _WORLD
    print(f"world: {len(w.cars)} railcars, {len(w.tracks)} tracks, {len(w.buildings)} buildings,"
          f" {len(w.containers)} container stacks, {len(w.distractors)} distractors")
    rows = []
    for gsd in (0.3, 0.5, 0.8, 3.0):
        n = a.images if gsd == 0.5 else max(2, a.images // 4)
        times = [_one((i, gsd)) for i in range(n)]
        px = round(1200 / gsd), round(800 / gsd)
        rows.append((f"full site {px[0]}x{px[1]} @ {gsd:g} m, 1 process", n,
                     f"{np.mean(times):.2f} s/image", f"{60 / np.mean(times):.1f} images/min"))
    if a.workers > 1:
        n = a.images
        t = time.perf_counter()
        with mp.get_context("fork").Pool(a.workers, initializer=_init) as pool:
            pool.map(_one, [(i, 0.5) for i in range(n)])
        dt = time.perf_counter() - t
        rows.append((f"full site 2400x1600 @ 0.5 m, {a.workers} processes", n,
                     f"{dt / n:.2f} s/image (wall)", f"{60 * n / dt:.1f} images/min"))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        make_chips(a.chips, os.path.join(tmp, "chips"), seed=0)
        dt = time.perf_counter() - t
    rows.append(("training chips 256x256 (0.3/0.5/0.8 m), PNG + labels, 1 process", a.chips,
                 f"{dt / a.chips * 1000:.0f} ms/chip", f"{a.chips / dt:.1f} chips/s"))
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| case | n | time | rate |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")


if __name__ == "__main__":
    main()
