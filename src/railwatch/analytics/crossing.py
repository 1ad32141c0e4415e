"""Multi-site: combine the sites of one crossing (Tumangang + Khasan) into one series.

Observations of the member sites are paired by date: each group starts at the earliest
unpaired observation and takes, from every other member, the unpaired observation
nearest in date within ``tolerance_days``. A group's count is the sum; its range is the
sum of the ranges. A group in which some member has no observation (or a partial one)
is flagged ``partial`` (a lower bound) and lists the missing sites.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from railwatch.analytics.timeline import Series

#: Built-in crossing: the two banks of the Tumen River at the Friendship Bridge.
DEFAULT_CROSSING: tuple[str, ...] = ("tumangang", "khasan")


def parse_crossing(spec: str, available: Sequence[str] = ()) -> tuple[str, list[str]] | None:
    """``"crossing"`` or ``"a+b"`` -> (name, member sites); None for a single site.

    ``"crossing"`` means the members present in ``available`` if two or more are, else the
    built-in Tumangang + Khasan pair.
    """
    text = spec.strip().lower()
    if text == "crossing":
        members = [s for s in available] if len(available) >= 2 else list(DEFAULT_CROSSING)
        return "crossing", members
    if "+" in text:
        members = [p.strip() for p in text.split("+") if p.strip()]
        return "+".join(members), members
    return None


def combine_sites(
    series: Series, members: Sequence[str], *, name: str = "crossing",
    tolerance_days: int = 3,
) -> Series:
    """The crossing-level series of ``members`` (see module docstring)."""
    rows: list[tuple[np.datetime64, str, int]] = []
    for site in members:
        for i in np.flatnonzero(series.site == site):
            rows.append((series.date[i], site, int(i)))
    rows.sort()
    used: set[int] = set()
    low, high, _ = series.ranges()
    complete = series.complete()
    tol = np.timedelta64(tolerance_days, "D")
    groups: list[list[int]] = []
    for date, site, i in rows:
        if i in used:
            continue
        used.add(i)
        group = [i]
        for other in members:
            if other == site:
                continue
            cand = [j for d, s, j in rows if s == other and j not in used and abs(d - date) <= tol]
            if cand:
                j = min(cand, key=lambda j: abs(series.date[j] - date))
                used.add(j)
                group.append(j)
        groups.append(group)
    n = len(groups)
    total = np.array([series.total[g].sum() for g in groups], dtype=np.int64)
    counts = {
        k: np.array([col[g].sum() if not np.any(np.isnan(col[g])) else np.nan for g in groups])
        for k, col in series.counts.items()
    }
    missing = np.empty(n, dtype=object)
    partial = np.zeros(n, bool)
    for k, g in enumerate(groups):
        have = {str(series.site[j]) for j in g}
        miss = [m for m in members if m not in have]
        missing[k] = "+".join(miss)
        partial[k] = bool(miss) or not bool(np.all(complete[g]))
    return Series(
        site=np.full(n, name, dtype=object),
        date=np.array([series.date[g].min() for g in groups]),
        total=total,
        counts=counts,
        usable_fraction=np.array([series.usable_fraction[g].min() for g in groups])  # type: ignore[index]
        if n else None,
        count_low=np.array([low[g].sum() for g in groups]) if n else None,
        count_high=np.array([high[g].sum() for g in groups]) if n else None,
        partial=partial,
        given=series.given,
        extra={"sites": ["+".join(str(series.site[j]) for j in g) for g in groups],
               "missing": missing},
    )
