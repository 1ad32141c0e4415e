"""The simulator's world model: what stands on the ground, in local metric coordinates.

Everything here is plain data. Coordinates are LOCAL METRES: ``x`` east, ``y`` north,
origin at a site centre whose projected (UTM) CRS and easting/northing are stored in
the :class:`World` (``crs``, ``origin``), so ``easting = origin[0] + x`` and
``northing = origin[1] + y``. Headings are radians counter-clockwise from +x (east).

* :class:`Track` - a polyline of track centre-line vertices with its gauge; a branch or
  siding names its ``parent`` track (its first vertex is the switch on the parent).
* :class:`Railcars` - all railcars as one columnar record (centre, heading, size, class,
  colour, covered, load, train and track ids); :func:`place_train` puts N coupled cars
  on a track polyline with ~1 m coupling gaps, following curves (each car's two ends sit
  on the centre line, the body is the chord between them).
* :class:`Building` (warehouse, platform, wall, watch post, canopy, with built/removed
  dates), :class:`Wall` (a polyline with height and thickness), :class:`Road` (asphalt or
  gravel), :class:`Water` (rivers and ponds, frozen in winter).
* :class:`Containers` - ground container stacks (6.1 or 12.2 m long, 2.44 m wide).
* :class:`Distractors` - trucks, rubble piles, parked machinery: things a detector must
  not count.
* :class:`Conditions` - when and how the image is taken: UTC time and place (for the
  sun), sensor and GSD, snow, haze, cloud cover, off-nadir angle, noise, compression and
  the random seed.

The renderer (:mod:`railwatch.simulate.render`) turns a ``World`` plus ``Conditions``
into a georeferenced image and its ground truth.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from railwatch.types import RAILCAR_CLASSES

#: Load types a railcar may carry (``tarp`` means a covered load of unknown cargo).
LOAD_TYPES: tuple[str, ...] = ("none", "coal", "ore", "containers", "tarp")
#: Kinds of buildings and structures.
BUILDING_KINDS: tuple[str, ...] = ("warehouse", "platform", "wall", "watch post", "canopy", "shed")
#: Kinds of distractor objects.
DISTRACTOR_KINDS: tuple[str, ...] = ("truck", "rubble", "machine", "car", "tree")

CONTAINER_WIDTH_M = 2.44
CONTAINER_HEIGHT_M = 2.59
CONTAINER_LENGTHS_M = (6.06, 12.19)


@dataclass(frozen=True)
class CarSpec:
    """Plausible dimensions of one railcar class (metres)."""

    length_range: tuple[float, float]
    width: float
    height: float


#: Sizes per class (lengths over couplers; heights of the roof above the ground).
CAR_SPECS: dict[str, CarSpec] = {
    "boxcar": CarSpec((14.0, 17.0), 3.2, 4.7),
    "tank": CarSpec((12.0, 18.0), 3.0, 4.6),
    "hopper": CarSpec((12.0, 14.0), 3.2, 3.6),
    "flatcar": CarSpec((13.0, 19.0), 3.0, 1.4),
    "locomotive": CarSpec((17.0, 21.0), 3.2, 5.0),
    "passenger": CarSpec((24.0, 26.0), 3.2, 4.3),
    "other": CarSpec((10.0, 20.0), 3.0, 3.6),
}

#: Liveries seen from above, per class (RGB).
LIVERIES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "boxcar": ((128, 58, 40), (104, 70, 52), (120, 122, 124), (62, 88, 140), (126, 170, 198),
               (56, 92, 66), (150, 70, 50), (96, 50, 40)),
    "tank": ((30, 30, 32), (42, 42, 44), (150, 152, 150), (60, 60, 64), (200, 200, 196)),
    "hopper": ((120, 60, 42), (100, 72, 56), (90, 92, 94), (70, 70, 72), (128, 84, 56)),
    "flatcar": ((90, 80, 70), (70, 64, 60), (110, 96, 80)),
    "locomotive": ((58, 100, 70), (170, 50, 40), (200, 160, 60), (60, 80, 130), (80, 110, 90)),
    "passenger": ((60, 90, 70), (90, 100, 130), (140, 60, 50), (180, 180, 176)),
    "other": ((200, 150, 40), (190, 90, 40), (110, 110, 100)),
}

CONTAINER_COLORS: tuple[tuple[int, int, int], ...] = (
    (170, 60, 40), (40, 80, 140), (60, 120, 70), (180, 140, 60), (140, 140, 140),
    (200, 200, 196), (120, 60, 40), (30, 100, 120), (200, 110, 40), (90, 40, 60),
)


def _col(values: Any, n: int, dtype: Any, shape: tuple[int, ...] = ()) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    return arr.reshape((n, *shape))


# -- tracks, buildings, walls, roads ----------------------------------------------------


@dataclass
class Track:
    """A track centre line (local metres), its gauge and an optional parent (switch)."""

    id: str
    vertices: np.ndarray  # (N, 2)
    gauge_m: float = 1.520
    parent: str | None = None

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64).reshape(-1, 2)
        if len(self.vertices) < 2:
            raise ValueError(f"track {self.id!r} needs at least 2 vertices")

    @property
    def length(self) -> float:
        """Length of the centre line in metres."""
        return float(np.linalg.norm(np.diff(self.vertices, axis=0), axis=1).sum())

    def point_at(self, s: np.ndarray | float) -> np.ndarray:
        """Points (…, 2) at arc lengths ``s`` along the centre line (clamped to its ends)."""
        seg = np.diff(self.vertices, axis=0)
        seglen = np.linalg.norm(seg, axis=1)
        cum = np.concatenate([[0.0], np.cumsum(seglen)])
        s = np.clip(np.asarray(s, dtype=np.float64), 0.0, cum[-1])
        x = np.interp(s, cum, self.vertices[:, 0])
        y = np.interp(s, cum, self.vertices[:, 1])
        return np.stack([x, y], axis=-1)


@dataclass
class Building:
    """A structure seen from above: footprint polygon, height, roof colour, lifetime."""

    polygon: np.ndarray  # (N, 2) local metres
    height_m: float = 6.0
    roof_color: tuple[int, int, int] = (150, 150, 146)
    kind: str = "warehouse"
    built: dt.date | None = None
    removed: dt.date | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self.polygon = np.asarray(self.polygon, dtype=np.float64).reshape(-1, 2)
        if self.kind not in BUILDING_KINDS:
            raise ValueError(f"unknown building kind {self.kind!r}")

    def exists(self, when: dt.date | dt.datetime | None) -> bool:
        """True if the building stands on ``when`` (always, if ``when`` is None)."""
        return _exists(self.built, self.removed, when)


@dataclass
class Wall:
    """A wall along a polyline (local metres)."""

    vertices: np.ndarray
    height_m: float = 3.0
    thickness_m: float = 0.4
    color: tuple[int, int, int] = (170, 166, 156)
    built: dt.date | None = None
    removed: dt.date | None = None

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64).reshape(-1, 2)

    def exists(self, when: dt.date | dt.datetime | None) -> bool:
        return _exists(self.built, self.removed, when)


@dataclass
class Road:
    """A road or paved yard strip along a polyline (local metres)."""

    vertices: np.ndarray
    width_m: float = 7.0
    color: tuple[int, int, int] = (118, 114, 106)
    surface: str = "asphalt"  # "asphalt" (sharp edges) or "gravel" (soft, textured edges)

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64).reshape(-1, 2)
        if self.surface not in ("asphalt", "gravel"):
            raise ValueError(f"unknown road surface {self.surface!r}")


@dataclass
class Water:
    """A river or pond surface (polygon, local metres); frozen and snowy in winter."""

    polygon: np.ndarray
    color: tuple[int, int, int] = (64, 80, 72)  # a silty river, seen from above

    def __post_init__(self) -> None:
        self.polygon = np.asarray(self.polygon, dtype=np.float64).reshape(-1, 2)


def _exists(built: dt.date | None, removed: dt.date | None, when: Any) -> bool:
    if when is None:
        return True
    d = when.date() if isinstance(when, dt.datetime) else when
    if built is not None and d < built:
        return False
    return not (removed is not None and d >= removed)


# -- columnar records -------------------------------------------------------------------


class _Columnar:
    """Shared helpers of the columnar records (dataclasses of parallel arrays)."""

    def __len__(self) -> int:
        return len(self.x)  # type: ignore[attr-defined]

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int | np.integer):
            index = [int(index)]
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})  # type: ignore[arg-type]

    @classmethod
    def concat(cls, parts: Sequence[Any]) -> Any:
        parts = list(parts)
        if not parts:
            return cls.empty()  # type: ignore[attr-defined]
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(cls)})  # type: ignore[arg-type]

    def corners(self) -> np.ndarray:
        """(N, 4, 2) footprint corners (local metres), going round each rectangle."""
        return rect_corners(self.x, self.y, self.heading, self.length_m, self.width_m)  # type: ignore[attr-defined]


@dataclass
class Railcars(_Columnar):
    """All railcars of a world as parallel arrays (local metres, radians)."""

    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    length_m: np.ndarray
    width_m: np.ndarray
    cls: np.ndarray  # str, one of RAILCAR_CLASSES
    color: np.ndarray  # (N, 3) uint8
    covered: np.ndarray  # bool
    load: np.ndarray  # str, one of LOAD_TYPES
    train_id: np.ndarray  # str
    track_id: np.ndarray  # str

    def __post_init__(self) -> None:
        n = len(np.atleast_1d(self.x))
        self.x = _col(self.x, n, np.float64)
        self.y = _col(self.y, n, np.float64)
        self.heading = _col(self.heading, n, np.float64)
        self.length_m = _col(self.length_m, n, np.float64)
        self.width_m = _col(self.width_m, n, np.float64)
        self.cls = _col(self.cls, n, object)
        self.color = _col(self.color, n, np.uint8, (3,))
        self.load = _col(self.load, n, object)
        # a load under a tarp is a covered load, whatever the caller said
        self.covered = _col(self.covered, n, bool) | (self.load == "tarp")
        self.train_id = _col(self.train_id, n, object)
        self.track_id = _col(self.track_id, n, object)
        bad = set(self.cls.tolist()) - set(RAILCAR_CLASSES)
        if bad:
            raise ValueError(f"unknown railcar class(es): {sorted(bad)}")
        bad = set(self.load.tolist()) - set(LOAD_TYPES)
        if bad:
            raise ValueError(f"unknown load type(s): {sorted(bad)}")

    @classmethod
    def empty(cls) -> Railcars:
        z = np.zeros(0)
        e = np.zeros(0, dtype=object)
        return cls(z, z, z, z, z, e, np.zeros((0, 3)), np.zeros(0, bool), e, e, e)

    @property
    def height_m(self) -> np.ndarray:
        """Roof height above ground per car (class height; loaded flatcars stand taller)."""
        h = np.array([CAR_SPECS[c].height for c in self.cls], dtype=np.float64)
        tall_load = (self.cls == "flatcar") & np.isin(self.load, ["containers", "tarp"])
        h[tall_load] = 4.0
        return h


@dataclass
class Containers(_Columnar):
    """Shipping containers standing on the ground, one row per stack."""

    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    length_m: np.ndarray  # 6.06 or 12.19
    width_m: np.ndarray  # 2.44
    stack: np.ndarray  # int, containers in the stack (1..)
    color: np.ndarray  # (N, 3) uint8, colour of the top container

    def __post_init__(self) -> None:
        n = len(np.atleast_1d(self.x))
        self.x = _col(self.x, n, np.float64)
        self.y = _col(self.y, n, np.float64)
        self.heading = _col(self.heading, n, np.float64)
        self.length_m = _col(self.length_m, n, np.float64)
        self.width_m = _col(self.width_m, n, np.float64)
        self.stack = _col(self.stack, n, np.int32)
        self.color = _col(self.color, n, np.uint8, (3,))

    @classmethod
    def empty(cls) -> Containers:
        z = np.zeros(0)
        return cls(z, z, z, z, z, np.zeros(0, np.int32), np.zeros((0, 3)))

    @property
    def height_m(self) -> np.ndarray:
        return self.stack * CONTAINER_HEIGHT_M


@dataclass
class Distractors(_Columnar):
    """Objects a detector must not count: trucks, rubble piles, machines, cars, trees
    (a tree's ``length_m``/``width_m`` is its crown diameter)."""

    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    length_m: np.ndarray
    width_m: np.ndarray
    height_m: np.ndarray
    kind: np.ndarray  # str, one of DISTRACTOR_KINDS
    color: np.ndarray  # (N, 3) uint8

    def __post_init__(self) -> None:
        n = len(np.atleast_1d(self.x))
        self.x = _col(self.x, n, np.float64)
        self.y = _col(self.y, n, np.float64)
        self.heading = _col(self.heading, n, np.float64)
        self.length_m = _col(self.length_m, n, np.float64)
        self.width_m = _col(self.width_m, n, np.float64)
        self.height_m = _col(self.height_m, n, np.float64)
        self.kind = _col(self.kind, n, object)
        self.color = _col(self.color, n, np.uint8, (3,))
        bad = set(self.kind.tolist()) - set(DISTRACTOR_KINDS)
        if bad:
            raise ValueError(f"unknown distractor kind(s): {sorted(bad)}")

    @classmethod
    def empty(cls) -> Distractors:
        z = np.zeros(0)
        return cls(z, z, z, z, z, z, np.zeros(0, dtype=object), np.zeros((0, 3)))


# -- conditions and world ---------------------------------------------------------------


@dataclass
class Conditions:
    """How and when an image is taken.

    ``when`` is a UTC datetime; ``lat``/``lon`` place the sun. ``snow``, ``haze`` and
    ``cloud_cover`` are fractions 0..1. ``off_nadir_deg`` leans tall things away from the
    sensor, which looks from ``off_nadir_azimuth_deg`` (clockwise from north).
    ``noise`` is the sensor noise standard deviation (fraction of full scale), ``blur``
    scales the point-spread function (1 = nominal), ``jpeg_quality`` (1..100, or 0 for
    none) adds compression artefacts. ``seed`` fixes every random choice of the render.
    """

    when: dt.datetime = field(
        default_factory=lambda: dt.datetime(2023, 10, 5, 2, 30, tzinfo=dt.UTC)
    )
    lat: float = 42.4217
    lon: float = 130.6026
    sensor: str = "SkySat"
    gsd_m: float = 0.5
    snow: float = 0.0
    haze: float = 0.0
    cloud_cover: float = 0.0
    off_nadir_deg: float = 0.0
    off_nadir_azimuth_deg: float = 0.0
    noise: float = 0.012
    blur: float = 1.0
    jpeg_quality: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.when.tzinfo is None:
            self.when = self.when.replace(tzinfo=dt.UTC)
        for name in ("snow", "haze", "cloud_cover"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in 0..1, got {v}")
        if self.gsd_m <= 0:
            raise ValueError("gsd_m must be positive")


@dataclass
class World:
    """Everything on the ground of one site (local metres around ``origin`` in ``crs``)."""

    crs: str = "EPSG:32652"
    origin: tuple[float, float] = (0.0, 0.0)  # easting, northing of local (0, 0)
    extent: tuple[float, float, float, float] = (-600.0, -400.0, 600.0, 400.0)
    tracks: list[Track] = field(default_factory=list)
    cars: Railcars = field(default_factory=Railcars.empty)
    buildings: list[Building] = field(default_factory=list)
    walls: list[Wall] = field(default_factory=list)
    roads: list[Road] = field(default_factory=list)
    containers: Containers = field(default_factory=Containers.empty)
    distractors: Distractors = field(default_factory=Distractors.empty)
    ground_seed: int = 0  # fixes the terrain texture, so it stays put between images
    water: list[Water] = field(default_factory=list)

    @classmethod
    def around(cls, lon: float, lat: float, crs: str | None = None, **kw: Any) -> World:
        """An empty world centred on ``lon``/``lat`` (UTM zone chosen if ``crs`` is None)."""
        from pyproj import CRS, Transformer

        if crs is None:
            zone = int((lon + 180) // 6) + 1
            crs = f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"
        tr = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_user_input(crs), always_xy=True)
        e, n = tr.transform(lon, lat)
        return cls(crs=crs, origin=(float(e), float(n)), **kw)

    def track(self, track_id: str) -> Track:
        for t in self.tracks:
            if t.id == track_id:
                return t
        raise KeyError(track_id)

    def to_map(self, xy: np.ndarray) -> np.ndarray:
        """Local metres -> map coordinates in ``crs`` (a translation by ``origin``)."""
        return np.asarray(xy, dtype=np.float64) + np.asarray(self.origin, dtype=np.float64)


# -- geometry helpers -------------------------------------------------------------------


def rect_corners(x: Any, y: Any, heading: Any, length: Any, width: Any) -> np.ndarray:
    """(N, 4, 2) corners of oriented rectangles, in order front-left, front-right,
    back-right, back-left (front = +heading)."""
    x, y, h, ln, w = (
        np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (x, y, heading, length, width)
    )
    ux, uy = np.cos(h), np.sin(h)
    vx, vy = -uy, ux
    a, b = ln / 2.0, w / 2.0
    cx = np.stack([a * ux + b * vx, a * ux - b * vx, -a * ux - b * vx, -a * ux + b * vx], axis=1)
    cy = np.stack([a * uy + b * vy, a * uy - b * vy, -a * uy - b * vy, -a * uy + b * vy], axis=1)
    return np.stack([x[:, None] + cx, y[:, None] + cy], axis=-1)


def place_train(
    track: Track,
    classes: Sequence[str],
    *,
    start_m: float = 0.0,
    lengths: Sequence[float] | None = None,
    colors: Sequence[tuple[int, int, int]] | None = None,
    covered: Sequence[bool] | None = None,
    loads: Sequence[str] | None = None,
    widths: Sequence[float] | None = None,
    gap_m: float = 1.0,
    train_id: str = "",
    rng: np.random.Generator | None = None,
) -> Railcars:
    """N coupled cars on ``track`` from arc length ``start_m`` onwards, ``gap_m`` apart.

    Each car's ends lie on the centre line, so cars follow curves. Missing lengths and
    colours are drawn from the class specs and liveries with ``rng`` (seed 0 if None).
    Cars that would run past the end of the track are dropped.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    n = len(classes)
    if lengths is None:
        lengths = [float(rng.uniform(*CAR_SPECS[c].length_range)) for c in classes]
    if colors is None:
        colors = [LIVERIES[c][int(rng.integers(len(LIVERIES[c])))] for c in classes]
    if widths is None:
        widths = [CAR_SPECS[c].width for c in classes]
    covered = [False] * n if covered is None else list(covered)
    loads = ["tarp" if cv else "none" for cv in covered] if loads is None else list(loads)
    ln = np.asarray(lengths, dtype=np.float64)
    starts = start_m + np.concatenate([[0.0], np.cumsum(ln[:-1] + gap_m)]) if n else np.zeros(0)
    ends = starts + ln
    keep = ends <= track.length + 1e-6
    a = track.point_at(starts)
    b = track.point_at(ends)
    mid = (a + b) / 2.0
    d = b - a
    heading = np.arctan2(d[:, 1], d[:, 0])
    chord = np.linalg.norm(d, axis=1)
    cars = Railcars(
        x=mid[:, 0], y=mid[:, 1], heading=heading, length_m=chord,
        width_m=np.asarray(widths, dtype=np.float64), cls=list(classes),
        color=np.asarray(colors, dtype=np.uint8).reshape(n, 3), covered=covered, load=loads,
        train_id=[train_id] * n, track_id=[track.id] * n,
    )
    # Keep the nominal length (over couplers) rather than the slightly shorter chord.
    cars.length_m = ln
    return cars[keep]
