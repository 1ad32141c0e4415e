"""Training chips: labels match pixels, files and COCO agree, determinism, CLI."""

from __future__ import annotations

import datetime as dt
import json
import math

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from railwatch.cli.main import app
from railwatch.simulate.chips import (
    CATEGORIES,
    chip_from_world,
    generate_chip,
    make_chips,
)
from railwatch.simulate.world import Conditions, Containers, Railcars, World


def _world() -> World:
    cars = Railcars(
        x=[0.0], y=[0.0], heading=[math.radians(30.0)], length_m=[16.0], width_m=[3.2],
        cls=["tank"], color=[(230, 30, 30)], covered=[False], load=["none"], train_id=["T"],
        track_id=["t"],
    )
    cont = Containers(x=[-20.0], y=[20.0], heading=[0.0], length_m=[12.19], width_m=[2.44],
                      stack=[2], color=[(30, 30, 230)])
    return World(extent=(-40.0, -40.0, 40.0, 40.0), cars=cars, containers=cont)


def test_chip_labels_match_pixels() -> None:
    cond = Conditions(gsd_m=0.5, noise=0.0, seed=1, when=dt.datetime(2023, 6, 20, 3, 0,
                                                                     tzinfo=dt.UTC))
    image, objects, info = chip_from_world(_world(), cond, chip_px=128)
    assert image.shape == (128, 128, 3) and info["gsd_m"] == 0.5
    assert len(objects) == 2
    car = objects[objects["category_id"] == CATEGORIES.index("tank")][0]
    assert car["cx"] == pytest.approx(64.0, abs=0.01) and car["cy"] == pytest.approx(64.0, abs=0.01)
    assert car["length_px"] == pytest.approx(32.0, abs=0.01)
    assert car["width_px"] == pytest.approx(6.4, abs=0.01)
    # 30 deg north of east is up-right in the image: -30 deg from +x towards +y (down).
    assert car["angle_rad"] == pytest.approx(-math.radians(30.0), abs=1e-4)
    # The red pixels agree with the label: centre, orientation, size within a pixel.
    rg = image[..., 0].astype(float) - image[..., 1].astype(float)
    rows, cols = np.nonzero(rg > 80)
    x, y = cols + 0.5, rows + 0.5
    evals, evecs = np.linalg.eigh(np.cov(np.stack([x, y])))
    assert x.mean() == pytest.approx(car["cx"], abs=1.0)
    assert y.mean() == pytest.approx(car["cy"], abs=1.0)
    ang = math.atan2(evecs[1, 1], evecs[0, 1])
    d = (ang - float(car["angle_rad"]) + math.pi / 2) % math.pi - math.pi / 2
    assert abs(d) < math.radians(3)
    assert math.sqrt(12 * evals[1]) == pytest.approx(car["length_px"], abs=1.5)
    # the ground container: blue pixels inside its box
    box = objects[objects["category_id"] == CATEGORIES.index("container")][0]
    poly = np.round((box["corners"] - 0.5) * 16).astype(np.int32)
    inside = np.zeros((128, 128), np.uint8)
    cv2.fillConvexPoly(inside, poly, 1, cv2.LINE_8, 4)
    blue = image[..., 2].astype(int) - image[..., 0].astype(int) > 80
    assert blue[inside > 0].mean() > 0.8
    assert blue[inside == 0].sum() < 0.1 * blue.sum()


def test_generate_chip_deterministic_and_varied() -> None:
    a_img, a_obj, a_info = generate_chip(np.random.default_rng(7), 96)
    b_img, b_obj, _ = generate_chip(np.random.default_rng(7), 96)
    c_img, _, _ = generate_chip(np.random.default_rng(8), 96)
    assert a_img.tobytes() == b_img.tobytes()
    assert a_obj.tobytes() == b_obj.tobytes()
    assert a_img.tobytes() != c_img.tobytes()
    assert a_img.shape == (96, 96, 3) and "conditions" in a_info


def test_make_chips_files_and_coco(tmp_path) -> None:
    coco = make_chips(6, tmp_path / "chips", seed=3, chip_px=96)
    out = tmp_path / "chips"
    assert (out / "README.md").read_text().startswith("# railwatch training chips")
    disk = json.loads((out / "coco.json").read_text())
    assert disk == json.loads(json.dumps(coco))
    assert [c["name"] for c in disk["categories"]] == list(CATEGORIES)
    n_obj = 0
    for i in range(6):
        img = cv2.imread(str(out / "images" / f"chip_{i:06d}.png"))
        assert img.shape == (96, 96, 3)
        lab = json.loads((out / "labels" / f"chip_{i:06d}.json").read_text())
        assert lab["gsd_m"] > 0 and lab["width"] == 96
        for o in lab["objects"]:
            n_obj += 1
            assert 0 <= o["cx"] < 96 and 0 <= o["cy"] < 96
            assert -math.pi / 2 - 1e-6 <= o["angle_rad"] < math.pi / 2 + 1e-6
            assert o["length_px"] >= o["width_px"] > 0
            c = np.asarray(o["corners"])
            assert c.mean(axis=0) == pytest.approx([o["cx"], o["cy"]], abs=0.01)
            assert o["truncated"] == bool(((c < 0) | (c > 96)).any())
            assert (o["kind"] == "container") == (o["class"] is None)
    assert n_obj == len(disk["annotations"]) > 0
    ann = disk["annotations"][0]
    assert len(ann["segmentation"][0]) == 8 and 1 <= ann["category_id"] <= 8
    # determinism: the same seed writes the same labels
    make_chips(2, tmp_path / "again", seed=3, chip_px=96)
    for i in range(2):
        name = f"labels/chip_{i:06d}.json"
        assert (out / name).read_text() == (tmp_path / "again" / name).read_text()


def test_cli_chips_and_errors(tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["--quiet", "simulate", "--chips", "2", "--chip-px", "64",
                              "--out", str(tmp_path / "c"), "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "c" / "images").glob("*.png"))) == 2
    res = runner.invoke(app, ["simulate", "--chips", "1", "--gsd", "abc",
                              "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "--gsd" in res.output
    res = runner.invoke(app, ["simulate", "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "SCENARIO" in res.output
