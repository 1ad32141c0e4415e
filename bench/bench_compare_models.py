"""End-to-end speed of two or more model folders on the same images, interleaved.

The development machine's speed drifts by ±15 % (and by a third between days), so a
change to the pipeline is timed against the model it replaces in the same process, turn
by turn: each repeat runs every model over every image set, and the median per model and
set is reported. Accuracy is not measured here (``bench_detect.py`` does that).

    .venv/bin/python bench/bench_compare_models.py OLD_MODEL_DIR NEW_MODEL_DIR \\
        --images fresh=TEST_DIR --images scenario=SCENARIO_DIR --repeats 3

Each ``--images NAME=DIR`` is a folder of GeoTIFFs (images outside the detector's GSD
range are left out). Two modes: two images at once with one ONNX thread each
(``detect_each``, as ``railwatch detect --out-dir`` and ``analyze`` run), and one image at
a time on one thread (``--one-at-a-time``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from railwatch.detect import Detector, detect, detect_each
from railwatch.detect.pipeline import GSD_RANGE
from railwatch.imagery import read_scene_metadata


def image_sets(specs: list[str]) -> dict[str, tuple[list[Path], float]]:
    """``NAME=DIR`` specs -> {name: (GeoTIFFs within the GSD range, megapixels)}."""
    out = {}
    for spec in specs:
        name, _, folder = spec.partition("=")
        paths, mp = [], 0.0
        for p in sorted(Path(folder).glob("*.tif")):
            meta = read_scene_metadata(p, hash_file=False)
            if GSD_RANGE[0] <= meta.gsd_m <= GSD_RANGE[1]:
                paths.append(p)
                mp += meta.width * meta.height / 1e6
        if not paths:
            raise SystemExit(f"{folder}: no GeoTIFF within the detector's GSD range")
        out[name] = (paths, mp)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="model folders to compare")
    ap.add_argument("--images", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one-at-a-time", action="store_true",
                    help="one image at a time on one thread (default: two at once)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    sets = image_sets(args.images)
    dets = {str(m): Detector(m, threads=1) for m in args.models}
    first = next(iter(sets.values()))[0][0]
    for d in dets.values():  # warm up: sessions, first-call allocations
        detect(first, d)
    rates: dict[tuple[str, str], list[float]] = {(m, s): [] for m in dets for s in sets}
    for rep in range(args.repeats):
        for s, (paths, mp) in sets.items():
            for m, d in dets.items():
                t = time.perf_counter()
                if args.one_at_a_time:
                    for p in paths:
                        detect(p, d)
                else:
                    for _ in detect_each(paths, d, 2):
                        pass
                rates[(m, s)].append(mp / (time.perf_counter() - t))
                print(f"repeat {rep + 1}: {s:>10} {m}: {rates[(m, s)][-1]:.2f} MP/s", flush=True)
    mode = "one at a time, 1 thread" if args.one_at_a_time else "two at once, 1 thread each"
    print(f"\n| model | {' | '.join(f'{s} ({sets[s][1]:.1f} MP)' for s in sets)} |")
    print(f"|---|{'---|' * len(sets)}")
    for m in dets:
        cells = [f"{statistics.median(rates[(m, s)]):.1f} ({min(rates[(m, s)]):.1f}–"
                 f"{max(rates[(m, s)]):.1f}) MP/s" for s in sets]
        print(f"| {m} | {' | '.join(cells)} |")
    print(f"\n{mode}; median (range) of {args.repeats} repeats")
    if args.json:
        args.json.write_text(json.dumps(
            {"mode": mode, "repeats": args.repeats,
             "rates": {f"{m} | {s}": v for (m, s), v in rates.items()}}, indent=1))


if __name__ == "__main__":
    main()
