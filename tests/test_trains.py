"""Trains: coupled strings, sequence matching with a permutation null, following across sites."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from shapely.geometry import box
from typer.testing import CliRunner

from railwatch.analytics.trains import (
    CarPool,
    color_names,
    compare_trains,
    describe,
    extract_trains,
    follow_trains,
    lab_of,
    label_trains,
    match_trains,
)
from railwatch.cli.main import app
from railwatch.geojson import write_geojson
from railwatch.store import Store
from railwatch.types import Detections, Scene

UTC = dt.UTC
GREY, LGREY, RED, BROWN = "#85888b", "#b9bcbe", "#a8322a", "#6b4a32"
EIGHT = [GREY, GREY, RED, RED, GREY, GREY, LGREY, BROWN]
LOCO = "#2f5d8a"


def _rgb(h: str) -> tuple[int, int, int]:
    return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)


def string_det(
    colors: list[str],
    x0: float = 600_000.0,
    y0: float = 4_700_000.0,
    heading_deg: float = 90.0,
    classes: list[str] | None = None,
    lengths: list[float] | None = None,
    gap: float = 1.0,
    width: float = 3.2,
    jitter: float = 0.0,
    seed: int = 0,
) -> Detections:
    """Cars coupled end to end from (x0, y0) along azimuth ``heading_deg`` (EPSG:32652)."""
    n = len(colors)
    classes = classes or ["boxcar"] * n
    lengths = lengths or [15.0] * n
    rng = np.random.default_rng(seed)
    a = np.deg2rad(heading_deg)
    u = np.array([np.sin(a), np.cos(a)])
    v = np.array([-u[1], u[0]])
    fps, s = [], 0.0
    for length in lengths:
        c = np.array([x0, y0]) + u * (s + length / 2)
        s += length + gap
        fps.append([c - u * length / 2 - v * width / 2, c + u * length / 2 - v * width / 2,
                    c + u * length / 2 + v * width / 2, c - u * length / 2 + v * width / 2])
    rgb = np.array([_rgb(h) for h in colors], float)
    rgb = np.clip(rgb + rng.normal(0, jitter, rgb.shape), 0, 255).round()
    return Detections(footprints=np.array(fps), kind=["railcar"] * n, cls=classes,
                      score=np.ones(n), covered=np.zeros(n, bool), color=rgb,
                      length_m=lengths, crs=32652)


def loco_plus(colors: list[str], **kw) -> Detections:
    return string_det([LOCO, *colors], classes=["locomotive"] + ["boxcar"] * len(colors),
                      lengths=[19.0] + [15.0] * len(colors), **kw)


def one(det: Detections, **kw):
    ts = extract_trains(det, **kw)
    assert len(ts) == 1
    return ts[0]


# -- extraction ---------------------------------------------------------------------------
def test_extract_orders_cars_and_flags_locomotive():
    det = loco_plus(EIGHT)
    perm = np.random.default_rng(3).permutation(len(det))  # input order must not matter
    t = one(det[perm])
    assert len(t) == 9 and t.n_cars == 8 and t.end_locomotives == 1
    assert t.locomotive.tolist() == [True] + [False] * 8  # heading 90: west end first
    assert perm[t.indices].tolist() == list(range(9))
    assert t.color_names() == ["grey", "grey", "red", "red", "grey", "grey", "light grey",
                               "brown"]
    assert t.heading_deg == pytest.approx(90.0, abs=0.5)
    assert t.span_m == pytest.approx(19 + 8 * 15 + 8 * 1.0, abs=0.2)
    assert np.allclose(t.lab, lab_of(t.rgb))
    # the same cars in lon/lat give the same string (metric local CRS inside)
    t2 = one(det.to_crs(4326))
    assert t2.indices.tolist() == perm[t.indices].tolist()
    assert t2.span_m == pytest.approx(t.span_m, abs=0.5)


def test_extract_separates_parallel_trains_and_splits_at_gap():
    a = string_det([GREY] * 5, y0=4_700_000.0)
    b = string_det([RED] * 6, y0=4_700_005.0)  # parallel track 5 m away
    c1 = string_det([BROWN] * 3, y0=4_700_010.0)
    c2 = string_det([LGREY] * 4, x0=600_000.0 + 3 * 16 + 9.0, y0=4_700_010.0)  # 10 m gap
    lone = string_det([GREY], x0=601_000.0)
    cont = string_det([GREY, GREY], x0=602_000.0)
    cont.kind[:] = "container"
    cont.cls[:] = ""
    det = Detections.concat([a, b, c1, c2, lone, cont])
    ts = extract_trains(det, max_gap_m=4.0)
    got = sorted((len(t), color_names(t.lab)[0]) for t in ts)
    assert got == [(3, "brown"), (4, "light grey"), (5, "grey"), (6, "red")]
    assert all(len(set(color_names(t.lab))) == 1 for t in ts)  # no string crosses tracks
    # a larger allowed gap joins the split line; min_cars keeps or drops singletons
    assert sorted(len(t) for t in extract_trains(det, max_gap_m=12.0)) == [5, 6, 7]
    assert sorted(len(t) for t in extract_trains(det, min_cars=1)) == [1, 3, 4, 5, 6]


def test_extract_follows_a_diagonal_string():
    t = one(string_det(EIGHT, heading_deg=210.0))  # running SW: reported NE-bound, reversed
    assert t.heading_deg == pytest.approx(30.0, abs=0.5)
    assert t.color_names()[0] == "brown"


# -- matching -------------------------------------------------------------------------------
def test_match_with_reversal_and_dropped_locomotive():
    a = label_trains([one(loco_plus(EIGHT))], "khasan",
                     dt.datetime(2022, 11, 29, 2, 30, tzinfo=UTC))
    # next day: the 8 cars the other way round, no locomotive, colours seen slightly off
    b_det = string_det(EIGHT[::-1], x0=610_000.0, heading_deg=60.0, jitter=4.0, seed=1)
    b = label_trains([one(b_det)], "tumangang", dt.datetime(2022, 11, 30, 2, 15, tzinfo=UTC))
    (m,) = match_trains(a, b)
    assert m.reversed and m.locomotive_change == "dropped"
    assert m.similarity > 0.9 and m.p_value < 0.01 and m.missing == (0, 0)
    nb = len(b[0])
    assert [(i, j) for i, j in m.pairs] == [(k + 1, nb - 1 - k) for k in range(8)]
    text = describe(m)
    assert text.startswith("The 8-car train seen at Khasan on 2022-11-29 (grey, grey, red, "
                           "red, grey, grey, light grey, brown; behind a locomotive) appears "
                           "at Tumangang on 2022-11-30 without its locomotive")
    assert "in reverse order" in text and "similarity 0.9" in text
    # told from the later sighting, the sentence still starts with the earlier one
    assert describe(m.swapped()).startswith("The 8-car train seen at Khasan")
    # an added locomotive is the mirror case
    assert compare_trains(b[0], a[0]).locomotive_change == "added"


def test_missing_car_inside_costs_a_gap():
    a = one(string_det(EIGHT))
    b = one(string_det(EIGHT[:3] + EIGHT[4:]))  # one red car not seen
    m = compare_trains(a, b)
    assert m.missing == (1, 0) and len(m.pairs) == 7
    assert 0.75 < m.similarity < 0.95 and m.p_value < 0.05
    assert "with 1 car not seen" in describe(m)


def test_train_coupled_to_other_cars_is_found_inside_the_longer_string():
    a = one(loco_plus(EIGHT))
    b = one(string_det([BROWN, BROWN, LGREY, *EIGHT, GREY, RED, RED, BROWN]))
    m = compare_trains(a, b)
    assert [i for i, _ in m.pairs] == list(range(1, 9))
    assert [j for _, j in m.pairs] == list(range(3, 11))
    assert m.missing == (0, 7) and m.p_value < 0.01
    # all 8 cars agree, but only 8 of the 15 there: reported, cautiously
    assert 0.65 < m.similarity < 0.75
    assert "may appear" in describe(m) and "with 7 more cars" in describe(m)


def test_shuffled_order_scores_low():
    a = one(string_det(EIGHT))
    true = compare_trains(a, one(string_det(EIGHT, jitter=4.0, seed=2)))
    shuffled = [RED, GREY, BROWN, GREY, RED, LGREY, GREY, GREY]  # same colours, other order
    m = compare_trains(a, one(string_det(shuffled)))
    assert true.similarity > 0.9 and true.p_value < 0.01
    assert m.similarity < 0.6 and m.similarity < true.similarity - 0.35
    assert m.p_value > 0.05
    assert "could be chance" in describe(m)


def test_short_string_of_common_colours_is_not_overclaimed():
    a = one(string_det([GREY, GREY, GREY]))
    b = one(string_det([GREY, GREY, GREY], jitter=3.0, seed=4))
    yard = one(string_det([GREY] * 20 + [RED, BROWN], y0=4_701_000.0))
    m = compare_trains(a, b, pool=CarPool.of([a, b, yard]))
    assert m.similarity > 0.9  # the cars do look alike ...
    assert m.p_value > 0.5  # ... but so does almost any grey triple
    # distinctive colours in the same 3-car form are a different matter
    blues = ["#8fc1e3", "#1f3a70", "#8c3b2a"]
    c, d = one(string_det(blues)), one(string_det(blues[::-1]))
    assert compare_trains(c, d, pool=CarPool.of([a, b, yard, c, d])).p_value < 0.01


def test_match_trains_is_one_to_one_and_class_matters():
    a = extract_trains(Detections.concat([
        string_det(EIGHT), string_det([BROWN] * 4, y0=4_700_005.0)]))
    tank = ["tank"] * 4
    b = extract_trains(Detections.concat([
        string_det([BROWN] * 4, classes=tank, x0=605_000.0),
        string_det(EIGHT, x0=605_000.0, y0=4_700_030.0),
    ]))
    ms = match_trains(a, b, min_similarity=0.6)
    assert len(ms) == 1  # brown tank cars are not the brown boxcars
    assert ms[0].a.n_cars == 8 and ms[0].b.n_cars == 8 and ms[0].similarity > 0.99
    brown_box = next(t for t in a if t.n_cars == 4)
    brown_tank = next(t for t in b if t.n_cars == 4)
    m = compare_trains(brown_box, brown_tank)
    assert m.similarity <= 0.5 < compare_trains(brown_box, brown_box).similarity


# -- over the store and the CLI ----------------------------------------------------------------
@pytest.fixture(scope="module")
def nov22():
    """Truth of the 2022-11-29 Khasan and 2022-11-30 Tumangang images of the built-in
    scenario (only those two rendered), and the same cars with their colours as seen in
    the rendered pixels (what a detector reports)."""
    from railwatch.detect.model import footprint_colors
    from railwatch.simulate.render import render
    from railwatch.simulate.scenario import (
        conditions_for,
        image_bounds,
        load_scenario,
        plan_images,
        select_images,
        site_world,
    )
    from railwatch.simulate.traffic import build_traffic

    spec = load_scenario("tumangang-khasan")
    traffic = build_traffic(spec, 0)
    plan = select_images(plan_images(spec, 0), "2022-11-29", "2022-11-30",
                         sites=["khasan", "tumangang"])
    out = []
    for p in plan:
        world = site_world(spec, p.site, p.when, traffic, 0)
        r = render(world, conditions_for(spec, p), bounds=image_bounds(world.extent, p))
        truth = r.truth.railcars
        seen = truth[np.arange(len(truth))]
        seen.color = footprint_colors(r.image, r.pixel_footprints[r.truth.kind == "railcar"])
        out.append((p.site, p.when.replace(tzinfo=UTC), p.stem, truth.to_crs(4326),
                    seen.to_crs(4326)))
    return out


def _scene(det: Detections, when: dt.datetime, name: str) -> Scene:
    lon, lat = det.footprints[..., 0], det.footprints[..., 1]
    return Scene(id=None, path=f"/img/{name}.tif", sha256=name.ljust(64, "0")[:64],
                 crs_wkt="EPSG:32652", transform=(0.5, 0, 0, 0, -0.5, 0), width=10, height=10,
                 band_count=3, dtype="uint8", gsd_m=0.5,
                 footprint=box(lon.min(), lat.min(), lon.max(), lat.max()), acquired=when)


def test_follow_trains_finds_the_8_car_train_in_the_store(tmp_path, nov22):
    assert [(s, w.date().isoformat()) for s, w, _, _, _ in nov22] == [
        ("khasan", "2022-11-29"), ("tumangang", "2022-11-30")]
    db = tmp_path / "rw.sqlite"
    with Store(db) as store:
        for site, when, stem, det, _ in nov22:
            sid = store.add_scene(_scene(det, when, stem), {site: 1.0})
            store.put_detections(sid, det)
        found = follow_trains(store, "tumangang", "khasan", max_days=3)
        assert follow_trains(store, "tumangang", "khasan", max_days=0.5) == []
    (s,) = found
    assert s.match.a.site == "khasan" and s.match.b.site == "tumangang"
    assert s.match.similarity > 0.95 and s.match.p_value < 0.01
    assert s.sentence.startswith(
        "The 8-car train seen at Khasan on 2022-11-29 (grey, grey, red, red, grey, grey, "
        "light grey, brown; behind a locomotive) appears at Tumangang on 2022-11-30 without "
        "its locomotive (similarity ")
    # the truth's train ids confirm the cars belong to the scripted train
    det_a = nov22[0][3]
    assert set(det_a.extra["train_id"][s.match.a.indices].tolist()) == {"nov22-8car"}

    res = CliRunner().invoke(app, ["--db", str(db), "trains", "khasan", "tumangang",
                                   "--from", "2022-11-01", "--to", "2022-11-30", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out) == 1 and out[0]["locomotive_change"] == "dropped"
    assert out[0]["a"]["color_names"][1:] == ["grey", "grey", "red", "red", "grey", "grey",
                                              "light grey", "brown"]
    res = CliRunner().invoke(app, ["--db", str(db), "trains", "khasan", "tumangang",
                                   "--to", "2022-11-28"])
    assert res.exit_code == 0 and "0 train(s) followed" in res.output


def test_colours_seen_in_the_rendered_images_still_follow_the_train(nov22):
    (sa, wa, _, _, seen_a), (sb, wb, _, _, seen_b) = nov22
    ta = label_trains(extract_trains(seen_a), sa, wa)
    tb = label_trains(extract_trains(seen_b), sb, wb)
    (m,) = match_trains(ta, tb, min_similarity=0.75)
    assert m.similarity > 0.9 and m.p_value < 0.01 and m.locomotive_change == "dropped"
    assert m.mean_delta_e < 5.0  # Pleiades vs WorldView-3 under a different sun
    assert describe(m).startswith(
        "The 8-car train seen at Khasan on 2022-11-29 (grey, grey, red, red, grey, grey, "
        "light grey, brown; behind a locomotive) appears at Tumangang on 2022-11-30")


def test_cli_geojson_files_and_errors(tmp_path, nov22):
    paths = []
    for _site, _when, stem, det, _ in nov22:
        paths.append(write_geojson(det, tmp_path / f"{stem}.truth.geojson",
                                   include_score=False))
    runner = CliRunner()
    res = runner.invoke(app, ["trains", "--geojson", str(paths[1]), "--geojson", str(paths[0])])
    assert res.exit_code == 0, res.output
    assert "appears at Tumangang on 2022-11-30" in " ".join(res.output.split())
    res = runner.invoke(app, ["trains", "--geojson", str(paths[0]), "--geojson",
                              str(paths[1]), "--json"])
    (m,) = json.loads(res.stdout)
    assert m["a"]["site"] == "khasan" and m["similarity"] > 0.95

    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    for args in (["trains", "--geojson", str(paths[0])],
                 ["trains", "--geojson", str(paths[0]), "--geojson", str(bad)],
                 ["trains", "--geojson", str(paths[0]), "--geojson", str(tmp_path / "no")],
                 ["trains", "khasan"],
                 ["--db", str(tmp_path / "e.sqlite"), "trains", "khasan", "atlantis"],
                 ["--db", str(tmp_path / "e.sqlite"), "trains", "khasan", "tumangang",
                  "--from", "29/11/2022"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert "error" in res.output and len(res.output.strip().splitlines()) == 1
