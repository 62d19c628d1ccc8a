"""Every portal page in every language has no WCAG 2.1 A or AA violation (axe-core).

A logged-in citizen's pages are visited in a new browser context per test, carrying the
session that logged in and chose the language once per language (so a failure names the
page and the language).  The pages one sees logged out, the login's failure page, and the
error page (an id that is not the citizen's) are checked as well.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .helpers import LANGUAGES, PORTAL, axe_check, choose_language, login

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The logged-in pages; add each new page here as it lands (a 404 is a failure).
PAGES = (
    "/",
    "/kjernejournal",
    "/kjernejournal/personvern",
    "/resepter",
    "/innsynslogg",
    "/fastlege",
    "/skjema",
    "/skjema/egenrapport-for-time",  # the demo's questionnaire (enjournal/demo/portal.py)
    "/fullmakt",
)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("path", PAGES)
def test_logged_in_page(signed_in, path, lang):
    page = signed_in("giver", None, lang)  # has prescriptions: their table is checked too
    answer = page.goto(f"{PORTAL}{path}")
    assert answer is not None and answer.status == 200, f"{path}: {answer and answer.status}"
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.locator("form[action$='/logout']")).to_have_count(1)  # still logged in
    axe_check(page)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_start_page(page: Page, lang):
    page.goto(f"{PORTAL}/")
    choose_language(page, lang)
    expect(page.locator(f"a[href='{PORTAL}/login']")).to_be_visible()
    axe_check(page)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_logged_out_page(page: Page, lang):
    login(page, "proxy")
    choose_language(page, lang)
    with page.expect_navigation():
        page.locator("form[action$='/logout'] button").click()
    expect(page.locator("form[action$='/logout']")).to_have_count(0)
    axe_check(page)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_login_failed_page(page: Page, lang):
    page.goto(f"{PORTAL}/")
    choose_language(page, lang)
    answer = page.goto(f"{PORTAL}/callback?state=forged&code=forged")
    assert answer is not None and answer.status == 400
    axe_check(page)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_error_page_for_an_unknown_id(signed_in, lang):
    """Locking a prescription that does not exist: the portal's 404 page."""
    page = signed_in("giver", "/resepter", lang)
    lock = page.locator(f"form[action='{PORTAL}/resepter/las']").first
    lock.locator("input[name=prescription]").evaluate("e => e.value = 'no-such-prescription'")
    with page.expect_navigation() as navigation:
        lock.locator("button").click()
    assert navigation.value is not None and navigation.value.status == 404
    axe_check(page)


def test_the_check_itself_finds_violations(page: Page):
    """axe runs under the portal's CSP and reports what it finds (a check that passes
    because it never ran would prove nothing)."""
    page.goto(f"{PORTAL}/")
    page.evaluate(
        """() => { const i = document.createElement('input'); i.type = 'text';
        document.querySelector('main').append(i);
        document.documentElement.removeAttribute('lang'); }"""
    )
    with pytest.raises(AssertionError) as failure:
        axe_check(page)
    assert "label" in str(failure.value) and "html-has-lang" in str(failure.value)
