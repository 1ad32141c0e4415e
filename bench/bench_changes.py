"""Benchmark of facility-change finding on rendered image series (issue #6).

Randomised cases: a random 400 x 400 m rail yard (``railwatch.simulate.layout``), one to
three new buildings (some under 100 m²) and sometimes a removed one, built between two of
five images taken on random dates over two years with random season, snow, sun, haze,
GSD (0.5/0.8 m), off-nadir lean, noise, JPEG and moving trains, the images misregistered
by up to 8 px. Ground-truth railcars/containers stand in for the detector's masks.
No-construction cases use the same recipe without any building change.

Scores: recall and precision for structures of at least 100 m² (a found change matches a
true one when they overlap by IoU >= 0.25; found changes under 100 m² are left out of
precision), the share of matched changes dated within their true bracket, and the
number of changes reported on no-construction series.

    .venv/bin/python bench/bench_changes.py --cases 20 --quiet-cases 10 --scenario
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import Transformer
from shapely import affinity
from shapely.geometry import LineString, Polygon, box

from railwatch.analytics.changes import find_changes
from railwatch.errors import InputError
from railwatch.simulate.layout import moving_trains as _moving_trains
from railwatch.simulate.layout import occupied_ground as _occupied
from railwatch.simulate.layout import random_conditions, random_world
from railwatch.simulate.render import render, write_geotiff
from railwatch.simulate.world import Building, World
from railwatch.types import Site

LAT, LON = 42.4217, 130.6026
EXTENT = (-200.0, -200.0, 200.0, 200.0)
# A place counts as seen in an image when less than this share of the ground over and
# around it lies under rendered snow (see Truth.observable).
OBSERVABLE_MAX_SNOW = 0.5


@dataclass
class Truth:
    poly: Polygon  # map coordinates
    kind: str  # "new structure" | "removed structure" | "new track" | "new wall"
    date: dt.date
    # Rendering facts, per image of the series (date order): the mean rendered snow cover
    # of the ground over the footprint and 5 m around it (0..1). None: not recorded
    # (the scenario).
    snow: list[float] | None = None
    dates: list[dt.date] | None = None
    # A removed building that straddled the AOI's border: its truth is the part inside.
    clipped: bool = False

    def observable(self, max_snow: float = OBSERVABLE_MAX_SNOW) -> bool | None:
        """Whether some image before the change and some image after it show the place:
        the ground there less than ``max_snow`` snow-covered as rendered (the randomised
        series have no cloud, and trains keep to tracks that new buildings keep 12 m
        from, so snow is the only thing the simulator lays over a place). Decided from
        the renderer's own snow field, not from anything the method sees. None where
        not recorded."""
        if self.snow is None or self.dates is None:
            return None
        seen = [s < max_snow for s in self.snow]
        before = any(v for v, d in zip(seen, self.dates, strict=True) if d < self.date)
        after = any(v for v, d in zip(seen, self.dates, strict=True) if d >= self.date)
        return before and after


def _site(world: World, name: str) -> Site:
    tr = Transformer.from_crs(world.crs, 4326, always_xy=True)
    ox, oy = world.origin
    x0, y0, x1, y1 = EXTENT

    def ll(p: Polygon) -> Polygon:
        import shapely

        return shapely.transform(affinity.translate(p, ox, oy), tr.transform, interleaved=False)

    aoi = ll(box(x0 + 5, y0 + 5, x1 - 5, y1 - 5))
    zones = {"south": ll(box(x0, y0, x1, 0)), "north": ll(box(x0, 0, x1, y1))}
    return Site(name, name, aoi, zones, properties={"local_crs": world.crs})


def _new_building(rng: np.random.Generator, world: World, built: dt.date) -> Building | None:
    occ = _occupied(world)
    x0, y0, x1, y1 = EXTENT
    for _ in range(200):
        w, h = rng.uniform(6, 45), rng.uniform(6, 30)
        cx, cy = rng.uniform(x0 + 40, x1 - 40), rng.uniform(y0 + 40, y1 - 40)
        poly = affinity.rotate(
            box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), rng.uniform(0, 180)
        )
        if any(poly.intersects(o) for o in occ):
            continue
        roof = tuple(int(v) for v in rng.integers(60, 230, size=3))
        kind = str(rng.choice(["warehouse", "shed", "warehouse"]))
        return Building(
            np.asarray(poly.exterior.coords)[:4], float(rng.uniform(3, 12)), roof, kind, built=built
        )
    return None


def ground_snow(world: World, cond, rendered, polys: list[Polygon]) -> list[float]:
    """The mean snow cover the renderer laid on the ground over each polygon (local
    metres) buffered by 5 m: ``paint_ground``'s coarse snow field, recomputed with the
    same generator and canvas as :func:`render` used (the ground is painted first, from
    its own seeded generator, so this repeats it exactly)."""
    if cond.snow <= 0 or not polys:
        return [0.0] * len(polys)
    import shapely

    from railwatch.simulate import painters as P
    from railwatch.simulate.render import _stable_seed

    xmin, _, _, ymax = world.extent
    res = float(rendered.meta["canvas_res_m"])
    ss = int(rendered.meta["supersampling"])
    h, w = rendered.image.shape[:2]
    grng = np.random.default_rng(
        [world.ground_seed, _stable_seed(round(xmin, 2), round(ymax, 2), round(res, 4))]
    )
    cv = P.Canvas(xmin, ymax, res, w * ss, h * ss)
    cover = P.paint_ground(cv, grng, cond.when.month, cond.lat, cond.snow)
    cell = res * max(1, round(0.8 / res))
    out = []
    for poly in polys:
        b = poly.buffer(5.0)
        x0, y0, x1, y1 = b.bounds
        c0, c1 = max(0, int((x0 - xmin) / cell)), min(cover.shape[1], int((x1 - xmin) / cell) + 1)
        r0, r1 = max(0, int((ymax - y1) / cell)), min(cover.shape[0], int((ymax - y0) / cell) + 1)
        cc, rr = np.meshgrid(np.arange(c0, c1), np.arange(r0, r1))
        inside = shapely.contains_xy(b, xmin + (cc + 0.5) * cell, ymax - (rr + 0.5) * cell)
        out.append(float(cover[r0:r1, c0:c1][inside].mean()) if inside.any() else 0.0)
    return out


def _dates(rng: np.random.Generator, n: int) -> list[dt.datetime]:
    start = dt.datetime(2021, 1, 1, 2, 0, tzinfo=dt.UTC)
    days = np.sort(rng.choice(np.arange(0, 730, 10), size=n, replace=False))
    return [start + dt.timedelta(days=int(d), minutes=int(rng.integers(0, 90))) for d in days]


def _conditions(rng: np.random.Generator, when: dt.datetime):
    c = random_conditions(rng, gsd_choices=(0.5, 0.8), lat=LAT)
    winter = when.month in (12, 1, 2)
    snow = float(rng.uniform(0.3, 1.0)) if winter and rng.random() < 0.7 else 0.0
    return replace(
        c,
        when=when,
        lat=LAT,
        lon=LON,
        snow=snow,
        cloud_cover=0.0,
        off_nadir_deg=float(rng.uniform(0, 12)),
    )


def make_case(seed: int, folder: Path, *, construction: bool = True, n_images: int = 5):
    """Render one case; returns (images, site, truths)."""
    rng = np.random.default_rng(seed)
    world = random_world(rng, EXTENT, origin=(500_000.0 + 1000 * seed, 4_700_000.0))
    dates = _dates(rng, n_images)
    truths: list[Truth] = []
    local: list[Polygon] = []  # the truths' footprints in local metres
    ox, oy = world.origin
    if construction:
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(1, n_images - 1))  # seen in at least two images
            built = (dates[k - 1] + (dates[k] - dates[k - 1]) / 2).date()
            b = _new_building(rng, world, built)
            if b is not None:
                world.buildings.append(b)
                truths.append(
                    Truth(affinity.translate(Polygon(b.polygon), ox, oy), "new structure", built)
                )
                local.append(Polygon(b.polygon))
        old = [b for b in world.buildings if b.built is None and b.kind != "platform"]
        if old and rng.random() < 0.4:
            b = old[int(rng.integers(len(old)))]
            k = int(rng.integers(1, n_images - 1))  # seen in at least two images
            b.removed = (dates[k - 1] + (dates[k] - dates[k - 1]) / 2).date()
            truths.append(
                Truth(
                    affinity.translate(Polygon(b.polygon), ox, oy), "removed structure", b.removed
                )
            )
            local.append(Polygon(b.polygon))
    # Changes are looked for inside the site's AOI (the layout spills over it). New
    # buildings always lie inside; a removed one may straddle the AOI's border, and it is
    # removed from the world all the same, so its truth is the part inside the AOI
    # (``clipped``; before the seventeenth round such removals had no truth at all, and
    # finding them counted as false changes).
    aoi = box(EXTENT[0] + 5, EXTENT[1] + 5, EXTENT[2] - 5, EXTENT[3] - 5)
    inside = affinity.translate(box(*EXTENT).buffer(-10), ox, oy)
    kept = []
    for t, p in zip(truths, local, strict=True):
        if inside.contains(t.poly):
            kept.append((t, p))
        elif t.kind == "removed structure" and p.intersection(aoi).area > 0:
            part = p.intersection(aoi)
            t.poly, t.clipped = affinity.translate(part, ox, oy), True
            kept.append((t, part))
    truths = [t for t, _ in kept]
    local = [p for _, p in kept]
    for t in truths:
        t.snow, t.dates = [], [d.date() for d in dates]
    images = []
    shifts = {}
    for i, when in enumerate(dates):
        cond = _conditions(rng, when)
        world.cars = _moving_trains(rng, world)
        # Misregistration up to 8 px; the first image is the well-registered reference.
        shift = rng.uniform(-8, 8, size=2) * cond.gsd_m if i else np.zeros(2)
        r = render(world, cond)
        for t, v in zip(truths, ground_snow(world, cond, r, local), strict=True):
            t.snow.append(v)
        r.transform = Affine.translation(*shift) @ r.transform
        truth = r.truth
        truth.footprints = truth.footprints + shift
        path = folder / f"case{seed}_{i}.tif"
        write_geotiff(r, path, cond, truth=False)
        images.append((path, when, truth))
        shifts[str(path)] = shift
    return images, _site(world, f"case{seed}"), truths, shifts


def _iou(a, b) -> float:
    u = a.union(b).area
    return a.intersection(b).area / u if u else 0.0


def _linear(t: Truth) -> bool:
    return t.kind in ("new track", "new wall")


def score_case(
    result,
    truths: list[Truth],
    shifts: dict,
    min_area: float = 100.0,
    *,
    on_line_m: float = 5.0,
    on_line_share: float = 0.5,
):
    """Counts for one case. Positions are in the reference image's frame: its known
    misregistration is taken off before matching (georeferencing is not what is tested).

    Structures (buildings) match at IoU >= 0.25. Linear truths (new tracks and walls, only
    in the scenario) have no footprint to overlap: a found change is on one when at least
    ``on_line_share`` of its area lies within ``on_line_m`` of it. Changes on linear truths
    count as correct in ``tp_found_lines`` (the scenario's second scoring) and not in
    ``tp_found`` (buildings only, the first scoring); ``lines``/``lines_found``/
    ``lines_dated`` say how many linear truths there are, were found and dated in bracket.
    """
    structures = [t for t in truths if not _linear(t)]
    lines = [t for t in truths if _linear(t)]
    big = [t for t in structures if t.poly.area >= min_area]
    dx, dy = shifts.get(result.reference, (0.0, 0.0))
    found = [c for c in result.changes if c.area_m2 >= min_area]
    for c in found:
        c.geometry = affinity.translate(c.geometry, -dx, -dy)
    matched_t: set[int] = set()
    tp = tp_lines = dated = 0
    lines_found: set[int] = set()
    lines_dated: set[int] = set()
    for c in found:
        best, bi = 0.0, -1
        for i, t in enumerate(structures):
            v = _iou(c.geometry, t.poly)
            if v > best:
                best, bi = v, i
        if best >= 0.25:
            tp += 1
            tp_lines += 1
            if bi not in matched_t and structures[bi].poly.area >= min_area:
                matched_t.add(bi)
                t = structures[bi]
                if c.last_absent.date() < t.date <= c.first_seen.date():
                    dated += 1
            continue
        on = [
            i
            for i, t in enumerate(lines)
            if c.geometry.intersection(t.poly.buffer(on_line_m)).area
            >= on_line_share * c.geometry.area
        ]
        if on:
            tp_lines += 1
            for i in on:
                lines_found.add(i)
                if c.last_absent.date() < lines[i].date <= c.first_seen.date():
                    lines_dated.add(i)
    # Observable recall's counts: true structures >= min_area that some image before and
    # some image after the change show (Truth.observable, from the rendering facts).
    obs = [i for i, t in enumerate(structures) if t.poly.area >= min_area and t.observable()]
    return {
        "true": len(big),
        "found": len(found),
        "tp_found": tp,
        "tp_true": len(matched_t),
        "observable": len(obs),
        "tp_observable": sum(i in matched_t for i in obs),
        "dated": dated,
        "tp_found_lines": tp_lines,
        "lines": len(lines),
        "lines_found": len(lines_found),
        "lines_dated": len(lines_dated),
    }


def _run(images, site, persist: int, method: str = "both"):
    """find_changes, or None with the reason printed when the series is unusable."""
    try:
        return find_changes(images, site, persist=persist, method=method)
    except InputError as exc:
        print(f"  {site.name}: no result ({exc})")
        return None


def scenario_case(folder: Path, start: str, end: str, max_images: int, persist: int):
    """The built-in tumangang-khasan scenario, Tumangang only, ``start``..``end``: images
    with their truth railcars/containers as masks, and the scenario's buildings built or
    removed inside the series (so that ``persist`` later images can show them)."""

    from railwatch.geojson import from_geojson
    from railwatch.simulate.scenario import _rect, load_scenario, simulate_scenario, site_frame
    from railwatch.sites import get_site

    man = simulate_scenario(
        "tumangang-khasan",
        folder,
        seed=0,
        start=start,
        end=end,
        max_images=max_images,
        sites=["tumangang"],
    )
    images = [
        (
            folder / im["file"],
            dt.datetime.fromisoformat(im["datetime"].replace("Z", "+00:00")),
            from_geojson(folder / im["truth"]),
        )
        for im in man["images"]
    ]
    dates = sorted(w.date() for _, w, _ in images)
    _, origin, _ = site_frame("tumangang")
    truths = []
    spec = load_scenario("tumangang-khasan").sites["tumangang"]

    def inside(d: dt.date | None) -> bool:
        return d is not None and dates[0] < d <= dates[-persist]

    for b in spec.buildings:
        for kind, d in (("new structure", b.built), ("removed structure", b.removed)):
            if inside(d):
                poly = Polygon(
                    _rect(b.center[0], b.center[1], b.size[0], b.size[1], b.angle_deg)
                    + np.asarray(origin)
                )
                truths.append(Truth(poly, kind, d))
    # Tracks and walls built inside the series are real changes too (linear truths, scored
    # apart: see score_case). A track's ballast bed is about 4 m wide, a wall 0.4 m.
    for t in spec.tracks:
        if inside(t.built):
            line = LineString(np.asarray(t.points) + np.asarray(origin))
            truths.append(Truth(line.buffer(2.0), "new track", t.built))
    for w in spec.walls:
        if inside(w.built):
            line = LineString(np.asarray(w.points) + np.asarray(origin))
            truths.append(Truth(line.buffer(0.5), "new wall", w.built))
    return images, get_site("tumangang"), truths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--quiet-cases", type=int, default=8)
    ap.add_argument("--seed", type=int, default=300)
    ap.add_argument("--persist", type=int, default=2)
    ap.add_argument(
        "--scenario",
        action="store_true",
        help="also the built-in tumangang-khasan scenario (2021-03..2022-06)",
    )
    ap.add_argument("--scenario-images", type=int, default=12)
    ap.add_argument("--method", default="both", choices=("edges", "structures", "both"),
                    help="find_changes(method=...): the change finder's method")
    args = ap.parse_args()
    tot = {  # randomised
        "true": 0,
        "found": 0,
        "tp_found": 0,
        "tp_true": 0,
        "dated": 0,
        "observable": 0,
        "tp_observable": 0,
    }
    false_quiet = 0
    t0 = time.time()
    n_img = 0
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.cases):
            seed = args.seed + k
            images, site, truths, shifts = make_case(seed, Path(tmp))
            res = _run(images, site, args.persist, args.method)
            n_img += len(images)
            if res is None:
                tot["true"] += sum(t.poly.area >= 100 for t in truths)
                tot["observable"] += sum(
                    t.poly.area >= 100 and bool(t.observable()) for t in truths
                )
                continue
            s = score_case(res, truths, shifts)
            for key in tot:
                tot[key] += s[key]
            print(
                f"case {seed}: { {key: s[key] for key in tot} }  found: "
                + ", ".join(f"{c.kind} {c.area_m2:.0f} m²" for c in res.changes)
                + "  truth: "
                + ", ".join(f"{t.kind} {t.poly.area:.0f} m²" for t in truths)
                + "".join(f"  [skipped {im.skipped}]" for im in res.skipped)
            )
        for k in range(args.quiet_cases):
            seed = args.seed + 1000 + k
            images, site, _, _ = make_case(seed, Path(tmp), construction=False)
            res = _run(images, site, args.persist, args.method)
            n_img += len(images)
            if res is None:
                continue
            false_quiet += len(res.changes)
            print(
                f"quiet {seed}: "
                + (", ".join(f"{c.kind} {c.area_m2:.0f} m²" for c in res.changes) or "none")
            )
        elapsed = time.time() - t0
        recall = tot["tp_true"] / max(tot["true"], 1)
        precision = tot["tp_found"] / max(tot["found"], 1)
        dated = tot["dated"] / max(tot["tp_true"], 1)
        print(f"\nrandomised: structures >= 100 m²: {tot['true']} true, {tot['found']} found")
        print(f"recall {recall:.2f}  precision {precision:.2f}  dated within bracket {dated:.2f}")
        # Beside recall, not instead of it: changes that no image before (or after) shows
        # cannot be dated between two images that see the place by any method.
        obs_recall = tot["tp_observable"] / max(tot["observable"], 1)
        print(
            f"observable recall {obs_recall:.2f} ({tot['tp_observable']} of "
            f"{tot['observable']} true structures >= 100 m² seen, as rendered, in some image "
            f"before and some image after the change: ground there under "
            f"{OBSERVABLE_MAX_SNOW:.0%} snow)"
        )
        print(f"no-construction series: {args.quiet_cases}, changes reported: {false_quiet}")
        print(f"{n_img} images, {elapsed:.0f} s (render + find)")
        if args.scenario:
            t1 = time.time()
            folder = Path(tmp) / "scenario"
            images, site, truths = scenario_case(
                folder, "2021-03-01", "2022-06-30", args.scenario_images, args.persist
            )
            res = _run(images, site, args.persist, args.method)
            if res is not None:
                s = score_case(res, truths, {})
                print(
                    f"\ntumangang-khasan (Tumangang, {len(images)} images 2021-03..2022-06): "
                    f"{s}; truth: "
                    + ", ".join(f"{t.kind} {t.poly.area:.0f} m² {t.date}" for t in truths)
                )
                for c in res.changes:
                    print(
                        f"  found {c.kind} {c.area_m2:.0f} m² {c.last_absent.date()}.."
                        f"{c.first_seen.date()} zone={c.zone} score={c.score}"
                    )
                r = s["tp_true"] / max(s["true"], 1)
                p = s["tp_found"] / max(s["found"], 1)
                p2 = s["tp_found_lines"] / max(s["found"], 1)
                print(
                    f"recall {r:.2f}  precision {p:.2f} (buildings only; "
                    f"{p2:.2f} with changes on new tracks and walls correct)  "
                    f"dated {s['dated'] / max(s['tp_true'], 1):.2f}  "
                    f"new tracks/walls found {s['lines_found']} of {s['lines']} "
                    f"(dated {s['lines_dated']})  ({time.time() - t1:.0f} s render + find)"
                )


if __name__ == "__main__":
    main()
