"""The columnar Detections record and the detections GeoJSON contract."""

import json

import numpy as np
import pytest
from pyproj import Transformer

from railwatch import Detections
from railwatch.geojson import from_geojson, to_geojson, write_geojson


def _two(crs=32652):
    fp = np.array(
        [
            [[500000, 4700000], [500015, 4700000], [500015, 4700003], [500000, 4700003]],
            [[500100, 4700000], [500106, 4700000], [500106, 4700002.4], [500100, 4700002.4]],
        ],
        dtype=float,
    )
    return Detections(
        footprints=fp,
        kind=["railcar", "container"],
        cls=["tank", ""],
        score=[0.9, 0.8],
        covered=[True, False],
        color=[[10, 20, 30], [200, 100, 0]],
        length_m=[15, 6],
        crs=crs,
        extra={"train_id": np.array(["t1", None], dtype=object)},
    )


def test_counts_and_masks():
    d = _two()
    c = d.counts()
    assert c["tank"] == 1 and c["total"] == 1 and c["containers"] == 1 and c["covered"] == 1
    assert len(d.railcars) == 1 and d.railcars.cls[0] == "tank"
    assert len(Detections.concat([d, d])) == 4


def test_geojson_roundtrip_lands_at_right_lonlat(tmp_path):
    d = _two()
    fc = to_geojson(d)
    f0 = fc["features"][0]
    assert f0["geometry"]["type"] == "Polygon"
    ring = f0["geometry"]["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    lon, lat = Transformer.from_crs(32652, 4326, always_xy=True).transform(500000, 4700000)
    assert ring[0] == pytest.approx([lon, lat], abs=1e-7)
    p = f0["properties"]
    assert p["kind"] == "railcar" and p["class"] == "tank" and p["color"] == "#0a141e"
    assert p["covered"] is True and p["length_m"] == 15 and p["train_id"] == "t1"
    path = write_geojson(d, tmp_path / "d.geojson")
    back = from_geojson(path)
    assert json.loads(path.read_text())["type"] == "FeatureCollection"
    assert back.counts() == d.counts()
    np.testing.assert_allclose(back.to_crs(32652).footprints, d.footprints, atol=1e-3)


def test_rejects_unknown_class():
    with pytest.raises(ValueError, match="unknown railcar class"):
        Detections(
            footprints=np.zeros((1, 4, 2)), kind=["railcar"], cls=["truck"], score=[1],
            covered=[False], color=[[0, 0, 0]], length_m=[1],
        )


def test_from_geojson_names_bad_file(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.geojson"):
        from_geojson(bad)
