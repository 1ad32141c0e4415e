"""Timeline analytics: CSV contract, baselines, 'unprecedented', partial images, the
public record, crossing series and the `railwatch timeline` command."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from railwatch.analytics.crossing import combine_sites, parse_crossing
from railwatch.analytics.timeline import (
    PRE_COVID,
    Reference,
    Series,
    analyze,
    baselines,
    build_timeline,
    read_csv,
)
from railwatch.cli.main import app
from railwatch.errors import InputError
from timeline_public_record import write_events_csv, write_public_record_csv


def _series(totals, *, low=None, high=None, usable=None, start="2020-01-01", step=30):
    n = len(totals)
    dates = np.datetime64(start) + np.arange(n) * np.timedelta64(step, "D")
    return Series(site=["s"] * n, date=dates, total=totals, count_low=low, count_high=high,
                  usable_fraction=usable)


# -- CSV contract and errors ----------------------------------------------------------------
def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "counts.csv"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("site,date\nx,2020-01-01\n", ":1: missing column(s) total"),
        ("site,date,total\nx,2020-01-01,3\nx,2020-13-01,4\n", ":3: bad date '2020-13-01'"),
        ("site,date,total\nx,2020-01-01,-3\n", ":2: column 'total' is negative"),
        ("site,date,total\nx,2020-01-01,3\nx,2020-01-01,4\n",
         ":3: duplicate date 2020-01-01 for site 'x' (also on line 2)"),
        ("site,date,total\nx,2020-01-01,lots\n", ":2: column 'total' is not a number"),
        ("site,date,total,tank\nx,2020-01-01,3,1.5\n", ":2: column 'tank' is not a whole count"),
        ("site,date,total\nx,2020-01-01\n", ":2: 2 fields, expected 3"),
        ("site,date,total,usable_fraction\nx,2020-01-01,3,1.4\n", ":2: usable_fraction"),
        ("", ":1: empty file"),
    ],
)
def test_malformed_csv_is_one_line_with_file_and_line(tmp_path, text, message) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(InputError) as err:
        read_csv(p)
    assert message in str(err.value)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_csv_optional_columns_and_ranges(tmp_path) -> None:
    p = _write(tmp_path, "site,date,total,tank,count_low,count_high,usable_fraction\n"
                         "b,2020-02-01,9,,,,0.5\na,2020-01-01T10:00:00,10,4,8,13,\n")
    s = read_csv(p)
    assert s.site.tolist() == ["a", "b"] and str(s.date[0]) == "2020-01-01"
    assert s.counts["tank"][0] == 4 and np.isnan(s.counts["tank"][1])
    low, high, source = s.ranges()
    assert (low[0], high[0], source[0]) == (8, 13, "input")
    assert source[1] == "counting" and high[1] == pytest.approx((9 + 3) / 0.5)
    assert s.complete().tolist() == [True, False]


# -- baselines and flags ---------------------------------------------------------------------
def test_spike_is_unprecedented_only_when_it_clears_the_uncertainty() -> None:
    base = [12, 18, 20, 15, 17, 19]
    for spike, expected in ((23, False), (24, False), (25, True), (31, True)):
        totals = [*base, spike]
        low = [t - 3 for t in totals]
        high = [t + 3 for t in totals]  # combined margin sqrt(3^2 + 3^2) = 4.24 vs max 20
        b = baselines(_series(totals, low=low, high=high))
        assert b.baseline_max[-1] == 20
        assert bool(b.unprecedented[-1]) is expected, spike
        assert b.margin[-1] == pytest.approx(np.sqrt(18))
    # a wider range on the spike itself hides a 31 too
    b = baselines(_series([*base, 31], low=[*[t - 3 for t in base], 20],
                          high=[t + 3 for t in [*base, 31]]))
    assert not b.unprecedented[-1]


def test_partial_image_is_never_unprecedented_nor_in_the_baseline() -> None:
    totals = [10, 12, 11, 9, 80, 13, 40]
    usable = [1, 1, 1, 1, 0.6, 1, 1]
    b = baselines(_series(totals, usable=usable))
    assert not b.complete[4] and not b.unprecedented[4]
    assert b.baseline_max[5] == 12  # the partial 80 is not a baseline
    assert b.unprecedented[6]
    s = _series(totals)
    s.partial[4] = True  # flagged partial even with usable fraction 1
    assert not baselines(s).unprecedented[4]


def test_window_zscore_highest_since_seasonal_and_reference() -> None:
    s = Series(site=["s"] * 5,
               date=np.array(["2010-06-01", "2016-06-01", "2017-06-01", "2018-06-01",
                              "2019-06-10"], dtype="datetime64[D]"),
               total=[100, 20, 30, 10, 25])
    b = baselines(s, window_years=5,
                  reference=Reference.parse("early:2016-01-01..2017-12-31"))
    assert b.baseline_max[4] == 30 and b.baseline_n[4] == 3  # 2010 is outside the window
    assert b.zscore[4] == pytest.approx((25 - 20) / 10)
    assert b.highest_since[4] == "2017-06-01"
    assert b.highest_since[2] == "2010-06-01" and not b.highest_on_record[2]
    assert b.seasonal_max[4] == 30 and b.seasonal_median[4] == 20
    assert b.reference_max[4] == 30 and not b.above_reference[4]
    with pytest.raises(InputError):
        Reference.parse("nonsense")


def test_too_little_history_is_never_unprecedented() -> None:
    assert not baselines(_series([1, 2, 50])).unprecedented.any()  # 2 earlier rows < 3


# -- the public record -------------------------------------------------------------------------
def test_public_record_flags_2023_10_05_and_dates_the_onset(tmp_path) -> None:
    csv_path = write_public_record_csv(tmp_path / "record.csv")
    events = write_events_csv(tmp_path / "events.csv")
    result = build_timeline("tumangang", csv_path=csv_path, events_path=events,
                            reference=PRE_COVID)
    out = result.to_json()
    obs = {o["date"]: o for o in out["observations"]}
    oct5 = obs["2023-10-05"]
    assert oct5["total"] == 73 and oct5["unprecedented"] is True
    assert 18 <= oct5["baseline_max"] <= 25  # "about 20" over the previous five years
    assert oct5["reference_max"] == 20 and oct5["above_reference"] is True
    assert obs["2023-09-14"]["total"] == 0 and not obs["2023-09-14"]["unprecedented"]
    assert oct5["covered"] == 40 and oct5["covered_share"] == pytest.approx(40 / 73, abs=1e-3)
    # no pre-2020 image is unprecedented, and the cloudy partial one is a lower bound
    early = [o for d, o in obs.items() if d < "2020-02-01"]
    assert not any(o["unprecedented"] for o in early)
    assert any(o["partial"] for o in early)
    rises = [o for o in out["onsets"] if o["direction"] == "up"
             and "2023-09-13" <= o["date"] <= "2023-09-20"]
    assert len(rises) == 1
    on = rises[0]
    assert on["event"] == "Kim–Putin summit" and 1 <= on["days_after_event"] <= 7
    assert on["kind"] == "ramp" and on["after_level"] > 50
    assert on["date_low"] >= "2023-09-14" and on["date_high"] <= "2023-09-22"
    assert {"date": "2023-09-13", "name": "Kim–Putin summit", "site": "tumangang"} in out["events"]
    assert any("2023-10-05: 73 railcars" in f and "unprecedented" in f for f in result.findings())


def test_registry_events_are_used_without_an_events_file(tmp_path) -> None:
    csv_path = write_public_record_csv(tmp_path / "record.csv")
    out = build_timeline("tumangang", csv_path=csv_path).to_json()
    assert any(e["date"] == "2023-09-13" for e in out["events"])
    assert any(o["event"] and o["event_date"] == "2023-09-13" for o in out["onsets"])


# -- crossing -----------------------------------------------------------------------------------
def test_crossing_pairs_same_day_within_tolerance_and_flags_a_missing_side() -> None:
    s = Series(site=["a", "b", "a", "b", "a"],
               date=np.array(["2020-01-01", "2020-01-02", "2020-02-01", "2020-03-01",
                              "2020-03-02"], dtype="datetime64[D]"),
               total=[10, 5, 7, 3, 4])
    c = combine_sites(s, ["a", "b"], name="ab", tolerance_days=3)
    assert c.date.astype(str).tolist() == ["2020-01-01", "2020-02-01", "2020-03-01"]
    assert c.total.tolist() == [15, 7, 7]
    assert c.partial.tolist() == [False, True, False]
    assert c.extra["missing"].tolist() == ["", "b", ""]
    assert parse_crossing("tumangang+khasan") == ("tumangang+khasan", ["tumangang", "khasan"])
    assert parse_crossing("crossing", ["a", "b"]) == ("crossing", ["a", "b"])
    assert parse_crossing("tumangang") is None


def test_crossing_series_from_the_public_record(tmp_path) -> None:
    csv_path = write_public_record_csv(tmp_path / "record.csv")
    out = build_timeline("tumangang+khasan", csv_path=csv_path).to_json()
    obs = {o["date"]: o for o in out["observations"]}
    assert obs["2024-06-17"]["total"] == 264 + 150
    runner_out = runner.invoke(app, ["timeline", "tumangang+khasan", "--from-csv",
                                     str(csv_path), "--json", "--pair-days", "0"])
    strict = {o["date"]: o for o in json.loads(runner_out.stdout)["observations"]}
    assert strict["2023-10-05"]["missing"] == "khasan"  # Khasan was seen on 10-06
    assert obs["2023-10-05"]["total"] == 73 + 48 and obs["2023-10-05"]["missing"] == ""
    assert obs["2024-06-17"]["sites"] == "khasan+tumangang" or obs["2024-06-17"]["missing"] == ""
    lone = [o for o in out["observations"] if o["missing"]]
    assert lone and all(o["partial"] and not o["unprecedented"] for o in lone)


# -- CLI -----------------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_from_csv_json_contract(tmp_path) -> None:
    csv_path = write_public_record_csv(tmp_path / "record.csv")
    events = write_events_csv(tmp_path / "events.csv")
    plot = tmp_path / "t.svg"
    res = runner.invoke(app, ["timeline", "--from-csv", str(csv_path), "--json", "--events",
                              str(events), "--plot", str(plot), "--reference",
                              "pre-covid:2018-01-01..2020-01-31"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) >= {"observations", "onsets", "events"}
    dates = [o["date"] for o in out["observations"]]
    assert dates == sorted(dates)
    for o in out["observations"]:
        assert {"site", "date", "total", "baseline_max", "unprecedented", "zscore"} <= set(o)
    for on in out["onsets"]:
        assert {"site", "date", "direction", "before_level", "after_level", "event",
                "days_after_event"} <= set(on)
    svg = plot.read_text()
    assert svg.lstrip().startswith("<?xml")
    for text in ("partial image: lower bound", "unprecedented", "Kim–Putin summit",
                 "steady rise from 2023-09-18", "73 on 2023-10-05"):
        assert text in svg, text


def test_cli_table_and_errors(tmp_path) -> None:
    csv_path = write_public_record_csv(tmp_path / "record.csv")
    res = runner.invoke(app, ["timeline", "tumangang", "--from-csv", str(csv_path)])
    assert res.exit_code == 0, res.output
    assert "UNPRECEDENTED" in res.stdout and "Kim–Putin" in res.stdout
    bad = _write(tmp_path, "site,date,total\nx,2020-01-01,-1\n")
    res = runner.invoke(app, ["timeline", "--from-csv", str(bad), "--json"])
    assert res.exit_code == 2 and f"{bad}:2:" in res.output
    one = _write(tmp_path, "site,date,total,usable_fraction\nx,2020-01-01,3,0.5\n")
    res = runner.invoke(app, ["timeline", "crossing", "--from-csv", str(one)])
    assert res.exit_code == 2 and "needs site(s) tumangang, khasan" in res.output
    res = runner.invoke(app, ["timeline", "--from-csv", str(one), "--json"])  # all partial
    assert res.exit_code == 0 and json.loads(res.stdout)["onsets"] == []
    res = runner.invoke(app, ["timeline", "nowhere", "--from-csv", str(csv_path)])
    assert res.exit_code == 2 and "not in the table" in res.output
    res = runner.invoke(app, ["timeline", "--from-csv", str(csv_path), "--plot",
                              str(tmp_path / "t.gif")])
    assert res.exit_code == 2 and ".png or .svg" in res.output
    assert not list(tmp_path.glob(".tmp-*"))


def test_cli_over_the_store(tmp_path) -> None:
    from railwatch.store import Store
    from railwatch.types import Observation

    db = tmp_path / "rw.db"
    with Store(db) as store:
        for k, total in enumerate([10, 12, 9, 11, 60]):
            store.put_observation(Observation(
                site="tumangang", scene_id=None,
                acquired=dt.datetime(2023, 1, 1, 2, tzinfo=dt.UTC) + dt.timedelta(days=30 * k),
                counts={"total": total, "boxcar": total}, containers_by_zone={},
                usable_fraction=1.0, count_low=total - 2, count_high=total + 2, partial=False))
    res = runner.invoke(app, ["--db", str(db), "timeline", "tumangang", "--json"])
    assert res.exit_code == 0, res.output
    obs = json.loads(res.stdout)["observations"]
    assert [o["total"] for o in obs] == [10, 12, 9, 11, 60]
    assert obs[-1]["unprecedented"] and obs[-1]["range_source"] == "input"
    res = runner.invoke(app, ["--db", str(db), "timeline", "khasan"])
    assert res.exit_code == 2 and "no observations" in res.output
    with Store(db) as store:
        store.put_observation(Observation(
            site="khasan", scene_id=None,
            acquired=dt.datetime(2023, 1, 2, 3, tzinfo=dt.UTC), counts={"total": 4},
            containers_by_zone={}, usable_fraction=1.0, count_low=3, count_high=5,
            partial=False))
    res = runner.invoke(app, ["--db", str(db), "timeline", "crossing", "--json"])
    assert res.exit_code == 0, res.output
    obs = json.loads(res.stdout)["observations"]
    assert obs[0]["total"] == 14 and obs[0]["missing"] == "" and not obs[0]["partial"]
    assert all(o["partial"] and o["missing"] == "khasan" for o in obs[1:])
    res = runner.invoke(app, ["--db", str(db), "timeline", "tumangang", "--reference", "x"])
    assert res.exit_code == 2 and "NAME:YYYY-MM-DD..YYYY-MM-DD" in res.output


def test_analyze_accepts_event_lists() -> None:
    s = _series([5, 5, 5, 5, 5, 40, 41, 40, 42, 39])
    r = analyze(s, [])
    assert r.events == {"s": []}


def test_docs_cover_every_option() -> None:
    """docs/analytics.md names every option of `timeline` and `alerts` (no drift)."""
    import typer.main

    doc = (Path(__file__).parents[1] / "docs" / "analytics.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    for name in ("timeline", "alerts"):
        cmd = group.commands[name]  # type: ignore[attr-defined]
        assert f"railwatch {name}" in doc
        for param in cmd.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert opt in doc, f"{name} {opt} is not documented"
