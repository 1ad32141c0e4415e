"""Store: migrations, transactions, scenes, runs, detections, observations."""

from __future__ import annotations

import datetime as dt
import sqlite3

import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import box

from railwatch.errors import NotFoundError
from railwatch.sites import get_site
from railwatch.store import MIGRATIONS, Store, StoreError
from railwatch.types import Detections, Observation, Scene

UTC = dt.UTC


def scene(sha="a" * 64, acquired=dt.datetime(2023, 10, 5, 2, 30, tzinfo=UTC), **kw):
    base = dict(
        id=None, path="/data/x.tif", sha256=sha, crs_wkt="EPSG:32652",
        transform=(0.5, 0.0, 600000.0, 0.0, -0.5, 4700000.0), width=100, height=80,
        band_count=3, dtype="uint8", gsd_m=0.5,
        footprint=box(130.59, 42.41, 130.61, 42.43), acquired=acquired, sensor="SkySat",
        datetime_source="tag:ACQUISITION_DATETIME",
    )
    base.update(kw)
    return Scene(**base)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "t.sqlite") as s:
        yield s


def test_fresh_store_is_migrated_wal_fk(tmp_path):
    path = tmp_path / "sub" / "new.sqlite"
    with Store(path) as s:
        assert s.schema_version == MIGRATIONS[-1][0]
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with Store(path) as s:  # reopening applies nothing
        assert s.migrate() == []


def test_appended_migration_applies_once_and_failure_rolls_back(tmp_path):
    path = tmp_path / "m.sqlite"
    Store(path).close()
    extra = [*MIGRATIONS, (MIGRATIONS[-1][0] + 1, "extra", "CREATE TABLE extra_t (x TEXT);")]
    with Store(path, migrations=extra) as s:
        assert s.schema_version == extra[-1][0]
        s._conn.execute("INSERT INTO extra_t VALUES ('a')")
    broken = [*extra, (extra[-1][0] + 1, "broken",
                       "CREATE TABLE half (x TEXT); INSERT INTO nowhere VALUES (1);")]
    with pytest.raises(StoreError, match="migration .* failed"):
        Store(path, migrations=broken)
    with Store(path, migrations=extra) as s:
        assert s.schema_version == extra[-1][0]
        tables = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master")}
        assert "half" not in tables  # the failed migration left nothing
    with pytest.raises(StoreError, match="newer than this railwatch"):
        Store(path)  # knows fewer migrations than the database has


def test_not_a_database(tmp_path):
    bad = tmp_path / "junk.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="junk.sqlite"):
        Store(bad)


def test_scenes_roundtrip_order_and_filters(store):
    a = store.add_scene(scene("a" * 64, dt.datetime(2023, 10, 5, 2, tzinfo=UTC)),
                        {"tumangang": 1.0, "khasan": 0.25})
    b = store.add_scene(scene("b" * 64, dt.datetime(2023, 9, 14, 2, tzinfo=UTC)),
                        {"tumangang": 0.5})
    c = store.add_scene(scene("c" * 64, None), {"khasan": 1.0})
    got = store.get_scene(a)
    assert got.id == a and got.sha256 == "a" * 64
    assert got.acquired == dt.datetime(2023, 10, 5, 2, tzinfo=UTC)
    assert got.footprint.equals(box(130.59, 42.41, 130.61, 42.43))
    assert got.transform == (0.5, 0.0, 600000.0, 0.0, -0.5, 4700000.0)
    assert store.scene_by_hash("b" * 64).id == b
    assert store.scene_by_hash("z" * 64) is None
    assert [s.id for s in store.scenes()] == [b, a, c]
    assert [s.id for s in store.scenes("tumangang")] == [b, a]
    assert [s.id for s in store.scenes("khasan")] == [a, c]
    assert [s.id for s in store.scenes(start=dt.date(2023, 10, 1))] == [a]
    assert [s.id for s in store.scenes(end=dt.date(2023, 10, 5))] == [b, a]
    assert [s.id for s in store.scenes(end=dt.date(2023, 10, 4))] == [b]
    assert store.scene_coverage(a) == {"khasan": 0.25, "tumangang": 1.0}
    with pytest.raises(NotFoundError):
        store.get_scene(999)
    with pytest.raises(sqlite3.IntegrityError):
        store.add_scene(scene("a" * 64), {})


def test_transaction_rolls_back_everything(store):
    with pytest.raises(RuntimeError), store.transaction():
        sid = store.add_scene(scene("a" * 64), {"tumangang": 1.0})
        store.start_run("ingest", {"paths": ["x"]})
        assert store.get_scene(sid)
        raise RuntimeError("boom")
    assert store.scenes() == []
    assert store._conn.execute("SELECT COUNT(*) FROM scene_sites").fetchone()[0] == 0
    assert store._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    # nested: inner failure caught, outer commits
    with store.transaction():
        store.add_scene(scene("b" * 64), {})
        with pytest.raises(ValueError), store.transaction():
            store.add_scene(scene("c" * 64), {})
            raise ValueError
    assert [s.sha256[0] for s in store.scenes()] == ["b"]


def test_transaction_visible_to_other_connection_only_after_commit(tmp_path):
    path = tmp_path / "x.sqlite"
    with Store(path) as writer, Store(path) as reader, writer.transaction():
        writer.add_scene(scene(), {})
        assert reader.scenes() == []
    with Store(path) as reader:
        assert len(reader.scenes()) == 1


def test_runs(store):
    rid = store.start_run("ingest", {"paths": ["a.tif"], "site": None})
    assert store.get_run(rid)["status"] == "running"
    store.finish_run(rid, "ok", {"new": 1})
    run = store.get_run(rid)
    assert run["status"] == "ok" and run["summary"] == {"new": 1}
    assert run["params"]["paths"] == ["a.tif"] and run["finished_at"] is not None


def _dets_utm(n=3):
    fp = np.array([[[600000 + 20 * i, 4697000], [600017 + 20 * i, 4697000],
                    [600017 + 20 * i, 4697003], [600000 + 20 * i, 4697003]] for i in range(n)],
                  dtype=float)
    return Detections(
        footprints=fp, kind=["railcar"] * (n - 1) + ["container"],
        cls=["boxcar"] * (n - 1) + [""], score=np.linspace(0.5, 0.9, n),
        covered=[True] + [False] * (n - 1), color=[[10, 20, 30]] * n, length_m=[17.0] * n,
        crs=32652, extra={"train_id": np.arange(n)}, meta={"model": "m1", "gsd_m": 0.5},
    )


def test_detections_roundtrip_replace_and_pending(store):
    a = store.add_scene(scene("a" * 64), {"tumangang": 1.0})
    b = store.add_scene(scene("b" * 64, dt.datetime(2023, 10, 6, tzinfo=UTC)),
                        {"tumangang": 1.0})
    assert store.get_detections(a) is None
    assert [s.id for s in store.scenes_without_detections("tumangang")] == [a, b]
    det = _dets_utm()
    rid = store.start_run("analyze", {})
    store.put_detections(a, det, run_id=rid)
    got = store.get_detections(a)
    assert got.crs.to_epsg() == 4326 and len(got) == 3
    tr = Transformer.from_crs(32652, 4326, always_xy=True)
    lon, lat = tr.transform(600000.0, 4697000.0)
    assert got.footprints[0, 0] == pytest.approx([lon, lat], abs=1e-8)
    assert got.counts()["boxcar"] == 2 and got.counts()["containers"] == 1
    assert got.covered.tolist() == [True, False, False]
    assert got.color[1].tolist() == [10, 20, 30]
    assert got.score == pytest.approx(det.score)
    assert got.extra["train_id"].tolist() == [0, 1, 2]
    assert got.meta == {"model": "m1", "gsd_m": 0.5}
    assert [s.id for s in store.scenes_without_detections()] == [b]
    store.put_detections(a, det[:1])
    assert len(store.get_detections(a)) == 1  # replaced, not appended
    store.put_detections(b, Detections.empty())
    got_b = store.get_detections(b)
    assert got_b is not None and len(got_b) == 0
    assert store.scenes_without_detections() == []
    with pytest.raises(NotFoundError):
        store.put_detections(12345, det)


def _obs(scene_id, day, total, site="tumangang"):
    return Observation(
        site=site, scene_id=scene_id, acquired=dt.datetime(2023, 10, day, tzinfo=UTC),
        counts={"boxcar": total, "total": total}, containers_by_zone={"freight_handling": 2},
        usable_fraction=0.9, count_low=total - 2, count_high=total + 3, partial=False,
        sensor="SkySat", gsd_m=0.5,
    )


def test_observations_replace_and_order(store):
    a = store.add_scene(scene("a" * 64), {"tumangang": 1.0})
    b = store.add_scene(scene("b" * 64), {"tumangang": 1.0})
    store.put_observation(_obs(b, 9, 40))
    store.put_observation(_obs(a, 5, 73))
    store.put_observation(_obs(a, 5, 70))  # replaces
    store.put_observation(_obs(None, 1, 5))
    store.put_observation(_obs(None, 1, 6))  # replaces (same site + date, no scene)
    obs = store.observations("tumangang")
    assert [o.total for o in obs] == [6, 70, 40]
    assert obs[1].containers_by_zone == {"freight_handling": 2}
    assert obs[1].count_low == 68 and obs[1].partial is False and obs[1].gsd_m == 0.5
    assert store.observations("khasan") == []


def test_sites_table(store):
    site = get_site("tumangang")
    store.upsert_site(site)
    store.upsert_site(site)
    (back,) = store.stored_sites()
    assert back.name == "tumangang" and back.aoi.equals(site.aoi)
    assert back.events == site.events
