"""One exception family for bad input: the CLI prints it as one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class RailwatchError(Exception):
    """A problem the user can fix (bad file, unknown site, ...). Message is one line."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else None
        text = f"{self.path}: {message}" if self.path else message
        super().__init__(" ".join(text.split()))


class InputError(RailwatchError):
    """Bad input file or argument."""


class NotFoundError(RailwatchError):
    """Something named does not exist (file, site, scene)."""
