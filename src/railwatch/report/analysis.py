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

from railwatch.types import Event, Observation, Site

#: Before/after chips drawn for at most this many facility changes (the largest).
MAX_CHANGE_CHIPS = 6


@dataclass
class Analysis:
    """What the analytics said about one series of observations."""

    timeline: dict[str, Any] | None = None
    onsets: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] | None = None
    mix: dict[str, Any] | None = None  # analytics.mix.compare_mix(...).to_dict()
    change_pairs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def timeline_and_onsets(
    observations: Sequence[Observation], events: Sequence[Event], years: float = 5.0
) -> dict[str, Any]:
    """The timeline JSON contract (``observations`` with baselines and flags, ``onsets``)
    from ``railwatch.analytics.timeline.analyze``."""
    from railwatch.analytics import timeline as tl

    series = tl.Series.from_observations(observations)
    return tl.analyze(series, list(events), window_years=years).to_json()


def mix_comparison(
    observations: Sequence[Observation], periods: Sequence[tuple[str, dt.date, dt.date]]
) -> dict[str, Any] | None:
    """``railwatch.analytics.mix.compare_mix`` between the first and last of ``periods``
    (a permutation test over images), as its ``to_dict()``; None without two periods."""
    if len(periods) < 2:
        return None
    from railwatch.analytics.mix import compare_mix
    from railwatch.analytics.timeline import Reference, Series

    (na, a0, a1), (nb, b0, b1) = periods[0], periods[-1]
    series = Series.from_observations(observations)
    cmp = compare_mix(series, Reference(na, a0, a1), Reference(nb, b0, b1))
    out = cmp.to_dict()
    out["shifted"] = cmp.shifted
    return out


def _change_record(c: Any, describe: Any) -> dict[str, Any]:
    def day(v: Any) -> str | None:
        return v.date().isoformat() if isinstance(v, dt.datetime) else (str(v) if v else None)

    return {
        "kind": getattr(c, "kind", None),
        "zone": getattr(c, "zone", None),
        "last_absent": day(getattr(c, "last_absent", None)),
        "first_seen": day(getattr(c, "first_seen", None)),
        "area_m2": round(float(getattr(c, "area_m2", 0.0)), 1),
        "score": round(float(getattr(c, "score", 0.0)), 3),
        "text": describe(c),
    }


def facility_changes(
    store: Any, site: Site, as_of: dt.date | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Facility changes of ``site`` stored by ``railwatch changes`` (records with ``text``)
    and their before/after PNG chips. With ``as_of``, only changes first seen before it."""
    from railwatch.analytics.changes.output import change_chips, describe_change
    from railwatch.analytics.changes.stored import get_changes

    out, pairs, kept = [], [], []
    for c in get_changes(store, site):
        rec = _change_record(c, describe_change)
        rec["site"] = site.name
        if as_of is not None and rec["first_seen"] and rec["first_seen"] >= as_of.isoformat():
            continue
        out.append(rec)
        kept.append((c, rec))
    # chips for the largest few only (each reads two images)
    for c, rec in sorted(kept, key=lambda t: -t[1]["area_m2"])[:MAX_CHANGE_CHIPS]:
        try:
            pairs.append({"change": rec, "chips": change_chips(c)})
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
    periods: Sequence[tuple[str, dt.date, dt.date]] = (),
) -> Analysis:
    """Run every available analytics stage; record what is missing or failed."""
    a = Analysis()
    if periods:
        try:
            a.mix = mix_comparison(observations, periods)
        except ImportError as exc:
            a.notes.append(f"mix: analytics stage not available ({exc}); shares compared"
                           " without a significance test")
        except Exception as exc:
            a.notes.append(f"mix: comparison not possible ({exc})")
    try:
        a.timeline = timeline_and_onsets(observations, events)
        a.onsets = list(a.timeline.get("onsets") or [])
    except ImportError as exc:
        a.notes.append(f"timeline: analytics stage not available ({exc})")
    except Exception as exc:
        a.notes.append(f"timeline: analytics stage failed ({type(exc).__name__}: {exc})")
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
