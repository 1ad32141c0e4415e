"""A site's counts as a columnar time series, and their place in history.

`Series` holds one row per observation (site, date, total, optional class columns,
covered, containers, usable fraction, count range) as parallel numpy arrays. It is built
from `Observation` records (`Series.from_observations`) or from the timeline CSV contract
(`read_csv`). `analyze` adds, per row: the trailing-window baseline (max, percentiles,
mean, std, z-score), the seasonal context (same months of earlier years), an optional
named reference period, the "highest since DATE" statement and the `unprecedented` flag.

Rules (see docs/analytics.md):

* Only *complete* rows (usable fraction >= ``partial_threshold`` and not flagged partial)
  enter a baseline, and only complete rows can be unprecedented; a partial row is a
  lower bound.
* A row is unprecedented when, for every earlier complete row of the same site in the
  window, ``total_i - total_j > sqrt(lo_i**2 + hi_j**2)`` where ``lo_i = total_i -
  count_low_i`` and ``hi_j = count_high_j - total_j`` (the combined uncertainty). The
  window must hold at least ``min_baseline`` rows.
* A row without a range gets a counting range ``total ± sqrt(total)`` (Poisson), the
  upper end divided by its usable fraction.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from railwatch.analytics.onsets import Onset, detect_onsets
from railwatch.errors import InputError
from railwatch.types import RAILCAR_CLASSES, Event, Observation

#: Optional count columns of the CSV contract (besides the classes).
COUNT_COLUMNS: tuple[str, ...] = (*RAILCAR_CLASSES, "covered", "containers")
#: Every column the CSV reader understands.
KNOWN_COLUMNS: tuple[str, ...] = (
    "site",
    "date",
    "total",
    *COUNT_COLUMNS,
    "usable_fraction",
    "count_low",
    "count_high",
    "partial",
)
DEFAULT_PARTIAL_THRESHOLD = 0.95


@dataclass(frozen=True)
class Reference:
    """A named reference period, e.g. ``pre-covid: 2018-01-01..2020-01-31``."""

    name: str
    start: dt.date
    end: dt.date

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse ``NAME:START..END`` (ISO dates, inclusive)."""
        try:
            name, span = text.split(":", 1)
            start, end = span.split("..", 1)
            ref = cls(name.strip(), dt.date.fromisoformat(start.strip()),
                      dt.date.fromisoformat(end.strip()))
        except ValueError:
            raise InputError(
                f"bad reference {text!r}, expected NAME:YYYY-MM-DD..YYYY-MM-DD"
            ) from None
        if not ref.name or ref.end < ref.start:
            raise InputError(f"bad reference {text!r}: empty name or end before start")
        return ref


#: The reference most analyses of the Tumangang crossing use.
PRE_COVID = Reference("pre-covid", dt.date(2018, 1, 1), dt.date(2020, 1, 31))


@dataclass
class Series:
    """Observations of one or more sites as parallel arrays, sorted by (site, date).

    site: (N,) str; date: (N,) datetime64[D]; total: (N,) int64;
    counts: optional per-class / covered / containers columns (float, NaN = not given);
    usable_fraction: (N,) float in 0..1 (1.0 when not given);
    count_low / count_high: (N,) float (NaN = not given);
    partial: (N,) bool, the image saw only part of the AOI (a lower bound).
    """

    site: np.ndarray
    date: np.ndarray
    total: np.ndarray
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    usable_fraction: np.ndarray | None = None
    count_low: np.ndarray | None = None
    count_high: np.ndarray | None = None
    partial: np.ndarray | None = None
    given: tuple[str, ...] = ()  # input columns present (echoed in the JSON output)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. scene_id, sensor

    def __post_init__(self) -> None:
        self.site = np.asarray(self.site, dtype=object)
        n = len(self.site)
        self.date = np.asarray(self.date, dtype="datetime64[D]").reshape(n)
        self.total = np.asarray(self.total, dtype=np.int64).reshape(n)
        self.counts = {k: np.asarray(v, dtype=float).reshape(n) for k, v in self.counts.items()}
        nan = np.full(n, np.nan)
        self.usable_fraction = (
            np.ones(n) if self.usable_fraction is None
            else np.asarray(self.usable_fraction, dtype=float).reshape(n)
        )
        self.usable_fraction = np.where(np.isnan(self.usable_fraction), 1.0, self.usable_fraction)
        self.count_low = nan.copy() if self.count_low is None else np.asarray(
            self.count_low, dtype=float).reshape(n)
        self.count_high = nan.copy() if self.count_high is None else np.asarray(
            self.count_high, dtype=float).reshape(n)
        self.partial = np.zeros(n, bool) if self.partial is None else np.asarray(
            self.partial, dtype=bool).reshape(n)
        self.extra = {k: np.asarray(v, dtype=object).reshape(n) for k, v in self.extra.items()}
        if n and np.any(self.total < 0):
            raise ValueError("counts must not be negative")
        order = np.lexsort((self.date, self.site.astype(str)))
        if np.any(order != np.arange(n)):
            self._take(order)

    def _take(self, idx: np.ndarray) -> None:
        self.site, self.date, self.total = self.site[idx], self.date[idx], self.total[idx]
        self.counts = {k: v[idx] for k, v in self.counts.items()}
        assert self.usable_fraction is not None and self.partial is not None
        assert self.count_low is not None and self.count_high is not None
        self.usable_fraction = self.usable_fraction[idx]
        self.count_low, self.count_high = self.count_low[idx], self.count_high[idx]
        self.partial = self.partial[idx]
        self.extra = {k: v[idx] for k, v in self.extra.items()}

    def __len__(self) -> int:
        return len(self.site)

    def select(self, mask: np.ndarray) -> Series:
        """Rows where ``mask`` is true (a new Series)."""
        assert self.usable_fraction is not None and self.partial is not None
        return Series(
            site=self.site[mask], date=self.date[mask], total=self.total[mask],
            counts={k: v[mask] for k, v in self.counts.items()},
            usable_fraction=self.usable_fraction[mask],
            count_low=None if self.count_low is None else self.count_low[mask],
            count_high=None if self.count_high is None else self.count_high[mask],
            partial=self.partial[mask], given=self.given,
            extra={k: v[mask] for k, v in self.extra.items()},
        )

    @property
    def sites(self) -> list[str]:
        """Site names in order of first appearance (sorted)."""
        return sorted(set(self.site.tolist()))

    def for_site(self, name: str) -> Series:
        return self.select(self.site == name)

    def complete(self, threshold: float = DEFAULT_PARTIAL_THRESHOLD) -> np.ndarray:
        """Rows that saw the whole AOI: not partial and usable fraction >= threshold."""
        assert self.usable_fraction is not None and self.partial is not None
        return ~self.partial & (self.usable_fraction >= threshold)

    def ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(low, high, source): the given range, else a counting range ``total ± sqrt(total)``
        with the high end divided by the usable fraction. ``source`` is ``input``/``counting``."""
        assert self.count_low is not None and self.count_high is not None
        assert self.usable_fraction is not None
        t = self.total.astype(float)
        root = np.sqrt(t)
        frac = np.clip(self.usable_fraction, 0.05, 1.0)
        low = np.where(np.isnan(self.count_low), np.maximum(t - root, 0.0), self.count_low)
        high = np.where(np.isnan(self.count_high), (t + root) / frac, self.count_high)
        source = np.where(np.isnan(self.count_low) | np.isnan(self.count_high), "counting", "input")
        return low, high, source.astype(object)

    @classmethod
    def from_observations(cls, observations: Iterable[Observation]) -> Series:
        """A series from stored observations (ranges, usable fraction and partial flag kept)."""
        obs = list(observations)
        counts = {
            k: np.array([float(o.counts.get(k, np.nan)) for o in obs], dtype=float)
            for k in COUNT_COLUMNS
        }
        return cls(
            site=[o.site for o in obs],
            date=[np.datetime64(o.acquired.date(), "D") for o in obs],
            total=[o.total for o in obs],
            counts=counts,
            usable_fraction=[o.usable_fraction for o in obs],
            count_low=[o.count_low for o in obs],
            count_high=[o.count_high for o in obs],
            partial=[o.partial for o in obs],
            given=("site", "date", "total", *COUNT_COLUMNS, "usable_fraction",
                   "count_low", "count_high", "partial"),
            extra={
                "scene_id": [o.scene_id for o in obs],
                "sensor": [o.sensor for o in obs],
                "acquired": [o.acquired.isoformat() for o in obs],
            },
        )


# -- CSV ---------------------------------------------------------------------------------
def _number(text: str, column: str, where: str, *, integer: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: column {column!r} is not a number: {text!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise InputError(f"{where}: column {column!r} is not a finite number: {text!r}")
    if value < 0:
        raise InputError(f"{where}: column {column!r} is negative: {text!r}")
    if integer and value != int(value):
        raise InputError(f"{where}: column {column!r} is not a whole count: {text!r}")
    return value


def _parse_date(text: str, where: str) -> dt.date:
    try:
        return dt.datetime.fromisoformat(text.strip()).date()
    except ValueError:
        raise InputError(f"{where}: bad date {text!r}, expected ISO 8601 (YYYY-MM-DD)") from None


_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


def read_csv(path: str | Path) -> Series:
    """Read a timeline CSV (contract: ``site,date,total`` + optional columns).

    Raises `InputError` naming ``FILE:LINE`` for missing columns, bad dates, negative or
    non-numeric counts and duplicate (site, date) rows.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from None
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file", path) from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise InputError(f"{path}:1: empty file, expected a header row site,date,total")
    cols = [h.strip().lower() for h in header]
    missing = [c for c in ("site", "date", "total") if c not in cols]
    if missing:
        raise InputError(f"{path}:1: missing column(s) {', '.join(missing)}"
                         " (need site,date,total)")
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise InputError(f"{path}:1: duplicate column(s) {', '.join(dup)}")
    rows: dict[str, list[Any]] = {c: [] for c in cols}
    seen: dict[tuple[str, dt.date], int] = {}
    for lineno, raw in enumerate(reader, start=2):
        if not raw or not any(v.strip() for v in raw):
            continue
        where = f"{path}:{lineno}"
        if len(raw) != len(cols):
            raise InputError(f"{where}: {len(raw)} fields, expected {len(cols)}")
        rec = dict(zip(cols, (v.strip() for v in raw), strict=True))
        site = rec["site"]
        if not site:
            raise InputError(f"{where}: empty site")
        date = _parse_date(rec["date"], where)
        if (site, date) in seen:
            raise InputError(f"{where}: duplicate date {date} for site {site!r}"
                             f" (also on line {seen[(site, date)]})")
        seen[(site, date)] = lineno
        for c in cols:
            v = rec[c]
            if c == "site":
                rows[c].append(site)
            elif c == "date":
                rows[c].append(date)
            elif c == "total":
                if not v:
                    raise InputError(f"{where}: empty total")
                rows[c].append(int(_number(v, c, where, integer=True)))
            elif c in COUNT_COLUMNS:
                rows[c].append(np.nan if not v else _number(v, c, where, integer=True))
            elif c in ("count_low", "count_high"):
                rows[c].append(np.nan if not v else _number(v, c, where, integer=False))
            elif c == "usable_fraction":
                f = np.nan if not v else _number(v, c, where, integer=False)
                if f > 1:
                    raise InputError(f"{where}: usable_fraction {v!r} is above 1")
                rows[c].append(f)
            elif c == "partial":
                if v.lower() not in _TRUE | _FALSE:
                    raise InputError(f"{where}: partial {v!r} is not true/false")
                rows[c].append(v.lower() in _TRUE)
            else:
                rows[c].append(v)
        lo, hi = rows.get("count_low"), rows.get("count_high")
        if lo is not None and hi is not None and lo[-1] > hi[-1]:
            raise InputError(f"{where}: count_low is above count_high")
    if not rows["site"]:
        raise InputError(f"{path}: no data rows")
    return Series(
        site=rows["site"],
        date=[np.datetime64(d, "D") for d in rows["date"]],
        total=rows["total"],
        counts={c: rows[c] for c in cols if c in COUNT_COLUMNS},
        usable_fraction=rows.get("usable_fraction"),
        count_low=rows.get("count_low"),
        count_high=rows.get("count_high"),
        partial=rows.get("partial"),
        given=tuple(c for c in KNOWN_COLUMNS if c in cols),
        extra={c: rows[c] for c in cols if c not in KNOWN_COLUMNS},
    )


# -- analysis -----------------------------------------------------------------------------
@dataclass
class Baselines:
    """Per-row history context, parallel to the series (NaN / -1 where undefined)."""

    baseline_max: np.ndarray
    baseline_p50: np.ndarray
    baseline_p90: np.ndarray
    baseline_mean: np.ndarray
    baseline_n: np.ndarray
    zscore: np.ndarray
    unprecedented: np.ndarray
    margin: np.ndarray  # the combined uncertainty against the baseline-max row
    highest_since: np.ndarray  # object: ISO date of the last earlier row >= this, or None
    highest_on_record: np.ndarray  # bool: above every earlier complete row of the site
    seasonal_max: np.ndarray
    seasonal_median: np.ndarray
    reference_max: np.ndarray
    above_reference: np.ndarray  # bool: clears the reference max by the combined uncertainty
    count_low: np.ndarray
    count_high: np.ndarray
    range_source: np.ndarray
    complete: np.ndarray


def baselines(
    series: Series,
    *,
    window_years: float = 5.0,
    reference: Reference | None = None,
    partial_threshold: float = DEFAULT_PARTIAL_THRESHOLD,
    min_baseline: int = 3,
    seasonal_months: int = 1,
    zscore_floor: float = 1.0,
) -> Baselines:
    """Trailing-window baselines, seasonal and reference context, flags for each row."""
    n = len(series)
    nan = np.full(n, np.nan)
    out = Baselines(
        baseline_max=nan.copy(), baseline_p50=nan.copy(), baseline_p90=nan.copy(),
        baseline_mean=nan.copy(), baseline_n=np.zeros(n, np.int64), zscore=nan.copy(),
        unprecedented=np.zeros(n, bool), margin=nan.copy(),
        highest_since=np.full(n, None, dtype=object), highest_on_record=np.zeros(n, bool),
        seasonal_max=nan.copy(), seasonal_median=nan.copy(), reference_max=nan.copy(),
        above_reference=np.zeros(n, bool), count_low=nan.copy(), count_high=nan.copy(),
        range_source=np.full(n, "", dtype=object), complete=series.complete(partial_threshold),
    )
    low, high, source = series.ranges()
    out.count_low, out.count_high, out.range_source = low, high, source
    window = np.timedelta64(round(window_years * 365.25), "D")
    total = series.total.astype(float)
    months = series.date.astype("datetime64[M]").astype(np.int64) % 12
    for site in series.sites:
        idx = np.flatnonzero(series.site == site)
        for k, i in enumerate(idx):
            earlier = idx[:k]
            comp = earlier[out.complete[earlier]]
            inwin = comp[series.date[comp] >= series.date[i] - window]
            out.baseline_n[i] = len(inwin)
            lo_i = total[i] - low[i]
            if len(inwin):
                vals = total[inwin]
                out.baseline_max[i] = vals.max()
                out.baseline_p50[i] = np.percentile(vals, 50)
                out.baseline_p90[i] = np.percentile(vals, 90)
                out.baseline_mean[i] = vals.mean()
                sd = vals.std(ddof=1) if len(vals) > 1 else 0.0
                out.zscore[i] = (total[i] - vals.mean()) / max(sd, zscore_floor)
                hi_j = high[inwin] - vals
                margins = np.sqrt(lo_i**2 + hi_j**2)
                clears = total[i] - vals > margins
                out.margin[i] = margins[int(np.argmax(vals + margins))]  # the binding row
                out.unprecedented[i] = bool(
                    out.complete[i] and len(inwin) >= min_baseline and np.all(clears)
                )
            if len(comp):
                higher = comp[total[comp] >= total[i]]
                if len(higher):
                    out.highest_since[i] = str(series.date[higher[-1]])
                else:
                    out.highest_on_record[i] = True
            # seasonal: same calendar months (+-seasonal_months) of earlier years, in window
            dm = np.abs(months[inwin] - months[i])
            same = inwin[np.minimum(dm, 12 - dm) <= seasonal_months]
            if len(same):
                out.seasonal_max[i] = total[same].max()
                out.seasonal_median[i] = float(np.median(total[same]))
            if reference is not None:
                ref = comp[
                    (series.date[comp] >= np.datetime64(reference.start, "D"))
                    & (series.date[comp] <= np.datetime64(reference.end, "D"))
                ]
                if len(ref):
                    rv = total[ref]
                    out.reference_max[i] = rv.max()
                    m = np.sqrt(lo_i**2 + (high[ref] - rv) ** 2)
                    out.above_reference[i] = bool(out.complete[i] and np.all(total[i] - rv > m))
    return out


def statement(series: Series, base: Baselines, i: int) -> str:
    """A plain sentence about row ``i``: the count and its place in history."""
    d = str(series.date[i])
    t = int(series.total[i])
    lo, hi = math.floor(base.count_low[i]), math.ceil(base.count_high[i])
    head = f"{series.site[i]} {d}: {t} railcars (range {lo}–{hi})"
    if not base.complete[i]:
        return head + f", a lower bound: the image saw {series.usable_fraction[i]:.0%} of the site"
    parts = [head]
    if base.unprecedented[i]:
        parts.append(f"unprecedented: above the {base.baseline_max[i]:.0f} maximum of the"
                     f" previous {int(base.baseline_n[i])} complete images in the window,"
                     " beyond the combined uncertainty")
    if base.highest_since[i] is not None:
        parts.append(f"highest since {base.highest_since[i]}")
    elif base.highest_on_record[i] and base.baseline_n[i] > 0:
        parts.append("highest on record")
    return ", ".join(parts)


def to_records(
    series: Series, base: Baselines, *, reference: Reference | None = None
) -> list[dict[str, Any]]:
    """One JSON-ready dict per row: the input fields plus the analysis (contract)."""

    def num(v: float) -> float | None:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 3)

    recs = []
    for i in range(len(series)):
        r: dict[str, Any] = {"site": str(series.site[i]), "date": str(series.date[i]),
                             "total": int(series.total[i])}
        for c, col in series.counts.items():
            if not math.isnan(col[i]):
                r[c] = int(col[i])
        if "covered" in r:
            r["covered_share"] = round(r["covered"] / r["total"], 3) if r["total"] else None
        if "usable_fraction" in series.given:
            r["usable_fraction"] = num(series.usable_fraction[i])  # type: ignore[index]
        for k, v in series.extra.items():
            r[k] = v[i]
        r.update(
            count_low=num(base.count_low[i]),
            count_high=num(base.count_high[i]),
            range_source=str(base.range_source[i]),
            partial=not bool(base.complete[i]),
            baseline_max=num(base.baseline_max[i]),
            baseline_p50=num(base.baseline_p50[i]),
            baseline_p90=num(base.baseline_p90[i]),
            baseline_n=int(base.baseline_n[i]),
            zscore=num(base.zscore[i]),
            unprecedented=bool(base.unprecedented[i]),
            highest_since=base.highest_since[i],
            highest_on_record=bool(base.highest_on_record[i]),
            seasonal_max=num(base.seasonal_max[i]),
            seasonal_median=num(base.seasonal_median[i]),
        )
        if reference is not None:
            r["reference"] = reference.name
            r["reference_max"] = num(base.reference_max[i])
            r["above_reference"] = bool(base.above_reference[i])
        r["statement"] = statement(series, base, i)
        recs.append(r)
    return recs


def date_order(series: Series) -> np.ndarray:
    """Row indices in date order (then site), as the JSON contract lists them."""
    return np.lexsort((series.site.astype(str), series.date))


# -- events and the whole analysis -------------------------------------------------------
def read_events_csv(path: str | Path) -> list[Event]:
    """Named events from a CSV with columns ``date,name`` (InputError with FILE:LINE)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from None
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    if "date" not in header or "name" not in header:
        raise InputError(f"{path}:1: missing column(s), need date,name")
    di, ni = header.index("date"), header.index("name")
    out = []
    for lineno, raw in enumerate(reader, start=2):
        if not raw or not any(v.strip() for v in raw):
            continue
        if len(raw) != len(header):
            raise InputError(f"{path}:{lineno}: {len(raw)} fields, expected {len(header)}")
        name = raw[ni].strip()
        if not name:
            raise InputError(f"{path}:{lineno}: empty event name")
        out.append(Event(_parse_date(raw[di], f"{path}:{lineno}"), name))
    return sorted(out, key=lambda e: e.date)


def registry_events(sites: Iterable[str], store: Any = None) -> dict[str, list[Event]]:
    """Events of the named sites from the site registry (built-in sites and those in
    ``store``; unknown names: none)."""
    from railwatch.errors import NotFoundError
    from railwatch.sites import get_site

    out: dict[str, list[Event]] = {}
    for name in sites:
        try:
            out[name] = list(get_site(name, store).events)
        except NotFoundError:
            out[name] = []
    return out


@dataclass
class TimelineResult:
    """A series with its baselines, onsets and the events they were read against."""

    series: Series
    base: Baselines
    onsets: list[Onset]
    events: dict[str, list[Event]]
    window_years: float
    reference: Reference | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` contract: ``observations`` (date order), ``onsets``, ``events``."""
        recs = to_records(self.series, self.base, reference=self.reference)
        obs = [recs[i] for i in date_order(self.series)]
        seen: set[tuple[str, str]] = set()
        events = []
        for site, evs in sorted(self.events.items()):
            for ev in evs:
                key = (ev.date.isoformat(), ev.name)
                if key not in seen:
                    seen.add(key)
                    events.append({"date": key[0], "name": ev.name, "site": site})
        events.sort(key=lambda e: e["date"])
        return {
            "window_years": self.window_years,
            "reference": None if self.reference is None else {
                "name": self.reference.name, "start": self.reference.start.isoformat(),
                "end": self.reference.end.isoformat()},
            "observations": obs,
            "onsets": [o.to_dict() for o in sorted(self.onsets, key=lambda o: o.date)],
            "events": events,
        }

    def findings(self) -> list[str]:
        """Plain sentences: unprecedented counts and onsets, in date order."""
        lines = [(str(self.series.date[i]), statement(self.series, self.base, i))
                 for i in np.flatnonzero(self.base.unprecedented)]
        lines += [(o.date.isoformat(), o.sentence()) for o in self.onsets]
        return [s for _, s in sorted(lines)]


def analyze(
    series: Series,
    events: Iterable[Event] | dict[str, list[Event]] | None = None,
    *,
    window_years: float = 5.0,
    reference: Reference | None = None,
    partial_threshold: float = DEFAULT_PARTIAL_THRESHOLD,
    **onset_options: Any,
) -> TimelineResult:
    """Baselines, flags and onsets for every site of ``series``.

    ``events``: one list for all sites, a ``{site: [Event]}`` mapping, or None to take
    each site's events from the registry.
    """
    if events is None:
        by_site = registry_events(series.sites)
    elif isinstance(events, dict):
        by_site = {s: list(events.get(s, [])) for s in series.sites}
    else:
        evs = list(events)
        by_site = {s: evs for s in series.sites}
    base = baselines(series, window_years=window_years, reference=reference,
                     partial_threshold=partial_threshold)
    found: list[Onset] = []
    for site in series.sites:
        m = (series.site == site) & base.complete
        found += detect_onsets(series.date[m], series.total[m], site=site,
                               events=by_site.get(site, []), **onset_options)
    return TimelineResult(series, base, found, by_site, window_years, reference)


def build_timeline(
    site: str | None = None,
    *,
    csv_path: str | Path | None = None,
    events_path: str | Path | None = None,
    store: Any = None,
    window_years: float = 5.0,
    reference: Reference | None = None,
    tolerance_days: int = 3,
) -> TimelineResult:
    """What ``railwatch timeline`` does: load the series (a count table or the store),
    combine sites if ``site`` is ``crossing`` or ``a+b``, and analyze it.

    With ``csv_path`` and no ``site``, every site of the table is analyzed.
    """
    from railwatch.analytics.crossing import combine_sites, parse_crossing

    if csv_path is not None:
        series = read_csv(csv_path)
        combo = parse_crossing(site, series.sites) if site else None
        if combo is not None:
            absent = [m for m in combo[1] if m not in series.sites]
            if absent:
                raise InputError(f"{site!r} needs site(s) {', '.join(absent)}, not in the"
                                 f" table (has: {', '.join(series.sites)})", csv_path)
        if site and combo is None:
            if site.strip().lower() not in series.sites:
                raise InputError(f"site {site!r} is not in the table (has: "
                                 f"{', '.join(series.sites)})", csv_path)
            series = series.for_site(site.strip().lower())
    else:
        if store is None or not site:
            raise InputError("give a SITE (or --from-csv FILE)")
        from railwatch.sites import get_site

        combo = parse_crossing(site)
        names = combo[1] if combo else [get_site(site, store).name]
        obs = [o for name in names for o in store.observations(name)]
        if not obs:
            raise InputError(f"no observations of {site!r} in the store; run"
                             " `railwatch analyze` first", getattr(store, "path", None))
        series = Series.from_observations(obs)
    events: Any = read_events_csv(events_path) if events_path is not None else None
    if events is None and store is not None and combo is None:
        events = registry_events(series.sites, store)
    if combo is not None:
        name, members = combo
        if events is None:
            merged: dict[tuple[dt.date, str], Event] = {}
            for evs in registry_events(members, store).values():
                merged.update({(e.date, e.name): e for e in evs})
            events = sorted(merged.values(), key=lambda e: e.date)
        series = combine_sites(series, members, name=name, tolerance_days=tolerance_days)
    return analyze(series, events, window_years=window_years, reference=reference)
