"""Peer baseline for the detector benchmark: Ultralytics YOLO11n-OBB trained from scratch on
the same chips as railwatch's models, run sliced over whole GeoTIFFs.

It needs its own virtual environment (torchvision and ultralytics next to railwatch; the
project's venv keeps the CPU torch 2.13 without torchvision)::

    /root/.pyenv/versions/3.11.7/bin/python3 -m venv /tmp/peer-venv
    /tmp/peer-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 ultralytics==8.4.190
    /tmp/peer-venv/bin/pip install -e /work/main

Usage (all with ``/tmp/peer-venv/bin/python bench/peer_yolo.py``)::

    export    --out DATA --chips 3000 --seed 11      # YOLO-OBB dataset of our training chips
    train     --data DATA --minutes 50 --out RUN     # yolo11n-obb.yaml from scratch, CPU
    calibrate --weights RUN/best.pt                  # conf threshold on validation scenes
    predict   --weights RUN/best.pt --images A.tif B.tif --out-dir PRED [--timing T.json]

``export`` draws chips with ``railwatch.train.verifier._chip`` (native 0.5 m; 65 % project
simulator, 35 % our own renderer, photometric jitter): 8 classes, the 7 railcar classes
then ``container``; occluded objects are left out. ``calibrate`` picks the confidence
threshold the way ``railwatch.train.calibrate`` picks ours (validation scenes, seeds
600000+, best mean of railcar and container F1) and stores it in ``peer.json`` beside the
weights. ``predict`` reads each GeoTIFF window by window through railwatch's own pipeline
(resampling to 0.5 m, 1024 px tiles with 96 px overlap, core ownership and rotated NMS
across seams) with YOLO in place of our network, and writes railwatch's detections
GeoJSON (``covered`` is always false: the peer has no covered head). ``--timing`` writes
megapixels, seconds and MP/s for the images after a warm-up on the first one.

Ultralytics never goes online here: ``YOLO_OFFLINE=1``, a private ``YOLO_CONFIG_DIR``
with matplotlib's DejaVu Sans standing in for the Arial font it would fetch, the model
built from its YAML (no weights), ``amp=False`` (the AMP check downloads a model) and
``plots=False``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

PEER_NAME = "YOLO11n-OBB peer (sliced)"
NAMES = ("boxcar", "tank", "hopper", "flatcar", "locomotive", "passenger", "other",
         "container")
CONFIG_DIR = Path(os.environ.get("PEER_YOLO_CONFIG_DIR", "/tmp/peer/ultralytics-config"))


def _offline() -> None:
    """Keep ultralytics off the network (call before importing it)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(CONFIG_DIR))
    cfg = Path(os.environ["YOLO_CONFIG_DIR"])
    cfg.mkdir(parents=True, exist_ok=True)
    font = cfg / "Arial.ttf"
    if not font.exists():  # check_font() would download Arial.ttf otherwise
        import matplotlib

        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        shutil.copyfile(src, font)


def _yolo(weights: str | os.PathLike[str]) -> Any:
    _offline()
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    SETTINGS.update(sync=False)
    return YOLO(str(weights))


# -- export ------------------------------------------------------------------------------
def chip_labels(objs: list[dict[str, Any]], w: int, h: int) -> list[str]:
    """YOLO-OBB label lines (``cls x1 y1 ... x4 y4``, normalised) of one chip's objects.

    Objects are raster-convention dicts (``cx``, ``cy``, ``length_px``, ``width_px``,
    ``angle_rad``). A box cut by the chip edge is clipped to the chip and replaced by the
    minimum rotated rectangle of what is visible; less than 30 % visible is dropped.
    """
    import shapely
    from shapely.geometry import box

    from railwatch.detect.decode import box_corners

    frame = box(0, 0, w, h)
    lines = []
    for o in objs:
        if o.get("occluded"):
            continue
        cid = 7 if o["kind"] == "container" else NAMES.index(o["class"])
        c = box_corners(o["cx"], o["cy"], o["length_px"], o["width_px"], o["angle_rad"])[0]
        poly = shapely.Polygon(c)
        if not poly.is_valid or poly.area <= 0:
            continue
        vis = poly.intersection(frame)
        if vis.area < 0.3 * poly.area:
            continue
        if vis.area < 0.999 * poly.area:
            c = np.asarray(vis.minimum_rotated_rectangle.exterior.coords)[:4]
        xy = np.clip(np.asarray(c, float) / [w, h], 0.0, 1.0)
        lines.append(f"{cid} " + " ".join(f"{v:.6f}" for v in xy.reshape(-1)))
    return lines


def export(out: Path, chips: int, seed: int, val_fraction: float = 0.1) -> dict[str, Any]:
    """Write ``chips`` random training chips as a YOLO-OBB dataset with ``data.yaml``."""
    import cv2

    from railwatch.train.verifier import _chip

    rng = np.random.default_rng(seed)
    n_val = max(1, round(chips * val_fraction))
    counts = dict.fromkeys(NAMES, 0)
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(chips):
        split = "val" if i < n_val else "train"
        image, objs = _chip(rng)
        h, w = image.shape[:2]
        lines = chip_labels(objs, w, h)
        for ln in lines:
            counts[NAMES[int(ln.split()[0])]] += 1
        cv2.imwrite(str(out / "images" / split / f"chip_{i:05d}.png"), image[..., ::-1])
        (out / "labels" / split / f"chip_{i:05d}.txt").write_text(
            "\n".join(lines) + ("\n" if lines else ""))
    names = "\n".join(f"  {k}: {n}" for k, n in enumerate(NAMES))
    (out / "data.yaml").write_text(f"path: {out.resolve()}\ntrain: images/train\n"
                                   f"val: images/val\nnames:\n{names}\n")
    info = {"chips": chips, "val": n_val, "seed": seed, "objects": counts,
            "source": "railwatch.train.verifier._chip (native 0.5 m)",
            "seconds": round(time.perf_counter() - t0, 1)}
    (out / "export.json").write_text(json.dumps(info, indent=1))
    return info


# -- train -------------------------------------------------------------------------------
def train(data: Path, minutes: float, out: Path, imgsz: int = 320, batch: int = 16,
          workers: int = 1, seed: int = 0, model_yaml: str = "yolo11n-obb.yaml",
          ) -> dict[str, Any]:
    """Train ``model_yaml`` from scratch on the CPU for ``minutes``; copy best.pt to ``out``.

    Ultralytics' time mode re-plans the number of epochs after the first one so that
    training (validation included) ends within the budget."""
    model = _yolo(model_yaml)
    t0 = time.perf_counter()
    model.train(data=str(data / "data.yaml"), epochs=1000, time=minutes / 60, imgsz=imgsz,
                batch=batch, workers=workers, device="cpu", pretrained=False, amp=False,
                plots=False, seed=seed, deterministic=True, project=str(out.resolve()),
                name="run", exist_ok=True, patience=1000, verbose=False,
                # the only changes from the defaults: vertical flips (overhead imagery), and
                # warm-up / mosaic-off epochs scaled to a schedule of only a few epochs
                flipud=0.5, warmup_epochs=1, close_mosaic=2)
    sec = time.perf_counter() - t0
    run = out / "run"
    best = run / "weights" / "best.pt"
    if not best.exists():
        best = run / "weights" / "last.pt"
    shutil.copyfile(best, out / "best.pt")
    info = {"model": model_yaml, "pretrained": False, "minutes_budget": minutes,
            "wall_minutes": round(sec / 60, 1), "imgsz": imgsz, "batch": batch,
            "workers": workers, "seed": seed, "data": str(data),
            "changed_defaults": {"flipud": 0.5, "warmup_epochs": 1, "close_mosaic": 2},
            "weights": str(out / "best.pt")}
    results = run / "results.csv"
    if results.exists():
        rows = results.read_text().strip().splitlines()
        info["epochs"] = len(rows) - 1
        info["last_epoch"] = dict(zip([c.strip() for c in rows[0].split(",")],
                                      [c.strip() for c in rows[-1].split(",")], strict=False))
    (out / "peer.json").write_text(json.dumps({"train": info}, indent=1))
    return info


# -- predict -----------------------------------------------------------------------------
def obb_to_boxes(xywhr: np.ndarray, cls: np.ndarray, conf: np.ndarray) -> Any:
    """railwatch ``Boxes`` from YOLO-OBB output (``cx, cy, w, h, rotation``; class ids
    0-6 railcar classes, 7 container): length is the longer side, angle its direction."""
    from railwatch.detect.decode import Boxes

    xywhr = np.asarray(xywhr, float).reshape(-1, 5)
    cls = np.asarray(cls).astype(int).reshape(-1)
    conf = np.asarray(conf, float).reshape(-1)
    cx, cy, bw, bh, rot = xywhr.T
    long_w = bw >= bh
    length, width = np.where(long_w, bw, bh), np.where(long_w, bh, bw)
    angle = np.where(long_w, rot, rot + np.pi / 2)
    angle = (angle + np.pi / 2) % np.pi - np.pi / 2
    container = cls == 7
    n = len(cx)
    return Boxes(cx, cy, length, width, angle, container.astype(int),
                 np.where(container, -1, cls), conf, np.zeros(n), conf,
                 np.zeros((n, 3), np.uint8), np.full(n, np.nan))


class PeerDetector:
    """YOLO-OBB behind the interface railwatch's tiled pipeline asks of its Detector."""

    native_gsd_m = 0.5
    nms_iou = 0.3
    railcar_nms = None
    verifier_note = None
    refiner_note = None
    slots_note = None
    classifier_note = None

    def __init__(self, weights: str | os.PathLike[str], conf: float | None = None,
                 imgsz: int = 1024, threads: int | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.path = Path(weights)
        meta_path = self.path.with_name("peer.json")
        self.meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        self.conf = float(conf if conf is not None else self.meta.get("conf", 0.25))
        self.imgsz = imgsz
        self.model = _yolo(self.path)

    @property
    def version(self) -> str:
        import ultralytics

        return f"ultralytics {ultralytics.__version__}"

    def boxes(self, tile: np.ndarray,
              region: tuple[float, float, float, float] | None = None) -> Any:
        """Oriented boxes (railwatch ``Boxes``) of one RGB native-GSD tile, tile pixels;
        centres inside ``region`` (x0, y0, x1, y1) when given, as for our Detector."""
        from railwatch.detect.decode import rotated_nms
        from railwatch.detect.model import footprint_colors

        h, w = tile.shape[:2]
        size = max(32, min(self.imgsz, math.ceil(max(h, w) / 32) * 32))
        r = self.model.predict(np.ascontiguousarray(tile[..., 2::-1]), imgsz=size,
                               conf=self.conf, iou=0.5, max_det=3000, device="cpu",
                               verbose=False)[0]
        b = obb_to_boxes(r.obb.xywhr.cpu().numpy(), r.obb.cls.cpu().numpy(),
                         r.obb.conf.cpu().numpy())
        x0, y0, x1, y1 = region if region is not None else (0, 0, w, h)
        b = rotated_nms(b.within(max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)), self.nms_iou)
        b.color = footprint_colors(tile, b.corners())
        return b


def predict(weights: Path, images: list[Path], out_dir: Path, conf: float | None = None,
            imgsz: int = 1024, threads: int | None = None) -> dict[str, Any]:
    """Detect every image with the peer (warm-up on the first, untimed); write GeoJSON."""
    import rasterio

    from railwatch.detect.pipeline import detect
    from railwatch.geojson import write_geojson

    det = PeerDetector(weights, conf, imgsz, threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    if images:
        detect(images[0], det)  # warm-up, as the benchmark does for ours
    mp = 0.0
    t0 = time.perf_counter()
    for p in images:
        with rasterio.open(p) as ds:
            mp += ds.width * ds.height / 1e6
        d = detect(p, det)
        d.meta.update(model=f"{PEER_NAME}: {weights}", conf=det.conf)
        write_geojson(d, out_dir / f"{p.stem}.geojson")
    sec = time.perf_counter() - t0
    return {"method": PEER_NAME, "megapixels": round(mp, 2), "seconds": round(sec, 2),
            "mp_per_s": round(mp / sec, 2) if sec > 0 else None, "conf": det.conf,
            "images": len(images)}


def calibrate(weights: Path, per_gsd: int = 2, size_m: float = 300.0) -> dict[str, Any]:
    """Choose the confidence threshold on railwatch's validation scenes (seeds 600000+),
    exactly as ``railwatch.train.calibrate`` does for our detector; store it in peer.json."""
    from railwatch.evaluate import evaluate_pair, summarise
    from railwatch.train.calibrate import THRESHOLDS, _objective, validation_pairs

    det = PeerDetector(weights, conf=min(0.05, *THRESHOLDS))
    pairs = validation_pairs(det, per_gsd, size_m)  # type: ignore[arg-type]
    table = {}
    for t in (0.05, 0.1, *THRESHOLDS):
        s = summarise([evaluate_pair(truth, pred[pred.score >= t]) for truth, pred in pairs])
        table[float(t)] = {"f1": s["f1"], "container_f1": s["container_f1"],
                           "count_error": s["count_error"]}
    best = max(table, key=lambda t: _objective(table[t]))
    meta_path = weights.with_name("peer.json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta.update(conf=best, conf_sweep={str(k): v for k, v in table.items()})
    meta_path.write_text(json.dumps(meta, indent=1))
    return {"best": best, "table": table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="YOLO-OBB dataset of railwatch training chips")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--chips", type=int, default=3000)
    e.add_argument("--seed", type=int, default=11)
    e.add_argument("--val-fraction", type=float, default=0.1)
    t = sub.add_parser("train", help="yolo11n-obb from scratch on the CPU, time-budgeted")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--minutes", type=float, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--imgsz", type=int, default=320)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--workers", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("calibrate", help="confidence threshold on validation scenes")
    c.add_argument("--weights", type=Path, required=True)
    c.add_argument("--per-gsd", type=int, default=2)
    p = sub.add_parser("predict", help="sliced inference on GeoTIFFs -> detections GeoJSON")
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--images", type=Path, nargs="+", required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--conf", type=float, default=None,
                   help="confidence threshold (default: peer.json's calibrated one, or 0.25)")
    p.add_argument("--imgsz", type=int, default=1024)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--timing", type=Path, default=None, help="write the timing JSON here")
    args = ap.parse_args()
    if args.cmd == "export":
        res = export(args.out, args.chips, args.seed, args.val_fraction)
    elif args.cmd == "train":
        res = train(args.data, args.minutes, args.out, args.imgsz, args.batch, args.workers,
                    args.seed)
    elif args.cmd == "calibrate":
        res = calibrate(args.weights, args.per_gsd)
    else:
        res = predict(args.weights, args.images, args.out_dir, args.conf, args.imgsz,
                      args.threads)
        if args.timing is not None:
            args.timing.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
