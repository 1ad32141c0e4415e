"""The reduced demo, end to end: the findings recover the story from the detector's output."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

import railwatch.demo as demo
from railwatch.cli.main import app

SUMMIT = dt.date(2023, 9, 13)


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    res = demo.run_demo(out, max_images=36, start=dt.date(2018, 1, 1),
                        end=dt.date(2024, 12, 31), pdf=False)
    assert not res.missing, f"demo stages missing: {res.missing}"
    return res


@pytest.mark.slow
def test_reduced_demo_recovers_the_story_from_the_detector(reduced):
    """Issue #7 (4): every point of the story, from findings.json, computed from the
    detector's output on the rendered images (the truth files are never read)."""
    data = json.loads((reduced.out_dir / "tumangang" / "findings.json").read_text())
    assert {"records", "onsets", "covered", "containers_first_seen", "mix_shift",
            "sentences", "peak"} <= set(data)
    # (a) the 2023-10-05 peak, unprecedented against the five-year maximum; the public
    # record (and the scenario's truth) is 73 cars
    recs = {r["date"]: r for r in data["records"]}
    peak = recs["2023-10-05"]
    assert peak["unprecedented"] is True and peak["window_years"] == 5
    assert 58 <= peak["total"] <= 92, peak  # within 25 % of 73
    assert peak["count_low"] <= 73 + 15 and peak["history_since"] < "2020-01-01"
    before = peak["max_before_rise"] or peak["previous_max"]
    assert before["total"] <= 30
    # (b) the onset within a week after the 2023-09-13 summit, named with it
    ons = [o for o in data["onsets"]
           if SUMMIT <= dt.date.fromisoformat(o["date"]) <= SUMMIT + dt.timedelta(days=7)]
    assert ons and ons[0]["event"]["date"] == "2023-09-13", data["onsets"]
    # (c) covered cargo on that date (29 of the 73 in the scenario)
    cov = {c["date"]: c for c in data["covered"]}
    assert 15 <= cov["2023-10-05"]["covered"] <= 45
    # (d) containers appearing in the warehouse area, after the summit
    zones = {c["zone"]: c for c in data["containers_first_seen"]}
    assert "freight_handling" in zones and zones["freight_handling"]["date"] >= "2023-09-13"
    # (e) the 2024 shift toward ore (hopper) and tank cars
    shift = data["mix_shift"]
    assert {"hopper", "tank"} <= set(shift["more"]) and shift["to"].startswith("2024"), shift
    text = " ".join(data["sentences"])
    assert "On 2023-10-05 imagery shows" in text and "tarp-covered" in text
    html = (reduced.out_dir / "tumangang" / "report.html").read_text()
    assert "SIMULATED IMAGERY" in html and "https://" not in html


@pytest.mark.slow
def test_reduced_demo_crossing_and_fresh_store(reduced):
    data = json.loads((reduced.out_dir / "crossing" / "findings.json").read_text())
    assert data["site"] == "crossing" and data["images"] > 0
    assert reduced.store_path.exists() and reduced.images <= 36
    assert set(reduced.timings_s) >= {"simulate", "ingest", "analyze", "report:tumangang"}


def test_demo_says_which_stages_are_missing(tmp_path, monkeypatch):
    def no_simulator(*_a, **_k):
        raise ImportError("no simulator in this test")

    monkeypatch.setattr(demo, "_simulate", no_simulator)
    r = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--no-pdf"])
    assert r.exit_code == 1
    assert "simulate: missing" in r.output and "stages not available yet" in r.output
    res = demo.run_demo(tmp_path / "e", pdf=False)
    assert res.missing == ["simulate", "ingest", "analyze", "report"] and not res.reports


def test_demo_rejects_reversed_dates(tmp_path):
    r = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--start", "2024-01-01",
                                 "--end", "2023-01-01"])
    assert r.exit_code == 2 and "after" in r.output
