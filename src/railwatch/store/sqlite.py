"""SQLite implementation of the store (stdlib ``sqlite3``, WAL mode, foreign keys on).

Times are stored as ISO-8601 UTC text of fixed width (``iso_utc``), so text order is time
order. Geometry is stored as WKT (scene footprints, EPSG:4326) or as JSON lon/lat corner
lists (detection footprints). One ``with store.transaction():`` block wraps one
command's writes; nested blocks become savepoints.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from shapely import wkt

from railwatch.config import default_db_path
from railwatch.errors import RailwatchError
from railwatch.store.schema import MIGRATIONS
from railwatch.types import Detections, Observation, Scene, Site

_CORE_META = (int, float, str, bool, list, dict, type(None))


class StoreError(RailwatchError):
    """The database cannot be used (newer schema, failed migration, corrupt file)."""


def iso_utc(value: dt.datetime | dt.date) -> str:
    """Fixed-width ISO-8601 UTC text; naive datetimes are taken as UTC, dates as midnight."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> dt.datetime | None:
    """Inverse of ``iso_utc`` (any ISO-8601 text; result is timezone-aware UTC)."""
    if not text:
        return None
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _now() -> str:
    return iso_utc(dt.datetime.now(dt.UTC))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_jsonable, sort_keys=True)


def _hex(rgb: Sequence[int]) -> str:
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _rgb(text: str) -> tuple[int, int, int]:
    s = text.lstrip("#")
    return (int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16))


class Store:
    """The railwatch database. ``Store()`` opens (and migrates) the default SQLite file.

    Use as a context manager or call ``close()``. Write methods join the current
    ``transaction()`` if one is open, else run in their own.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        migrations: Sequence[tuple[int, str, str]] | None = None,
    ) -> None:
        self.path = str(path) if path is not None else str(default_db_path())
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"not a usable SQLite database ({exc})", self.path) from exc
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._depth = 0
        self.migrate(MIGRATIONS if migrations is None else migrations)

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        """The highest migration applied to this database (0 for an empty one)."""
        row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def migrate(self, migrations: Sequence[tuple[int, str, str]] = MIGRATIONS) -> list[int]:
        """Apply pending migrations in order, each atomically; returns the versions applied."""
        versions = [v for v, _, _ in migrations]
        if versions != sorted(set(versions)):
            raise StoreError("migrations must have unique, increasing versions", self.path)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        current = self.schema_version
        if versions and current > versions[-1]:
            raise StoreError(
                f"database schema version {current} is newer than this railwatch "
                f"(knows up to {versions[-1]}); upgrade railwatch",
                self.path,
            )
        applied = []
        for version, name, sql in migrations:
            if version <= self.schema_version:
                continue
            # The version row goes in first: a second process migrating at the same time
            # fails on the primary key and simply re-reads the version.
            script = (
                "BEGIN IMMEDIATE;\n"
                f"INSERT INTO schema_version (version, name, applied_at) VALUES "
                f"({int(version)}, '{name.replace(chr(39), chr(39) * 2)}', '{_now()}');\n"
                f"{sql}\n;COMMIT;"
            )
            try:
                self._conn.executescript(script)
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if self.schema_version >= version:
                    continue
                raise StoreError(f"migration {version} ({name}) failed: {exc}", self.path) from exc
            applied.append(version)
        return applied

    # -- transactions -------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """All writes inside commit together, or none do (rollback on any exception)."""
        savepoint = f"rw_sp{self._depth}"
        if self._depth == 0:
            self._conn.execute("BEGIN IMMEDIATE")
        else:
            self._conn.execute(f"SAVEPOINT {savepoint}")
        self._depth += 1
        try:
            yield self
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._conn.execute("ROLLBACK")
            else:
                self._conn.execute(f"ROLLBACK TO {savepoint}")
                self._conn.execute(f"RELEASE {savepoint}")
            raise
        self._depth -= 1
        if self._depth == 0:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute(f"RELEASE {savepoint}")

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    # -- sites --------------------------------------------------------------------------
    def upsert_site(self, site: Site) -> None:
        """Save (or replace) a user site."""
        from railwatch.sites.registry import site_to_geojson

        with self.transaction():
            self._conn.execute(
                "INSERT INTO sites (name, title, geojson, added_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET title = excluded.title, "
                "geojson = excluded.geojson, added_at = excluded.added_at",
                (site.name, site.title, json.dumps(site_to_geojson(site)), _now()),
            )

    def stored_sites(self) -> list[Site]:
        """User sites saved in this store, by name."""
        from railwatch.sites.registry import parse_site

        rows = self._conn.execute("SELECT name, geojson FROM sites ORDER BY name").fetchall()
        return [parse_site(json.loads(g), f"{self.path} (site {n})", n) for n, g in rows]

    # -- scenes -------------------------------------------------------------------------
    _SCENE_COLS = (
        "id, path, sha256, crs_wkt, transform, width, height, band_count, dtype, gsd_m, "
        "footprint_wkt, acquired, sensor, datetime_source"
    )

    @staticmethod
    def _scene(row: Sequence[Any]) -> Scene:
        return Scene(
            id=int(row[0]),
            path=row[1],
            sha256=row[2],
            crs_wkt=row[3],
            transform=tuple(json.loads(row[4])),
            width=int(row[5]),
            height=int(row[6]),
            band_count=int(row[7]),
            dtype=row[8],
            gsd_m=float(row[9]),
            footprint=wkt.loads(row[10]),
            acquired=parse_iso(row[11]),
            sensor=row[12],
            datetime_source=row[13],
        )

    def add_scene(self, scene: Scene, coverage: Mapping[str, float]) -> int:
        """Register a scene and the fraction of each site's AOI it covers; returns its id."""
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO scenes (path, sha256, crs_wkt, transform, width, height, "
                "band_count, dtype, gsd_m, footprint_wkt, acquired, sensor, datetime_source, "
                "ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    str(scene.path), scene.sha256, scene.crs_wkt,
                    json.dumps([float(v) for v in scene.transform]), int(scene.width),
                    int(scene.height), int(scene.band_count), str(scene.dtype),
                    float(scene.gsd_m), scene.footprint.wkt,
                    iso_utc(scene.acquired) if scene.acquired else None, scene.sensor,
                    scene.datetime_source, _now(),
                ),
            )
            scene_id = int(cur.lastrowid or 0)
            self._conn.executemany(
                "INSERT INTO scene_sites (scene_id, site, coverage) VALUES (?, ?, ?)",
                [(scene_id, name, float(frac)) for name, frac in coverage.items()],
            )
        return scene_id

    def scene_by_hash(self, sha256: str) -> Scene | None:
        """The scene with this content hash, if ingested."""
        row = self._conn.execute(
            f"SELECT {self._SCENE_COLS} FROM scenes WHERE sha256 = ?", (sha256,)
        ).fetchone()
        return self._scene(row) if row else None

    def get_scene(self, scene_id: int) -> Scene:
        """The scene with this id; ``NotFoundError`` if there is none."""
        from railwatch.errors import NotFoundError

        row = self._conn.execute(
            f"SELECT {self._SCENE_COLS} FROM scenes WHERE id = ?", (int(scene_id),)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no scene with id {scene_id} in the store", self.path)
        return self._scene(row)

    def scenes(
        self,
        site: str | None = None,
        start: dt.date | dt.datetime | None = None,
        end: dt.date | dt.datetime | None = None,
    ) -> list[Scene]:
        """Scenes (of ``site``, within ``start``..``end`` inclusive) by acquisition time.

        A date ``end`` includes that whole day. Scenes without a datetime come last and
        are left out when ``start`` or ``end`` is given.
        """
        sql = f"SELECT {self._SCENE_COLS} FROM scenes"
        where, args = [], []
        if site is not None:
            where.append("id IN (SELECT scene_id FROM scene_sites WHERE site = ?)")
            args.append(site)
        if start is not None:
            where.append("acquired >= ?")
            args.append(iso_utc(start))
        if end is not None:
            if not isinstance(end, dt.datetime):
                end = dt.datetime(end.year, end.month, end.day) + dt.timedelta(
                    days=1, microseconds=-1
                )
            where.append("acquired <= ?")
            args.append(iso_utc(end))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY acquired IS NULL, acquired, id"
        return [self._scene(r) for r in self._conn.execute(sql, args).fetchall()]

    def scene_coverage(self, scene_id: int) -> dict[str, float]:
        """Site name -> fraction of that site's AOI the scene covers."""
        rows = self._conn.execute(
            "SELECT site, coverage FROM scene_sites WHERE scene_id = ? ORDER BY site",
            (int(scene_id),),
        ).fetchall()
        return {s: float(c) for s, c in rows}

    # -- runs ---------------------------------------------------------------------------
    def start_run(self, command: str, params: Mapping[str, Any]) -> int:
        """Record the start of a command run; returns the run id."""
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO runs (command, params, status, started_at) VALUES (?, ?, ?, ?)",
                (command, _dumps(dict(params)), "running", _now()),
            )
        return int(cur.lastrowid or 0)

    def finish_run(
        self, run_id: int, status: str, summary: Mapping[str, Any] | None = None
    ) -> None:
        """Record how a run ended (``ok``, ``error``, ...) with an optional summary."""
        with self.transaction():
            self._conn.execute(
                "UPDATE runs SET status = ?, summary = ?, finished_at = ? WHERE id = ?",
                (status, _dumps(dict(summary)) if summary is not None else None, _now(),
                 int(run_id)),
            )

    def get_run(self, run_id: int) -> dict[str, Any]:
        """One run as a dict (command, params, status, summary, started_at, finished_at)."""
        row = self._conn.execute(
            "SELECT id, command, params, status, summary, started_at, finished_at FROM runs "
            "WHERE id = ?", (int(run_id),)
        ).fetchone()
        if row is None:
            from railwatch.errors import NotFoundError

            raise NotFoundError(f"no run with id {run_id}", self.path)
        return {
            "id": row[0], "command": row[1], "params": json.loads(row[2]), "status": row[3],
            "summary": json.loads(row[4]) if row[4] else None,
            "started_at": parse_iso(row[5]), "finished_at": parse_iso(row[6]),
        }

    # -- detections ---------------------------------------------------------------------
    def put_detections(self, scene_id: int, det: Detections, run_id: int | None = None) -> None:
        """Store the detections of a scene (EPSG:4326), replacing any earlier ones."""
        self.get_scene(scene_id)  # NotFoundError for an unknown scene
        d = det.to_crs(4326)
        meta = {k: v for k, v in det.meta.items() if isinstance(v, _CORE_META)}
        rows = []
        for i in range(len(d)):
            extra = {k: _jsonable(col[i]) for k, col in d.extra.items()}
            rows.append((
                int(scene_id), i, str(d.kind[i]), str(d.cls[i] or ""), float(d.score[i]),
                int(bool(d.covered[i])), _hex(d.color[i]), float(d.length_m[i]),
                json.dumps(np.round(d.footprints[i], 9).tolist()), _dumps(extra),
            ))
        with self.transaction():
            self._conn.execute("DELETE FROM detection_sets WHERE scene_id = ?", (int(scene_id),))
            self._conn.execute(
                "INSERT INTO detection_sets (scene_id, run_id, meta, created_at) "
                "VALUES (?, ?, ?, ?)",
                (int(scene_id), run_id, _dumps(meta), _now()),
            )
            self._conn.executemany(
                "INSERT INTO detections (scene_id, idx, kind, class, score, covered, color, "
                "length_m, footprint, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def get_detections(self, scene_id: int) -> Detections | None:
        """The stored detections of a scene (EPSG:4326), or None if it was never detected."""
        head = self._conn.execute(
            "SELECT meta FROM detection_sets WHERE scene_id = ?", (int(scene_id),)
        ).fetchone()
        if head is None:
            return None
        rows = self._conn.execute(
            "SELECT kind, class, score, covered, color, length_m, footprint, extra "
            "FROM detections WHERE scene_id = ? ORDER BY idx",
            (int(scene_id),),
        ).fetchall()
        meta = json.loads(head[0])
        if not rows:
            return Detections.empty(4326, **meta)
        extras = [json.loads(r[7]) for r in rows]
        keys: list[str] = []
        for e in extras:
            keys += [k for k in e if k not in keys]
        extra_cols = {}
        for k in keys:
            values = [e.get(k) for e in extras]
            arr = np.asarray(values, dtype=object)
            if all(v is not None and not isinstance(v, list | dict) for v in values):
                arr = np.asarray(values)
            extra_cols[k] = arr
        return Detections(
            footprints=np.asarray([json.loads(r[6]) for r in rows], dtype=float),
            kind=[r[0] for r in rows],
            cls=[r[1] for r in rows],
            score=[r[2] for r in rows],
            covered=[bool(r[3]) for r in rows],
            color=np.asarray([_rgb(r[4]) for r in rows], dtype=np.uint8),
            length_m=[r[5] for r in rows],
            crs=4326,
            extra=extra_cols,
            meta=meta,
        )

    def scenes_without_detections(self, site: str | None = None) -> list[Scene]:
        """Scenes (of ``site``) that have no stored detections yet, by acquisition time."""
        done = {
            r[0] for r in self._conn.execute("SELECT scene_id FROM detection_sets").fetchall()
        }
        return [s for s in self.scenes(site) if s.id not in done]

    # -- observations -------------------------------------------------------------------
    def put_observation(self, obs: Observation) -> None:
        """Store the observation of one site in one scene (replacing an earlier one)."""
        with self.transaction():
            if obs.scene_id is None:
                self._conn.execute(
                    "DELETE FROM observations WHERE site = ? AND scene_id IS NULL "
                    "AND acquired = ?", (obs.site, iso_utc(obs.acquired)),
                )
            else:
                self._conn.execute(
                    "DELETE FROM observations WHERE site = ? AND scene_id = ?",
                    (obs.site, int(obs.scene_id)),
                )
            self._conn.execute(
                "INSERT INTO observations (site, scene_id, acquired, counts, "
                "containers_by_zone, usable_fraction, count_low, count_high, partial, sensor, "
                "gsd_m) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    obs.site, obs.scene_id, iso_utc(obs.acquired),
                    _dumps({k: int(v) for k, v in obs.counts.items()}),
                    _dumps({k: int(v) for k, v in obs.containers_by_zone.items()}),
                    float(obs.usable_fraction), int(obs.count_low), int(obs.count_high),
                    int(bool(obs.partial)), obs.sensor,
                    float(obs.gsd_m) if obs.gsd_m is not None else None,
                ),
            )

    def observations(self, site: str) -> list[Observation]:
        """All observations of ``site`` in date order."""
        rows = self._conn.execute(
            "SELECT site, scene_id, acquired, counts, containers_by_zone, usable_fraction, "
            "count_low, count_high, partial, sensor, gsd_m FROM observations WHERE site = ? "
            "ORDER BY acquired, scene_id",
            (site,),
        ).fetchall()
        out = []
        for r in rows:
            acquired = parse_iso(r[2])
            assert acquired is not None
            out.append(Observation(
                site=r[0], scene_id=r[1], acquired=acquired, counts=json.loads(r[3]),
                containers_by_zone=json.loads(r[4]), usable_fraction=float(r[5]),
                count_low=int(r[6]), count_high=int(r[7]), partial=bool(r[8]), sensor=r[9],
                gsd_m=r[10],
            ))
        return out

    # -- alerts (issue #5) --------------------------------------------------------------------
    _ALERT_KEYS = ("rule", "kind", "site", "acquired", "scene_id", "value", "message", "raised_at")

    def add_alerts(self, rows: Sequence[Mapping[str, Any]]) -> list[bool]:
        """Record alert hits not yet recorded (one per rule, site and time); for each row,
        whether it was new. Keys: rule, kind, site, acquired, scene_id, value, message."""
        now = _now()
        new = []
        with self.transaction():
            for a in rows:
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO alerts (rule, kind, site, acquired, scene_id, value, "
                    "message, raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (a["rule"], a["kind"], a["site"], iso_utc(a["acquired"]), a.get("scene_id"),
                     a.get("value"), a["message"], now),
                )
                new.append(cur.rowcount > 0)
        return new

    def alerts(self, site: str | None = None) -> list[dict[str, Any]]:
        """Alerts recorded in the store (of ``site``), oldest first."""
        sql = f"SELECT {', '.join(self._ALERT_KEYS)} FROM alerts"
        args: tuple[Any, ...] = ()
        if site is not None:
            sql += " WHERE site = ?"
            args = (site,)
        rows = self._conn.execute(sql + " ORDER BY acquired, rule", args).fetchall()
        return [dict(zip(self._ALERT_KEYS, r, strict=True)) for r in rows]

    # -- facility changes (issue #6) ----------------------------------------------------------
    _CHANGE_KEYS = ("kind", "first_seen", "last_absent", "area_m2", "zone", "score", "crs_wkt",
                    "geometry_wkt", "before_path", "after_path", "props")

    def replace_changes(self, site: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Replace the stored facility changes of ``site`` (all or nothing). Each row has
        the keys of ``_CHANGE_KEYS``; dates as datetimes, ``props`` a JSON-able dict."""
        found = _now()
        with self.transaction():
            self._conn.execute("DELETE FROM changes WHERE site = ?", (site,))
            self._conn.executemany(
                f"INSERT INTO changes (site, {', '.join(self._CHANGE_KEYS)}, found_at) "
                f"VALUES ({', '.join('?' * (len(self._CHANGE_KEYS) + 2))})",
                [
                    (site, r["kind"], iso_utc(r["first_seen"]), iso_utc(r["last_absent"]),
                     float(r["area_m2"]), r["zone"], float(r["score"]), r["crs_wkt"],
                     r["geometry_wkt"], r["before_path"], r["after_path"], _dumps(r["props"]),
                     found)
                    for r in rows
                ],
            )

    def changes(self, site: str) -> list[dict[str, Any]]:
        """Stored facility changes of ``site`` by ``first_seen``, as dicts (with ``id``)."""
        rows = self._conn.execute(
            f"SELECT id, {', '.join(self._CHANGE_KEYS)} FROM changes WHERE site = ? "
            "ORDER BY first_seen, id",
            (site,),
        ).fetchall()
        out = []
        for r in rows:
            d = dict(zip(("id", *self._CHANGE_KEYS), r, strict=True))
            d["first_seen"] = parse_iso(d["first_seen"])
            d["last_absent"] = parse_iso(d["last_absent"])
            d["props"] = json.loads(d["props"])
            out.append(d)
        return out
