"""Follow a train from one site to the next by the order and colours of its cars.

Three steps, each a public function:

* :func:`extract_trains` groups the railcars of one image into coupled strings (end to
  end, similar heading, small gap), ordered along the string, in a metric local CRS.
* :func:`match_trains` aligns the car sequences of two sets of strings (overlap
  alignment: free end gaps, a penalty for a car missing inside) with a substitution
  score from colour (CIEDE2000 in Lab), class and length agreement. Locomotives at either
  end are set aside first, so a dropped or added locomotive costs nothing; the reversed
  direction is tried too. A permutation null turns the score into a p-value, so that a
  short string of common colours is not claimed as the same train: random strings keep
  the string's blocks of alike cars, in shuffled order, each block recoloured with a car
  drawn from all cars seen.
* :func:`follow_trains` runs both over the stored detections of two sites and
  :func:`describe` writes the finding as a sentence.

Works on ground truth and on detector output alike: it only needs footprints, classes,
lengths and body colours.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pyproj import CRS, Transformer
from scipy.spatial import cKDTree
from skimage.color import deltaE_ciede2000, rgb2lab

from railwatch.types import Detections

if TYPE_CHECKING:
    from railwatch.store import Store

#: Colour names for sentences: name -> RGB; a car gets the nearest name in Lab.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (30, 30, 32),
    "dark grey": (80, 82, 85),
    "grey": (133, 136, 139),
    "light grey": (185, 188, 190),
    "white": (235, 235, 232),
    "red": (165, 55, 50),
    "reddish-brown": (125, 55, 42),
    "brown": (107, 74, 50),
    "orange": (215, 120, 40),
    "yellow": (220, 195, 60),
    "olive": (85, 95, 60),
    "green": (60, 120, 70),
    "light blue": (143, 193, 227),
    "blue": (45, 90, 160),
    "dark blue": (31, 58, 112),
}
#: Below this similarity a match is reported as "may appear" (see docs/trains.md: on the
#: scenario's truth every wrong pairing scored below 0.83, every right one above 0.98).
STRONG_SIMILARITY = 0.75
_PALETTE_NAMES = list(PALETTE)
_PALETTE_LAB = rgb2lab(np.asarray(list(PALETTE.values()), np.float64)[None] / 255.0)[0]


def lab_of(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of (N, 3) uint8 RGB colours."""
    rgb = np.asarray(rgb, dtype=np.float64).reshape(-1, 3) / 255.0
    if not len(rgb):
        return np.zeros((0, 3))
    return rgb2lab(rgb[None])[0]


def color_names(lab: np.ndarray) -> list[str]:
    """The nearest :data:`PALETTE` name (CIEDE2000) of each (N, 3) Lab colour."""
    lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
    d = deltaE_ciede2000(lab[:, None, :], _PALETTE_LAB[None, :, :])
    return [_PALETTE_NAMES[k] for k in np.argmin(d, axis=1)]


# -- records ----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TrainString:
    """Railcars coupled end to end in one image, in order along the string.

    ``indices`` point into the Detections given to :func:`extract_trains`. ``center`` is
    lon/lat; ``heading_deg`` the azimuth (clockwise from north, 0..180) from the first
    car to the last. ``site``/``when``/``scene_id``/``source`` say where it was seen.
    """

    indices: np.ndarray  # (n,) int
    rgb: np.ndarray  # (n, 3) uint8
    lab: np.ndarray  # (n, 3) float64
    cls: np.ndarray  # (n,) str
    length_m: np.ndarray  # (n,) float64
    locomotive: np.ndarray  # (n,) bool
    center: tuple[float, float]
    heading_deg: float
    span_m: float
    site: str | None = None
    when: dt.datetime | None = None
    scene_id: int | None = None
    source: str | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def core(self) -> slice:
        """The cars between the locomotives at either end (all cars if there are none)."""
        n = len(self)
        i = 0
        while i < n and self.locomotive[i]:
            i += 1
        j = n
        while j > i and self.locomotive[j - 1]:
            j -= 1
        return slice(i, j)

    @property
    def n_cars(self) -> int:
        """Cars in the string, end locomotives not counted."""
        s = self.core
        return s.stop - s.start

    @property
    def end_locomotives(self) -> int:
        """Locomotives at the two ends of the string."""
        return len(self) - self.n_cars

    def color_names(self) -> list[str]:
        """Palette names of the cars (end locomotives left out)."""
        return color_names(self.lab[self.core])

    def label(self, unknown: str = "an image") -> str:
        """Where and when it was seen, for sentences (``unknown`` when nothing is known)."""
        where = self.site.capitalize() if self.site else (self.source or unknown)
        return f"{where} on {self.when:%Y-%m-%d}" if self.when else where

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "datetime": self.when.isoformat() if self.when else None,
            "scene_id": self.scene_id,
            "source": self.source,
            "n_cars": self.n_cars,
            "end_locomotives": self.end_locomotives,
            "indices": [int(i) for i in self.indices],
            "classes": [str(c) for c in self.cls],
            "colors": ["#{:02x}{:02x}{:02x}".format(*(int(v) for v in c)) for c in self.rgb],
            "color_names": color_names(self.lab),
            "length_m": [round(float(v), 2) for v in self.length_m],
            "locomotive": [bool(v) for v in self.locomotive],
            "center": [round(self.center[0], 7), round(self.center[1], 7)],
            "heading_deg": round(self.heading_deg, 1),
            "span_m": round(self.span_m, 1),
        }


@dataclass(frozen=True, eq=False)
class TrainMatch:
    """The best alignment of string ``a`` against string ``b``.

    ``pairs`` are aligned (position in a, position in b), in a's order. ``reversed``: b runs
    the other way. ``similarity`` is 0..1 (2 x score / (cars in a + cars in b), end
    locomotives not counted); ``p_value`` the share of random strings (cars drawn from
    all cars seen) that align at least as well.
    """

    a: TrainString
    b: TrainString
    pairs: tuple[tuple[int, int], ...]
    reversed: bool
    score: float
    similarity: float
    p_value: float
    n_perm: int
    mean_delta_e: float

    @property
    def locomotive_change(self) -> str | None:
        """``"dropped"`` (a had end locomotives, b has none), ``"added"`` or None."""
        la, lb = self.a.end_locomotives > 0, self.b.end_locomotives > 0
        return "dropped" if la and not lb else ("added" if lb and not la else None)

    @property
    def missing(self) -> tuple[int, int]:
        """Cars of a, of b (end locomotives not counted) that found no partner."""
        return self.a.n_cars - len(self.pairs), self.b.n_cars - len(self.pairs)

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value <= alpha

    def swapped(self) -> TrainMatch:
        """The same match seen from b."""
        pairs = tuple(sorted((j, i) for i, j in self.pairs))
        return replace(self, a=self.b, b=self.a, pairs=pairs)

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "pairs": [list(p) for p in self.pairs],
            "reversed": self.reversed,
            "score": round(self.score, 4),
            "similarity": round(self.similarity, 4),
            "p_value": round(self.p_value, 5),
            "n_perm": self.n_perm,
            "mean_delta_e": round(self.mean_delta_e, 2),
            "locomotive_change": self.locomotive_change,
            "missing": list(self.missing),
        }


@dataclass(frozen=True, eq=False)
class TrainSighting:
    """A train seen at one site and then at the other: the match (earlier string first)."""

    match: TrainMatch
    sentence: str = field(default="")

    def to_json(self) -> dict[str, Any]:
        return {"sentence": self.sentence, **self.match.to_json()}


# -- extraction --------------------------------------------------------------------------
def _metric_crs(det: Detections) -> CRS:
    crs = det.crs
    if crs.is_projected and all(
        a.unit_name in ("metre", "meter") for a in crs.axis_info[:2]
    ):
        return crs
    lon, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(
        *det.centers.mean(axis=0)
    )
    return CRS.from_proj4(f"+proj=aeqd +lat_0={lat:.7f} +lon_0={lon:.7f} +datum=WGS84 +units=m")


def _geometry(fp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres, unit long axes and lengths of (N, 4, 2) metric footprints."""
    e0 = fp[:, 1] - fp[:, 0]
    e1 = fp[:, 2] - fp[:, 1]
    l0, l1 = np.linalg.norm(e0, axis=1), np.linalg.norm(e1, axis=1)
    long_ = np.where((l0 >= l1)[:, None], e0, e1)
    length = np.maximum(l0, l1)
    axis = long_ / np.maximum(length, 1e-9)[:, None]
    return fp.mean(axis=1), axis, length


def extract_trains(
    det: Detections,
    max_gap_m: float = 4.0,
    min_cars: int = 2,
    *,
    max_offset_m: float = 1.5,
    max_angle_deg: float = 15.0,
    max_overlap_m: float = 2.0,
) -> list[TrainString]:
    """Coupled strings of railcars in ``det`` (railcars only), west end first.

    Two cars are neighbours when their long axes agree within ``max_angle_deg``, the
    centre of one lies within ``max_offset_m`` of the other's axis line, and the gap
    between their ends is at most ``max_gap_m`` (an overlap up to ``max_overlap_m`` is
    tolerated for loose footprints). Each car keeps the nearest neighbour on each side,
    and a link needs both cars to agree. Strings of fewer than ``min_cars`` cars
    (locomotives included) are dropped. Geometry is done in ``det``'s CRS when it is in
    metres, else in a local azimuthal equidistant CRS (pyproj).
    """
    rail_idx = np.flatnonzero(det.kind == "railcar")
    if len(rail_idx) < max(min_cars, 1):
        return []
    rail = det[rail_idx]
    mcrs = _metric_crs(rail)
    m = rail.to_crs(mcrs)
    c, u, length = _geometry(m.footprints)
    n = len(rail)
    reach = float(length.max()) + max_gap_m + max_offset_m
    cos_max = np.cos(np.deg2rad(max_angle_deg))
    best = np.full((n, 2), -1, dtype=np.int64)
    best_d = np.full((n, 2), np.inf)
    for i, j in cKDTree(c).query_pairs(reach, output_type="ndarray"):
        dot = float(u[i] @ u[j])
        if abs(dot) < cos_max:
            continue
        axis = u[i] + np.sign(dot) * u[j]
        axis /= np.linalg.norm(axis)
        d = c[j] - c[i]
        along = float(d @ axis)
        lateral = abs(float(d[0] * axis[1] - d[1] * axis[0]))
        gap = abs(along) - (length[i] + length[j]) / 2
        if lateral > max_offset_m or gap > max_gap_m or gap < -max_overlap_m:
            continue
        # side of j as seen from i along i's axis, and of i as seen from j along j's axis
        si = 0 if float(d @ u[i]) > 0 else 1
        sj = 0 if float(-d @ u[j]) > 0 else 1
        dist = abs(along)
        if dist < best_d[i, si]:
            best[i, si], best_d[i, si] = j, dist
        if dist < best_d[j, sj]:
            best[j, sj], best_d[j, sj] = i, dist
    nbrs: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in best[i]:
            if j >= 0 and i in best[j] and j not in nbrs[i]:
                nbrs[i].append(int(j))
                nbrs[int(j)].append(i)
    seen = np.zeros(n, bool)
    chains: list[list[int]] = []
    # walk from chain ends first, then whatever is left (closed loops, in principle)
    for start in sorted(range(n), key=lambda k: len(nbrs[k])):
        if seen[start]:
            continue
        chain, prev, cur = [start], -1, start
        seen[start] = True
        while True:
            nxt = [k for k in nbrs[cur] if k != prev and not seen[k]]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            seen[cur] = True
            chain.append(cur)
        chains.append(chain)
    to_ll = Transformer.from_crs(mcrs, 4326, always_xy=True)
    out: list[TrainString] = []
    for chain in chains:
        if len(chain) < min_cars:
            continue
        d = c[chain[-1]] - c[chain[0]] if len(chain) > 1 else u[chain[0]]
        az = float(np.degrees(np.arctan2(d[0], d[1]))) % 360.0
        if az >= 180.0:
            chain, az = chain[::-1], az - 180.0
        idx = np.asarray(chain)
        lens = np.asarray(rail.length_m[idx], dtype=np.float64)
        lens = np.where(np.isfinite(lens) & (lens > 0), lens, length[idx])
        span = float(np.ptp(c[idx] @ (d / max(np.linalg.norm(d), 1e-9)))) + (
            length[idx[0]] + length[idx[-1]]
        ) / 2
        lon, lat = to_ll.transform(*c[idx].mean(axis=0))
        cls_ = np.asarray(rail.cls[idx], dtype=object)
        out.append(
            TrainString(
                indices=rail_idx[idx],
                rgb=rail.color[idx].copy(),
                lab=lab_of(rail.color[idx]),
                cls=cls_,
                length_m=lens,
                locomotive=cls_ == "locomotive",
                center=(float(lon), float(lat)),
                heading_deg=az,
                span_m=float(span),
            )
        )
    out.sort(key=lambda t: (-len(t), t.center))
    return out


def label_trains(
    trains: Sequence[TrainString],
    site: str | None = None,
    when: dt.datetime | None = None,
    scene_id: int | None = None,
    source: str | None = None,
) -> list[TrainString]:
    """The strings with where/when they were seen filled in."""
    return [replace(t, site=site, when=when, scene_id=scene_id, source=source) for t in trains]


# -- alignment ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MatchParams:
    """Weights of the substitution score (each term in -1..1) and the gap penalty."""

    w_color: float = 0.6
    w_class: float = 0.25
    w_length: float = 0.15
    delta_e_scale: float = 15.0  # CIEDE2000 at which colour agreement falls to 2/e - 1
    length_tol_m: float = 3.0  # length difference at which length agreement is 0
    gap: float = 0.6  # a car missing inside the string
    run_delta_e: float = 5.0  # neighbours closer than this (same class) form one block


def _substitution(
    lab_a: np.ndarray, cls_a: np.ndarray, len_a: np.ndarray,
    lab_b: np.ndarray, cls_b: np.ndarray, len_b: np.ndarray,
    p: MatchParams,
) -> tuple[np.ndarray, np.ndarray]:
    """(n, m) substitution scores in -1..1 and the CIEDE2000 colour distances."""
    de = deltaE_ciede2000(lab_a[:, None, :], lab_b[None, :, :])
    color = 2.0 * np.exp(-((de / p.delta_e_scale) ** 2)) - 1.0
    ca, cb = cls_a[:, None], cls_b[None, :]
    klass = np.where(ca == cb, 1.0, -1.0)
    klass = np.where((ca == "other") | (cb == "other"), 0.0, klass)
    dl = np.abs(len_a[:, None] - len_b[None, :])
    length = 1.0 - 2.0 * np.minimum(dl / (2 * p.length_tol_m), 1.0)
    return p.w_color * color + p.w_class * klass + p.w_length * length, de


def _align_scores(sub: np.ndarray, gap: float) -> np.ndarray:
    """Overlap-alignment scores of a batch of (P, n, m) substitution matrices."""
    pn, n, m = sub.shape
    h = np.zeros((pn, n + 1, m + 1))
    for k in range(2, n + m + 1):  # anti-diagonals i + j = k: their cells are independent
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        h[:, i, j] = np.maximum(
            h[:, i - 1, j - 1] + sub[:, i - 1, j - 1],
            np.maximum(h[:, i - 1, j], h[:, i, j - 1]) - gap,
        )
    return np.maximum(h[:, n, :].max(axis=1), h[:, :, m].max(axis=1))


def _align(sub: np.ndarray, gap: float) -> tuple[float, list[tuple[int, int]]]:
    """Overlap alignment (free end gaps) of one (n, m) matrix: score and aligned pairs."""
    n, m = sub.shape
    h = np.zeros((n + 1, m + 1))
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            h[i, j] = max(h[i - 1, j - 1] + sub[i - 1, j - 1], h[i - 1, j] - gap,
                          h[i, j - 1] - gap)
    ends = [(n, j) for j in range(m + 1)] + [(i, m) for i in range(n + 1)]
    i, j = max(ends, key=lambda e: h[e])
    score = float(h[i, j])
    pairs: list[tuple[int, int]] = []
    while i > 0 and j > 0:
        if np.isclose(h[i, j], h[i - 1, j - 1] + sub[i - 1, j - 1]):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif np.isclose(h[i, j], h[i - 1, j] - gap):
            i -= 1
        else:
            j -= 1
    return score, pairs[::-1]


def _null_draws(
    lab: np.ndarray, cls: np.ndarray, n_pool: int, n_perm: int, rng: np.random.Generator,
    run_delta_e: float,
) -> np.ndarray:
    """(n_perm, n) pool indices for random strings shaped like the given one.

    Freight trains come in blocks of alike cars, so a null of independent cars would make
    any long blocky string look unique. Each random string keeps the blocks (runs of cars
    of one class whose neighbours differ by less than ``run_delta_e``), shuffles their
    order and gives every block one car drawn from the pool.
    """
    n = len(lab)
    step = deltaE_ciede2000(lab[:-1], lab[1:]) if n > 1 else np.zeros(0)
    breaks = np.flatnonzero((step >= run_delta_e) | (cls[:-1] != cls[1:])) + 1
    runs = np.diff(np.r_[0, breaks, n])
    out = np.empty((n_perm, n), dtype=np.int64)
    for k in range(n_perm):
        out[k] = np.repeat(rng.integers(0, n_pool, size=len(runs)), rng.permutation(runs))
    return out


@dataclass(frozen=True)
class CarPool:
    """Cars the permutation null draws from: Lab colours, classes, lengths."""

    lab: np.ndarray
    cls: np.ndarray
    length_m: np.ndarray

    @classmethod
    def of(cls, trains: Sequence[TrainString]) -> CarPool:
        """All cars (end locomotives left out) of ``trains``."""
        cores = [t.core for t in trains]
        if not trains:
            return cls(np.zeros((0, 3)), np.zeros(0, object), np.zeros(0))
        return cls(
            np.concatenate([t.lab[s] for t, s in zip(trains, cores, strict=True)]),
            np.concatenate([t.cls[s] for t, s in zip(trains, cores, strict=True)]),
            np.concatenate([t.length_m[s] for t, s in zip(trains, cores, strict=True)]),
        )


def compare_trains(
    a: TrainString,
    b: TrainString,
    *,
    pool: CarPool | None = None,
    n_perm: int = 499,
    seed: int = 0,
    params: MatchParams | None = None,
) -> TrainMatch:
    """Align ``a`` against ``b`` (both directions) and score the best alignment.

    The null makes ``n_perm`` random strings with the blocks of a's core in shuffled
    order, each block one car drawn from ``pool`` (default: the cars of a and b), each
    aligned against b the same way; ``p_value`` is (1 + draws scoring at least as high) /
    (1 + n_perm).
    """
    p = params or MatchParams()
    sa, sb = a.core, b.core
    na, nb = sa.stop - sa.start, sb.stop - sb.start
    if na == 0 or nb == 0:
        return TrainMatch(a, b, (), False, 0.0, 0.0, 1.0, 0, float("nan"))
    la, ca, lena = a.lab[sa], a.cls[sa], a.length_m[sa]
    lb, cb, lenb = b.lab[sb], b.cls[sb], b.length_m[sb]
    sub, de = _substitution(la, ca, lena, lb, cb, lenb, p)
    fwd, pairs_f = _align(sub, p.gap)
    rev, pairs_r = _align(sub[:, ::-1], p.gap)
    is_rev = rev > fwd + 1e-9
    score = rev if is_rev else fwd
    pairs = [(i, nb - 1 - j) for i, j in pairs_r] if is_rev else pairs_f
    pval = 1.0
    if n_perm > 0:
        pool = pool if pool is not None and len(pool.lab) else CarPool.of([a, b])
        rng = np.random.default_rng(seed)
        draw = _null_draws(la, ca, len(pool.lab), n_perm, rng, p.run_delta_e)
        sub_pool, _ = _substitution(pool.lab, pool.cls, pool.length_m, lb, cb, lenb, p)
        sub_n = sub_pool[draw]  # (n_perm, na, nb)
        null = np.maximum(_align_scores(sub_n, p.gap), _align_scores(sub_n[:, :, ::-1], p.gap))
        pval = float((1 + np.sum(null >= score - 1e-9)) / (1 + n_perm))
    pairs_t = tuple((i + sa.start, j + sb.start) for i, j in pairs)
    mde = float(np.mean([de[i, j] for i, j in pairs])) if pairs else float("nan")
    sim = float(np.clip(2.0 * score / (na + nb), 0.0, 1.0))
    return TrainMatch(a, b, pairs_t, bool(is_rev), float(score), sim, pval, n_perm, mde)


def match_trains(
    a: Sequence[TrainString],
    b: Sequence[TrainString],
    *,
    min_similarity: float = 0.5,
    min_cars: int = 2,
    pool: CarPool | None = None,
    n_perm: int = 499,
    seed: int = 0,
    params: MatchParams | None = None,
) -> list[TrainMatch]:
    """Pair strings of ``a`` with strings of ``b``, one to one, best alignments first.

    Every pair with at least ``min_cars`` cars on each side is aligned; pairs are taken
    greedily by alignment score, each string used once; pairs below ``min_similarity``
    are dropped. The survivors get a p-value from the permutation null (``pool``: default
    all cars of ``a`` and ``b``). Returned in descending score.
    """
    p = params or MatchParams()
    pool = pool if pool is not None else CarPool.of([*a, *b])
    cand: list[tuple[float, int, int, TrainMatch]] = []
    for i, ta in enumerate(a):
        if ta.n_cars < min_cars:
            continue
        for j, tb in enumerate(b):
            if tb.n_cars < min_cars:
                continue
            mt = compare_trains(ta, tb, n_perm=0, params=p)
            if mt.similarity >= min_similarity:
                cand.append((mt.score, i, j, mt))
    cand.sort(key=lambda c: (-c[0], c[1], c[2]))
    used_a: set[int] = set()
    used_b: set[int] = set()
    out: list[TrainMatch] = []
    for _, i, j, _mt in cand:
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        out.append(compare_trains(a[i], b[j], pool=pool, n_perm=n_perm, seed=seed, params=p))
    return out


# -- sentences ---------------------------------------------------------------------------
def describe(match: TrainMatch, alpha: float = 0.05) -> str:
    """One sentence for a match, earlier sighting first (when both dates are known)."""
    m = match
    if m.a.when and m.b.when and m.b.when < m.a.when:
        m = m.swapped()
    a, b = m.a, m.b
    colours = ", ".join(a.color_names())
    loco = "; behind a locomotive" if a.end_locomotives else ""
    what = f"The {a.n_cars}-car train seen at {a.label('the first image')} ({colours}{loco})"
    tail = []
    if m.locomotive_change == "dropped":
        tail.append("without its locomotive")
    elif m.locomotive_change == "added":
        tail.append("now behind a locomotive")
    miss_a, miss_b = m.missing
    if miss_a > 0:
        tail.append(f"with {miss_a} car{'s' if miss_a > 1 else ''} not seen")
    if miss_b > 0:
        tail.append(f"with {miss_b} more car{'s' if miss_b > 1 else ''}")
    if m.reversed:
        tail.append("in reverse order")
    strong = m.similarity >= STRONG_SIMILARITY
    verb = "appears" if m.significant(alpha) and strong else "may appear"
    stat = f"similarity {m.similarity:.2f}, {_fmt_p(m.p_value, m.n_perm)}"
    if not m.significant(alpha):
        stat += "; could be chance"
    elif not strong:
        stat += "; weak: only part of the sequence agrees"
    rest = (" " + ", ".join(tail)) if tail else ""
    return f"{what} {verb} at {b.label('the second image')}{rest} ({stat})"


def _fmt_p(p: float, n_perm: int) -> str:
    """``p=0.03``, or ``p≤0.002`` when no random string scored as high."""
    if n_perm and p <= 1.0 / (1 + n_perm) + 1e-12:
        return f"p≤{p:.2g}"
    return f"p={p:.2g}"


# -- over the store ----------------------------------------------------------------------
def _trains_of_site(
    store: Store,
    site: str,
    start: dt.date | dt.datetime | None,
    end: dt.date | dt.datetime | None,
    max_gap_m: float,
    min_cars: int,
    progress: Callable[[int, int, str], None] | None,
) -> list[TrainString]:
    from railwatch.analytics.trackmap import track_fit
    from railwatch.sites import get_site

    scenes = store.scenes(site, start, end)
    where = get_site(site, store)
    out: list[TrainString] = []
    for k, scene in enumerate(scenes):
        det = store.get_detections(int(scene.id or 0)) if scene.id is not None else None
        fit = track_fit(det, where) if det is not None and len(det) else None
        if fit is not None:  # railcars off the site's track map are not in any train
            det = det[fit.on_track]
        if det is not None and len(det):
            out += label_trains(extract_trains(det, max_gap_m, min_cars), site,
                                scene.acquired, scene.id, scene.path)
        if progress is not None:
            progress(k + 1, len(scenes), f"{site} {Path(scene.path).name}")
    return out


def _local_pool(
    trains: Sequence[TrainString], a: TrainString, b: TrainString, min_pool: int
) -> CarPool:
    """Cars of the strings nearest in time to a and b (all with a datetime), at least
    ``min_pool`` cars; strings seen between the two images are always included."""
    if a.when is None or b.when is None:
        return CarPool.of(trains or [a, b])
    mid = a.when + (b.when - a.when) / 2
    half = abs(b.when - a.when) / 2

    def dist(x: TrainString) -> dt.timedelta:
        return abs((x.when or mid) - mid)

    chosen: list[TrainString] = []
    n = 0
    for x in sorted(trains, key=dist):
        if n >= min_pool and dist(x) > half:
            break
        chosen.append(x)
        n += x.n_cars
    return CarPool.of(chosen or [a, b])


def _pad(d: dt.date | dt.datetime | None, days: int) -> dt.date | dt.datetime | None:
    return None if d is None else d + dt.timedelta(days=days)


def follow_trains(
    store: Store,
    site_a: str,
    site_b: str,
    start: dt.date | dt.datetime | None = None,
    end: dt.date | dt.datetime | None = None,
    max_days: float = 3,
    *,
    max_gap_m: float = 4.0,
    min_cars: int = 2,
    min_similarity: float = STRONG_SIMILARITY,
    alpha: float = 0.05,
    n_perm: int = 499,
    min_pool: int = 200,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[TrainSighting]:
    """Trains seen at one site and, within ``max_days``, at the other (stored detections).

    For every string at either site (in ``start``..``end``), the best-scoring string at
    the other site in an image taken at most ``max_days`` apart; pairs found from both
    sides are kept once. Only matches with similarity >= ``min_similarity`` and p-value
    <= ``alpha`` are returned, earliest first. The null draws from the cars seen at both
    sites nearest in time to the two images, at least ``min_pool`` of them (fewer only if
    fewer were seen), so that rarity is judged against the rolling stock of the time.
    """
    pad = int(np.ceil(max_days))
    ta = _trains_of_site(store, site_a, start, end, max_gap_m, min_cars, progress)
    tb = _trains_of_site(store, site_b, _pad(start, -pad), _pad(end, pad), max_gap_m,
                         min_cars, progress)
    everything = sorted((x for x in [*ta, *tb] if x.when is not None), key=lambda x: x.when)
    limit = dt.timedelta(days=max_days)

    def near(x: TrainString, y: TrainString) -> bool:
        return x.when is not None and y.when is not None and abs(x.when - y.when) <= limit

    best: dict[tuple[int, int], TrainMatch] = {}
    for src, dst, flip in ((ta, tb, False), (tb, ta, True)):
        for i, t in enumerate(src):
            if t.n_cars < min_cars:
                continue
            cands = [(j, u) for j, u in enumerate(dst) if u.n_cars >= min_cars and near(t, u)]
            scored = [(compare_trains(t, u, n_perm=0), j) for j, u in cands]
            scored = [(m, j) for m, j in scored if m.similarity >= min_similarity]
            if not scored:
                continue
            m, j = max(scored, key=lambda s: s[0].score)
            key = (j, i) if flip else (i, j)
            if key in best:
                continue
            pool = _local_pool(everything, t, dst[j], min_pool)
            full = compare_trains(t, dst[j], pool=pool, n_perm=n_perm, seed=seed)
            if full.p_value <= alpha:
                best[key] = full.swapped() if flip else full
    out = []
    for m in best.values():
        if m.a.when and m.b.when and m.b.when < m.a.when:
            m = m.swapped()
        out.append(TrainSighting(m, describe(m, alpha)))
    out.sort(key=lambda s: (s.match.a.when or dt.datetime.min.replace(tzinfo=dt.UTC),
                            s.match.b.when or dt.datetime.min.replace(tzinfo=dt.UTC)))
    return out


# -- detection files -----------------------------------------------------------------------
_STEM = re.compile(r"^(?P<site>[a-z0-9_-]+?)_(?P<when>\d{8}T\d{4})(?:_|\.|$)")


def trains_from_file(
    path: str | Path, max_gap_m: float = 4.0, min_cars: int = 2
) -> list[TrainString]:
    """Strings of a detections (or truth) GeoJSON file, labelled from its name when it
    follows ``<site>_<YYYYMMDDTHHMM>_...`` (the simulator's naming), else by the file."""
    from railwatch.errors import InputError
    from railwatch.geojson import from_geojson

    path = Path(path)
    try:
        det = from_geojson(path)
    except ValueError as exc:
        raise InputError(str(exc).removeprefix(f"{path}: "), path) from None
    site, when = None, None
    hit = _STEM.match(path.name)
    if hit:
        site = hit["site"]
        when = dt.datetime.strptime(hit["when"], "%Y%m%dT%H%M").replace(tzinfo=dt.UTC)
    return label_trains(extract_trains(det, max_gap_m, min_cars), site, when, None, path.name)


def follow_files(
    path_a: str | Path,
    path_b: str | Path,
    *,
    max_gap_m: float = 4.0,
    min_cars: int = 2,
    min_similarity: float = STRONG_SIMILARITY,
    alpha: float = 0.05,
    n_perm: int = 499,
    seed: int = 0,
) -> list[TrainSighting]:
    """Trains of one detections file matched to those of another (:func:`match_trains`).

    Unlike :func:`follow_trains`, matches that fail the p-value test are kept, and their
    sentence says they could be chance: with two files the user has already chosen
    the pair of images.
    """
    ta = trains_from_file(path_a, max_gap_m, min_cars)
    tb = trains_from_file(path_b, max_gap_m, min_cars)
    matches = match_trains(ta, tb, min_similarity=min_similarity, min_cars=min_cars,
                           n_perm=n_perm, seed=seed)
    return [TrainSighting(m, describe(m, alpha)) for m in matches]


__all__ = [
    "PALETTE",
    "STRONG_SIMILARITY",
    "CarPool",
    "MatchParams",
    "TrainMatch",
    "TrainSighting",
    "TrainString",
    "color_names",
    "compare_trains",
    "describe",
    "extract_trains",
    "follow_files",
    "follow_trains",
    "lab_of",
    "label_trains",
    "match_trains",
    "trains_from_file",
]
