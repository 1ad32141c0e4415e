"""Renderer: truth matches pixels, determinism, sun shadows, georeferencing, GeoTIFF output."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
import rasterio

from railwatch.simulate.layout import random_train, random_world
from railwatch.simulate.render import render, truth_path, write_geotiff
from railwatch.simulate.sun import shadow_vector, sun_position
from railwatch.simulate.world import (
    Building,
    Conditions,
    Railcars,
    Track,
    World,
    place_train,
)

RED = (230, 30, 30)
ORIGIN = (631845.0, 4697842.0)


def _one_car_world(x: float, y: float, heading: float, length: float, width: float,
                   cls: str = "boxcar") -> World:
    cars = Railcars(
        x=[x], y=[y], heading=[heading], length_m=[length], width_m=[width], cls=[cls],
        color=[RED], covered=[False], load=["none"], train_id=["T1"], track_id=["t0"],
    )
    return World(crs="EPSG:32652", origin=ORIGIN, extent=(-40.0, -30.0, 40.0, 30.0), cars=cars)


def _calm(gsd: float, **kw: object) -> Conditions:
    base = dict(gsd_m=gsd, noise=0.0, seed=3, when=dt.datetime(2023, 6, 20, 3, 0, tzinfo=dt.UTC))
    base.update(kw)
    return Conditions(**base)  # type: ignore[arg-type]


def _red_mask(img: np.ndarray) -> np.ndarray:
    """Pixels more than half covered by the red car (threshold half-way to the ground)."""
    rg = img[..., 0].astype(float) - img[..., 1].astype(float)
    return rg > (np.percentile(rg, 99.9) + np.median(rg)) / 2


@pytest.mark.parametrize(
    ("gsd", "cls"),
    [(0.3, "boxcar"), (0.5, "boxcar"), (0.8, "boxcar"), (0.3, "tank"), (0.5, "hopper"),
     (0.3, "locomotive"), (0.5, "passenger")],
)
def test_single_car_footprint_within_a_pixel(gsd: float, cls: str) -> None:
    world = _one_car_world(3.3, -2.1, 0.0, 15.3, 3.2, cls)
    r = render(world, _calm(gsd))
    mask = _red_mask(r.image)
    rows, cols = np.nonzero(mask)
    assert len(rows) > 0
    # Truth footprint (map coordinates) -> pixels through the image's geotransform.
    fp = r.truth.footprints[0]
    t = r.transform
    px = np.stack([(fp[:, 0] - t.c) / t.a, (fp[:, 1] - t.f) / t.e], axis=1)
    # Measured edges: median over the car's middle rows / columns (pixel-edge coordinates).
    mid_r = np.arange(rows.min() + 1, rows.max())
    mid_c = np.arange(cols.min() + 4, cols.max() - 3)
    left = np.median([np.nonzero(mask[i])[0].min() for i in mid_r])
    right = np.median([np.nonzero(mask[i])[0].max() + 1 for i in mid_r])
    top = np.median([np.nonzero(mask[:, j])[0].min() for j in mid_c])
    bottom = np.median([np.nonzero(mask[:, j])[0].max() + 1 for j in mid_c])
    assert abs(left - px[:, 0].min()) <= 1.0
    assert abs(right - px[:, 0].max()) <= 1.0
    assert abs(top - px[:, 1].min()) <= 1.0
    assert abs(bottom - px[:, 1].max()) <= 1.0
    # measured size in metres, to within one pixel
    assert abs((right - left) * gsd - 15.3) <= gsd + 1e-9
    assert abs((bottom - top) * gsd - 3.2) <= gsd + 1e-9


def test_rotated_car_measured_with_min_area_rect() -> None:
    gsd = 0.5
    heading = math.radians(30.0)
    world = _one_car_world(-4.0, 6.0, heading, 16.0, 3.2)
    r = render(world, _calm(gsd))
    rows, cols = np.nonzero(_red_mask(r.image))
    # A filled rectangle's second moments give its sides: var = side^2 / 12.
    x, y = cols + 0.5, rows + 0.5
    cov = np.cov(np.stack([x, y]))
    evals, evecs = np.linalg.eigh(cov)
    length_px = math.sqrt(12 * (evals[1] + 1 / 12))
    width_px = math.sqrt(12 * (evals[0] + 1 / 12))
    axis = evecs[:, 1]
    angle = math.degrees(math.atan2(axis[1], axis[0])) % 180
    pix = r.pixel_footprints[0]
    assert abs(x.mean() - pix[:, 0].mean()) <= 1.0
    assert abs(y.mean() - pix[:, 1].mean()) <= 1.0
    assert abs(length_px - 16.0 / gsd) <= 1.0
    assert abs(width_px - 3.2 / gsd) <= 1.0
    assert abs(angle - 150.0) < 2.0  # 30 deg north of east = -30 deg in y-down pixels


def test_truth_in_map_coordinates_and_geojson() -> None:
    world = _one_car_world(10.0, -5.0, 0.0, 15.0, 3.2)
    r = render(world, _calm(0.5))
    assert r.crs.to_epsg() == 32652
    c = r.truth.centers[0]
    assert c == pytest.approx((ORIGIN[0] + 10.0, ORIGIN[1] - 5.0), abs=1e-6)
    assert r.transform.c == pytest.approx(ORIGIN[0] - 40.0)
    assert r.transform.f == pytest.approx(ORIGIN[1] + 30.0)
    ll = r.truth.to_crs(4326).centers[0]
    assert ll[0] == pytest.approx(130.6027, abs=0.002)
    assert ll[1] == pytest.approx(42.4217, abs=0.002)
    assert r.truth.extra["train_id"][0] == "T1"
    assert not r.truth.extra["occluded"][0]


def test_same_seed_identical_different_seed_differs() -> None:
    world = random_world(np.random.default_rng(11), (-60.0, -40.0, 60.0, 40.0), occupancy=1.0)
    cond = Conditions(gsd_m=0.5, seed=5, haze=0.2, cloud_cover=0.2, jpeg_quality=85)
    a = render(world, cond)
    b = render(world, cond)
    assert a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.cloud_mask, b.cloud_mask)
    c = render(world, Conditions(gsd_m=0.5, seed=6, haze=0.2, cloud_cover=0.2, jpeg_quality=85))
    assert a.image.tobytes() != c.image.tobytes()


def test_shadow_points_away_from_sun() -> None:
    # A round tower: its shadow's centroid lies exactly along the shadow direction.
    when = dt.datetime(2023, 6, 20, 0, 30, tzinfo=dt.UTC)  # morning in Tumangang
    az, el = sun_position(when, 42.4217, 130.6026)
    assert 60 < az < 130 and el > 15
    ang = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    radius, height = 5.0, 20.0
    poly = np.stack([radius * np.cos(ang), radius * np.sin(ang)], axis=1)
    world = World(origin=ORIGIN, extent=(-60.0, -60.0, 60.0, 60.0),
                  buildings=[Building(poly, height, (250, 250, 250), kind="watch post")])
    r = render(world, _calm(0.5, when=when))
    bare = render(World(origin=ORIGIN, extent=world.extent), _calm(0.5, when=when))
    gray = r.image.astype(float).mean(axis=2)
    gray0 = bare.image.astype(float).mean(axis=2)
    dark = gray < 0.8 * gray0  # darker than the same ground without the tower
    rows, cols = np.nonzero(dark)
    # image pixel -> local metres (x east, y north)
    x = -60.0 + (cols + 0.5) * 0.5
    y = 60.0 - (rows + 0.5) * 0.5
    direction = math.degrees(math.atan2(x.mean(), y.mean())) % 360  # clockwise from north
    expected = (az + 180.0) % 360
    assert abs((direction - expected + 180) % 360 - 180) < 5.0
    # length: the far tip lies height / tan(elevation) beyond the tower's centre
    sv = shadow_vector(az, el)
    unit = sv / np.linalg.norm(sv)
    tip = float((np.stack([x, y], 1) @ unit).max())
    assert tip == pytest.approx(height / math.tan(math.radians(el)) + radius, abs=1.5)


def test_cars_follow_curves_with_gaps() -> None:
    ang = np.linspace(0, math.pi / 3, 40)
    track = Track("c", np.stack([300 * np.sin(ang), 300 * (1 - np.cos(ang))], axis=1))
    cars = place_train(track, ["hopper"] * 10, lengths=[13.0] * 10)
    assert len(cars) == 10
    d = np.hypot(np.diff(cars.x), np.diff(cars.y))
    assert np.allclose(d, 14.0, atol=0.05)  # 13 m cars + 1 m gap (chords on a large radius)
    assert np.all(np.diff(cars.heading) > 0)  # headings turn with the curve


def test_write_geotiff_tags_and_truth(tmp_path) -> None:
    world = _one_car_world(0.0, 0.0, 0.3, 15.0, 3.2)
    cond = _calm(0.5, sensor="SkySat")
    r = render(world, cond)
    path = write_geotiff(r, tmp_path / "scene.tif", cond)
    with rasterio.open(path) as src:
        tags = src.tags()
        assert src.count == 3 and src.crs.to_epsg() == 32652
        assert src.transform == r.transform
        assert src.profile["compress"].lower() == "deflate" and src.profile["tiled"]
        assert np.array_equal(np.moveaxis(src.read(), 0, -1), r.image)
    assert tags["ACQUISITION_DATETIME"] == "2023-06-20T03:00:00Z"
    assert tags["TIFFTAG_DATETIME"] == "2023:06:20 03:00:00"
    assert tags["SENSOR"] == "SkySat" and float(tags["GSD"]) == 0.5
    fc = json.loads(truth_path(path).read_text())
    assert truth_path(path).name == "scene.truth.geojson"
    props = fc["features"][0]["properties"]
    assert props["class"] == "boxcar" and "score" not in props and props["train_id"] == "T1"
    assert not list(tmp_path.glob(".*tmp"))


def test_clouds_mark_occluded_truth() -> None:
    world = random_world(np.random.default_rng(2), (-80.0, -50.0, 80.0, 50.0), occupancy=1.0)
    r = render(world, Conditions(gsd_m=0.8, seed=1, cloud_cover=1.0))
    assert r.cloud_mask.mean() > 0.95
    assert len(r.truth) > 0 and r.truth.extra["occluded"].all()


def test_bad_bounds_and_unwritable_output(tmp_path) -> None:
    from railwatch.errors import InputError

    world = _one_car_world(0.0, 0.0, 0.0, 15.0, 3.2)
    with pytest.raises(ValueError, match="bounds"):
        render(world, _calm(0.5), bounds=(10.0, 0.0, 5.0, 20.0))
    r = render(world, _calm(0.5))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create"):
        write_geotiff(r, blocker / "sub" / "scene.tif")
    assert list(tmp_path.iterdir()) == [blocker]


def test_sun_position_at_solar_noon() -> None:
    # Tumangang, June solstice, local solar noon (12:00 - 130.6026 / 15 h UTC).
    when = dt.datetime(2023, 6, 21, 3, 17, 35, tzinfo=dt.UTC)
    az, el = sun_position(when, 42.4217, 130.6026)
    assert az == pytest.approx(180.0, abs=2.0)
    assert el == pytest.approx(90.0 - 42.4217 + 23.44, abs=0.6)
    sv = shadow_vector(az, el)
    assert sv[1] > 0 and abs(sv[0]) < 0.05  # shadows point north (+y), short


def test_snow_brightens_haze_flattens_clouds_cover() -> None:
    world = random_world(np.random.default_rng(4), (-60.0, -40.0, 60.0, 40.0), occupancy=0.5)
    base = render(world, _calm(0.8, when=dt.datetime(2024, 1, 20, 3, 0, tzinfo=dt.UTC)))
    snowy = render(world, _calm(0.8, when=base.conditions.when, snow=0.9))
    hazy = render(world, _calm(0.8, when=base.conditions.when, haze=0.7))
    assert snowy.image.mean() > base.image.mean() + 40
    assert hazy.image.std() < 0.7 * base.image.std()
    # Cloud cover is the share of the sky under cloud: on average over seeds, the share of
    # a full-site image.
    site = World(extent=(-600.0, -400.0, 600.0, 400.0))
    fracs = []
    for seed in range(6):
        cloudy = render(site, Conditions(gsd_m=3.0, cloud_cover=0.5, seed=seed))
        fracs.append(cloudy.cloud_fraction)
        assert cloudy.image.mean(axis=2)[cloudy.cloud_mask].mean() > 200  # clouds are white
    assert np.mean(fracs) == pytest.approx(0.5, abs=0.1)


def test_water_dark_in_summer_frozen_in_winter() -> None:
    from railwatch.simulate.world import Water

    river = np.array([[-50.0, -10.0], [50.0, -10.0], [50.0, 10.0], [-50.0, 10.0]])
    world = World(extent=(-40.0, -30.0, 40.0, 30.0), water=[Water(river)])
    summer = render(world, _calm(0.5, when=dt.datetime(2024, 7, 10, 2, 0, tzinfo=dt.UTC)))
    winter = render(world, _calm(0.5, when=dt.datetime(2024, 1, 10, 2, 0, tzinfo=dt.UTC),
                                 snow=0.8))
    band = slice(45, 75)  # rows well inside the river (y from -7.5 to 7.5 m)
    assert summer.image[band].mean() < 0.85 * summer.image[:20].mean()
    assert winter.image[band].mean() > 180


def _end_to_end_share(c) -> float:
    """Share of containers with a neighbour end to end in the same row (same heading,
    on its axis, at about half their lengths plus a small gap)."""
    xy = np.c_[c.x, c.y]
    u = np.c_[np.cos(c.heading), np.sin(c.heading)]
    found = 0
    for i in range(len(xy)):
        d = xy - xy[i]
        along = d @ u[i]
        cross = np.abs(d[:, 0] * u[i, 1] - d[:, 1] * u[i, 0])
        reach = (c.length_m[i] + c.length_m) / 2
        gap = np.abs(along) - reach
        same = np.abs(np.sin(c.heading - c.heading[i])) < 1e-6
        found += bool(np.any(same & (cross < 0.3) & (gap > 0.1) & (gap < 2.0)))
    return found / max(len(xy), 1)


@pytest.mark.parametrize("style", ["container_lines", "container_yards"])
def test_container_lines_and_yards_lie_end_to_end_along_their_rows(style) -> None:
    boxes = 0
    shares = []
    for seed in range(4):
        world = random_world(np.random.default_rng(seed), (-150.0, -150.0, 150.0, 150.0),
                             **{style: 1.0})
        c = world.containers
        boxes += len(c.x)
        shares.append(_end_to_end_share(c))
    assert boxes > 40
    assert np.mean(shares) > 0.7  # rows along the boxes' own axis, not staggered


def test_container_yards_zero_keeps_the_layouts() -> None:
    a = random_world(np.random.default_rng(9), (-100.0, -100.0, 100.0, 100.0))
    b = random_world(np.random.default_rng(9), (-100.0, -100.0, 100.0, 100.0),
                     container_yards=0.0)
    np.testing.assert_array_equal(a.containers.x, b.containers.x)
    np.testing.assert_array_equal(a.cars.x, b.cars.x)


def test_a_tarp_load_is_a_covered_load() -> None:
    # the painters draw a tarp for load "tarp": the truth must call such a car covered,
    # including flatcars whose train-wide load was drawn as a tarp (layout.random_train)
    track = Track("t0", [(0.0, 0.0), (2000.0, 0.0)])
    cars = place_train(track, ["flatcar", "flatcar", "hopper"], covered=[False, True, False],
                       loads=["tarp", "tarp", "coal"])
    assert cars.covered.tolist() == [True, True, False]
    rng = np.random.default_rng(5)
    flat_tarps = 0
    for k in range(60):
        train = random_train(rng, track, 0.0, 12, f"T{k}", covered_share=0.0)
        assert (train.covered == (train.load == "tarp")).all()
        flat_tarps += int(((train.cls == "flatcar") & (train.load == "tarp")).sum())
    assert flat_tarps > 0
