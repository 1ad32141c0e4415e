"""railwatch: find, count and classify freight railcars in satellite imagery of rail sites."""

from railwatch.errors import InputError, NotFoundError, RailwatchError
from railwatch.types import (
    KINDS,
    RAILCAR_CLASSES,
    Detections,
    Event,
    Observation,
    Scene,
    Site,
)

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "RAILCAR_CLASSES",
    "Detections",
    "Event",
    "InputError",
    "NotFoundError",
    "Observation",
    "RailwatchError",
    "Scene",
    "Site",
    "__version__",
]
