"""The second-stage verifier: crops cut along each box, how its verdicts change boxes."""

import json
import shutil

import cv2
import numpy as np
import pytest

from railwatch.detect import Detector, model_dir
from railwatch.detect.decode import Boxes, box_corners
from railwatch.detect.verify import CROP_H, CROP_W, Cascade, apply_verifier, oriented_crops
from railwatch.errors import InputError


def _boxes(n, score=0.8):
    z = np.zeros(n)
    return Boxes(np.arange(n) * 50.0 + 40, np.full(n, 40.0), np.full(n, 30.0), np.full(n, 6.0),
                 z.copy(), np.zeros(n, int), np.zeros(n, int), z + 0.5, z + 0.1, z + score,
                 np.zeros((n, 3), np.uint8), np.full(n, np.nan))


@pytest.mark.parametrize("angle", [0.0, 0.6, -1.2, 1.5])
def test_oriented_crop_lays_the_car_along_the_crop_and_centres_it(angle):
    img = np.full((200, 220, 3), 60, np.uint8)
    cx, cy, length, width = 110.5, 90.5, 40.0, 8.0
    c = box_corners(cx, cy, length, width, angle)[0] - 0.5  # raster -> OpenCV centres
    cv2.fillConvexPoly(img, np.round(c * 16).astype(np.int32), (250, 250, 250), shift=4)
    crop = oriented_crops(img, np.array([cx]), np.array([cy]), np.array([angle]))
    assert crop.shape == (1, CROP_H, CROP_W, 3)
    bright = crop[0, :, :, 0] > 155
    rows, cols = np.nonzero(bright)
    assert abs(cols.mean() - (CROP_W - 1) / 2) < 1.0 and abs(rows.mean() - (CROP_H - 1) / 2) < 1.0
    assert abs((cols.max() - cols.min() + 1) - length) <= 2
    assert abs((rows.max() - rows.min() + 1) - width) <= 2


class _FakeVerifier:
    """Returns fixed verdicts: background, railcar (hopper, covered), container."""

    def predict(self, crops):
        assert crops.shape[1:] == (CROP_H, CROP_W, 3)
        kind = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
        cls = np.full((3, 7), 0.01)
        cls[:, 2] = 0.94
        return {"kind": kind, "cls": cls, "covered": np.array([0.1, 0.9, 0.9])}


def test_cascade_is_sure_of_clear_background_and_clear_cars_only():
    c = Cascade("second.onnx", kind=0.95, cls=0.8, covered=0.4)
    kind = np.array([[0.97, 0.02, 0.01],   # clear background
                     [0.01, 0.98, 0.01],   # clear railcar, clear class and covered
                     [0.01, 0.98, 0.01],   # railcar, class unsure
                     [0.01, 0.98, 0.01],   # railcar, covered unsure
                     [0.10, 0.85, 0.05],   # kind unsure
                     [0.02, 0.02, 0.96]])  # clear container (class does not matter)
    cls = np.full((6, 7), 0.01)
    cls[:, 0] = 0.94
    cls[2] = [0.5, 0.45, 0.01, 0.01, 0.01, 0.01, 0.01]
    covered = np.array([0.5, 0.05, 0.95, 0.3, 0.0, 0.5])
    sure = c.sure({"kind": kind, "cls": cls, "covered": covered})
    assert sure.tolist() == [True, True, False, False, False, True]
    assert Cascade.from_meta(None) is None
    c2 = Cascade.from_meta({"file": "b.onnx", "weight": 0.7, "kind": 0.9})
    assert (c2.file, c2.weight, c2.kind, c2.cls) == ("b.onnx", 0.7, 0.9, 0.8)


def test_apply_verifier_drops_background_and_takes_kind_class_covered():
    b = apply_verifier(np.zeros((100, 200, 3), np.uint8), _boxes(3), _FakeVerifier())
    assert len(b) == 2
    assert b.kind.tolist() == [0, 1]
    assert b.cls.tolist() == [2, -1]  # hopper; containers have no class
    assert b.covered_prob.tolist() == [0.9, 0.0]  # containers are never "covered"
    np.testing.assert_allclose(b.object_prob, [0.9, 0.8])
    np.testing.assert_allclose(b.score, np.sqrt(0.8 * np.array([0.9, 0.8])))
    # a stricter score floor drops the weaker one too
    b2 = apply_verifier(np.zeros((100, 200, 3), np.uint8), _boxes(3), _FakeVerifier(),
                        min_score=0.83)
    assert len(b2) == 1 and b2.kind[0] == 0


def test_model_without_verifier_runs_one_stage_and_refuses_verify(tmp_path):
    shutil.copy(model_dir() / "railwatch-det.onnx", tmp_path)
    meta = json.loads((model_dir() / "model.json").read_text())
    meta.pop("verifier", None)
    (tmp_path / "model.json").write_text(json.dumps(meta))
    assert Detector(tmp_path).verifier is None
    with pytest.raises(InputError, match="no verifier"):
        Detector(tmp_path, verify=True)


def test_shipped_model_runs_three_stages_and_says_so(tmp_path):
    from typer.testing import CliRunner

    from railwatch.cli.main import app
    from railwatch.detect.refine import REFINER_FILE
    from railwatch.detect.verify import VERIFIER_FILE
    from railwatch.geojson import from_geojson
    from railwatch.train.testsets import write_sim_scene

    meta = json.loads((model_dir() / "model.json").read_text())
    v = meta["verifier"]
    assert (model_dir() / VERIFIER_FILE).stat().st_size < 5 * 2**20
    assert 0 < v["candidate_threshold"] < meta["score_threshold"]
    det = Detector()
    assert det.verifier is not None and det.threshold == v["candidate_threshold"]
    assert det.refiner is not None and not det.refiner.set_length  # moves, keeps lengths
    # the verifier in two parts: the second asked only where the first is unsure
    assert det.verifier.cascade is not None and det.verifier.cascade.file == v["second"]["file"]
    assert (model_dir() / v["second"]["file"]).stat().st_size < 5 * 2**20
    assert f" + {v['second']['file']} " in det.verifier_note
    assert (model_dir() / REFINER_FILE).stat().st_size < 5 * 2**20
    assert Detector(verify=False).verifier is None
    write_sim_scene(tmp_path, "s", 880003, 400, 0.5)
    tif = tmp_path / "s.tif"
    r = CliRunner().invoke(app, ["detect", str(tif), "-o", str(tmp_path / "two.geojson")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["detect", str(tif), "-o", str(tmp_path / "one.geojson"),
                                 "--no-verify"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["detect", str(tif), "-o", str(tmp_path / "still.geojson"),
                                 "--no-refine"])
    assert r.exit_code == 0, r.output
    assert from_geojson(tmp_path / "still.geojson").meta.get("refiner") is None
    r = CliRunner().invoke(app, ["detect", str(tif), "-o", str(tmp_path / "x.geojson"),
                                 "--no-verify", "--refine"])  # the refiner needs the verifier
    assert r.exit_code == 2 and "without the verifier" in r.output
    assert not (tmp_path / "x.geojson").exists()
    two, one = from_geojson(tmp_path / "two.geojson"), from_geojson(tmp_path / "one.geojson")
    assert "object_score" in two.extra and "object_score" not in one.extra
    assert two.meta["verifier"].startswith(VERIFIER_FILE) and one.meta.get("verifier") is None
    assert two.meta["refiner"].startswith(REFINER_FILE) and one.meta.get("refiner") is None
    assert two.meta["containers"].startswith("railwatch-slot.onnx ")
    assert "containers below" in two.meta["containers"]  # the check and its threshold
    assert one.meta.get("containers") is None  # the slot step needs the verifier
    assert len(two) > 0
    assert " + " in two.meta["verifier"]  # the output names both parts


def test_broken_verifier_file_is_a_one_line_error_naming_it(tmp_path):
    shutil.copy(model_dir() / "railwatch-det.onnx", tmp_path)
    shutil.copy(model_dir() / "model.json", tmp_path)
    (tmp_path / "railwatch-ver.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(InputError, match="not a loadable ONNX model") as e:
        Detector(tmp_path)
    assert "railwatch-ver.onnx" in str(e.value) and "\n" not in str(e.value)
    assert Detector(tmp_path, verify=False).verifier is None  # the detector alone still runs


def test_candidates_skip_the_early_nms_and_the_late_one_removes_duplicates(tmp_path,
                                                                          monkeypatch):
    """With ``candidate_nms`` off (model.json ``verifier``), every candidate peak reaches
    the verifier; the NMS after the verifier still leaves no two boxes overlapping past
    the common rule, even for a model without a railcar rule."""
    import rasterio
    import shapely

    import railwatch.detect.model as model_module
    from railwatch.train.testsets import write_sim_scene

    write_sim_scene(tmp_path, "s", 880011, 500, 0.5)
    with rasterio.open(tmp_path / "s.tif") as src:
        tile = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    seen = []
    real = model_module.apply_verifier
    monkeypatch.setattr(model_module, "apply_verifier",
                        lambda t, b, *a, **k: seen.append(len(b)) or real(t, b, *a, **k))
    det = Detector()
    det.railcar_nms = None  # the late NMS must run anyway when the early one did not
    det.candidate_nms = True
    det.boxes(tile)
    det.candidate_nms = False
    out = det.boxes(tile)
    assert seen[1] > seen[0] > 0, seen
    polys = shapely.polygons(out.corners())
    left, right = shapely.STRtree(polys).query(polys, predicate="intersects")
    sel = left < right
    a, b = polys[left[sel]], polys[right[sel]]
    inter = shapely.area(shapely.intersection(a, b))
    assert np.all(inter <= 0.5 * np.minimum(shapely.area(a), shapely.area(b)) + 1e-6)
    assert len(out) > 10
