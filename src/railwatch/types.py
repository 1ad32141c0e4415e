"""The few core records shared by every stage: classes, Detections, Site, Scene, Observation.

`Detections` is columnar: one object holds many detections as parallel numpy arrays,
with the image's CRS as metadata. Conversion to and from GeoJSON happens at the edge
(`railwatch.geojson`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyproj import CRS
from shapely.geometry import MultiLineString, Polygon

#: Railcar classes (contract, see design.md). Order fixes the class ids used by models.
RAILCAR_CLASSES: tuple[str, ...] = (
    "boxcar",
    "tank",
    "hopper",
    "flatcar",
    "locomotive",
    "passenger",
    "other",
)
#: Object kinds (contract).
KINDS: tuple[str, ...] = ("railcar", "container")


def _as_crs(value: Any) -> CRS:
    return value if isinstance(value, CRS) else CRS.from_user_input(value)


@dataclass
class Detections:
    """Many detected (or true) objects of one image, as parallel arrays.

    footprints: (N, 4, 2) float64 corner coordinates in ``crs`` (map units, x/y order),
        going round the oriented rectangle.
    kind: (N,) str, ``railcar`` or ``container``.
    cls: (N,) str, a railcar class (``""`` for containers).
    score: (N,) float32 in 0..1 (1.0 for ground truth).
    covered: (N,) bool, load under a tarp.
    color: (N, 3) uint8 RGB body colour as seen from above.
    length_m: (N,) float64 footprint length in metres.
    extra: further per-object columns (arrays of length N), e.g. ``train_id``.
    meta: whole-set metadata (image path, GSD, what resampling was done, ...).
    """

    footprints: np.ndarray
    kind: np.ndarray
    cls: np.ndarray
    score: np.ndarray
    covered: np.ndarray
    color: np.ndarray
    length_m: np.ndarray
    crs: CRS = field(default_factory=lambda: CRS.from_epsg(4326))
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.footprints = np.asarray(self.footprints, dtype=np.float64).reshape(-1, 4, 2)
        n = len(self.footprints)
        self.kind = np.asarray(self.kind, dtype=object).reshape(n)
        self.cls = np.asarray(self.cls, dtype=object).reshape(n)
        self.score = np.asarray(self.score, dtype=np.float32).reshape(n)
        self.covered = np.asarray(self.covered, dtype=bool).reshape(n)
        self.color = np.asarray(self.color, dtype=np.uint8).reshape(n, 3)
        self.length_m = np.asarray(self.length_m, dtype=np.float64).reshape(n)
        self.crs = _as_crs(self.crs)
        self.extra = {k: np.asarray(v).reshape(n) for k, v in self.extra.items()}
        bad_kind = set(self.kind.tolist()) - set(KINDS)
        if bad_kind:
            raise ValueError(f"unknown object kind(s): {sorted(bad_kind)}")
        rail = self.kind == "railcar"
        bad_cls = set(self.cls[rail].tolist()) - set(RAILCAR_CLASSES)
        if bad_cls:
            raise ValueError(f"unknown railcar class(es): {sorted(bad_cls)}")
        if n and (np.nanmin(self.score) < 0 or np.nanmax(self.score) > 1):
            raise ValueError("scores must lie in 0..1")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls, crs: Any = 4326, **meta: Any) -> Detections:
        """No detections, in ``crs``."""
        return cls(
            footprints=np.zeros((0, 4, 2)),
            kind=[],
            cls=[],
            score=[],
            covered=[],
            color=np.zeros((0, 3)),
            length_m=[],
            crs=crs,
            meta=dict(meta),
        )

    @classmethod
    def concat(cls, parts: Iterable[Detections]) -> Detections:
        """Join detections that share one CRS (extra columns present in all parts are kept)."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        crs = parts[0].crs
        if any(p.crs != crs for p in parts[1:]):
            raise ValueError("cannot concatenate detections in different CRSs")
        keys = set(parts[0].extra)
        for p in parts[1:]:
            keys &= set(p.extra)
        return cls(
            footprints=np.concatenate([p.footprints for p in parts]),
            kind=np.concatenate([p.kind for p in parts]),
            cls=np.concatenate([p.cls for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            covered=np.concatenate([p.covered for p in parts]),
            color=np.concatenate([p.color for p in parts]),
            length_m=np.concatenate([p.length_m for p in parts]),
            crs=crs,
            extra={k: np.concatenate([p.extra[k] for p in parts]) for k in sorted(keys)},
            meta=dict(parts[0].meta),
        )

    # -- access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.footprints)

    def __getitem__(self, index: Any) -> Detections:
        """Select by boolean mask, index array or slice; returns a new Detections."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        return Detections(
            footprints=self.footprints[index],
            kind=self.kind[index],
            cls=self.cls[index],
            score=self.score[index],
            covered=self.covered[index],
            color=self.color[index],
            length_m=self.length_m[index],
            crs=self.crs,
            extra={k: v[index] for k, v in self.extra.items()},
            meta=dict(self.meta),
        )

    @property
    def centers(self) -> np.ndarray:
        """(N, 2) footprint centres in ``crs``."""
        return self.footprints.mean(axis=1)

    @property
    def railcars(self) -> Detections:
        return self[self.kind == "railcar"]

    @property
    def containers(self) -> Detections:
        return self[self.kind == "container"]

    def polygons(self) -> list[Polygon]:
        """Footprints as shapely polygons (in ``crs``)."""
        return [Polygon(fp) for fp in self.footprints]

    def counts(self) -> dict[str, int]:
        """Railcars per class plus ``total``, ``covered`` and ``containers``."""
        rail = self.kind == "railcar"
        out = {c: int(np.sum(self.cls[rail] == c)) for c in RAILCAR_CLASSES}
        out["total"] = int(rail.sum())
        out["covered"] = int(np.sum(self.covered & rail))
        out["containers"] = int(np.sum(self.kind == "container"))
        return out

    def to_crs(self, crs: Any) -> Detections:
        """The same detections with footprints reprojected to ``crs`` (pyproj)."""
        from pyproj import Transformer

        crs = _as_crs(crs)
        if crs == self.crs:
            return self
        tr = Transformer.from_crs(self.crs, crs, always_xy=True)
        flat = self.footprints.reshape(-1, 2)
        x, y = tr.transform(flat[:, 0], flat[:, 1])
        out = self[np.arange(len(self))]
        out.footprints = np.stack([x, y], axis=-1).reshape(-1, 4, 2)
        out.crs = crs
        return out


@dataclass(frozen=True)
class Event:
    """A named date that counts are read against (a summit, a visit)."""

    date: dt.date
    name: str


@dataclass(frozen=True)
class Site:
    """A watched place: AOI and zones as EPSG:4326 polygons, a timezone, named events, and
    optionally its track map (centrelines, EPSG:4326; e.g. OpenStreetMap ``railway=rail``)."""

    name: str
    title: str
    aoi: Polygon
    zones: Mapping[str, Polygon]
    timezone: str = "UTC"
    events: tuple[Event, ...] = ()
    notes: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict)
    tracks: MultiLineString | None = None


@dataclass(frozen=True)
class Scene:
    """One registered image: where it is, when it was taken, how fine it is."""

    id: int | None
    path: str
    sha256: str
    crs_wkt: str
    transform: tuple[float, ...]
    width: int
    height: int
    band_count: int
    dtype: str
    gsd_m: float
    footprint: Polygon  # EPSG:4326
    acquired: dt.datetime | None
    sensor: str | None = None
    datetime_source: str | None = None


@dataclass(frozen=True)
class Observation:
    """Counts of one site in one image, with the range the numbers honestly carry."""

    site: str
    scene_id: int | None
    acquired: dt.datetime
    counts: Mapping[str, int]  # per class, plus total/covered/containers
    containers_by_zone: Mapping[str, int]
    usable_fraction: float
    count_low: int
    count_high: int
    partial: bool  # True: the image saw only part of the AOI -> count is a lower bound
    sensor: str | None = None
    gsd_m: float | None = None

    @property
    def total(self) -> int:
        return int(self.counts.get("total", 0))
