"""Onsets: when did a rise (or fall) start, and how long after which named event?

The series of one site (irregular, gappy samples) is split into segments by exact optimal
partitioning (dynamic programming over the samples in time order, as ruptures' ``Dynp``
/ ``Pelt`` do). Each segment is a straight line in time (level + slope, fitted to the
irregular dates) with its own noise variance, so a steady ramp is one sloped segment
whose *start* is the onset, not a late step; counts are heteroscedastic (a busy yard
scatters more than an empty one), hence the per-segment variance.

Segment cost: ``n_s * log(max(RSS_s / n_s, var_floor))`` (-2 log-likelihood of a Gaussian
line fit, up to a constant). Penalty per extra segment, the BIC rule:
``4 * log(N)`` (level, slope, variance and the change location). At least ``min_size``
samples per segment.

Each break becomes an `Onset`: the date where the two fitted lines meet (clamped to the
gap between the last sample before and the first after), an interval from the profile
of the cost over nearby break positions (a 95 % chi-square(1) drop, 3.84), direction,
levels before and after (for a ramp, the level reached at the end of the rise), and the
nearest *preceding* named event. Breaks that change less than ``min_change`` cars (and
``min_rel_change`` of the level), or that are a seasonal swing (the mean levels over
up to half a year before and after both lie within half the change of the median of
the same calendar windows in other years) are dropped; same-direction onsets
less than ``merge_days`` apart are one rise.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from railwatch.types import Event

CHI2_95_1DOF = 3.84


@dataclass(frozen=True)
class Onset:
    """A change in a site's counts."""

    site: str
    date: dt.date
    date_low: dt.date
    date_high: dt.date
    direction: str  # "up" or "down"
    kind: str  # "ramp" (gradual) or "step" (abrupt)
    before_level: float
    after_level: float
    event: str | None = None
    event_date: dt.date | None = None
    days_after_event: int | None = None

    def sentence(self) -> str:
        """E.g. 'steady rise from about 2023-09-17 (2023-09-14..2023-09-18), 4 days after
        the 2023-09-13 Kim–Putin summit'."""
        word = {("ramp", "up"): "steady rise", ("ramp", "down"): "steady fall",
                ("step", "up"): "jump", ("step", "down"): "drop"}[(self.kind, self.direction)]
        s = (f"{self.site}: {word} from about {self.date} ({self.date_low}..{self.date_high}),"
             f" {self.before_level:.0f} -> {self.after_level:.0f} railcars")
        if self.event is not None:
            s += f", {self.days_after_event} days after the {self.event_date} {self.event}"
        return s

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (contract keys first)."""
        return {
            "site": self.site,
            "date": self.date.isoformat(),
            "direction": self.direction,
            "before_level": round(self.before_level, 1),
            "after_level": round(self.after_level, 1),
            "event": self.event,
            "days_after_event": self.days_after_event,
            "event_date": self.event_date.isoformat() if self.event_date else None,
            "date_low": self.date_low.isoformat(),
            "date_high": self.date_high.isoformat(),
            "kind": self.kind,
            "statement": self.sentence(),
        }


class _Costs:
    """O(1) straight-line segment costs from cumulative sums."""

    def __init__(self, t: np.ndarray, y: np.ndarray, var_floor: float) -> None:
        z = np.zeros(1)
        self.s1 = np.concatenate([z, np.cumsum(np.ones_like(t))])
        self.st = np.concatenate([z, np.cumsum(t)])
        self.stt = np.concatenate([z, np.cumsum(t * t)])
        self.sy = np.concatenate([z, np.cumsum(y)])
        self.syy = np.concatenate([z, np.cumsum(y * y)])
        self.sty = np.concatenate([z, np.cumsum(t * y)])
        self.var_floor = var_floor

    def rss(self, a: np.ndarray | int, b: int) -> np.ndarray:
        n = self.s1[b] - self.s1[a]
        st, sy = self.st[b] - self.st[a], self.sy[b] - self.sy[a]
        sxx = (self.stt[b] - self.stt[a]) - st * st / n
        sxy = (self.sty[b] - self.sty[a]) - st * sy / n
        syy = (self.syy[b] - self.syy[a]) - sy * sy / n
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(sxx > 1e-9, syy - sxy * sxy / np.where(sxx > 1e-9, sxx, 1.0), syy)
        return np.maximum(r, 0.0)

    def cost(self, a: np.ndarray | int, b: int) -> np.ndarray:
        n = self.s1[b] - self.s1[a]
        return n * np.log(np.maximum(self.rss(a, b) / n, self.var_floor))


def segment(
    t: np.ndarray, y: np.ndarray, *, min_size: int = 4, penalty: float | None = None,
    var_floor: float = 1.0,
) -> list[int]:
    """Optimal segment starts (indices, excluding 0) of piecewise-linear ``y(t)``.

    ``penalty`` defaults to the BIC rule ``4 * log(len(y))``.
    """
    n = len(y)
    if n < 2 * min_size:
        return []
    pen = 4.0 * math.log(n) if penalty is None else penalty
    c = _Costs(np.asarray(t, float), np.asarray(y, float), var_floor)
    best = np.full(n + 1, np.inf)
    best[0] = -pen
    prev = np.zeros(n + 1, dtype=np.int64)
    for b in range(min_size, n + 1):
        a = np.arange(0, b - min_size + 1)
        a = a[np.isfinite(best[a])]
        if not len(a):
            continue
        total = best[a] + c.cost(a, b) + pen
        k = int(np.argmin(total))
        best[b], prev[b] = total[k], a[k]
    cuts, b = [], n
    while b > 0:
        b = int(prev[b])
        if b > 0:
            cuts.append(b)
    return sorted(cuts)


def _line(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of a least-squares line; slope 0 for a single date."""
    if len(t) < 2 or np.ptp(t) == 0:
        return float(np.mean(y)), 0.0
    slope, icpt = np.polyfit(t, y, 1)
    return float(icpt), float(slope)


def _hinge(
    t: np.ndarray, y: np.ndarray, lo: float, hi: float
) -> tuple[float, float, float, float, float, float]:
    """Best hinge ``y = level + slope * max(t - tau, 0)`` for ``tau`` on a daily grid in
    ``[lo, hi]``. Returns ``(tau, tau_low, tau_high, level, slope, rss)``, the interval
    being the 95 % profile (``n * log(RSS / n)`` within 3.84 of its minimum)."""
    grid = np.arange(math.floor(lo), math.ceil(hi) + 1, 1.0)
    n = len(y)
    costs = np.empty(len(grid))
    rss_all = np.empty(len(grid))
    params = np.empty((len(grid), 2))
    for k, tau in enumerate(grid):
        x = np.column_stack([np.ones(n), np.maximum(t - tau, 0.0)])
        coef = np.linalg.lstsq(x, y, rcond=None)[0]
        rss = float(np.sum((y - x @ coef) ** 2))
        costs[k] = n * math.log(max(rss / n, 1e-6))
        rss_all[k] = rss
        params[k] = coef
    best = int(np.argmin(costs))
    ok = grid[costs - costs[best] <= CHI2_95_1DOF]
    return (float(grid[best]), float(ok.min()), float(ok.max()),
            float(params[best, 0]), float(params[best, 1]), float(rss_all[best]))


def _best_step(y: np.ndarray, lo: int, hi: int) -> tuple[int, float]:
    """The break ``c`` in ``[lo, hi)`` that best splits ``y`` into two flat levels, and
    the RSS of that fit."""
    best_c, best = lo, np.inf
    for c in range(max(lo, 1), max(hi, lo + 1)):
        if c >= len(y):
            break
        r = float(np.sum((y[:c] - y[:c].mean()) ** 2) + np.sum((y[c:] - y[c:].mean()) ** 2))
        if r < best:
            best_c, best = c, r
    return best_c, best


def _window_mean(t: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float | None:
    m = (t >= lo) & (t < hi)
    return float(y[m].mean()) if m.any() else None


def _seasonal(t: np.ndarray, y: np.ndarray, tau: float, span_before: float,
              span_after: float, change: float) -> bool:
    """Is the change an ordinary seasonal swing?

    True when both the mean over ``[tau - span_before, tau)`` and the mean over
    ``[tau, tau + span_after)`` lie within half the change of the median of the same
    calendar windows in other years (both ends are what that time of year usually looks
    like)."""
    year = 365.25

    def typical(lo: float, hi: float) -> bool:
        here = _window_mean(t, y, lo, hi)
        others = []
        for k in range(-10, 11):
            if k == 0:
                continue
            v = _window_mean(t, y, lo + k * year, hi + k * year)
            if v is not None:
                others.append(v)
        if here is None or len(others) < 2:
            return False
        return abs(here - float(np.median(others))) < 0.5 * abs(change)

    return typical(tau - span_before, tau) and typical(tau, tau + span_after)


def nearest_preceding_event(
    day: dt.date, events: Sequence[Event], max_days: int = 120
) -> Event | None:
    """The latest event on or before ``day`` and at most ``max_days`` earlier."""
    best = None
    for ev in events:
        gap = (day - ev.date).days
        if 0 <= gap <= max_days and (best is None or ev.date > best.date):
            best = ev
    return best


def detect_onsets(
    dates: np.ndarray,
    counts: np.ndarray,
    *,
    site: str = "",
    events: Sequence[Event] = (),
    min_size: int = 4,
    penalty: float | None = None,
    var_floor: float = 1.0,
    min_change: float = 3.0,
    min_rel_change: float = 0.25,
    merge_days: int = 30,
    max_event_days: int = 120,
) -> list[Onset]:
    """Onsets in one site's series (``dates`` datetime64[D], ``counts`` numbers).

    Pass only complete observations (partial images are lower bounds).
    """
    d = np.asarray(dates, dtype="datetime64[D]")
    order = np.argsort(d, kind="stable")
    d = d[order]
    y = np.asarray(counts, dtype=float)[order]
    t = (d - d[0]).astype(np.int64).astype(float) if len(d) else np.zeros(0)
    if len(y) < 2 * min_size:
        return []
    cuts = segment(t, y, min_size=min_size, penalty=penalty, var_floor=var_floor)
    bounds = [0, *cuts, len(y)]
    out: list[Onset] = []
    start = d[0]

    def day_of(x: float) -> dt.date:
        return (start + np.timedelta64(round(x), "D")).item()

    for k, b in enumerate(cuts):
        a, e = bounds[k], bounds[k + 2]
        ib, sb = _line(t[b:e], y[b:e])
        mean_b = float(np.mean(y[b:e]))
        up = mean_b > float(np.median(y[a:b]))
        fit_end = ib + sb * t[e - 1]
        after = max(max(mean_b, fit_end) if up else min(mean_b, fit_end), 0.0)
        # the rise (fall) runs up to the first sample of B that reaches B's level
        reach = np.flatnonzero(y[b:e] >= mean_b) if up else np.flatnonzero(y[b:e] <= mean_b)
        p = b + int(reach[0]) + 1 if len(reach) else b + 1
        lo_grid = t[max(a, b - 6)]
        tau, lo_t, hi_t, level, slope, rss_hinge = _hinge(t[a:p], y[a:p], lo_grid, t[b])
        c_step, rss_step = _best_step(y[a:p], max(b - 6, a + 1) - a, p - a)
        c_step += a
        before = max(level, 0.0)
        change = after - before
        if abs(change) < max(min_change, min_rel_change * max(before, after)):
            continue
        duration = abs(change / slope) if abs(slope) > 1e-9 else 0.0
        # a ramp: the hinge fits better than two flat levels, the rise outlasts the
        # sampling gap and some image caught it half-way
        lo_v, hi_v = sorted((before + 0.2 * change, after - 0.2 * change))
        midway = (t > tau) & (t < tau + duration) & (y > lo_v) & (y < hi_v)
        ramp = bool(rss_hinge < rss_step and duration > (t[b] - t[b - 1])
                    and np.sign(slope) == np.sign(change) and midway.any())
        if not ramp:  # abrupt: it happened between the last sample before and the first after
            lo_t, hi_t = t[c_step - 1], t[c_step]
            tau = 0.5 * (lo_t + hi_t)
        half_year = 182.6
        if _seasonal(t, y, tau, min(tau - t[a], half_year),
                     min(max(t[e - 1] - tau, 1.0), half_year), change):
            continue
        day = day_of(tau)
        ev = nearest_preceding_event(day, events, max_event_days)
        out.append(Onset(
            site=site, date=day, date_low=day_of(math.floor(lo_t)),
            date_high=day_of(math.ceil(hi_t)),
            direction="up" if change > 0 else "down", kind="ramp" if ramp else "step",
            before_level=before, after_level=after,
            event=ev.name if ev else None, event_date=ev.date if ev else None,
            days_after_event=(day - ev.date).days if ev else None,
        ))
    return _merge(out, merge_days)


def _merge(onsets: list[Onset], merge_days: int) -> list[Onset]:
    """Join same-direction onsets less than ``merge_days`` apart (one rise split in two):
    the earlier date and level before, the later level after."""
    out: list[Onset] = []
    for on in onsets:
        prev = out[-1] if out else None
        if (prev is not None and prev.direction == on.direction
                and (on.date - prev.date).days < merge_days):
            out[-1] = Onset(
                site=prev.site, date=prev.date, date_low=prev.date_low,
                date_high=prev.date_high, direction=prev.direction,
                kind="ramp" if "ramp" in (prev.kind, on.kind) else "step",
                before_level=prev.before_level, after_level=on.after_level, event=prev.event,
                event_date=prev.event_date, days_after_event=prev.days_after_event,
            )
        else:
            out.append(on)
    return out
