"""End-to-end speed of two or more checkouts of the code on the same images, interleaved.

For changes to the pipeline's own work (reading, resampling, cutting crops, NMS, GeoJSON)
with the models unchanged. Each run is a fresh process on one source tree
(``PYTHONPATH=SRC``): it loads the shipped model on one ONNX thread, detects one image to
warm up, then times GeoTIFF in to GeoJSON out over every image, as ``railwatch detect
--out-dir`` does: two images at once (``detect_each``, GeoJSON written in the main
thread) or one at a time. Runs alternate between the trees (the host drifts by ±15 %),
and the median per tree and mode is reported, with the process's CPU seconds (steadier
than wall time when another job shares the cores). Make the old tree with
``git worktree add /tmp/base HEAD`` before changing anything.

    .venv/bin/python bench/bench_compare_code.py /tmp/base/src src --images TEST_DIR \\
        --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("two", "one")


def timed_run(mode: str, folder: Path) -> dict[str, float]:
    """One timed pass over ``folder``'s GeoTIFFs with the code on this process's path."""
    import railwatch
    from railwatch.detect import Detector, detect, detect_each
    from railwatch.geojson import write_geojson
    from railwatch.imagery import read_scene_metadata

    paths = sorted(folder.glob("*.tif"))
    mp = sum(m.width * m.height for m in (read_scene_metadata(p, check=False, hash_file=False)
                                           for p in paths)) / 1e6
    det = Detector(threads=1)
    detect(paths[-1], det)  # warm up: sessions, first-call allocations
    with tempfile.TemporaryDirectory(prefix="bench-code-") as tmp:
        out = Path(tmp)
        t, cpu = time.perf_counter(), time.process_time()
        if mode == "two":
            for p, d in detect_each(paths, det, 2):
                write_geojson(d, out / f"{p.stem}.geojson")
        else:
            for p in paths:
                write_geojson(detect(p, det), out / f"{p.stem}.geojson")
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    return {"mp": mp, "s": seconds, "mps": mp / seconds, "cpu_s": cpu,
            "module": railwatch.__file__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="*", type=Path, help="source folders (each holds railwatch/)")
    ap.add_argument("--images", type=Path, help="folder of GeoTIFFs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                    help="two: two images at once, one ONNX thread each; one: one at a time")
    ap.add_argument("--json", type=Path, default=None, help="write every run here")
    ap.add_argument("--run", choices=MODES, help=argparse.SUPPRESS)  # one timed run (child)
    args = ap.parse_args()
    if args.images is None:
        raise SystemExit("--images DIR is needed")
    if args.run:
        print(json.dumps(timed_run(args.run, args.images)))
        return
    if len(args.trees) < 2:
        raise SystemExit("give two or more source folders")
    runs = []
    for rep in range(args.repeats):
        for mode in args.modes:
            for tree in args.trees:
                env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
                out = subprocess.run([sys.executable, __file__, "--run", mode,
                                      "--images", str(args.images)],
                                     env=env, capture_output=True, text=True, check=True)
                r = {"tree": str(tree), "mode": mode, "repeat": rep + 1,
                     "utc": time.strftime("%H:%M:%S", time.gmtime()),
                     **json.loads(out.stdout.strip().splitlines()[-1])}
                if not Path(r["module"]).resolve().is_relative_to(tree.resolve()):
                    raise SystemExit(f"{tree}: the run imported {r['module']}")
                runs.append(r)
                print(f"{r['utc']} repeat {rep + 1}: {mode} {tree}: {r['mps']:.2f} MP/s, "
                      f"{r['cpu_s']:.2f} CPU s", flush=True)
    mp = runs[0]["mp"]
    print(f"\n| code | {' | '.join(args.modes)} | CPU seconds, {' | '.join(args.modes)} |")
    print(f"|---|{'---|' * 2 * len(args.modes)}")
    for tree in args.trees:
        cells, cpu = [], []
        for mode in args.modes:
            mine = [r for r in runs if r["tree"] == str(tree) and r["mode"] == mode]
            v = [r["mps"] for r in mine]
            cells.append(f"{statistics.median(v):.1f} ({min(v):.1f}–{max(v):.1f}) MP/s")
            cpu.append(f"{statistics.median(r['cpu_s'] for r in mine):.2f}")
        print(f"| {tree} | {' | '.join(cells)} | {' | '.join(cpu)} |")
    print(f"\n{mp:.1f} MP in {args.images}; two: two images at once, one ONNX thread each; "
          f"one: one at a time, one thread; median (range) of {args.repeats} repeats; CPU "
          "seconds (the process's, all threads; steadier than wall time on a shared host): "
          "median")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
