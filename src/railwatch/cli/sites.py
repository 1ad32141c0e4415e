"""`railwatch sites ...`: list, show and add watched sites."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Placeholder: the foundation issue fills this in."""
