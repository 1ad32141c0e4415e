"""Scoring a detector step on and off over the same scenes (reusable by step tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from railwatch.detect import Detector, detect
from railwatch.evaluate import evaluate
from railwatch.geojson import write_geojson


def score_on_and_off(det: Detector, scenes: Path, out_root: Path,
                     switch_off: Callable[[Detector], None]) -> dict[bool, dict[str, Any]]:
    """``evaluate``'s overall summary of ``det`` on every GeoTIFF of ``scenes``, as given
    (True) and after ``switch_off(det)`` (False)."""
    got = {}
    for on in (True, False):
        if not on:
            switch_off(det)
        out = out_root / str(on)
        for tif in sorted(scenes.glob("*.tif")):
            write_geojson(detect(tif, det), out / f"{tif.stem}.geojson")
        got[on] = evaluate(scenes, out)["overall"]
    return got
