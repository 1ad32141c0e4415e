"""Training the container slot classifier (railwatch.train.slots) and choosing its setting."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from railwatch.cli.main import app
from railwatch.detect import Detector, model_dir
from railwatch.detect.verify import CROP_H, CROP_W

pytest.importorskip("torch")


def _obj(kind, cx, cy, occluded=False):
    return {"kind": kind, "cx": cx, "cy": cy, "occluded": occluded}


def test_slot_labels_need_a_visible_container_centred_within_the_radius():
    from railwatch.train.slots import slot_labels

    objs = [_obj("container", 50.0, 50.0), _obj("railcar", 100.0, 50.0),
            _obj("container", 150.0, 50.0, occluded=True)]
    # radius 2.5 px (1.25 m), empty beyond 5 px (2.5 m)
    cx = np.array([51.0, 50.0, 50.0, 100.0, 150.0, 151.0, 300.0])
    cy = np.array([51.5, 54.0, 60.0, 50.5, 50.0, 53.0, 300.0])
    got = slot_labels(cx, cy, objs, radius_px=2.5, empty_px=5.0)
    assert got.tolist() == [1, -1, 0, 0, -1, -1, 0]
    assert slot_labels(cx, cy, [], radius_px=2.5, empty_px=5.0).tolist() == [0] * 7


def test_container_cover_counts_a_box_on_two_containers_end_to_end_as_holding_them():
    from railwatch.detect.decode import Boxes
    from railwatch.train.slots import container_cover

    def c(cx, cy, occluded=False):
        return {"kind": "container", "cx": cx, "cy": cy, "length_px": 12.0, "width_px": 5.0,
                "angle_rad": 0.0, "occluded": occluded}

    objs = [c(50.0, 50.0), c(62.5, 50.0), c(50.0, 80.0, occluded=True)]
    n = 4
    z = np.zeros(n)
    boxes = Boxes(np.array([56.25, 56.25, 44.0, 50.0]), np.array([50.0, 56.0, 50.0, 80.0]),
                  np.array([25.0, 12.0, 12.0, 12.0]), z + 5.0, z, np.ones(n, int),
                  np.full(n, -1), z, z, z, np.zeros((n, 3), np.uint8), z)
    got = container_cover(boxes, objs)
    # both covered whole (centre on the gap); beside the row; half over one; an occluded one
    np.testing.assert_allclose(got, [1.0, 0.0, 0.5, 0.0], atol=1e-9)


def test_a_found_box_covering_half_a_container_holds_it_whatever_its_centre():
    from railwatch.train.slots import held_labels

    centre = np.array([0, 0, 0, -1, 1, 0], np.int8)
    cover = np.array([0.6, 0.3, 0.05, 0.7, 0.0, 0.5])
    assert held_labels(centre, cover).tolist() == [1, -1, 0, 1, 1, 1]


def test_slot_harvest_is_seeded_and_labels_both_kinds_of_slot(tmp_path):
    from railwatch.train.slots import FLAG_FOUND, SLOT_MARGIN, build_slot_data

    counts = build_slot_data(tmp_path / "s.npz", chips=6, seed=5, workers=1)
    d = np.load(tmp_path / "s.npz")
    m = SLOT_MARGIN
    assert d["crops"].shape == (counts["samples"], CROP_H + 2 * m, CROP_W + 2 * m, 3)
    assert set(np.unique(d["labels"]).tolist()) <= {0, 1}
    assert counts["container"] == int((d["labels"] == 1).sum()) > 0
    assert counts["empty"] == int((d["labels"] == 0).sum()) > 0
    assert counts["found"] == int((d["flags"] == FLAG_FOUND).sum()) > 0  # the detector's own
    build_slot_data(tmp_path / "again.npz", chips=6, seed=5, workers=1)
    assert np.array_equal(np.load(tmp_path / "again.npz")["crops"], d["crops"])


def _stacks(n, rng, centred):
    """Crops with a bright stack centred (occupied) or one stack across (empty slot)."""
    from railwatch.train.slots import SLOT_MARGIN

    m = SLOT_MARGIN
    x = np.full((n, CROP_H + 2 * m, CROP_W + 2 * m, 3), 70, np.uint8)
    x += rng.integers(0, 20, x.shape, dtype=np.uint8)
    mid = (CROP_H + 2 * m) // 2
    for i in range(n):
        off = 0 if centred else int(rng.choice([-6, 6]))
        x[i, mid - 2 + off:mid + 3 + off, 30:70] = rng.integers(150, 255, 3)
    return x


def test_slot_training_learns_and_the_detector_loads_it(tmp_path):
    import onnxruntime as ort
    import torch

    from railwatch.detect.neighbours import SLOT_FILE
    from railwatch.train.slots import SLOT_MARGIN, SlotNet, slot_probabilities, train_slots

    rng = np.random.default_rng(0)
    crops = np.concatenate([_stacks(120, rng, True), _stacks(120, rng, False)])
    labels = np.r_[np.ones(120), np.zeros(120)].astype(np.int8)
    np.savez(tmp_path / "s.npz", crops=crops, labels=labels)
    for f in ("railwatch-det.onnx", "railwatch-ver.onnx", "railwatch-ver2.onnx",
              "railwatch-box.onnx", "model.json"):
        shutil.copy(model_dir() / f, tmp_path)
    block = train_slots(tmp_path / "s.npz", tmp_path, minutes=60, max_steps=120, batch=32,
                        seed=0, val_fraction=0.25, threads=1)
    v = block["training"]["validation"]
    assert block["training"]["steps"] == 120
    assert v["occupied_accepted"] > 0.8 and v["empty_refused"] > 0.8
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["verifier"]["container_neighbours"]["file"] == SLOT_FILE
    det = Detector(tmp_path)
    assert det.neighbours is not None and det.slots is not None
    # ONNX (sigmoid inside) agrees with torch
    torch.manual_seed(0)
    net = SlotNet().eval()
    from railwatch.train.slots import ExportedSlotNet
    from railwatch.train.verifier import export_crop_model

    path = export_crop_model(ExportedSlotNet(net), tmp_path / "t.onnx", ["container"])
    m = SLOT_MARGIN
    x = crops[:8, m:-m, m:-m].transpose(0, 3, 1, 2).astype(np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"crops": x})[0][:, 0]
    np.testing.assert_allclose(got, slot_probabilities(net, crops[:8]), atol=1e-5)


def test_an_8bit_slot_classifier_decides_as_the_float_one(tmp_path):
    from railwatch.detect.neighbours import SLOT_FILE, SlotClassifier
    from railwatch.train.slots import SLOT_MARGIN, quantize_slots, train_slots

    rng = np.random.default_rng(1)
    crops = np.concatenate([_stacks(150, rng, True), _stacks(150, rng, False)])
    labels = np.r_[np.ones(150), np.zeros(150)].astype(np.int8)
    np.savez(tmp_path / "s.npz", crops=crops, labels=labels)
    (tmp_path / "model.json").write_text(json.dumps({"verifier": {}}))
    train_slots(tmp_path / "s.npz", tmp_path, minutes=60, max_steps=120, batch=32, seed=0,
                val_fraction=0.25, threads=1)
    shutil.copy(tmp_path / SLOT_FILE, tmp_path / "float.onnx")
    q = quantize_slots(tmp_path, tmp_path / "s.npz", n=100)
    assert q["decision_agreement"] >= 0.95 and q["prob_mean_abs_diff"] < 0.05
    assert (tmp_path / SLOT_FILE).stat().st_size < (tmp_path / "float.onnx").stat().st_size
    block = json.loads((tmp_path / "model.json").read_text())["verifier"]["container_neighbours"]
    assert block["quantized"] == q and block["training"]["steps"] == 120
    m = SLOT_MARGIN
    x = crops[:, m:-m, m:-m]
    p8 = SlotClassifier(tmp_path / SLOT_FILE, threads=1)(x)
    p32 = SlotClassifier(tmp_path / "float.onnx", threads=1)(x)
    assert np.mean((p8 >= 0.5) == (p32 >= 0.5)) >= 0.95
    assert np.mean((p8 >= 0.5) == (labels == 1)) >= 0.8


def test_slot_setting_is_chosen_only_when_it_beats_not_looking():
    from railwatch.train.calibrate import best_slot_setting

    def t(cf1):
        return {"f1": 0.9, "container_f1": cf1, "count_error": 0.05}

    table = {None: t(0.86), (0.5, 1, 0): t(0.87), (0.7, 1, 0): t(0.87), (0.7, 2, 0): t(0.865),
             (0.7, 1, 0.4): t(0.87), (0.7, 1, 0.2): t(0.869)}
    assert best_slot_setting(table) == (0.7, 1, 0)  # ties: stricter probability, no check
    table[(0.7, 1, 0.4)] = t(0.88)
    assert best_slot_setting(table) == (0.7, 1, 0.4)
    table = {None: t(0.86), (0.5, 1, 0): t(0.8605), (0.7, 2, 0): t(0.85)}
    assert best_slot_setting(table) is None


def test_train_slots_needs_a_detector_and_verifier(tmp_path):
    shutil.copy(model_dir() / "railwatch-det.onnx", tmp_path)
    r = CliRunner().invoke(app, ["train-slots", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "railwatch-ver.onnx" in r.output


def test_train_slots_command_writes_a_slot_classifier_the_detector_loads(tmp_path):
    for f in ("railwatch-det.onnx", "railwatch-ver.onnx", "railwatch-ver2.onnx",
              "railwatch-box.onnx"):
        shutil.copy(model_dir() / f, tmp_path)
    meta = json.loads((model_dir() / "model.json").read_text())
    meta["verifier"].pop("container_neighbours")
    (tmp_path / "model.json").write_text(json.dumps(meta))
    assert Detector(tmp_path).slots is None
    r = CliRunner().invoke(app, ["train-slots", "--out", str(tmp_path), "--chips", "4",
                                 "--minutes", "0.05", "--workers", "1", "--threads", "1",
                                 "--no-calibrate", "--data", str(tmp_path / "s.npz")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.npz").exists()  # --data keeps the harvest for re-use
    det = Detector(tmp_path)
    assert det.slots is not None and det.slots_note.startswith("railwatch-slot.onnx")
    block = json.loads((tmp_path / "model.json").read_text())["verifier"]["container_neighbours"]
    assert "8-bit slot classifier" in r.output and "int8" in block["quantized"]["method"]
    p = det.slots(np.full((3, CROP_H, CROP_W, 3), 90, np.uint8))
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))
