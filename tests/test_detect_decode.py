"""Decoding, oriented NMS, tiling and seam de-duplication on constructed cases."""

import math

import numpy as np
import pytest

from railwatch.detect.decode import Boxes, box_corners, decode, empty_boxes, rotated_nms
from railwatch.detect.pipeline import merge_tile_boxes, plan_tiles


def _maps(h=32, w=32):
    peaks = np.zeros((2, h, w), np.float32)
    maps = np.zeros((14, h, w), np.float32)
    return peaks, maps


def _boxes(cx, cy, length, width, angle, score, kind=None):
    n = len(cx)
    return Boxes(np.asarray(cx, float), np.asarray(cy, float), np.full(n, float(length)),
                 np.full(n, float(width)), np.full(n, float(angle)),
                 np.zeros(n, int) if kind is None else np.asarray(kind),
                 np.zeros(n, int), np.ones(n), np.zeros(n), np.asarray(score, float),
                 np.zeros((n, 3), np.uint8), np.full(n, np.nan))


def test_decode_reads_centre_size_angle_class():
    peaks, maps = _maps()
    peaks[0, 10, 12] = 0.9  # railcar at cell (x=12, y=10)
    maps[0:2, 10, 12] = (0.25, -0.25)  # offset in cells
    maps[2:4, 10, 12] = (math.log(30), math.log(6))
    theta = 0.4
    maps[4:6, 10, 12] = (math.sin(2 * theta), math.cos(2 * theta))
    maps[6 + 2, 10, 12] = 0.8  # hopper
    maps[13, 10, 12] = 0.7  # covered
    peaks[1, 3, 4] = 0.6  # a container
    peaks[0, 20, 20] = 0.1  # below threshold
    b = decode(peaks, maps, stride=2, threshold=0.3)
    assert len(b) == 2
    rail = b.take(np.nonzero(b.kind == 0)[0])
    # label convention (pixel centres on integers) + 0.5 -> raster convention
    assert rail.cx[0] == pytest.approx((12 + 0.5 + 0.25) * 2 + 0.5)
    assert rail.cy[0] == pytest.approx((10 + 0.5 - 0.25) * 2 + 0.5)
    assert rail.length[0] == pytest.approx(30, rel=1e-5)
    assert rail.width[0] == pytest.approx(6, rel=1e-5)
    assert rail.angle[0] == pytest.approx(theta, abs=1e-5)
    assert rail.cls[0] == 2 and rail.covered_prob[0] == pytest.approx(0.7)
    cont = b.take(np.nonzero(b.kind == 1)[0])
    assert cont.cls[0] == -1 and cont.score[0] == pytest.approx(0.6)


def test_decode_turns_class_logits_into_probabilities_at_the_peaks():
    peaks, maps = _maps()
    peaks[0, 5, 6] = 0.8
    logits = np.array([0.1, 2.0, -1.0, 0.5, 0.0, -3.0, 1.0], np.float32)
    maps[6:13, 5, 6] = logits
    b = decode(peaks, maps, threshold=0.3, class_logits=True)
    p = np.exp(logits) / np.exp(logits).sum()
    assert b.cls[0] == 1 and b.cls_prob[0] == pytest.approx(p.max(), rel=1e-5)
    # a model whose maps hold probabilities is read as before
    assert decode(peaks, maps, threshold=0.3).cls_prob[0] == pytest.approx(2.0)


def test_box_corners_are_an_oriented_rectangle():
    c = box_corners([10.0], [20.0], [30.0], [6.0], [math.pi / 2])[0]
    assert np.allclose(c.mean(axis=0), [10, 20])
    sides = np.linalg.norm(np.roll(c, -1, axis=0) - c, axis=1)
    assert sorted(np.round(sides, 6)) == [6, 6, 30, 30]
    assert np.ptp(c[:, 1]) == pytest.approx(30)  # long axis vertical


def test_rotated_nms_keeps_coupled_cars_and_drops_duplicates():
    # three coupled cars 30 px long with 2 px gaps, plus a duplicate of the middle one
    b = _boxes([15, 47, 79, 48], [50, 50, 50, 50.5], 30, 6, 0.0, [0.9, 0.8, 0.7, 0.5])
    kept = rotated_nms(b, 0.3)
    assert len(kept) == 3
    assert sorted(kept.cx.tolist()) == [15, 47, 79]
    assert 0.5 not in kept.score.tolist()
    assert len(rotated_nms(empty_boxes())) == 0


def test_rotated_nms_drops_a_small_box_inside_a_car():
    # a half-length peak inside a car: IoU 0.5 * 0.6 / 1 < 0.3 but it covers 100 % of
    # the smaller box; cars on a neighbouring track (6 px apart, no overlap) both stay
    car = Boxes.concat([
        _boxes([50], [50], 30, 6, 0.0, [0.9]),
        Boxes(np.array([45.0]), np.array([50.0]), np.array([15.0]), np.array([3.0]),
              np.array([0.0]), np.zeros(1, int), np.zeros(1, int), np.ones(1), np.zeros(1),
              np.array([0.6]), np.zeros((1, 3), np.uint8), np.full(1, np.nan)),
        _boxes([50], [57], 30, 6, 0.0, [0.5]),
    ])
    kept = rotated_nms(car, 0.3)
    assert sorted(kept.score.tolist()) == [0.5, 0.9]
    assert len(rotated_nms(car, 0.3, iomin=1.01)) == 3


def test_rotated_nms_railcar_rule_drops_a_box_across_a_coupling_but_not_containers():
    # two coupled cars (30 px, 4 px gap) and a weaker box half a car along the track,
    # straddling the coupling: it covers 43 % of each car (IoU 0.28), under the common rule
    cars = _boxes([15, 49, 32], [50, 50, 50], 30, 6, 0.0, [0.9, 0.8, 0.6])
    assert len(rotated_nms(cars, 0.3)) == 3
    kept = rotated_nms(cars, 0.3, railcar=(0.15, 0.15))
    assert sorted(kept.cx.tolist()) == [15, 49]
    # the same boxes as containers (touching rows, stacked) keep the common rule
    boxes = _boxes([15, 49, 32], [50, 50, 50], 30, 6, 0.0, [0.9, 0.8, 0.6], kind=[1, 1, 1])
    assert len(rotated_nms(boxes, 0.3, railcar=(0.15, 0.15))) == 3
    # and a railcar against a container too (a container on a flatcar is not a duplicate)
    mixed = _boxes([15, 49, 32], [50, 50, 50], 30, 6, 0.0, [0.9, 0.8, 0.6], kind=[0, 0, 1])
    assert len(rotated_nms(mixed, 0.3, railcar=(0.15, 0.15))) == 3


def test_rotated_nms_railcar_rule_drops_a_parallel_box_closer_than_a_track_spacing():
    # 1 m pixels: a car, a weaker parallel box 3.2 m across (on its shadow; the boxes do
    # not touch), a car on the next track 4.6 m across the other way, a coupled car 16 m
    # along
    cars = _boxes([50, 50, 50, 66], [50, 53.2, 45.4, 50], 15, 3, 0.0, [0.9, 0.6, 0.8, 0.7])
    rule = (0.15, 0.15, 4.0)
    kept = rotated_nms(cars, 0.3, railcar=rule, px_m=1.0)
    assert sorted(kept.score.tolist()) == [0.7, 0.8, 0.9]
    # the spacing is in metres: at 0.5 m pixels the same boxes are 1.6 m across (dropped)
    # and 2.3 m across (kept) under a 2 m spacing
    assert len(rotated_nms(cars, 0.3, railcar=(0.15, 0.15, 2.0), px_m=0.5)) == 3
    # no spacing, or containers: all four stay
    assert len(rotated_nms(cars, 0.3, railcar=(0.15, 0.15), px_m=1.0)) == 4
    conts = _boxes([50, 50, 50, 66], [50, 53.2, 45.4, 50], 15, 3, 0.0, [0.9, 0.6, 0.8, 0.7],
                   kind=[1, 1, 1, 1])
    assert len(rotated_nms(conts, 0.3, railcar=rule, px_m=1.0)) == 4
    # a crossing (perpendicular) box is not "side by side"
    cross = Boxes.concat([_boxes([50], [50], 15, 3, 0.0, [0.9]),
                          _boxes([50], [53.2], 15, 3, math.pi / 2, [0.6])])
    assert len(rotated_nms(cross, 0.9, iomin=0.99, railcar=(0.9, 0.99, 4.0), px_m=1.0)) == 2


def test_tile_cores_partition_the_image():
    tiles = plan_tiles(2500, 1300, 1024, 96)
    w = tiles[-1].window
    assert tiles[0].window.col_off == 0 and w.col_off + w.width == 2500
    assert w.row_off + w.height == 1300 and max(t.window.width for t in tiles) <= 1024
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(0, [2500, 1300], (500, 2)):
        owners = [t for t in tiles if t.core[0] <= x < t.core[2] and t.core[1] <= y < t.core[3]]
        assert len(owners) == 1
        w = owners[0].window
        # the owner sees the point at least 40 px away from its edges (when not an image edge)
        assert w.col_off <= x < w.col_off + w.width and w.row_off <= y < w.row_off + w.height


@pytest.mark.parametrize("n", [900, 1024, 1025, 1900, 2400, 4000, 30000])
def test_tiles_cover_each_side_evenly_with_the_overlap_and_little_waste(n):
    tiles = plan_tiles(n, 700, 1024, 96)
    starts = sorted({t.window.col_off for t in tiles})
    width = tiles[0].window.width
    assert width <= 1024 and starts[0] == 0 and starts[-1] + width == n
    gaps = np.diff(starts)
    assert (width - gaps >= 96).all()  # every seam keeps the overlap
    # as few windows as the size allows, and no more pixels read than that costs
    assert len(starts) == max(1, math.ceil((n - 96) / (1024 - 96)))
    assert len(starts) * width <= n + len(starts) * 96 + len(starts)


def test_object_cut_by_a_seam_is_counted_once():
    tiles = plan_tiles(1900, 1024, 1024, 96)
    assert len(tiles) == 2
    seam = tiles[0].core[2]
    # tile A sees the car whole with its centre just right of the seam; tile B sees it too
    a = _boxes([seam + 0.6], [500], 30, 6, 0.0, [0.8])
    b = _boxes([seam + 1.4, 1500], [500.3, 300], 30, 6, 0.0, [0.9, 0.9])
    # and a car left of the seam found only (truncated) by tile B, and wholly by A
    a2 = _boxes([seam - 20], [700], 30, 6, 0.0, [0.9])
    b2 = _boxes([seam - 21], [700], 26, 6, 0.0, [0.6])
    merged = merge_tile_boxes([(tiles[0], Boxes.concat([a, a2])),
                               (tiles[1], Boxes.concat([b, b2]))])
    assert len(merged) == 3
    assert sorted(np.round(merged.cx).tolist()) == sorted(
        [round(seam - 20), round(seam + 1.4), 1500])
