"""Facility changes and the store: run over a site's scenes, save and load changes.

The ``changes`` table comes from migration 2 in :mod:`railwatch.store.schema`. Its SQL lives in
:mod:`railwatch.store` (``replace_changes``, ``changes``); this module converts rows to
``Change`` records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from pyproj import CRS
from shapely import wkt

from railwatch.analytics.changes.find import Change, ChangeSet, ImageInput, find_changes
from railwatch.errors import InputError
from railwatch.store import Store
from railwatch.types import Scene, Site


def spaced(scenes: Sequence[Scene], every_days: int) -> list[Scene]:
    """The dated ``scenes`` (in time order) at least ``every_days`` apart, the first kept;
    all of them when ``every_days`` is 0. A long archive compared image by image takes
    minutes per site; fewer images are faster, at the cost of wider date brackets."""
    out: list[Scene] = []
    for s in scenes:
        if out and every_days and (s.acquired - out[-1].acquired).days < every_days:
            continue
        out.append(s)
    return out


def change_scenes(store: Store, site: str, start: dt.date | dt.datetime | None = None,
                  end: dt.date | dt.datetime | None = None, every_days: int = 0,
                  ) -> list[Scene]:
    """The dated scenes of ``site`` that :func:`site_changes` compares."""
    return spaced([s for s in store.scenes(site, start, end) if s.acquired is not None],
                  every_days)


def _site(site: Site | str, store: Store) -> Site:
    if isinstance(site, Site):
        return site
    from railwatch.sites import get_site

    return get_site(site, store)


def site_changes(
    store: Store,
    site: Site | str,
    start: dt.date | dt.datetime | None = None,
    end: dt.date | dt.datetime | None = None,
    *,
    save: bool = True,
    on_image: Callable[[str], None] | None = None,
    every_days: int = 0,
    **options: Any,
) -> ChangeSet:
    """Facility changes of ``site`` over the scenes in ``store`` (``start``..``end``;
    with ``every_days``, one at least that many days after the last, see ``spaced``).

    Each scene's stored detections (if any) mask its railcars and containers. With
    ``save`` the site's stored changes are replaced by the new ones (one transaction).
    ``options`` go to :func:`find_changes` (``persist``, ``gsd_m``, ``threshold``, ...).
    """
    site = _site(site, store)
    scenes = change_scenes(store, site.name, start, end, every_days)
    if len(scenes) < 2:
        span = ""
        if start or end:
            span = f" between {start or 'the start'} and {end or 'the end'}"
        raise InputError(
            f"site {site.name!r}: fewer than two dated images in the store{span} "
            f"({len(scenes)} found); ingest more images first"
        )
    images: list[ImageInput] = [
        (s.path, s.acquired, store.get_detections(s.id))  # type: ignore[misc]
        for s in scenes
    ]
    result = find_changes(images, site, on_image=on_image, **options)
    if save:
        put_changes(store, result)
    return result


def put_changes(store: Store, changes: ChangeSet) -> None:
    """Replace the stored changes of ``changes.site`` with these (all or nothing)."""
    store.replace_changes(
        changes.site,
        [
            {
                "kind": c.kind,
                "first_seen": c.first_seen,
                "last_absent": c.last_absent,
                "area_m2": c.area_m2,
                "zone": c.zone,
                "score": c.score,
                "crs_wkt": c.crs.to_wkt(),
                "geometry_wkt": c.geometry.wkt,
                "before_path": c.before,
                "after_path": c.after,
                "props": {"seen_in": c.seen_in, "cues": c.cues, "local_id": c.id},
            }
            for c in changes.changes
        ],
    )


def get_changes(store: Store, site: Site | str) -> list[Change]:
    """The stored changes of ``site``, by ``first_seen``."""
    name = site.name if isinstance(site, Site) else site.strip().lower()
    return [
        Change(
            geometry=wkt.loads(r["geometry_wkt"]),
            crs=CRS.from_wkt(r["crs_wkt"]),
            kind=r["kind"],
            first_seen=r["first_seen"],
            last_absent=r["last_absent"],
            area_m2=float(r["area_m2"]),
            zone=r["zone"],
            score=float(r["score"]),
            before=r["before_path"],
            after=r["after_path"],
            seen_in=int(r["props"].get("seen_in", 0)),
            id=int(r["id"]),
            cues=dict(r["props"].get("cues", {})),
        )
        for r in store.changes(name)
    ]
