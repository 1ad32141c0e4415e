"""Sensor randomisation for training (railwatch.train.augment)."""

import numpy as np

from railwatch.train.augment import sensor_jitter


def _scene():
    img = np.zeros((64, 96, 3), np.uint8)
    img[...] = (120, 110, 90)
    img[20:30, 10:60] = (200, 40, 40)  # a red "container"
    img[40:50, 30:90] = (40, 60, 180)
    return img


def test_sensor_jitter_keeps_shape_and_is_reproducible():
    img = _scene()
    a = sensor_jitter(img, np.random.default_rng(5))
    b = sensor_jitter(img, np.random.default_rng(5))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)


def test_sensor_jitter_draws_grey_casts_and_leaves_some_images_alone():
    img = _scene()
    rng = np.random.default_rng(0)
    outs = [sensor_jitter(img, rng) for _ in range(300)]
    grey = sum(bool(np.all(o[..., 0] == o[..., 1]) and np.all(o[..., 1] == o[..., 2]))
               for o in outs)
    unchanged = sum(np.array_equal(o, img) for o in outs)
    changed = [o for o in outs if not np.array_equal(o, img)]
    # about 10 % grey (pan), some untouched, and the colours move in the others
    assert 10 <= grey <= 60
    assert 10 <= unchanged <= 150
    red = np.array([np.abs(o[25, 30].astype(int) - (200, 40, 40)).max() for o in changed])
    assert np.median(red) >= 3 and red.max() >= 40
