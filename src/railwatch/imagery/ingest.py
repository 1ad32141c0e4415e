"""Register images in the store: metadata, content hash, and which sites they cover.

One call is one transaction: if any file fails, ``ingest`` raises ``InputError`` naming
that file and nothing at all is written (no scenes, no run record). Files already in the
store (same SHA-256) are reported as ``already`` and left alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from railwatch.errors import InputError
from railwatch.imagery.metadata import parse_datetime, read_scene_metadata, scene_notes
from railwatch.sites import get_site, list_sites, to_local
from railwatch.store import Store
from railwatch.types import Scene, Site

#: File suffixes picked up when a folder is given.
RASTER_SUFFIXES = (".tif", ".tiff")
#: Coverage below this fraction of the AOI counts as "does not intersect".
MIN_COVERAGE = 1e-6

ProgressCallback = Callable[[int, int, Path], None]


@dataclass
class IngestRow:
    """What happened to one file."""

    path: Path
    status: str  # "new" or "already"
    scene: Scene
    coverage: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class IngestResult:
    """All files of one ingest call, in the order processed."""

    rows: list[IngestRow] = field(default_factory=list)
    run_id: int | None = None

    @property
    def new(self) -> list[IngestRow]:
        return [r for r in self.rows if r.status == "new"]

    @property
    def already(self) -> list[IngestRow]:
        return [r for r in self.rows if r.status == "already"]

    @property
    def scenes(self) -> list[Scene]:
        """The stored scenes of every file of this call (new and already ingested)."""
        return [r.scene for r in self.rows]


def collect_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files given plus ``*.tif``/``*.tiff`` found recursively in folders (sorted, unique)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError("no such file or folder", p)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES
            )
            if not found:
                raise InputError("folder holds no .tif/.tiff files", p)
            out += found
        else:
            out.append(p)
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def site_coverage(footprint: object, sites: Sequence[Site]) -> dict[str, float]:
    """Site name -> fraction of its AOI inside ``footprint`` (lon/lat), in the local CRS."""
    out = {}
    for site in sites:
        aoi = to_local(site.aoi, site)
        inter = aoi.intersection(to_local(footprint, site))
        frac = float(inter.area / aoi.area) if aoi.area else 0.0
        if frac > MIN_COVERAGE:
            out[site.name] = min(1.0, frac)
    return out


def ingest(
    paths: Iterable[str | Path],
    store: Store,
    site: str | None = None,
    datetime: dt.datetime | str | None = None,
    progress: ProgressCallback | None = None,
) -> IngestResult:
    """Register GeoTIFFs (files or folders) in ``store``; all or nothing.

    ``site`` forces the link to that one site (the image must still intersect it).
    ``datetime`` is used for files whose tags and sidecars carry no acquisition time.
    ``progress(done, total, path)`` is called after each file.
    """
    files = collect_paths(paths)
    fallback = None
    if datetime is not None:
        fallback = datetime if isinstance(datetime, dt.datetime) else parse_datetime(
            datetime, "--datetime"
        )
    sites = [get_site(site, store)] if site else list_sites(store)
    result = IngestResult()
    with store.transaction():
        run_id = store.start_run(
            "ingest",
            {"paths": [str(p) for p in paths], "site": site,
             "datetime": fallback.isoformat() if fallback else None},
        )
        batch: dict[str, int] = {}
        for n, path in enumerate(files, 1):
            scene = read_scene_metadata(path, fallback)
            existing = store.scene_by_hash(scene.sha256)
            if existing is not None or scene.sha256 in batch:
                sid = existing.id if existing is not None else batch[scene.sha256]
                assert sid is not None
                old = store.get_scene(sid)
                result.rows.append(IngestRow(path, "already", old, store.scene_coverage(sid),
                                             [f"already ingested as scene {sid}"]))
            else:
                if scene.acquired is None:
                    raise InputError(
                        "no acquisition datetime (no ACQUISITION_DATETIME/TIFFTAG_DATETIME tag,"
                        " no Planet/Maxar sidecar); pass --datetime ISO",
                        path,
                    )
                coverage = site_coverage(scene.footprint, sites)
                if not coverage:
                    if site:
                        raise InputError(f"image does not intersect site {site!r}", path)
                    known = ", ".join(s.name for s in sites)
                    raise InputError(
                        f"image intersects no known site ({known}); add a site or check the CRS",
                        path,
                    )
                sid = store.add_scene(scene, coverage)
                batch[scene.sha256] = sid
                result.rows.append(
                    IngestRow(path, "new", store.get_scene(sid), coverage, scene_notes(scene))
                )
            if progress is not None:
                progress(n, len(files), path)
        store.finish_run(run_id, "ok", {"new": len(result.new),
                                        "already": len(result.already)})
        result.run_id = run_id
    return result
