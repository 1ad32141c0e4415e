"""The brief opens in headless Debian chromium: no console errors, every image loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from railwatch.report.build import build_report
from railwatch.report.pdf import CHROMIUM_FLAGS, html_to_pdf

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run `make chromium` (apt-get install chromium)")


def check_in_browser(html: Path, screenshot: Path) -> dict:
    """Open ``html`` from disk with the network blocked; return errors and image sizes."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS[1:]))
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.resolve().as_uri(), wait_until="load")
            imgs = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])"
            )
            title = page.title()
            page.screenshot(path=str(screenshot), full_page=False)
        finally:
            browser.close()
    return {"errors": errors, "imgs": imgs, "title": title, "requests": requests}


def test_report_renders_in_chromium(tmp_path):
    _require_chromium()
    from test_report import FakeStore

    res = build_report(FakeStore(tmp_path), "tumangang", tmp_path / "out", pdf=False)
    shot = tmp_path / "shot.png"
    seen = check_in_browser(res.html, shot)
    assert seen["errors"] == []
    assert len(seen["imgs"]) >= 4
    for complete, width, alt in seen["imgs"]:
        assert complete and width > 0, alt
    assert "Tumangang" in seen["title"]
    assert all(u.startswith(("file:", "data:")) for u in seen["requests"]), seen["requests"]
    assert shot.stat().st_size > 10_000


def test_pdf_from_chromium(tmp_path):
    _require_chromium()
    from test_report import FakeStore

    res = build_report(FakeStore(tmp_path), "tumangang", tmp_path / "out", pdf=True)
    assert res.pdf_skipped is None, res.pdf_skipped
    data = res.pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000


def test_pdf_skipped_cleanly_without_chromium(tmp_path, monkeypatch):
    monkeypatch.setenv("RAILWATCH_CHROMIUM", str(tmp_path / "no-such-chromium"))
    html = tmp_path / "r.html"
    html.write_text("<html><body>x</body></html>")
    why = html_to_pdf(html, tmp_path / "r.pdf")
    assert why and "chromium not found" in why and "skipped" in why
    assert not (tmp_path / "r.pdf").exists()
