"""Evaluation: one-to-one matching within 4 m, occluded truth, confusion, slices, CLI."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from railwatch.cli.main import app
from railwatch.errors import InputError
from railwatch.evaluate import CI_METRICS, evaluate, match
from railwatch.geojson import write_geojson
from railwatch.types import Detections

X0, Y0 = 500000.0, 4700000.0


def _dets(centres, kinds=None, classes=None, covered=None, occluded=None, score=True):
    n = len(centres)
    fps = []
    for x, y in centres:
        fps.append([[x - 7.5, y - 1.5], [x + 7.5, y - 1.5], [x + 7.5, y + 1.5], [x - 7.5, y + 1.5]])
    kinds = kinds or ["railcar"] * n
    classes = classes or ["boxcar" if k == "railcar" else "" for k in kinds]
    extra = {} if occluded is None else {"occluded": np.array(occluded, dtype=bool)}
    return Detections(footprints=np.array(fps).reshape(n, 4, 2), kind=kinds, cls=classes,
                      score=np.full(n, 0.9 if score else 1.0), covered=covered or [False] * n,
                      color=np.zeros((n, 3)), length_m=np.full(n, 15.0), crs=32652,
                      extra=extra)


def _write(tmp_path, name, truth, pred):
    (tmp_path / "t").mkdir(exist_ok=True)
    (tmp_path / "p").mkdir(exist_ok=True)
    write_geojson(truth, tmp_path / "t" / f"{name}.truth.geojson", include_score=False)
    write_geojson(pred, tmp_path / "p" / f"{name}.geojson")


def test_matching_radius_and_one_to_one():
    truth = _dets([(X0, Y0), (X0 + 16, Y0), (X0 + 100, Y0)])
    pred = _dets([(X0 + 3, Y0), (X0 + 16.5, Y0 + 0.5), (X0 + 16, Y0 + 1), (X0 + 105, Y0)])
    pairs = match(truth.to_crs(4326), pred.to_crs(4326))
    assert sorted(pairs) == [(0, 0), (1, 1)]  # 5 m is too far; each truth used once


def test_metrics_occluded_confusion_and_count_error(tmp_path):
    truth = _dets([(X0 + 16 * i, Y0) for i in range(6)] + [(X0, Y0 + 50)],
                  kinds=["railcar"] * 6 + ["container"],
                  classes=["boxcar", "tank", "tank", "hopper", "boxcar", "flatcar", ""],
                  covered=[False, False, False, True, False, True, False],
                  occluded=[False] * 4 + [True, True, False])
    # pred: first four right (one tank called hopper, covered right), a pred on occluded
    # truth (dropped), a false alarm, the container found
    pred = _dets([(X0, Y0), (X0 + 16, Y0), (X0 + 32, Y0), (X0 + 48, Y0), (X0 + 64, Y0),
                  (X0 + 300, Y0), (X0 + 1, Y0 + 50)],
                 kinds=["railcar"] * 6 + ["container"],
                 classes=["boxcar", "tank", "hopper", "hopper", "boxcar", "tank", ""],
                 covered=[False, False, False, True, False, False, False])
    _write(tmp_path, "img", truth, pred)
    res = evaluate(tmp_path / "t", tmp_path / "p")
    o = res["overall"]
    rail = o["by_kind"]["railcar"]
    assert (rail["tp"], rail["fp"], rail["fn"]) == (4, 1, 0)
    assert rail["truth"] == 4 and rail["predicted"] == 5
    assert o["precision"] == pytest.approx(0.8) and o["recall"] == 1.0
    assert o["count_error"] == pytest.approx(0.25)
    assert o["class_accuracy"] == pytest.approx(0.75)
    assert o["covered_accuracy"] == 1.0
    assert o["container_f1"] == 1.0
    m = np.array(o["confusion"]["matrix"])
    labels = o["confusion"]["labels"]
    assert m[labels.index("tank"), labels.index("hopper")] == 1
    assert m.sum() == 4
    # one image: every bootstrap resample is that image, so each interval is the point
    # value (the resampled metrics are computed as summarise computes them)
    ci = evaluate(tmp_path / "t", tmp_path / "p", bootstrap=20)["overall"]["ci"]
    for key in CI_METRICS:
        assert ci[key] == pytest.approx([o[key], o[key]], abs=1e-4), key


def test_slices_from_manifest(tmp_path):
    names = ["sim_0.3_0", "sim_0.5_1"]  # dots in the names, as the bench's test sets have
    for i, name in enumerate(names):
        t = _dets([(X0 + 16 * k, Y0) for k in range(3)])
        p = _dets([(X0 + 16 * k, Y0) for k in range(3 - i)])
        _write(tmp_path, name, t, p)
    manifest = {"images": [
        {"file": "sim_0.3_0.tif", "gsd_m": 0.31, "snow": 0.0, "cloud_fraction": 0.0,
         "datetime": "2023-07-01T02:00:00Z"},
        {"file": "sim_0.5_1.tif", "gsd_m": 0.5, "snow": 0.8, "cloud_fraction": 0.3,
         "datetime": "2024-01-10T02:00:00Z"}]}
    (tmp_path / "t" / "manifest.json").write_text(json.dumps(manifest))
    res = evaluate(tmp_path / "t", tmp_path / "p")
    assert res["by_gsd"]["0.3"]["recall"] == 1.0
    assert res["by_gsd"]["0.5"]["recall"] == pytest.approx(2 / 3, abs=1e-3)
    assert set(res["slices"]["snow"]) == {"snow", "no snow"}
    assert res["slices"]["season"]["winter"]["images"] == 1
    assert res["slices"]["cloud"]["partial cloud"]["f1"] < 1.0
    assert res["slices"]["density"]["sparse (<10)"]["images"] == 2


def test_error_causes_say_where_false_railcars_lie_and_what_missed_ones_got(tmp_path):
    # truth: a found car, its neighbour (a box 5.5 m off its centre), a car with nothing on
    # it, a car taken for a container, an occluded car (a box on it), a ground container
    truth = _dets([(X0, Y0), (X0 + 16, Y0), (X0 + 200, Y0), (X0 + 400, Y0), (X0 + 600, Y0),
                   (X0, Y0 + 100)], kinds=["railcar"] * 5 + ["container"],
                  occluded=[False, False, False, False, True, False])
    pred = _dets([(X0 + 0.5, Y0), (X0 + 21.5, Y0), (X0, Y0 + 5), (X0 + 1, Y0 + 100),
                  (X0 + 1000, Y0), (X0 + 400, Y0), (X0 + 600.5, Y0)],
                 kinds=["railcar"] * 5 + ["container", "railcar"])
    _write(tmp_path, "img", truth, pred)
    o = evaluate(tmp_path / "t", tmp_path / "p")["overall"]
    assert o["errors"] == {"false_on_a_car": 1, "false_beside_a_car": 1,
                           "false_on_a_container": 1, "false_elsewhere": 1,
                           "missed_box_off_centre": 1, "missed_taken_for_container": 1,
                           "missed_no_box": 1}
    rail = o["by_kind"]["railcar"]
    assert (rail["fp"], rail["fn"]) == (4, 3)  # the causes add up to the errors


def test_class_accuracy_by_band_of_the_class_score(tmp_path):
    truth = _dets([(X0 + 16 * i, Y0) for i in range(5)],
                  classes=["boxcar", "tank", "tank", "hopper", "boxcar"],
                  occluded=[False] * 4 + [True])
    # listed in another order than the truth: the false alarm, then right to left
    pred = _dets([(X0 + 300, Y0)] + [(X0 + 16 * i, Y0) for i in range(4, -1, -1)],
                 classes=["tank", "tank", "hopper", "hopper", "tank", "boxcar"])
    # right at 1 and 0.92, wrong at 0.6, right at 0.3; the car on occluded truth and
    # the false alarm (both wrong, sure of it) are not scored
    pred.extra["class_score"] = np.array([0.99, 0.99, 0.3, 0.6, 0.92, 1.0])
    _write(tmp_path, "img", truth, pred)
    bands = evaluate(tmp_path / "t", tmp_path / "p")["overall"]["class_reliability"]
    got = [(b["from"], b["to"], b["cars"], b["accuracy"]) for b in bands]
    assert got == [(0.0, 0.5, 1, 1.0), (0.5, 0.7, 1, 0.0), (0.7, 0.9, 0, None),
                   (0.9, 1.0, 2, 1.0)]
    assert bands[3]["mean_score"] == pytest.approx(0.96) and bands[3]["share"] == 0.5
    r = CliRunner().invoke(app, ["evaluate", "--truth", str(tmp_path / "t"), "--pred",
                                 str(tmp_path / "p"), "--ci", "0"])
    assert r.exit_code == 0 and "is the class score right?" in r.stdout
    assert "0.9-1.0" in r.stdout
    # predictions of a tool without class scores: no table
    _write(tmp_path, "img", truth, _dets([(X0 + 16 * i, Y0) for i in range(5)]))
    assert evaluate(tmp_path / "t", tmp_path / "p")["overall"]["class_reliability"] is None


def test_length_error_of_matched_railcars_by_true_class(tmp_path):
    truth = _dets([(X0 + 30 * i, Y0) for i in range(5)],
                  classes=["boxcar", "boxcar", "boxcar", "passenger", "tank"],
                  occluded=[False] * 4 + [True])
    truth.length_m[:] = [15.0, 16.0, 17.0, 25.0, 12.0]
    # listed right to left, with a false alarm: lengths must follow the matching
    pred = _dets([(X0 + 30 * i, Y0) for i in range(4, -1, -1)] + [(X0 + 500, Y0)],
                 classes=["tank", "passenger", "boxcar", "boxcar", "tank", "boxcar"])
    pred.length_m[:] = [40.0, 19.0, 16.0, 15.0, 16.0, 30.0]
    _write(tmp_path, "img", truth, pred)
    ln = evaluate(tmp_path / "t", tmp_path / "p")["overall"]["length_error"]
    # boxcars +1, -1, -1; passenger -6 (called a boxcar or not: by the true class); the
    # car on occluded truth and the false alarm are not measured
    assert ln["cars"] == 4 and ln["median_m"] == -1.0 and ln["median_abs_m"] == 1.0
    assert ln["by_class"]["boxcar"] == {"cars": 3, "median_m": -1.0, "median_abs_m": 1.0}
    assert ln["by_class"]["passenger"] == {"cars": 1, "median_m": -6.0, "median_abs_m": 6.0}
    assert set(ln["by_class"]) == {"boxcar", "passenger"}
    r = CliRunner().invoke(app, ["evaluate", "--truth", str(tmp_path / "t"), "--pred",
                                 str(tmp_path / "p"), "--ci", "0"])
    assert r.exit_code == 0 and "railcar length" in r.stdout and "-6.0" in r.stdout
    _write(tmp_path, "img", truth, _dets([(X0 + 900, Y0)]))  # nothing matched
    assert evaluate(tmp_path / "t", tmp_path / "p")["overall"]["length_error"] is None


def test_cli_json_and_tables(tmp_path):
    _write(tmp_path, "a", _dets([(X0, Y0)]), _dets([(X0 + 1, Y0)]))
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", "--truth", str(tmp_path / "t"), "--pred",
                            str(tmp_path / "p"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["overall"]["f1"] == 1.0
    r = runner.invoke(app, ["evaluate", "--truth", str(tmp_path / "t"), "--pred",
                            str(tmp_path / "p")])
    assert r.exit_code == 0 and "precision" in r.stdout
    assert "false railcars: 0 on a car" in r.stdout and "missed railcars: 0 box off" in r.stdout
    r = runner.invoke(app, ["evaluate", "--truth", str(tmp_path / "nope"), "--pred",
                            str(tmp_path / "p")])
    assert r.exit_code == 2 and "not found" in r.output


def test_no_truth_is_an_input_error(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "p").mkdir()
    with pytest.raises(InputError, match="truth.geojson"):
        evaluate(tmp_path / "t", tmp_path / "p")


def test_bootstrap_intervals_over_images(tmp_path):
    # ten images: five perfect, five finding half of their four cars (recall 0.75 overall)
    for i in range(10):
        t = _dets([(X0 + 16 * k, Y0) for k in range(4)])
        p = _dets([(X0 + 16 * k, Y0) for k in range(4 if i < 5 else 2)])
        _write(tmp_path, f"img{i}", t, p)
    res = evaluate(tmp_path / "t", tmp_path / "p", bootstrap=500)
    o = res["overall"]
    assert o["recall"] == pytest.approx(0.75)
    lo, hi = o["ci"]["recall"]
    assert lo < 0.75 < hi  # images differ, so resamples do
    assert lo >= 0.5 and hi <= 1.0  # no resample can do worse than all-half or better than all
    assert o["ci"]["precision"] == [1.0, 1.0]  # no false alarm in any image
    assert o["ci"]["class_accuracy"] == [1.0, 1.0]
    assert o["ci"]["container_f1"] == [1.0, 1.0]  # no containers: nothing to miss
    assert all(m["ci"]["recall"] for m in res["slices"]["density"].values())
    # seeded: the same intervals again; without bootstrap, none
    assert evaluate(tmp_path / "t", tmp_path / "p", bootstrap=500)["overall"]["ci"] == o["ci"]
    assert "ci" not in evaluate(tmp_path / "t", tmp_path / "p")["overall"]
    # more images of the same mix: a narrower interval
    for i in range(10, 40):
        t = _dets([(X0 + 16 * k, Y0) for k in range(4)])
        p = _dets([(X0 + 16 * k, Y0) for k in range(4 if i % 2 else 2)])
        _write(tmp_path, f"img{i}", t, p)
    lo2, hi2 = evaluate(tmp_path / "t", tmp_path / "p", bootstrap=500)["overall"]["ci"]["recall"]
    assert hi2 - lo2 < hi - lo
    r = CliRunner().invoke(app, ["evaluate", "--truth", str(tmp_path / "t"), "--pred",
                                 str(tmp_path / "p"), "--ci", "200"])
    assert r.exit_code == 0 and "bootstrap" in r.stdout
