"""The box refiner: targets in the crop's frame, moving boxes by them, and its training."""

import cv2
import numpy as np
import pytest

from railwatch.detect.decode import Boxes, box_corners
from railwatch.detect.refine import move_boxes
from railwatch.detect.verify import CROP_H, CROP_W, oriented_crops

CAR = {"cx": 150.5, "cy": 120.5, "angle_rad": 0.5, "length_px": 44.0, "width_px": 6.0,
       "kind": "railcar", "class": "locomotive", "covered": False}


def _image(objs):
    img = np.full((260, 300, 3), 50, np.uint8)
    for o in objs:
        c = box_corners(o["cx"], o["cy"], o["length_px"], o["width_px"], o["angle_rad"])[0]
        cv2.fillConvexPoly(img, np.round((c - 0.5) * 16).astype(np.int32), (250,) * 3, shift=4)
    return img


def _bright_centre(crop):
    rows, cols = np.nonzero(crop[:, :, 0] > 150)
    return cols.mean() - (CROP_W - 1) / 2, rows.mean() - (CROP_H - 1) / 2, np.ptp(cols) + 1


def _boxes(cx, cy, angle, length=30.0):
    n = len(cx)
    z = np.zeros(n)
    return Boxes(np.asarray(cx, float), np.asarray(cy, float), np.full(n, length),
                 np.full(n, 6.0), np.asarray(angle, float), np.zeros(n, int),
                 np.zeros(n, int), z + 0.5, z, z + 0.8, np.zeros((n, 3), np.uint8),
                 np.full(n, np.nan))


@pytest.mark.parametrize("along, across, dangle", [(14.0, 0.0, 0.0), (-16.0, 1.0, 0.05),
                                                    (5.0, 9.0, 0.0), (-3.0, -8.0, -0.04)])
def test_box_targets_point_at_the_car_in_the_crop_frame(along, across, dangle):
    from railwatch.train.verifier import box_targets

    a = CAR["angle_rad"] + dangle
    cx = CAR["cx"] + along * np.cos(a) - across * np.sin(a)
    cy = CAR["cy"] + along * np.sin(a) + across * np.cos(a)
    t = box_targets(np.array([cx]), np.array([cy]), np.array([a]), [CAR], np.array([-1]))
    crop = oriented_crops(_image([CAR]), np.array([cx]), np.array([cy]), np.array([a]))[0]
    u, v, _ = _bright_centre(crop)
    # the target is where the car's centre lies in the crop, as drawn
    assert abs(t[0, 0] - u) < 1.0 and abs(t[0, 1] - v) < 1.0
    assert t[0, 2] == CAR["length_px"]
    # and moving the box by it puts it on the car, with the car's length
    b = move_boxes(_boxes([cx], [cy], [a]), np.array([0]), t, max_shift_px=40, set_length=True)
    assert abs(b.cx[0] - CAR["cx"]) < 0.6 and abs(b.cy[0] - CAR["cy"]) < 0.6
    assert b.length[0] == CAR["length_px"]


def test_box_targets_leave_out_far_boxes_containers_and_occluded_cars():
    from railwatch.train.verifier import box_targets

    c, s = np.cos(CAR["angle_rad"]), np.sin(CAR["angle_rad"])
    # beyond the car's end; 10 m across (beyond REFINE_ACROSS_M); crossing it at right angles
    cx = CAR["cx"] + np.array([40.0 * c, -20.0 * s, 0.0])
    cy = CAR["cy"] + np.array([40.0 * s, 20.0 * c, 0.0])
    ang = np.array([CAR["angle_rad"], CAR["angle_rad"], CAR["angle_rad"] + np.pi / 2])
    t = box_targets(cx, cy, ang, [CAR], np.full(3, -1))
    assert np.isnan(t).all()
    cont = dict(CAR, kind="container")
    hidden = dict(CAR, occluded=True)
    near = (np.array([CAR["cx"]]), np.array([CAR["cy"]]), np.array([CAR["angle_rad"]]))
    assert np.isnan(box_targets(*near, [cont], np.array([-1]))).all()
    assert np.isnan(box_targets(*near, [hidden], np.array([-1]))).all()
    assert np.isnan(box_targets(*near, [cont], np.array([0]))).all()  # matched container
    # of two parallel cars the box moves onto the one across from it, not the far one
    other = dict(CAR, cx=CAR["cx"] - 10 * s, cy=CAR["cy"] + 10 * c)  # 5 m across
    box = (np.array([CAR["cx"] - 7 * s]), np.array([CAR["cy"] + 7 * c]),
           np.array([CAR["angle_rad"]]))
    t = box_targets(*box, [CAR, other], np.array([-1]))
    assert abs(t[0, 1] - 3.0) < 1e-6 and abs(t[0, 0]) < 1e-6


def test_move_boxes_leaves_unlisted_boxes_and_distrusts_long_moves():
    b = _boxes([50.0, 100.0, 150.0], [50.0, 50.0, 50.0], [0.0, 0.0, np.pi / 2])
    pred = np.array([[10.0, 2.0, 50.0], [100.0, 0.0, 50.0]], np.float32)
    out = move_boxes(b, np.array([2, 1]), pred, max_shift_px=40, set_length=True)
    # box 2 runs down the image: along = +y, across = -x
    assert out.cx[2] == pytest.approx(148.0) and out.cy[2] == pytest.approx(60.0)
    assert out.length[2] == 50.0
    assert out.cx[1] == 100.0 and out.length[1] == 30.0  # 100 px: not trusted
    assert out.cx[0] == 50.0 and b.cx[2] == 150.0  # others and the input unchanged
    same = move_boxes(b, np.array([2]), pred[:1], max_shift_px=40)
    assert same.cy[2] == pytest.approx(60.0) and same.length[2] == 30.0  # moved, own length


def test_refiner_augmentation_moves_targets_with_the_crop():
    from railwatch.train.refiner import augment
    from railwatch.train.verifier import MARGIN, box_targets

    a = CAR["angle_rad"]
    cx = np.array([CAR["cx"] + 12 * np.cos(a) - 4 * np.sin(a)])
    cy = np.array([CAR["cy"] + 12 * np.sin(a) + 4 * np.cos(a)])
    size = (CROP_H + 2 * MARGIN, CROP_W + 2 * MARGIN)
    crops = oriented_crops(_image([CAR]), cx, cy, np.array([a]), size)
    t = box_targets(cx, cy, np.array([a]), [CAR], np.array([-1]))
    rng = np.random.default_rng(0)
    for _ in range(12):
        x, tt = augment(np.repeat(crops, 4, 0), np.repeat(t, 4, 0), rng)
        for k in range(4):
            u, v, _ = _bright_centre(x[k])
            assert abs(tt[k, 0] - u) < 1.0 and abs(tt[k, 1] - v) < 1.0


def test_refiner_training_learns_and_onnx_matches_torch(tmp_path):
    import json

    import onnxruntime as ort
    import torch

    from railwatch.train.refiner import RefNet, export_refiner, train_refiner
    from railwatch.train.verifier import MARGIN, box_targets

    rng = np.random.default_rng(1)
    n = 160
    crops, targets = [], []
    size = (CROP_H + 2 * MARGIN, CROP_W + 2 * MARGIN)
    img = _image([CAR])
    a = CAR["angle_rad"]
    du, dv = rng.uniform(-25, 25, n), rng.uniform(-3, 3, n)
    cx = CAR["cx"] + du * np.cos(a) - dv * np.sin(a)
    cy = CAR["cy"] + du * np.sin(a) + dv * np.cos(a)
    crops = oriented_crops(img, cx, cy, np.full(n, a), size)
    targets = box_targets(cx, cy, np.full(n, a), [CAR], np.full(n, -1))
    labels = np.tile([1, 4, 0], (n, 1)).astype(np.int8)
    np.savez(tmp_path / "d.npz", crops=crops, labels=labels, flags=np.full(n, 2, np.int8),
             targets=targets)
    block = train_refiner(tmp_path / "d.npz", tmp_path, minutes=60, max_steps=80, batch=16,
                          seed=0, val_fraction=0.2, jitter=False, threads=1)
    v = block["training"]["validation"]
    assert block["training"]["steps"] == 80
    assert v["median_offset_after_px"] < 0.6 * v["median_offset_before_px"]
    assert json.loads((tmp_path / "model.json").read_text())["refiner"]["file"] == block["file"]
    # an 8-bit copy moves boxes where the float one does
    from railwatch.train.refiner import quantize_refiner

    q = quantize_refiner(tmp_path / block["file"], tmp_path / "q.onnx", tmp_path / "d.npz", n=60)
    assert q["move_diff_p95_px"] < 1.0 and q["length_diff_median"] < 0.05
    assert (tmp_path / "q.onnx").stat().st_size < (tmp_path / block["file"]).stat().st_size
    torch.manual_seed(0)
    net = RefNet().eval()
    x = torch.from_numpy(crops[:8, MARGIN:-MARGIN, MARGIN:-MARGIN].transpose(0, 3, 1, 2)
                         .copy()).float()
    path = export_refiner(net, tmp_path / "r.onnx")
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"crops": x.numpy()})[0]
    with torch.no_grad():
        y = net(x).numpy()
    np.testing.assert_allclose(got[:, :2], y[:, :2] * 16.0, atol=1e-3)
    np.testing.assert_allclose(got[:, 2], 36.0 * np.exp(y[:, 2]), rtol=1e-4)


def test_train_refiner_on_a_harvest_without_box_targets_is_a_one_line_error(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from railwatch.cli.main import app
    from railwatch.detect import model_dir

    shutil.copy(model_dir() / "railwatch-det.onnx", tmp_path)
    old = tmp_path / "old.npz"
    np.savez(old, crops=np.zeros((4, 40, 104, 3), np.uint8), labels=np.ones((4, 3), np.int8),
             flags=np.ones(4, np.int8))
    r = CliRunner().invoke(app, ["train-refiner", "--out", str(tmp_path), "--data", str(old)])
    assert r.exit_code == 2
    assert "old.npz" in r.output and "no box targets" in r.output
    assert not (tmp_path / "railwatch-box.onnx").exists()


def test_a_model_folder_with_a_refiner_moves_boxes_and_says_so(tmp_path):
    import shutil

    import torch

    from railwatch.detect import Detector, detect, model_dir
    from railwatch.detect.refine import REFINER_FILE
    from railwatch.train.refiner import RefNet, export_refiner
    from railwatch.train.testsets import write_sim_scene
    from railwatch.train.verifier import update_model_meta

    for f in model_dir().iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    torch.manual_seed(0)
    export_refiner(RefNet().eval(), tmp_path / REFINER_FILE)
    update_model_meta(tmp_path, "refiner", {"file": REFINER_FILE, "version": "t",
                                            "max_shift_m": 20.0})
    three = Detector(tmp_path, threads=1)
    assert three.refiner is not None and three.refiner_note == f"{REFINER_FILE} t"
    assert three.refiner.max_shift_px == 20.0 / three.native_gsd_m
    two = Detector(tmp_path, threads=1, refine=False)
    assert two.refiner is None and two.verifier is not None
    write_sim_scene(tmp_path, "s", 880003, 300, 0.5)
    moved, kept = detect(tmp_path / "s.tif", three), detect(tmp_path / "s.tif", two)
    assert moved.meta["refiner"] == f"{REFINER_FILE} t" and kept.meta["refiner"] is None
    assert len(kept) > 0
    # even an untrained refiner moves railcar boxes (containers stay where they are)
    a, b = moved.railcars.centers, kept.railcars.centers
    assert a.shape != b.shape or np.abs(a - b).max() > 0.01
    np.testing.assert_allclose(moved.containers.centers, kept.containers.centers)
    # without its file the refiner is skipped, or refused when asked for
    from railwatch.errors import InputError

    (tmp_path / REFINER_FILE).unlink()
    assert Detector(tmp_path, threads=1).refiner is None
    with pytest.raises(InputError, match="no box refiner"):
        Detector(tmp_path, threads=1, refine=True)


def test_each_refiner_step_cuts_a_new_crop_at_the_moved_box():
    from railwatch.detect.refine import Refiner

    class HalfWay(Refiner):
        """Moves half the way to the bright car it sees in each crop."""

        def __init__(self, steps):
            self.max_shift_px, self.set_length, self.steps = 40.0, False, steps

        def predict(self, crops, batch=256):
            return np.array([[*(0.5 * np.array(_bright_centre(c)[:2])), 0.0] for c in crops])

    img = _image([CAR])
    a = CAR["angle_rad"]
    start = (CAR["cx"] + 16 * np.cos(a), CAR["cy"] + 16 * np.sin(a))  # 16 px along
    for steps, left in ((1, 8.0), (2, 4.0), (3, 2.0)):
        b = HalfWay(steps).refine(img, _boxes([start[0]], [start[1]], [a]), np.array([0]))
        assert np.hypot(b.cx[0] - CAR["cx"], b.cy[0] - CAR["cy"]) == pytest.approx(left, abs=0.6)
        assert b.length[0] == 30.0
