"""The store: sites, scenes, runs, detections and observations (SQLite by default).

All SQL lives in this package (``schema.py`` for tables, ``sqlite.py`` for queries) so
that a PostgreSQL back-end can be added behind the same ``Store`` methods.
"""

from railwatch.store.schema import MIGRATIONS
from railwatch.store.sqlite import Store, StoreError, iso_utc, parse_iso

__all__ = ["MIGRATIONS", "Store", "StoreError", "iso_utc", "parse_iso"]
