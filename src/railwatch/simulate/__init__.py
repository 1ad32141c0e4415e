"""Synthetic satellite imagery of rail facilities, with ground truth.

:mod:`~railwatch.simulate.world` holds the world model (tracks, railcars, buildings,
containers, distractors, imaging conditions), :mod:`~railwatch.simulate.render` turns it
into a georeferenced image plus truth, :mod:`~railwatch.simulate.chips` makes randomised
training chips.
"""

from railwatch.simulate.world import (
    CAR_SPECS,
    LIVERIES,
    Building,
    Conditions,
    Containers,
    Distractors,
    Railcars,
    Road,
    Track,
    Wall,
    Water,
    World,
    place_train,
    rect_corners,
)

__all__ = [
    "CAR_SPECS",
    "LIVERIES",
    "Building",
    "Conditions",
    "Containers",
    "Distractors",
    "Railcars",
    "Road",
    "Track",
    "Wall",
    "Water",
    "World",
    "place_train",
    "rect_corners",
]
