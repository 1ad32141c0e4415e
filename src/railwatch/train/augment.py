"""Sensor and processing randomisation shared by detector and verifier training.

Real archives mix sensors and processing chains: colour balance and casts, panchromatic
(grey) images, soft or sharpened optics, noise, JPEG-compressed deliveries. Training on
only our renderers' clean colours made the detector lean on colour (containers were
found by colour alone: container F1 0.15 on grey images, 0.64 under a colour cast,
measured on the fresh test set). ``sensor_jitter`` draws each of these independently.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Probability of each randomisation (the colour/gamma one is the oldest, kept at 0.5).
P_COLOUR, P_GREY, P_CONTRAST, P_BLUR, P_NOISE, P_JPEG = 0.5, 0.1, 0.2, 0.15, 0.2, 0.15


def sensor_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A randomly "re-sensed" copy of an RGB uint8 image (H, W, 3): colour gain and cast,
    gamma, grey (pan), contrast, blur, noise and JPEG, each with its own probability."""
    x = image.astype(np.float32)
    if rng.random() < P_COLOUR:
        gain = rng.uniform(0.8, 1.2, 3) * rng.uniform(0.75, 1.25)
        x = 255.0 * (x / 255.0) ** rng.uniform(0.7, 1.4) * gain
    grey = rng.random() < P_GREY
    if grey:
        x = np.repeat(x @ np.array([[0.299], [0.587], [0.114]], np.float32), 3, axis=2)
    if rng.random() < P_CONTRAST:
        mean = x.reshape(-1, 3).mean(0)
        x = mean + (x - mean) * rng.uniform(0.6, 1.1)
    if rng.random() < P_BLUR:
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.4, 1.2)))
    if rng.random() < P_NOISE:
        shape = (*x.shape[:2], 1) if grey else x.shape  # a pan sensor's noise is grey too
        x = x + rng.normal(0.0, rng.uniform(2.0, 10.0), shape).astype(np.float32)
    out = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < P_JPEG:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 86))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out
