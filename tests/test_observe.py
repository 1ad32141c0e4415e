"""Observations: counts in the AOI, containers per zone, usable fraction, count range;
clouds found at coarse scale from a decimated read."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import box

from railwatch.analytics.observe import count_range, error_rates_for, load_metrics, observe
from railwatch.errors import InputError
from railwatch.imagery.cloud import cloud_fraction_in, cloud_mask
from railwatch.sites import get_site
from railwatch.types import Detections, Scene

UTM = "EPSG:32652"
TO_LL = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
# Tumangang AOI (local UTM 52N): x 631245..632445, y 4697443..4698243; track_area y
# 4697693..4697893; freight_handling x 631445..632145, y 4697893..4698143.
X0, Y0 = 631245.0, 4697443.0


def _site():
    """Tumangang without its track map: these tests' cars stand where no track runs (the
    map's own test is in test_trackmap.py)."""
    return dataclasses.replace(get_site("tumangang"), tracks=None)


def _box_fp(cx: float, cy: float, length: float = 15.0, width: float = 3.2) -> np.ndarray:
    return np.array([[cx - length / 2, cy - width / 2], [cx + length / 2, cy - width / 2],
                     [cx + length / 2, cy + width / 2], [cx - length / 2, cy + width / 2]])


def _detections() -> Detections:
    fps, kind, cls, cov = [], [], [], []
    for k in range(10):  # 10 railcars on the track, 3 covered
        fps.append(_box_fp(X0 + 100 + 16 * k, Y0 + 350))
        kind.append("railcar")
        cls.append(["boxcar", "tank", "hopper", "hopper", "flatcar"][k % 5])
        cov.append(k < 3)
    fps.append(_box_fp(X0 - 300, Y0 + 350))  # outside the AOI
    kind.append("railcar")
    cls.append("tank")
    cov.append(False)
    for k in range(4):  # containers in freight handling
        fps.append(_box_fp(X0 + 300 + 8 * k, Y0 + 550, 6.0, 2.4))
        kind.append("container")
        cls.append("")
        cov.append(False)
    n = len(fps)
    return Detections(footprints=np.array(fps), kind=kind, cls=cls, score=np.full(n, 0.9),
                      covered=cov, color=np.zeros((n, 3)), length_m=np.full(n, 15.0), crs=UTM)


def _scene(footprint_utm, path: str = "x.tif", gsd: float = 0.5) -> Scene:
    return Scene(id=7, path=path, sha256="0" * 64, crs_wkt=UTM, transform=(0,) * 6, width=1,
                 height=1, band_count=3, dtype="uint8", gsd_m=gsd,
                 footprint=shapely.transform(footprint_utm, TO_LL.transform, interleaved=False),
                 acquired=dt.datetime(2023, 10, 5, 2, 30, tzinfo=dt.UTC), sensor="SkySat")


FULL = box(X0 - 500, Y0 - 500, X0 + 1700, Y0 + 1300)
RATES = {"precision": 0.9, "recall": 0.8}


def test_counts_in_aoi_zones_and_range() -> None:
    site = _site()
    obs = observe(site, _scene(FULL), _detections(), error_rates=RATES)
    assert obs.total == 10 and obs.counts["hopper"] == 4 and obs.counts["tank"] == 2
    assert obs.counts["covered"] == 3 and obs.counts["containers"] == 4
    assert obs.containers_by_zone == {"track_area": 0, "freight_handling": 4, "station": 0}
    assert obs.usable_fraction == pytest.approx(1.0) and not obs.partial
    assert (obs.count_low, obs.count_high) == count_range(10, RATES)
    assert obs.count_low < 10 < obs.count_high
    assert obs.scene_id == 7 and obs.sensor == "SkySat" and obs.gsd_m == 0.5


def test_range_formula_and_coverage_scaling() -> None:
    # n=10, p=.9, r=.8: est 11.25, sd = sqrt(10*.9*.1 + 11.25*.2) = 1.83
    assert count_range(10, RATES) == (6, 15)
    assert count_range(10, None) == (10, 10)
    assert count_range(10, None, usable_track=0.5) == (10, 20)
    assert count_range(0, None, usable_track=0.0) == (0, 0)


def test_half_footprint_is_partial_lower_bound_with_wider_high(tmp_path) -> None:
    site = _site()
    half = box(X0 - 500, Y0 - 500, X0 + 600, Y0 + 1300)  # the western half of the AOI
    # no detector metrics at all: the range covers the unseen area only
    obs = observe(site, _scene(half), _detections(), metrics_path=tmp_path / "none.json")
    assert obs.usable_fraction == pytest.approx(0.5, abs=0.01) and obs.partial
    assert obs.count_low == 10 and obs.count_high in (20, 21)  # 10 / 0.4998
    cloudy = observe(site, _scene(FULL), _detections(), cloud=0.2, error_rates=RATES)
    assert cloudy.usable_fraction == pytest.approx(0.8) and cloudy.partial
    assert cloudy.count_high == count_range(10, RATES, 0.8)[1]
    with pytest.raises(InputError):
        observe(site, _scene(FULL), _detections(), cloud=1.5, error_rates=RATES)


def test_missing_metrics_is_said_not_invented(tmp_path, caplog) -> None:
    site = _site()
    with caplog.at_level(logging.WARNING):
        obs = observe(site, _scene(FULL), _detections(), metrics_path=tmp_path / "none.json")
    assert "error rates not found" in caplog.text
    assert (obs.count_low, obs.count_high) == (10, 10)
    m = tmp_path / "metrics.json"
    m.write_text(json.dumps({"by_gsd": {"0.5": {"precision": 0.9, "recall": 0.8},
                                        "3.0": {"precision": 0.5, "recall": 0.3}},
                             "overall": {"precision": 0.7, "recall": 0.6}}))
    metrics = load_metrics(m)
    assert error_rates_for(0.6, metrics)["precision"] == 0.9
    assert error_rates_for(2.0, metrics)["recall"] == 0.3
    assert error_rates_for(None, metrics)["precision"] == 0.7
    assert error_rates_for(0.6, metrics, track_map=True)["precision"] == 0.9  # none measured
    with_map = {**metrics, "with_track_map": {"by_gsd": {"0.5": {"precision": 0.98,
                                                                 "recall": 0.95}}}}
    assert error_rates_for(0.6, with_map, track_map=True) == {"precision": 0.98,
                                                               "recall": 0.8}
    assert error_rates_for(0.6, with_map)["precision"] == 0.9
    obs = observe(site, _scene(FULL), _detections(), metrics_path=m)
    assert (obs.count_low, obs.count_high) == count_range(10, RATES)


# -- clouds -----------------------------------------------------------------------------
def _ground(rng, h, w):
    """Textured ground: noise, dark rails every 5 px, a few small bright roofs."""
    img = rng.normal(0.42, 0.08, (h, w, 3)).clip(0, 1)
    img[::5, :, :] *= 0.5
    img[20:30, 40:52] = 0.95  # a small white roof (about 6 x 5 m at 0.5 m) - not cloud
    return img


def test_cloud_mask_finds_smooth_bright_deck_not_small_roofs() -> None:
    rng = np.random.default_rng(0)
    img = _ground(rng, 400, 400)
    yy, xx = np.mgrid[:400, :400]
    deck = (yy - 250) ** 2 + (xx - 250) ** 2 < 100**2
    img[deck] = 0.9 + rng.normal(0, 0.01, (deck.sum(), 3))
    m = cloud_mask((img * 255).astype(np.uint8), gsd_m=0.5)
    assert m.shape == (400, 400)
    assert m[deck].mean() > 0.85
    assert m[~deck].mean() < 0.03
    assert not m[20:30, 40:52].any()


def _write_tif(path, img, transform, nodata_cols=0):
    h, w = img.shape[:2]
    data = (img * 255).astype(np.uint8).transpose(2, 0, 1)
    if nodata_cols:
        data[:, :, :nodata_cols] = 0
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                       crs=UTM, transform=transform, nodata=0, tiled=True, blockxsize=256,
                       blockysize=256) as ds:
        ds.write(data)


def test_cloud_fraction_in_a_decimated_read(tmp_path) -> None:
    rng = np.random.default_rng(1)
    gsd = 2.0
    h, w = 500, 700  # 1400 m x 1000 m at 2 m, covering the whole AOI with margin
    img = _ground(rng, h, w)
    left, top = X0 - 100, Y0 + 900
    # a cloud deck over the AOI's eastern quarter (x from X0+900 to X0+1200)
    c0 = int((X0 + 900 - left) / gsd)
    c1 = int((X0 + 1200 - left) / gsd)
    img[:, c0:c1] = 0.92 + rng.normal(0, 0.01, (h, c1 - c0, 3))
    path = tmp_path / "img.tif"
    _write_tif(path, img, from_origin(left, top, gsd, gsd), nodata_cols=int(250 / gsd))
    aoi = _site().aoi
    cov = cloud_fraction_in(path, aoi, max_side=256)
    assert cov.decimation >= 2  # not read at full resolution
    assert cov.inside == pytest.approx(1.0, abs=0.01)
    assert cov.cloud == pytest.approx(0.25, abs=0.05)
    assert cov.nodata == pytest.approx(150 / 1200, abs=0.04)  # x from X0 to X0+150
    assert cov.usable == pytest.approx(1 - 0.25 - 0.125, abs=0.06)
    obs = observe(_site(), _scene(FULL, str(path)), _detections(),
                  image_path=path, error_rates=RATES)
    assert obs.partial and obs.usable_fraction == pytest.approx(cov.usable, abs=0.03)
    assert obs.count_high > count_range(10, RATES)[1]
    with pytest.raises(InputError):
        cloud_fraction_in(tmp_path / "missing.tif", aoi)


def test_site_by_name_and_cloud_measured_on_the_scene_file(tmp_path) -> None:
    rng = np.random.default_rng(2)
    img = _ground(rng, 300, 400)  # 1600 m x 1200 m at 4 m: the whole AOI, no cloud
    path = tmp_path / "clear.tif"
    _write_tif(path, img, from_origin(X0 - 200, Y0 + 1000, 4.0, 4.0))
    obs = observe("tumangang", _scene(FULL, str(path)), _detections(), error_rates=RATES)
    assert obs.site == "tumangang" and not obs.partial
    assert obs.usable_fraction > 0.97
