"""Render the brief's HTML: one self-contained file (inline CSS, images as data URIs)."""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

_TEMPLATES = resources.files("railwatch.report") / "templates"


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(context: dict[str, Any]) -> str:
    """The brief as one HTML string from ``context`` (see ``report.html.j2`` for the keys)."""
    ctx = dict(context)
    ctx.setdefault("css", (_TEMPLATES / "report.css").read_text(encoding="utf-8"))
    return _env().get_template("report.html.j2").render(**ctx)


def write_html(context: dict[str, Any], path: str | Path) -> Path:
    """Render and write atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(context)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
