"""Facility changes: new warehouses, walls, platforms and tracks between images of a site.

``find_changes(images, site)`` over image files, ``site_changes(store, site)`` over the
store; ``changes_to_geojson`` / ``write_changes_geojson`` for RFC 7946 output,
``put_changes`` / ``get_changes`` for the store, ``describe_change`` and
``change_chips`` for the brief.
"""

from railwatch.analytics.changes.find import (
    CHANGE_KINDS,
    Change,
    ChangeSet,
    UsedImage,
    find_changes,
)
from railwatch.analytics.changes.output import (
    change_chips,
    changes_to_geojson,
    describe_change,
    write_changes_geojson,
)
from railwatch.analytics.changes.stored import get_changes, put_changes, site_changes

__all__ = [
    "CHANGE_KINDS",
    "Change",
    "ChangeSet",
    "UsedImage",
    "change_chips",
    "changes_to_geojson",
    "describe_change",
    "find_changes",
    "get_changes",
    "put_changes",
    "site_changes",
    "write_changes_geojson",
]
