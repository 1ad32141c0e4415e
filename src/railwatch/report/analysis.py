"""Call the analytics stages for the brief, and say which are missing.

The brief reads the timeline (baselines, ``unprecedented``), onsets and facility changes
from ``railwatch.analytics``. A stage that is not installed, or fails, is recorded in
``Analysis.notes`` and the brief says so instead of inventing the numbers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from railwatch.types import Event, Observation, Site


@dataclass
class Analysis:
    """What the analytics said about one series of observations."""

    timeline: dict[str, Any] | None = None
    onsets: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] | None = None
    change_pairs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _complete(o: Observation, threshold: float) -> bool:
    return (not o.partial) and o.usable_fraction >= threshold


def timeline_records(observations: Sequence[Observation], years: float = 5.0) -> dict[str, Any]:
    """The timeline JSON contract (``observations`` with baselines and flags)."""
    from railwatch.analytics import timeline as tl

    series = tl.Series.from_observations(observations)
    base = tl.baselines(series, window_years=years)
    recs = tl.to_records(series, base)
    order = tl.date_order(series)
    return {"observations": [recs[int(i)] for i in order]}


def onset_records(
    observations: Sequence[Observation], events: Sequence[Event], site: str
) -> list[dict[str, Any]]:
    """Onsets (contract dicts) of the complete observations of one series."""
    from railwatch.analytics.onsets import detect_onsets
    from railwatch.analytics.timeline import DEFAULT_PARTIAL_THRESHOLD

    comp = [o for o in observations if _complete(o, DEFAULT_PARTIAL_THRESHOLD)]
    if len(comp) < 8:
        return []
    dates = np.array([o.acquired.date() for o in comp], dtype="datetime64[D]")
    counts = np.array([o.total for o in comp], dtype=float)
    return [o.to_dict() for o in detect_onsets(dates, counts, site=site, events=events)]


def facility_changes(
    store: Any, site: Site, as_of: dt.date | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Facility changes of ``site`` (records with ``text``) and before/after chips, if any."""
    from railwatch.analytics import changes as ch

    found = ch.site_changes(store, site)
    out, pairs = [], []
    for c in found:
        rec = c.to_dict() if hasattr(c, "to_dict") else dict(c)
        day = str(rec.get("date") or rec.get("date_high") or rec.get("after_date") or "")[:10]
        if as_of is not None and day and dt.date.fromisoformat(day) >= as_of:
            continue
        rec.setdefault("text", ch.describe_change(c))
        out.append(rec)
        if hasattr(ch, "change_chips"):
            try:
                pairs.append({"change": rec, "chips": ch.change_chips(store, site, c)})
            except Exception as exc:  # a missing chip must not sink the brief
                rec["chip_error"] = str(exc)
    return out, pairs


def analyse(
    observations: Sequence[Observation],
    events: Sequence[Event],
    series_name: str,
    *,
    store: Any = None,
    sites: Sequence[Site] = (),
    as_of: dt.date | None = None,
) -> Analysis:
    """Run every available analytics stage; record what is missing or failed."""
    a = Analysis()
    stages: list[tuple[str, Any]] = [
        ("timeline", lambda: timeline_records(observations)),
        ("onsets", lambda: onset_records(observations, events, series_name)),
    ]
    for name, fn in stages:
        try:
            value = fn()
        except ImportError as exc:
            a.notes.append(f"{name}: analytics stage not available ({exc})")
            continue
        except Exception as exc:
            a.notes.append(f"{name}: analytics stage failed ({type(exc).__name__}: {exc})")
            continue
        if name == "timeline":
            a.timeline = value
        else:
            a.onsets = value
    if store is not None and sites:
        try:
            a.changes = []
            for s in sites:
                recs, pairs = facility_changes(store, s, as_of)
                a.changes += recs
                a.change_pairs += pairs
        except ImportError as exc:
            a.changes = None
            a.notes.append(f"changes: analytics stage not available ({exc})")
        except Exception as exc:
            a.changes = None
            a.notes.append(f"changes: analytics stage failed ({type(exc).__name__}: {exc})")
    return a
