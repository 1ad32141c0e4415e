"""Scenarios: schema errors, the traffic process, the built-in scenario vs the public record.

The traffic and plan checks run without rendering (fast); one test renders two small
images end to end.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from railwatch.errors import InputError
from railwatch.simulate.scenario import (
    SCENARIO_DIR,
    PlannedImage,
    image_bounds,
    list_scenarios,
    load_scenario,
    plan_images,
    select_images,
    simulate_scenario,
    site_frame,
    site_world,
)
from railwatch.simulate.scenario_schema import parse_scenario
from railwatch.simulate.traffic import apportion, build_traffic, daily_counts, hex_rgb

BUILTIN = "tumangang-khasan"


@pytest.fixture(scope="module")
def spec():
    return load_scenario(BUILTIN)


@pytest.fixture(scope="module")
def traffic(spec):
    return build_traffic(spec, seed=0)


@pytest.fixture(scope="module")
def plan(spec):
    return plan_images(spec, seed=0)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((SCENARIO_DIR / f"{BUILTIN}.yaml").read_text(encoding="utf-8"))


def _image(plan: list[PlannedImage], site: str, day: str) -> PlannedImage:
    d = dt.date.fromisoformat(day)
    found = [p for p in plan if p.site == site and p.when.date() == d]
    assert found, f"no planned image of {site} on {day}"
    return found[0]


def _colors(state, train_id: str, with_loco: bool = False) -> list[str]:
    m = state.train_id == train_id
    if not with_loco:
        m &= state.cls != "locomotive"
    return ["#{:02x}{:02x}{:02x}".format(*c) for c in state.color[m]]


# -- the public record ------------------------------------------------------------------
def test_builtin_is_listed_and_valid(spec):
    assert BUILTIN in list_scenarios()
    assert set(spec.sites) == {"tumangang", "khasan"}
    assert spec.start <= dt.date(2018, 1, 1) and spec.end >= dt.date(2024, 12, 31)


def test_2023_10_05_about_73_cars_with_tarps(traffic, plan):
    img = _image(plan, "tumangang", "2023-10-05")
    c = traffic.counts("tumangang", img.when)
    assert c["total"] == 73
    assert c["covered"] >= 15  # "extensive tarps"
    assert c["flatcar"] > c["boxcar"] > c["tank"]


def test_empty_depot_then_steady_rise(traffic, plan):
    empty = _image(plan, "tumangang", "2023-09-14")
    assert traffic.counts("tumangang", empty.when)["total"] == 0
    days = daily_counts(traffic, "tumangang", dt.date(2023, 9, 14), dt.date(2023, 10, 5))
    totals = [n for _, n in days]
    assert totals[0] == 0 and totals[-1] == 73
    assert all(b >= a for a, b in itertools.pairwise(totals)), totals
    # the rise starts around 2023-09-18, five days after the summit
    first = next(d for d, n in days if n > 0)
    assert dt.date(2023, 9, 17) <= first <= dt.date(2023, 9, 20)
    # 2023-09-22: two lines of cars about 200 m and 300 m long, loaded cars about 20 m
    state = traffic.cars_at("tumangang", _image(plan, "tumangang", "2023-09-22").when)
    lines = sorted(
        (state.start_m[m] + state.length_m[m]).max() - state.start_m[m].min()
        for m in (state.track_id == t for t in set(state.track_id))
    )
    assert len(lines) == 2 and 150 < lines[0] < 250 and 250 < lines[1] < 350
    flat = state.length_m[state.cls == "flatcar"]
    assert np.all((flat > 18) & (flat < 20))
    # several clear images document the rise
    rise = [p for p in plan if p.site == "tumangang"
            and dt.date(2023, 9, 15) <= p.when.date() <= dt.date(2023, 10, 4)
            and p.cloud < 0.1 and p.coverage == 1.0]  # fmt: skip
    counts = [traffic.counts("tumangang", p.when)["total"] for p in rise]
    assert len(rise) >= 4 and len(set(counts)) >= 4


def test_2024_06_17_counts_by_class_both_sites(traffic, plan):
    t = traffic.counts("tumangang", _image(plan, "tumangang", "2024-06-17").when)
    assert {k: t[k] for k in ("hopper", "boxcar", "tank", "locomotive", "other")} == {
        "hopper": 175, "boxcar": 14, "tank": 66, "locomotive": 6, "other": 3,
    }  # fmt: skip
    assert t["total"] == 264
    k = traffic.counts("khasan", _image(plan, "khasan", "2024-06-17").when)
    assert {c: k[c] for c in ("hopper", "boxcar", "tank", "passenger")} == {
        "hopper": 112, "boxcar": 4, "tank": 33, "passenger": 1,
    }  # fmt: skip
    assert k["total"] == 150


def test_pre_2020_never_above_20_and_closure_quiet(traffic, plan):
    pre = daily_counts(traffic, "tumangang", dt.date(2018, 1, 1), dt.date(2020, 1, 30))
    assert max(n for _, n in pre) <= 20
    assert max(n for _, n in pre) >= 12  # there was traffic, just not much
    at_images = [traffic.counts("tumangang", p.when)["total"] for p in plan
                 if p.site == "tumangang" and p.when.year < 2020]  # fmt: skip
    assert max(at_images) <= 20
    closed = daily_counts(traffic, "tumangang", dt.date(2020, 2, 15), dt.date(2022, 10, 31))
    assert np.mean([n for _, n in closed]) < 0.5
    assert max(n for _, n in closed) <= 4


def test_november_2022_trains_keep_their_colour_sequences(traffic, plan, spec):
    # 3-car set: Tumangang in the morning, Khasan later the same day
    three = ["#8fc1e3", "#1f3a70", "#8c3b2a"]
    t1 = _image(plan, "tumangang", "2022-11-04")
    k1 = _image(plan, "khasan", "2022-11-04")
    assert t1.when < k1.when
    assert _colors(traffic.cars_at("tumangang", t1.when), "nov22-3car") == three
    assert _colors(traffic.cars_at("khasan", k1.when), "nov22-3car") == three
    # 8-car train: at Khasan behind a locomotive, then in the secure yard without it
    eight = ["#85888b", "#85888b", "#a8322a", "#a8322a", "#85888b", "#85888b", "#b9bcbe", "#6b4a32"]
    k = traffic.cars_at("khasan", _image(plan, "khasan", "2022-11-29").when)
    assert _colors(k, "nov22-8car", with_loco=True)[1:] == eight
    assert k.cls[k.train_id == "nov22-8car"][0] == "locomotive"
    t = traffic.cars_at("tumangang", _image(plan, "tumangang", "2022-11-30").when)
    m = t.train_id == "nov22-8car"
    assert _colors(t, "nov22-8car", with_loco=True) == eight
    track = spec.sites["tumangang"].track(str(t.track_id[m][0]))
    assert track.kind == "secure"
    # five Russian flatcars: to Tumangang empty, back to Khasan with containers
    e = traffic.cars_at("tumangang", _image(plan, "tumangang", "2022-11-18").when)
    m = e.train_id == "nov22-containers"
    assert list(e.cls[m]) == ["flatcar"] * 5 and set(e.load[m]) == {"none"}
    r = traffic.cars_at("khasan", _image(plan, "khasan", "2022-11-19").when)
    m = (r.train_id == "nov22-containers") & (r.cls == "flatcar")
    assert m.sum() == 5 and set(r.load[m]) == {"containers"}


def test_2024_mix_shifts_to_hopper_and_tank(traffic):
    def shares(site: str, a: dt.date, b: dt.date) -> tuple[float, float]:
        tot = hop_tank = box = 0
        d = a
        while d <= b:
            c = traffic.counts(site, dt.datetime(d.year, d.month, d.day, 2, 30))
            tot += c["total"]
            hop_tank += c["hopper"] + c["tank"]
            box += c["boxcar"]
            d += dt.timedelta(days=3)
        return hop_tank / max(tot, 1), box / max(tot, 1)

    for site in ("tumangang", "khasan"):
        ht_before, box_before = shares(site, dt.date(2022, 11, 1), dt.date(2023, 12, 31))
        ht_after, box_after = shares(site, dt.date(2024, 2, 1), dt.date(2024, 7, 31))
        assert ht_after > ht_before + 0.2 and box_after < box_before


def test_random_trains_persist_between_sites(traffic):
    by_train: dict[str, list] = {}
    for v in traffic.visits:
        if v.source == "random":
            by_train.setdefault(v.train_id, []).append(v)
    multi = [vs for vs in by_train.values() if len({v.site for v in vs}) == 2]
    assert len(multi) > 20
    for vs in multi:
        seqs = {
            tuple((c, col) for c, col in zip(v.cars.cls, v.cars.color, strict=True)
                  if c != "locomotive")
            for v in vs
        }  # fmt: skip
        assert len(seqs) == 1  # same order and colours at both sites
        assert all(a.depart <= b.arrive for a, b in itertools.pairwise(vs))


def test_surge_cuts_are_seen_at_khasan_first(traffic):
    cuts: dict[str, list] = {}
    for v in traffic.visits:
        if v.train_id.startswith("surge23-"):
            cuts.setdefault(v.train_id, []).append(v)
    seen_first = [vs for vs in cuts.values() if vs[0].site == "khasan"]
    assert len(seen_first) >= len(cuts) // 2
    for vs in seen_first:
        k, t = vs[0], vs[1]
        assert t.site == "tumangang" and k.depart < t.arrive
        assert k.cars.cls[0] == "locomotive" and k.cars.color[1:] == t.cars.color


def test_cars_fit_on_tracks_inside_the_aoi(spec, traffic, plan):
    img = _image(plan, "tumangang", "2024-06-17")
    world = site_world(spec, "tumangang", img.when, traffic, seed=0)
    assert len(world.cars) == 264  # nothing dropped off the end of a track
    x0, _, x1, _ = world.extent
    corners = world.cars.corners()
    assert corners[..., 0].min() > x0 and corners[..., 0].max() < x1
    assert corners[..., 1].min() > -150 and corners[..., 1].max() < 50  # track_area zone
    state = traffic.cars_at("tumangang", img.when)
    for track in set(state.track_id):
        m = state.track_id == track
        order = np.argsort(state.start_m[m])
        s, ln = state.start_m[m][order], state.length_m[m][order]
        assert np.all(s[1:] >= s[:-1] + ln[:-1] - 1e-6), f"cars overlap on {track}"


def test_facility_changes_follow_the_record(spec, traffic):
    def names(day: str) -> set[str]:
        w = site_world(spec, "tumangang", dt.datetime.fromisoformat(day), traffic)
        return {b.name for b in w.buildings}

    assert "storage-1" not in names("2021-05-01") and "goods-shed-1" in names("2021-05-01")
    assert {"storage-1", "storage-2", "storage-3"} <= names("2022-01-10")
    assert "warehouse-new-2" in names("2023-10-05") and "warehouse-new-2" not in names("2023-09-14")
    assert "station-canopy" in names("2024-12-20") and "station-canopy" not in names("2024-10-15")
    w21 = site_world(spec, "tumangang", dt.datetime(2021, 12, 1), traffic)
    w22 = site_world(spec, "tumangang", dt.datetime(2022, 6, 1), traffic)
    assert not w21.walls and len(w22.walls) == 1

    # containers newly in the warehouse area in October 2023
    def fh(day: str) -> int:
        w = site_world(spec, "tumangang", dt.datetime.fromisoformat(day), traffic)
        return int(np.sum((w.containers.y > 50) & (w.containers.x < 300)))

    assert fh("2023-09-14") == 0 and fh("2023-10-05") >= 40


def test_collection_plan(spec, plan):
    assert 150 <= len(plan) <= 300
    gsds = [p.gsd_m for p in plan]
    assert {0.3, 0.5, 0.8, 3.0} <= set(gsds)
    assert gsds.count(0.5) > len(gsds) / 2
    assert any(p.cloud > 0.5 for p in plan) and any(p.coverage < 1 for p in plan)
    for site, day in [("tumangang", "2023-09-14"), ("tumangang", "2023-10-05"),
                      ("tumangang", "2024-06-17"), ("khasan", "2024-06-17")]:  # fmt: skip
        p = _image(plan, site, day)
        assert p.cloud == 0.0 and p.coverage == 1.0 and p.required
    # gaps: the closure years are imaged much less often than 2023
    n20 = sum(p.when.year == 2021 for p in plan)
    n23 = sum(p.when.year == 2023 for p in plan)
    assert n20 < n23 / 2
    # images are about the AOI size: 1.2 km x 0.8 km at Tumangang
    _, _, ext = site_frame("tumangang")
    assert (ext[2] - ext[0], ext[3] - ext[1]) == pytest.approx((1200, 800), abs=2)


def test_deterministic_for_a_seed(spec, traffic, plan):
    again = build_traffic(spec, seed=0)
    assert [(v.train_id, v.site, v.track_id, v.offset_m, v.arrive, v.cars.color)
            for v in again.visits] == [(v.train_id, v.site, v.track_id, v.offset_m, v.arrive,
                                        v.cars.color) for v in traffic.visits]  # fmt: skip
    assert plan_images(spec, seed=0) == plan
    other = build_traffic(spec, seed=1)
    assert [v.arrive for v in other.visits] != [v.arrive for v in traffic.visits]
    # the public record holds for any seed
    assert other.counts("tumangang", _image(plan, "tumangang", "2023-10-05").when)["total"] == 73


def test_apportion_and_select():
    assert apportion(73, {"flatcar": 0.5, "boxcar": 0.3, "tank": 0.2}) == {
        "flatcar": 36, "boxcar": 22, "tank": 15,
    }  # fmt: skip
    assert sum(apportion(11, {"a": 1, "b": 1, "c": 1}).values()) == 11
    assert hex_rgb("#a8322a") == (168, 50, 42)


def test_select_images_and_partial_bounds(plan):
    sel = select_images(plan, "2023-09-01", "2023-10-31", max_images=5, sites=["tumangang"])
    assert len(sel) == 5 and all(p.site == "tumangang" for p in sel)
    assert all(dt.date(2023, 9, 1) <= p.when.date() <= dt.date(2023, 10, 31) for p in sel)
    p = PlannedImage("tumangang", dt.datetime(2023, 1, 1, 2), "SkySat", 0.5, 0.0, 0.5, 100.0, 1)
    b = image_bounds((-600, -400, 600, 400), p)
    assert b == (0.0, -400, 600, 400)


# -- malformed scenarios ----------------------------------------------------------------
def _write(tmp_path: Path, data: object, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return path


def _error(path: Path) -> str:
    with pytest.raises(InputError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(path.name)
    return msg


def test_bad_yaml(tmp_path):
    msg = _error(_write(tmp_path, "name: x\nsites: [unclosed\n"))
    assert "not valid YAML at line" in msg


def test_missing_key(tmp_path, raw):
    data = copy.deepcopy(raw)
    del data["imagery"]["sensors"][1]["gsd_m"]
    assert "imagery.sensors[1].gsd_m: missing required key" in _error(_write(tmp_path, data))
    data = copy.deepcopy(raw)
    del data["traffic"]
    assert _error(_write(tmp_path, data)) == "scenario.yaml: traffic: missing required key"


def test_wrong_type(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["sites"]["tumangang"]["tracks"][2]["points"] = "north of the station"
    msg = _error(_write(tmp_path, data))
    want = "sites.tumangang.tracks[2].points: expected a list of [x, y] pairs (at least 2)"
    assert msg == f"scenario.yaml: {want}"
    data = copy.deepcopy(raw)
    data["traffic"]["periods"][0]["arrivals_per_week"] = "many"
    msg = _error(_write(tmp_path, data))
    assert "traffic.periods[0].arrivals_per_week: expected a number" in msg


def test_unknown_class(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["traffic"]["trains"][0]["cars"][1]["class"] = "caboose"
    msg = _error(_write(tmp_path, data))
    assert "traffic.trains[0].cars[1].class: unknown railcar class 'caboose'" in msg
    data = copy.deepcopy(raw)
    kfs = data["traffic"]["stock"][0]["keyframes"]
    i = next(i for i, k in enumerate(kfs) if "counts" in k)
    kfs[i]["counts"]["ore"] = 4
    msg = _error(_write(tmp_path, data))
    assert f"traffic.stock[0].keyframes[{i}].counts.ore: unknown railcar class" in msg


def test_unknown_site(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["sites"]["rajin"] = data["sites"].pop("khasan")
    msg = _error(_write(tmp_path, data))
    assert "sites.rajin: unknown site 'rajin'" in msg and "tumangang" in msg
    data = copy.deepcopy(raw)
    data["traffic"]["trains"][1]["stops"][0]["site"] = "vladivostok"
    msg = _error(_write(tmp_path, data))
    assert "traffic.trains[1].stops[0].site: unknown site 'vladivostok'" in msg


def test_dates_out_of_order(tmp_path, raw):
    data = copy.deepcopy(raw)
    kfs = data["traffic"]["stock"][0]["keyframes"]
    kfs[3]["date"] = dt.date(2023, 9, 1)
    assert "traffic.stock[0].keyframes[3]: dates out of order" in _error(_write(tmp_path, data))
    data = copy.deepcopy(raw)
    stop = data["traffic"]["trains"][0]["stops"][0]
    stop["depart"] = "2022-11-03T00:00"
    assert "traffic.trains[0].stops[0].depart: dates out of order" in _error(_write(tmp_path, data))


def test_other_errors(tmp_path, raw):
    with pytest.raises(InputError, match="unknown scenario 'atlantis'"):
        load_scenario("atlantis")
    with pytest.raises(InputError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.yaml")
    data = copy.deepcopy(raw)
    data["sites"]["tumangang"]["tracks"][0]["gauge"] = 1520
    assert "sites.tumangang.tracks[0].gauge: unknown key" in _error(_write(tmp_path, data))
    data = copy.deepcopy(raw)
    data["traffic"]["trains"][0]["stops"][0]["track"] = "Z9"
    assert "unknown track 'Z9'" in _error(_write(tmp_path, data))
    # a stock too big for the site's tracks is reported, not silently dropped
    data = copy.deepcopy(raw)
    data["traffic"]["stock"][2]["keyframes"][1]["counts"]["hopper"] = 5000
    spec = parse_scenario(data, "big.yaml")
    with pytest.raises(InputError, match="no room"):
        build_traffic(spec)


# -- end to end -------------------------------------------------------------------------
def test_simulate_writes_images_truth_and_manifest(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["imagery"]["sensors"] = [{"name": "PlanetScope", "gsd_m": 3.0}]
    data["imagery"]["required"] = [{"site": "khasan", "date": "2024-06-17"},
                                   {"site": "tumangang", "date": "2024-06-17"}]  # fmt: skip
    path = _write(tmp_path, data, "small.yaml")
    out = tmp_path / "out"
    seen = []
    m = simulate_scenario(path, out, seed=3, start="2024-06-17", end="2024-06-17",
                          progress=lambda k, n, name: seen.append((k, n, name)))  # fmt: skip
    assert [i["site"] for i in m["images"]] == ["tumangang", "khasan"]
    assert len(seen) == 2 and seen[-1][:2] == (2, 2)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    for img in m["images"]:
        assert img["file"].startswith(img["site"] + "_20240617T")
        assert img["file"].endswith("_PlanetScope.tif")
        assert (out / img["file"]).is_file()
        truth = json.loads((out / img["truth"]).read_text())
        rail = [f for f in truth["features"] if f["properties"]["kind"] == "railcar"]
        assert len(rail) == img["counts"]["total"] == img["site_counts"]["total"]
        assert img["gsd_m"] == 3.0 and img["aoi_coverage"] == 1.0 and img["cloud_fraction"] == 0.0
        assert sum(img["containers_by_zone"].values()) == img["containers"]
    t, k = m["images"]
    assert t["counts"]["hopper"] == 175 and t["counts"]["tank"] == 66
    assert k["counts"]["hopper"] == 112 and k["counts"]["passenger"] == 1
    assert t["width"] == 400 and t["height"] == 267


def test_simulate_rejects_unknown_site_and_leaves_no_manifest(tmp_path):
    with pytest.raises(InputError, match="no site 'rajin'"):
        simulate_scenario(BUILTIN, tmp_path / "o", sites=["rajin"])
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_cli_simulate(tmp_path, raw):
    from typer.testing import CliRunner

    from railwatch.cli.main import app

    data = copy.deepcopy(raw)
    data["imagery"]["sensors"] = [{"name": "PlanetScope", "gsd_m": 3.0}]
    data["imagery"]["required"] = [{"site": "khasan", "date": "2022-11-29"},
                                   {"site": "tumangang", "date": "2022-11-29"}]  # fmt: skip
    path = _write(tmp_path, data, "cli.yaml")
    out = tmp_path / "cli-out"
    args = ["simulate", str(path), "--out", str(out), "--seed", "2", "--max-images", "1",
            "--start", "2022-11-29", "--end", "2022-11-29", "--site", "khasan"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["images"]) == 1 and m["images"][0]["site"] == "khasan" and m["seed"] == 2
    assert m["images"][0]["trains"] == ["nov22-8car"]
    # the same seed gives byte-identical files
    again = tmp_path / "cli-again"
    res = CliRunner().invoke(app, [*args[:3], str(again), *args[4:]])
    assert res.exit_code == 0, res.output
    for name in (m["images"][0]["file"], m["images"][0]["truth"], "manifest.json"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    bad = _write(tmp_path, {"name": "x"}, "bad.yaml")
    res = CliRunner().invoke(app, ["simulate", str(bad), "--out", str(tmp_path / "b")])
    assert res.exit_code == 2
    assert "bad.yaml: start: missing required key" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["simulate", BUILTIN, "--out", str(out), "--start", "soon"])
    assert res.exit_code == 2 and "start: expected a date" in res.output


def test_docs_schema_example_is_valid():
    """The YAML example in docs/simulator.md validates and runs (docs cannot drift)."""
    text = (Path(__file__).parents[1] / "docs" / "simulator.md").read_text(encoding="utf-8")
    section = text[text.index("### Schema") :]
    block = section[section.index("```yaml") + len("```yaml") : section.index("```\n", 10)]
    spec = parse_scenario(yaml.safe_load(block), "docs/simulator.md", {"tumangang", "khasan"})
    traffic = build_traffic(spec, seed=0)
    assert traffic.counts("tumangang", dt.datetime(2023, 10, 5, 2))["total"] == 73
    state = traffic.cars_at("tumangang", dt.datetime(2022, 11, 30, 2))
    assert list(state.train_id) == ["nov22-8car"] * 2 and set(state.track_id) == {"S1"}
    assert plan_images(spec, seed=0)
