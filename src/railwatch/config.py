"""Where things live by default: the embedded store path (platformdirs, or RAILWATCH_DB)."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir

ENV_DB = "RAILWATCH_DB"


def default_db_path() -> Path:
    """``$RAILWATCH_DB`` if set, else ``railwatch.sqlite`` in the user data directory."""
    env = os.environ.get(ENV_DB)
    if env:
        return Path(env).expanduser()
    return Path(user_data_dir("railwatch", appauthor=False)) / "railwatch.sqlite"
