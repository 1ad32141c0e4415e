"""Class-mix comparison: image-level permutation test with known answers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from scipy import stats

from railwatch.analytics.mix import compare_mix
from railwatch.analytics.timeline import Reference, Series
from railwatch.errors import InputError
from railwatch.types import RAILCAR_CLASSES

A = Reference("2022-2023", dt.date(2022, 1, 1), dt.date(2023, 12, 31))
B = Reference("2024", dt.date(2024, 1, 1), dt.date(2024, 12, 31))


def _images(rng, dates, p, concentration=25.0, mean_cars=40):
    """Per-image class counts: each image draws its own mix around ``p`` (trains are
    clustered), so cars inside an image are dependent."""
    rows = []
    for _ in dates:
        q = rng.dirichlet(np.asarray(p) * concentration + 1e-3)
        rows.append(rng.multinomial(max(int(rng.poisson(mean_cars)), 1), q))
    return np.array(rows)


def _series(rng, p_before, p_after, n_before=12, n_after=10, **kw):
    da = np.datetime64("2022-01-15") + np.arange(n_before) * np.timedelta64(55, "D")
    db = np.datetime64("2024-01-10") + np.arange(n_after) * np.timedelta64(33, "D")
    x = np.concatenate([_images(rng, da, p_before, **kw), _images(rng, db, p_after, **kw)])
    return Series(site=["t"] * len(x), date=np.concatenate([da, db]), total=x.sum(axis=1),
                  counts={c: x[:, i] for i, c in enumerate(RAILCAR_CLASSES)})


P_OLD = [0.55, 0.10, 0.15, 0.15, 0.05, 0.0, 0.0]
P_NEW = [0.06, 0.26, 0.62, 0.02, 0.03, 0.0, 0.01]


@pytest.mark.parametrize("seed", range(3))
def test_known_shift_is_found_with_the_right_classes(seed: int) -> None:
    s = _series(np.random.default_rng(seed), P_OLD, P_NEW)
    res = compare_mix(s, A, B, n_permutations=1000, n_bootstrap=300, seed=seed)
    assert res.shifted and res.p_overall < 0.01
    assert {"hopper", "tank"} <= set(res.rose)
    assert "boxcar" in res.fell
    hop = res.result("hopper")
    assert hop is not None and hop.difference == pytest.approx(0.62 - 0.15, abs=0.15)
    assert hop.ci_low > 0
    text = " ".join(res.sentences())
    assert "hopper rose" in text and "boxcar fell" in text


@pytest.mark.parametrize("seed", range(4))
def test_no_shift_is_not_found(seed: int) -> None:
    s = _series(np.random.default_rng(50 + seed), P_OLD, P_OLD)
    res = compare_mix(s, A, B, n_permutations=1000, n_bootstrap=200, seed=seed)
    assert not res.rose and not res.fell
    assert "no significant shift" in res.sentences()[0] or not res.shifted


def test_one_whole_train_of_tanks_is_not_a_shift_image_level_dependence() -> None:
    rng = np.random.default_rng(3)
    s = _series(rng, P_OLD, P_OLD, n_before=6, n_after=5, concentration=200.0)
    # one image in 2024 is a 60-car block train of tank cars
    k = len(s) - 1
    tank = list(RAILCAR_CLASSES).index("tank")
    for c in RAILCAR_CLASSES:
        s.counts[c][k] = 0
    s.counts["tank"][k] = 60
    s.total[k] = 60
    # a car-level chi-square would call this a shift...
    mat = np.column_stack([s.counts[c] for c in RAILCAR_CLASSES])
    before = mat[s.date < np.datetime64("2024-01-01")].sum(axis=0)
    after = mat[s.date >= np.datetime64("2024-01-01")].sum(axis=0)
    used = (before + after) > 0
    chi = stats.chi2_contingency(np.array([before[used], after[used]]))
    assert chi.pvalue < 1e-4 and tank >= 0
    # ...the image-level permutation test does not
    res = compare_mix(s, A, B, n_permutations=1000, n_bootstrap=200)
    assert "tank" not in res.rose


def test_too_few_images_is_an_input_error() -> None:
    s = _series(np.random.default_rng(1), P_OLD, P_NEW, n_after=1)
    with pytest.raises(InputError, match="period 2024"):
        compare_mix(s, A, B)


def test_public_record_2024_shift_to_ore_and_tank(tmp_path) -> None:
    from railwatch.analytics.plot import plot_mix
    from railwatch.analytics.timeline import read_csv
    from timeline_public_record import write_public_record_csv

    s = read_csv(write_public_record_csv(tmp_path / "record.csv"))
    res = compare_mix(s, Reference("2022-2023", dt.date(2022, 11, 1), dt.date(2023, 12, 31)),
                      Reference("2024-02..07", dt.date(2024, 2, 1), dt.date(2024, 7, 31)),
                      site="tumangang", n_permutations=1000, n_bootstrap=200)
    assert "hopper" in res.rose and "boxcar" in res.fell
    out = plot_mix(res, tmp_path / "mix.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
