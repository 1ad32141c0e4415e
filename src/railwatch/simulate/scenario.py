"""Scenarios: load and validate, plan the image collection, build each site's world, render.

* :func:`list_scenarios` / :func:`load_scenario` - built-in names (``tumangang-khasan``) or a
  YAML file, validated by :mod:`railwatch.simulate.scenario_schema`.
* :func:`plan_images` - the collection plan: when each site is imaged, by which sensor,
  how cloudy, and how much of the AOI each image covers (deterministic for a seed).
* :func:`site_world` - the :class:`~railwatch.simulate.world.World` of one site at one
  time: tracks, the cars the traffic process put there, buildings and walls standing on
  that date, ground containers, distractors.
* :func:`simulate_scenario` - renders the plan with :mod:`railwatch.simulate.render` and
  writes ``<site>_<YYYYMMDDTHHMM>_<sensor>.tif``, ``*.truth.geojson`` and ``manifest.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from shapely.geometry import MultiLineString, Point

from railwatch.errors import InputError
from railwatch.simulate.scenario_schema import ScenarioSpec, SiteSpec, parse_scenario
from railwatch.simulate.traffic import Traffic, _rng, build_traffic, hex_rgb
from railwatch.simulate.world import (
    CONTAINER_COLORS,
    CONTAINER_LENGTHS_M,
    CONTAINER_WIDTH_M,
    Building,
    Conditions,
    Containers,
    Distractors,
    Road,
    Track,
    Wall,
    World,
)
from railwatch.types import Site

SCENARIO_DIR = Path(__file__).parent / "scenarios"


# -- loading ----------------------------------------------------------------------------
def list_scenarios() -> list[str]:
    """Names of the built-in scenarios."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


@lru_cache(maxsize=4)
def _builtin_sites() -> dict[str, Site]:
    from railwatch.sites import builtin_sites

    return {s.name: s for s in builtin_sites()}


def load_scenario(name_or_path: str | Path) -> ScenarioSpec:
    """A validated scenario from a built-in name or a YAML file (``InputError`` if bad)."""
    path = Path(name_or_path)
    if not path.is_file():
        if str(name_or_path) in list_scenarios():
            path = SCENARIO_DIR / f"{name_or_path}.yaml"
        elif path.suffix.lower() in (".yaml", ".yml") or os.sep in str(name_or_path):
            raise InputError("no such scenario file", path)
        else:
            raise InputError(
                f"unknown scenario {str(name_or_path)!r}; built-in scenarios: "
                f"{', '.join(list_scenarios())} (or give a YAML file)"
            )
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputError(f"not valid YAML{where}: {problem}", path.name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the file ({exc})", path) from None
    return parse_scenario(data, path.name, known_sites=set(_builtin_sites()))


def _site_record(name: str) -> Site:
    try:
        return _builtin_sites()[name]
    except KeyError:
        raise InputError(f"unknown site {name!r}") from None


@lru_cache(maxsize=16)
def site_frame(name: str) -> tuple[str, tuple[float, float], tuple[float, float, float, float]]:
    """(crs, origin easting/northing, AOI extent in local metres) of a built-in site."""
    from pyproj import Transformer

    from railwatch.sites import site_local_crs

    site = _site_record(name)
    crs = site_local_crs(site)
    lon, lat = site.properties["center"]
    tr = Transformer.from_crs(4326, crs, always_xy=True)
    e, n = tr.transform(lon, lat)
    x, y = tr.transform(*np.asarray(site.aoi.exterior.coords).T)
    ext = (
        round(float(np.min(x) - e), 1),
        round(float(np.min(y) - n), 1),
        round(float(np.max(x) - e), 1),
        round(float(np.max(y) - n), 1),
    )
    return crs.to_string(), (float(e), float(n)), ext


@lru_cache(maxsize=8)
def _zones_local(name: str) -> dict[str, Any]:
    from shapely import affinity

    from railwatch.sites import to_local

    site = _site_record(name)
    _, (e, n), _ = site_frame(name)
    return {z: affinity.translate(to_local(poly, site), -e, -n) for z, poly in site.zones.items()}


def track_map(spec: ScenarioSpec, site: str) -> MultiLineString:
    """Every track of ``site`` in the scenario (as built by its end), as lon/lat
    centrelines: the map an analyst would take from OpenStreetMap (the built-in site
    files carry it as ``role: track`` features)."""
    from pyproj import Transformer

    crs, (e, n), _ = site_frame(site)
    tr = Transformer.from_crs(crs, 4326, always_xy=True)
    return MultiLineString([
        np.round(np.stack(tr.transform(*np.add(t.points, [e, n]).T), -1), 7)
        for t in spec.sites[site].tracks])


def zone_of(name: str, x: float, y: float) -> str:
    """The name of the site zone holding local point (x, y), or ``other``."""
    p = Point(x, y)
    for z, poly in _zones_local(name).items():
        if z != "track_area" and poly.contains(p):
            return z
    return (
        "track_area"
        if "track_area" in _zones_local(name) and _zones_local(name)["track_area"].contains(p)
        else "other"
    )


# -- the collection plan ----------------------------------------------------------------
@dataclass(frozen=True)
class PlannedImage:
    """One image the plan asks for."""

    site: str
    when: dt.datetime  # UTC, naive
    sensor: str
    gsd_m: float
    cloud: float  # fraction of the AOI under cloud
    coverage: float  # fraction of the AOI inside the image footprint
    edge_angle_deg: float  # direction of the footprint edge (partial images)
    seed: int
    required: bool = False

    @property
    def stem(self) -> str:
        return f"{self.site}_{self.when:%Y%m%dT%H%M}_{_slug(self.sensor)}"


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-" else "-" for c in s).strip("-")


def _revisit(spec: ScenarioSpec, site: str, d: dt.date) -> float:
    r = spec.imagery.revisit_days[site]
    for c in spec.imagery.sparse:
        if c.start <= d <= c.end and (not c.sites or site in c.sites):
            r = max(r, c.revisit_days)
    for c in spec.imagery.campaigns:
        if c.start <= d <= c.end and (not c.sites or site in c.sites):
            r = min(r, c.revisit_days)
    return r


def plan_images(spec: ScenarioSpec, seed: int = 0) -> list[PlannedImage]:
    """The images of the scenario, in time order (deterministic for ``seed``)."""
    im = spec.imagery
    names = [s.name for s in im.sensors]
    w = np.array([s.weight for s in im.sensors], dtype=np.float64)
    gsd = {s.name: s.gsd_m for s in im.sensors}
    t0 = im.times_utc[0].hour * 60 + im.times_utc[0].minute
    t1 = im.times_utc[1].hour * 60 + im.times_utc[1].minute
    out: list[PlannedImage] = []
    for site in spec.sites:
        rng = _rng(seed, "imagery", site)
        required = {r.date: r for r in im.required if r.site == site}
        d = spec.start + dt.timedelta(days=float(rng.uniform(0, _revisit(spec, site, spec.start))))
        dates: list[dt.date] = []
        while d <= spec.end:
            dates.append(d)
            step = _revisit(spec, site, d)
            jitter = min(im.jitter_days, step / 2)
            d = d + dt.timedelta(days=max(1, round(step + float(rng.uniform(-jitter, jitter)))))
        dates = sorted((set(dates) - set(required)) | set(required))
        for d in dates:
            # draw everything for every date, so that one required date shifts nothing
            sensor = names[int(rng.choice(len(names), p=w / w.sum()))]
            minute = int(rng.integers(t0, t1 + 1))
            cloudy = rng.random() < im.cloud_by_month[d.month - 1]
            cloud = float(rng.uniform(0.15, 1.0)) if cloudy else float(rng.uniform(0.0, 0.04))
            partial = rng.random() < im.partial_share
            coverage = float(rng.uniform(0.35, 0.9)) if partial else 1.0
            angle = float(rng.uniform(0, 360))
            img_seed = int(rng.integers(0, 2**31 - 1))
            req = required.get(d)
            if req is not None:
                sensor = req.sensor or sensor
                if req.time is not None:
                    minute = req.time.hour * 60 + req.time.minute
                cloud, coverage = req.cloud, req.coverage
            elif cloud > im.max_cloud or d < spec.start or d > spec.end:
                continue
            when = dt.datetime(d.year, d.month, d.day) + dt.timedelta(minutes=minute)
            out.append(
                PlannedImage(
                    site,
                    when,
                    sensor,
                    gsd[sensor],
                    round(cloud, 3),
                    round(coverage, 3),
                    round(angle, 1),
                    img_seed,
                    req is not None,
                )
            )
    out.sort(key=lambda p: (p.when, p.site))
    return out


# -- the world of a site at a time -------------------------------------------------------
def _rect(cx: float, cy: float, w: float, h: float, angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    pts = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    return np.c_[cx + pts[:, 0] * c - pts[:, 1] * s, cy + pts[:, 0] * s + pts[:, 1] * c]


def container_count(stock_series: Sequence[tuple[dt.date, int]], d: dt.date) -> int:
    """Containers a stock series holds on date ``d`` (a step function)."""
    n = 0
    for when, count in stock_series:
        if when <= d:
            n = count
    return n


def _containers(site: SiteSpec, d: dt.date, seed: int) -> Containers:
    parts = []
    for k, stock in enumerate(site.containers):
        n = container_count(stock.series, d)
        if n <= 0:
            continue
        rng = _rng(seed, "containers", site.name, k)
        x0, y0, x1, y1 = stock.rect
        # fixed slots (rows of 40 ft / 20 ft boxes), filled in a fixed random order
        slots = []
        y = y0 + CONTAINER_WIDTH_M / 2
        while y + CONTAINER_WIDTH_M / 2 <= y1:
            x = x0
            while True:
                ln = CONTAINER_LENGTHS_M[1] if rng.random() < 0.6 else CONTAINER_LENGTHS_M[0]
                if x + ln > x1:
                    break
                slots.append(
                    (
                        x + ln / 2,
                        y,
                        ln,
                        tuple(CONTAINER_COLORS[int(rng.integers(len(CONTAINER_COLORS)))]),
                    )
                )
                x += ln + 0.6
            y += CONTAINER_WIDTH_M + (0.4 if rng.random() < 0.5 else 4.0)
        chosen = slots[:n]  # the yard fills row by row from one corner
        if not chosen:
            continue
        parts.append(
            Containers(
                x=[c[0] for c in chosen],
                y=[c[1] for c in chosen],
                heading=np.zeros(len(chosen)),
                length_m=[c[2] for c in chosen],
                width_m=np.full(len(chosen), CONTAINER_WIDTH_M),
                stack=np.ones(len(chosen), dtype=np.int32),
                color=[c[3] for c in chosen],
            )
        )
    return Containers.concat(parts) if parts else Containers.empty()


_DISTRACTOR_SIZES = {
    "truck": ((7.0, 12.0), 2.5, 3.2),
    "rubble": ((6.0, 18.0), 5.0, 1.5),
    "machine": ((5.0, 9.0), 3.0, 3.0),
    "car": ((4.2, 4.8), 1.8, 1.5),
}


def _distractors(
    site: SiteSpec,
    name: str,
    when: dt.datetime,
    seed: int,
    extent: tuple[float, float, float, float],
) -> Distractors:
    """Trucks and cars parked along roads (they move daily), machines in the freight
    yard, rubble piles anywhere off the tracks (they stay)."""
    zones = _zones_local(name)
    track_zone = zones.get("track_area")
    freight = zones.get("freight_handling")
    x0, y0, x1, y1 = extent
    roads = [np.asarray(r.points, dtype=np.float64) for r in site.roads]
    rows = []
    for kind, n in site.distractors.items():
        fixed = kind == "rubble"
        rng = _rng(seed, "distractors", name, kind, "" if fixed else when.date())
        (lo, hi), wd, ht = _DISTRACTOR_SIZES[kind]
        for _ in range(n):
            x = y = heading = 0.0
            for _try in range(30):
                if kind in ("truck", "car") and roads:
                    line = roads[int(rng.integers(len(roads)))]
                    k = int(rng.integers(len(line) - 1))
                    a, b = line[k], line[k + 1]
                    u = float(rng.uniform(0.05, 0.95))
                    d = (b - a) / max(float(np.linalg.norm(b - a)), 1e-9)
                    side = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(5.5, 9.0))
                    x, y = (a + u * (b - a) + side * np.array([-d[1], d[0]])).tolist()
                    heading = math.atan2(d[1], d[0])
                elif kind == "machine" and freight is not None:
                    fx0, fy0, fx1, fy1 = freight.bounds
                    x, y = float(rng.uniform(fx0, fx1)), float(rng.uniform(fy0, fy1))
                    heading = float(rng.uniform(0, math.pi))
                else:
                    x, y = (
                        float(rng.uniform(x0 + 20, x1 - 20)),
                        float(rng.uniform(y0 + 20, y1 - 20)),
                    )
                    heading = float(rng.uniform(0, math.pi))
                inside = x0 < x < x1 and y0 < y < y1
                if inside and (
                    track_zone is None or not track_zone.buffer(4).contains(Point(x, y))
                ):
                    break
            color = (120, 110, 96) if fixed else tuple(int(c) for c in rng.integers(40, 220, 3))
            rows.append((x, y, heading, float(rng.uniform(lo, hi)), wd, ht, kind, color))
    if not rows:
        return Distractors.empty()
    c = list(zip(*rows, strict=True))
    return Distractors(
        x=c[0], y=c[1], heading=c[2], length_m=c[3], width_m=c[4], height_m=c[5],
        kind=list(c[6]), color=list(c[7]),
    )  # fmt: skip


def site_world(
    spec: ScenarioSpec, site: str, when: dt.datetime, traffic: Traffic, seed: int = 0
) -> World:
    """The world of ``site`` at ``when``: layout as built that day, cars, containers."""
    ss = spec.sites[site]
    crs, origin, extent = site_frame(site)
    d = when.date()
    tracks = [
        Track(t.id, np.asarray(t.points)) for t in ss.tracks if t.built is None or t.built <= d
    ]
    buildings = [
        Building(
            polygon=_rect(b.center[0], b.center[1], b.size[0], b.size[1], b.angle_deg),
            height_m=b.height_m,
            roof_color=hex_rgb(b.color) if b.color else (150, 150, 146),
            kind=b.kind,
            built=b.built,
            removed=b.removed,
            name=b.id,
        )
        for b in ss.buildings
    ]
    walls = [
        Wall(np.asarray(w.points), height_m=w.height_m, built=w.built, removed=w.removed)
        for w in ss.walls
    ]
    return World(
        crs=crs,
        origin=origin,
        extent=extent,
        tracks=tracks,
        cars=traffic.railcars(site, when, tracks),
        buildings=[b for b in buildings if b.exists(d)],
        walls=[w for w in walls if w.exists(d)],
        roads=[Road(np.asarray(r.points), width_m=r.width_m) for r in ss.roads],
        containers=_containers(ss, d, seed),
        distractors=_distractors(ss, site, when, seed, extent),
        ground_seed=_rng(seed, "ground", site).integers(0, 2**31 - 1).item(),
    )


def containers_by_zone(site: str, containers: Containers) -> dict[str, int]:
    """Ground containers per site zone (``other`` outside every zone)."""
    out: dict[str, int] = {}
    for x, y, k in zip(containers.x, containers.y, containers.stack, strict=True):
        z = zone_of(site, float(x), float(y))
        out[z] = out.get(z, 0) + int(k)
    return out


# -- rendering the plan ------------------------------------------------------------------
#: Month -> (chance of snow cover, min, max snow fraction): a Tumangang winter.
_SNOW: dict[int, tuple[float, float, float]] = {
    11: (0.15, 0.15, 0.5),
    12: (0.6, 0.4, 0.95),
    1: (0.7, 0.5, 0.95),
    2: (0.6, 0.4, 0.9),
    3: (0.25, 0.15, 0.6),
}


def conditions_for(spec: ScenarioSpec, plan: PlannedImage) -> Conditions:
    """Imaging conditions of a planned image: sun place/time, sensor, season, haze, lean."""
    site = _site_record(plan.site)
    lon, lat = site.properties["center"]
    rng = _rng(plan.seed, "conditions")
    m = plan.when.month
    p_snow, lo, hi = _SNOW.get(m, (0.0, 0.0, 0.0))
    snow = float(rng.uniform(lo, hi)) if rng.random() < p_snow else 0.0
    coarse = plan.gsd_m >= 2.0
    return Conditions(
        when=plan.when.replace(tzinfo=dt.UTC),
        lat=float(lat),
        lon=float(lon),
        sensor=plan.sensor,
        gsd_m=plan.gsd_m,
        snow=round(snow, 3),
        haze=round(float(rng.uniform(0.0, 0.25)), 3),
        cloud_cover=plan.cloud,
        off_nadir_deg=round(float(rng.uniform(0.0, 3.0 if coarse else 22.0)), 2),
        off_nadir_azimuth_deg=round(float(rng.uniform(0.0, 360.0)), 1),
        noise=0.02 if coarse else round(float(rng.uniform(0.008, 0.016)), 4),
        seed=plan.seed,
    )


def image_bounds(
    extent: tuple[float, float, float, float], plan: PlannedImage
) -> tuple[float, float, float, float]:
    """The part of the AOI extent a (possibly partial) image covers, local metres."""
    x0, y0, x1, y1 = extent
    f = plan.coverage
    if f >= 1.0:
        return extent
    side = int(plan.edge_angle_deg // 90) % 4  # which side of the AOI the strip keeps
    if side == 0:
        return (x0, y0, x0 + f * (x1 - x0), y1)
    if side == 1:
        return (x1 - f * (x1 - x0), y0, x1, y1)
    if side == 2:
        return (x0, y0, x1, y0 + f * (y1 - y0))
    return (x0, y1 - f * (y1 - y0), x1, y1)


def _in(xs: np.ndarray, ys: np.ndarray, b: tuple[float, float, float, float]) -> np.ndarray:
    return (xs >= b[0]) & (xs <= b[2]) & (ys >= b[1]) & (ys <= b[3])


def _atomic_json(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _as_date(value: dt.date | str | None, what: str) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value.date() if isinstance(value, dt.datetime) else value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{what}: expected a date YYYY-MM-DD, got {value!r}") from None


def select_images(
    plan: Sequence[PlannedImage],
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    max_images: int | None = None,
    sites: Sequence[str] | None = None,
) -> list[PlannedImage]:
    """The planned images within [start, end] (dates, inclusive) at ``sites``; at most
    ``max_images`` (required images first, then spread evenly over the rest)."""
    s, e = _as_date(start, "start"), _as_date(end, "end")
    out = [
        p
        for p in plan
        if (s is None or p.when.date() >= s)
        and (e is None or p.when.date() <= e)
        and (not sites or p.site in sites)
    ]
    if max_images is not None and len(out) > max_images:
        req = [p for p in out if p.required][:max_images]
        rest = [p for p in out if not p.required]
        k = max_images - len(req)
        if k > 0 and rest:
            idx = np.unique(np.linspace(0, len(rest) - 1, k).round().astype(int))
            req += [rest[i] for i in idx]
        out = sorted(req, key=lambda p: (p.when, p.site))
    return out


def simulate_scenario(
    name_or_path: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    max_images: int | None = None,
    sites: Sequence[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Render a scenario's images, truth files and ``manifest.json`` into ``out_dir``.

    Each image is ``<site>_<YYYYMMDDTHHMM>_<sensor>.tif`` (written atomically) with its
    ``.truth.geojson``; ``manifest.json`` is written last, atomically, so a failure
    leaves no half manifest. ``start``/``end``/``max_images``/``sites`` render a subset.
    ``progress(done, total, name)`` is called after each image. Returns the manifest.
    """
    from railwatch.simulate.render import render, truth_path, write_geotiff

    start, end = _as_date(start, "start"), _as_date(end, "end")
    spec = load_scenario(name_or_path)
    if sites:
        unknown = sorted(set(sites) - set(spec.sites))
        if unknown:
            raise InputError(
                f"scenario {spec.name!r} has no site {unknown[0]!r} "
                f"(its sites: {', '.join(spec.sites)})"
            )
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder ({exc.strerror})", out) from None
    traffic = build_traffic(spec, seed)
    chosen = select_images(plan_images(spec, seed), start, end, max_images, sites)
    images: list[dict[str, Any]] = []
    for k, plan in enumerate(chosen):
        world = site_world(spec, plan.site, plan.when, traffic, seed)
        bounds = image_bounds(world.extent, plan)
        cond = conditions_for(spec, plan)
        rendered = render(world, cond, bounds=bounds)
        tif = out / f"{plan.stem}.tif"
        write_geotiff(rendered, tif, cond)
        truth = rendered.truth
        rail = truth.kind == "railcar"
        occluded = truth.extra.get("occluded", np.zeros(len(truth), bool)).astype(bool)
        counts = truth.counts()
        visible = truth[~occluded].counts()
        cont = world.containers[_in(world.containers.x, world.containers.y, bounds)]
        full = world.extent
        aoi_cov = ((bounds[2] - bounds[0]) * (bounds[3] - bounds[1])) / (
            (full[2] - full[0]) * (full[3] - full[1])
        )
        site_counts = traffic.counts(plan.site, plan.when)
        images.append(
            {
                "file": tif.name,
                "truth": truth_path(tif).name,
                "site": plan.site,
                "datetime": plan.when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "sensor": plan.sensor,
                "gsd_m": plan.gsd_m,
                "width": int(rendered.image.shape[1]),
                "height": int(rendered.image.shape[0]),
                "cloud_fraction": round(rendered.cloud_fraction, 4),
                "aoi_coverage": round(float(aoi_cov), 4),
                "snow": cond.snow,
                "off_nadir_deg": cond.off_nadir_deg,
                "sun_azimuth_deg": round(rendered.sun_azimuth_deg, 2),
                "sun_elevation_deg": round(rendered.sun_elevation_deg, 2),
                "counts": {k2: v for k2, v in counts.items() if k2 != "containers"},
                "counts_visible": {k2: v for k2, v in visible.items() if k2 != "containers"},
                "covered": counts["covered"],
                "containers": int(cont.stack.sum()),
                "containers_by_zone": containers_by_zone(plan.site, cont),
                "site_counts": site_counts,
                "trains": sorted({str(t) for t in truth.extra.get("train_id", [])[rail]}),
                "required": plan.required,
                "seed": plan.seed,
            }
        )
        if progress is not None:
            progress(k + 1, len(chosen), tif.name)
    manifest = {
        "scenario": spec.name,
        "title": spec.title,
        "seed": seed,
        "generated_by": "railwatch simulate",
        "sites": {
            name: {"crs": site_frame(name)[0], "origin": list(site_frame(name)[1])}
            for name in spec.sites
        },
        "events": [
            {"date": e.date.isoformat(), "name": e.name, **({"site": e.site} if e.site else {})}
            for e in spec.events
        ],
        "images": images,
    }
    _atomic_json(manifest, out / "manifest.json")
    return manifest


__all__ = [
    "SCENARIO_DIR",
    "PlannedImage",
    "conditions_for",
    "container_count",
    "containers_by_zone",
    "image_bounds",
    "list_scenarios",
    "load_scenario",
    "plan_images",
    "select_images",
    "simulate_scenario",
    "site_frame",
    "site_world",
    "zone_of",
]
