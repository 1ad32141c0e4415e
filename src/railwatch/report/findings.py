"""Key findings: structured records and plain sentences, from the analytics results.

Everything here reads observations (counts per image with their ranges) and the
analytics output (timeline flags, onsets, class mix, facility changes); nothing reads
simulator truth. Wording never claims more than the numbers carry: counts from images
that saw only part of the site are called lower bounds, and wide ranges are hedged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from railwatch.types import RAILCAR_CLASSES, Event, Observation

#: Images that saw less than this share of the site do not set records.
MIN_USABLE = 0.5
#: Trailing window for "the most in N years".
BASELINE_YEARS = 5
#: Upward onsets this close to the previous one continue the same rise.
RISE_MERGE_DAYS = 120
#: A rise's images end at the first gap in complete imagery longer than this: what the
#: count did in months without images is unknown, so a later, higher count is its own
#: observation, not the peak of the rise that was seen.
EPISODE_GAP_DAYS = 60
#: A class-share change below this (percentage points) is not called a shift.
MIX_SHIFT_PP = 8.0

_CLASS_WORDS = {
    "boxcar": "boxcars",
    "tank": "tank cars",
    "hopper": "ore/hopper cars",
    "flatcar": "flatcars",
    "locomotive": "locomotives",
    "passenger": "passenger cars",
    "other": "other cars",
}
_NUMBER_WORDS = {
    1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven",
    8: "eight", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve",
}


@dataclass
class Row:
    """One observation of the site, flattened for findings, tables and charts."""

    date: dt.date
    acquired: dt.datetime
    scene_id: int | None
    total: int
    low: int
    high: int
    counts: dict[str, int]
    covered: int
    containers: int
    containers_by_zone: dict[str, int]
    usable_fraction: float
    partial: bool
    sensor: str | None = None
    gsd_m: float | None = None
    site: str = ""
    baseline_max: float | None = None
    unprecedented: bool | None = None

    @property
    def usable(self) -> bool:
        return self.usable_fraction >= MIN_USABLE

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "date": self.date.isoformat(),
            "acquired": self.acquired.isoformat(),
            "scene_id": self.scene_id,
            "total": self.total,
            "count_low": self.low,
            "count_high": self.high,
            **{c: int(self.counts.get(c, 0)) for c in RAILCAR_CLASSES},
            "covered": self.covered,
            "containers": self.containers,
            "usable_fraction": round(self.usable_fraction, 3),
            "lower_bound": self.partial,
            "sensor": self.sensor,
            "gsd_m": self.gsd_m,
            "baseline_max": self.baseline_max,
            "unprecedented": self.unprecedented,
        }


@dataclass
class Findings:
    """Structured findings (``data``, written to ``findings.json``) and their sentences."""

    site: str
    title: str
    as_of: str | None
    data: dict[str, Any] = field(default_factory=dict)
    sentences: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "title": self.title,
            "as_of": self.as_of,
            **self.data,
            "sentences": list(self.sentences),
        }


# -- rows ------------------------------------------------------------------------------
def rows_from_observations(
    observations: Sequence[Observation], timeline: Mapping[str, Any] | None = None
) -> list[Row]:
    """Observations as date-ordered rows, with the timeline's flags merged in by date.

    ``timeline`` follows the timeline JSON contract (``observations`` with ``date``,
    ``baseline_max``, ``unprecedented``); when absent those fields stay ``None``.
    """
    flags: dict[tuple[str, str], Mapping[str, Any]] = {}
    for o in (timeline or {}).get("observations", []) or []:
        key = (str(o.get("site", "")), str(o.get("date", ""))[:10])
        flags[key] = o
    rows = []
    for o in sorted(observations, key=lambda o: o.acquired):
        counts = {c: int(o.counts.get(c, 0)) for c in RAILCAR_CLASSES}
        row = Row(
            date=o.acquired.date(),
            acquired=o.acquired,
            scene_id=o.scene_id,
            total=o.total,
            low=int(o.count_low),
            high=int(o.count_high),
            counts=counts,
            covered=int(o.counts.get("covered", 0)),
            containers=int(o.counts.get("containers", 0)),
            containers_by_zone={k: int(v) for k, v in o.containers_by_zone.items()},
            usable_fraction=float(o.usable_fraction),
            partial=bool(o.partial),
            sensor=o.sensor,
            gsd_m=o.gsd_m,
            site=o.site,
        )
        f = flags.get((o.site, row.date.isoformat())) or flags.get(("", row.date.isoformat()))
        if f is not None:
            bm = f.get("baseline_max")
            row.baseline_max = None if bm is None else float(bm)
            un = f.get("unprecedented")
            row.unprecedented = None if un is None else bool(un)
        rows.append(row)
    return rows


# -- wording helpers ---------------------------------------------------------------------
def _num(n: int) -> str:
    return _NUMBER_WORDS.get(n, str(n))


def count_phrase(total: int, low: int, high: int, partial: bool = False) -> str:
    """"about 73 railcars (range 70–76)", or "at least 40 railcars (a lower bound ...)"."""
    noun = "railcar" if total == 1 else "railcars"
    if partial:
        return (
            f"at least {min(low, total)} {noun}"
            " (a lower bound: the image saw only part of the site)"
        )
    if high - low <= 0:
        return f"{total} {noun}"
    hedge = "about " if (high - low) >= max(2, 0.05 * total) else ""
    return f"{hedge}{total} {noun} (range {low}–{high})"


def _fmt_date(d: dt.date) -> str:
    return d.isoformat()


def _years_phrase(days: int) -> str:
    years = days / 365.25
    if years >= 1.5:
        return f"{years:.0f} years"
    months = round(days / 30.4)
    return f"{months} months"


# -- individual findings ---------------------------------------------------------------
def peak_row(rows: Sequence[Row]) -> Row | None:
    """The highest count among usable, full-coverage images (None if all are zero)."""
    full = [r for r in rows if r.usable and not r.partial]
    if not full:
        return None
    peak = max(full, key=lambda r: (r.total, -r.date.toordinal()))
    return peak if peak.total > 0 else None


def peak_finding(
    rows: Sequence[Row],
    title: str,
    years: int = BASELINE_YEARS,
    rise_start: str | None = None,
    at: Row | None = None,
) -> dict[str, Any] | None:
    """The highest count in a usable, full-coverage image (or the row ``at``), against the
    trailing N-year max.

    With ``rise_start`` (the onset of the rise that led to the peak) it also gives the
    maximum before that rise, the level the peak is usually compared with.
    """
    full = [r for r in rows if r.usable and not r.partial]
    peak = at if at is not None else peak_row(rows)
    if peak is None or peak.total == 0:
        return None
    window_start = peak.date - dt.timedelta(days=round(365.25 * years))
    earlier = [r for r in full if window_start <= r.date < peak.date]
    prev = max(earlier, key=lambda r: (r.total, r.date)) if earlier else None
    # Unprecedented: the timeline analytics' flag (the count clears every earlier complete
    # count in the window by the combined uncertainty) when there is one; otherwise the
    # worst case (the low end beats every earlier high end). Never on under a year of history.
    history_days = (peak.date - earlier[0].date).days if earlier else 0
    worst_case = bool(earlier) and peak.low > max(r.high for r in earlier)
    flag = worst_case if peak.unprecedented is None else bool(peak.unprecedented)
    rule = "timeline" if peak.unprecedented is not None else "worst-case ranges"
    pre = None
    if rise_start is not None:
        rs = dt.date.fromisoformat(rise_start)
        before = [r for r in earlier if r.date < rs]
        pre = max(before, key=lambda r: (r.total, r.date)) if before else None
        # The peak of a rise: the highest count of the window that clears every count
        # from before the rise by the ranges. Images inside the same rise, days apart,
        # measure the same build-up; they do not make its peak less of a record.
        if (not flag and pre is not None and prev is not None and peak.total >= prev.total
                and peak.low > max(r.high for r in before)):
            flag, rule = True, "rise peak over pre-rise ranges"
    unprecedented = bool(flag and prev is not None and history_days >= 365)
    rec: dict[str, Any] = {
        "date": _fmt_date(peak.date),
        "scene_id": peak.scene_id,
        "total": peak.total,
        "count_low": peak.low,
        "count_high": peak.high,
        "counts": dict(peak.counts),
        "lower_bound": peak.partial,
        "window_years": years,
        "history_since": _fmt_date(earlier[0].date) if earlier else None,
        "images_compared": len(earlier),
        "previous_max": None
        if prev is None
        else {"date": _fmt_date(prev.date), "total": prev.total, "count_low": prev.low,
              "count_high": prev.high},
        "max_before_rise": None
        if pre is None
        else {"date": _fmt_date(pre.date), "total": pre.total, "rise_start": rise_start},
        "unprecedented": unprecedented,
        "rule": rule,
    }
    phrase = count_phrase(peak.total, peak.low, peak.high)
    text = f"On {_fmt_date(peak.date)} imagery shows {phrase} at {title}"
    if unprecedented and prev is not None:
        since = earlier[0].date.year
        text += (
            f", the most in any usable image since at least {since}"
            f" ({len(earlier)} earlier images over {_years_phrase(history_days)})"
        )
        if pre is not None and pre is not prev:
            text += (
                f"; before the rise that began about {rise_start} the maximum was"
                f" {pre.total} on {_fmt_date(pre.date)}."
            )
        else:
            text += f"; the previous maximum was {prev.total} on {_fmt_date(prev.date)}."
    elif prev is not None and (history_days < 365 or len(earlier) < 3):
        text += (
            f", the highest count in the images used; {len(earlier)} earlier image"
            f"{'s' if len(earlier) != 1 else ''} since {_fmt_date(earlier[0].date)} are too"
            " little history to call it a record."
        )
    elif prev is not None:
        text += (
            f", the highest count in the images used, but not clearly above the earlier"
            f" maximum of {prev.total} on {_fmt_date(prev.date)} once the ranges are considered."
        )
    else:
        text += (
            ", the highest count in the images used; there is too little earlier imagery"
            " to call it a record."
        )
    rec["text"] = text
    return rec


def nearest_event_before(
    day: dt.date, events: Sequence[Event], max_days: int = 120
) -> Event | None:
    """The latest event on or before ``day`` (within ``max_days``)."""
    before = [e for e in events if e.date <= day and (day - e.date).days <= max_days]
    return max(before, key=lambda e: e.date) if before else None


def onset_finding(
    onsets: Sequence[Mapping[str, Any]],
    events: Sequence[Event],
    peak_date: str | None,
) -> dict[str, Any] | None:
    """The upward onset leading to the peak (latest rise on or before it), vs the nearest event."""
    ups = []
    for o in onsets:
        if str(o.get("direction", "up")).lower() not in ("up", "rise", "increase"):
            continue
        d = dt.date.fromisoformat(str(o["date"])[:10])
        if peak_date is None or d <= dt.date.fromisoformat(peak_date):
            ups.append((d, o))
    if not ups:
        return None
    d, o = max(ups, key=lambda t: t[0])
    ev = nearest_event_before(d, events)
    rec: dict[str, Any] = {
        "date": _fmt_date(d),
        "before_level": o.get("before_level"),
        "after_level": o.get("after_level"),
        "event": None if ev is None else {"date": _fmt_date(ev.date), "name": ev.name},
        "days_after_event": None if ev is None else (d - ev.date).days,
    }
    text = f"The rise began about {_fmt_date(d)}"
    if ev is not None:
        n = (d - ev.date).days
        when = "the same day as" if n == 0 else f"{_num(n)} day{'s' if n != 1 else ''} after"
        text += f", {when} the {ev.name} on {_fmt_date(ev.date)}"
    bl, al = o.get("before_level"), o.get("after_level")
    if bl is not None and al is not None:
        text += (
            f"; the typical count went from about {float(bl):.0f}"
            f" to about {float(al):.0f} railcars"
        )
    rec["text"] = text + "."
    return rec


def covered_finding(
    rows: Sequence[Row],
    on_date: str | None,
    covered_by_class: Mapping[str, int] | None = None,
    exact: bool = False,
) -> dict[str, Any] | None:
    """Covered (tarped) loads on ``on_date`` (else, unless ``exact``, the latest image with
    any)."""
    cand = [r for r in rows if r.covered > 0]
    if not cand:
        return None
    row = next((r for r in cand if _fmt_date(r.date) == on_date), None)
    if row is None:
        if exact:
            return None
        row = cand[-1]
    by_class = {k: int(v) for k, v in (covered_by_class or {}).items() if v}
    rec: dict[str, Any] = {
        "date": _fmt_date(row.date),
        "scene_id": row.scene_id,
        "covered": row.covered,
        "of_total": row.total,
        "by_class": by_class,
        "lower_bound": row.partial,
    }
    main = max(by_class, key=by_class.get) if by_class else None
    share = row.covered / row.total if row.total else 0.0
    hedge = "About" if row.covered >= 5 else "In all,"
    if main and by_class[main] >= 0.6 * row.covered:
        text = (
            f"{hedge} {row.covered} of the {row.total} railcars seen on {_fmt_date(row.date)}"
            f" ({share:.0%}) carried tarp-covered loads, mostly {_CLASS_WORDS[main]}"
            f" ({by_class[main]}), so their cargo cannot be identified."
        )
    else:
        text = (
            f"{hedge} {row.covered} of the {row.total} railcars seen on {_fmt_date(row.date)}"
            f" ({share:.0%}) carried tarp-covered loads, so their cargo cannot be identified."
        )
    rec["text"] = text
    return rec


def containers_first_seen(
    rows: Sequence[Row],
    zone_titles: Mapping[str, str] | None = None,
    min_prior: int = 3,
    min_count: int = 3,
) -> list[dict[str, Any]]:
    """Zones where shipping containers appear: at least ``min_count`` in a usable image and
    more than twice the most seen in each of at least ``min_prior`` earlier usable images,
    and still there (any) in the next usable image, so stray detections make no finding."""
    usable = [r for r in rows if r.usable]
    zones = sorted({z for r in usable for z in r.containers_by_zone})
    out = []
    for z in zones:
        prior_max = 0
        for prior, r in enumerate(usable):
            n = int(r.containers_by_zone.get(z, 0))
            nxt = usable[prior + 1] if prior + 1 < len(usable) else None
            confirmed = nxt is None or int(nxt.containers_by_zone.get(z, 0)) > 0
            if n >= min_count and n > 2 * prior_max and prior >= min_prior and confirmed:
                title = (zone_titles or {}).get(z) or z.replace("_", " ")
                before = "none" if prior_max == 0 else f"at most {prior_max}"
                single = " (seen in this one image only so far)" if nxt is None else ""
                out.append({
                    "zone": z,
                    "date": _fmt_date(r.date),
                    "count": n,
                    "prior_images": prior,
                    "prior_max": prior_max,
                    "since": _fmt_date(usable[0].date),
                    "confirmed_next": None if nxt is None else _fmt_date(nxt.date),
                    "text": (
                        f"Shipping containers appeared in the {title} for the first time"
                        f" on {_fmt_date(r.date)} ({n} seen{single}; {before} in {prior}"
                        f" earlier usable images since {_fmt_date(usable[0].date)})."
                    ),
                })
                break
            if n >= min_count and prior < min_prior:
                break  # there from the start: not an appearance
            prior_max = max(prior_max, n)
    return out


def default_periods(rows: Sequence[Row]) -> list[tuple[str, dt.date, dt.date]]:
    """The last calendar year with traffic against the two years before it."""
    busy = [r for r in rows if r.total > 0 and r.usable]
    if not busy:
        return []
    last = busy[-1].date.year
    a0, a1 = dt.date(last - 2, 1, 1), dt.date(last - 1, 12, 31)
    b0, b1 = dt.date(last, 1, 1), dt.date(last, 12, 31)
    return [(f"{last - 2}–{last - 1}", a0, a1), (f"{last}", b0, b1)]


def class_mix(
    rows: Sequence[Row], periods: Sequence[tuple[str, dt.date, dt.date]]
) -> dict[str, dict[str, Any]]:
    """Class shares (per cent) by period, summed over usable images in each period."""
    out: dict[str, dict[str, Any]] = {}
    for label, d0, d1 in periods:
        sel = [r for r in rows if d0 <= r.date <= d1 and r.usable]
        tot = {c: sum(r.counts.get(c, 0) for r in sel) for c in RAILCAR_CLASSES}
        n = sum(tot.values())
        out[label] = {
            "start": _fmt_date(d0),
            "end": _fmt_date(d1),
            "images": len(sel),
            "railcars": n,
            "counts": tot,
            "share_pct": {c: (100.0 * v / n if n else 0.0) for c, v in tot.items()},
        }
    return out


def mix_shift_finding(mix: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """More/fewer of which classes between the first and the last period of ``mix``."""
    labels = [k for k, v in mix.items() if v.get("railcars", 0) > 0]
    if len(labels) < 2:
        return None
    a, b = mix[labels[0]], mix[labels[-1]]
    if min(a["railcars"], b["railcars"]) < 20:
        return None
    delta = {c: b["share_pct"].get(c, 0.0) - a["share_pct"].get(c, 0.0) for c in RAILCAR_CLASSES}
    more = [c for c, d in sorted(delta.items(), key=lambda t: -t[1]) if d >= MIX_SHIFT_PP]
    fewer = [c for c, d in sorted(delta.items(), key=lambda t: t[1]) if d <= -MIX_SHIFT_PP]
    if not more and not fewer:
        return None

    def part(cs: list[str]) -> str:
        return _and([
            f"{_CLASS_WORDS[c]} ({a['share_pct'][c]:.0f}% → {b['share_pct'][c]:.0f}%)" for c in cs
        ])

    bits = []
    if more:
        bits.append("more " + part(more))
    if fewer:
        bits.append("fewer " + part(fewer))
    text = (
        f"Compared with {labels[0]} ({a['railcars']} railcar sightings in {a['images']} images),"
        f" {labels[-1]} ({b['railcars']} in {b['images']} images) shows " + ", and ".join(bits)
        + " as shares of all railcars seen."
    )
    return {
        "from": labels[0],
        "to": labels[-1],
        "more": more,
        "fewer": fewer,
        "delta_pp": {c: round(d, 1) for c, d in delta.items()},
        "tested": False,
        "text": text,
    }


def _and(items: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _p(p: float) -> str:
    return "p < 0.001" if float(p) < 0.001 else f"p = {float(p):.3f}"


def mix_from_comparison(cmp: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-period shares (the ``class_mix`` shape) from a ``compare_mix`` dict."""
    out: dict[str, dict[str, Any]] = {}
    for p in cmp.get("periods", []):
        shares = {c: 100.0 * float(p["shares"].get(c, 0.0)) for c in RAILCAR_CLASSES}
        out[p["name"]] = {
            "start": p["start"], "end": p["end"], "images": p["n_images"],
            "railcars": p["n_cars"],
            "counts": {c: round(v * p["n_cars"] / 100.0) for c, v in shares.items()},
            "share_pct": shares,
        }
    return out


def mix_shift_from_comparison(cmp: Mapping[str, Any]) -> dict[str, Any] | None:
    """The mix-shift finding from a significance-tested comparison (analytics.mix)."""
    if not cmp.get("shifted"):
        return None
    a, b = cmp["periods"][0], cmp["periods"][-1]
    shifts = {s["class"]: s for s in cmp["shifts"]}
    more = sorted((c for c, s in shifts.items() if s["direction"] == "rose"),
                  key=lambda c: -shifts[c]["difference"])
    fewer = sorted((c for c, s in shifts.items() if s["direction"] == "fell"),
                   key=lambda c: shifts[c]["difference"])
    if not more and not fewer:
        return None

    def part(cs: list[str]) -> str:
        # the sentence names the shifts of 5 points or more; findings.json keeps them all
        big = [c for c in cs if abs(shifts[c]["difference"]) >= 0.05] or cs[:1]
        return _and([
            f"{_CLASS_WORDS[c]} ({shifts[c]['share_before']:.0%} → {shifts[c]['share_after']:.0%})"
            for c in big
        ])

    bits = (["more " + part(more)] if more else []) + (["fewer " + part(fewer)] if fewer else [])
    text = (
        f"Compared with {a['name']} ({a['n_cars']} railcar sightings in {a['n_images']} images),"
        f" {b['name']} ({b['n_cars']} in {b['n_images']} images) shows " + ", and ".join(bits)
        + f" as shares of all railcars seen (permutation test over images, {_p(cmp['p_overall'])})."
    )
    return {
        "from": a["name"],
        "to": b["name"],
        "more": more,
        "fewer": fewer,
        "delta_pp": {c: round(100 * s["difference"], 1) for c, s in shifts.items()},
        "p_overall": cmp["p_overall"],
        "tested": True,
        "text": text,
    }


def change_findings(changes: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Facility changes (from the changes analytics) as records with a sentence each."""
    out = []
    for c in changes or []:
        text = c.get("text") or c.get("description") or c.get("summary")
        if not text:
            continue
        rec = {k: v for k, v in c.items() if isinstance(v, str | int | float | bool | type(None))}
        rec["text"] = str(text)
        out.append(rec)
    return out


def change_sentences(
    changes: Sequence[Mapping[str, Any]], top: int = 3, large_m2: float = 1000.0,
    most: int = 6,
) -> list[str]:
    """Key-finding sentences for facility changes: the ``top`` largest and every other of
    at least ``large_m2`` (a building an analyst would name; ``most`` in all, largest
    first), and how many more the changes section lists."""
    if not changes:
        return []
    def area(c: Mapping[str, Any]) -> float:
        return float(c.get("area_m2") or 0.0)

    ranked = sorted(changes, key=area, reverse=True)
    keep = max(top, sum(area(c) >= large_m2 for c in ranked))
    out = [str(c["text"]) for c in ranked[:min(keep, most)]]
    rest = len(changes) - len(out)
    if rest > 0:
        out.append(
            f"The change finder reports {rest} further, smaller change{'s' if rest != 1 else ''}"
            " to the facility; they are listed under Facility changes, to be checked by eye."
        )
    return out


# -- everything -----------------------------------------------------------------------
def _up_onsets(onsets: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    ups = [o for o in onsets
           if str(o.get("direction", "up")).lower() in ("up", "rise", "increase")]
    return sorted(ups, key=lambda o: str(o["date"])[:10])


def record_episodes(
    rows: Sequence[Row],
    title: str,
    onsets: Sequence[Mapping[str, Any]] = (),
    events: Sequence[Event] = (),
    covered_by_date: Mapping[str, Mapping[str, int]] | None = None,
) -> list[dict[str, Any]]:
    """Each rise's highest count, when it was a record, with the rise's onset and covered loads.

    A rise starts at an upward onset; further upward onsets within ``RISE_MERGE_DAYS``
    continue it. The complete images from one rise's start to the next (or to the first gap
    in the imagery longer than ``EPISODE_GAP_DAYS``) are searched for the highest count,
    which is kept when it is unprecedented (see `peak_finding`).
    """
    full = [r for r in rows if r.usable and not r.partial]
    starts: list[Mapping[str, Any]] = []
    last: dt.date | None = None
    for o in _up_onsets(onsets):
        d = dt.date.fromisoformat(str(o["date"])[:10])
        if last is None or (d - last).days > RISE_MERGE_DAYS:
            starts.append(o)  # a new rise; a later onset within the window continues it
        last = d
    out = []
    for k, on in enumerate(starts):
        d0 = dt.date.fromisoformat(str(on["date"])[:10])
        nxt = starts[k + 1] if k + 1 < len(starts) else None
        d1 = dt.date.fromisoformat(str(nxt["date"])[:10]) if nxt else dt.date.max
        seg = [r for r in full if d0 <= r.date < d1]
        for i in range(1, len(seg)):
            if (seg[i].date - seg[i - 1].date).days > EPISODE_GAP_DAYS:
                seg = seg[:i]
                break
        if not seg:
            continue
        top = max(seg, key=lambda r: (r.total, -r.date.toordinal()))
        rec = peak_finding(rows, title, rise_start=str(on["date"])[:10], at=top)
        if rec is None or not rec["unprecedented"]:
            continue
        day = rec["date"]
        out.append({
            "peak": rec,
            "onset": onset_finding([on], events, day),
            "covered": covered_finding(rows, day, (covered_by_date or {}).get(day), exact=True),
        })
    return out


def compute_findings(
    rows: Sequence[Row],
    *,
    site: str,
    title: str,
    events: Sequence[Event] = (),
    onsets: Sequence[Mapping[str, Any]] = (),
    mix: Mapping[str, Mapping[str, Any]] | None = None,
    mix_comparison: Mapping[str, Any] | None = None,
    changes: Sequence[Mapping[str, Any]] | None = None,
    covered_by_date: Mapping[str, Mapping[str, int]] | None = None,
    zone_titles: Mapping[str, str] | None = None,
    as_of: dt.date | None = None,
) -> Findings:
    """All key findings for one site (or the crossing), in the analyst's order.

    ``covered_by_date``: ISO date -> covered railcars by class (from the detections).
    """
    f = Findings(site=site, title=title, as_of=None if as_of is None else as_of.isoformat())
    top = peak_row(rows)
    onset = onset_finding(onsets, events, _fmt_date(top.date) if top else None)
    peak = peak_finding(rows, title, rise_start=onset["date"] if onset else None)
    episodes = record_episodes(rows, title, onsets, events, covered_by_date)
    if peak is not None and all(e["peak"]["date"] != peak["date"] for e in episodes):
        told = {e["onset"]["date"] for e in episodes if e["onset"]}
        if onset is not None and onset["date"] in told:
            # that rise is already told with its own record (it ended at a gap in the
            # imagery): this later peak is compared with the previous maximum instead
            peak = peak_finding(rows, title)
            onset = None
        episodes.append({
            "peak": peak, "onset": onset,
            "covered": covered_finding(rows, peak["date"], (covered_by_date or {}).get(
                peak["date"]), exact=True),
        })
    episodes.sort(key=lambda e: e["peak"]["date"])
    covered = [e["covered"] for e in episodes if e["covered"]]
    if not covered:
        latest = covered_finding(rows, None, None)
        covered = [latest] if latest else []
    first = containers_first_seen(rows, zone_titles)
    if mix_comparison is not None:
        mix = mix_from_comparison(mix_comparison)
        shift = mix_shift_from_comparison(mix_comparison)
    else:
        if mix is None:
            mix = class_mix(rows, default_periods(rows))
        shift = mix_shift_finding(mix)
    chg = change_findings(changes)
    partial = [r for r in rows if r.partial]
    f.data = {
        "images": len(rows),
        "first_image": _fmt_date(rows[0].date) if rows else None,
        "last_image": _fmt_date(rows[-1].date) if rows else None,
        "lower_bound_images": len(partial),
        "peak": peak,
        "unprecedented": bool(peak and peak["unprecedented"]),
        "onset": onset,
        "records": [e["peak"] for e in episodes if e["peak"]["unprecedented"]],
        "onsets": [onset_finding([o], events, None) for o in _up_onsets(onsets)],
        "covered": covered,
        "containers_first_seen": first,
        "mix": {k: dict(v) for k, v in mix.items()},
        "mix_shift": shift,
        "changes": chg,
    }
    blocks = [x for e in episodes for x in (e["peak"], e["onset"], e["covered"])]
    chg_sentences = change_sentences(chg)
    if not any(e["covered"] for e in episodes):
        blocks += covered
    for rec in (*blocks, *first, shift):
        if rec and rec.get("text"):
            f.sentences.append(rec["text"])
    f.sentences += chg_sentences
    if partial:
        tail = ("its count is a lower bound and is not used for records" if len(partial) == 1
                else "their counts are lower bounds and are not used for records")
        f.sentences.append(
            f"{len(partial)} of {len(rows)} images saw only part of the site; {tail}."
        )
    if not rows:
        f.sentences.append("No usable images of the site in the period; nothing can be said.")
    return f
