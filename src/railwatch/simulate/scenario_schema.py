"""The scenario YAML schema: plain dataclasses and a validator with one-line errors.

A scenario is data: site layouts in local metres (around the site's centre, in the site's
local UTM CRS), a traffic process per period, scripted trains, scripted yard stocks
(counts on key dates), ground container stocks, named events and an imagery collection
plan. :func:`parse_scenario` turns the loaded YAML mapping into a :class:`ScenarioSpec`
and raises :class:`railwatch.errors.InputError` naming the file and the key path of the
first problem, e.g. ``scenario.yaml: sites.tumangang.tracks[2].points: expected a list of
[x, y] pairs``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from railwatch.errors import InputError
from railwatch.simulate.world import BUILDING_KINDS, DISTRACTOR_KINDS, LOAD_TYPES
from railwatch.types import RAILCAR_CLASSES

#: Track kinds. ``main``: through/arrival tracks; ``yard``: storage tracks;
#: ``secure``: tracks inside a walled yard; ``siding``: anything else; ``link``: a
#: connecting track (switches, curves) where no car is ever parked.
TRACK_KINDS: tuple[str, ...] = ("main", "yard", "secure", "siding", "link")
#: Loads a car can carry (``tarp`` means covered), as the world model knows them.
LOADS: tuple[str, ...] = LOAD_TYPES


# -- records ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackSpec:
    """A track: polyline in local metres (x east, y north) and its kind."""

    id: str
    points: tuple[tuple[float, float], ...]
    kind: str = "yard"
    built: dt.date | None = None


@dataclass(frozen=True)
class BuildingSpec:
    """A rectangular structure with its life span (``built``..``removed``)."""

    id: str
    kind: str
    center: tuple[float, float]
    size: tuple[float, float]  # (width along x before rotation, depth along y)
    angle_deg: float = 0.0
    height_m: float = 6.0
    color: str | None = None
    built: dt.date | None = None
    removed: dt.date | None = None


@dataclass(frozen=True)
class WallSpec:
    """A wall or fence polyline with its life span."""

    id: str
    points: tuple[tuple[float, float], ...]
    height_m: float = 3.0
    built: dt.date | None = None
    removed: dt.date | None = None


@dataclass(frozen=True)
class RoadSpec:
    """A road or paved strip along a polyline."""

    points: tuple[tuple[float, float], ...]
    width_m: float = 7.0


@dataclass(frozen=True)
class ContainerStockSpec:
    """Shipping containers standing on the ground in a zone: a step series over time."""

    zone: str
    rect: tuple[float, float, float, float]  # x0, y0, x1, y1 in local metres
    series: tuple[tuple[dt.date, int], ...]


@dataclass(frozen=True)
class SiteSpec:
    """One site's local layout (metres around the registry site's centre)."""

    name: str
    tracks: tuple[TrackSpec, ...]
    buildings: tuple[BuildingSpec, ...] = ()
    walls: tuple[WallSpec, ...] = ()
    containers: tuple[ContainerStockSpec, ...] = ()
    distractors: Mapping[str, int] = field(default_factory=dict)
    roads: tuple[RoadSpec, ...] = ()

    def track(self, track_id: str) -> TrackSpec:
        for t in self.tracks:
            if t.id == track_id:
                return t
        raise KeyError(track_id)


@dataclass(frozen=True)
class CarSpec:
    """One car of a scripted train: class, body colour, load, optional length."""

    cls: str
    color: str | None = None
    load: str = "none"
    length_m: float | None = None


@dataclass(frozen=True)
class StopSpec:
    """A scripted train's stay at a site."""

    site: str
    arrive: dt.datetime
    depart: dt.datetime
    track: str | None = None
    locomotive: bool = True
    load: str | None = None  # overrides every non-locomotive car's load at this stop


@dataclass(frozen=True)
class ScriptedTrainSpec:
    """A train with an exact car sequence, visiting sites at fixed times."""

    id: str
    cars: tuple[CarSpec, ...]
    locomotive: CarSpec | None
    stops: tuple[StopSpec, ...]


@dataclass(frozen=True)
class TrafficPeriod:
    """The random traffic process in one period."""

    start: dt.date
    end: dt.date
    arrivals_per_week: float
    cars: tuple[int, int]
    class_mix: Mapping[str, float]
    dwell_hours: tuple[float, float]
    covered_share: float = 0.0
    containers_share: float = 0.0
    loaded_share: float = 0.6
    locomotive_share: float = 0.6
    routes: Mapping[str, float] = field(default_factory=dict)
    max_cars: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyframeSpec:
    """Cars standing in a site's yard on a date: by class, or a total with a mix."""

    date: dt.date
    counts: Mapping[str, int] | None = None
    total: int | None = None
    class_mix: Mapping[str, float] | None = None
    covered_share: float | None = None
    containers_share: float | None = None


@dataclass(frozen=True)
class StockSpec:
    """Scripted counts: a yard stock following keyframes, arriving/leaving in cuts."""

    site: str
    keyframes: tuple[KeyframeSpec, ...]
    cut_cars: tuple[int, int] = (6, 14)
    exclusive: bool = True
    tracks: tuple[str, ...] = ("yard", "secure", "main")
    name: str = ""
    line_m: float = math.inf  # a line of cars on one track grows up to this length
    via: str | None = None  # each cut first stands at this site (behind a locomotive)
    via_hours: tuple[float, float] = (2.0, 10.0)
    covered_share: float | None = None
    containers_share: float | None = None
    lengths: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class SensorSpec:
    """An imaging sensor and how often it is tasked."""

    name: str
    gsd_m: float
    weight: float = 1.0


@dataclass(frozen=True)
class CampaignSpec:
    """A period of denser revisits (e.g. after an event)."""

    start: dt.date
    end: dt.date
    revisit_days: float
    sites: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequiredImageSpec:
    """An image that must exist (clear, full AOI unless said otherwise)."""

    site: str
    date: dt.date
    time: dt.time | None = None
    sensor: str | None = None
    cloud: float = 0.0
    coverage: float = 1.0


@dataclass(frozen=True)
class ImageryPlanSpec:
    """How images are collected: revisits, sensors, clouds, times of day, partial scenes."""

    revisit_days: Mapping[str, float]
    sensors: tuple[SensorSpec, ...]
    cloud_by_month: tuple[float, ...]
    times_utc: tuple[dt.time, dt.time]
    jitter_days: float = 3.0
    partial_share: float = 0.1
    max_cloud: float = 0.9
    campaigns: tuple[CampaignSpec, ...] = ()
    sparse: tuple[CampaignSpec, ...] = ()
    required: tuple[RequiredImageSpec, ...] = ()


@dataclass(frozen=True)
class EventSpec:
    date: dt.date
    name: str
    site: str | None = None


@dataclass(frozen=True)
class ScenarioSpec:
    """A whole scenario, validated."""

    name: str
    title: str
    start: dt.date
    end: dt.date
    sites: Mapping[str, SiteSpec]
    periods: tuple[TrafficPeriod, ...]
    trains: tuple[ScriptedTrainSpec, ...]
    stocks: tuple[StockSpec, ...]
    imagery: ImageryPlanSpec
    events: tuple[EventSpec, ...] = ()
    transit_hours: tuple[float, float] = (1.0, 4.0)
    source: str = ""


# -- validation helpers -----------------------------------------------------------------
class _V:
    """Validation context: the file name, for one-line errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> InputError:
        return InputError(f"{path}: {message}" if path else message, self.source)

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {_tname(value)}")
        return value

    def seq(self, value: Any, path: str) -> Sequence[Any]:
        if not isinstance(value, list | tuple):
            raise self.fail(path, f"expected a list, got {_tname(value)}")
        return value

    def req(self, m: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in m or m[key] is None:
            raise self.fail(_join(path, key), "missing required key")
        return m[key]

    def keys(self, m: Mapping[str, Any], allowed: set[str], path: str) -> None:
        extra = sorted(str(k) for k in m if k not in allowed)
        if extra:
            raise self.fail(
                _join(path, extra[0]), f"unknown key (allowed: {', '.join(sorted(allowed))})"
            )

    def str_(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"expected a non-empty string, got {_tname(value)}")
        return value

    def num(self, value: Any, path: str, lo: float | None = None, hi: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"expected a number, got {_tname(value)}")
        v = float(value)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(path, f"{v:g} is out of range [{_r(lo)}, {_r(hi)}]")
        return v

    def int_(self, value: Any, path: str, lo: int | None = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {_tname(value)}")
        if lo is not None and value < lo:
            raise self.fail(path, f"{value} is below {lo}")
        return int(value)

    def bool_(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_tname(value)}")
        return value

    def date(self, value: Any, path: str) -> dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise self.fail(path, f"expected a date YYYY-MM-DD, got {value!r}")

    def datetime(self, value: Any, path: str) -> dt.datetime:
        if isinstance(value, dt.datetime):
            out = value
        elif isinstance(value, dt.date):
            out = dt.datetime(value.year, value.month, value.day)
        elif isinstance(value, str):
            try:
                out = dt.datetime.fromisoformat(value)
            except ValueError:
                raise self.fail(
                    path, f"expected a datetime YYYY-MM-DDTHH:MM (UTC), got {value!r}"
                ) from None
        else:
            raise self.fail(path, f"expected a datetime YYYY-MM-DDTHH:MM (UTC), got {value!r}")
        if out.tzinfo is not None:
            out = out.astimezone(dt.UTC).replace(tzinfo=None)
        return out

    def time(self, value: Any, path: str) -> dt.time:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads 02:30 as sexagesimal minutes -> 150
            return dt.time(value // 60 % 24, value % 60)
        if isinstance(value, str):
            try:
                return dt.time.fromisoformat(value)
            except ValueError:
                pass
        raise self.fail(path, f"expected a time HH:MM, got {value!r}")

    def point(self, value: Any, path: str) -> tuple[float, float]:
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            raise self.fail(path, f"expected an [x, y] pair of numbers, got {value!r}")
        return (float(value[0]), float(value[1]))

    def points(self, value: Any, path: str, min_n: int = 2) -> tuple[tuple[float, float], ...]:
        ok = isinstance(value, list | tuple) and len(value) >= min_n
        if ok:
            try:
                return tuple(self.point(p, path) for p in value)
            except InputError:
                ok = False
        raise self.fail(path, f"expected a list of [x, y] pairs (at least {min_n})")

    def range_(self, value: Any, path: str, lo: float = 0.0, integer: bool = False) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value, value]
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise self.fail(path, f"expected [min, max], got {value!r}")
        conv = self.int_ if integer else self.num
        a = conv(value[0], f"{path}[0]", lo)  # type: ignore[operator]
        b = conv(value[1], f"{path}[1]", lo)  # type: ignore[operator]
        if b < a:
            raise self.fail(path, f"min {a} is above max {b}")
        return (a, b)

    def color(self, value: Any, path: str) -> str:
        s = self.str_(value, path)
        h = s.lstrip("#")
        if len(h) != 6 or any(c not in "0123456789abcdefABCDEF" for c in h):
            raise self.fail(path, f"expected a colour #rrggbb, got {s!r}")
        return "#" + h.lower()

    def cls(self, value: Any, path: str) -> str:
        s = self.str_(value, path)
        if s not in RAILCAR_CLASSES:
            raise self.fail(
                path, f"unknown railcar class {s!r} (expected one of {', '.join(RAILCAR_CLASSES)})"
            )
        return s

    def choice(self, value: Any, path: str, options: Sequence[str], what: str) -> str:
        s = self.str_(value, path)
        if s not in options:
            raise self.fail(path, f"unknown {what} {s!r} (expected one of {', '.join(options)})")
        return s

    def mix(self, value: Any, path: str) -> dict[str, float]:
        m = self.mapping(value, path)
        out = {self.cls(k, f"{path}.{k}"): self.num(v, f"{path}.{k}", 0) for k, v in m.items()}
        if sum(out.values()) <= 0:
            raise self.fail(path, "class mix weights must not all be zero")
        return out

    def counts(self, value: Any, path: str) -> dict[str, int]:
        m = self.mapping(value, path)
        return {self.cls(k, f"{path}.{k}"): self.int_(v, f"{path}.{k}") for k, v in m.items()}


def _tname(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _r(v: float | None) -> str:
    return "…" if v is None else f"{v:g}"


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _items(v: _V, m: Mapping[str, Any], key: str, path: str) -> list[tuple[str, Any]]:
    """(path, item) for each element of the optional list ``m[key]``."""
    raw = m.get(key)
    if raw is None:
        return []
    p = _join(path, key)
    return [(f"{p}[{i}]", item) for i, item in enumerate(v.seq(raw, p))]


def _opt(m: Mapping[str, Any], key: str, conv: Callable[[Any, str], Any], path: str) -> Any:
    return conv(m[key], _join(path, key)) if m.get(key) is not None else None


# -- sections ---------------------------------------------------------------------------
def _tracks(v: _V, m: Mapping[str, Any], path: str) -> list[TrackSpec]:
    out: list[TrackSpec] = []
    for p, raw in _items(v, m, "tracks", path):
        t = v.mapping(raw, p)
        v.keys(t, {"id", "points", "kind", "built", "parallel"}, p)
        kind = v.choice(t.get("kind", "yard"), f"{p}.kind", TRACK_KINDS, "track kind")
        built = _opt(t, "built", v.date, p)
        tid = v.str_(v.req(t, "id", p), f"{p}.id")
        pts = v.points(v.req(t, "points", p), f"{p}.points")
        if t.get("parallel") is None:
            out.append(TrackSpec(tid, pts, kind, built))
            continue
        par = v.mapping(t["parallel"], f"{p}.parallel")
        v.keys(par, {"count", "spacing"}, f"{p}.parallel")
        n = v.int_(v.req(par, "count", f"{p}.parallel"), f"{p}.parallel.count", 1)
        dy = v.num(v.req(par, "spacing", f"{p}.parallel"), f"{p}.parallel.spacing")
        for i in range(n):
            shifted = tuple((x, y + i * dy) for x, y in pts)
            out.append(TrackSpec(f"{tid}{i + 1:02d}", shifted, kind, built))
    return out


def _site(v: _V, name: str, raw: Any, path: str, known_sites: set[str] | None) -> SiteSpec:
    if known_sites is not None and name not in known_sites:
        raise v.fail(
            path,
            f"unknown site {name!r} (built-in sites: {', '.join(sorted(known_sites)) or 'none'})",
        )
    m = v.mapping(raw, path)
    v.keys(m, {"tracks", "buildings", "walls", "containers", "distractors", "roads"}, path)
    tracks = _tracks(v, m, path)
    if not tracks:
        raise v.fail(_join(path, "tracks"), "a site needs at least one track")
    ids = [t.id for t in tracks]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise v.fail(_join(path, "tracks"), f"duplicate track id {dup[0]!r}")
    buildings = []
    for p, raw_b in _items(v, m, "buildings", path):
        b = v.mapping(raw_b, p)
        v.keys(
            b,
            {"id", "kind", "center", "size", "angle", "height", "color", "built", "removed"},
            p,
        )
        size = v.point(v.req(b, "size", p), f"{p}.size")
        if min(size) <= 0:
            raise v.fail(f"{p}.size", "sizes must be positive")
        built, removed = _opt(b, "built", v.date, p), _opt(b, "removed", v.date, p)
        if built and removed and removed <= built:
            raise v.fail(f"{p}.removed", f"{removed} is not after built {built}")
        buildings.append(
            BuildingSpec(
                id=v.str_(v.req(b, "id", p), f"{p}.id"),
                kind=v.choice(b.get("kind", "warehouse"), f"{p}.kind", BUILDING_KINDS, "kind"),
                center=v.point(v.req(b, "center", p), f"{p}.center"),
                size=size,
                angle_deg=v.num(b.get("angle", 0.0), f"{p}.angle", -360, 360),
                height_m=v.num(b.get("height", 6.0), f"{p}.height", 0, 100),
                color=_opt(b, "color", v.color, p),
                built=built,
                removed=removed,
            )
        )
    walls = []
    for p, raw_w in _items(v, m, "walls", path):
        w = v.mapping(raw_w, p)
        v.keys(w, {"id", "points", "height", "built", "removed"}, p)
        walls.append(
            WallSpec(
                id=v.str_(v.req(w, "id", p), f"{p}.id"),
                points=v.points(v.req(w, "points", p), f"{p}.points"),
                height_m=v.num(w.get("height", 3.0), f"{p}.height", 0, 30),
                built=_opt(w, "built", v.date, p),
                removed=_opt(w, "removed", v.date, p),
            )
        )
    stocks = []
    for p, raw_c in _items(v, m, "containers", path):
        c = v.mapping(raw_c, p)
        v.keys(c, {"zone", "rect", "series"}, p)
        rect = v.seq(v.req(c, "rect", p), f"{p}.rect")
        if len(rect) != 2:
            raise v.fail(f"{p}.rect", "expected [[x0, y0], [x1, y1]]")
        (x0, y0), (x1, y1) = v.point(rect[0], f"{p}.rect[0]"), v.point(rect[1], f"{p}.rect[1]")
        series = []
        for q, item in _items(v, c, "series", p):
            pair = v.seq(item, q)
            if len(pair) != 2:
                raise v.fail(q, "expected [date, count]")
            series.append((v.date(pair[0], f"{q}[0]"), v.int_(pair[1], f"{q}[1]")))
        _check_order(v, [d for d, _ in series], f"{p}.series")
        stocks.append(
            ContainerStockSpec(
                zone=v.str_(v.req(c, "zone", p), f"{p}.zone"),
                rect=(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)),
                series=tuple(series),
            )
        )
    roads = []
    for p, raw_r in _items(v, m, "roads", path):
        r = v.mapping(raw_r, p)
        v.keys(r, {"points", "width"}, p)
        roads.append(
            RoadSpec(
                v.points(v.req(r, "points", p), f"{p}.points"),
                v.num(r.get("width", 7.0), f"{p}.width", 1, 60),
            )
        )
    distractors = {}
    if m.get("distractors") is not None:
        dm = v.mapping(m["distractors"], _join(path, "distractors"))
        distractors = {
            v.choice(
                str(k), f"{path}.distractors.{k}", DISTRACTOR_KINDS, "distractor kind"
            ): v.int_(n, f"{path}.distractors.{k}")
            for k, n in dm.items()
        }
    return SiteSpec(
        name,
        tuple(tracks),
        tuple(buildings),
        tuple(walls),
        tuple(stocks),
        distractors,
        tuple(roads),
    )


def _check_order(v: _V, dates: Sequence[Any], path: str) -> None:
    for i in range(1, len(dates)):
        if dates[i] <= dates[i - 1]:
            raise v.fail(
                f"{path}[{i}]", f"dates out of order: {dates[i]} is not after {dates[i - 1]}"
            )


def _car(v: _V, raw: Any, path: str) -> CarSpec:
    if isinstance(raw, str):
        raw = {"class": raw}
    c = v.mapping(raw, path)
    v.keys(c, {"class", "color", "load", "length"}, path)
    return CarSpec(
        cls=v.cls(v.req(c, "class", path), f"{path}.class"),
        color=_opt(c, "color", v.color, path),
        load=v.choice(c.get("load", "none"), f"{path}.load", LOADS, "load"),
        length_m=_opt(c, "length", lambda x, q: v.num(x, q, 5, 60), path),
    )


def _traffic(
    v: _V, raw: Any, path: str, sites: Mapping[str, SiteSpec]
) -> tuple[list[TrafficPeriod], list[ScriptedTrainSpec], list[StockSpec], tuple[float, float]]:
    m = v.mapping(raw, path)
    v.keys(m, {"periods", "trains", "stock", "transit_hours"}, path)
    transit = v.range_(m.get("transit_hours", [1.0, 4.0]), f"{path}.transit_hours")

    def site_ref(value: Any, p: str) -> str:
        s = v.str_(value, p)
        if s not in sites:
            raise v.fail(p, f"unknown site {s!r} (scenario sites: {', '.join(sites)})")
        return s

    periods: list[TrafficPeriod] = []
    allowed = {
        "from", "to", "arrivals_per_week", "cars", "class_mix", "dwell_hours", "covered_share",
        "containers_share", "loaded_share", "locomotive_share", "routes", "max_cars",
    }  # fmt: skip
    for p, raw_p in _items(v, m, "periods", path):
        q = v.mapping(raw_p, p)
        v.keys(q, allowed, p)
        start = v.date(v.req(q, "from", p), f"{p}.from")
        end = v.date(v.req(q, "to", p), f"{p}.to")
        if end <= start:
            raise v.fail(f"{p}.to", f"dates out of order: {end} is not after {start}")
        if periods and start < periods[-1].end:
            raise v.fail(
                f"{p}.from", f"dates out of order: overlaps the previous period ({periods[-1].end})"
            )
        routes: dict[str, float] = {}
        for rk, rw in v.mapping(q.get("routes", {}), f"{p}.routes").items():
            for s in str(rk).split(">"):
                site_ref(s.strip(), f"{p}.routes.{rk}")
            routes[str(rk)] = v.num(rw, f"{p}.routes.{rk}", 0)
        if not routes:
            routes = {name: 1.0 for name in sites}
        max_cars = {
            site_ref(k, f"{p}.max_cars.{k}"): v.int_(n, f"{p}.max_cars.{k}")
            for k, n in v.mapping(q.get("max_cars", {}), f"{p}.max_cars").items()
        }
        periods.append(
            TrafficPeriod(
                start=start,
                end=end,
                arrivals_per_week=v.num(
                    v.req(q, "arrivals_per_week", p), f"{p}.arrivals_per_week", 0, 500
                ),
                cars=v.range_(q.get("cars", [4, 12]), f"{p}.cars", 1, integer=True),
                class_mix=v.mix(q.get("class_mix", {"boxcar": 1}), f"{p}.class_mix"),
                dwell_hours=v.range_(q.get("dwell_hours", [6, 48]), f"{p}.dwell_hours"),
                covered_share=v.num(q.get("covered_share", 0.0), f"{p}.covered_share", 0, 1),
                containers_share=v.num(
                    q.get("containers_share", 0.0), f"{p}.containers_share", 0, 1
                ),
                loaded_share=v.num(q.get("loaded_share", 0.6), f"{p}.loaded_share", 0, 1),
                locomotive_share=v.num(
                    q.get("locomotive_share", 0.6), f"{p}.locomotive_share", 0, 1
                ),
                routes=routes,
                max_cars=max_cars,
            )
        )

    trains: list[ScriptedTrainSpec] = []
    for p, raw_t in _items(v, m, "trains", path):
        t = v.mapping(raw_t, p)
        v.keys(t, {"id", "cars", "locomotive", "stops"}, p)
        cars = tuple(_car(v, c, q) for q, c in _items(v, t, "cars", p))
        if not cars:
            raise v.fail(f"{p}.cars", "a train needs at least one car")
        loco = None
        if t.get("locomotive") is not None:
            loco = _car(
                v,
                {"class": "locomotive", **v.mapping(t["locomotive"], f"{p}.locomotive")},
                f"{p}.locomotive",
            )
        stops = []
        for q, raw_s in _items(v, t, "stops", p):
            s = v.mapping(raw_s, q)
            v.keys(s, {"site", "arrive", "depart", "track", "locomotive", "load"}, q)
            site = site_ref(v.req(s, "site", q), f"{q}.site")
            arrive = v.datetime(v.req(s, "arrive", q), f"{q}.arrive")
            depart = v.datetime(v.req(s, "depart", q), f"{q}.depart")
            if depart <= arrive:
                raise v.fail(
                    f"{q}.depart", f"dates out of order: {depart} is not after arrive {arrive}"
                )
            if stops and arrive < stops[-1].depart:
                raise v.fail(
                    f"{q}.arrive",
                    f"dates out of order: before the previous stop's departure {stops[-1].depart}",
                )
            track = _opt(s, "track", v.str_, q)
            if track is not None and track not in {tr.id for tr in sites[site].tracks}:
                raise v.fail(f"{q}.track", f"unknown track {track!r} at site {site!r}")
            stops.append(
                StopSpec(
                    site=site,
                    arrive=arrive,
                    depart=depart,
                    track=track,
                    locomotive=v.bool_(s.get("locomotive", loco is not None), f"{q}.locomotive"),
                    load=_opt(s, "load", lambda x, r: v.choice(x, r, LOADS, "load"), q),
                )
            )
        if not stops:
            raise v.fail(f"{p}.stops", "a train needs at least one stop")
        trains.append(
            ScriptedTrainSpec(v.str_(v.req(t, "id", p), f"{p}.id"), cars, loco, tuple(stops))
        )

    stocks: list[StockSpec] = []
    for p, raw_s in _items(v, m, "stock", path):
        s = v.mapping(raw_s, p)
        v.keys(
            s,
            {"site", "name", "keyframes", "cut_cars", "exclusive", "tracks", "line_m", "via",
             "via_hours", "covered_share", "containers_share", "lengths"},
            p,
        )  # fmt: skip
        kfs = []
        for q, raw_k in _items(v, s, "keyframes", p):
            k = v.mapping(raw_k, q)
            v.keys(
                k, {"date", "counts", "total", "class_mix", "covered_share", "containers_share"}, q
            )
            counts = _opt(k, "counts", v.counts, q)
            total = _opt(k, "total", v.int_, q)
            if counts is None and total is None:
                raise v.fail(q, "missing required key: give counts or total")
            kfs.append(
                KeyframeSpec(
                    date=v.date(v.req(k, "date", q), f"{q}.date"),
                    counts=counts,
                    total=total,
                    class_mix=_opt(k, "class_mix", v.mix, q),
                    covered_share=_opt(k, "covered_share", lambda x, r: v.num(x, r, 0, 1), q),
                    containers_share=_opt(k, "containers_share", lambda x, r: v.num(x, r, 0, 1), q),
                )
            )
        if not kfs:
            raise v.fail(f"{p}.keyframes", "a stock needs at least one keyframe")
        _check_order(v, [k.date for k in kfs], f"{p}.keyframes")
        kinds = tuple(
            v.choice(x, f"{p}.tracks[{i}]", TRACK_KINDS, "track kind")
            for i, x in enumerate(v.seq(s.get("tracks", ["yard", "secure", "main"]), f"{p}.tracks"))
        )
        if s.get("via") is not None and s.get("via") == s.get("site"):
            raise v.fail(f"{p}.via", "the via site must differ from the stock's site")
        stocks.append(
            StockSpec(
                site=site_ref(v.req(s, "site", p), f"{p}.site"),
                keyframes=tuple(kfs),
                cut_cars=v.range_(s.get("cut_cars", [6, 14]), f"{p}.cut_cars", 1, integer=True),
                exclusive=v.bool_(s.get("exclusive", True), f"{p}.exclusive"),
                tracks=kinds,
                name=str(s.get("name", "")),
                line_m=v.num(s.get("line_m", math.inf), f"{p}.line_m", 10),
                via=_opt(s, "via", site_ref, p),
                via_hours=v.range_(s.get("via_hours", [2.0, 10.0]), f"{p}.via_hours"),
                covered_share=_opt(s, "covered_share", lambda x, r: v.num(x, r, 0, 1), p),
                containers_share=_opt(s, "containers_share", lambda x, r: v.num(x, r, 0, 1), p),
                lengths={
                    v.cls(c, f"{p}.lengths.{c}"): v.range_(r, f"{p}.lengths.{c}", 5.0)
                    for c, r in v.mapping(s.get("lengths", {}), f"{p}.lengths").items()
                },
            )
        )
    return periods, trains, stocks, transit


def _campaigns(
    v: _V, m: Mapping[str, Any], key: str, path: str, sites: Mapping[str, SiteSpec]
) -> list[CampaignSpec]:
    out = []
    for p, raw in _items(v, m, key, path):
        c = v.mapping(raw, p)
        v.keys(c, {"from", "to", "revisit_days", "sites"}, p)
        start, end = v.date(v.req(c, "from", p), f"{p}.from"), v.date(v.req(c, "to", p), f"{p}.to")
        if end < start:
            raise v.fail(f"{p}.to", f"dates out of order: {end} is before {start}")
        names = tuple(
            v.str_(s, f"{p}.sites") for s in v.seq(c.get("sites", list(sites)), f"{p}.sites")
        )
        for s in names:
            if s not in sites:
                raise v.fail(f"{p}.sites", f"unknown site {s!r}")
        out.append(
            CampaignSpec(
                start, end, v.num(v.req(c, "revisit_days", p), f"{p}.revisit_days", 0.5), names
            )
        )
    return out


def _imagery(v: _V, raw: Any, path: str, sites: Mapping[str, SiteSpec]) -> ImageryPlanSpec:
    m = v.mapping(raw, path)
    v.keys(
        m,
        {"revisit_days", "sensors", "cloud_by_month", "times_utc", "jitter_days",
         "partial_share", "max_cloud", "campaigns", "sparse", "required"},
        path,
    )  # fmt: skip
    rv = v.req(m, "revisit_days", path)
    if isinstance(rv, Mapping):
        revisit = {}
        for k, x in rv.items():
            if k not in sites:
                raise v.fail(f"{path}.revisit_days.{k}", f"unknown site {k!r}")
            revisit[k] = v.num(x, f"{path}.revisit_days.{k}", 0.5)
    else:
        r = v.num(rv, f"{path}.revisit_days", 0.5)
        revisit = {s: r for s in sites}
    sensors = []
    for p, raw_s in _items(v, m, "sensors", path):
        s = v.mapping(raw_s, p)
        v.keys(s, {"name", "gsd_m", "weight"}, p)
        sensors.append(
            SensorSpec(
                v.str_(v.req(s, "name", p), f"{p}.name"),
                v.num(v.req(s, "gsd_m", p), f"{p}.gsd_m", 0.05, 30),
                v.num(s.get("weight", 1.0), f"{p}.weight", 0),
            )
        )
    if not sensors:
        raise v.fail(f"{path}.sensors", "missing required key")
    clouds = v.seq(v.req(m, "cloud_by_month", path), f"{path}.cloud_by_month")
    if len(clouds) != 12:
        raise v.fail(f"{path}.cloud_by_month", f"expected 12 monthly values, got {len(clouds)}")
    cloud_by_month = tuple(
        v.num(c, f"{path}.cloud_by_month[{i}]", 0, 1) for i, c in enumerate(clouds)
    )
    times = v.seq(m.get("times_utc", ["01:30", "03:00"]), f"{path}.times_utc")
    if len(times) != 2:
        raise v.fail(f"{path}.times_utc", "expected [earliest, latest]")
    t0, t1 = v.time(times[0], f"{path}.times_utc[0]"), v.time(times[1], f"{path}.times_utc[1]")
    if t1 < t0:
        raise v.fail(f"{path}.times_utc", "earliest time is after the latest")
    sensor_names = {s.name for s in sensors}
    required = []
    for p, raw_r in _items(v, m, "required", path):
        r = v.mapping(raw_r, p)
        v.keys(r, {"site", "date", "time", "sensor", "cloud", "coverage"}, p)
        site = v.str_(v.req(r, "site", p), f"{p}.site")
        if site not in sites:
            raise v.fail(f"{p}.site", f"unknown site {site!r}")
        sensor = _opt(r, "sensor", v.str_, p)
        if sensor is not None and sensor not in sensor_names:
            raise v.fail(f"{p}.sensor", f"unknown sensor {sensor!r}")
        required.append(
            RequiredImageSpec(
                site=site,
                date=v.date(v.req(r, "date", p), f"{p}.date"),
                time=_opt(r, "time", v.time, p),
                sensor=sensor,
                cloud=v.num(r.get("cloud", 0.0), f"{p}.cloud", 0, 1),
                coverage=v.num(r.get("coverage", 1.0), f"{p}.coverage", 0.05, 1),
            )
        )
    return ImageryPlanSpec(
        revisit_days=revisit,
        sensors=tuple(sensors),
        cloud_by_month=cloud_by_month,
        times_utc=(t0, t1),
        jitter_days=v.num(m.get("jitter_days", 3.0), f"{path}.jitter_days", 0),
        partial_share=v.num(m.get("partial_share", 0.1), f"{path}.partial_share", 0, 1),
        max_cloud=v.num(m.get("max_cloud", 0.9), f"{path}.max_cloud", 0, 1),
        campaigns=tuple(_campaigns(v, m, "campaigns", path, sites)),
        sparse=tuple(_campaigns(v, m, "sparse", path, sites)),
        required=tuple(required),
    )


def parse_scenario(
    data: Any, source: str | Path = "scenario", known_sites: set[str] | None = None
) -> ScenarioSpec:
    """Validate a loaded scenario mapping; raise InputError naming ``source`` and the key path.

    ``known_sites``: the site names a scenario may use (the built-in registry); ``None``
    accepts any name.
    """
    v = _V(str(source))
    m = v.mapping(data, "")
    v.keys(m, {"name", "title", "start", "end", "events", "sites", "traffic", "imagery"}, "")
    name = v.str_(v.req(m, "name", ""), "name")
    start = v.date(v.req(m, "start", ""), "start")
    end = v.date(v.req(m, "end", ""), "end")
    if end <= start:
        raise v.fail("end", f"dates out of order: {end} is not after start {start}")
    raw_sites = v.mapping(v.req(m, "sites", ""), "sites")
    if not raw_sites:
        raise v.fail("sites", "at least one site is required")
    sites = {
        str(k): _site(v, str(k), raw, f"sites.{k}", known_sites) for k, raw in raw_sites.items()
    }
    events = []
    for p, raw_e in _items(v, m, "events", ""):
        e = v.mapping(raw_e, p)
        v.keys(e, {"date", "name", "site"}, p)
        site = _opt(e, "site", v.str_, p)
        if site is not None and site not in sites:
            raise v.fail(f"{p}.site", f"unknown site {site!r}")
        events.append(
            EventSpec(
                v.date(v.req(e, "date", p), f"{p}.date"),
                v.str_(v.req(e, "name", p), f"{p}.name"),
                site,
            )
        )
    periods, trains, stocks, transit = _traffic(v, v.req(m, "traffic", ""), "traffic", sites)
    imagery = _imagery(v, v.req(m, "imagery", ""), "imagery", sites)
    return ScenarioSpec(
        name=name,
        title=str(m.get("title", name)),
        start=start,
        end=end,
        sites=sites,
        periods=tuple(periods),
        trains=tuple(trains),
        stocks=tuple(stocks),
        imagery=imagery,
        events=tuple(events),
        transit_hours=transit,
        source=str(source),
    )
