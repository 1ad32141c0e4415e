"""`railwatch detect IMAGE...`: oriented railcar/container detections as GeoJSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from railwatch.cli.options import info, progress
from railwatch.errors import InputError


def detect_cmd(
    images: list[Path] = typer.Argument(..., help="GeoTIFF image(s), 0.25-1.0 m GSD."),
    out: Path = typer.Option(None, "-o", "--out", help="Output GeoJSON (one image)."),
    out_dir: Path = typer.Option(None, "--out-dir", help="Folder for <stem>.geojson per image."),
    model: Path = typer.Option(None, "--model", help="ONNX model or folder (default: shipped)."),
    threshold: float = typer.Option(
        None, "--threshold", help="Minimum detector score (default: the model's own; with "
        "the verifier, the score at which candidates are proposed to it)."),
    verify: bool = typer.Option(
        None, "--verify/--no-verify", help="Check candidates with the second-stage verifier "
        "(default: when the model has one)."),
    refine: bool = typer.Option(
        None, "--refine/--no-refine", help="Move kept railcar boxes onto their cars with the "
        "third-stage box refiner (default: when the model has one; about 10 % of the time)."),
    site: str = typer.Option(
        None, "--site", help="Mark railcars off this site's track map (off_track: true; "
        "they are not counted for the site)."),
    workers: int = typer.Option(
        0, "--workers", help="Images (or, for one image, tiles) detected at once, one core "
        "each (default: one per core, at most 4)."),
) -> None:
    """Detect railcars and containers; GeoJSON to stdout, -o FILE or --out-dir DIR."""
    from railwatch.detect import Detector, detect, detect_each
    from railwatch.detect.pipeline import default_workers, image_tiles
    from railwatch.geojson import to_geojson, write_geojson

    if out is not None and out_dir is not None:
        raise InputError("give either -o FILE or --out-dir DIR, not both")
    if len(images) > 1 and out_dir is None:
        raise InputError("several images need --out-dir DIR (one GeoJSON per image)")
    where = None
    if site is not None:
        from railwatch.cli.options import state
        from railwatch.sites import get_site
        from railwatch.store import Store

        with Store(state.db) as store:
            where = get_site(site, store)
        if where.tracks is None:
            raise InputError(f"site {site!r} has no track map (role: track features)")
    n = workers or default_workers()
    if len(images) == 1:  # one image: its tiles at once, if it has several
        from railwatch.imagery import read_scene_metadata

        scene = read_scene_metadata(images[0], check=False, hash_file=False)
        n = min(n, len(image_tiles(scene, images[0], Detector.native_gsd(model))))
    detector = Detector(model, threshold=threshold, verify=verify, refine=refine,
                        threads=1 if n > 1 else None)

    def mark(det: Any) -> Any:
        if where is None:
            return det
        from railwatch.analytics.trackmap import mark_off_track

        return mark_off_track(det, where)

    def report(path: Path, det: Any) -> None:
        c = det.counts()
        off = f", {det.meta['off_track']} off the site's tracks" if "off_track" in det.meta else ""
        info(f"{path.name}: {c['total']} railcars ({c['covered']} covered{off}), "
             f"{c['containers']} containers{class_line(det, c)}")

    with progress() as bar:
        if n == 1 or len(images) == 1:
            for path in images:
                task = bar.add_task(f"detect {path.name}", total=None)

                def cb(done: int, total: int, task: int = task) -> None:
                    bar.update(task, completed=done, total=total)

                det = mark(detect(path, detector, progress=cb, workers=n))
                if out_dir is not None:
                    write_geojson(det, out_dir / f"{path.stem}.geojson")
                elif out is not None:
                    write_geojson(det, out)
                else:
                    json.dump(to_geojson(det), sys.stdout)
                    sys.stdout.write("\n")
                report(path, det)
            return
        n = min(n, len(images))
        task = bar.add_task(f"detect {len(images)} images ({n} at once)", total=len(images))
        for path, result in detect_each(images, detector, n):
            if isinstance(result, Exception):
                raise result
            result = mark(result)
            write_geojson(result, out_dir / f"{path.stem}.geojson")
            bar.advance(task)
            report(path, result)


#: A class named with at least this score is right 0.99 of the time on the test set
#: (docs/model-card.md, "Is the class score right?").
SURE_CLASS_SCORE = 0.9


def class_line(det: Any, c: dict[str, int]) -> str:
    """``; classes: 31 tank, 20 boxcar (45 of 51 with class score >= 0.9)`` for the
    summary line ('' without railcars); ``c``: ``det.counts()``."""
    import numpy as np

    from railwatch.types import RAILCAR_CLASSES

    if not c["total"]:
        return ""
    named = ", ".join(f"{c[k]} {k}" for k in sorted(RAILCAR_CLASSES, key=lambda k: -c[k])
                      if c[k])
    score = det.extra.get("class_score")
    if score is None:
        return f"; classes: {named}"
    rail = det.kind == "railcar"
    sure = int(np.sum(np.asarray(score[rail], float) >= SURE_CLASS_SCORE))
    return (f"; classes: {named} ({sure} of {c['total']} with class score >= "
            f"{SURE_CLASS_SCORE:g})")


def register(app: typer.Typer) -> None:
    app.command("detect")(detect_cmd)
