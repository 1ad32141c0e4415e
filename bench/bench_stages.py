"""Where the detection time goes: each stage of ``railwatch detect`` timed on a folder of
GeoTIFFs, one image at a time on one ONNX thread.

    .venv/bin/python bench/bench_stages.py TEST_DIR [--model MODEL_DIR]

Every stage's calls are wrapped with a timer in this process (the wrappers cost a little,
so the total runs slower than ``bench_compare_models.py`` measures); the table gives each
stage's seconds and share of the wall time. The ONNX rows are the networks alone (the
verifier row holds the class stage's network too: both are ``Verifier`` sessions); the
step rows hold their crops and their networks' time as well, so rows nest and the shares
add to more than 100 %.
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import railwatch.detect.model as model_mod
import railwatch.detect.pipeline as pipeline_mod
from railwatch.detect import Detector, detect
from railwatch.detect.pipeline import GSD_RANGE
from railwatch.detect.refine import Refiner
from railwatch.detect.verify import Verifier
from railwatch.imagery import read_scene_metadata

#: (row name, module or class, attribute): what is timed.
STAGES: list[tuple[str, Any, str]] = [
    ("detector, ONNX", Detector, "run"),
    ("verifier and class stage, ONNX", Verifier, "_run"),
    ("box refiner, ONNX", Refiner, "predict"),
    ("verifier step (crops, ONNX, refiner)", model_mod, "apply_verifier"),
    ("class stage step", model_mod, "classify_railcars"),
    ("slot classifier step", model_mod, "find_neighbours"),
    ("reading and resampling", pipeline_mod, "_read_rgb"),
    ("decoding", model_mod, "decode"),
    ("NMS", model_mod, "rotated_nms"),
    ("colours", model_mod, "footprint_colors"),
    ("tile merge", pipeline_mod, "merge_tile_boxes"),
    ("to detections", pipeline_mod, "boxes_to_detections"),
]


def timed(fn: Callable[..., Any], key: str, totals: collections.Counter[str]) -> Callable[..., Any]:
    """``fn`` with its wall time added to ``totals[key]`` on every call."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - t
    return wrapper


def profile(folder: Path, model: Path | None = None) -> tuple[dict[str, float], float, float]:
    """(seconds per stage, wall seconds, megapixels) of detecting every GeoTIFF in
    ``folder`` within the detector's GSD range."""
    totals: collections.Counter[str] = collections.Counter()
    for key, owner, name in STAGES:
        fn = owner.__dict__[name]
        wrapped = timed(fn.__func__ if isinstance(fn, staticmethod) else fn, key, totals)
        setattr(owner, name, staticmethod(wrapped) if isinstance(fn, staticmethod) else wrapped)
    det = Detector(model, threads=1)
    paths, mp = [], 0.0
    for p in sorted(folder.glob("*.tif")):
        meta = read_scene_metadata(p, hash_file=False)
        if GSD_RANGE[0] <= meta.gsd_m <= GSD_RANGE[1]:
            paths.append(p)
            mp += meta.width * meta.height / 1e6
    detect(paths[0], det)  # warm the sessions
    totals.clear()
    t = time.perf_counter()
    for p in paths:
        detect(p, det)
    return dict(totals), time.perf_counter() - t, mp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args()
    totals, wall, mp = profile(args.folder, args.model)
    print(f"{mp:.1f} MP in {wall:.1f} s: {mp / wall:.2f} MP/s (one image at a time, one "
          "thread, timers on)\n")
    print("| stage | seconds | share |\n|---|---|---|")
    for key, _, _ in STAGES:
        print(f"| {key} | {totals.get(key, 0.0):.2f} | {totals.get(key, 0.0) / wall:.1%} |")


if __name__ == "__main__":
    main()
