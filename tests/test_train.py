"""Training: target encoding, a tiny run that reduces the loss, ONNX parity with torch."""

import json
import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the optional torch extra")

from typer.testing import CliRunner  # noqa: E402

from railwatch.cli.main import app  # noqa: E402
from railwatch.errors import InputError  # noqa: E402
from railwatch.train.export import export_onnx  # noqa: E402
from railwatch.train.loop import TrainConfig, to_native, train  # noqa: E402
from railwatch.train.model import Exported, RailDet  # noqa: E402
from railwatch.train.synth import generate_chip  # noqa: E402
from railwatch.train.targets import encode  # noqa: E402


def _obj(cx, cy, kind="railcar", cls="tank", occluded=False):
    return dict(cx=cx, cy=cy, length_px=30.0, width_px=6.0, angle_rad=0.3, kind=kind,
                **{"class": cls}, covered=True, occluded=occluded)


def test_encode_puts_centres_classes_and_ignores_occluded():
    t = encode([_obj(41.0, 61.0), _obj(100.0, 20.0, kind="container", cls=""),
                _obj(20.0, 100.0, occluded=True)], chip_px=128)
    assert t["heat"].shape == (2, 64, 64)
    assert t["heat"][0, 30, 20] == 1.0 and t["heat"][1, 10, 50] == 1.0
    assert t["cls"][30, 20] == 1 and t["covered"][30, 20] == 1.0
    assert t["cls"][10, 50] == -1
    assert t["reg"][2, 30, 20] == pytest.approx(math.log(30))
    assert t["reg"][4, 30, 20] == pytest.approx(math.sin(0.6))
    assert t["heat_mask"][0, 50, 10] == 0.0 and t["heat"][0, 50, 10] == 0.0
    assert t["heat_mask"][0, 30, 20] == 1.0


def test_to_native_scales_image_and_objects():
    img = np.zeros((100, 100, 3), np.uint8)
    out, objs = to_native(img, [_obj(49.5, 49.5)], gsd=0.3)
    assert out.shape[:2] == (60, 60)
    assert objs[0]["cx"] == pytest.approx(29.5) and objs[0]["length_px"] == pytest.approx(18)


def test_renderer_is_seeded_and_labels_objects():
    a, oa = generate_chip(np.random.default_rng(3), 128, 0.5)
    b, ob = generate_chip(np.random.default_rng(3), 128, 0.5)
    assert np.array_equal(a, b) and len(oa) == len(ob)
    assert a.shape == (128, 128, 3) and a.dtype == np.uint8


def _boxcar_roof_detail(gsd: float, seed: int, model_gsd: float = 0.5) -> float:
    """Mean |roof - body colour| of a grey boxcar drawn at ``gsd``, seen at ``model_gsd``
    (the middle 12 m x 2 m of its roof: ribs and centre line)."""
    import cv2

    from railwatch.train.synth import _draw_car

    px_m = 1 / gsd
    size = int(40 * px_m)
    img = np.full((size, size, 3), 60, np.uint8)
    _draw_car(np.random.default_rng(seed), img, size / 2, size / 2, 15 * px_m, 3 * px_m, 0.0,
              "boxcar", np.array([150.0, 150, 150]), False, False, px_m)
    f = gsd / model_gsd
    seen = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)[..., 1]
    c, half = seen.shape[0] // 2, int(6 / model_gsd)
    return float(np.abs(seen[c - 2:c + 2, c - half:c + half].astype(float) - 150).mean())


def test_boxcar_roof_detail_survives_resampling_from_fine_gsd():
    # drawn 1 px wide at every GSD, a 0.3 m image's ribs kept 0.68 of the 0.5 m one's
    # detail once resampled to the model's 0.5 m (20 cars each); in metres, 1.4 times
    fine = np.mean([_boxcar_roof_detail(0.3, s) for s in range(20)])
    native = np.mean([_boxcar_roof_detail(0.5, s) for s in range(20)])
    assert native > 5.0  # the roof has ribs to lose
    assert fine >= 0.9 * native


def _batch(n=2, px=96):
    from railwatch.train.loop import _fit

    rng = np.random.default_rng(11)
    items = []
    while len(items) < n:
        image, objs = generate_chip(rng, px, 0.5)
        if sum(o["kind"] == "railcar" for o in objs) >= 3:
            image, objs = _fit(image, objs, px, rng)
            t = encode(objs, px)
            t["image"] = image.transpose(2, 0, 1).astype(np.float32)
            items.append(t)
    return {k: torch.as_tensor(np.stack([it[k] for it in items])) for k in items[0]}


def test_tiny_training_reduces_the_loss():
    from railwatch.train.loss import detection_loss

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = RailDet(8)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    batch = _batch()
    losses = []
    for _ in range(40):
        parts = detection_loss(net(batch["image"] / 255.0 - 0.5), batch)
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
        losses.append(float(parts["total"]))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])


def test_train_loop_writes_model_files(tmp_path):
    losses = []
    cfg = TrainConfig(steps=4, batch=2, chip_px=64, width=4, workers=0, seed=1, threads=1)
    meta = train(tmp_path, cfg, log=lambda s: None, on_step=lambda i, v: losses.append(v["total"]))
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert (tmp_path / "railwatch-det.onnx").exists() and (tmp_path / "checkpoint.pt").exists()
    assert meta["native_gsd_m"] == 0.5 and meta["training"]["steps_done"] == 4
    assert json.loads((tmp_path / "model.json").read_text())["classes"][0] == "boxcar"


def test_onnx_matches_torch(tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    net = RailDet(8)
    net.eval()
    for m in net.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = export_onnx(net, tmp_path / "m.onnx")
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 96, 160)).astype(np.float32)
    with torch.no_grad():
        tp, tm = Exported(net)(torch.from_numpy(x))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    op, om = sess.run(None, {"image": x})
    assert op.shape == (1, 2, 48, 80) and om.shape == (1, 14, 48, 80)
    assert np.abs(om - tm.numpy()).max() < 1e-4
    # peaks: same values; a 3x3 max-pool tie on a near-flat untrained map may flip a few
    tp = tp.numpy()
    both = (op > 0) & (tp > 0)
    assert np.abs(op - tp)[both].max() < 1e-4
    assert ((op > 0) != (tp > 0)).mean() < 0.01


def test_warm_start_from_onnx_reproduces_the_exported_model(tmp_path):
    import onnxruntime as ort

    from railwatch.train.loop import init_from_onnx

    torch.manual_seed(1)
    src = RailDet(8)
    src.eval()
    for m in src.modules():  # BatchNorms that the exporter folds into the convolutions
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    path = export_onnx(src, tmp_path / "m.onnx")
    dst = RailDet(8)
    init_from_onnx(dst, path)
    dst.eval()
    x = np.random.default_rng(2).uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _, om = sess.run(None, {"image": x})
    with torch.no_grad():
        _, tm = Exported(dst)(torch.from_numpy(x))
    assert np.abs(om - tm.numpy()).max() < 1e-4
    with pytest.raises(InputError, match="does not fit"):  # another width
        init_from_onnx(RailDet(4), path)


@pytest.mark.parametrize("command, module", [("train", "railwatch.train.loop"),
                                             ("train-verifier", "railwatch.train.verifier"),
                                             ("train-refiner", "railwatch.train.refiner"),
                                             ("train-slots", "railwatch.train.slots"),
                                             ("train-structures",
                                              "railwatch.train.structures")])
def test_train_command_without_torch_is_a_clear_error(tmp_path, monkeypatch, command, module):
    monkeypatch.setitem(sys.modules, module, None)
    r = CliRunner().invoke(app, [command, "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "torch extra" in r.output


def test_verifier_data_labels_candidates_and_truth(tmp_path):
    from railwatch.detect.verify import CROP_H, CROP_W
    from railwatch.train.verifier import MARGIN, build_data

    counts = build_data(tmp_path / "crops.npz", chips=6, seed=3, workers=1)
    d = np.load(tmp_path / "crops.npz")
    assert d["crops"].shape[1:] == (CROP_H + 2 * MARGIN, CROP_W + 2 * MARGIN, 3)
    labels, flags = d["labels"], d["flags"]
    assert counts["samples"] == len(labels) == len(flags) > 0
    assert set(np.unique(labels[:, 0])) <= {0, 1, 2} and counts["railcar"] > 0
    railcar = labels[:, 0] == 1
    assert (labels[railcar, 1] >= 0).all() and (labels[~railcar, 1] == -1).all()
    assert (labels[~railcar, 2] == -1).all()  # covered only for railcars
    assert (labels[flags == 0, 0] != 0).all()  # jittered truth is never background
    # reproducible from the seed
    build_data(tmp_path / "again.npz", chips=6, seed=3, workers=1)
    assert np.array_equal(np.load(tmp_path / "again.npz")["labels"], labels)


def test_verifier_training_learns_and_onnx_matches_torch(tmp_path):
    import onnxruntime as ort

    from railwatch.train.verifier import VerNet, export_verifier, train_verifier

    rng = np.random.default_rng(0)
    n = 240
    labels = np.zeros((n, 3), np.int8)
    labels[:, 0] = rng.integers(0, 3, n)
    labels[:, 1] = np.where(labels[:, 0] == 1, rng.integers(0, 7, n), -1)
    labels[:, 2] = np.where(labels[:, 0] == 1, rng.integers(0, 2, n), -1)
    # separable crops: the kind shows as the brightness of the middle
    crops = rng.integers(0, 60, (n, 40, 104, 3)).astype(np.uint8)
    crops[:, 12:28, 20:84] += (labels[:, 0] * 80).astype(np.uint8)[:, None, None, None]
    # two harvest files, pooled
    for name, part in (("d1.npz", slice(0, 100)), ("d2.npz", slice(100, n))):
        np.savez(tmp_path / name, crops=crops[part], labels=labels[part],
                 flags=np.ones(n, np.int8)[part])
    (tmp_path / "model.json").write_text(json.dumps(
        {"name": "x", "verifier": {"second": {"file": "old-part.onnx"}}}))
    block = train_verifier([tmp_path / "d1.npz", tmp_path / "d2.npz"], tmp_path, minutes=60,
                           max_steps=80, seed=0, batch=32, val_fraction=0.2)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["name"] == "x" and meta["verifier"]["file"] == "railwatch-ver.onnx"
    assert "second" not in meta["verifier"]  # an earlier verifier's second part is dropped
    assert block["training"]["steps"] == 80
    assert block["training"]["samples"] + block["training"]["validation_samples"] == n
    assert block["training"]["validation"]["kind_accuracy"] > 0.6  # chance: 1/3
    # ONNX export: same probabilities as torch
    torch.manual_seed(0)
    net = VerNet().eval()
    x = torch.from_numpy(crops[:16, 4:36, 4:100].transpose(0, 3, 1, 2).copy()).float()
    path = export_verifier(net, tmp_path / "v.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    k, c, v = sess.run(None, {"crops": x.numpy()})
    with torch.no_grad():
        tk, tc, tv = net(x)
    assert np.abs(k - torch.softmax(tk, 1).numpy()).max() < 1e-4
    assert np.abs(c - torch.softmax(tc, 1).numpy()).max() < 1e-4
    assert np.abs(v - torch.sigmoid(tv).numpy()).max() < 1e-4


def test_train_verifier_needs_a_detector(tmp_path):
    r = CliRunner().invoke(app, ["train-verifier", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "railwatch-det.onnx" in r.output


def test_train_verifier_harvests_into_one_missing_data_file_only(tmp_path):
    from railwatch.detect import model_dir

    (tmp_path / "railwatch-det.onnx").write_bytes((model_dir() / "railwatch-det.onnx").read_bytes())
    r = CliRunner().invoke(app, ["train-verifier", "--out", str(tmp_path),
                                 "--data", str(tmp_path / "a.npz"),
                                 "--data", str(tmp_path / "b.npz")])
    assert r.exit_code == 2 and "only one --data file" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["railwatch-det.onnx"]


def test_averaged_verifiers_give_the_mean_probabilities(tmp_path):
    import onnxruntime as ort

    from railwatch.train.verifier import VerNet, average_verifiers, export_verifier

    paths = []
    for k in range(3):
        torch.manual_seed(k)
        paths.append(export_verifier(VerNet().eval(), tmp_path / f"v{k}.onnx"))
    out = average_verifiers(paths, tmp_path / "mean.onnx")
    x = np.random.default_rng(0).uniform(0, 255, (5, 3, 32, 96)).astype(np.float32)
    runs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"crops": x})
            for p in (*paths, out)]
    for j in range(3):  # kind, class, covered
        expect = np.mean([r[j] for r in runs[:3]], axis=0)
        assert np.abs(runs[3][j] - expect).max() < 1e-5
    with pytest.raises(ValueError):
        average_verifiers(paths[:1], tmp_path / "one.onnx")
    # weighted: one half on the first, a quarter on each of the others
    out = average_verifiers(paths, tmp_path / "w.onnx", weights=[2, 1, 1])
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"crops": x})
    for j in range(3):
        expect = 0.5 * runs[0][j] + 0.25 * runs[1][j] + 0.25 * runs[2][j]
        assert np.abs(got[j] - expect).max() < 1e-5
    with pytest.raises(ValueError):
        average_verifiers(paths, tmp_path / "bad.onnx", weights=[1, 1])


def test_two_part_verifier_asks_the_second_part_only_where_the_first_is_unsure(tmp_path):
    from railwatch.detect.verify import Cascade, Verifier
    from railwatch.errors import InputError
    from railwatch.train.verifier import VerNet, export_verifier

    for k, name in enumerate(("first.onnx", "second.onnx")):
        torch.manual_seed(10 + k)
        export_verifier(VerNet().eval(), tmp_path / name)
    crops = np.random.default_rng(1).integers(0, 255, (40, 32, 96, 3)).astype(np.uint8)
    one = Verifier(tmp_path / "first.onnx").predict(crops)
    two = Verifier(tmp_path / "second.onnx").predict(crops)
    # never sure (no probability reaches 1.01): every crop is the weighted mean
    v = Verifier(tmp_path / "first.onnx", second=Cascade("second.onnx", weight=0.25, kind=1.01))
    p = v.predict(crops)
    assert (v.asked, v.seen) == (40, 40)
    for k in p:
        np.testing.assert_allclose(p[k], 0.75 * one[k] + 0.25 * two[k], atol=1e-6)
    # always sure of the kind, and any class and covered will do: the first part alone
    v = Verifier(tmp_path / "first.onnx",
                 second=Cascade("second.onnx", kind=0.0, cls=0.0, covered=0.0))
    p = v.predict(crops)
    assert v.asked == 0
    for k in p:
        np.testing.assert_allclose(p[k], one[k], atol=1e-6)
    # in between: the crops the first part is sure of keep its answer, the rest are mixed
    c = Cascade("second.onnx", kind=float(np.median(one["kind"].max(axis=1))))
    sure = c.sure(one)
    assert 0 < sure.sum() < len(crops)
    p = Verifier(tmp_path / "first.onnx", second=c).predict(crops)
    np.testing.assert_allclose(p["kind"][sure], one["kind"][sure], atol=1e-6)
    np.testing.assert_allclose(p["kind"][~sure], (one["kind"][~sure] + two["kind"][~sure]) / 2,
                               atol=1e-6)
    with pytest.raises(InputError, match="second part"):
        Verifier(tmp_path / "first.onnx", second=Cascade("missing.onnx"))


def test_quantized_verifier_is_8_bit_smaller_and_follows_the_float_one(tmp_path):
    import onnx
    import onnxruntime as ort

    from railwatch.train.verifier import MARGIN, VerNet, export_verifier, quantize_verifier

    torch.manual_seed(0)
    src = export_verifier(VerNet().eval(), tmp_path / "v.onnx")
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 200, (160, 32 + 2 * MARGIN, 96 + 2 * MARGIN, 3)).astype(np.uint8)
    crops[::2, 14:26, 20:80] = 250  # a bright car in half of them
    np.savez(tmp_path / "d.npz", crops=crops, labels=np.zeros((160, 3), np.int8),
             flags=np.ones(160, np.int8))
    q = quantize_verifier(src, tmp_path / "q.onnx", tmp_path / "d.npz", n=60)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert (tmp_path / "q.onnx").stat().st_size < 0.5 * src.stat().st_size
    assert q["kind_mean_abs_diff"] < 0.05 and q["kind_argmax_agreement"] > 0.8
    x = crops[:8, MARGIN:-MARGIN, MARGIN:-MARGIN].transpose(0, 3, 1, 2).astype(np.float32)
    k = ort.InferenceSession(str(tmp_path / "q.onnx"),
                             providers=["CPUExecutionProvider"]).run(None, {"crops": x})[0]
    np.testing.assert_allclose(k.sum(axis=1), 1, atol=1e-3)
    assert not list(tmp_path.glob(".*tmp"))


def test_train_verifier_command_writes_a_verifier_the_detector_loads(tmp_path):
    import shutil

    from railwatch.detect import Detector, model_dir

    shutil.copy(model_dir() / "railwatch-det.onnx", tmp_path)
    meta = json.loads((model_dir() / "model.json").read_text())
    meta.pop("verifier")
    (tmp_path / "model.json").write_text(json.dumps(meta))
    assert Detector(tmp_path).verifier is None
    r = CliRunner().invoke(app, ["train-verifier", "--out", str(tmp_path), "--chips", "3",
                                 "--minutes", "0.05", "--workers", "1", "--threads", "1",
                                 "--no-calibrate", "--data", str(tmp_path / "crops.npz")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "crops.npz").exists()  # --data keeps the harvest for re-use
    block = json.loads((tmp_path / "model.json").read_text())["verifier"]
    assert block["file"] == "railwatch-ver.onnx" and block["training"]["steps"] >= 1
    assert 0 <= block["quantized"]["kind_argmax_agreement"] <= 1  # shipped as 8-bit
    det = Detector(tmp_path)
    assert det.verifier is not None and det.verifier_note.startswith("railwatch-ver.onnx")
    p = det.verifier.predict(np.full((3, 32, 96, 3), 90, np.uint8))
    assert p["kind"].shape == (3, 3) and p["cls"].shape == (3, 7) and p["covered"].shape == (3,)
    np.testing.assert_allclose(p["kind"].sum(axis=1), 1, atol=1e-5)  # probabilities


def test_cascade_choice_is_the_boldest_setting_that_loses_nothing():
    from railwatch.train.calibrate import boldest_without_loss

    def row(f1, cf1, cls, asked):
        return {"f1": f1, "container_f1": cf1, "class_accuracy": cls, "asked": asked}

    table = {"never": row(0.860, 0.866, 0.845, 1.0),
             "careful": row(0.860, 0.866, 0.845, 0.6),
             "bold": row(0.8605, 0.867, 0.8445, 0.3),     # within the tie: chosen
             "bolder": row(0.862, 0.868, 0.830, 0.2),     # class accuracy drops
             "boldest": row(0.850, 0.860, 0.846, 0.05)}   # F1 drops
    assert boldest_without_loss(table, "never") == "bold"
    assert boldest_without_loss({"never": table["never"]}, "never") == "never"


def test_verifier_thresholds_near_ties_go_to_the_stricter_setting():
    from railwatch.train.calibrate import strictest_near_best

    def row(f1, cf1):
        return {"f1": f1, "container_f1": cf1}

    table = {(0.9, 0.4): row(0.8555, 0.8655), (0.7, 0.4): row(0.8555, 0.8655),
             (0.5, 0.4): row(0.8568, 0.8639), (0.5, 0.35): row(0.8625, 0.8475),
             (0.3, 0.5): row(0.80, 0.80)}
    assert strictest_near_best(table) == (0.5, 0.4)  # 0.0002 below the best: a tie
    assert strictest_near_best(table, tie=0.0) in {(0.9, 0.4), (0.7, 0.4)}
    assert strictest_near_best({(0.5, 0.3): row(0.9, 0.9), (0.5, 0.35): row(0.9, 0.9)}) \
        == (0.5, 0.35)


def test_structure_training_learns_and_onnx_matches_torch(tmp_path):
    from railwatch.analytics.changes.structures import StructureModel
    from railwatch.train.structures import (
        StructNet,
        build_structure_data,
        structnet_from_onnx,
        structure_sample,
        train_structures,
    )

    # the data: rendered yards on the 1 m grid, roofs labelled, reproducible from the seed
    x0, y0 = structure_sample(5, 0, tmp_path)
    x1, y1 = structure_sample(5, 0, tmp_path)
    assert np.array_equal(x0, x1) and np.array_equal(y0, y1)
    assert x0.shape == (320, 320, 3) and x0.dtype == np.uint8
    assert set(np.unique(y0)) <= {0, 1, 255} and (y0 == 1).sum() > 100
    data = tmp_path / "yards.npz"
    assert build_structure_data(data, 4, seed=5, workers=1) == 4
    meta = train_structures(data, tmp_path / "m", max_steps=120, batch=4, crop=96, lr=3e-3,
                            width=8, val_fraction=0.25)
    t = meta["training"]
    assert t["steps"] == 120 and t["final_loss"] < 0.8 * t["first_loss"]
    net = StructNet(8)
    net.load_state_dict(torch.load(tmp_path / "m" / "railwatch-struct.pt"))
    net.eval()
    rgb = x0[:104, :120].astype(np.float32) / 255.0
    with torch.no_grad():
        want = torch.sigmoid(net(torch.from_numpy(rgb.transpose(2, 0, 1)[None].copy())))[0, 0]
    got = StructureModel(tmp_path / "m" / "railwatch-struct.onnx").predict(rgb)
    assert got.shape == (104, 120)
    assert np.abs(got - want.numpy()).max() < 1e-4
    assert json.loads((tmp_path / "m" / "railwatch-struct.json").read_text())["parameters"] > 0

    # a warm start begins where the first run ended and keeps its training record
    again = train_structures(data, tmp_path / "m2", max_steps=20, batch=4, crop=96, lr=1e-3,
                             width=8, val_fraction=0.25,
                             init=tmp_path / "m" / "railwatch-struct.pt")["training"]
    assert again["first_loss"] < 0.8 * t["first_loss"]
    assert again["init"]["steps"] == 120

    # ... and from the exported ONNX alone (the shipped model ships without its .pt): the
    # folded weights give the ONNX model's maps, and training keeps the batch norms fixed
    folded = structnet_from_onnx(tmp_path / "m" / "railwatch-struct.onnx")
    folded.eval()
    with torch.no_grad():
        mine = torch.sigmoid(folded(torch.from_numpy(rgb.transpose(2, 0, 1)[None].copy())))
    assert np.abs(mine[0, 0].numpy() - got).max() < 1e-4
    onnx_start = train_structures(data, tmp_path / "m3", max_steps=20, batch=4, crop=96,
                                  lr=1e-3, val_fraction=0.25,
                                  init=tmp_path / "m" / "railwatch-struct.onnx")["training"]
    assert onnx_start["first_loss"] < 0.8 * t["first_loss"]
    assert onnx_start["init"]["steps"] == 120
    state = torch.load(tmp_path / "m3" / "railwatch-struct.pt")
    assert all(float(v.abs().max()) == 0 for k, v in state.items() if k.endswith("running_mean"))


def test_structure_samples_under_cloud_teach_that_clouds_are_not_roofs(tmp_path):
    from railwatch.train.structures import IGNORE, structure_sample

    hidden, cloud_ground = 0, 0
    for i in range(6):
        x0, y0 = structure_sample(5, i, tmp_path, cloudy_share=0.0)
        x1, y1 = structure_sample(5, i, tmp_path, cloudy_share=1.0)
        assert not ((y0 == 0) & (y1 == 1)).any()  # a cloud never becomes a structure
        hidden += int(((y0 == 1) & (y1 == IGNORE)).sum())  # a roof under cloud is unseen
        # ground turned white by cloud stays a lesson: labelled "no structure", not ignored
        whitened = (x1.mean(axis=2) > 200) & (x0.mean(axis=2) < 170)
        cloud_ground += int((whitened & (y1 == 0)).sum())
    assert hidden > 50 and cloud_ground > 5000


def test_snowy_structure_samples_are_winter_yards_under_deep_snow(tmp_path):
    from railwatch.train.structures import structure_sample

    def white(x: np.ndarray) -> float:
        return float((x.min(axis=2) > 170).mean())

    for i in range(1, 4):  # yards the seed renders without snow
        x0, y0 = structure_sample(5, i, tmp_path, snowy_share=0.0)
        x1, y1 = structure_sample(5, i, tmp_path, snowy_share=1.0)
        # the same yard and buildings (a few may be gone by the winter date) ...
        assert (y1 == 1).sum() > 0.5 * (y0 == 1).sum()
        # ... under deep snow: much of the ground turned white
        assert white(x0) < 0.05 and white(x1) > 0.4


def test_structure_crops_cut_at_an_image_edge_are_ignored_there():
    from railwatch.train.structures import IGNORE, _batch

    rng = np.random.default_rng(3)
    x = np.full((4, 64, 64, 3), 120, np.uint8)
    y = np.zeros((4, 64, 64), np.uint8)
    y[:, 20:40, 20:40] = 1
    xb, yb = _batch(rng, x, y, np.arange(4), 48, nodata_share=1.0)
    for xi, yi in zip(xb.numpy(), yb.numpy(), strict=True):
        gone = (xi == 0).all(axis=0)
        assert 0 < gone.mean() < 1  # every crop cut by a line into image and no-data
        assert (yi[gone] == IGNORE).all() and not (yi[~gone] == IGNORE).any()
    xb, yb = _batch(rng, x, y, np.arange(4), 48)  # off by default
    assert (xb.numpy() > 0).all() and not (yb.numpy() == IGNORE).any()


def test_container_yards_option_reaches_the_simulated_training_chips():
    """``container_yards`` lays the simulator's container lots out as yards: the same
    seeded stream then holds many more container centres."""
    from itertools import islice

    from railwatch.train.loop import ChipStream

    def centres(yards):
        cfg = TrainConfig(sim_fraction=1.0, container_yards=yards, seed=5, chip_px=192)
        return sum(int((t["heat"][1] == 1.0).sum()) for t in islice(iter(ChipStream(cfg)), 12))

    plain, yards = centres(0.0), centres(1.0)
    assert yards > 1.5 * plain + 5, (plain, yards)


def test_a_second_validation_draw_shares_no_scene_with_the_first(tmp_path):
    """``write_validation_scenes(first=...)``: the second draw's scenes have their own
    seeds (names and pixels differ from the first draw's)."""
    import rasterio

    from railwatch.train.calibrate import write_validation_scenes

    a = write_validation_scenes(tmp_path / "a", per_gsd=1, size_m=60.0)
    b = write_validation_scenes(tmp_path / "b", per_gsd=1, size_m=60.0, first=1)
    assert a == ["own_0.3_0", "sim_0.3_0", "own_0.5_0", "sim_0.5_0", "own_0.8_0", "sim_0.8_0"]
    assert b == [n[:-1] + "1" for n in a]
    for na, nb in zip(a, b, strict=True):
        with rasterio.open(tmp_path / "a" / f"{na}.tif") as fa, \
                rasterio.open(tmp_path / "b" / f"{nb}.tif") as fb:
            assert fa.shape == fb.shape and not np.array_equal(fa.read(), fb.read())
