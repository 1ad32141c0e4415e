"""Inference on onnxruntime (no torch): the shipped model, tiling, decoding, GeoJSON.

``detect(path)`` -> Detections in the image CRS; ``detect_each(paths)`` -> them image by
image, several at once; ``detect_many(paths, out_dir)``;
``Detector().predict(tile)`` -> Detections in tile pixel coordinates.
"""

from railwatch.detect.decode import PIXEL_CRS, Boxes, decode, rotated_nms
from railwatch.detect.model import Detector, model_dir
from railwatch.detect.pipeline import (
    GSD_RANGE,
    check_gsd,
    detect,
    detect_each,
    detect_many,
    plan_tiles,
)

__all__ = [
    "GSD_RANGE",
    "PIXEL_CRS",
    "Boxes",
    "Detector",
    "check_gsd",
    "decode",
    "detect",
    "detect_each",
    "detect_many",
    "model_dir",
    "plan_tiles",
    "rotated_nms",
]
