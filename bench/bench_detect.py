"""Detector benchmark: accuracy per GSD and condition, MP/s end to end, peak memory on a
30,000 x 30,000 image, and a classical OpenCV baseline side by side on the same test set.

With a verifier in the model folder, the detector alone is scored on the same images
too (its own row), so the second stage's gain is measured in the same run.

Usage: .venv/bin/python bench/bench_detect.py [--per-gsd 8] [--size-m 400] [--out DIR]
       [--skip-big] [--write-metrics] [--scenario-dir DIR] [--robustness]
       [--peer-python /tmp/peer-venv/bin/python --peer-weights RUN/best.pt]

With ``--robustness`` the test set is also scored re-sensed eight ways (blur, noise,
JPEG, gamma both ways, a colour cast, low contrast, grey/pan): how much of the accuracy
survives sensors and processing our renderers do not draw.

With ``--peer-python`` and ``--peer-weights`` the peer baseline (YOLO11n-OBB, sliced;
``bench/peer_yolo.py``, run by that interpreter in its own venv) detects the same images
in the same run and is scored with the same ``evaluate()``.

The test set is freshly rendered (seeds 700000+, never used in training) by two
renderers: our training renderer and the project simulator (different code); 8 scenes
per GSD and renderer (48) by default. The main rows carry 95 % bootstrap intervals over
the scenes (``evaluate(bootstrap=)``): one scene's look can move a 24-scene number by
0.02. Results print as JSON and Markdown; ``--write-metrics`` also writes the shipped
``detect/model/metrics.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin

from railwatch.analytics.trackmap import fit_tracks, track_fit
from railwatch.detect import Detector, detect, detect_each, model_dir
from railwatch.evaluate import CI_METRICS, error_lines, evaluate, interval_text
from railwatch.geojson import from_geojson, write_geojson
from railwatch.imagery import read_scene_metadata, read_window
from railwatch.sites import get_site
from railwatch.train.testsets import write_own_scene, write_sim_scene
from railwatch.types import Detections

GSDS = (0.3, 0.5, 0.8)
#: Bootstrap resamples of the scenes for the 95 % intervals of the main rows.
BOOTSTRAP = 2000


# -- test set --------------------------------------------------------------------------
def make_test_set(out: Path, per_gsd: int, size_m: float) -> list[dict[str, Any]]:
    """``per_gsd`` scenes per GSD and renderer, each ``size_m`` metres square."""
    entries = []
    for gi, gsd in enumerate(GSDS):
        px = round(size_m / gsd)
        for k in range(per_gsd):
            seed = 700000 + 100 * gi + k
            entries.append(write_own_scene(out, f"own_{gsd:g}_{k}", seed, px, gsd))
            entries.append(write_sim_scene(out, f"sim_{gsd:g}_{k}", seed, px, gsd))
    (out / "manifest.json").write_text(json.dumps({"images": entries}, indent=1))
    return entries


# -- classical baseline ----------------------------------------------------------------
def classical_detect(path: str | os.PathLike[str]) -> Detections:
    """A practitioner's OpenCV pipeline: background subtraction (large median), colour
    distance threshold, morphology, connected components, minimum-area rectangles,
    railcar/container by width; long blobs are cut at dips of their along-track occupancy
    profile (coupling gaps), then by a nominal 15.5 m pitch."""
    scene = read_scene_metadata(path, check=False)
    gsd = scene.gsd_m
    with rasterio.open(path) as ds:
        transform, crs, w, h = ds.transform, ds.crs, ds.width, ds.height
    img = np.transpose(read_window(path, rasterio.windows.Window(0, 0, w, h), rgb=True),
                       (1, 2, 0)).astype(np.float32)
    k = round(12 / gsd) | 1  # ~12 m background kernel
    small = cv2.resize(img, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    bg = cv2.resize(cv2.medianBlur(small.astype(np.uint8), max(3, (k // 4) | 1)),
                    (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    dist = np.linalg.norm(img - bg, axis=2)
    mask = (dist > 28).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    fps, kinds, lengths = [], [], []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] * gsd * gsd < 10:
            continue
        ys, xs = np.nonzero(lab[stats[i, 1]:stats[i, 1] + stats[i, 3],
                                stats[i, 0]:stats[i, 0] + stats[i, 2]] == i)
        pts = np.column_stack([xs + stats[i, 0], ys + stats[i, 1]]).astype(np.float32)
        (cx, cy), (a, b), ang = cv2.minAreaRect(pts)
        length, width = max(a, b) * gsd, min(a, b) * gsd
        theta = math.radians(ang if a >= b else ang + 90)
        fill = len(pts) / max(a * b, 1.0)  # rectangularity: cars and containers are boxes
        if not 1.8 <= width <= 4.2 or length < 5 or fill < 0.7:
            continue
        u = np.array([math.cos(theta), math.sin(theta)])
        v = np.array([-u[1], u[0]])
        if width < 2.75 and length < 13.5:
            kind, segs = "container", [(-length / 2, length / 2)]
        else:
            kind, segs = "railcar", _split_at_gaps(pts, (cx, cy), u, gsd, length)
        for a0, a1 in segs:
            seg = a1 - a0
            c = np.array([cx, cy]) + 0.5 + u * ((a0 + a1) / 2) / gsd
            hl, hw = u * (seg / 2 / gsd), v * (width / 2 / gsd)
            fps.append([c - hl - hw, c + hl - hw, c + hl + hw, c - hl + hw])
            kinds.append(kind)
            lengths.append(seg)
    nn = len(fps)
    fp = np.asarray(fps, float).reshape(nn, 4, 2)
    flat = fp.reshape(-1, 2)
    a_, b_, c_, d_, e_, f_ = tuple(transform)[:6]
    xs = a_ * flat[:, 0] + b_ * flat[:, 1] + c_
    ys = d_ * flat[:, 0] + e_ * flat[:, 1] + f_
    return Detections(footprints=np.stack([xs, ys], -1).reshape(nn, 4, 2), kind=kinds,
                      cls=["boxcar" if k == "railcar" else "" for k in kinds],
                      score=np.full(nn, 0.5), covered=np.zeros(nn, bool),
                      color=np.zeros((nn, 3)), length_m=lengths, crs=crs.to_wkt())


def _split_at_gaps(pts: np.ndarray, centre: tuple[float, float], u: np.ndarray, gsd: float,
                   length: float, pitch: float = 15.5) -> list[tuple[float, float]]:
    """Cut a train blob where its along-track occupancy profile dips (coupling gaps);
    pieces still longer than 1.6 cars are split evenly by a nominal pitch (metres)."""
    along = ((pts - np.asarray(centre)) @ u) * gsd
    lo = -length / 2
    bins = np.arange(lo, length / 2 + gsd, gsd)
    prof, _ = np.histogram(along, bins)
    prof = np.convolve(prof, np.ones(2) / 2, mode="same")
    med = np.median(prof[prof > 0]) if (prof > 0).any() else 0
    cuts = [lo]
    for i in range(1, len(prof) - 1):
        x = bins[i] + gsd / 2
        if (prof[i] < 0.45 * med and prof[i] <= prof[i - 1] and prof[i] <= prof[i + 1]
                and x - cuts[-1] > 8):
            cuts.append(x)
    if length / 2 - cuts[-1] < 6 and len(cuts) > 1:
        cuts.pop()
    cuts.append(length / 2)
    out = []
    for a0, a1 in itertools.pairwise(cuts):
        n = max(1, round((a1 - a0) / pitch)) if a1 - a0 > 1.6 * pitch else 1
        step = (a1 - a0) / n
        out += [(a0 + k * step, a0 + (k + 1) * step) for k in range(n)]
    return out


# -- runs --------------------------------------------------------------------------------
def run_method(name: str, fn: Any, images: list[Path], out: Path) -> dict[str, Any]:
    """Detect every image with ``fn(path) -> Detections``, writing GeoJSON; time it."""
    out.mkdir(parents=True, exist_ok=True)
    mp = 0.0
    t0 = time.perf_counter()
    for p in images:
        with rasterio.open(p) as ds:
            mp += ds.width * ds.height / 1e6
        write_geojson(fn(p), out / f"{p.stem}.geojson")
    sec = time.perf_counter() - t0
    return {"method": name, "megapixels": round(mp, 2), "seconds": round(sec, 2),
            "mp_per_s": round(mp / sec, 2)}


def run_batch(name: str, images: list[Path], out: Path, workers: int,
              verify: bool | None = None) -> dict[str, Any]:
    """As ``run_method`` for the shipped model, ``workers`` images at once (`detect_each`,
    one ONNX thread per stream): how ``railwatch detect --out-dir`` and ``analyze`` run."""
    out.mkdir(parents=True, exist_ok=True)
    mp = sum(read_scene_metadata(p).width * read_scene_metadata(p).height for p in images) / 1e6
    det = Detector(threads=1, verify=verify)
    detect(images[0], det)  # warm-up
    t0 = time.perf_counter()
    for p, d in detect_each(images, det, workers):
        write_geojson(d, out / f"{p.stem}.geojson")
    sec = time.perf_counter() - t0
    return {"method": name, "megapixels": round(mp, 2), "seconds": round(sec, 2),
            "mp_per_s": round(mp / sec, 2)}


PEER_NAME = "YOLO11n-OBB peer (sliced)"
#: images detected at once in the batch rows (this machine's cores)
BATCH_WORKERS = 2


def run_peer(python: Path, weights: Path, images: list[Path], out: Path) -> dict[str, Any]:
    """Detect ``images`` with the peer baseline in its own interpreter (bench/peer_yolo.py
    predict): GeoJSON into ``out``; MP/s as timed inside it after a warm-up image, as ours
    is, plus the whole subprocess's wall time (start-up and model load included)."""
    out.mkdir(parents=True, exist_ok=True)
    timing = out / "timing.json"
    cmd = [str(python), str(Path(__file__).with_name("peer_yolo.py")), "predict",
           "--weights", str(weights), "--out-dir", str(out), "--timing", str(timing),
           "--images", *map(str, images)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"peer failed ({r.returncode}): {r.stderr[-2000:]}")
    res = json.loads(timing.read_text())
    res["subprocess_seconds"] = round(time.perf_counter() - t0, 2)
    return res


def big_image(path: Path, side: int = 30000) -> Path:
    """A sparse, compressed side x side GeoTIFF: nodata except a few rendered patches."""
    from railwatch.train.synth import generate_chip

    profile = dict(driver="GTiff", width=side, height=side, count=3, dtype="uint8",
                   crs="EPSG:32652", transform=from_origin(500000, 4700000, 0.5, 0.5),
                   tiled=True, blockxsize=512, blockysize=512, compress="deflate",
                   sparse_ok=True, BIGTIFF="YES")
    rng = np.random.default_rng(4242)
    with rasterio.open(path, "w", **profile) as ds:
        for k in range(6):
            image, _ = generate_chip(rng, 2048, 0.5)
            r, c = (k // 3) * 12000 + 3000, (k % 3) * 9000 + 2000
            ds.write(np.transpose(image, (2, 0, 1)),
                     window=rasterio.windows.Window(c, r, 2048, 2048))
    return path


def peak_memory(path: Path, out: Path, workers: int = BATCH_WORKERS) -> dict[str, Any]:
    """Peak RSS of a child process detecting ``path`` as ``railwatch detect`` does
    (``workers`` tiles at once, one ONNX thread each)."""
    code = ("import sys, time\n"
            "from railwatch.detect import Detector, detect\n"
            "from railwatch.geojson import write_geojson\n"
            f"det = Detector(threads=1 if {workers} > 1 else None)\n"
            "t = time.perf_counter()\n"
            f"d = detect(sys.argv[1], det, workers={workers})\n"
            "write_geojson(d, sys.argv[2])\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
            "print(len(d), time.perf_counter() - t, hwm.split()[1])\n")
    r = subprocess.run([sys.executable, "-c", code, str(path), str(out)], check=True,
                       capture_output=True, text=True)
    n, sec, rss_kb = r.stdout.split()
    return {"pixels": "30000 x 30000 (sparse: 6 rendered 2048 px patches)", "workers": workers,
            "detections": int(n), "seconds": round(float(sec), 1),
            "peak_rss_mb": round(int(rss_kb) / 1024, 1)}


def _row(m: dict[str, Any]) -> str:
    """A table row's metrics; with a bootstrap interval (``ci``) F1 and the target metrics
    show it, ``0.902 (0.87-0.93)``."""
    def f(k: str) -> str:
        v = m.get(k)
        text = "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
        ci = interval_text(m, k)
        if ci and k in ("f1", "class_accuracy", "covered_accuracy", "container_f1"):
            text += f" ({ci})"
        return text

    return " | ".join(f(k) for k in CI_METRICS)


def _slice_rows(slices: dict[str, Any], prefix: str = "") -> list[str]:
    return [f"| {prefix}{dim} = {label} | {m['images']} | {_row(m)} |"
            for dim, by in slices.items() for label, m in by.items()]


def markdown(res: dict[str, Any]) -> str:
    """The benchmarks.md section body."""
    lines = ["| set | images | precision | recall | F1 | count error | class acc. | "
             "covered acc. | container F1 |", "|---|---|---|---|---|---|---|---|---|"]
    ours = res["ours"]
    name = "RailDet + verifier" if res.get("verifier") else "RailDet"
    lines.append(f"| all ({name}) | {ours['overall']['images']} | {_row(ours['overall'])} |")
    if "one_stage" in res:
        lines.append(f"| all (RailDet alone, no verifier) | {res['one_stage']['images']} | "
                     f"{_row(res['one_stage'])} |")
    lines += _slice_rows(ours["slices"])
    if "ours_tracks" in res:
        lines.append(f"| all, railcars on each scene's track map | "
                     f"{res['ours_tracks']['images']} | {_row(res['ours_tracks'])} |")
        for renderer, label in (("sim", "simulator"), ("own", "own-renderer")):
            lines.append(f"| {label} scenes only | {res[f'ours_{renderer}']['images']} | "
                         f"{_row(res[f'ours_{renderer}'])} |")
    lines.append(f"| all (OpenCV baseline) | {res['baseline']['overall']['images']} | "
                 f"{_row(res['baseline']['overall'])} |")
    for pname, m in res.get("robustness", {}).items():
        lines.append(f"| all, re-sensed: {pname} | {m['images']} | {_row(m)} |")
    if "peer" in res:
        lines.append(f"| all ({PEER_NAME}) | {res['peer']['images']} | {_row(res['peer'])} |")
    if "scenario" in res:
        sc = res["scenario"]
        lines.append(f"| tumangang-khasan scenario images ({name}) | {sc['overall']['images']}"
                     f" | {_row(sc['overall'])} |")
        if "track_map" in sc:
            lines.append(f"| scenario images ({name}), railcars on the site's track map | "
                         f"{sc['track_map']['images']} | {_row(sc['track_map'])} |")
        if "one_stage" in sc:
            lines.append(f"| scenario images (RailDet alone) | {sc['one_stage']['images']}"
                         f" | {_row(sc['one_stage'])} |")
        lines += _slice_rows(sc["slices"], "scenario, ")
        if "peer" in sc:
            lines.append(f"| scenario images ({PEER_NAME}) | {sc['peer']['images']} | "
                         f"{_row(sc['peer'])} |")
    false, missed = error_lines(ours["overall"]["errors"])  # why railcars were wrong
    lines += ["", f"Why railcars were wrong (all, {name}): {false}; {missed}."]
    if "speed_peer" in res:  # speed side by side (only with the peer)
        lines += ["", "| method | megapixels | seconds | MP/s |", "|---|---:|---:|---:|"]
        sc = res.get("scenario", {})
        speeds = [res["speed_ours"], res.get("speed_batch"), res.get("speed_one_stage"),
                   res["speed_baseline"], res["speed_peer"], sc.get("speed"),
                   sc.get("speed_batch"), sc.get("speed_peer")]
        lines += [f"| {m['method']}{'' if 'scenario' in m['method'] else ', fresh test set'}"
                  f" | {m['megapixels']} | {m['seconds']} | {m['mp_per_s']} |"
                  for m in speeds if m]
    return "\n".join(lines)


# -- robustness: the test set re-sensed ------------------------------------------------
def _jpeg(a: np.ndarray, quality: int = 40) -> np.ndarray:
    _, buf = cv2.imencode(".jpg", a.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR).astype(np.float64)


#: name -> f(float64 (H, W, 3) 0..255) -> same; the noise draws are seeded per image.
PERTURBATIONS: dict[str, Any] = {
    "blur (Gaussian sigma 1 px)": lambda a, rng: cv2.GaussianBlur(a, (0, 0), 1.0),
    "noise (sigma 8)": lambda a, rng: a + rng.normal(0, 8, a.shape),
    "JPEG quality 40": lambda a, rng: _jpeg(a),
    "darker (gamma 1.5)": lambda a, rng: 255 * (a / 255) ** 1.5,
    "brighter (gamma 0.67)": lambda a, rng: 255 * (a / 255) ** 0.67,
    "colour cast (R x1.2, B x0.8)": lambda a, rng: a * np.array([1.2, 1.0, 0.8]),
    "contrast x0.6": lambda a, rng: a.mean((0, 1)) + (a - a.mean((0, 1))) * 0.6,
    "grey (pan)": lambda a, rng: np.repeat(a @ np.array([[0.299], [0.587], [0.114]]), 3, 2),
}


def robustness(test: Path, detector: Detector, out: Path) -> dict[str, Any]:
    """Overall accuracy on copies of the test set under each of ``PERTURBATIONS``."""
    res = {}
    for k, (name, fn) in enumerate(PERTURBATIONS.items()):
        d = out / f"r{k}"
        (d / "pred").mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(sorted(test.glob("*.tif"))):
            with rasterio.open(t) as ds:
                profile, a = ds.profile, ds.read().transpose(1, 2, 0).astype(np.float64)
            b = np.clip(fn(a, np.random.default_rng(i)), 0, 255).astype(np.uint8)
            with rasterio.open(d / t.name, "w", **profile) as dst:
                dst.write(b.transpose(2, 0, 1))
            (d / f"{t.stem}.truth.geojson").write_text(
                (test / f"{t.stem}.truth.geojson").read_text())
            write_geojson(detect(d / t.name, detector), d / "pred" / f"{t.stem}.geojson")
        res[name] = evaluate(d, d / "pred")["overall"]
    return res


def scenario_images(folder: Path) -> list[Path]:
    """Scenario GeoTIFFs with truth beside them, 0.25-1.0 m GSD (PlanetScope left out)."""
    images = [p for p in sorted(folder.rglob("*.tif"))
              if (p.parent / f"{p.stem}.truth.geojson").exists()]
    return [p for p in images if 0.25 <= read_scene_metadata(p).gsd_m <= 1.0]


def on_site_tracks(pred: Path, out: Path) -> Path:
    """The predictions as the site's count sees them: railcars off the site's track map
    set aside (`railwatch.analytics.trackmap`); the site is the file name's prefix."""
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted(pred.glob("*.geojson")):
        det = from_geojson(p)
        fit = track_fit(det, get_site(p.name.split("_", 1)[0]))
        write_geojson(det if fit is None else det[fit.on_track], out / p.name)
    return out


def on_scene_tracks(test: Path, pred: Path, out: Path) -> Path:
    """Predictions of the scenes that have a track map (``<stem>.tracks.geojson``),
    railcars off it set aside as `observe` does on a mapped site (all of them in a scene
    without a track)."""
    from pyproj import Transformer
    from shapely.geometry import MultiLineString, shape

    out.mkdir(parents=True, exist_ok=True)
    to_utm = Transformer.from_crs(4326, "EPSG:32652", always_xy=True).transform
    for tracks in sorted(test.glob("*.tracks.geojson")):
        stem = tracks.name.removesuffix(".tracks.geojson")
        lines = [shapely.transform(shape(f["geometry"]), to_utm, interleaved=False)
                 for f in json.loads(tracks.read_text())["features"]]
        det = from_geojson(pred / f"{stem}.geojson").to_crs("EPSG:32652")
        if not lines:
            det = det[det.kind != "railcar"]
        elif len(det):
            det = det[fit_tracks(det, MultiLineString(lines)).on_track]
        write_geojson(det, out / f"{stem}.geojson")
    return out


def score_scenario(folder: Path, detector: Detector, out: Path,
                   one_stage: Detector | None = None) -> dict[str, Any]:
    """Accuracy on full scenario images (0.3-0.8 m) with their truth files."""
    images = scenario_images(folder)
    truth = out / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    for p in images:
        (truth / f"{p.stem}.truth.geojson").write_text(
            (p.parent / f"{p.stem}.truth.geojson").read_text())
    speed = run_method("RailDet (ONNX), scenario", lambda p: detect(p, detector), images,
                       out / "pred")
    ev = evaluate(truth, out / "pred", bootstrap=BOOTSTRAP)
    ev.pop("per_image", None)
    res = {"speed": speed, "overall": ev["overall"], "slices": ev["slices"]}
    res["speed_batch"] = run_batch(
        f"RailDet (ONNX), scenario, {BATCH_WORKERS} images at once", images,
        out / "pred_batch", BATCH_WORKERS)
    res["track_map"] = evaluate(truth, on_site_tracks(out / "pred", out / "pred_tracks"))[
        "overall"]
    if one_stage is not None:
        run_method("RailDet alone", lambda p: detect(p, one_stage), images, out / "pred1")
        res["one_stage"] = evaluate(truth, out / "pred1")["overall"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-gsd", type=int, default=8)
    ap.add_argument("--size-m", type=float, default=400.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--write-metrics", action="store_true")
    ap.add_argument("--scenario-dir", type=Path, default=None,
                    help="also score images rendered by `railwatch simulate tumangang-khasan`"
                         " (GeoTIFFs with *.truth.geojson beside them)")
    ap.add_argument("--robustness", action="store_true",
                    help="also score the test set re-sensed eight ways (PERTURBATIONS)")
    ap.add_argument("--peer-python", type=Path, default=None,
                    help="interpreter of the peer's venv (torchvision + ultralytics + "
                         "railwatch): run bench/peer_yolo.py on the same images")
    ap.add_argument("--peer-weights", type=Path, default=None,
                    help="the peer's trained weights (bench/peer_yolo.py train)")
    args = ap.parse_args()
    if (args.peer_python is None) != (args.peer_weights is None):
        ap.error("--peer-python and --peer-weights go together")
    root = args.out or Path(tempfile.mkdtemp(prefix="bench_detect_"))
    test = root / "test"
    make_test_set(test, args.per_gsd, args.size_m)
    images = sorted(test.glob("*.tif"))
    detector = Detector()
    one_stage = Detector(verify=False) if detector.verifier is not None else None
    res: dict[str, Any] = {"machine": os.uname().machine, "cpus": os.cpu_count(),
                           "date": time.strftime("%Y-%m-%d"), "images": len(images),
                           "verifier": detector.verifier is not None}
    detect(images[0], detector)  # warm-up
    res["speed_ours"] = run_method("RailDet (ONNX)", lambda p: detect(p, detector), images,
                                   root / "pred")
    res["speed_batch"] = run_batch(f"RailDet (ONNX), {BATCH_WORKERS} images at once", images,
                                   root / "pred_batch", BATCH_WORKERS)
    res["speed_baseline"] = run_method("OpenCV classical", classical_detect, images,
                                       root / "base")
    if one_stage is not None:  # the same model without its second stage, same images
        res["speed_one_stage"] = run_method("RailDet alone", lambda p: detect(p, one_stage),
                                            images, root / "pred1")
        res["one_stage"] = evaluate(test, root / "pred1")["overall"]
    if args.peer_python is not None:  # the peer baseline, same images, same evaluate()
        res["speed_peer"] = run_peer(args.peer_python, args.peer_weights, images,
                                     root / "peer")
        peer = evaluate(test, root / "peer")
        res["peer"], res["peer_by_gsd"] = peer["overall"], peer["by_gsd"]
    res["ours"] = evaluate(test, root / "pred", bootstrap=BOOTSTRAP)
    res["baseline"] = evaluate(test, root / "base")
    for key in ("ours", "baseline"):
        res[key].pop("per_image", None)
    # per renderer
    for renderer in ("own", "sim"):
        sub = root / f"test_{renderer}"
        sub.mkdir(exist_ok=True)
        for t in test.glob(f"{renderer}_*.truth.geojson"):
            (sub / t.name).write_text(t.read_text())
        res[f"ours_{renderer}"] = evaluate(sub, root / "pred")["overall"]
        if "peer" in res:
            res[f"peer_{renderer}"] = evaluate(sub, root / "peer")["overall"]
    # every scene carries its track map: railcars as a mapped site counts them
    ev_t = evaluate(test, on_scene_tracks(test, root / "pred", root / "pred_tracks"),
                    bootstrap=BOOTSTRAP)
    res["ours_tracks"], res["ours_tracks_by_gsd"] = ev_t["overall"], ev_t["by_gsd"]
    if args.robustness:
        res["robustness"] = robustness(test, detector, root / "robustness")
    if args.scenario_dir is not None:
        res["scenario"] = score_scenario(args.scenario_dir, detector, root / "scenario",
                                         one_stage)
        if args.peer_python is not None:
            sc, sc_dir = res["scenario"], root / "scenario"
            sc["speed_peer"] = run_peer(args.peer_python, args.peer_weights,
                                        scenario_images(args.scenario_dir), sc_dir / "peer")
            sc["speed_peer"]["method"] = f"{PEER_NAME}, scenario"
            sc["peer"] = evaluate(sc_dir / "truth", sc_dir / "peer")["overall"]
    if not args.skip_big:
        big = big_image(root / "big.tif")
        res["big"] = peak_memory(big, root / "big.geojson")
        big.unlink()
    res["rusage_self_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({k: v for k, v in res.items() if k not in ("ours", "baseline")} |
                     {"ours_overall": res["ours"]["overall"],
                      "baseline_overall": res["baseline"]["overall"]}, indent=1))
    print(markdown(res))
    (root / "bench_detect.json").write_text(json.dumps(res, indent=1))
    if args.write_metrics:
        write_metrics(res["ours"], model_dir() / "metrics.json", res)
    print(f"results in {root}", file=sys.stderr)


def write_metrics(ev: dict[str, Any], path: Path, res: dict[str, Any]) -> None:
    """The shipped metrics.json: measured per-GSD and overall accuracy of this model."""
    keys = CI_METRICS
    metrics = {
        "by_gsd": {g: {k: ev["by_gsd"].get(g, {}).get(k) for k in (*keys, "images", "ci")}
                   for g in ("0.3", "0.5", "0.8")},
        "overall": {k: ev["overall"].get(k)
                    for k in (*keys, "ci", "class_reliability", "length_error")},
        "slices": {dim: {lab: {k: m[k] for k in ("images", "f1", "count_error")}
                         for lab, m in by.items()}
                   for dim, by in ev["slices"].items() if dim != "gsd"},
        "with_track_map": {
            "by_gsd": {g: {k: res["ours_tracks_by_gsd"].get(g, {}).get(k)
                           for k in (*keys, "images")} for g in ("0.3", "0.5", "0.8")},
            "overall": {k: res["ours_tracks"][k] for k in keys},
            "test_set": "the same scenes, railcars off each scene's track map set aside "
                        "(railwatch.analytics.trackmap)"},
        "test_set": f"{res['images']} fresh scenes (seeds 700000+), half from "
                    "railwatch.train.synth, half from railwatch.simulate; "
                    "bench/bench_detect.py",
        "date": res["date"],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
