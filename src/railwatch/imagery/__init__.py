"""Imagery: scene metadata, ingest into the store, and windowed 8-bit reads.

(``imagery/cloud.py``, cloud and usable-area masks, is another module beside these.)
"""

from railwatch.imagery.ingest import IngestResult, IngestRow, collect_paths, ingest, site_coverage
from railwatch.imagery.metadata import (
    file_sha256,
    parse_datetime,
    read_scene_metadata,
    read_sidecar,
    scene_notes,
)
from railwatch.imagery.read import Scaling, band_scaling, iter_windows, read_window, rgb_bands

__all__ = [
    "IngestResult",
    "IngestRow",
    "Scaling",
    "band_scaling",
    "collect_paths",
    "file_sha256",
    "ingest",
    "iter_windows",
    "parse_datetime",
    "read_scene_metadata",
    "read_sidecar",
    "read_window",
    "rgb_bands",
    "scene_notes",
    "site_coverage",
]
