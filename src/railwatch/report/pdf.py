"""``report.pdf`` from ``report.html`` by printing it in headless Debian chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Flags for a quiet, offline, sandbox-free headless chromium.
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def find_chromium() -> str | None:
    """Path of a chromium binary (``$RAILWATCH_CHROMIUM``, then PATH), or None."""
    env = os.environ.get("RAILWATCH_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def html_to_pdf(html_path: str | Path, pdf_path: str | Path, timeout: float = 120.0) -> str | None:
    """Print ``html_path`` to ``pdf_path``; returns None on success, else why it was skipped.

    The PDF is written to a temp name and renamed, so a failure leaves no partial file.
    """
    exe = find_chromium()
    if exe is None:
        return ("chromium not found (install Debian's chromium, e.g. `make chromium`);"
                " the PDF was skipped, the HTML brief is complete")
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path)
    tmp_pdf = pdf_path.with_name(f".{pdf_path.name}.tmp")
    with tempfile.TemporaryDirectory(prefix="railwatch-chromium-") as profile:
        cmd = [
            exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
            f"--print-to-pdf={tmp_pdf}", html_path.as_uri(),
        ]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            tmp_pdf.unlink(missing_ok=True)
            return f"chromium failed ({exc}); the PDF was skipped"
    if res.returncode != 0 or not tmp_pdf.exists() or tmp_pdf.stat().st_size == 0:
        tmp_pdf.unlink(missing_ok=True)
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return f"chromium exited {res.returncode} ({last}); the PDF was skipped"
    os.replace(tmp_pdf, pdf_path)
    return None
