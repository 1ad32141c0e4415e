"""Render a :class:`~railwatch.simulate.world.World` into a georeferenced satellite image.

The pipeline works in metric units: everything is drawn on a supersampled canvas
(about 0.25 m pixels, at least 2x the GSD unless the canvas would grow too large), then
area-averaged onto the sensor grid (0.3, 0.5, 0.8 m or a 3 m PlanetScope-like product).
Order: terrain (season, snow) -> water (ice in winter) -> roads -> track beds,
sleepers, rails -> platforms -> sun shadows of everything that stands up (azimuth and
elevation from ``astral`` for the site, date and time; length = height / tan(elevation))
-> ground containers, trucks and rubble, railcars, buildings and walls (tall things lean
away from the sensor by ``height * tan(off_nadir)``) -> downsampling -> illumination
gain -> sensor PSF (Gaussian) -> clouds (fractal noise) and their shadows -> haze ->
sensor noise -> 8 bits -> JPEG compression. Everything random comes from
``Conditions.seed`` and ``World.ground_seed``,
so a seed gives byte-identical output.

The truth is a :class:`railwatch.Detections` of railcars and ground containers in the
image's UTM CRS (ground footprints), with extra columns ``train_id``, ``track_id`` and
``occluded`` (centre under cloud or under a roof/canopy).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from affine import Affine
from pyproj import CRS

from railwatch.errors import InputError
from railwatch.simulate import painters as P
from railwatch.simulate.sun import lean_vector, shadow_vector, sun_position, sun_unit_vector
from railwatch.simulate.textures import fractal_noise, smoothstep
from railwatch.simulate.world import Conditions, Containers, Railcars, World
from railwatch.types import Detections

#: Finest canvas pixel (metres) and the largest canvas (pixels) the renderer builds.
CANVAS_RES_M = 0.25
MAX_CANVAS_PX = 16_000_000


@dataclass
class Rendered:
    """A rendered image with its georeferencing and ground truth.

    ``pixel_footprints`` are the visible (lean-displaced) footprints of the truth objects
    in sensor pixel coordinates (column, row; pixel (0, 0) spans [0, 1) x [0, 1)).
    """

    image: np.ndarray  # (H, W, 3) uint8 RGB
    transform: Affine
    crs: CRS
    truth: Detections
    cloud_mask: np.ndarray  # (H, W) bool
    pixel_footprints: np.ndarray  # (N, 4, 2) float64
    conditions: Conditions
    sun_azimuth_deg: float = 0.0
    sun_elevation_deg: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def cloud_fraction(self) -> float:
        return float(self.cloud_mask.mean()) if self.cloud_mask.size else 0.0


def supersampling(gsd: float, width: int, height: int) -> int:
    """Canvas pixels per sensor pixel (per axis) for a ``width`` x ``height`` image.

    Aims at :data:`CANVAS_RES_M` canvas pixels (at least 2x for fine GSDs) and shrinks
    while the canvas would exceed :data:`MAX_CANVAS_PX`."""
    ss = max(2, round(gsd / CANVAS_RES_M))
    while ss > 1 and width * height * ss * ss > MAX_CANVAS_PX:
        ss -= 1
    return ss


def _stable_seed(*parts: Any) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def _in_bounds(
    x: np.ndarray, y: np.ndarray, b: tuple[float, float, float, float], margin: float
) -> np.ndarray:
    return (x >= b[0] - margin) & (x <= b[2] + margin) & (y >= b[1] - margin) & (y <= b[3] + margin)


def render(
    world: World, conditions: Conditions, bounds: tuple[float, float, float, float] | None = None
) -> Rendered:
    """Render ``world`` under ``conditions`` over ``bounds`` (local metres; default extent).

    Buildings and walls are drawn only if they stand on the acquisition date.
    """
    gsd = float(conditions.gsd_m)
    xmin, ymin, xmax, ymax = bounds if bounds is not None else world.extent
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"empty render bounds {(xmin, ymin, xmax, ymax)}")
    width = max(1, math.ceil((xmax - xmin) / gsd - 1e-6))
    height = max(1, math.ceil((ymax - ymin) / gsd - 1e-6))
    xmax, ymin = xmin + width * gsd, ymax - height * gsd
    b = (xmin, ymin, xmax, ymax)
    ss = supersampling(gsd, width, height)
    res = gsd / ss
    when = conditions.when
    az, el = sun_position(when, conditions.lat, conditions.lon)
    light = P.Light(
        shadow=shadow_vector(az, el),
        lean=lean_vector(conditions.off_nadir_deg, conditions.off_nadir_azimuth_deg),
        sun=sun_unit_vector(az, el),
        snow=conditions.snow,
    )
    rng = np.random.default_rng(conditions.seed)
    ground_rng = np.random.default_rng(
        [world.ground_seed, _stable_seed(round(xmin, 2), round(ymax, 2), round(res, 4))]
    )
    margin = 60.0
    cars = world.cars[_in_bounds(world.cars.x, world.cars.y, b, margin)]
    cont = world.containers[_in_bounds(world.containers.x, world.containers.y, b, margin)]
    dis = world.distractors[_in_bounds(world.distractors.x, world.distractors.y, b, margin)]
    buildings = [bd for bd in world.buildings if bd.exists(when)]
    walls = [w for w in world.walls if w.exists(when)]
    low = [bd for bd in buildings if bd.kind == "platform"]
    high = [bd for bd in buildings if bd.kind != "platform"]

    cv = P.Canvas(xmin, ymax, res, width * ss, height * ss)
    snow = conditions.snow
    P.paint_ground(cv, ground_rng, when.month, conditions.lat, snow)
    P.paint_water(cv, world.water, when.month, snow, np.random.default_rng(world.ground_seed + 5))
    P.paint_roads(cv, world.roads, snow, np.random.default_rng(world.ground_seed + 3))
    P.paint_tracks(cv, world.tracks, snow, np.random.default_rng(world.ground_seed + 7))
    darkness = float(np.clip(0.52 - 0.2 * conditions.haze, 0.25, 0.6))
    if low:
        empty_cars, empty_cont = Railcars.empty(), Containers.empty()
        pmask = P.paint_shadows(
            cv,
            light,
            cars=empty_cars,
            containers=empty_cont,
            distractors=dis[:0],
            buildings=low,
            walls=[],
        )
        P.apply_shadow(cv, pmask, darkness)
        P.paint_buildings(cv, low, [], light, snow, low=True)
    mask = P.paint_shadows(
        cv, light, cars=cars, containers=cont, distractors=dis, buildings=high, walls=walls
    )
    P.apply_shadow(cv, mask, darkness)
    P.paint_distractors(cv, dis, light, rng, snow)
    P.paint_containers(cv, cont, light, snow)
    seeds = [
        _stable_seed(
            cars.train_id[i], cars.cls[i], cars.length_m[i].round(2), cars.color[i].tolist()
        )
        for i in range(len(cars))
    ]
    P.paint_cars(cv, cars, light, seeds, snow)
    P.paint_buildings(cv, high, walls, light, snow, low=False)

    img = cv.img if ss == 1 else cv2.resize(cv.img, (width, height), interpolation=cv2.INTER_AREA)
    out = img.astype(np.float32)
    gain = 0.8 + 0.3 * math.sin(math.radians(max(el, 5.0)))
    out *= gain
    sigma = 0.45 * conditions.blur + (0.25 if gsd >= 2.0 else 0.0)
    if sigma > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    cloud_alpha = _clouds(out, b, gsd, conditions, light, rng)
    if conditions.haze > 0:
        hz = fractal_noise(rng, (max(2, height // 64), max(2, width // 64)), 8, octaves=2)
        hz = cv2.resize(hz, (width, height), interpolation=cv2.INTER_LINEAR)
        a = (0.55 * conditions.haze * (1 + 0.25 * hz)).clip(0, 0.9)
        out *= (1.0 - a)[..., None]
        out += a[..., None] * np.array([196.0, 202.0, 212.0], np.float32)
    if conditions.noise > 0:
        # OpenCV's generator is much faster than numpy's here; seeded from the image seed.
        cv2.setRNGSeed(int(rng.integers(1, 2**31)))
        noise = np.empty_like(out)
        cv2.randn(noise, 0.0, conditions.noise * 255.0)
        out += noise
    out += 0.5
    np.clip(out, 0, 255, out=out)
    image = out.astype(np.uint8)
    if conditions.jpeg_quality:
        ok, buf = cv2.imencode(
            ".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(conditions.jpeg_quality)]
        )
        if ok:
            image = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    cloud_mask = cloud_alpha > 0.5

    transform = Affine(gsd, 0.0, world.origin[0] + xmin, 0.0, -gsd, world.origin[1] + ymax)
    truth, pix = _truth(world, cars, cont, b, gsd, light, cloud_alpha, high)
    return Rendered(
        image=image,
        transform=transform,
        crs=CRS.from_user_input(world.crs),
        truth=truth,
        cloud_mask=cloud_mask,
        pixel_footprints=pix,
        conditions=conditions,
        sun_azimuth_deg=az,
        sun_elevation_deg=el,
        meta={"supersampling": ss, "canvas_res_m": res},
    )


def _clouds(
    out: np.ndarray,
    b: tuple[float, float, float, float],
    gsd: float,
    cond: Conditions,
    light: P.Light,
    rng: np.random.Generator,
) -> np.ndarray:
    """Blend clouds and their shadows into ``out`` (in place); returns the cloud alpha."""
    h, w = out.shape[:2]
    if cond.cloud_cover <= 0:
        return np.zeros((h, w), np.float32)
    xmin, ymin, xmax, ymax = b
    cloud_h = float(rng.uniform(800.0, 2000.0))
    off = light.shadow * cloud_h  # ground shadow = cloud position + off
    gx0 = min(xmin, xmin - off[0]) - 50
    gx1 = max(xmax, xmax - off[0]) + 50
    gy0 = min(ymin, ymin - off[1]) - 50
    gy1 = max(ymax, ymax - off[1]) + 50
    cell = max(4.0 * gsd, 4.0, math.sqrt((gx1 - gx0) * (gy1 - gy0) / 4e5))
    gw, gh = math.ceil((gx1 - gx0) / cell) + 1, math.ceil((gy1 - gy0) / cell) + 1
    field_ = fractal_noise(rng, (gh, gw), 400.0 / cell, octaves=6, persistence=0.55)
    detail = fractal_noise(rng, (gh, gw), 60.0 / cell, octaves=3, persistence=0.6)

    # Clouds are smooth: evaluate them on a grid 2x coarser than the image, then upsample.
    f = 2 if min(h, w) >= 64 else 1
    hs, ws = math.ceil(h / f), math.ceil(w / f)

    def sample(src: np.ndarray, dx: float, dy: float) -> np.ndarray:
        k = gsd * f / cell
        m = np.array(
            [
                [k, 0.0, (xmin + dx - gx0) / cell + 0.5 * k - 0.5],
                [0.0, k, (gy1 - (ymax + dy)) / cell + 0.5 * k - 0.5],
            ],
            np.float64,
        )
        return cv2.warpAffine(
            src, m, (ws, hs), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )

    def up(a: np.ndarray) -> np.ndarray:
        if f == 1:
            return a
        return cv2.resize(a, (ws * f, hs * f), interpolation=cv2.INTER_LINEAR)[:h, :w]

    # The threshold puts about `cloud_cover` of the whole cloud field under cloud.
    q = 1.0 - cond.cloud_cover
    thr = float(np.quantile(field_[::2, ::2], q)) if cond.cloud_cover < 1 else -1e9
    alpha = up(smoothstep(sample(field_, 0.0, 0.0), thr - 0.3, thr + 0.3))
    shadow_a = up(smoothstep(sample(field_, -off[0], -off[1]), thr - 0.3, thr + 0.3))
    lum = up((232.0 + 14.0 * np.tanh(sample(detail, 0.0, 0.0))).astype(np.float32))
    out *= (1.0 - 0.5 * shadow_a * (1.0 - alpha))[..., None]
    out *= (1.0 - alpha)[..., None]
    out += (lum * alpha)[..., None] * np.array([1.0, 1.0, 1.02], np.float32)
    return alpha


def _truth(
    world: World,
    cars: Railcars,
    cont: Containers,
    b: tuple[float, float, float, float],
    gsd: float,
    light: P.Light,
    cloud_alpha: np.ndarray,
    roofs: list[Any],
) -> tuple[Detections, np.ndarray]:
    xmin, _ymin, _xmax, ymax = b
    cars = cars[_in_bounds(cars.x, cars.y, b, 0.0)]
    cont = cont[_in_bounds(cont.x, cont.y, b, 0.0)]
    h, w = cloud_alpha.shape
    overhead = np.zeros((h, w), np.uint8)
    if roofs:
        cvm = P.Canvas(xmin, ymax, gsd, w, h)
        for bd in roofs:
            if bd.kind in ("warehouse", "canopy", "shed") and bd.height_m > 4.5:
                cvm.poly(bd.polygon + light.lean * bd.height_m, 255, target=overhead, convex=False)
    n_c, n_k = len(cars), len(cont)
    corners = np.concatenate([cars.corners(), cont.corners()]).reshape(-1, 4, 2)
    heights = np.concatenate([cars.height_m, cont.height_m])
    visible = corners + light.lean[None, None, :] * heights[:, None, None]
    pix = np.stack([(visible[..., 0] - xmin) / gsd, (ymax - visible[..., 1]) / gsd], axis=-1)
    cpx = pix.mean(axis=1)
    ci = np.clip(cpx[:, 0].astype(int), 0, w - 1)
    ri = np.clip(cpx[:, 1].astype(int), 0, h - 1)
    occluded = (cloud_alpha[ri, ci] > 0.5) | (overhead[ri, ci] > 127)
    det = Detections(
        footprints=world.to_map(corners),
        kind=["railcar"] * n_c + ["container"] * n_k,
        cls=list(cars.cls) + [""] * n_k,
        score=np.ones(n_c + n_k),
        covered=np.concatenate([cars.covered, np.zeros(n_k, bool)]),
        color=np.concatenate([cars.color, cont.color]).reshape(-1, 3),
        length_m=np.concatenate([cars.length_m, cont.length_m]),
        crs=world.crs,
        extra={
            "train_id": np.asarray(list(cars.train_id) + [""] * n_k, dtype=object),
            "track_id": np.asarray(list(cars.track_id) + [""] * n_k, dtype=object),
            "occluded": occluded.astype(bool),
        },
        meta={"gsd_m": gsd},
    )
    return det, pix


# -- writing ----------------------------------------------------------------------------


def truth_path(image_path: str | os.PathLike[str]) -> Path:
    """``scene.tif`` -> ``scene.truth.geojson``."""
    p = Path(image_path)
    return p.with_name(p.name.rsplit(".", 1)[0] + ".truth.geojson")


def write_geotiff(
    rendered: Rendered,
    path: str | os.PathLike[str],
    conditions: Conditions | None = None,
    *,
    truth: bool = True,
) -> Path:
    """Write a tiled, deflate-compressed RGB GeoTIFF with acquisition tags, atomically.

    Tags: ``ACQUISITION_DATETIME`` (ISO 8601, Z), ``TIFFTAG_DATETIME``
    (``YYYY:MM:DD HH:MM:SS``), ``SENSOR``, ``GSD``. With ``truth`` the ground truth goes
    to ``<stem>.truth.geojson`` beside it (detections schema, no score).
    """
    import rasterio

    from railwatch.geojson import write_geojson

    cond = conditions or rendered.conditions
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder ({exc.strerror})", path) from None
    when = cond.when.astimezone(dt.UTC)
    h, w = rendered.image.shape[:2]
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": 3,
        "dtype": "uint8",
        "crs": rendered.crs,
        "transform": rendered.transform,
        "compress": "deflate",
        "zlevel": 1,  # fast: rendered noise barely compresses at higher levels
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "photometric": "RGB",
        "interleave": "pixel",
    }
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"cannot write the image ({exc.strerror})", path) from None
    os.close(fd)
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.moveaxis(rendered.image, -1, 0))
            dst.update_tags(
                ACQUISITION_DATETIME=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                TIFFTAG_DATETIME=when.strftime("%Y:%m:%d %H:%M:%S"),
                SENSOR=cond.sensor,
                GSD=f"{cond.gsd_m:g}",
                CLOUD_FRACTION=f"{rendered.cloud_fraction:.4f}",
                SUN_AZIMUTH=f"{rendered.sun_azimuth_deg:.2f}",
                SUN_ELEVATION=f"{rendered.sun_elevation_deg:.2f}",
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if truth:
        det = rendered.truth
        det.meta.update(
            {
                "image": path.name,
                "acquired": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "sensor": cond.sensor,
                "gsd_m": cond.gsd_m,
            }
        )
        write_geojson(det, truth_path(path), include_score=False)
    return path
