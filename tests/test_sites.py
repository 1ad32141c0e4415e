"""Site registry: built-ins, validation of user GeoJSON, store round trip, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyproj import CRS
from typer.testing import CliRunner

from railwatch.cli.main import app
from railwatch.errors import InputError, NotFoundError
from railwatch.sites import (
    add_site,
    builtin_sites,
    get_site,
    list_sites,
    load_site_geojson,
    site_area_km2,
    site_local_crs,
    site_to_geojson,
    zone_areas_km2,
)
from railwatch.store import Store

SQUARE = [[10.0, 50.0], [10.01, 50.0], [10.01, 50.01], [10.0, 50.01], [10.0, 50.0]]


def site_fc(aoi=None, zones=None, **members):
    feats = [{"type": "Feature", "properties": {"role": "aoi"},
              "geometry": {"type": "Polygon", "coordinates": [aoi or SQUARE]}}]
    for name, ring in (zones or {}).items():
        feats.append({"type": "Feature", "properties": {"role": "zone", "name": name},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}})
    fc = {"type": "FeatureCollection", "name": "testyard", "features": feats}
    fc.update(members)
    return fc


def write(tmp_path: Path, data, name="site.geojson") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_builtin_sites_have_aoi_zones_events():
    sites = {s.name: s for s in builtin_sites()}
    assert set(sites) >= {"tumangang", "khasan"}
    tum = sites["tumangang"]
    assert {"track_area", "freight_handling"} <= set(tum.zones)
    assert tum.timezone == "Asia/Pyongyang"
    assert tum.properties["approximate"] is True
    assert tum.properties["local_crs"] == "EPSG:32652"
    assert tum.properties["zone_descriptions"]["track_area"]
    names = {e.name for e in tum.events}
    assert any("summit" in n for n in names)
    summit = next(e for e in tum.events if "summit" in e.name)
    assert summit.date.isoformat() == "2023-09-13"
    # the schematic AOI is 1.2 km x 0.8 km
    assert site_area_km2(tum) == pytest.approx(0.96, rel=1e-3)
    assert sum(zone_areas_km2(tum).values()) < site_area_km2(tum)
    assert tum.aoi.contains(tum.zones["track_area"].buffer(-1e-6))


def test_local_crs_from_member_or_utm_estimate(tmp_path):
    assert site_local_crs(get_site("tumangang")) == CRS.from_epsg(32652)
    site = load_site_geojson(write(tmp_path, site_fc()))
    assert site_local_crs(site) == CRS.from_epsg(32632)  # 10 E, 50 N -> UTM 32N
    # 0.01 deg x 0.01 deg at 50 N: 1113.2 m x 716.6 m (ellipsoidal)
    assert site_area_km2(site) == pytest.approx(0.7976, rel=5e-3)


def test_load_user_site(tmp_path):
    zone = [[10.0, 50.0], [10.005, 50.0], [10.005, 50.005], [10.0, 50.0]]
    data = site_fc(zones={"track_area": zone}, timezone="Europe/Berlin",
                   events=[{"date": "2024-01-02", "name": "opening"}])
    site = load_site_geojson(write(tmp_path, data))
    assert site.name == "testyard"
    assert list(site.zones) == ["track_area"]
    assert site.events[0].date.isoformat() == "2024-01-02"
    assert site.timezone == "Europe/Berlin"
    back = site_to_geojson(site)
    assert back["name"] == "testyard" and len(back["features"]) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "Feature"}, "not a GeoJSON FeatureCollection"),
        (site_fc(aoi=None) | {"features": []}, "no feature with role 'aoi'"),
        (
            {"type": "FeatureCollection", "features": [
                {"type": "Feature", "properties": {"role": "aoi"},
                 "geometry": {"type": "Point", "coordinates": [10, 50]}}]},
            "not a Polygon",
        ),
        (
            site_fc(aoi=[[10.0, 50.0], [10.01, 50.01], [10.01, 50.0], [10.0, 50.01],
                         [10.0, 50.0]]),
            "Self-intersection",
        ),
        (
            site_fc(crs={"type": "name", "properties": {"name": "EPSG:32652"}}),
            "wrong CRS",
        ),
        (
            site_fc(aoi=[[600000, 4690000], [601000, 4690000], [601000, 4691000],
                         [600000, 4690000]]),
            "outside lon/lat range",
        ),
        (site_fc(zones={"": SQUARE}), "has no 'name'"),
        (site_fc(timezone="Mars/Olympus"), "unknown timezone"),
        (site_fc(events=[{"date": "yesterday", "name": "x"}]), "event 0"),
    ],
)
def test_malformed_site_geojson_names_file_and_problem(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(InputError) as err:
        load_site_geojson(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_wgs84_crs_member_accepted(tmp_path):
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    assert load_site_geojson(write(tmp_path, site_fc(crs=crs))).name == "testyard"


def test_not_json_and_missing(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{nope")
    with pytest.raises(InputError, match="not a readable JSON"):
        load_site_geojson(bad)
    with pytest.raises(InputError, match="no such file"):
        load_site_geojson(tmp_path / "missing.geojson")


def test_unknown_site_lists_known_names():
    with pytest.raises(NotFoundError) as err:
        get_site("pyongyang")
    assert "tumangang" in str(err.value) and "khasan" in str(err.value)
    assert get_site("Tumangang").name == "tumangang"


def test_add_site_to_store(tmp_path):
    with Store(tmp_path / "db.sqlite") as store:
        site = add_site(write(tmp_path, site_fc(zones={"yard": SQUARE})), store)
        assert site.name == "testyard"
        assert [s.name for s in list_sites(store)][-1] == "testyard"
        again = get_site("testyard", store)
        assert again.aoi.equals(site.aoi)
        assert list(again.zones) == ["yard"]
        with pytest.raises(NotFoundError):
            get_site("testyard")  # not without the store
        builtin = site_fc()
        builtin["name"] = "tumangang"
        with pytest.raises(InputError, match="built-in"):
            add_site(write(tmp_path, builtin, "t.geojson"), store)


def test_cli_sites_list_show_add(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "cli.sqlite")
    res = runner.invoke(app, ["--db", db, "sites", "list"])
    assert res.exit_code == 0, res.output
    assert "tumangang" in res.output and "khasan" in res.output
    res = runner.invoke(app, ["--db", db, "sites", "show", "tumangang"])
    assert res.exit_code == 0, res.output
    assert "0.96" in res.output and "freight_handling" in res.output
    assert "approximate" in res.output.lower()
    assert "track map: 28 lines" in res.output
    res = runner.invoke(app, ["--db", db, "sites", "show", "nowhere"])
    assert res.exit_code == 2
    assert "unknown site 'nowhere'" in res.output
    path = write(tmp_path, site_fc(zones={"yard": SQUARE}))
    res = runner.invoke(app, ["--db", db, "sites", "add", str(path)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["--db", db, "sites", "list"])
    assert "testyard" in res.output
    bad = write(tmp_path, site_fc(crs="EPSG:3857"), "bad.geojson")
    res = runner.invoke(app, ["--db", db, "sites", "add", str(bad)])
    assert res.exit_code == 2
    assert "bad.geojson" in res.output and "wrong CRS" in res.output
