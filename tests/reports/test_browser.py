"""The reports as a person opens them: Debian's Chromium, headless, through Playwright.

No browser is downloaded: ``scripts/setup-test.sh`` installs Debian's ``chromium`` and Playwright
drives it at /usr/bin/chromium. Screenshots are kept in ``test-artifacts/``.
"""

from __future__ import annotations

from pathlib import Path

from tests.reports.conftest import ARTIFACTS, SCRIPT, TAMPERED_SEQ


class Visit:
    """One page load, with everything the page asked the network for and said on its console."""

    def __init__(self, browser, path: Path) -> None:
        self.url = path.resolve().as_uri()
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.console_errors.append(m.text)
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.goto(self.url, wait_until="load")

    def _dialog(self, dialog) -> None:  # type: ignore[no-untyped-def]
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


def test_compliance_report_in_chromium(reported, browser, tmp_path):
    source = tmp_path / "compliance.html"
    source.write_bytes(reported.compliance_html)
    visit = Visit(browser, source)
    try:
        shot = visit.screenshot(f"compliance-{reported.backend}.png")
        assert shot.stat().st_size > 10_000
        assert visit.requests == [visit.url]  # nothing but the file itself
        assert visit.console_errors == []
        page = visit.page
        # The script a person typed is on the page as text, and nothing ran.
        assert page.get_by_text(SCRIPT, exact=True).is_visible()
        assert visit.dialogs == []
        assert page.evaluate("document.scripts.length") == 0
        score = page.locator('[data-nexml-metric="Compliance score"]')
        assert score.inner_text() == f"{reported.score}/100"
        assert page.title() == f"Compliance record: {reported.ref}"
        # Contents links land on their sections.
        page.get_by_role("link", name="Approvals and findings").click()
        assert page.evaluate("location.hash") == "#Approvals-and-findings"
        # Print: the cover gets its own page and the inputs stay hidden.
        page.emulate_media(media="print")
        assert page.evaluate(
            "getComputedStyle(document.querySelector('.nexml-cover')).breakAfter"
        ) == "page"
        assert page.locator(".jp-InputArea-editor").count() == 0
        assert "platform_workspace" not in page.content()
        assert page.get_by_role("img").first.get_attribute("alt") == (
            f"Compliance sections of {reported.ref}")
    finally:
        visit.page.close()


def test_tampered_audit_report_in_chromium_leads_with_the_red_banner(reported, browser, tmp_path):
    source = tmp_path / "audit.html"
    source.write_bytes(reported.tampered_html)
    visit = Visit(browser, source)
    try:
        visit.screenshot(f"audit-tampered-{reported.backend}.png")
        assert visit.requests == [visit.url]
        assert visit.console_errors == []
        banner = visit.page.locator(".nexml-alert").first
        assert banner.is_visible()
        assert f"predictions:main is broken at record {TAMPERED_SEQ}" in banner.inner_text()
        box = banner.bounding_box()
        assert box is not None and box["y"] < 80  # the top of the page, above the cover
        color = visit.page.evaluate(
            "getComputedStyle(document.querySelector('.nexml-alert')).backgroundColor"
        )
        assert color == "rgb(180, 35, 24)"
    finally:
        visit.page.close()
