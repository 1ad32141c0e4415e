"""Seeded synthetic site images for the facility-change tests (no tests in this module).

A small world in UTM 52N (EPSG:32652) near Tumangang: textured ground, a track band,
buildings with sun shadows, optional snow, trains and a global brightness change. Each
call writes one GeoTIFF; the same world can be drawn with different conditions, a pixel
shift (misregistration) or extra buildings.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from shapely.affinity import translate
from shapely.geometry import Polygon, box
from skimage.draw import polygon as draw_polygon

from railwatch.types import Detections, Site

CRS = "EPSG:32652"
X0, Y0 = 716_000.0, 4_698_000.0  # lower-left of the world, metres
SIZE = 400.0


@dataclass
class Building:
    poly: Polygon  # local metres from (X0, Y0)
    height: float = 8.0
    roof: tuple[float, float, float] = (0.55, 0.52, 0.50)


@dataclass
class Conditions:
    sun_az: float = 150.0  # degrees from north, clockwise
    sun_el: float = 40.0
    snow: float = 0.0  # 0..1
    gain: float = 1.0
    trains: int = 0
    shift_px: tuple[float, float] = (0.0, 0.0)  # content moved right/down, pixels
    gsd: float = 1.0
    seed: int = 0
    cloud: tuple[float, float, float, float] | None = None  # opaque cloud, local box
    # A cloud's soft shadow: (centre x, centre y, radius, darkening 0..1), local metres
    shade: tuple[float, float, float, float] | None = None


@dataclass
class World:
    seed: int = 0
    buildings: list[Building] = field(default_factory=list)
    tracks_y: tuple[float, ...] = (120.0, 128.0, 136.0)


def site() -> Site:
    """The synthetic site: AOI is the world square, two zones (south yard, north depot)."""
    tr = Transformer.from_crs(CRS, 4326, always_xy=True)

    def ll(p: Polygon) -> Polygon:
        return shapely.transform(p, tr.transform, interleaved=False)

    aoi = ll(box(X0 + 10, Y0 + 10, X0 + SIZE - 10, Y0 + SIZE - 10))
    zones = {
        "track_area": ll(box(X0, Y0, X0 + SIZE, Y0 + 160)),
        "freight_handling": ll(box(X0, Y0 + 160, X0 + SIZE, Y0 + SIZE)),
    }
    return Site("synth", "Synthetic yard", aoi, zones, properties={"local_crs": CRS})


def base_world(seed: int = 0) -> World:
    """Three old buildings north of the tracks."""
    return World(
        seed=seed,
        buildings=[
            Building(box(40, 200, 90, 230), 9.0, (0.60, 0.58, 0.55)),
            Building(box(140, 260, 170, 320), 6.0, (0.45, 0.30, 0.28)),
            Building(box(300, 180, 340, 200), 5.0, (0.35, 0.42, 0.55)),
        ],
    )


def _noise(rng: np.random.Generator, shape: tuple[int, int], scale: int) -> np.ndarray:
    small = rng.normal(size=(shape[0] // scale + 2, shape[1] // scale + 2))
    from scipy import ndimage

    big = ndimage.zoom(small, scale, order=3)[: shape[0], : shape[1]]
    return big / (big.std() + 1e-9)


def render(world: World, cond: Conditions) -> tuple[np.ndarray, Affine, Detections]:
    """(3, H, W) uint8 image, its transform and the true railcars (map coordinates)."""
    gsd = cond.gsd
    n = int(SIZE / gsd)
    sx, sy = cond.shift_px
    # Content moved right/down by (sx, sy) px == the image's origin moved left/up.
    transform = Affine(gsd, 0, X0 - sx * gsd, 0, -gsd, Y0 + SIZE + sy * gsd)
    wrng = np.random.default_rng(world.seed)
    crng = np.random.default_rng(cond.seed + 1000)
    shape = (n, n)
    # Ground: the same texture every time (it is the ground), plus sensor noise.
    tex = 0.6 * _noise(wrng, shape, max(1, int(12 / gsd))) + 0.4 * wrng.normal(size=shape)
    base = np.array([0.36, 0.34, 0.26])
    img = base[None, None, :] * (1 + 0.12 * tex[..., None])

    def px(poly: Polygon) -> tuple[np.ndarray, np.ndarray]:
        # Pixel (r, c) covers [c, c+1) x [r, r+1) in grid units; its centre is at +0.5.
        xs, ys = np.asarray(poly.buffer(-1e-3 * gsd, join_style="mitre").exterior.coords).T
        cols = xs / gsd - 0.5
        rows = (SIZE - ys) / gsd - 0.5
        return draw_polygon(rows, cols, shape)

    for ty in world.tracks_y:  # ballast band and two dark rails
        rr, cc = px(box(0, ty - 2.0, SIZE, ty + 2.0))
        img[rr, cc] = np.array([0.45, 0.44, 0.42]) * (1 + 0.05 * tex[rr, cc, None])
        for off in (-0.8, 0.8):
            rr, cc = px(box(0, ty + off - 0.15, SIZE, ty + off + 0.15))
            img[rr, cc] = 0.2
    if cond.snow > 0:
        snow_col = np.array([0.92, 0.93, 0.95])
        img = img * (1 - cond.snow) + snow_col * cond.snow * (1 + 0.02 * tex[..., None])
    # Shadows first (on the ground), then roofs.
    az = np.radians(cond.sun_az)
    for b in world.buildings:
        length = b.height / np.tan(np.radians(cond.sun_el))
        dx, dy = -np.sin(az) * length, -np.cos(az) * length
        from shapely.affinity import translate

        shadow = b.poly.union(translate(b.poly, dx, dy)).convex_hull
        rr, cc = px(shadow)
        img[rr, cc] *= 0.42
    for b in world.buildings:
        rr, cc = px(b.poly)
        roof = np.array(b.roof) * (1 - cond.snow) + np.array([0.9, 0.9, 0.92]) * cond.snow
        img[rr, cc] = roof * (1 + 0.03 * tex[rr, cc, None])
    cars: list[np.ndarray] = []
    for _ in range(cond.trains):  # a train of cars on a random track
        ty = world.tracks_y[crng.integers(len(world.tracks_y))]
        x = crng.uniform(0, SIZE - 120)
        for k in range(int(crng.integers(3, 7))):
            col = crng.uniform(0.1, 0.8, size=3)
            car = box(x + k * 16, ty - 1.6, x + k * 16 + 15, ty + 1.6)
            rr, cc = px(car)
            img[rr, cc] = col
            # Where the (misregistered) image says the car is.
            off = [X0 - sx * gsd, Y0 + sy * gsd]
            cars.append(np.asarray(car.exterior.coords)[:4] + off)
    if cond.shade is not None:  # darker by up to ``k`` inside, fading over ~40 m
        cx, cy, rad, k = cond.shade
        xs = (np.arange(n) + 0.5) * gsd
        d = np.hypot(xs[None, :] - cx, (SIZE - xs)[:, None] - cy)
        img = img * (1 - k * np.clip((rad - d) / 40.0 + 0.5, 0, 1))[..., None]
    if cond.cloud is not None:  # bright, grey, smooth
        rr, cc = px(box(*cond.cloud))
        img[rr, cc] = 0.9
    img = img * cond.gain + crng.normal(scale=0.01, size=img.shape)
    out = np.clip(img * 255, 0, 255).astype(np.uint8).transpose(2, 0, 1)
    n_cars = len(cars)
    truth = Detections(
        footprints=np.asarray(cars).reshape(n_cars, 4, 2),
        kind=["railcar"] * n_cars,
        cls=["boxcar"] * n_cars,
        score=np.ones(n_cars),
        covered=np.zeros(n_cars, bool),
        color=np.zeros((n_cars, 3)),
        length_m=np.full(n_cars, 15.0),
        crs=CRS,
    )
    return out, transform, truth


def write(path: Path, world: World, cond: Conditions, when: dt.datetime | None = None) -> Path:
    """Render and write a GeoTIFF (its true railcars in ``truth(path)``)."""
    data, transform, det = render(world, cond)
    _TRUTH[str(path)] = det
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=3,
        dtype="uint8",
        crs=CRS,
        transform=transform,
    ) as dst:
        dst.write(data)
        if when is not None:
            dst.update_tags(ACQUISITION_DATETIME=when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return path


_TRUTH: dict[str, Detections] = {}


def truth(path: Path) -> Detections:
    """The railcars drawn into the image written at ``path``."""
    return _TRUTH[str(path)]


def day(n: int) -> dt.datetime:
    """A date ``n`` months after 2021-01-15."""
    y, m = divmod(n, 12)
    return dt.datetime(2021 + y, m + 1, 15, 2, 0)


#: The new building of the change tests: 1,200 m², in the freight-handling zone (local m).
NEW = box(220, 250, 260, 280)


def with_new(seed: int = 0) -> World:
    """The base world with the new building standing."""
    w = base_world(seed)
    w.buildings.append(Building(NEW, 7.0, (0.62, 0.60, 0.58)))
    return w


def new_geom() -> Polygon:
    """The new building's footprint in map coordinates."""
    return translate(NEW, X0, Y0)


def series(tmp: Path, name: str, conds: list[Conditions], built: list[bool]
           ) -> list[tuple[Path, dt.datetime, Detections]]:
    """A rendered series: image ``k`` under ``conds[k]`` on ``day(2 * k)``, the new building
    standing where ``built[k]``; (path, time, true railcars) per image."""
    out = []
    for k, (cond, b) in enumerate(zip(conds, built, strict=True)):
        path = write(tmp / f"{name}{k}.tif", with_new() if b else base_world(), cond, day(2 * k))
        out.append((path, day(2 * k), truth(path)))
    return out


def fail_snowy_alignment(monkeypatch) -> None:
    """Make the change finder's imagery alignment fail for images much brighter than the
    reference (the snowy ones), as deep snow's missing ground edges do."""
    import railwatch.analytics.changes.find as find
    from railwatch.analytics.coregister import Alignment

    real = find.estimate_shift

    def snow_fails(ref, mov, ref_valid=None, mov_valid=None, **kw):
        if float(np.mean(mov)) > float(np.mean(ref)) + 0.08:
            return Alignment(0.0, 0.0, 0.02, np.nan, False, "too weak a correlation (0.02)")
        return real(ref, mov, ref_valid, mov_valid, **kw)

    monkeypatch.setattr(find, "estimate_shift", snow_fails)
