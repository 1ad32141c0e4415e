"""Facility changes and the store: run over a site's scenes, save and load changes.

The ``changes`` table comes from migration 2 in :mod:`railwatch.store.schema`. The few
statements live here, beside the record they store; they are plain portable SQL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from pyproj import CRS
from shapely import wkt

from railwatch.analytics.changes.find import Change, ChangeSet, ImageInput, find_changes
from railwatch.errors import InputError
from railwatch.store import Store, iso_utc, parse_iso
from railwatch.types import Site


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
    **options: Any,
) -> ChangeSet:
    """Facility changes of ``site`` over the scenes in ``store`` (``start``..``end``).

    Each scene's stored detections (if any) mask its railcars and containers. With
    ``save`` the site's stored changes are replaced by the new ones (one transaction).
    ``options`` go to :func:`find_changes` (``persist``, ``gsd_m``, ``threshold``, ...).
    """
    site = _site(site, store)
    scenes = [s for s in store.scenes(site.name, start, end) if s.acquired is not None]
    if len(scenes) < 2:
        span = ""
        if start or end:
            span = f" between {start or 'the start'} and {end or 'the end'}"
        raise InputError(
            f"site {site.name!r}: fewer than two dated images in the store{span} "
            f"({len(scenes)} found); ingest more images first"
        )
    images: list[ImageInput] = [
        (s.path, s.acquired, store.get_detections(s.id)) for s in scenes  # type: ignore[misc]
    ]
    result = find_changes(images, site, on_image=on_image, **options)
    if save:
        put_changes(store, result)
    return result


def put_changes(store: Store, changes: ChangeSet) -> None:
    """Replace the stored changes of ``changes.site`` with these (all or nothing)."""
    rows = []
    found = iso_utc(dt.datetime.now(dt.UTC))
    for c in changes.changes:
        props = {"seen_in": c.seen_in, "cues": c.cues, "local_id": c.id}
        rows.append((
            changes.site, c.kind, iso_utc(c.first_seen), iso_utc(c.last_absent),
            float(c.area_m2), c.zone, float(c.score), c.crs.to_wkt(), c.geometry.wkt,
            c.before, c.after, json.dumps(props), found,
        ))
    conn = store._conn  # the store's own connection, inside its transaction
    with store.transaction():
        conn.execute("DELETE FROM changes WHERE site = ?", (changes.site,))
        conn.executemany(
            "INSERT INTO changes (site, kind, first_seen, last_absent, area_m2, zone, score, "
            "crs_wkt, geometry_wkt, before_path, after_path, props, found_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def get_changes(store: Store, site: Site | str) -> list[Change]:
    """The stored changes of ``site``, by ``first_seen``."""
    name = site.name if isinstance(site, Site) else site.strip().lower()
    rows = store._conn.execute(
        "SELECT id, kind, first_seen, last_absent, area_m2, zone, score, crs_wkt, "
        "geometry_wkt, before_path, after_path, props FROM changes WHERE site = ? "
        "ORDER BY first_seen, id",
        (name,),
    ).fetchall()
    out = []
    for r in rows:
        props = json.loads(r[11])
        out.append(
            Change(
                geometry=wkt.loads(r[8]),
                crs=CRS.from_wkt(r[7]),
                kind=r[1],
                first_seen=parse_iso(r[2]),  # type: ignore[arg-type]
                last_absent=parse_iso(r[3]),  # type: ignore[arg-type]
                area_m2=float(r[4]),
                zone=r[5],
                score=float(r[6]),
                before=r[9],
                after=r[10],
                seen_in=int(props.get("seen_in", 0)),
                id=int(r[0]),
                cues=dict(props.get("cues", {})),
            )
        )
    return out
