"""Onset detection on synthetic irregular, gappy series with known answers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from railwatch.analytics.onsets import detect_onsets, nearest_preceding_event, segment
from railwatch.types import Event


def _dates(rng: np.random.Generator, start: str, end: str, lo: int, hi: int) -> np.ndarray:
    out, x = [], np.datetime64(start)
    while x < np.datetime64(end):
        out.append(x)
        x = x + np.timedelta64(int(rng.integers(lo, hi)), "D")
    return np.array(out, dtype="datetime64[D]")


@pytest.mark.parametrize("seed", range(5))
def test_ramp_onset_found_at_its_start_within_a_few_days(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = _dates(rng, "2020-01-01", "2022-06-01", 3, 13)
    d = d[(d < np.datetime64("2020-08-01")) | (d > np.datetime64("2020-11-01"))]  # a gap
    days = (d - np.datetime64("2021-03-15")).astype(int)
    y = np.maximum(np.round(10 + np.clip(days, 0, 40) * 1.5 + rng.normal(0, 2, len(d))), 0)
    summit = Event(dt.date(2021, 3, 10), "summit")
    onsets = detect_onsets(d, y, site="x", events=[summit, Event(dt.date(2021, 4, 1), "later")])
    assert len(onsets) == 1
    on = onsets[0]
    assert on.direction == "up" and on.kind == "ramp"
    assert abs((on.date - dt.date(2021, 3, 15)).days) <= 4
    assert on.date_low <= on.date <= on.date_high
    assert on.before_level == pytest.approx(10, abs=3)
    assert on.after_level == pytest.approx(70, abs=6)
    # the nearest PRECEDING event, not the later one
    assert on.event == "summit" and on.days_after_event == (on.date - summit.date).days


@pytest.mark.parametrize("seed", range(5))
def test_seasonal_highs_are_not_onsets(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    d = _dates(rng, "2018-01-01", "2024-01-01", 7, 21)
    doy = (d - np.datetime64("2018-01-01")).astype(int)
    y = np.round(40 + 15 * np.sin(2 * np.pi * doy / 365.25) + rng.normal(0, 2.5, len(d)))
    assert segment(doy.astype(float), y), "the raw segmentation does see the swings"
    assert detect_onsets(d, y, site="s") == []


def test_step_down_is_a_step_between_the_two_images() -> None:
    rng = np.random.default_rng(7)
    d = _dates(rng, "2019-01-01", "2021-06-01", 10, 25)
    y = np.where(d < np.datetime64("2020-02-01"), 15, 0) + np.where(
        d < np.datetime64("2020-02-01"), rng.integers(-3, 4, len(d)), 0)
    onsets = detect_onsets(d, y, site="x",
                           events=[Event(dt.date(2020, 1, 31), "border closed")])
    assert len(onsets) == 1
    on = onsets[0]
    assert on.direction == "down" and on.kind == "step"
    last_before = d[d < np.datetime64("2020-02-01")][-1].item()
    first_after = d[d >= np.datetime64("2020-02-01")][0].item()
    assert on.date_low == last_before and on.date_high == first_after
    assert on.after_level == pytest.approx(0, abs=0.5)


@pytest.mark.parametrize("seed", range(3))
def test_flat_noisy_series_has_no_onsets(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    d = _dates(rng, "2020-01-01", "2023-01-01", 5, 20)
    assert detect_onsets(d, np.round(20 + rng.normal(0, 4, len(d)))) == []


def test_short_series_and_sentence() -> None:
    d = np.array(["2020-01-01", "2020-02-01"], dtype="datetime64[D]")
    assert detect_onsets(d, np.array([1, 50])) == []
    ev = nearest_preceding_event(dt.date(2023, 9, 18), [Event(dt.date(2023, 9, 13), "summit"),
                                                       Event(dt.date(2023, 9, 20), "after")])
    assert ev is not None and ev.name == "summit"
    old = [Event(dt.date(2022, 1, 1), "old")]
    assert nearest_preceding_event(dt.date(2023, 9, 18), old) is None


def test_noisy_steps_are_mostly_steps_and_always_dated_at_the_jump() -> None:
    kinds = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        d = _dates(rng, "2020-01-01", "2022-01-01", 5, 20)
        y = np.where(d >= np.datetime64("2021-02-01"), 35, 12) + rng.normal(0, 3, len(d))
        onsets = detect_onsets(d, np.round(y), site="x")
        assert len(onsets) == 1 and onsets[0].direction == "up"
        assert abs((onsets[0].date - dt.date(2021, 2, 1)).days) <= 10
        kinds.append(onsets[0].kind)
    assert kinds.count("step") >= 6, kinds
