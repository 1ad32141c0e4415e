"""Detection accuracy: match predictions to truth one-to-one and report what the numbers say.

``evaluate(truth_dir, pred_dir)`` pairs ``X.truth.geojson`` with ``X.geojson`` (or
``X.pred.geojson``), matches footprint centres within ``max_dist_m`` (4 m) one-to-one per
kind with the Hungarian method in a local UTM CRS, and reports precision / recall / F1
per kind, count error, the class confusion matrix, class and covered accuracy, and the
same sliced by GSD, season/snow, haze, partial cloud and train density (per-image
conditions from the simulator's ``manifest.json`` when present). Truth marked
``occluded: true`` is neither required nor penalised: a prediction on it is dropped.

With ``bootstrap=N`` every summary also carries ``ci``: 95 % intervals of its headline
metrics from N resamples of the images (the image, not the object, is the unit: objects
of one scene share its look and fail together), so a test set of a few dozen scenes says
how far its numbers can be trusted.

Every summary also says *why* railcars were wrong (``errors``): a false railcar whose
centre lies on a true car (a second box or a piece of a long car, more than 4 m from its
centre), beside one (a shadow, the empty track next to a car), on a ground container, or
elsewhere; a missed railcar with a box on it that was too far off centre, one taken for a
container, or with no box at all. Each cause points at a different fix.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from scipy.optimize import linear_sum_assignment

from railwatch.errors import InputError
from railwatch.geojson import from_geojson
from railwatch.types import KINDS, RAILCAR_CLASSES, Detections

MAX_DIST_M = 4.0
#: A false railcar this close (metres) to a true car's footprint lies *beside* it.
BESIDE_M = 6.0
#: Causes of false railcars and of missed railcars (``ImageResult.errors`` keys).
FALSE_CAUSES = ("on_a_car", "beside_a_car", "on_a_container", "elsewhere")
MISS_CAUSES = ("box_off_centre", "taken_for_container", "no_box")
#: The metrics that get a bootstrap interval.
CI_METRICS = ("precision", "recall", "f1", "count_error", "class_accuracy",
              "covered_accuracy", "container_f1")
#: Bands of predicted ``class_score`` whose class accuracy ``summarise`` reports: whether
#: a detector's class confidence can be taken at its word.
SCORE_BANDS = (0.0, 0.5, 0.7, 0.9, 1.0)


@dataclass
class ImageResult:
    """Matching outcome of one image."""

    name: str
    tp: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    fp: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    fn: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    n_truth: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    n_pred: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    class_pairs: list[tuple[str, str]] = field(default_factory=list)
    #: the predictions' ``class_score`` beside ``class_pairs`` (NaN where they have none)
    class_scores: list[float] = field(default_factory=list)
    covered_pairs: list[tuple[bool, bool]] = field(default_factory=list)
    #: (true class, true length, predicted length) in metres for each matched railcar
    length_pairs: list[tuple[str, float, float]] = field(default_factory=list)
    slices: dict[str, str] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


def local_crs(det: Detections) -> CRS:
    """The UTM CRS of the detections' centre (metres), via pyproj's database."""
    c = det.to_crs(4326).centers
    lon, lat = (float(np.mean(c[:, 0])), float(np.mean(c[:, 1]))) if len(c) else (0.0, 0.0)
    info = query_utm_crs_info(datum_name="WGS 84",
                              area_of_interest=AreaOfInterest(lon, lat, lon, lat))
    return CRS.from_epsg(info[0].code)


def match(truth: Detections, pred: Detections, max_dist_m: float = MAX_DIST_M,
          crs: CRS | None = None) -> list[tuple[int, int]]:
    """One-to-one (truth index, pred index) pairs of the same kind with centres within
    ``max_dist_m`` metres, minimising total distance (Hungarian); distances in ``crs``
    (metres; default: the truth's local UTM CRS)."""
    if len(truth) == 0 or len(pred) == 0:
        return []
    crs = local_crs(truth) if crs is None else crs
    tc = truth.to_crs(crs).centers
    pc = pred.to_crs(crs).centers
    pairs: list[tuple[int, int]] = []
    for kind in KINDS:
        ti = np.nonzero(truth.kind == kind)[0]
        pi = np.nonzero(pred.kind == kind)[0]
        if len(ti) == 0 or len(pi) == 0:
            continue
        d = np.linalg.norm(tc[ti][:, None, :] - pc[pi][None, :, :], axis=-1)
        cost = np.where(d <= max_dist_m, d, 1e6)
        rows, cols = linear_sum_assignment(cost)
        ok = cost[rows, cols] <= max_dist_m
        pairs += [(int(ti[r]), int(pi[c])) for r, c in zip(rows[ok], cols[ok], strict=True)]
    return pairs


def evaluate_pair(truth: Detections, pred: Detections, name: str = "",
                  max_dist_m: float = MAX_DIST_M) -> ImageResult:
    """Match one image's truth and predictions."""
    res = ImageResult(name)
    occluded = np.zeros(len(truth), bool)
    if "occluded" in truth.extra:
        occluded = np.array([bool(v) if v is not None else False
                             for v in truth.extra["occluded"]])
    crs = None
    if len(truth) or len(pred):  # one metric CRS for matching and error causes
        crs = local_crs(truth if len(truth) else pred)
        truth, pred = truth.to_crs(crs), pred.to_crs(crs)
    pairs = match(truth, pred, max_dist_m, crs)
    res.errors = railcar_error_causes(truth, pred, pairs, occluded, crs)
    matched_t = {t for t, _ in pairs}
    matched_p = {p for _, p in pairs}
    dropped_p = {p for t, p in pairs if occluded[t]}
    for kind in KINDS:
        tk = (truth.kind == kind) & ~occluded
        res.n_truth[kind] = int(tk.sum())
        pk = [i for i in np.nonzero(pred.kind == kind)[0] if i not in dropped_p]
        res.n_pred[kind] = len(pk)
        res.tp[kind] = sum(1 for t, p in pairs if truth.kind[t] == kind and not occluded[t])
        res.fp[kind] = sum(1 for i in pk if i not in matched_p)
        res.fn[kind] = sum(1 for i in np.nonzero(tk)[0] if i not in matched_t)
    scores = pred.extra.get("class_score")
    for t, p in pairs:
        if occluded[t] or truth.kind[t] != "railcar":
            continue
        res.class_pairs.append((str(truth.cls[t]), str(pred.cls[p])))
        res.class_scores.append(float(scores[p]) if scores is not None and scores[p] is not None
                                else float("nan"))
        res.covered_pairs.append((bool(truth.covered[t]), bool(pred.covered[p])))
        res.length_pairs.append((str(truth.cls[t]), float(truth.length_m[t]),
                                 float(pred.length_m[p])))
    return res


def railcar_error_causes(truth: Detections, pred: Detections, pairs: list[tuple[int, int]],
                         occluded: np.ndarray, crs: CRS | None = None) -> dict[str, int]:
    """Count false railcars by where they lie (``FALSE_CAUSES``, prefixed ``false_``) and
    missed railcars by what the predictions did there (``MISS_CAUSES``, ``missed_``).

    Footprints are compared in ``crs`` (metres; default: the truth's local UTM CRS);
    predictions on occluded truth are neither false nor counted here.
    """
    out = {f"false_{c}": 0 for c in FALSE_CAUSES} | {f"missed_{c}": 0 for c in MISS_CAUSES}
    if len(truth) == 0 and len(pred) == 0:
        return out
    crs = local_crs(truth if len(truth) else pred) if crs is None else crs
    t_poly = shapely.polygons(truth.to_crs(crs).footprints) if len(truth) else np.array([])
    p_det = pred.to_crs(crs)
    p_poly = shapely.polygons(p_det.footprints) if len(pred) else np.array([])
    p_ctr = shapely.points(p_det.centers) if len(pred) else np.array([])
    matched_t = {t for t, _ in pairs}
    matched_p = {p for _, p in pairs}
    on_occluded = {p for t, p in pairs if occluded[t]}
    cars = np.nonzero(truth.kind == "railcar")[0]
    boxes = np.nonzero(truth.kind == "container")[0]

    def near(point: Any, idx: np.ndarray, dist: float) -> bool:
        return bool(len(idx)) and bool(np.any(shapely.dwithin(t_poly[idx], point, dist)))

    for p in np.nonzero(pred.kind == "railcar")[0]:
        if p in matched_p or p in on_occluded:
            continue
        c = p_ctr[p]
        cause = ("on_a_car" if near(c, cars, 0.5) else "on_a_container" if near(c, boxes, 0.5)
                 else "beside_a_car" if near(c, cars, BESIDE_M) else "elsewhere")
        out[f"false_{cause}"] += 1
    for t in cars:
        if t in matched_t or occluded[t]:
            continue
        on = (np.nonzero(shapely.contains(t_poly[t], p_ctr))[0] if len(pred)
              else np.zeros(0, int))
        if np.any(pred.kind[on] == "railcar"):
            cause = "box_off_centre"
        elif len(pred) and np.any(shapely.intersects(t_poly[t],
                                                     p_poly[pred.kind == "container"])):
            cause = "taken_for_container"
        else:
            cause = "no_box"
        out[f"missed_{cause}"] += 1
    return out


def error_lines(errors: Mapping[str, int]) -> tuple[str, str]:
    """``errors`` (a summary's) as two lines of text: false and missed railcars by cause."""
    def line(prefix: str, causes: tuple[str, ...]) -> str:
        return ", ".join(f"{errors.get(prefix + c, 0)} {c.replace('_', ' ')}" for c in causes)

    return (f"false railcars: {line('false_', FALSE_CAUSES)}",
            f"missed railcars: {line('missed_', MISS_CAUSES)}")


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
            "tp": tp, "fp": fp, "fn": fn}


def summarise(results: list[ImageResult]) -> dict[str, Any]:
    """Aggregate metrics over images (railcars are the headline kind)."""
    out: dict[str, Any] = {"images": len(results)}
    by_kind = {}
    for kind in KINDS:
        tp = sum(r.tp[kind] for r in results)
        fp = sum(r.fp[kind] for r in results)
        fn = sum(r.fn[kind] for r in results)
        nt = sum(r.n_truth[kind] for r in results)
        dev = sum(abs(r.n_pred[kind] - r.n_truth[kind]) for r in results)
        m = _prf(tp, fp, fn)
        m["count_error"] = round(dev / nt, 4) if nt else (0.0 if dev == 0 else 1.0)
        m["truth"] = nt
        m["predicted"] = sum(r.n_pred[kind] for r in results)
        by_kind[kind] = m
    out["by_kind"] = by_kind
    rail = by_kind["railcar"]
    out.update({k: rail[k] for k in ("precision", "recall", "f1", "count_error")})
    out["container_f1"] = by_kind["container"]["f1"]
    pairs = [p for r in results for p in r.class_pairs]
    labels = list(RAILCAR_CLASSES)
    conf = np.zeros((len(labels), len(labels)), int)
    for t, p in pairs:
        if t in labels and p in labels:
            conf[labels.index(t), labels.index(p)] += 1
    out["class_accuracy"] = round(float(np.trace(conf) / conf.sum()), 4) if conf.sum() else None
    out["confusion"] = {"labels": labels, "matrix": conf.tolist()}
    out["class_reliability"] = class_reliability(
        pairs, [s for r in results for s in r.class_scores])
    cov = [p for r in results for p in r.covered_pairs]
    out["covered_accuracy"] = (round(sum(a == b for a, b in cov) / len(cov), 4)
                               if cov else None)
    out["errors"] = {k: sum(r.errors.get(k, 0) for r in results)
                     for k in (*(f"false_{c}" for c in FALSE_CAUSES),
                               *(f"missed_{c}" for c in MISS_CAUSES))}
    out["length_error"] = length_error([p for r in results for p in r.length_pairs])
    return out


def length_error(pairs: list[tuple[str, float, float]]) -> dict[str, Any] | None:
    """How far matched railcars' predicted ``length_m`` lies from the truth's: the median
    error (predicted minus true, metres: negative when cars come out short) and the median
    absolute error, overall and by true class. None when nothing was matched."""
    if not pairs:
        return None

    def stats(rows: list[tuple[str, float, float]]) -> dict[str, Any]:
        d = np.array([p - t for _, t, p in rows])
        return {"cars": len(rows), "median_m": round(float(np.median(d)), 2),
                "median_abs_m": round(float(np.median(np.abs(d))), 2)}

    by_class = {c: stats(rows) for c in RAILCAR_CLASSES
                if (rows := [r for r in pairs if r[0] == c])}
    return {**stats(pairs), "by_class": by_class}


def class_reliability(pairs: list[tuple[str, str]], scores: list[float],
                      bands: tuple[float, ...] = SCORE_BANDS) -> list[dict[str, Any]] | None:
    """Class accuracy of matched railcars by band of their predicted ``class_score``
    (``from`` <= score < ``to``, the last band closed): a calibrated score has each band's
    accuracy near its mean score. None when the predictions carry no class score."""
    s = np.asarray(scores, float)
    ok = np.array([t == p for t, p in pairs], bool)
    has = ~np.isnan(s)
    if not has.any():
        return None
    s, ok = s[has], ok[has]
    band = np.digitize(s, bands[1:-1])  # inner edges: the last band takes 1.0 too
    out = []
    for i, (lo, hi) in enumerate(itertools.pairwise(bands)):
        m = band == i
        n = int(m.sum())
        out.append({"from": lo, "to": hi, "cars": n, "share": round(n / len(s), 4),
                    "mean_score": round(float(s[m].mean()), 4) if n else None,
                    "accuracy": round(float(ok[m].mean()), 4) if n else None})
    return out


def _image_counts(results: list[ImageResult]) -> dict[str, np.ndarray]:
    """Per-image counts whose sums give every headline metric (for resampling)."""
    labels = set(RAILCAR_CLASSES)
    c: dict[str, list[float]] = defaultdict(list)
    for r in results:
        for kind in ("railcar", "container"):
            c[f"{kind}_tp"].append(r.tp[kind])
            c[f"{kind}_fp"].append(r.fp[kind])
            c[f"{kind}_fn"].append(r.fn[kind])
        c["truth"].append(r.n_truth["railcar"])
        c["deviation"].append(abs(r.n_pred["railcar"] - r.n_truth["railcar"]))
        scored = [(t, p) for t, p in r.class_pairs if t in labels and p in labels]
        c["class_n"].append(len(scored))
        c["class_ok"].append(sum(t == p for t, p in scored))
        c["covered_n"].append(len(r.covered_pairs))
        c["covered_ok"].append(sum(a == b for a, b in r.covered_pairs))
    return {k: np.asarray(v, float) for k, v in c.items()}


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    return np.where(den > 0, num / np.maximum(den, 1), empty)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    p, r = _ratio(tp, tp + fp, 1.0), _ratio(tp, tp + fn, 1.0)
    return _ratio(2 * p * r, p + r, 0.0)


def bootstrap_ci(results: list[ImageResult], n: int = 1000, level: float = 0.95,
                 seed: int = 0) -> dict[str, list[float] | None]:
    """Percentile intervals of the headline metrics (as :func:`summarise` defines them)
    over ``n`` resamples of the images (with replacement; seeded, so a rerun gives the
    same interval). ``None`` for a metric that no resample could measure (e.g. class
    accuracy without matched railcars). The per-image counts are summed by one matrix
    product, so thousands of resamples of thousands of images take well under a second."""
    if n < 1 or not results:
        return dict.fromkeys(CI_METRICS)
    counts = _image_counts(results)
    m = len(results)
    picks = np.random.default_rng(seed).integers(m, size=(n, m))
    weights = np.zeros((n, m))
    np.add.at(weights, (np.repeat(np.arange(n), m), picks.ravel()), 1.0)
    s = {k: weights @ v for k, v in counts.items()}
    rtp, rfp, rfn = s["railcar_tp"], s["railcar_fp"], s["railcar_fn"]
    draws = {
        "precision": _ratio(rtp, rtp + rfp, 1.0),
        "recall": _ratio(rtp, rtp + rfn, 1.0),
        "f1": _f1(rtp, rfp, rfn),
        "count_error": _ratio(s["deviation"], s["truth"], 0.0)
        + (s["truth"] == 0) * (s["deviation"] > 0),
        "class_accuracy": _ratio(s["class_ok"], s["class_n"], np.nan),
        "covered_accuracy": _ratio(s["covered_ok"], s["covered_n"], np.nan),
        "container_f1": _f1(s["container_tp"], s["container_fp"], s["container_fn"]),
    }
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out: dict[str, list[float] | None] = {}
    for k in CI_METRICS:
        v = draws[k][~np.isnan(draws[k])]
        out[k] = ([round(float(np.percentile(v, lo)), 4), round(float(np.percentile(v, hi)), 4)]
                  if len(v) else None)
    return out


def interval_text(summary: Mapping[str, Any], key: str) -> str | None:
    """``"0.88-0.93"``: the bootstrap interval of ``key`` in a summary, if it has one."""
    ci = (summary.get("ci") or {}).get(key)
    return f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else None


def _season(when: str | None) -> str | None:
    if not when:
        return None
    try:
        month = dt.datetime.fromisoformat(str(when).replace("Z", "+00:00")).month
    except ValueError:
        return None
    return {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
            6: "summer", 7: "summer", 8: "summer"}.get(month, "autumn")


def _gsd_bucket(g: float) -> str:
    for ref in (0.3, 0.5, 0.8):
        if abs(g - ref) <= 0.07:
            return f"{ref:g}"
    return f"{g:.2f}"


def image_slices(cond: Mapping[str, Any], truth: Detections, pred_meta: Mapping[str, Any],
                 ) -> dict[str, str]:
    """The slice labels of one image from its conditions and its truth."""
    s: dict[str, str] = {}
    gsd = cond.get("gsd_m", cond.get("gsd", pred_meta.get("gsd_m", truth.meta.get("gsd_m"))))
    if gsd is not None:
        s["gsd"] = _gsd_bucket(float(gsd))
    season = _season(cond.get("when") or cond.get("acquired") or cond.get("datetime")
                     or cond.get("date"))
    if "snow" in cond:
        s["snow"] = "snow" if float(cond["snow"]) > 0.2 else "no snow"
    if season:
        s["season"] = season
    if "haze" in cond:
        s["haze"] = "haze" if float(cond["haze"]) > 0.2 else "clear"
    cloud = cond.get("cloud_fraction", cond.get("cloud_cover", cond.get("cloud")))
    if cloud is not None:
        s["cloud"] = "partial cloud" if float(cloud) > 0.02 else "cloud-free"
    rail = truth.kind == "railcar"
    if "train_id" in truth.extra and rail.any():
        ids = [v for v in truth.extra["train_id"][rail] if v not in (None, "")]
        longest = max((ids.count(v) for v in set(ids)), default=0)
    else:
        longest = int(rail.sum())
    s["density"] = ("dense (>=40 cars)" if longest >= 40 else
                    "medium (10-39)" if longest >= 10 else "sparse (<10)")
    return s


def _stem(name: str) -> str:
    """A manifest entry's image stem: its file name less the extension only (names such
    as ``sim_0.5_1.tif`` hold dots)."""
    base = Path(name).name
    for suffix in (".truth.geojson", ".geojson", ".tiff", ".tif"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def read_manifest(truth_dir: Path) -> dict[str, dict[str, Any]]:
    """Per-image conditions by image stem from ``manifest.json`` (tolerant of layouts)."""
    path = truth_dir / "manifest.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"manifest is not valid JSON ({exc})", path) from exc
    entries = data.get("images", data.get("scenes", [])) if isinstance(data, dict) else data
    out = {}
    for e in entries if isinstance(entries, list) else []:
        if not isinstance(e, dict):
            continue
        name = next((e[k] for k in ("name", "image", "path", "file", "tif") if k in e), None)
        if not name:
            continue
        stem = _stem(str(name))
        cond = dict(e)
        if isinstance(e.get("conditions"), dict):
            cond.update(e["conditions"])
        out[stem] = cond
    return out


def evaluate(truth_dir: str | os.PathLike[str], pred_dir: str | os.PathLike[str],
             max_dist_m: float = MAX_DIST_M, bootstrap: int = 0) -> dict[str, Any]:
    """Metrics of the predictions in ``pred_dir`` against the truth in ``truth_dir``.

    Returns ``overall`` (see ``summarise``), ``slices`` {dimension: {label: metrics}},
    ``by_gsd`` (a copy of the GSD slice) and ``per_image`` counts. With ``bootstrap=N``
    the overall and every slice also carry ``ci`` (see :func:`bootstrap_ci`).
    """
    tdir, pdir = Path(truth_dir), Path(pred_dir)
    for d, what in ((tdir, "truth"), (pdir, "predictions")):
        if not d.is_dir():
            raise InputError(f"{what} folder not found", d)
    truths = sorted(tdir.glob("*.truth.geojson"))
    if not truths:
        raise InputError("no *.truth.geojson files", tdir)
    manifest = read_manifest(tdir)
    results: list[ImageResult] = []
    missing = []
    for tp in truths:
        stem = tp.name[: -len(".truth.geojson")]
        cands = [pdir / f"{stem}.geojson", pdir / f"{stem}.pred.geojson"]
        pp = next((c for c in cands if c.exists()), None)
        if pp is None:
            missing.append(stem)
            continue
        try:
            truth, pred = from_geojson(tp), from_geojson(pp)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        r = evaluate_pair(truth, pred, stem, max_dist_m)
        r.slices = image_slices(manifest.get(stem, {}), truth, pred.meta)
        results.append(r)
    if not results:
        raise InputError(f"no predictions matching any truth file (e.g. {missing[0]}.geojson)",
                         pdir)
    groups: dict[str, dict[str, list[ImageResult]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        for dim, label in r.slices.items():
            groups[dim][label].append(r)
    slices = {dim: {label: _slice_summary(rs, bootstrap) for label, rs in sorted(by.items())}
              for dim, by in sorted(groups.items())}
    overall = summarise(results)
    if bootstrap:
        overall["ci"] = bootstrap_ci(results, bootstrap)
    return {
        "overall": overall,
        "by_gsd": slices.get("gsd", {}),
        "slices": slices,
        "missing_predictions": missing,
        "per_image": [{"name": r.name, "truth": r.n_truth["railcar"],
                       "predicted": r.n_pred["railcar"], "tp": r.tp["railcar"],
                       "containers_truth": r.n_truth["container"],
                       "containers_predicted": r.n_pred["container"], **r.slices}
                      for r in results],
    }


def _slice_summary(rs: list[ImageResult], bootstrap: int = 0) -> dict[str, Any]:
    s = summarise(rs)
    out = {k: s[k] for k in ("images", *CI_METRICS)}
    if bootstrap:
        out["ci"] = bootstrap_ci(rs, bootstrap)
    return out
