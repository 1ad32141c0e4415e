"""Training the class stage (railwatch.train.classes) and its command."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from railwatch.cli.main import app
from railwatch.detect import Detector, detect, model_dir
from railwatch.detect.classify import CLASSIFIER_FILE
from railwatch.detect.verify import CROP_H, CROP_W
from railwatch.train.testsets import write_own_scene

pytest.importorskip("torch")


def _model_folder(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for f in ("railwatch-det.onnx", "railwatch-ver.onnx", "railwatch-ver2.onnx",
              "railwatch-box.onnx"):
        shutil.copy(model_dir() / f, tmp_path)
    meta = json.loads((model_dir() / "model.json").read_text())
    meta.pop("classifier", None)
    meta["verifier"].pop("container_neighbours", None)
    (tmp_path / "model.json").write_text(json.dumps(meta))
    return tmp_path


def test_harvest_holds_true_railcars_of_both_renderers_and_is_seeded(tmp_path):
    from railwatch.train.classes import build_class_data
    from railwatch.train.verifier import FLAG_TRUTH, KIND_RAILCAR, MARGIN

    a = build_class_data(tmp_path / "a.npz", 6, seed=3, workers=1)
    build_class_data(tmp_path / "b.npz", 6, seed=3, workers=1)
    da, db = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["samples"] == len(da["labels"]) > 20
    np.testing.assert_array_equal(da["crops"], db["crops"])
    assert da["crops"].shape[1:] == (CROP_H + 2 * MARGIN, CROP_W + 2 * MARGIN, 3)
    labels = da["labels"]
    assert (labels[:, 0] == KIND_RAILCAR).all() and (da["flags"] == FLAG_TRUTH).all()
    assert set(np.unique(labels[:, 1])) <= set(range(7)) and len(np.unique(labels[:, 1])) >= 3
    assert set(np.unique(labels[:, 2])) <= {0, 1}
    # the renderer share is honoured: all-simulator and all-own harvests differ
    build_class_data(tmp_path / "s.npz", 6, seed=3, workers=1, sim_share=1.0)
    build_class_data(tmp_path / "o.npz", 6, seed=3, workers=1, sim_share=0.0)
    assert len(np.load(tmp_path / "s.npz")["labels"]) != len(np.load(tmp_path / "o.npz")["labels"])


def test_training_writes_a_stage_the_detector_runs(tmp_path):
    from railwatch.train.classes import build_class_data, train_classifier

    folder = _model_folder(tmp_path / "m")
    stale = json.loads((folder / "model.json").read_text())
    stale["classifier"] = {"weight": 0.3, "covered": True, "chosen": "for an earlier stage"}
    (folder / "model.json").write_text(json.dumps(stale))
    build_class_data(tmp_path / "c.npz", 8, seed=1, workers=1)
    block = train_classifier(tmp_path / "c.npz", folder, minutes=1.0, max_steps=6, threads=1)
    assert block["file"] == CLASSIFIER_FILE and block["weight"] == 1.0
    assert block["covered"] is False and "chosen" not in block  # the earlier block is gone
    assert block["training"]["steps"] == 6
    assert (folder / CLASSIFIER_FILE).exists() and not (folder / "railwatch-ver.onnx.tmp").exists()
    meta = json.loads((folder / "model.json").read_text())
    assert meta["classifier"]["version"] and "second" in meta["verifier"]  # verifier untouched
    det = Detector(folder)
    assert det.classifier is not None
    assert det.classifier_note.startswith(CLASSIFIER_FILE) and "weight 1" in det.classifier_note
    write_own_scene(tmp_path / "s", "scene", 700123, 300, 0.5)
    out = detect(tmp_path / "s" / "scene.tif", det)
    assert out.meta["classes"] == det.classifier_note
    # turned off in model.json: the detector runs without it
    meta["classifier"]["enabled"] = False
    (folder / "model.json").write_text(json.dumps(meta))
    off = Detector(folder)
    assert off.classifier is None and detect(tmp_path / "s" / "scene.tif", off).meta.get(
        "classes") is None


def test_train_classifier_needs_a_detector_and_verifier(tmp_path):
    shutil.copy(model_dir() / "railwatch-det.onnx", tmp_path)
    r = CliRunner().invoke(app, ["train-classifier", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "railwatch-ver.onnx" in r.output


def test_train_classifier_command_keeps_its_harvest_and_writes_the_stage(tmp_path):
    folder = _model_folder(tmp_path / "m")
    assert Detector(folder).classifier is None
    r = CliRunner().invoke(app, ["train-classifier", "--out", str(folder), "--chips", "4",
                                 "--minutes", "0.05", "--workers", "1", "--threads", "1",
                                 "--data", str(tmp_path / "c.npz")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c.npz").exists() and "class stage written" in r.output
    det = Detector(folder)
    assert det.classifier is not None
    p = det.classifier.predict(np.full((3, CROP_H, CROP_W, 3), 90, np.uint8))
    np.testing.assert_allclose(p["cls"].sum(axis=1), 1.0, rtol=1e-5)
