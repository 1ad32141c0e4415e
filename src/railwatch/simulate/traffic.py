"""The traffic process: which cars stand on which tracks of each site, at any time.

Built once per scenario and seed (:func:`build_traffic`), deterministically, from three
sources, in this order of priority:

1. scripted trains (exact car sequences, colours, stops at fixed times);
2. scripted yard stocks (cars present on key dates follow keyframes exactly; cars arrive
   and leave in class-homogeneous cuts between keyframes);
3. the random process of each period (Poisson arrivals, train lengths, class mix, dwell
   times, loads), which never exceeds a site's ``max_cars`` and stays away from a site
   while an exclusive stock is there.

Every stay of a train (or cut) at a site is a :class:`Visit` on one track at one offset;
a train keeps its car sequence from site to site, so a train seen at Khasan can appear
next at Tumangang with the same order and colours. :meth:`Traffic.cars_at` gives the
columnar state of a site at a time, :meth:`Traffic.railcars` turns it into the world
model's :class:`~railwatch.simulate.world.Railcars`.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from railwatch.errors import InputError
from railwatch.simulate.scenario_schema import (
    KeyframeSpec,
    ScenarioSpec,
    ScriptedTrainSpec,
    SiteSpec,
    StockSpec,
    TrafficPeriod,
)
from railwatch.simulate.world import CAR_SPECS, LIVERIES, Railcars, Track, place_train
from railwatch.types import RAILCAR_CLASSES

GAP_M = 1.0  # coupling gap between cars
_CLEARANCE_M = 6.0  # free track between two cuts on one track
_FAR = dt.datetime(9999, 1, 1)


def _rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator fixed by the seed and a stable key (so parts don't shift each other)."""
    salt = zlib.crc32("/".join(str(k) for k in keys).encode())
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, salt])


def hex_rgb(value: str) -> tuple[int, int, int]:
    """``#rrggbb`` -> (r, g, b)."""
    s = value.lstrip("#")
    return (int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16))


@dataclass
class Consist:
    """A sequence of cars, front to back (columnar lists)."""

    cls: list[str]
    color: list[tuple[int, int, int]]
    length_m: list[float]
    load: list[str]

    def __len__(self) -> int:
        return len(self.cls)

    @property
    def span_m(self) -> float:
        """Track length taken, coupling gaps included."""
        return float(sum(self.length_m) + GAP_M * max(len(self) - 1, 0))

    def head(self, n: int) -> Consist:
        return Consist(self.cls[:n], self.color[:n], self.length_m[:n], self.load[:n])

    def with_load(self, load: str | None) -> Consist:
        if load is None:
            return self
        loads = [
            ld if c == "locomotive" else load for c, ld in zip(self.cls, self.load, strict=True)
        ]
        return Consist(list(self.cls), list(self.color), list(self.length_m), loads)

    def prepend(self, other: Consist) -> Consist:
        return Consist(
            other.cls + self.cls,
            other.color + self.color,
            other.length_m + self.length_m,
            other.load + self.load,
        )


@dataclass
class Visit:
    """One stay of a train (or a cut of cars) at a site: track, offset, times, cars."""

    train_id: str
    site: str
    track_id: str
    offset_m: float
    arrive: dt.datetime
    depart: dt.datetime
    cars: Consist
    source: str  # "scripted", "stock" or "random"

    def present(self, when: dt.datetime) -> bool:
        return self.arrive <= when < self.depart

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return self.arrive < end and start < self.depart


@dataclass
class CarState:
    """Cars standing at a site at one time (columnar, front to back per train)."""

    train_id: np.ndarray
    track_id: np.ndarray
    position: np.ndarray  # index of the car within its train at this visit
    start_m: np.ndarray  # arc length of the car's front end along its track
    length_m: np.ndarray
    cls: np.ndarray
    color: np.ndarray  # (N, 3) uint8
    load: np.ndarray
    covered: np.ndarray

    def __len__(self) -> int:
        return len(self.cls)

    def counts(self) -> dict[str, int]:
        """Cars per class plus ``total`` and ``covered`` (the public-record style)."""
        out = {c: int(np.sum(self.cls == c)) for c in RAILCAR_CLASSES}
        out["total"] = len(self)
        out["covered"] = int(self.covered.sum())
        return out


# -- track packing ----------------------------------------------------------------------
def track_length(points: Sequence[tuple[float, float]]) -> float:
    """Polyline length in metres."""
    p = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())


class _Yard:
    """Which stretch of which track is taken, over time, at one site."""

    def __init__(self, site: SiteSpec) -> None:
        self.site = site
        self.length = {t.id: track_length(t.points) for t in site.tracks}
        self.kind = {t.id: t.kind for t in site.tracks}
        self.built = {t.id: t.built for t in site.tracks}
        self.visits: dict[str, list[Visit]] = {t.id: [] for t in site.tracks}

    def gaps(self, track: str, start: dt.datetime, end: dt.datetime) -> list[tuple[float, float]]:
        """Free stretches [a, b] of ``track`` during [start, end) (clearance kept)."""
        b = self.built[track]
        if b is not None and start.date() < b:
            return []
        busy = sorted(
            (v.offset_m, v.offset_m + v.cars.span_m)
            for v in self.visits[track]
            if v.overlaps(start, end)
        )
        out, pos = [], 0.0
        for a, e in busy:
            if a - _CLEARANCE_M > pos:
                out.append((pos, a - _CLEARANCE_M))
            pos = max(pos, e + _CLEARANCE_M)
        if self.length[track] > pos:
            out.append((pos, self.length[track]))
        return out

    def free_offset(
        self,
        track: str,
        span: float,
        start: dt.datetime,
        end: dt.datetime,
        rng: np.random.Generator | None = None,
    ) -> float | None:
        """An offset on ``track`` where ``span`` metres are free during [start, end): the
        first one, or (with ``rng``) a random one in a random free stretch."""
        fits = [(a, b) for a, b in self.gaps(track, start, end) if b - a >= span]
        if not fits:
            return None
        if rng is None:
            return fits[0][0]
        a, b = fits[int(rng.integers(len(fits)))]
        return round(float(rng.uniform(a, b - span)), 2)

    def place(
        self,
        span: float,
        start: dt.datetime,
        end: dt.datetime,
        kinds: Sequence[str],
        rng: np.random.Generator,
        track: str | None = None,
        prefer: Sequence[str] = (),
        line_m: float = math.inf,
        scatter: bool = False,
    ) -> tuple[str, float] | None:
        """A (track, offset) for ``span`` metres during [start, end), or None if full.

        ``track`` forces a track; else the ``prefer`` tracks are tried first (as long as
        the line of cars there stays within ``line_m``), then tracks of ``kinds`` in order,
        in random order within a kind. ``scatter`` stops anywhere free on the track
        instead of at the first free place.
        """
        where = rng if scatter else None
        if track is not None:
            off = self.free_offset(track, span, start, end)
            return None if off is None else (track, off)
        for t in prefer:
            off = self.free_offset(t, span, start, end)
            if off is not None and off + span <= line_m:
                return t, off
        for kind in kinds:
            ids = [t for t, k in self.kind.items() if k == kind]
            for i in rng.permutation(len(ids)):
                off = self.free_offset(ids[i], span, start, end, where)
                if off is not None:
                    return ids[i], off
        return None

    def add(self, visit: Visit) -> None:
        self.visits[visit.track_id].append(visit)

    def cars_during(self, start: dt.datetime, end: dt.datetime) -> int:
        """Upper bound of cars present at any time in [start, end)."""
        return sum(len(v.cars) for vs in self.visits.values() for v in vs if v.overlaps(start, end))


# -- car making -------------------------------------------------------------------------
def _car_length(cls: str, rng: np.random.Generator) -> float:
    lo, hi = CAR_SPECS[cls].length_range
    return round(float(rng.uniform(lo, hi)), 2)


def _livery(cls: str, rng: np.random.Generator) -> tuple[int, int, int]:
    options = LIVERIES[cls]
    return tuple(int(c) for c in options[int(rng.integers(len(options)))])  # type: ignore[return-value]


def _draw_load(
    cls: str, rng: np.random.Generator, loaded: float, covered: float, containers: float
) -> str:
    """A random load for a car of class ``cls``."""
    u = float(rng.random())
    if cls == "hopper":
        if u < covered * 0.3:
            return "tarp"
        return ("ore" if rng.random() < 0.5 else "coal") if u < loaded else "none"
    if cls == "flatcar":
        if u < containers:
            return "containers"
        return "tarp" if u < containers + covered else "none"
    return "none"


def _random_consist(
    classes: Sequence[str],
    rng: np.random.Generator,
    loaded: float,
    covered: float,
    containers: float,
    lengths: Mapping[str, tuple[float, float]] | None = None,
) -> Consist:
    """Random cars of ``classes``: a block of one class mostly shares a car type (livery
    and length), changing now and then; ``lengths`` overrides a class's length range."""
    cls = list(classes)
    base: dict[str, tuple[tuple[int, int, int], float]] = {}
    colors, lens = [], []
    for c in cls:
        if c not in base or rng.random() < 0.35:
            lo, hi = (lengths or {}).get(c, CAR_SPECS[c].length_range)
            base[c] = (_livery(c, rng), round(float(rng.uniform(lo, hi)), 2))
        colors.append(base[c][0])
        lens.append(base[c][1])
    return Consist(
        cls=cls,
        color=colors,
        length_m=lens,
        load=[_draw_load(c, rng, loaded, covered, containers) for c in cls],
    )


def _locomotive(rng: np.random.Generator, color: str | None = None) -> Consist:
    rgb = hex_rgb(color) if color else _livery("locomotive", rng)
    return Consist(["locomotive"], [rgb], [_car_length("locomotive", rng)], ["none"])


def _mix_draw(mix: Mapping[str, float], n: int, rng: np.random.Generator) -> list[str]:
    names = list(mix)
    w = np.array([mix[k] for k in names], dtype=np.float64)
    # Trains come in blocks: draw a dominant class, then fill mostly with it.
    idx = rng.choice(len(names), size=n, p=w / w.sum())
    return sorted((names[i] for i in idx), key=lambda c: (names.index(c), rng.random()))


def apportion(total: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Integer class counts summing to ``total`` in proportion to ``mix`` (largest remainder)."""
    names = list(mix)
    w = np.array([max(mix[k], 0.0) for k in names], dtype=np.float64)
    if total <= 0 or w.sum() <= 0:
        return {k: 0 for k in names}
    raw = w / w.sum() * total
    base = np.floor(raw).astype(int)
    order = np.argsort(-(raw - base), kind="stable")
    for i in order[: total - int(base.sum())]:
        base[i] += 1
    return {k: int(b) for k, b in zip(names, base, strict=True)}


# -- the process ------------------------------------------------------------------------
@dataclass
class Traffic:
    """All visits of all trains at all sites of a scenario, for one seed."""

    spec: ScenarioSpec
    seed: int
    visits: list[Visit] = field(default_factory=list)
    dropped: int = 0  # random trains that found no room

    def visits_at(self, site: str, when: dt.datetime) -> list[Visit]:
        """Visits present at ``site`` at ``when`` (UTC, naive or aware)."""
        when = _naive(when)
        return [v for v in self.visits if v.site == site and v.present(when)]

    def cars_at(self, site: str, when: dt.datetime) -> CarState:
        """The cars standing at ``site`` at ``when``, front to back per train."""
        rows: list[tuple] = []
        for v in sorted(self.visits_at(site, when), key=lambda v: (v.track_id, v.offset_m)):
            s = v.offset_m
            for i in range(len(v.cars)):
                c = v.cars
                rows.append(
                    (v.train_id, v.track_id, i, s, c.length_m[i], c.cls[i], c.color[i], c.load[i])
                )
                s += c.length_m[i] + GAP_M
        if not rows:
            e = np.zeros(0, dtype=object)
            return CarState(
                e,
                e,
                np.zeros(0, int),
                np.zeros(0),
                np.zeros(0),
                e,
                np.zeros((0, 3), np.uint8),
                e,
                np.zeros(0, bool),
            )
        cols = list(zip(*rows, strict=True))
        load = np.array(cols[7], dtype=object)
        return CarState(
            train_id=np.array(cols[0], dtype=object),
            track_id=np.array(cols[1], dtype=object),
            position=np.array(cols[2], dtype=int),
            start_m=np.array(cols[3], dtype=np.float64),
            length_m=np.array(cols[4], dtype=np.float64),
            cls=np.array(cols[5], dtype=object),
            color=np.array(cols[6], dtype=np.uint8).reshape(-1, 3),
            load=load,
            covered=load == "tarp",
        )

    def counts(self, site: str, when: dt.datetime) -> dict[str, int]:
        """True railcar counts by class (plus ``total``, ``covered``) at a site and time."""
        return self.cars_at(site, when).counts()

    def railcars(self, site: str, when: dt.datetime, tracks: Sequence[Track]) -> Railcars:
        """The cars at ``site`` and ``when`` placed on the world model's ``tracks``."""
        state = self.cars_at(site, when)
        by_id = {t.id: t for t in tracks}
        parts = []
        for key in dict.fromkeys(zip(state.train_id, state.track_id, strict=True)):
            m = (state.train_id == key[0]) & (state.track_id == key[1])
            parts.append(
                place_train(
                    by_id[key[1]],
                    list(state.cls[m]),
                    start_m=float(state.start_m[m][0]),
                    lengths=list(state.length_m[m]),
                    colors=[tuple(c) for c in state.color[m]],
                    covered=list(state.covered[m]),
                    loads=list(state.load[m]),
                    gap_m=GAP_M,
                    train_id=str(key[0]),
                )
            )
        return Railcars.concat(parts) if parts else Railcars.empty()


def _naive(when: dt.datetime) -> dt.datetime:
    if isinstance(when, dt.datetime):
        return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when
    return dt.datetime(when.year, when.month, when.day)


def _at(d: dt.date, hours: float = 0.0) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day) + dt.timedelta(hours=hours)


def build_traffic(spec: ScenarioSpec, seed: int = 0) -> Traffic:
    """Run the traffic process of ``spec`` for ``seed`` (deterministic)."""
    yards = {name: _Yard(site) for name, site in spec.sites.items()}
    traffic = Traffic(spec, seed)
    for train in spec.trains:
        _scripted(train, yards, traffic, seed)
    blocked: list[tuple[str, dt.datetime, dt.datetime]] = []
    n_before = len(traffic.visits)
    for i, stock in enumerate(spec.stocks):
        window = _stock(stock, i, spec, yards, traffic, seed)
        if stock.exclusive and window is not None:
            blocked.append((stock.site, *window))
    _stock_vias(spec, traffic.visits[n_before:], yards, traffic, blocked, seed)
    for i, period in enumerate(spec.periods):
        _random_period(period, i, spec, yards, traffic, blocked, seed)
    traffic.visits.sort(key=lambda v: (v.arrive, v.site, v.train_id))
    return traffic


def _scripted(
    train: ScriptedTrainSpec, yards: Mapping[str, _Yard], traffic: Traffic, seed: int
) -> None:
    rng = _rng(seed, "train", train.id)
    cars = Consist(
        cls=[c.cls for c in train.cars],
        color=[hex_rgb(c.color) if c.color else _livery(c.cls, rng) for c in train.cars],
        length_m=[c.length_m or _car_length(c.cls, rng) for c in train.cars],
        load=[c.load for c in train.cars],
    )
    loco = None
    if train.locomotive is not None:
        loco = _locomotive(rng, train.locomotive.color)
        if train.locomotive.length_m:
            loco.length_m = [train.locomotive.length_m]
    prev_track: dict[str, str] = {}
    for k, stop in enumerate(train.stops):
        consist = cars.with_load(stop.load)
        if stop.locomotive and loco is not None:
            consist = consist.prepend(loco)
        yard = yards[stop.site]
        track = stop.track or prev_track.get(stop.site)
        spot = yard.place(
            consist.span_m,
            stop.arrive,
            stop.depart,
            ("main", "yard", "secure", "siding"),
            rng,
            track,
        )
        if spot is None:
            raise InputError(
                f"traffic.trains ({train.id}) stop {k}: no room on the tracks of {stop.site!r}",
                traffic.spec.source,
            )
        prev_track[stop.site] = spot[0]
        v = Visit(
            train.id, stop.site, spot[0], spot[1], stop.arrive, stop.depart, consist, "scripted"
        )
        yard.add(v)
        traffic.visits.append(v)


def _period_at(spec: ScenarioSpec, d: dt.date) -> TrafficPeriod | None:
    for p in spec.periods:
        if p.start <= d < p.end:
            return p
    return None


def _target(
    kf: KeyframeSpec, stock: StockSpec, spec: ScenarioSpec, k: int, present: Mapping[str, int]
) -> dict[str, int]:
    """Class counts a keyframe asks for."""
    if kf.counts is not None:
        return {c: kf.counts.get(c, 0) for c in RAILCAR_CLASSES}
    mix = kf.class_mix
    if mix is None:  # the nearest keyframe with explicit counts, forward first
        for other in (*stock.keyframes[k + 1 :], *reversed(stock.keyframes[:k])):
            if other.counts:
                mix = {c: float(n) for c, n in other.counts.items() if n > 0}
                break
    if mix is None and sum(present.values()):
        mix = {c: float(n) for c, n in present.items() if n > 0}
    if mix is None:
        period = _period_at(spec, kf.date)
        mix = dict(period.class_mix) if period else {"boxcar": 1.0}
    out = {c: 0 for c in RAILCAR_CLASSES}
    out.update(apportion(int(kf.total or 0), mix))
    return out


def _first(*values: float | None) -> float:
    """The first value that is not None."""
    return next(float(v) for v in values if v is not None)


def _stock(
    stock: StockSpec,
    index: int,
    spec: ScenarioSpec,
    yards: Mapping[str, _Yard],
    traffic: Traffic,
    seed: int,
) -> tuple[dt.datetime, dt.datetime] | None:
    """Make the cuts of one stock; returns the time window it occupies the site."""
    rng = _rng(seed, "stock", index, stock.site)
    yard = yards[stock.site]
    name = stock.name or f"{stock.site}-stock{index + 1}"
    present: list[Visit] = []  # open cuts (depart = _FAR until they leave)
    ncut = 0
    first: dt.datetime | None = None
    prev_date: dt.date | None = None
    for k, kf in enumerate(stock.keyframes):
        have = {c: sum(v.cars.cls.count(c) for v in present) for c in RAILCAR_CLASSES}
        want = _target(kf, stock, spec, k, have)
        # Changes happen between the previous keyframe's day and this one's.
        w0 = (
            _at(prev_date + dt.timedelta(days=1))
            if prev_date
            else _at(kf.date - dt.timedelta(days=3))
        )
        w1 = _at(kf.date)
        span_h = max((w1 - w0).total_seconds() / 3600.0, 1.0)
        period = _period_at(spec, kf.date)
        covered = _first(
            kf.covered_share, stock.covered_share, period.covered_share if period else 0.0
        )
        containers = _first(kf.containers_share, stock.containers_share,
                            period.containers_share if period else 0.0)  # fmt: skip
        loaded = period.loaded_share if period else 0.6
        # Departures: whole cuts or the tail of a cut, oldest first, early in the window.
        for c in RAILCAR_CLASSES:
            excess = have[c] - want[c]
            for v in sorted(
                (v for v in present if v.cars.cls and v.cars.cls[0] == c), key=lambda v: v.arrive
            ):
                if excess <= 0:
                    break
                t = w0 + dt.timedelta(hours=float(rng.uniform(0.0, 0.5)) * span_h)
                t = max(t, v.arrive + dt.timedelta(hours=1))
                n = len(v.cars)
                if n <= excess:
                    v.depart = t
                    present.remove(v)
                    excess -= n
                else:  # the tail leaves; the head stays on as a new visit
                    v.depart = t
                    present.remove(v)
                    rest = Visit(
                        v.train_id,
                        v.site,
                        v.track_id,
                        v.offset_m,
                        t,
                        _FAR,
                        v.cars.head(n - excess),
                        "stock",
                    )
                    yard.add(rest)
                    traffic.visits.append(rest)
                    present.append(rest)
                    excess = 0
        # Arrivals: class-homogeneous cuts spread over the window.
        cuts: list[tuple[str, int]] = []
        for c in RAILCAR_CLASSES:
            need = want[c] - have[c]
            while need > 0:
                lo, hi = stock.cut_cars
                size = 1 if c in ("passenger",) else int(rng.integers(lo, hi + 1))
                if c in ("locomotive", "other"):
                    size = min(int(rng.integers(1, 4)), need)
                size = min(size, need)
                cuts.append((c, size))
                need -= size
        order = rng.permutation(len(cuts))
        for j, ci in enumerate(order):
            c, size = cuts[ci]
            t = w0 + dt.timedelta(
                hours=span_h * (j + 0.5 + 0.4 * float(rng.uniform(-1, 1))) / max(len(cuts), 1)
            )
            t = min(max(t, w0), w1 - dt.timedelta(minutes=30))
            consist = _random_consist([c] * size, rng, loaded, covered, containers, stock.lengths)
            lines = list(dict.fromkeys(v.track_id for v in present))
            spot = yard.place(
                consist.span_m, t, _FAR, stock.tracks, rng, prefer=lines, line_m=stock.line_m
            )
            if spot is None:
                raise InputError(
                    f"traffic.stock[{index}] ({stock.site}, {kf.date}): no room for a cut of "
                    f"{size} {c} cars on the site's tracks",
                    spec.source,
                )
            ncut += 1
            v = Visit(f"{name}-{ncut:03d}", stock.site, spot[0], spot[1], t, _FAR, consist, "stock")
            yard.add(v)
            traffic.visits.append(v)
            present.append(v)
            first = t if first is None else min(first, t)
        prev_date = kf.date
    # After the last keyframe, the remaining cuts leave over the following days.
    last = _at(stock.keyframes[-1].date + dt.timedelta(days=1))
    end = last
    for v in present:
        v.depart = last + dt.timedelta(hours=float(rng.uniform(0.0, 120.0)))
        end = max(end, v.depart)
    if first is None:
        first = _at(stock.keyframes[0].date - dt.timedelta(days=3))
    return (min(first, _at(stock.keyframes[0].date - dt.timedelta(days=3))), end)


def _stock_vias(
    spec: ScenarioSpec,
    made: Sequence[Visit],
    yards: Mapping[str, _Yard],
    traffic: Traffic,
    blocked: Sequence[tuple[str, dt.datetime, dt.datetime]],
    seed: int,
) -> None:
    """Stock cuts with a ``via`` site stop there first (behind a locomotive), unless an
    exclusive stock holds the via site then or it has no room."""
    vias = {(s.name or f"{s.site}-stock{i + 1}"): s for i, s in enumerate(spec.stocks) if s.via}
    seen: set[str] = set()
    for v in made:
        stock = next((st for name, st in vias.items() if v.train_id.startswith(name + "-")), None)
        if stock is None or stock.via is None or v.train_id in seen:
            continue
        seen.add(v.train_id)  # the first visit of a cut is its arrival
        rng = _rng(seed, "via", v.train_id)
        b = v.arrive - dt.timedelta(hours=float(rng.uniform(*spec.transit_hours)))
        a = b - dt.timedelta(hours=float(rng.uniform(*stock.via_hours)))
        site = stock.via
        if any(bs == site and a < be and ba < b for bs, ba, be in blocked):
            continue
        consist = v.cars.prepend(_locomotive(rng))
        spot = yards[site].place(
            consist.span_m, a, b, ("main", "yard", "siding"), rng, scatter=True
        )
        if spot is None:
            continue
        via = Visit(v.train_id, site, spot[0], spot[1], a, b, consist, "stock")
        yards[site].add(via)
        traffic.visits.append(via)


def _random_period(
    period: TrafficPeriod,
    index: int,
    spec: ScenarioSpec,
    yards: Mapping[str, _Yard],
    traffic: Traffic,
    blocked: Sequence[tuple[str, dt.datetime, dt.datetime]],
    seed: int,
) -> None:
    rng = _rng(seed, "period", index, period.start)
    rate_h = period.arrivals_per_week / (7 * 24.0)
    if rate_h <= 0:
        return
    t = _at(period.start)
    end = _at(period.end)
    routes = list(period.routes)
    rw = np.array([period.routes[r] for r in routes], dtype=np.float64)
    n = 0
    while True:
        t = t + dt.timedelta(hours=float(rng.exponential(1.0 / rate_h)))
        if t >= end:
            break
        n += 1
        route = [
            s.strip() for s in routes[int(rng.choice(len(routes), p=rw / rw.sum()))].split(">")
        ]
        size = int(rng.integers(period.cars[0], period.cars[1] + 1))
        classes = _mix_draw(period.class_mix, size, rng)
        cars = _random_consist(
            classes, rng, period.loaded_share, period.covered_share, period.containers_share
        )
        loco = _locomotive(rng)
        train_id = f"T{period.start:%Y%m}-{n:04d}"
        plan: list[tuple[str, dt.datetime, dt.datetime, Consist]] = []
        s = t
        for k, site in enumerate(route):
            dwell = float(rng.uniform(*period.dwell_hours))
            consist = cars
            if k > 0 and k == len(route) - 1 and route[0] == site:  # round trip: reloaded
                consist = _random_consist(
                    cars.cls,
                    rng,
                    period.loaded_share,
                    period.covered_share,
                    period.containers_share,
                )
                consist = Consist(consist.cls, list(cars.color), list(cars.length_m), consist.load)
            if rng.random() < period.locomotive_share:
                consist = consist.prepend(loco)
            plan.append((site, s, s + dt.timedelta(hours=dwell), consist))
            s = s + dt.timedelta(hours=dwell + float(rng.uniform(*spec.transit_hours)))
        placed: list[Visit] = []
        ok = True
        for site, a, b, consist in plan:
            if any(bs == site and a < be and ba < b for bs, ba, be in blocked):
                ok = False
                break
            cap = period.max_cars.get(site)
            if cap is not None and yards[site].cars_during(a, b) + len(consist) > cap:
                ok = False
                break
            spot = yards[site].place(
                consist.span_m, a, b, ("main", "yard", "siding"), rng, scatter=True
            )
            if spot is None:
                ok = False
                break
            placed.append(Visit(train_id, site, spot[0], spot[1], a, b, consist, "random"))
        if not ok:
            traffic.dropped += 1
            continue
        for v in placed:
            yards[v.site].add(v)
            traffic.visits.append(v)


def iter_dates(start: dt.date, end: dt.date, step_days: int = 1) -> Iterable[dt.date]:
    """Dates from ``start`` to ``end`` inclusive."""
    d = start
    while d <= end:
        yield d
        d += dt.timedelta(days=step_days)


def daily_counts(
    traffic: Traffic, site: str, start: dt.date, end: dt.date, hour_utc: float = 2.5
) -> list[tuple[dt.date, int]]:
    """True total railcars at ``site`` each day (at ``hour_utc``), for checks and docs."""
    return [(d, len(traffic.cars_at(site, _at(d, hour_utc)))) for d in iter_dates(start, end)]


__all__ = [
    "GAP_M",
    "CarState",
    "Consist",
    "Traffic",
    "Visit",
    "apportion",
    "build_traffic",
    "daily_counts",
    "hex_rgb",
    "track_length",
]
