"""Train following on the built-in scenario's ground truth: speed and correctness.

Builds the true railcars of every planned image of ``tumangang-khasan`` (no rendering:
``site_world`` per image, the whole site, no cloud or partial cover), stores them as
detections in a temporary store, runs ``follow_trains(store, "khasan", "tumangang")``
and checks each sighting against the truth's ``train_id``: a sighting is right when most
aligned car pairs carry the same train id on both sides. Prints a Markdown table.

    .venv/bin/python bench/bench_trains.py [--from 2022-11-01] [--to 2022-12-31] [--max-days 3]
        [--min-similarity 0.5 0.75 0.9]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from shapely.geometry import box

from railwatch.analytics.trains import follow_trains
from railwatch.simulate.scenario import load_scenario, plan_images, select_images, site_world
from railwatch.simulate.traffic import build_traffic
from railwatch.store import Store
from railwatch.types import Detections, Scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="start", default=None)
    ap.add_argument("--to", dest="end", default=None)
    ap.add_argument("--max-days", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-similarity", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    args = ap.parse_args()

    spec = load_scenario("tumangang-khasan")
    traffic = build_traffic(spec, args.seed)
    plan = select_images(plan_images(spec, args.seed), args.start, args.end)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "b.sqlite") as store:
        truth: dict[int, Detections] = {}
        n_cars = 0
        for k, p in enumerate(plan):
            w = site_world(spec, p.site, p.when, traffic, args.seed)
            c = w.cars
            n = len(c)
            det = Detections(
                footprints=w.to_map(c.corners()), kind=["railcar"] * n, cls=c.cls,
                score=np.ones(n), covered=c.covered, color=c.color, length_m=c.length_m,
                crs=w.crs, extra={"train_id": c.train_id},
            ).to_crs(4326)
            n_cars += n
            fp = box(*det.footprints.reshape(-1, 2).min(0), *det.footprints.reshape(-1, 2).max(0)) \
                if n else box(0, 0, 1, 1)
            scene = Scene(id=None, path=f"{p.stem}.tif", sha256=f"{k:064d}",
                          crs_wkt="EPSG:4326", transform=(1, 0, 0, 0, -1, 0), width=1,
                          height=1, band_count=3, dtype="uint8", gsd_m=p.gsd_m, footprint=fp,
                          acquired=p.when.replace(tzinfo=dt.UTC))
            sid = store.add_scene(scene, {p.site: 1.0})
            store.put_detections(sid, det)
            truth[sid] = det
        t_build = time.perf_counter() - t0
        rows = []
        for min_sim in args.min_similarity:
            t1 = time.perf_counter()
            found = follow_trains(store, "khasan", "tumangang", max_days=args.max_days,
                                  min_similarity=min_sim)
            t_follow = time.perf_counter() - t1
            right = 0
            trains: Counter[str] = Counter()
            for s in found:
                m = s.match
                ida = truth[int(m.a.scene_id or 0)].extra["train_id"][m.a.indices]
                idb = truth[int(m.b.scene_id or 0)].extra["train_id"][m.b.indices]
                same = [ida[i] == idb[j] for i, j in m.pairs]
                ok = bool(same) and np.mean(same) > 0.5
                right += ok
                trains[Counter(ida[i] for i, _ in m.pairs).most_common(1)[0][0]] += 1
                print(("OK   " if ok else "WRONG"), s.sentence)
            rows.append((min_sim, t_follow, len(found), right, len(trains)))
            print()
    sites = Counter(p.site for p in plan)
    print(f"{sites['khasan']} / {sites['tumangang']} images (khasan / tumangang), "
          f"{n_cars} true railcars, store built in {t_build:.1f} s")
    print()
    print("| min similarity | follow (s) | sightings | right | wrong | distinct trains |")
    print("|---|---|---|---|---|---|")
    for min_sim, t_follow, n, right, distinct in rows:
        print(f"| {min_sim:.2f} | {t_follow:.1f} | {n} | {right} | {n - right} | {distinct} |")


if __name__ == "__main__":
    main()
