"""Whole-image pipeline with a stand-in model: tiling, resampling, seam de-dup, georeferencing,
GeoJSON schema and bad input. (The shipped model is tested in test_detect_model.py.)"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from railwatch.detect.decode import Boxes, empty_boxes, rotated_nms
from railwatch.detect.model import footprint_colors
from railwatch.detect.pipeline import detect, detect_each, detect_many
from railwatch.errors import InputError
from railwatch.geojson import to_geojson

ORIGIN = (500000.0, 4700000.0)


class BlobDetector:
    """A stand-in model: every bright blob is a railcar (minAreaRect), in native pixels."""

    native_gsd_m = 0.5
    nms_iou = 0.3
    railcar_nms = None
    path = Path("blob.onnx")
    version = "test"
    verifier_note = None
    refiner_note = None
    slots_note = None
    classifier_note = None

    def __init__(self):
        self.calls = 0

    def boxes(self, tile, region=None):
        """Honours ``region`` as the real detector does (boxes a neighbour tile owns are
        left out), so a wrong region loses cars at seams in the tests below."""
        self.calls += 1
        mask = (tile[..., 0] > 128).astype(np.uint8)
        n, lab = cv2.connectedComponents(mask)
        parts = []
        for i in range(1, n):
            ys, xs = np.nonzero(lab == i)
            (cx, cy), (w, h), ang = cv2.minAreaRect(np.column_stack([xs, ys]).astype(np.float32))
            length, width = max(w, h) + 1, min(w, h) + 1
            theta = np.deg2rad(ang) if w >= h else np.deg2rad(ang + 90)
            parts.append(Boxes(np.array([cx + 0.5]), np.array([cy + 0.5]), np.array([length]),
                               np.array([width]), np.array([theta]), np.zeros(1, int),
                               np.zeros(1, int), np.ones(1), np.zeros(1), np.array([0.9]),
                               np.zeros((1, 3), np.uint8), np.full(1, np.nan)))
        b = Boxes.concat(parts) if parts else empty_boxes()
        if region is not None:
            b = b.within(*region)
        b.color = footprint_colors(tile, b.corners())
        return rotated_nms(b)


def _write(path, image, gsd, crs="EPSG:32652"):
    h, w = image.shape[:2]
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                       crs=crs, transform=from_origin(*ORIGIN, gsd, gsd), tiled=True,
                       blockxsize=256, blockysize=256) as ds:
        ds.write(np.transpose(image, (2, 0, 1)))
    return path


def _car(img, x0, y0, length, width, color=(200, 40, 40)):
    img[y0:y0 + width, x0:x0 + length] = color


def test_seam_car_found_once_at_the_right_lonlat(tmp_path):
    img = np.full((1200, 2300, 3), 60, np.uint8)
    _car(img, 1000, 600, 30, 6)  # straddles the seam between the first two tiles
    _car(img, 100, 100, 30, 6)
    tif = _write(tmp_path / "seam.tif", img, 0.5)
    stub = BlobDetector()
    det = detect(tif, stub, tile_px=1024, overlap_px=96)
    assert stub.calls > 2
    assert len(det) == 2
    # tiles three at once: the same detections
    par = detect(tif, BlobDetector(), tile_px=1024, overlap_px=96, workers=3)
    np.testing.assert_array_equal(par.footprints, det.footprints)
    assert det.meta["resampling"].startswith("none")
    # the seam car: pixel centre (1015, 603) -> map -> lon/lat
    x = ORIGIN[0] + 1015 * 0.5
    y = ORIGIN[1] - 603 * 0.5
    lon, lat = Transformer.from_crs(32652, 4326, always_xy=True).transform(x, y)
    fc = to_geojson(det)
    centres = [np.mean(f["geometry"]["coordinates"][0][:4], axis=0) for f in fc["features"]]
    d = [np.hypot((c[0] - lon) * 82000, (c[1] - lat) * 111000) for c in centres]
    assert min(d) < 0.5  # metres
    f = fc["features"][int(np.argmin(d))]
    assert f["properties"]["length_m"] == pytest.approx(15, abs=0.6)
    assert f["properties"]["color"] == "#c82828"
    assert set(f["properties"]) >= {"kind", "class", "score", "covered", "color", "length_m"}
    ring = f["geometry"]["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]


def test_other_gsd_is_resampled_and_said_so(tmp_path):
    img = np.full((900, 900, 3), 60, np.uint8)
    _car(img, 400, 400, 50, 10)  # 15 m x 3 m at 0.3 m
    tif = _write(tmp_path / "fine.tif", img, 0.3)
    det = detect(tif, BlobDetector())
    assert len(det) == 1
    assert "resampled from 0.300 m to 0.5 m" in det.meta["resampling"]
    assert det.length_m[0] == pytest.approx(15, abs=1.0)
    c = det.centers[0]
    assert c[0] == pytest.approx(ORIGIN[0] + 425 * 0.3, abs=0.5)
    assert c[1] == pytest.approx(ORIGIN[1] - 405 * 0.3, abs=0.5)


def test_detect_many_writes_one_file_per_image(tmp_path):
    img = np.full((300, 300, 3), 60, np.uint8)
    _car(img, 100, 100, 30, 6)
    a = _write(tmp_path / "a.tif", img, 0.5)
    b = _write(tmp_path / "b.tif", img, 0.5)
    out = detect_many([a, b], tmp_path / "out", BlobDetector())
    assert [p.name for p in out] == ["a.geojson", "b.geojson"]
    assert len(json.loads(out[0].read_text())["features"]) == 1


def test_detect_each_runs_images_at_once_in_order_with_errors_in_place(tmp_path):
    """Four workers over seven images: the same detections as one by one, in the input
    order, and a corrupt file yields its error in its place without stopping the rest."""
    paths = []
    for k in range(7):
        img = np.full((200 + 40 * k, 300, 3), 60, np.uint8)
        for j in range(k % 3 + 1):
            _car(img, 20 + 60 * j, 50 + 10 * k, 30, 6)
        paths.append(_write(tmp_path / f"i{k}.tif", img, 0.5))
    bad = tmp_path / "i3.tif"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated
    stub = BlobDetector()
    got = list(detect_each(paths, stub, workers=4))
    assert [p for p, _ in got] == paths
    assert isinstance(got[3][1], InputError) and "i3.tif" in str(got[3][1])
    for k, (p, det) in enumerate(got):
        if k != 3:
            one = detect(p, BlobDetector())
            assert len(det) == len(one) == k % 3 + 1
            np.testing.assert_allclose(det.footprints, one.footprints)
    assert stub.calls >= 6


@pytest.mark.parametrize("gsd,msg", [(3.0, "too coarse"), (0.1, "finer than")])
def test_unsupported_gsd_is_a_clear_error(tmp_path, gsd, msg):
    tif = _write(tmp_path / "g.tif", np.zeros((64, 64, 3), np.uint8), gsd)
    with pytest.raises(InputError, match=msg):
        detect(tif, BlobDetector())


def test_bad_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        detect(tmp_path / "missing.tif", BlobDetector())
    junk = tmp_path / "junk.tif"
    junk.write_text("not an image")
    with pytest.raises(InputError):
        detect(junk, BlobDetector())
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=32, height=32, count=3,
                       dtype="uint8") as ds:
        ds.write(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(InputError, match="georeferencing"):
        detect(plain, BlobDetector())
