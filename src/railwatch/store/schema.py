"""The store's versioned schema: a list of migrations applied in order.

``MIGRATIONS`` is a list of ``(version, name, sql)``. On opening, the store applies every
migration whose version is above the highest one recorded in the ``schema_version`` table,
each in its own transaction (a failing migration leaves the database at the version
before it), and records it there.

**Adding tables (other engineers):** APPEND a new tuple with the next version number
(never edit or reorder a migration that has shipped; databases in the field already ran
it). Keep your SQL in ``railwatch/store/`` so a PostgreSQL back-end can be added later;
use portable SQL (``INTEGER``, ``REAL``, ``TEXT``; timestamps as ISO-8601 UTC text,
``YYYY-MM-DDTHH:MM:SS.ffffffZ``; JSON as ``TEXT``).
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "core tables: sites, scenes, scene_sites, runs, detection_sets, detections, observations",
        """
        CREATE TABLE sites (
            name TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            geojson TEXT NOT NULL,
            added_at TEXT NOT NULL
        );
        CREATE TABLE scenes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,
            crs_wkt TEXT NOT NULL,
            transform TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            band_count INTEGER NOT NULL,
            dtype TEXT NOT NULL,
            gsd_m REAL NOT NULL,
            footprint_wkt TEXT NOT NULL,
            acquired TEXT,
            sensor TEXT,
            datetime_source TEXT,
            ingested_at TEXT NOT NULL
        );
        CREATE INDEX scenes_acquired ON scenes (acquired);
        CREATE TABLE scene_sites (
            scene_id INTEGER NOT NULL REFERENCES scenes (id) ON DELETE CASCADE,
            site TEXT NOT NULL,
            coverage REAL NOT NULL,
            PRIMARY KEY (scene_id, site)
        );
        CREATE INDEX scene_sites_site ON scene_sites (site);
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            command TEXT NOT NULL,
            params TEXT NOT NULL,
            status TEXT NOT NULL,
            summary TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE TABLE detection_sets (
            scene_id INTEGER PRIMARY KEY REFERENCES scenes (id) ON DELETE CASCADE,
            run_id INTEGER REFERENCES runs (id),
            meta TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE detections (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            scene_id INTEGER NOT NULL REFERENCES detection_sets (scene_id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            kind TEXT NOT NULL,
            class TEXT NOT NULL,
            score REAL NOT NULL,
            covered INTEGER NOT NULL,
            color TEXT NOT NULL,
            length_m REAL NOT NULL,
            footprint TEXT NOT NULL,
            extra TEXT NOT NULL
        );
        CREATE INDEX detections_scene ON detections (scene_id, idx);
        CREATE TABLE observations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            site TEXT NOT NULL,
            scene_id INTEGER REFERENCES scenes (id) ON DELETE CASCADE,
            acquired TEXT NOT NULL,
            counts TEXT NOT NULL,
            containers_by_zone TEXT NOT NULL,
            usable_fraction REAL NOT NULL,
            count_low INTEGER NOT NULL,
            count_high INTEGER NOT NULL,
            partial INTEGER NOT NULL,
            sensor TEXT,
            gsd_m REAL
        );
        CREATE UNIQUE INDEX observations_site_scene ON observations (site, scene_id);
        CREATE INDEX observations_site_acquired ON observations (site, acquired);
        """,
    ),
    (
        2,
        "changes: facility changes per site (issue #6)",
        """
        CREATE TABLE changes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            site TEXT NOT NULL,
            kind TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_absent TEXT NOT NULL,
            area_m2 REAL NOT NULL,
            zone TEXT,
            score REAL NOT NULL,
            crs_wkt TEXT NOT NULL,
            geometry_wkt TEXT NOT NULL,
            before_path TEXT NOT NULL,
            after_path TEXT NOT NULL,
            props TEXT NOT NULL,
            found_at TEXT NOT NULL
        );
        CREATE INDEX changes_site ON changes (site, first_seen);
        """,
    ),
    (
        3,
        "alerts: rule hits per site and observation (issue #5)",
        """
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            rule TEXT NOT NULL,
            kind TEXT NOT NULL,
            site TEXT NOT NULL,
            acquired TEXT NOT NULL,
            scene_id INTEGER,
            value REAL,
            message TEXT NOT NULL,
            raised_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX alerts_rule_site_acquired ON alerts (rule, site, acquired);
        """,
    ),
]
