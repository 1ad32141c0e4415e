"""Randomised rail-yard layouts: far more variety than any one real site.

:func:`random_world` builds a :class:`~railwatch.simulate.world.World` over a given
extent: a bundle of parallel tracks (straight or curved, any orientation,
sometimes a diverging siding), trains that are dense and long (1 m gaps) or sparse, all
railcar classes with plausible lengths and liveries (plus off-palette colours), covered
loads, and beside the tracks the things a detector must not count: ground container
stacks, trucks, warehouses, platforms, walls, rubble and machines. :func:`random_conditions`
draws seasons, sun angles, haze, clouds, GSD and sensor degradations.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence

import numpy as np
from shapely.geometry import LineString, Polygon

from railwatch.simulate.world import (
    CAR_SPECS,
    CONTAINER_COLORS,
    CONTAINER_LENGTHS_M,
    LIVERIES,
    Building,
    Conditions,
    Containers,
    Distractors,
    Railcars,
    Road,
    Track,
    Wall,
    World,
    place_train,
)
from railwatch.types import RAILCAR_CLASSES

# Typical share of each class in a random train's "dominant" choice.
_CLASS_P = np.array([0.24, 0.2, 0.24, 0.14, 0.08, 0.05, 0.05])


def _centerline(
    rng: np.random.Generator, center: np.ndarray, theta: float, half_len: float, curvature: float
) -> np.ndarray:
    """Vertices of a straight or circular-arc centre line through ``center``."""
    s = np.linspace(-half_len, half_len, max(2, int(2 * half_len / 4.0) + 1))
    if abs(curvature) < 1e-6:
        s = np.array([-half_len, half_len])
        phi = np.full_like(s, theta)
        pts = center + s[:, None] * np.array([math.cos(theta), math.sin(theta)])
        return pts
    phi = theta + s * curvature
    # integrate heading along arc length
    r = 1.0 / curvature
    x = center[0] + r * (np.sin(phi) - math.sin(theta))
    y = center[1] - r * (np.cos(phi) - math.cos(theta))
    return np.stack([x, y], axis=1)


def _offset_line(vertices: np.ndarray, d: float) -> np.ndarray:
    from railwatch.simulate.painters import _offset

    return _offset(vertices, d)


def _random_color(rng: np.random.Generator, cls: str, off_palette: float) -> tuple[int, int, int]:
    if rng.random() < off_palette:
        return tuple(int(v) for v in rng.integers(25, 230, 3))  # type: ignore[return-value]
    base = np.array(LIVERIES[cls][int(rng.integers(len(LIVERIES[cls])))], dtype=float)
    base *= rng.uniform(0.85, 1.15)
    return tuple(int(v) for v in np.clip(base, 0, 255))  # type: ignore[return-value]


def random_train(
    rng: np.random.Generator,
    track: Track,
    start_m: float,
    n: int,
    train_id: str,
    *,
    covered_share: float | None = None,
    gap_m: float = 1.0,
) -> Railcars:
    """A random train of ``n`` cars from ``start_m`` on ``track``."""
    dominant = str(rng.choice(RAILCAR_CLASSES, p=_CLASS_P))
    mixed = rng.random() < 0.5
    classes: list[str] = []
    for _ in range(n):
        if mixed and rng.random() < 0.4:
            classes.append(str(rng.choice(RAILCAR_CLASSES[:4])))
        else:
            classes.append(dominant)
    if rng.random() < 0.35 and n > 2:
        classes[0] = "locomotive"
        if rng.random() < 0.3:
            classes[1] = "locomotive"
    cov_share = float(rng.uniform(0, 0.8)) if covered_share is None else covered_share
    same_len = rng.random() < 0.7
    lens: dict[str, float] = {
        c: float(rng.uniform(*CAR_SPECS[c].length_range)) for c in RAILCAR_CLASSES
    }
    if rng.random() < 0.1:
        lens["locomotive"] = float(rng.uniform(33.0, 36.0))
    lengths, colors, covered, loads, widths = [], [], [], [], []
    off = float(rng.choice([0.0, 0.1, 0.3]))
    train_color = _random_color(rng, dominant, off)
    uniform_color = rng.random() < 0.4
    hop_load = str(rng.choice(["coal", "ore", "none", "ore"]))
    flat_load = str(rng.choice(["containers", "none", "tarp"]))
    for c in classes:
        lengths.append(lens[c] if same_len else float(rng.uniform(*CAR_SPECS[c].length_range)))
        col = train_color if (uniform_color and c == dominant) else _random_color(rng, c, off)
        colors.append(col)
        widths.append(CAR_SPECS[c].width + float(rng.uniform(-0.15, 0.15)))
        cov = c in ("hopper", "flatcar", "other") and rng.random() < cov_share
        covered.append(cov)
        if cov:
            loads.append("tarp")
        elif c == "hopper":
            loads.append(hop_load if rng.random() < 0.8 else "none")
        elif c == "flatcar":
            loads.append(flat_load)
        else:
            loads.append("none")
    return place_train(
        track,
        classes,
        start_m=start_m,
        lengths=lengths,
        colors=colors,
        covered=covered,
        loads=loads,
        widths=widths,
        gap_m=gap_m,
        train_id=train_id,
        rng=rng,
    )


def random_world(
    rng: np.random.Generator,
    extent: tuple[float, float, float, float] = (-600.0, -400.0, 600.0, 400.0),
    *,
    occupancy: float | None = None,
    crs: str = "EPSG:32652",
    origin: tuple[float, float] = (500000.0, 4700000.0),
    month: int | None = None,
    container_lines: float = 0.4,
    container_yards: float = 0.0,
) -> World:
    """A random rail yard covering ``extent`` (local metres); ``month`` sets the trees'
    foliage (leafless November to April); ``container_lines`` is the share of container
    lots staged in long lines rather than blocks, ``container_yards`` the share laid out
    as a container yard (many long rows of mixed 20/40 ft boxes, often away from the
    tracks on open ground; 0 draws none and leaves the layout's random draws as before)."""
    leafless = month is not None and (month >= 11 or month <= 4)
    xmin, ymin, xmax, ymax = extent
    center = np.array([(xmin + xmax) / 2, (ymin + ymax) / 2])
    diag = math.hypot(xmax - xmin, ymax - ymin)
    half_len = diag / 2 + 60.0
    occ = float(rng.uniform(0.3, 0.95)) if occupancy is None else occupancy
    tracks: list[Track] = []
    parts: list[Railcars] = []
    conts: list[Containers] = []
    dists: list[Distractors] = []
    buildings: list[Building] = []
    walls: list[Wall] = []
    roads: list[Road] = []
    n_bundles = 1  # crossing bundles would put lots on top of tracks
    for bi in range(n_bundles):
        theta = float(rng.uniform(0, math.pi))
        curv = (
            0.0
            if rng.random() < 0.55
            else float(rng.uniform(1 / 1500, 1 / 250)) * rng.choice([-1, 1])
        )
        bc = center + (
            rng.uniform(-0.25, 0.25, 2) * [xmax - xmin, ymax - ymin]
            if bi == 0
            else rng.uniform(-0.5, 0.5, 2) * [xmax - xmin, ymax - ymin]
        )
        base = _centerline(rng, bc, theta, half_len, curv)
        n_tr = int(rng.integers(1, 9))
        spacing = float(rng.uniform(4.5, 5.6))
        gauge = 1.520 if rng.random() < 0.6 else 1.435
        offs = (np.arange(n_tr) - (n_tr - 1) / 2) * spacing
        if rng.random() < 0.4 and n_tr > 2:  # wider gaps between groups of tracks
            for _ in range(int(rng.integers(1, 3))):
                k = int(rng.integers(1, n_tr))
                offs[k:] += float(rng.uniform(3, 30))
        bundle: list[Track] = []
        for ti, o in enumerate(offs):
            verts = _offset_line(base, float(o))
            t = Track(f"b{bi}t{ti}", verts, gauge)
            bundle.append(t)
        if rng.random() < 0.35:  # a siding diverging from the outermost track
            parent = bundle[-1]
            s0 = float(rng.uniform(0.2, 0.6)) * parent.length
            p = parent.point_at(np.array([s0, s0 + 1.0]))
            u = (p[1] - p[0]) / np.linalg.norm(p[1] - p[0])
            v = np.array([-u[1], u[0]])
            ss = np.linspace(0, 60, 13)
            lateral = spacing * (1 - np.cos(np.pi * ss / 60)) / 2
            div = p[0] + ss[:, None] * u + lateral[:, None] * v
            rest = div[-1] + np.linspace(4, half_len, 8)[:, None] * u + 0 * v
            bundle.append(Track(f"b{bi}s", np.concatenate([div, rest]), gauge, parent=parent.id))
            offs = np.append(offs, offs[-1] + spacing)
        tracks.extend(bundle)
        for ti, t in enumerate(bundle):
            if rng.random() > occ:
                continue
            if rng.random() < 0.65:  # dense long train
                n = int(rng.integers(5, 70))
                start = float(rng.uniform(0, max(1.0, t.length * 0.6)))
                parts.append(random_train(rng, t, start, n, f"T{bi}{ti}a"))
            else:  # sparse cars / short groups
                s = float(rng.uniform(0, 60))
                k = 0
                while s < t.length:
                    n = int(rng.integers(1, 5))
                    parts.append(random_train(rng, t, s, n, f"T{bi}{ti}g{k}"))
                    s += n * 17 + float(rng.uniform(5, 140))
                    k += 1
        # beside the bundle: lots on both sides
        half_w = (offs.max() - offs.min()) / 2 + 4.0
        mid_off = (offs.max() + offs.min()) / 2
        if rng.random() < 0.7:  # the yard's gravel surface under and around the tracks
            g = float(rng.uniform(105, 150))
            roads.insert(0, Road(_offset_line(base, float(mid_off)),
                                 2 * half_w + float(rng.uniform(0, 30)),
                                 (int(g + 6), int(g), int(g - 12)), surface="gravel"))
        for side in (-1, 1):
            edge = mid_off + side * half_w
            s = -half_len
            while s < half_len:
                lot = float(rng.uniform(25, 110))
                kind = rng.choice(
                    [
                        "empty",
                        "warehouse",
                        "containers",
                        "trucks",
                        "platform",
                        "rubble",
                        "machines",
                        "wall",
                        "trees",
                    ],
                    p=[0.12, 0.18, 0.2, 0.14, 0.1, 0.08, 0.06, 0.06, 0.06],
                )
                gap = float(rng.uniform(2, 12))
                _fill_lot(
                    rng,
                    str(kind),
                    base,
                    curv,
                    theta,
                    bc,
                    s,
                    lot,
                    edge,
                    side,
                    gap,
                    buildings,
                    walls,
                    roads,
                    conts,
                    dists,
                    leafless=leafless,
                    container_lines=container_lines,
                    container_yards=container_yards,
                )
                s += lot + gap
    cars = Railcars.concat(parts) if parts else Railcars.empty()
    # Drop cars whose centre is far out of the extent (speed), keep nearby ones.
    m = 40.0
    keep = (cars.x > xmin - m) & (cars.x < xmax + m) & (cars.y > ymin - m) & (cars.y < ymax + m)
    return World(
        crs=crs,
        origin=origin,
        extent=extent,
        tracks=tracks,
        cars=cars[keep],
        buildings=buildings,
        walls=walls,
        roads=roads,
        containers=Containers.concat(conts) if conts else Containers.empty(),
        distractors=Distractors.concat(dists) if dists else Distractors.empty(),
        ground_seed=int(rng.integers(0, 2**31)),
    )


def _fill_lot(
    rng: np.random.Generator,
    kind: str,
    base: np.ndarray,
    curv: float,
    theta: float,
    bc: np.ndarray,
    s: float,
    lot: float,
    edge: float,
    side: int,
    gap: float,
    buildings: list[Building],
    walls: list[Wall],
    roads: list[Road],
    conts: list[Containers],
    dists: list[Distractors],
    leafless: bool = False,
    container_lines: float = 0.4,
    container_yards: float = 0.0,
) -> None:
    """Place one lot of objects along the track bundle, beyond ``edge`` on ``side``."""
    # A local straight frame at the lot: along u, away from the tracks along side*v.
    sm = s + lot / 2
    if abs(curv) > 1e-6:
        phi = theta + sm * curv
        r = 1.0 / curv
        p = np.array(
            [
                bc[0] + r * (math.sin(phi) - math.sin(theta)),
                bc[1] - r * (math.cos(phi) - math.cos(theta)),
            ]
        )
    else:
        phi = theta
        p = bc + sm * np.array([math.cos(theta), math.sin(theta)])
    u = np.array([math.cos(phi), math.sin(phi)])
    v = np.array([-math.sin(phi), math.cos(phi)])
    d0 = edge + side * float(rng.uniform(1.0, 8.0))

    def at(du: float, dv: float) -> np.ndarray:
        return p + du * u + (d0 + side * dv) * v

    def rect(du: float, dv: float, length: float, width: float) -> np.ndarray:
        c = at(du, dv)
        return np.array(
            [
                c - length / 2 * u - width / 2 * v,
                c + length / 2 * u - width / 2 * v,
                c + length / 2 * u + width / 2 * v,
                c - length / 2 * u + width / 2 * v,
            ]
        )

    lot_l = lot * 0.9
    if kind == "warehouse":
        w = float(rng.uniform(10, 35))
        g = float(rng.uniform(90, 200))
        roof = tuple(int(x) for x in np.clip(rng.normal([g, g, g * 0.98], 12), 30, 240))
        if rng.random() < 0.25:
            roof = tuple(int(x) for x in rng.integers(40, 200, 3))
        k = str(rng.choice(["warehouse", "shed", "canopy"], p=[0.7, 0.2, 0.1]))
        buildings.append(
            Building(rect(0, w / 2, lot_l, w), float(rng.uniform(4, 13)), roof, kind=k)
        )  # type: ignore[arg-type]
    elif kind == "platform":
        w = float(rng.uniform(3, 9))
        buildings.append(
            Building(
                rect(0, w / 2 - 0.8, lot_l, w),
                1.1,
                (int(rng.integers(140, 190)),) * 3,
                kind="platform",
            )
        )
    elif kind == "wall":
        walls.append(
            Wall(np.array([at(-lot_l / 2, 3), at(lot_l / 2, 3)]), float(rng.uniform(2.5, 4.0)), 0.4)
        )
        if rng.random() < 0.5:
            buildings.append(
                Building(rect(-lot_l / 2, 3, 3.2, 3.2), 6.0, (90, 96, 88), kind="watch post")
            )
    elif kind == "containers":
        xs, ys, st, cols, lens = [], [], [], [], []

        def colour() -> tuple[int, ...]:
            if rng.random() < 0.15:
                return tuple(int(x) for x in rng.integers(30, 230, 3))
            return CONTAINER_COLORS[int(rng.integers(len(CONTAINER_COLORS)))]

        def row(dv: float, length_of: Callable[[], float], empty: float, single: float,
                gap: tuple[float, float]) -> None:
            """One row of boxes end to end along the lot, ``dv`` from its near edge."""
            along = -lot_l / 2
            while True:
                length = length_of()
                if along + length > lot_l / 2:
                    break
                if rng.random() >= empty:
                    c = at(along + length / 2, dv)
                    xs.append(c[0])
                    ys.append(c[1])
                    lens.append(length)
                    st.append(1 if rng.random() < single else 2)
                    cols.append(colour())
                along += length + float(rng.uniform(*gap))

        if container_yards > 0 and rng.random() < container_yards:
            # a container yard: rows end to end (mixed lengths, small gaps), rows in pairs
            # or with aisles, often set back from the tracks on open ground
            dv = 1.5 + (float(rng.uniform(3, 40)) if rng.random() < 0.6 else 0.0)
            share40 = float(rng.uniform(0.3, 0.85))
            empty = float(rng.uniform(0.0, 0.3))
            for _ in range(int(rng.integers(2, 9))):
                row(dv, lambda: CONTAINER_LENGTHS_M[1 if rng.random() < share40 else 0],
                    empty, 0.85, (0.3, 1.0))
                dv += 2.44 + (float(rng.uniform(0.3, 0.6)) if rng.random() < 0.5
                              else float(rng.uniform(3.0, 7.0)))
        elif rng.random() < container_lines:
            # staged in long lines, end to end with small gaps, mixed lengths, mostly one
            # high, an aisle (or nothing) between lines: from above, a train without rails
            lines = int(rng.integers(1, 3))
            pitch = 2.8 if rng.random() < 0.3 else float(rng.uniform(5.0, 9.0))
            for r_ in range(lines):
                row(1.5 + r_ * pitch, lambda: float(rng.choice(CONTAINER_LENGTHS_M)),
                    0.08, 0.8, (0.3, 1.5))
        else:
            rows = int(rng.integers(1, 5))
            length = float(rng.choice(CONTAINER_LENGTHS_M))
            n_along = max(1, int(lot_l // (length + 0.4)))
            for r_ in range(rows):
                for j in range(n_along):
                    if rng.random() < 0.25:
                        continue
                    c = at(-lot_l / 2 + (j + 0.5) * (length + 0.4), 1.5 + r_ * 2.8)
                    xs.append(c[0])
                    ys.append(c[1])
                    lens.append(length)
                    st.append(int(rng.integers(1, 4)))
                    cols.append(colour())
        if xs:
            n = len(xs)
            conts.append(
                Containers(
                    xs,
                    ys,
                    np.full(n, phi),
                    np.asarray(lens, float),
                    np.full(n, 2.44),
                    st,
                    np.asarray(cols).reshape(n, 3),
                )
            )
    elif kind == "trucks":
        roads.append(
            Road(np.array([at(-lot / 2 - gap, 4), at(lot / 2 + gap, 4)]), float(rng.uniform(6, 9)))
        )
        n = int(rng.integers(1, max(2, int(lot // 18) + 1)))
        xs, ys, hd, ln, wd, ht, cols = [], [], [], [], [], [], []
        for j in range(n):
            c = at(
                -lot_l / 2 + (j + 0.5) * lot_l / n + float(rng.uniform(-3, 3)),
                4 + float(rng.uniform(-1.5, 1.5)),
            )
            xs.append(c[0])
            ys.append(c[1])
            hd.append(phi + (math.pi if rng.random() < 0.5 else 0) + rng.normal(0, 0.05))
            ln.append(float(rng.choice([8.0, 12.0, 16.5])))
            wd.append(2.5)
            ht.append(3.6)
            cols.append(
                CONTAINER_COLORS[int(rng.integers(len(CONTAINER_COLORS)))]
                if rng.random() < 0.5
                else tuple(int(x) for x in rng.integers(40, 220, 3))
            )
        dists.append(
            Distractors(xs, ys, hd, ln, wd, ht, ["truck"] * n, np.asarray(cols).reshape(n, 3))
        )
    elif kind == "trees":
        n = int(rng.integers(2, 12))
        xs, ys, dia, ht, cols = [], [], [], [], []
        for _ in range(n):
            c = at(float(rng.uniform(-lot_l / 2, lot_l / 2)), float(rng.uniform(4, 25)))
            xs.append(c[0])
            ys.append(c[1])
            dia.append(float(rng.uniform(3, 9)))
            ht.append(float(rng.uniform(4, 14)))
            if leafless:
                g = float(rng.uniform(70, 100))
                cols.append((g + 4, g, g - 8))
            else:
                g = float(rng.uniform(45, 80))
                cols.append((g * 0.8, g * 1.05, g * 0.55))
        dists.append(Distractors(xs, ys, np.zeros(n), dia, dia, ht, ["tree"] * n,
                                 np.asarray(cols).reshape(n, 3)))
    elif kind in ("rubble", "machines"):
        n = int(rng.integers(1, 5))
        xs, ys, hd, ln, wd, ht, cols, kinds = [], [], [], [], [], [], [], []
        for _ in range(n):
            c = at(float(rng.uniform(-lot_l / 2, lot_l / 2)), float(rng.uniform(3, 15)))
            xs.append(c[0])
            ys.append(c[1])
            hd.append(float(rng.uniform(0, math.pi)))
            if kind == "rubble":
                ln.append(float(rng.uniform(4, 16)))
                wd.append(float(rng.uniform(3, 10)))
                ht.append(float(rng.uniform(0.8, 3)))
                g = float(rng.uniform(80, 150))
                cols.append((g + 8, g, g - 10))
                kinds.append("rubble")
            else:
                ln.append(float(rng.uniform(4, 9)))
                wd.append(float(rng.uniform(2, 3.2)))
                ht.append(float(rng.uniform(2, 4)))
                cols.append(tuple(int(x) for x in rng.integers(40, 230, 3)))
                kinds.append("machine")
        dists.append(Distractors(xs, ys, hd, ln, wd, ht, kinds, np.asarray(cols).reshape(n, 3)))


def random_conditions(
    rng: np.random.Generator,
    gsd_choices: Sequence[float] = (0.3, 0.5, 0.8),
    lat: float | None = None,
) -> Conditions:
    """Random season, time of day (sun), haze, clouds, GSD and sensor degradations."""
    year = int(rng.integers(2018, 2025))
    day = dt.datetime(year, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=float(rng.uniform(0, 365)))
    lat = float(rng.uniform(25, 60)) if lat is None else lat
    lon = float(rng.uniform(-10, 150))
    # local solar time 9:30..14:00 -> UTC
    solar = float(rng.uniform(9.5, 14.0))
    utc_h = (solar - lon / 15.0) % 24
    when = day.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(hours=utc_h)
    winter = when.month in (12, 1, 2) or (when.month in (3, 11) and rng.random() < 0.5)
    snow = float(rng.uniform(0.2, 1.0)) if winter and rng.random() < 0.6 else 0.0
    cloud = 0.0 if rng.random() < 0.7 else float(rng.uniform(0.03, 0.5))
    gsd = float(rng.choice(list(gsd_choices)))
    return Conditions(
        when=when,
        lat=lat,
        lon=lon,
        sensor="synthetic",
        gsd_m=gsd,
        snow=snow,
        haze=float(rng.uniform(0, 0.5)) if rng.random() < 0.5 else 0.0,
        cloud_cover=cloud,
        off_nadir_deg=float(rng.uniform(0, 20)),
        off_nadir_azimuth_deg=float(rng.uniform(0, 360)),
        noise=float(rng.uniform(0.003, 0.03)),
        blur=float(rng.uniform(0.5, 1.6)),
        jpeg_quality=int(rng.choice([0, 0, 95, 85, 75, 60])),
        seed=int(rng.integers(0, 2**31)),
    )


def occupied_ground(world: World) -> list[Polygon]:
    """Where a new building may not go: around standing buildings (10 m), tracks (12 m)
    and roads (6 m past their edges), in local metres."""
    occ = [Polygon(b.polygon).buffer(10) for b in world.buildings]
    occ += [LineString(t.vertices).buffer(12) for t in world.tracks]
    occ += [LineString(r.vertices).buffer(r.width_m / 2 + 6) for r in world.roads]
    return occ


def moving_trains(rng: np.random.Generator, world: World) -> Railcars:
    """Trains of 3 to 24 cars on about half of ``world``'s tracks, at random places: the
    traffic of one acquisition (the cars differ from image to image)."""
    parts = []
    for k, t in enumerate(world.tracks):
        if rng.random() < 0.5:
            n = int(rng.integers(3, 25))
            parts.append(
                random_train(rng, t, float(rng.uniform(0, max(t.length - 400, 1))), n, f"M{k}")
            )
    return Railcars.concat(parts) if parts else Railcars.empty()
