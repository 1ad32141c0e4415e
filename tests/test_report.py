"""The brief from fixtures: findings wording, lower bounds, self-contained HTML, exports, CLI."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from railwatch.report import annotate
from railwatch.report.build import build_report, combine_observations
from railwatch.report.findings import (
    Row,
    class_mix,
    compute_findings,
    containers_first_seen,
    count_phrase,
    mix_shift_finding,
    peak_finding,
)
from railwatch.sites import get_site, to_local
from railwatch.types import RAILCAR_CLASSES, Detections, Event, Observation, Scene

SUMMIT = dt.date(2023, 9, 13)


# -- fixtures made in code -------------------------------------------------------------
def _series() -> list[tuple[dt.date, dict[str, int], int, int, float]]:
    """(date, class counts, covered, containers in freight_handling, usable fraction)."""
    out = []
    rng = np.random.default_rng(7)
    d = dt.date(2018, 5, 1)
    while d < dt.date(2020, 1, 15):  # pre-COVID: up to about 20 cars
        counts = {"boxcar": int(rng.integers(6, 14)), "tank": int(rng.integers(2, 6))}
        out.append((d, counts, 0, 0, 1.0))
        d += dt.timedelta(days=45)
    d = dt.date(2020, 3, 1)
    while d < dt.date(2023, 9, 1):  # closed, then a trickle
        n = 0 if d < dt.date(2022, 11, 1) else int(rng.integers(3, 9))
        out.append((d, {"boxcar": n}, 0, 0, 1.0))
        d += dt.timedelta(days=60)
    out.append((dt.date(2023, 9, 14), {}, 0, 0, 1.0))
    for k, day in enumerate([18, 22, 26, 30]):
        n = 10 + 12 * (k + 1)
        counts = {"boxcar": n // 2, "flatcar": n - n // 2}
        out.append((dt.date(2023, 9, day), counts, n // 4, 0, 1.0))
    out.append((dt.date(2023, 10, 2), {"boxcar": 20, "flatcar": 30, "tank": 5}, 20, 0, 0.4))
    out.append((dt.date(2023, 10, 5), {"boxcar": 28, "flatcar": 38, "tank": 7}, 31, 12, 1.0))
    for m in (2, 3, 4, 5, 6, 7):
        out.append((dt.date(2024, m, 10), {"hopper": 30, "tank": 18, "boxcar": 4}, 0, 12, 1.0))
    return out


def _obs(site: str = "tumangang") -> list[Observation]:
    obs = []
    for i, (d, counts, cov, cont, usable) in enumerate(_series()):
        full = {c: int(counts.get(c, 0)) for c in RAILCAR_CLASSES}
        total = sum(full.values())
        full.update(total=total, covered=cov, containers=cont)
        err = max(1, round(0.04 * total))
        obs.append(Observation(
            site=site, scene_id=i + 1, acquired=dt.datetime(d.year, d.month, d.day, 2, 30),
            counts=full, containers_by_zone={"freight_handling": cont},
            usable_fraction=usable, count_low=max(0, total - err), count_high=total + err,
            partial=usable < 0.95, sensor="SkySat (simulated)", gsd_m=0.5,
        ))
    return obs


def _rows() -> list[Row]:
    from railwatch.report.findings import rows_from_observations

    return rows_from_observations(_obs())


def _detections(o: Observation, site) -> Detections:
    """Railcars along two tracks in the track area, containers in the warehouse area."""
    x0, y0, _x1, _y1 = to_local(site.zones["track_area"], site).bounds
    fx0, fy0, _, _ = to_local(site.zones["freight_handling"], site).bounds
    fps, cls, cov, kind = [], [], [], []
    k = 0
    for c in RAILCAR_CLASSES:
        for _ in range(int(o.counts.get(c, 0))):
            track, pos = divmod(k, 50)
            x = x0 + 150 + pos * 15.0
            y = y0 + 60 + 40 * track
            fps.append([[x, y], [x + 14, y], [x + 14, y + 3.2], [x, y + 3.2]])
            cls.append(c)
            kind.append("railcar")
            cov.append(k < int(o.counts.get("covered", 0)))
            k += 1
    for j in range(int(o.counts.get("containers", 0))):
        x, y = fx0 + 100 + 8 * j, fy0 + 80
        fps.append([[x, y], [x + 6, y], [x + 6, y + 2.4], [x, y + 2.4]])
        cls.append("")
        kind.append("container")
        cov.append(False)
    n = len(fps)
    return Detections(
        footprints=np.array(fps, float).reshape(n, 4, 2), kind=kind, cls=cls,
        score=np.full(n, 0.9), covered=cov, color=np.tile([120, 60, 40], (n, 1)),
        length_m=np.full(n, 14.0), crs=32652,
    )


def write_tiny_tif(path: Path, site) -> None:
    """A 2 m GeoTIFF (EPSG:32652) over the site's AOI: grey ground, darker track band."""
    x0, y0, x1, y1 = to_local(site.aoi, site).bounds
    gsd = 2.0
    w, h = int((x1 - x0) / gsd) + 20, int((y1 - y0) / gsd) + 20
    rng = np.random.default_rng(1)
    img = (rng.normal(150, 8, (3, h, w))).clip(0, 255).astype(np.uint8)
    _tx0, ty0, _tx1, ty1 = to_local(site.zones["track_area"], site).bounds
    r0, r1 = int((y1 + 20 - ty1) / gsd), int((y1 + 20 - ty0) / gsd)
    img[:, r0:r1, :] = 95
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                       crs="EPSG:32652", transform=from_origin(x0 - 20, y1 + 20, gsd, gsd)) as ds:
        ds.write(img)


class FakeStore:
    """The three store methods the brief needs, over fixtures."""

    def __init__(self, tmp: Path, sites=("tumangang",)) -> None:
        self.sites = {s: get_site(s) for s in sites}
        self.obs = {s: _obs(s) for s in sites}
        self.tifs = {}
        for s, site in self.sites.items():
            p = tmp / f"{s}.tif"
            write_tiny_tif(p, site)
            self.tifs[s] = p
        self.scene_site = {o.scene_id + 1000 * i: s
                           for i, s in enumerate(sites) for o in self.obs[s]}
        for i, s in enumerate(sites):  # unique scene ids per site
            self.obs[s] = [Observation(**{**o.__dict__, "scene_id": o.scene_id + 1000 * i})
                           for o in self.obs[s]]

    def stored_sites(self) -> list:
        return []

    def observations(self, site: str) -> list[Observation]:
        return list(self.obs.get(site, []))

    def _o(self, scene_id: int) -> tuple[str, Observation]:
        s = self.scene_site[scene_id]
        return s, next(o for o in self.obs[s] if o.scene_id == scene_id)

    def get_scene(self, scene_id: int) -> Scene:
        s, o = self._o(scene_id)
        from shapely.geometry import box
        return Scene(id=scene_id, path=str(self.tifs[s]), sha256="0" * 64, crs_wkt="",
                     transform=(), width=0, height=0, band_count=3, dtype="uint8", gsd_m=2.0,
                     footprint=box(0, 0, 1, 1), acquired=o.acquired, sensor=o.sensor)

    def get_detections(self, scene_id: int) -> Detections:
        s, o = self._o(scene_id)
        return _detections(o, self.sites[s])


# -- findings --------------------------------------------------------------------------
def test_peak_is_unprecedented_with_previous_max_and_range():
    rec = peak_finding(_rows(), "Tumangang", rise_start="2023-09-18")
    assert rec["date"] == "2023-10-05" and rec["total"] == 73
    assert rec["unprecedented"] is True
    assert rec["previous_max"]["total"] == 58  # the rise itself, 2023-09-30
    pre = rec["max_before_rise"]
    assert pre["total"] <= 20 and pre["date"] < "2020-02-01"
    assert "73 railcars (range 70–76)" in rec["text"]
    assert "since at least 2018" in rec["text"]
    assert f"the maximum was {pre['total']} on {pre['date']}" in rec["text"]


def test_partial_image_is_a_lower_bound_and_never_the_peak():
    rows = _rows()
    # make the partial image the largest count: it still must not become the record
    part = next(r for r in rows if r.partial)
    part.total, part.low, part.high = 500, 490, 510
    rec = peak_finding(rows, "Tumangang")
    assert rec["date"] == "2023-10-05"
    assert count_phrase(40, 38, 42, partial=True).startswith("at least")
    f = compute_findings(rows, site="tumangang", title="Tumangang")
    assert any("lower bound and is not used for records" in s for s in f.sentences)
    assert f.data["lower_bound_images"] == 1


def test_no_overclaim_when_range_overlaps_history():
    rows = _rows()
    peak = next(r for r in rows if r.date == dt.date(2023, 10, 5))
    peak.total, peak.low, peak.high = 22, 15, 30  # within reach of the pre-COVID max
    for r in rows:
        if r.date > dt.date(2023, 10, 5) or (r.date > dt.date(2023, 9, 1) and r is not peak):
            r.total, r.low, r.high = 0, 0, 1
    rec = peak_finding(rows, "Tumangang")
    assert rec["unprecedented"] is False
    assert "most in any" not in rec["text"] and "unprecedented" not in rec["text"]
    assert "not clearly above" in rec["text"]


def test_rise_peak_is_a_record_over_the_pre_rise_history():
    # the rise's earlier images overlap the peak's range, and the timeline does not flag
    # it; the peak still clears every pre-rise count by the ranges: a record of the rise
    rows = _rows()
    peak = next(r for r in rows if r.date == dt.date(2023, 10, 5))
    peak.total, peak.low, peak.high = 99, 62, 110
    for r in rows:
        r.unprecedented = False
        if dt.date(2023, 9, 18) < r.date < peak.date:
            r.total, r.low, r.high = 68, 31, 78
    rec = peak_finding(rows, "Tumangang", rise_start="2023-09-18")
    assert rec["unprecedented"] is True and rec["rule"] == "rise peak over pre-rise ranges"
    assert "the maximum was" in rec["text"]
    # ... but not when a pre-rise count comes within reach of the peak's range
    pre = next(r for r in rows if r.date == dt.date(2022, 12, 16))
    pre.total, pre.low, pre.high = 40, 30, 70
    assert peak_finding(rows, "Tumangang", rise_start="2023-09-18")["unprecedented"] is False
    # ... nor when a count inside the rise is higher than the peak's
    pre.total, pre.low, pre.high = 10, 5, 15
    rows[-1].total = 120
    later = [r for r in rows if r.date > peak.date]
    for r in later:
        r.total, r.low, r.high = 0, 0, 1
    inside = next(r for r in rows if dt.date(2023, 9, 18) < r.date < peak.date)
    inside.total = 100
    assert peak_finding(rows, "Tumangang", rise_start="2023-09-18",
                        at=peak)["unprecedented"] is False


def test_timeline_flag_can_veto_unprecedented():
    rows = _rows()
    for r in rows:
        r.unprecedented = False
    assert peak_finding(rows, "Tumangang")["unprecedented"] is False


def test_onset_relative_to_preceding_event():
    from railwatch.report.findings import onset_finding

    onsets = [{"date": "2023-09-18", "direction": "up", "before_level": 0, "after_level": 70},
              {"date": "2024-12-01", "direction": "down", "before_level": 50, "after_level": 0}]
    rec = onset_finding(onsets, [Event(SUMMIT, "Kim–Putin summit")], "2023-10-05")
    assert rec["date"] == "2023-09-18" and rec["days_after_event"] == 5
    assert rec["text"].startswith(
        "The rise began about 2023-09-18, five days after the Kim–Putin summit on 2023-09-13"
    )


def test_covered_containers_and_mix_shift():
    rows = _rows()
    f = compute_findings(rows, site="tumangang", title="Tumangang",
                         covered_by_date={"2023-10-05": {"flatcar": 25, "boxcar": 6}},
                         zone_titles={"freight_handling": "freight-handling / warehouse area"})
    [cov] = f.data["covered"]
    assert cov["date"] == "2023-10-05" and cov["covered"] == 31
    assert "mostly flatcars (25)" in cov["text"] and "cannot be identified" in cov["text"]
    first = f.data["containers_first_seen"]
    assert first and first[0]["zone"] == "freight_handling" and first[0]["date"] == "2023-10-05"
    assert "warehouse area for the first time" in first[0]["text"]
    shift = f.data["mix_shift"]
    assert shift["from"] == "2022–2023" and shift["to"] == "2024"
    assert set(shift["more"]) >= {"hopper", "tank"} and "boxcar" in shift["fewer"]


def test_containers_need_earlier_empty_images():
    rows = _rows()[:3]
    rows[1].containers_by_zone = {"freight_handling": 5}
    assert containers_first_seen(rows) == []


def test_container_blip_is_not_an_appearance():
    rows = _rows()
    blip = next(r for r in rows if r.date.year == 2019)
    blip.containers_by_zone = {"freight_handling": 4}  # one image, gone in the next
    [first] = containers_first_seen(rows)
    assert first["date"] == "2023-10-05" and first["prior_max"] == 4
    assert "at most 4 in" in first["text"]
    blip.containers_by_zone = {"freight_handling": 6}  # 12 later is not "more than twice"
    assert containers_first_seen(rows) == []
    blip.containers_by_zone = {}
    lone = [r for r in rows if r.date <= dt.date(2023, 10, 5)]
    [only] = containers_first_seen(lone)
    assert "seen in this one image only so far" in only["text"]


def test_mix_shift_needs_enough_cars():
    rows = _rows()
    mix = class_mix(rows, [("a", dt.date(2019, 1, 1), dt.date(2019, 1, 2)),
                           ("b", dt.date(2024, 2, 10), dt.date(2024, 2, 10))])
    assert mix_shift_finding(mix) is None


def test_crossing_groups_without_both_sites_are_lower_bounds():
    a = _obs("tumangang")[:3]
    b = _obs("khasan")[:2]
    b[1] = Observation(**{**b[1].__dict__, "acquired": b[1].acquired + dt.timedelta(days=2)})
    comb = combine_observations([a, b])
    assert [o.partial for o in comb] == [False, False, True]
    assert comb[0].total == a[0].total + b[0].total
    assert comb[1].total == a[1].total + b[1].total  # paired within 3 days
    far = [Observation(**{**b[0].__dict__, "acquired": b[0].acquired + dt.timedelta(days=9)})]
    assert [o.partial for o in combine_observations([a[:1], far])] == [True, True]


# -- annotate --------------------------------------------------------------------------
def test_annotated_image_draws_class_colours(tmp_path):
    site = get_site("tumangang")
    tif = tmp_path / "t.tif"
    write_tiny_tif(tif, site)
    o = next(o for o in _obs() if o.total > 60)
    det = _detections(o, site)
    img = annotate.annotated_image(str(tif), det, site.aoi)
    assert img.ndim == 3 and img.shape[2] == 3 and max(img.shape[:2]) <= 1400
    flat = img.reshape(-1, 3)
    for c in ("boxcar", "flatcar"):
        assert np.any(np.all(flat == annotate.CLASS_COLORS[c], axis=1)), c
    chip = annotate.busiest_chip(str(tif), det)
    assert chip is not None and chip.shape[0] >= 300
    assert annotate.to_data_uri(chip).startswith("data:image/jpeg;base64,")


# -- the whole brief -------------------------------------------------------------------
@pytest.fixture(scope="module")
def brief(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("brief")
    store = FakeStore(tmp)
    res = build_report(store, "tumangang", tmp / "out", pdf=False)
    return res


def test_brief_files_and_findings_json(brief):
    out = brief.out_dir
    for name in ("report.html", "findings.json", "detections.geojson", "detections.gpkg",
                 "detections.kml", "observations.csv"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "findings.json").read_text())
    assert data["unprecedented"] is True and data["peak"]["date"] == "2023-10-05"
    [cov] = data["covered"]
    assert cov["date"] == "2023-10-05" and cov["covered"] == 31
    assert sum(cov["by_class"].values()) == 31  # from the detections themselves
    assert data["containers_first_seen"][0]["zone"] == "freight_handling"
    assert "hopper" in data["mix_shift"]["more"]
    assert data["sentences"] == brief.findings.sentences
    assert not list(out.glob(".*tmp*")), "temp files left behind"


def test_html_is_self_contained_and_in_order(brief):
    html = brief.html.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "<script" not in html
    imgs = re.findall(r'<img src="([^"]+)"', html)
    assert len(imgs) >= 4 and all(s.startswith("data:image/") for s in imgs)
    order = [html.index(f'id="{k}"') for k in
             ("findings", "latest", "pairs", "timeline", "mix", "changes", "images", "method")]
    assert order == sorted(order)
    assert "lower bound" in html  # the partial image in the table
    assert "73 railcars (range 70–76)" in html


def test_exports_are_readable(brief):
    import pyogrio

    out = brief.out_dir
    fc = json.loads((out / "detections.geojson").read_text())
    n = len(fc["features"])
    assert n > 0
    assert {"scene_id", "date", "class", "covered"} <= set(fc["features"][0]["properties"])
    info = pyogrio.read_info(out / "detections.gpkg")
    assert info["features"] == n and "EPSG:4326" in info["crs"]
    with sqlite3.connect(out / "detections.gpkg") as con:  # a real GeoPackage
        assert con.execute("select count(*) from gpkg_contents").fetchone()[0] == 1
    kml = (out / "detections.kml").read_text()
    assert kml.count("<Placemark>") == n and "<coordinates>" in kml
    csv_lines = (out / "observations.csv").read_text().splitlines()
    assert csv_lines[0].startswith("site,date,acquired") and len(csv_lines) == len(_obs()) + 1


def test_as_of_uses_only_earlier_images(tmp_path):
    store = FakeStore(tmp_path)
    res = build_report(store, "tumangang", tmp_path / "o", as_of=dt.date(2023, 10, 1), pdf=False)
    data = json.loads(res.findings_json.read_text())
    assert data["last_image"] < "2023-10-01" and data["as_of"] == "2023-10-01"
    assert data["peak"]["date"] < "2023-10-01"
    assert all(c["date"] < "2023-10-01" for c in data["covered"])


def test_crossing_brief(tmp_path):
    store = FakeStore(tmp_path, sites=("tumangang", "khasan"))
    res = build_report(store, "crossing", tmp_path / "x", pdf=False)
    data = json.loads(res.findings_json.read_text())
    assert data["site"] == "crossing" and data["peak"]["total"] == 146
    html = res.html.read_text()
    assert "Tumangang–Khasan border crossing" in html and "<th>site</th>" in html
    assert "Latest image of Tumangang" in html and "Latest image of Khasan" in html


def test_cli_report(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import railwatch.report.build as b
    from railwatch.cli.main import app

    store = FakeStore(tmp_path)

    class _Ctx:
        def __init__(self, *_a, **_k):
            pass

        def __enter__(self):
            return store

        def __exit__(self, *a):
            return None

    monkeypatch.setattr("railwatch.store.Store", _Ctx)
    r = CliRunner().invoke(app, ["--db", str(tmp_path / "db.sqlite"), "report", "tumangang",
                                 "--out", str(tmp_path / "cli"), "--no-pdf"])
    assert r.exit_code == 0, r.output
    assert "report:" in r.output and (tmp_path / "cli" / "report.html").exists()
    assert "2023-10-05" in r.output
    bad = CliRunner().invoke(app, ["report", "tumangang", "--out", str(tmp_path / "z"),
                                   "--as-of", "yesterday"])
    assert bad.exit_code == 2 and "not a date" in bad.output
    assert b.CROSSING == "crossing"


def test_facility_changes_section_with_chips(tmp_path, monkeypatch):
    import cv2

    import railwatch.report.analysis as an

    chip = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    rec = {"kind": "new structure", "zone": "freight_handling", "first_seen": "2021-08-15",
           "last_absent": "2021-07-02", "area_m2": 1200.0,
           "text": "A new warehouse-sized building of about 1,200 m² appeared in the"
                   " freight-handling area between 2021-07-02 and 2021-08-15."}
    monkeypatch.setattr(an, "facility_changes",
                        lambda store, site, as_of: ([dict(rec)], [{"change": rec,
                                                                    "chips": (chip, chip)}]))
    res = build_report(FakeStore(tmp_path), "tumangang", tmp_path / "c", pdf=False)
    data = json.loads(res.findings_json.read_text())
    assert data["changes"][0]["kind"] == "new structure"
    assert rec["text"] in res.findings.sentences
    html = res.html.read_text()
    sec = html[html.index('id="changes"'):html.index('id="images"')]
    assert "1,200 m²" in sec and sec.count("<img") == 1


def test_short_history_is_not_a_record():
    rows = [r for r in _rows() if r.date >= dt.date(2023, 9, 1)]
    rec = peak_finding(rows, "Tumangang")
    assert rec["unprecedented"] is False
    assert "too little history to call it a record" in rec["text"]
    assert "most in any" not in rec["text"]


def test_two_rises_give_two_records():
    rows = _rows()
    for r in rows:
        if r.date.year == 2024:
            r.total, r.low, r.high = 150, 145, 155
            r.counts = {**r.counts, "hopper": 100, "tank": 46}
    onsets = [{"date": "2023-09-18", "direction": "up", "before_level": 3, "after_level": 70},
              {"date": "2024-02-01", "direction": "up", "before_level": 40, "after_level": 150},
              {"date": "2024-04-01", "direction": "up", "before_level": 140, "after_level": 150}]
    events = [Event(SUMMIT, "Kim–Putin summit")]
    f = compute_findings(rows, site="tumangang", title="Tumangang", onsets=onsets, events=events)
    recs = f.data["records"]
    assert [r["date"] for r in recs] == ["2023-10-05", "2024-02-10"]
    assert recs[0]["max_before_rise"]["total"] <= 20 and recs[1]["previous_max"]["total"] == 73
    assert f.data["peak"]["date"] == "2024-02-10" and f.data["unprecedented"] is True
    text = " ".join(f.sentences)
    assert text.index("On 2023-10-05") < text.index("five days after") < text.index("On 2024-02-10")
    # the 2024-04-01 onset continues the 2024 rise (within 120 days): no third record
    assert [o["date"] for o in f.data["onsets"]] == ["2023-09-18", "2024-02-01", "2024-04-01"]
    assert text.count("The rise began") == 2


def test_docs_name_every_report_and_demo_option():
    import typer.main

    from railwatch.cli.main import app

    doc = (Path(__file__).parent.parent / "docs" / "report.md").read_text()
    group = typer.main.get_command(app)
    for name in ("report", "demo"):
        cmd = group.commands[name]
        for p in cmd.params:
            for opt in p.opts:
                if opt.startswith("--") and opt != "--help":
                    assert f"`{opt}" in doc or f"{opt} " in doc, f"{name} {opt} undocumented"


def test_simulated_imagery_is_recognised_from_the_manifest(tmp_path):
    from railwatch.report.build import is_simulated

    (tmp_path / "a.tif").write_bytes(b"")
    assert not is_simulated([str(tmp_path / "a.tif")])
    (tmp_path / "manifest.json").write_text('{"generated_by": "railwatch simulate"}')
    assert is_simulated([str(tmp_path / "a.tif")])


def test_many_changes_are_summarised():
    from railwatch.report.findings import change_sentences

    chg = [{"text": f"change {i}", "area_m2": float(i)} for i in range(10)]
    s = change_sentences(chg)
    assert s[:3] == ["change 9", "change 8", "change 7"]
    assert "7 further, smaller changes" in s[3] and len(s) == 4
    # Every building an analyst would name (at least 1,000 m²) is a key finding, up to six.
    chg = [{"text": f"big {a}", "area_m2": a} for a in (4100.0, 1950.0, 2400.0, 1960.0, 2200.0)]
    chg += [{"text": "shed", "area_m2": 300.0}, {"text": "hut", "area_m2": 120.0}]
    s = change_sentences(chg)
    assert s[:5] == ["big 4100.0", "big 2400.0", "big 2200.0", "big 1960.0", "big 1950.0"]
    assert "2 further, smaller changes" in s[5] and len(s) == 6
    s = change_sentences([{"text": f"b{i}", "area_m2": 5000.0 - i} for i in range(9)])
    assert s[:6] == [f"b{i}" for i in range(6)] and "3 further" in s[6]


def test_a_rise_ends_at_a_long_gap_in_the_imagery():
    """A higher count months later, with no images between, is not the peak of the rise
    that was watched build up (the 2023 record stays the 2023 rise's finding)."""
    rows = _rows()
    for r in rows:
        if r.date.year == 2024:
            r.total, r.low, r.high = 120, 115, 125
    onsets = [{"date": "2023-09-18", "direction": "up", "before_level": 3, "after_level": 70}]
    f = compute_findings(rows, site="tumangang", title="Tumangang", onsets=onsets,
                         events=[Event(SUMMIT, "Kim–Putin summit")])
    dates = [r["date"] for r in f.data["records"]]
    assert dates[0] == "2023-10-05", dates  # 2023-10-05 -> 2024-02-10 is a 128-day gap
    assert f.data["peak"]["date"] == "2024-02-10"  # still the highest count overall
    text = " ".join(f.sentences)
    assert text.count("The rise began") == 1  # the rise is told once, with its own record
    later = f.data["records"][1]
    assert later["date"] == "2024-02-10" and later["previous_max"]["total"] == 73
    assert "the previous maximum was 73 on 2023-10-05" in later["text"]
    # without the gap (images every two weeks) the rise runs on into 2024
    from railwatch.report.findings import record_episodes

    bridged = [r for r in rows if r.date <= dt.date(2023, 10, 5) or r.date.year == 2024]
    last = bridged[[r.date for r in bridged].index(dt.date(2023, 10, 5))]
    fill = []
    for k in range(1, 9):
        x = copy.copy(last)
        x.date = last.date + dt.timedelta(days=14 * k)
        fill.append(x)
    eps = record_episodes(sorted(bridged + fill, key=lambda r: r.date), "Tumangang", onsets)
    assert [e["peak"]["date"] for e in eps] == ["2024-02-10"]
