"""The site's track map: railcars count only on a track; the built-in map is the
scenario's; site files carry tracks and reject bad ones."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, MultiLineString, box

from railwatch.analytics.observe import count_range, observe
from railwatch.analytics.trackmap import (
    fit_tracks,
    mark_off_track,
    register_to_tracks,
    track_fit,
)
from railwatch.errors import InputError
from railwatch.simulate.scenario import load_scenario, track_map
from railwatch.sites import get_site, load_site_geojson, site_local_crs, site_to_geojson
from railwatch.sites.registry import parse_site
from railwatch.types import Detections, Scene

UTM = "EPSG:32652"


def _dets(centres: list[tuple[float, float]], kinds: list[str], angle: float = 0.0,
          crs: str = UTM) -> Detections:
    c, s = np.cos(angle), np.sin(angle)
    u, v = np.array([c, s]) * 7.5, np.array([-s, c]) * 1.6
    fps = np.array([[p - u - v, p + u - v, p + u + v, p - u + v]
                    for p in np.asarray(centres, float)])
    n = len(fps)
    return Detections(footprints=fps, kind=kinds, cls=["boxcar" if k == "railcar" else ""
                                                       for k in kinds],
                      score=np.full(n, 0.9), covered=np.zeros(n, bool),
                      color=np.zeros((n, 3)), length_m=np.full(n, 15.0), crs=crs)


# a single track along y = 0 and a curve leaving it: x 0..400
TRACKS = MultiLineString([[(0, 0), (400, 0)], [(200, 0), (300, 20), (400, 60)]])


def test_cars_off_every_track_are_set_aside_containers_are_not() -> None:
    det = _dets([(50, 0.4), (70, -1.2), (90, 2.8), (110, 3.3), (130, 6.0), (150, 12.0),
                 (160, 12.0)], ["railcar"] * 6 + ["container"])
    fit = fit_tracks(det, TRACKS)
    assert fit.on_track.tolist() == [True, True, True, False, False, False, True]
    assert fit.set_aside == 3 and fit.shift_m == (0.0, 0.0)
    assert fit.distance_m[:3] == pytest.approx([0.4, 1.2, 2.8])
    assert np.isnan(fit.distance_m[6])


def test_most_cars_off_the_map_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    det = _dets([(40 + 16 * k, 5.0) for k in range(8)], ["railcar"] * 8)
    with caplog.at_level(logging.INFO):
        fit = fit_tracks(det, TRACKS)
    assert fit.set_aside == 8
    assert "8 of 8 railcar detections lie off the site's track map" in caplog.text


def test_a_misregistered_image_is_registered_to_the_map_when_asked() -> None:
    """A train of 12 cars along the track and 6 on the curve, the image 4 m north and
    3 m east of the map: with the search on, the shift is found and every car is kept."""
    along = [(20 + 16 * k, 0.0) for k in range(12)]
    curve = LineString([(300, 20), (400, 60)])
    on_curve = [curve.interpolate(10 + 16 * k).coords[0] for k in range(6)]
    truth = along + on_curve
    moved = [(x + 3.0, y + 4.0) for x, y in truth]
    det = _dets(moved, ["railcar"] * len(moved))
    assert fit_tracks(det, TRACKS).set_aside >= 12  # the map as it lies loses the train
    fit = fit_tracks(det, TRACKS, search_m=8.0)
    assert fit.set_aside == 0
    assert abs(fit.shift_m[1] + 4.0) <= 0.5 and abs(fit.shift_m[0] + 3.0) <= 1.0
    # registered images are not moved, and too few cars are never moved
    assert register_to_tracks(np.array(truth), TRACKS, 8.0) == (0.0, 0.0)
    assert register_to_tracks(np.array(moved[:4]), TRACKS, 8.0) == (0.0, 0.0)


def test_builtin_sites_carry_the_scenario_track_map() -> None:
    spec = load_scenario("tumangang-khasan")
    for name in ("tumangang", "khasan"):
        site = get_site(name)
        assert site.tracks is not None
        expected = track_map(spec, name)
        assert len(site.tracks.geoms) == len(expected.geoms) == len(spec.sites[name].tracks)
        local, ref = (shapely.transform(g, Transformer.from_crs(
            4326, site_local_crs(site), always_xy=True).transform, interleaved=False)
            for g in (site.tracks, expected))
        assert shapely.hausdorff_distance(local, ref) < 0.05  # metres


def test_site_file_round_trips_tracks_and_rejects_bad_ones(tmp_path) -> None:
    site = get_site("khasan")
    data = site_to_geojson(site)
    again = parse_site(data, "x.geojson")
    assert again.tracks is not None and again.tracks.equals(site.tracks)
    bad = json.loads(json.dumps(data))
    bad["features"].append({"type": "Feature", "properties": {"role": "track"},
                            "geometry": json.loads(json.dumps(box(0, 0, 1, 1).__geo_interface__))})
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r"bad\.geojson.*track feature .* LineString"):
        load_site_geojson(path)
    bad["features"][-1]["geometry"] = {"type": "LineString",
                                       "coordinates": [[631245.0, 4697443.0], [631300.0, 1.0]]}
    path.write_text(json.dumps(bad))
    with pytest.raises(InputError, match="not lon/lat"):
        load_site_geojson(path)


def test_observe_counts_railcars_on_the_map_only(tmp_path) -> None:
    """Ten cars on a real Tumangang track and five in a row 20 m off every track: the
    total is ten, five are reported off the track."""
    site = get_site("tumangang")
    crs = site_local_crs(site)
    tr = Transformer.from_crs(4326, crs, always_xy=True)
    local = shapely.transform(site.tracks, tr.transform, interleaved=False)
    line = max(local.geoms, key=lambda g: g.length)
    on = [line.interpolate(30 + 16 * k).coords[0] for k in range(10)]
    p0, p1 = np.array(line.coords[0]), np.array(line.coords[1])
    d = (p1 - p0) / np.linalg.norm(p1 - p0)
    angle = float(np.arctan2(d[1], d[0]))
    off = [tuple(np.array(line.interpolate(30 + 16 * k).coords[0]) + 20 * np.array([-d[1], d[0]]))
           for k in range(5)]
    off = [p for p in off if shapely.distance(local, shapely.Point(p)) > 10]
    det = _dets(on + off, ["railcar"] * (10 + len(off)), angle, crs.to_string())
    assert len(off) == 5
    fit = track_fit(det, site)
    assert fit is not None and fit.set_aside == 5
    marked = mark_off_track(det, site)
    assert "off_track" not in det.extra  # a copy
    assert marked.extra["off_track"].tolist() == [False] * 10 + [True] * 5
    assert marked.meta["off_track"] == 5 and marked.meta["track_map"] == "tumangang"
    bare_site = dataclasses.replace(site, tracks=None)
    assert mark_off_track(det, bare_site) is det
    foot = site.aoi.buffer(0.01)
    scene = Scene(id=1, path="x.tif", sha256="0" * 64, crs_wkt=crs.to_wkt(),
                  transform=(0,) * 6, width=1, height=1, band_count=3, dtype="uint8",
                  gsd_m=0.5, footprint=foot,
                  acquired=dt.datetime(2023, 10, 5, 2, 30, tzinfo=dt.UTC))
    obs = observe(site, scene, det, cloud=0.0, error_rates={"precision": 1.0, "recall": 1.0})
    assert obs.total == 10 and obs.counts["off_track"] == 5
    bare = observe(dataclasses.replace(site, tracks=None), scene, det, cloud=0.0,
                   error_rates={"precision": 1.0, "recall": 1.0})
    assert bare.total == 15 and "off_track" not in bare.counts
    # the count range takes the precision measured with a track map, when there is one
    rates = {"precision": 0.9, "recall": 0.8}
    m = tmp_path / "metrics.json"
    m.write_text(json.dumps({"overall": rates, "with_track_map": {
        "overall": {"precision": 0.99, "recall": 0.97}}}))
    obs = observe(site, scene, det, cloud=0.0, metrics_path=m)
    assert (obs.count_low, obs.count_high) == count_range(10, {"precision": 0.99,
                                                               "recall": 0.8})
    obs = observe(dataclasses.replace(site, tracks=None), scene, det, cloud=0.0,
                  metrics_path=m)
    assert (obs.count_low, obs.count_high) == count_range(15, rates)
