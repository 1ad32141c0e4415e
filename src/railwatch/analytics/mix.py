"""Class mix: did the kinds of railcars change between two periods?

Cars in one image are not independent (a train is often one kind of wagon), so the unit
of the test is the *image*, not the car. For each class the statistic is the difference
in its pooled share (class cars / all cars over the period's images). Its null
distribution comes from permuting the period labels over the images (``n_permutations``
random relabellings, seeded), its confidence interval from a bootstrap over images
within each period, and the per-class p-values are Holm-adjusted. An overall test uses
the sum over classes of squared share differences, also by permutation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from railwatch.analytics.timeline import Reference, Series
from railwatch.errors import InputError
from railwatch.types import RAILCAR_CLASSES


@dataclass(frozen=True)
class PeriodMix:
    """Pooled class shares of one period."""

    name: str
    start: dt.date
    end: dt.date
    n_images: int
    n_cars: int
    shares: tuple[float, ...]  # in the comparison's class order


@dataclass(frozen=True)
class ClassShift:
    """One class's change of share between the two periods."""

    cls: str
    share_before: float
    share_after: float
    difference: float  # after - before, in share (0.10 = 10 percentage points)
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float  # Holm over classes
    significant: bool

    @property
    def direction(self) -> str:
        if not self.significant:
            return "unchanged"
        return "rose" if self.difference > 0 else "fell"


@dataclass(frozen=True)
class MixComparison:
    """The result of `compare_mix`."""

    site: str
    classes: tuple[str, ...]
    periods: tuple[PeriodMix, PeriodMix]
    shifts: tuple[ClassShift, ...]
    p_overall: float
    n_permutations: int
    alpha: float

    def result(self, cls: str) -> ClassShift | None:
        return next((s for s in self.shifts if s.cls == cls), None)

    @property
    def rose(self) -> list[str]:
        return [s.cls for s in self.shifts if s.direction == "rose"]

    @property
    def fell(self) -> list[str]:
        return [s.cls for s in self.shifts if s.direction == "fell"]

    @property
    def shifted(self) -> bool:
        return self.p_overall < self.alpha and bool(self.rose or self.fell)

    def sentences(self) -> list[str]:
        """Plain statements for the brief."""
        a, b = self.periods
        head = (f"{self.site}: class mix {a.name} ({a.n_images} images, {a.n_cars} cars) vs"
                f" {b.name} ({b.n_images} images, {b.n_cars} cars)")
        if not self.shifted:
            return [head + f": no significant shift (permutation p = {self.p_overall:.3f})."]
        out = [head + f": the mix shifted (permutation over images, p = {self.p_overall:.3f})."]
        for s in self.shifts:
            if s.significant:
                out.append(
                    f"{s.cls} {s.direction}: {s.share_before:.0%} -> {s.share_after:.0%}"
                    f" ({s.difference * 100:+.0f} points, 95% CI {s.ci_low * 100:+.0f} to"
                    f" {s.ci_high * 100:+.0f}; p = {s.p_adjusted:.3f} Holm-adjusted)")
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "site": self.site,
            "periods": [{"name": p.name, "start": p.start.isoformat(), "end": p.end.isoformat(),
                         "n_images": p.n_images, "n_cars": p.n_cars,
                         "shares": dict(zip(self.classes, p.shares, strict=True))}
                        for p in self.periods],
            "p_overall": self.p_overall,
            "shifts": [{"class": s.cls, "share_before": s.share_before,
                        "share_after": s.share_after, "difference": s.difference,
                        "ci": [s.ci_low, s.ci_high], "p_value": s.p_value,
                        "p_adjusted": s.p_adjusted, "direction": s.direction}
                       for s in self.shifts],
            "statements": self.sentences(),
        }


def _shares(counts: np.ndarray) -> np.ndarray:
    tot = counts.sum()
    return counts.sum(axis=0) / tot if tot > 0 else np.zeros(counts.shape[1])


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def class_matrix(series: Series, classes: Sequence[str] = RAILCAR_CLASSES) -> np.ndarray:
    """(N, C) per-image class counts (NaN where the table has no class column/value)."""
    n = len(series)
    return np.column_stack([series.counts.get(c, np.full(n, np.nan)) for c in classes])


def compare_mix(
    series: Series,
    before: Reference,
    after: Reference,
    *,
    site: str | None = None,
    classes: Sequence[str] = RAILCAR_CLASSES,
    n_permutations: int = 2000,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> MixComparison:
    """Compare the class mix of ``series`` (one site) between two periods.

    Images need per-class counts and at least one railcar; partial images count (a share
    does not need the whole AOI). Raises `InputError` when a period has fewer than two
    usable images.
    """
    if site is not None:
        series = series.for_site(site)
    names = series.sites
    label = site or ("+".join(names) if names else "")
    mat = class_matrix(series, classes)
    ok = ~np.isnan(mat).any(axis=1) & (np.nan_to_num(mat).sum(axis=1) > 0)

    def pick(p: Reference) -> np.ndarray:
        return ok & (series.date >= np.datetime64(p.start, "D")) & (
            series.date <= np.datetime64(p.end, "D"))

    ma, mb = pick(before), pick(after)
    for p, m in ((before, ma), (after, mb)):
        if m.sum() < 2:
            raise InputError(f"period {p.name} ({p.start}..{p.end}) has {int(m.sum())} image(s)"
                             " with class counts; need at least 2 to compare mixes")
    xa, xb = mat[ma], mat[mb]
    sa, sb = _shares(xa), _shares(xb)
    diff = sb - sa
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([xa, xb])
    na = len(xa)
    exceed = np.zeros(len(classes))
    overall_obs = float(np.sum(diff**2))
    exceed_all = 0
    for _ in range(n_permutations):
        perm = rng.permutation(len(pooled))
        d = _shares(pooled[perm[na:]]) - _shares(pooled[perm[:na]])
        exceed += np.abs(d) >= np.abs(diff) - 1e-12
        exceed_all += float(np.sum(d**2)) >= overall_obs - 1e-12
    p = (exceed + 1) / (n_permutations + 1)
    p_all = (exceed_all + 1) / (n_permutations + 1)
    boots = np.empty((n_bootstrap, len(classes)))
    for k in range(n_bootstrap):
        ba = xa[rng.integers(0, len(xa), len(xa))]
        bb = xb[rng.integers(0, len(xb), len(xb))]
        boots[k] = _shares(bb) - _shares(ba)
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    present = (sa + sb) > 0  # classes seen in neither period are not tested
    padj = np.ones(len(classes))
    padj[present] = _holm(p[present])
    shifts = tuple(
        ClassShift(cls=c, share_before=float(sa[i]), share_after=float(sb[i]),
                   difference=float(diff[i]), ci_low=float(lo[i]), ci_high=float(hi[i]),
                   p_value=float(p[i]), p_adjusted=float(padj[i]),
                   significant=bool(present[i] and padj[i] < alpha and p_all < alpha))
        for i, c in enumerate(classes)
    )
    periods = (
        PeriodMix(before.name, before.start, before.end, int(ma.sum()), int(xa.sum()),
                  tuple(float(v) for v in sa)),
        PeriodMix(after.name, after.start, after.end, int(mb.sum()), int(xb.sum()),
                  tuple(float(v) for v in sb)),
    )
    return MixComparison(label, tuple(classes), periods, shifts, float(p_all), n_permutations,
                         alpha)
