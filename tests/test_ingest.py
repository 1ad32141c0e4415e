"""Ingest: metadata against known values (UTM and EPSG:4326), sidecars, re-ingest, reads."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Geod, Transformer
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from shapely.geometry import box
from typer.testing import CliRunner

from railwatch.cli.main import app
from railwatch.imagery import (
    band_scaling,
    ingest,
    iter_windows,
    read_scene_metadata,
    read_window,
)
from railwatch.sites import get_site
from railwatch.store import Store
from rasters import TUMANGANG_CENTER, make_geotiff, utm_outline

UTC = dt.UTC
GEOD = Geod(ellps="WGS84")
WHEN = dt.datetime(2023, 10, 5, 2, 30, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "store.sqlite") as s:
        yield s


def geodesic_fraction(aoi, footprint) -> float:
    """Independent check: geodesic (ellipsoidal) areas in lon/lat, no projection."""
    inter = aoi.intersection(footprint)
    return abs(GEOD.geometry_area_perimeter(inter)[0]) / abs(GEOD.geometry_area_perimeter(aoi)[0])


def test_utm_raster_known_values(tmp_path, store):
    path = make_geotiff(tmp_path / "utm.tif", crs="EPSG:32652", res=5.0)
    result = ingest([path], store)
    (row,) = result.rows
    s = row.scene
    assert row.status == "new" and s.id is not None
    # footprint: the raster corners, reprojected independently with pyproj
    tr = Transformer.from_crs(4326, 32652, always_xy=True)
    cx, cy = tr.transform(*TUMANGANG_CENTER)
    corners_utm = [(cx - 640, cy + 640), (cx + 640, cy + 640), (cx + 640, cy - 640),
                   (cx - 640, cy - 640)]
    back = Transformer.from_crs(32652, 4326, always_xy=True)
    corners = [back.transform(x, y) for x, y in corners_utm]
    for lon, lat in corners:
        d = min(np.hypot(lon - x, lat - y) for x, y in s.footprint.exterior.coords)
        assert d < 1e-9
    assert s.footprint.centroid.x == pytest.approx(TUMANGANG_CENTER[0], abs=1e-6)
    assert s.footprint.centroid.y == pytest.approx(TUMANGANG_CENTER[1], abs=1e-6)
    # 5 m grid pixels: ground size = grid size / UTM scale factor (~0.9998 here)
    assert s.gsd_m == pytest.approx(5.0, rel=1e-3)
    assert (s.width, s.height, s.band_count, s.dtype) == (256, 256, 3, "uint8")
    assert s.acquired == WHEN and s.datetime_source == "tag:ACQUISITION_DATETIME"
    assert s.sensor == "SkySat"
    assert "32652" in s.crs_wkt or "UTM zone 52N" in s.crs_wkt
    assert s.transform[0] == 5.0 and s.transform[4] == -5.0
    # the 1.28 km square covers the whole 1.2 x 0.8 km AOI, not Khasan (3.5 km east)
    assert row.coverage == {"tumangang": pytest.approx(1.0)}
    assert store.scene_coverage(s.id) == row.coverage
    assert [x.id for x in store.scenes("tumangang")] == [s.id]
    assert store.get_run(result.run_id)["status"] == "ok"


def test_partial_coverage_utm(tmp_path, store):
    tum = get_site("tumangang")
    minx, miny, maxx, maxy = utm_outline(tum.aoi)
    assert maxx - minx == pytest.approx(1200, abs=1) and maxy - miny == pytest.approx(800, abs=1)
    # a raster whose west edge runs through the AOI's middle: covers the east half
    mid = (minx + maxx) / 2
    center_utm = (mid + 400, (miny + maxy) / 2)
    lonlat = Transformer.from_crs(32652, 4326, always_xy=True).transform(*center_utm)
    path = make_geotiff(tmp_path / "half.tif", center=lonlat, res=5.0, width=160, height=200)
    (row,) = ingest([path], store).rows
    assert row.coverage["tumangang"] == pytest.approx(0.5, abs=2e-3)
    assert row.coverage["tumangang"] == pytest.approx(
        geodesic_fraction(tum.aoi, row.scene.footprint), abs=2e-3
    )


def test_geographic_raster_known_values(tmp_path, store):
    tum = get_site("tumangang")
    # 4326 raster: 0.0001 deg pixels; its east edge at the AOI centre's longitude
    lon0, lat0 = tum.aoi.centroid.x, tum.aoi.centroid.y
    res = 1e-4
    path = make_geotiff(tmp_path / "geo.tif", crs="EPSG:4326", res=res, width=200, height=200,
                        center=(lon0 - 100 * res, lat0))
    (row,) = ingest([path], store).rows
    s = row.scene
    assert s.footprint.bounds == pytest.approx((lon0 - 200 * res, lat0 - 100 * res, lon0,
                                                lat0 + 100 * res), abs=1e-9)
    # pixel ground size by geodesic distance: 1e-4 deg lon and lat at 42.42 N
    _, _, dx = GEOD.inv(lon0 - 100 * res, lat0, lon0 - 99 * res, lat0)
    _, _, dy = GEOD.inv(lon0 - 100 * res, lat0, lon0 - 100 * res, lat0 - res)
    assert dx == pytest.approx(8.23, abs=0.01) and dy == pytest.approx(11.11, abs=0.01)
    assert s.gsd_m == pytest.approx((dx + dy) / 2, rel=1e-3)
    assert row.coverage["tumangang"] == pytest.approx(0.5, abs=0.01)
    assert row.coverage["tumangang"] == pytest.approx(
        geodesic_fraction(tum.aoi, s.footprint), abs=2e-3
    )
    assert s.acquired == WHEN


def test_raster_over_both_sites(tmp_path, store):
    path = make_geotiff(tmp_path / "both.tif", res=20.0, width=400, height=200,
                        center=(130.624, 42.426))
    (row,) = ingest([path], store).rows
    assert row.coverage == {"tumangang": pytest.approx(1.0), "khasan": pytest.approx(1.0)}
    # --site links it to that site only
    path2 = make_geotiff(tmp_path / "both2.tif", res=20.0, width=400, height=200,
                         center=(130.624, 42.426), seed=3)
    (row2,) = ingest([path2], store, site="khasan").rows
    assert row2.coverage == {"khasan": pytest.approx(1.0)}


def test_datetime_sources_and_priority(tmp_path, store):
    only_tiff = make_geotiff(tmp_path / "a" / "x.tif",
                             tags={"TIFFTAG_DATETIME": "2022:11:04 03:15:00"})
    s = read_scene_metadata(only_tiff)
    assert s.acquired == dt.datetime(2022, 11, 4, 3, 15, tzinfo=UTC)
    assert s.datetime_source == "tag:TIFFTAG_DATETIME" and s.sensor is None

    planet = make_geotiff(tmp_path / "p" / "20221129_021500_ssc4_u0001_visual.tif", tags={})
    (tmp_path / "p" / "20221129_021500_ssc4_u0001_metadata.json").write_text(json.dumps(
        {"id": "20221129_021500_ssc4_u0001",
         "properties": {"acquired": "2022-11-29T02:15:00.123456789Z", "instrument": "SkySat"}}
    ))
    s = read_scene_metadata(planet)
    assert s.acquired == dt.datetime(2022, 11, 29, 2, 15, 0, 123456, tzinfo=UTC)
    assert s.sensor == "SkySat"
    assert s.datetime_source == "sidecar:20221129_021500_ssc4_u0001_metadata.json"

    maxar = make_geotiff(tmp_path / "m" / "22NOV30020000-P2AS.tif", tags={})
    (tmp_path / "m" / "22NOV30020000-P2AS.XML").write_text(
        "<isd><IMD><IMAGE><SATID>WV03</SATID>"
        "<FIRSTLINETIME>2022-11-30T02:00:01.500000Z</FIRSTLINETIME></IMAGE></IMD></isd>"
    )
    s = read_scene_metadata(maxar)
    assert s.acquired == dt.datetime(2022, 11, 30, 2, 0, 1, 500000, tzinfo=UTC)
    assert s.sensor == "WorldView-3"

    imd = make_geotiff(tmp_path / "i" / "scene.tif", tags={})
    (tmp_path / "i" / "scene.IMD").write_text(
        'version = "28.4";\nBEGIN_GROUP = IMAGE_1\n\tsatId = "WV02";\n'
        "\tearliestAcqTime = 2024-06-17T02:41:07.000000Z;\nEND_GROUP = IMAGE_1\n"
    )
    s = read_scene_metadata(imd)
    assert s.acquired == dt.datetime(2024, 6, 17, 2, 41, 7, tzinfo=UTC)
    assert s.sensor == "WorldView-2"

    # tag beats sidecar; sidecar beats TIFFTAG_DATETIME
    tagged = make_geotiff(tmp_path / "i" / "scene2.tif")
    (tmp_path / "i" / "scene2.json").write_text(json.dumps({"properties": {
        "acquired": "2020-01-01T00:00:00Z"}}))
    assert read_scene_metadata(tagged).acquired == WHEN
    both = make_geotiff(tmp_path / "i" / "scene3.tif",
                        tags={"TIFFTAG_DATETIME": "2019:01:01 00:00:00"})
    (tmp_path / "i" / "scene3.json").write_text(json.dumps({"properties": {
        "acquired": "2020-01-01T00:00:00Z"}}))
    assert read_scene_metadata(both).acquired == dt.datetime(2020, 1, 1, tzinfo=UTC)

    bare = make_geotiff(tmp_path / "b" / "bare.tif", tags={})
    assert read_scene_metadata(bare).acquired is None
    (row,) = ingest([bare], store, datetime="2023-09-22T01:00:00+09:00").rows
    assert row.scene.acquired == dt.datetime(2023, 9, 21, 16, 0, tzinfo=UTC)
    assert row.scene.datetime_source == "option:--datetime"


def test_reingest_is_noop_and_folders_recurse(tmp_path, store):
    d = tmp_path / "imgs"
    a = make_geotiff(d / "a.tif", seed=1)
    make_geotiff(d / "sub" / "deeper" / "b.TIFF", seed=2)
    (d / "notes.txt").write_text("not an image")
    shutil.copy(a, d / "sub" / "a_copy.tif")
    first = ingest([d], store)
    assert {r.path.name: r.status for r in first.rows} == {
        "a.tif": "new", "a_copy.tif": "already", "b.TIFF": "new"}
    assert len(first.scenes) == 3 and first.scenes[1].id == first.scenes[0].id
    assert first.scenes[0].sha256 == hashlib.sha256(a.read_bytes()).hexdigest()
    assert read_scene_metadata(a, hash_file=False).sha256 == ""
    again = ingest([d, a], store)
    assert [r.status for r in again.rows] == ["already"] * 3
    assert "already ingested as scene" in again.rows[0].notes[0]
    assert len(store.scenes()) == 2


def test_16bit_and_panchromatic_accepted_and_read(tmp_path, store):
    rng = np.random.default_rng(5)
    data16 = rng.integers(200, 3000, size=(4, 64, 64)).astype("uint16")
    p16 = make_geotiff(tmp_path / "ms16.tif", count=4, dtype="uint16", width=64, height=64,
                       res=20.0, data=data16,
                       colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red,
                                    ColorInterp.undefined])
    pan = make_geotiff(tmp_path / "pan.tif", count=1, width=64, height=64, res=20.0)
    rows = ingest([p16, pan], store).rows
    assert "scaled to 8-bit" in rows[0].notes[0]
    assert any("panchromatic" in n for n in rows[1].notes)
    sc = band_scaling(p16)
    assert sc.bands == (3, 2, 1)  # RGB from a BGRN image by colour interpretation
    assert "percentiles" in sc.note
    px = read_window(p16, Window(0, 0, 64, 64))
    assert px.dtype == np.uint8 and px.shape == (3, 64, 64)
    assert px.min() == 0 and px.max() == 255  # stretched
    red = data16[2].astype(float)
    assert np.corrcoef(px[0].ravel(), red.ravel())[0, 1] > 0.95
    pp = read_window(pan, Window(10, 10, 20, 20))
    assert pp.shape == (1, 20, 20)
    assert read_window(pan, Window(10, 10, 20, 20), rgb=True).shape == (3, 20, 20)
    edge = read_window(pan, Window(50, 50, 30, 30))  # boundless: outside is 0
    assert edge.shape == (1, 30, 30) and (edge[:, 20:, 20:] == 0).all()


def test_iter_windows_cover_and_aoi(tmp_path):
    wins = list(iter_windows((2500, 3000), size=1024, overlap=128))
    cover = np.zeros((2500, 3000), bool)
    for w in wins:
        assert w.width == 1024 and w.height == 1024
        cover[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] = True
    assert cover.all()
    assert len(list(iter_windows((100, 80), size=256))) == 1
    # a 2 km image around Tumangang at 2 m: only windows touching the AOI are kept
    path = make_geotiff(tmp_path / "w.tif", res=2.0, width=1000, height=1000, sparse=True,
                        tiled=True)
    tum = get_site("tumangang")
    all_w = list(iter_windows(path, size=256, overlap=0))
    aoi_w = list(iter_windows(path, size=256, overlap=0, aoi=tum.aoi))
    assert len(all_w) == 16 and 0 < len(aoi_w) < len(all_w)
    tr = Transformer.from_crs(4326, 32652, always_xy=True)
    aoi_utm = shapely.transform(tum.aoi, tr.transform, interleaved=False)
    assert all(aoi_utm.intersects(box(*_bounds(path, w))) for w in aoi_w)


def _bounds(path, win):
    with rasterio.open(path) as ds:
        x0, y0 = ds.transform @ (win.col_off, win.row_off + win.height)
        x1, y1 = ds.transform @ (win.col_off + win.width, win.row_off)
    return x0, y0, x1, y1


def test_cli_ingest_table(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "cli.sqlite")
    a = make_geotiff(tmp_path / "img" / "a.tif", seed=1)
    make_geotiff(tmp_path / "img" / "b.tif", seed=2, dtype="uint16")
    res = runner.invoke(app, ["--db", db, "ingest", str(a.parent)])
    assert res.exit_code == 0, res.output
    assert "a.tif" in res.output and "b.tif" in res.output and "new" in res.output
    assert "tumangang" in res.output and "2 new" in res.output
    assert "scaled to 8-bit" in res.output
    res = runner.invoke(app, ["--db", db, "ingest", str(a)])
    assert res.exit_code == 0 and "already" in res.output and "0 new, 1 already" in res.output
