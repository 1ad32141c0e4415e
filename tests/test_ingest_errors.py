"""Every bad input of issue #2 item 6: one-line message naming the file, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin
from typer.testing import CliRunner

from railwatch.cli.main import app
from railwatch.errors import InputError, NotFoundError
from railwatch.imagery import ingest
from railwatch.store import Store
from rasters import make_geotiff

runner = CliRunner()


def rows(db) -> dict[str, int]:
    """Row counts of the tables ingest writes (the file may not exist: nothing written)."""
    if not os.path.exists(db):
        return {}
    con = sqlite3.connect(db)
    try:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("scenes", "scene_sites", "runs")}
    finally:
        con.close()


def cli_fails(db, args, *needles):
    before = rows(db)
    res = runner.invoke(app, ["--db", str(db), "ingest", *map(str, args)])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert text.count("error:") == 1
    err = res.output[res.output.index("error:"):]
    assert len(err.strip().splitlines()) <= 3  # one line (wrapped by the terminal)
    for needle in needles:
        assert needle in text, (needle, text)
    assert rows(db) in (before, {}, {"scenes": 0, "scene_sites": 0, "runs": 0})
    return text


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "e.sqlite"
    Store(path).close()
    return path


def test_missing_path(tmp_path, db):
    cli_fails(db, [tmp_path / "nope.tif"], "nope.tif", "no such file")


def test_not_a_raster(tmp_path, db):
    p = tmp_path / "notes.tif"
    p.write_text("hello, this is text")
    cli_fails(db, [p], "notes.tif", "not a raster")
    q = tmp_path / "shape.geojson"
    q.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    cli_fails(db, [q], "shape.geojson", "not a")


def test_truncated_tiff_ifd_at_end(tmp_path, db):
    p = make_geotiff(tmp_path / "cut.tif", width=512, height=512)
    size = p.stat().st_size
    with open(p, "r+b") as fh:
        fh.truncate(size // 2)
    cli_fails(db, [p], "cut.tif", "truncated or corrupt TIFF")


def test_truncated_cog_ifd_at_start(tmp_path, db):
    """A COG keeps its header first: it opens, the missing blocks are caught by the checks."""
    src = make_geotiff(tmp_path / "src.tif", width=1024, height=1024, tiled=True)
    cog = tmp_path / "cog.tif"
    rasterio.shutil.copy(src, cog, driver="COG", overviews="NONE", compress="DEFLATE")
    with open(cog, "r+b") as fh:
        fh.truncate(cog.stat().st_size * 2 // 3)
    with rasterio.open(cog) as ds:  # the header still reads
        assert ds.width == 1024
    cli_fails(db, [cog], "cog.tif", "truncated or corrupt TIFF")


def test_corrupt_header(tmp_path, db):
    p = make_geotiff(tmp_path / "bad.tif")
    data = bytearray(p.read_bytes())
    data[4:8] = b"\xff\xff\xff\x7f"  # first IFD offset points nowhere
    p.write_bytes(bytes(data))
    cli_fails(db, [p], "bad.tif", "truncated or corrupt TIFF")


def test_no_georeferencing(tmp_path, db):
    p = make_geotiff(tmp_path / "plain.tif", georeferenced=False)
    cli_fails(db, [p], "plain.tif", "without georeferencing")


@pytest.mark.parametrize(
    "crs",
    [
        'LOCAL_CS["arbitrary",UNIT["metre",1]]',
        "+proj=geocent +datum=WGS84",
    ],
)
def test_unsupported_crs(tmp_path, db, crs):
    p = tmp_path / "local.tif"
    with rasterio.open(p, "w", driver="GTiff", width=10, height=10, count=3, dtype="uint8",
                       crs=crs, transform=from_origin(0, 10, 1, 1)) as ds:
        ds.write(np.zeros((3, 10, 10), "uint8"))
        ds.update_tags(ACQUISITION_DATETIME="2023-10-05T02:30:00Z")
    cli_fails(db, [p], "local.tif", "unsupported CRS")


def test_intersects_no_site(tmp_path, db):
    p = make_geotiff(tmp_path / "paris.tif", crs="EPSG:32631", center=(2.35, 48.85))
    cli_fails(db, [p], "paris.tif", "intersects no known site", "tumangang", "khasan")


def test_forced_site_that_image_misses(tmp_path, db):
    p = make_geotiff(tmp_path / "tum.tif")  # over Tumangang, 3.5 km from Khasan
    cli_fails(db, [p, "--site", "khasan"], "tum.tif", "does not intersect site 'khasan'")


def test_unknown_site_name(tmp_path, db):
    p = make_geotiff(tmp_path / "tum.tif")
    cli_fails(db, [p, "--site", "atlantis"], "unknown site 'atlantis'", "tumangang")
    with Store(db) as store, pytest.raises(NotFoundError):
        ingest([p], store, site="atlantis")


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"count": 2}, "2 bands"),
        ({"dtype": "int32"}, "unsupported data type int32"),
        ({"dtype": "complex64"}, "unsupported data type complex64"),
    ],
)
def test_unsupported_bands_or_dtype(tmp_path, db, kw, needle):
    p = make_geotiff(tmp_path / "odd.tif", width=32, height=32, **kw)
    cli_fails(db, [p], "odd.tif", needle)


def test_single_band_and_16bit_are_accepted(tmp_path, db):
    pan = make_geotiff(tmp_path / "pan.tif", count=1)
    u16 = make_geotiff(tmp_path / "u16.tif", dtype="uint16", seed=4)
    res = runner.invoke(app, ["--db", str(db), "ingest", str(pan), str(u16)])
    assert res.exit_code == 0, res.output
    assert "panchromatic" in res.output and "scaled to 8-bit" in res.output
    assert rows(db)["scenes"] == 2


def test_no_datetime_and_bad_datetime(tmp_path, db):
    p = make_geotiff(tmp_path / "undated.tif", tags={})
    cli_fails(db, [p], "undated.tif", "no acquisition datetime", "--datetime")
    cli_fails(db, [p, "--datetime", "last tuesday"], "unreadable datetime")
    res = runner.invoke(app, ["--db", str(db), "ingest", str(p), "--datetime", "2023-10-05"])
    assert res.exit_code == 0, res.output


def test_bad_sidecar(tmp_path, db):
    p = make_geotiff(tmp_path / "s.tif", tags={})
    (tmp_path / "s.json").write_text("{broken")
    cli_fails(db, [p], "s.json", "unreadable sidecar")


def test_one_bad_file_aborts_the_whole_command(tmp_path, db):
    good = [make_geotiff(tmp_path / "in" / f"g{i}.tif", seed=i) for i in range(3)]
    bad = tmp_path / "in" / "zz_broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 50)
    cli_fails(db, [tmp_path / "in"], "zz_broken.tif")
    assert rows(db) == {"scenes": 0, "scene_sites": 0, "runs": 0}
    with Store(db) as store:
        with pytest.raises(InputError):
            ingest([*good, bad], store)
        assert store.scenes() == []
    # the good files alone go in
    res = runner.invoke(app, ["--db", str(db), "ingest", *map(str, good)])
    assert res.exit_code == 0
    assert rows(db)["scenes"] == 3


def test_empty_folder(tmp_path, db):
    (tmp_path / "empty").mkdir()
    cli_fails(db, [tmp_path / "empty"], "empty", "no .tif/.tiff")
