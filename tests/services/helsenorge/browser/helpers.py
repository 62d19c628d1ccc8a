"""What the browser tests do again and again: log in as a demo citizen, change the language,
check a page with axe-core, and reach the portal's forms with the keyboard alone."""

from __future__ import annotations

import json
import re

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

PORTAL = "/helsenorge"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
LANGUAGES = ("nb", "nn", "en")
_axe = Axe()


def login(page: Page, who: str = "citizen") -> None:
    """Log in as the demo citizen ``who`` (the provider's chooser lists them by handle)."""
    page.goto(f"{PORTAL}/login")
    page.locator(f'button[name="login_hint"][value="{who}"]').click()
    page.wait_for_url(re.compile(rf"{PORTAL}/$"))
    expect(page.locator("form[action$='/logout']")).to_have_count(1)


def choose_language(page: Page, lang: str) -> None:
    """The header's language choice (a form when logged in, links before); the portal
    keeps it in the session."""
    links = page.locator(f"header ul.languages a[hreflang='{lang}']")
    with page.expect_navigation():
        if links.count():
            links.click()
        else:
            page.select_option("#lang-choice", lang)
            page.locator("form[action$='/language'] button[type=submit]").click()
    expect(page.locator("html")).to_have_attribute("lang", lang)


def axe_check(page: Page) -> None:
    """No WCAG 2.1 A or AA violation on the page as it is now (axe-core)."""
    options = {"runOnly": {"type": "tag", "values": WCAG_21_AA}, "resultTypes": ["violations"]}
    results = _axe.run(page, options=options)
    assert results.response.get("testEngine", {}).get("name") == "axe-core", "axe did not run"
    violations = results.response.get("violations", [])
    assert not violations, f"axe on {page.url}:\n{describe_violations(violations)}"


def describe_violations(violations: list[dict]) -> str:
    """One paragraph per violated rule: its id, impact, help and the nodes (selector, html,
    what axe says is wrong)."""
    out = []
    for v in violations:
        out.append(f"- {v['id']} ({v.get('impact')}): {v.get('help')} [{v.get('helpUrl')}]")
        for node in v.get("nodes", [])[:6]:
            target = json.dumps(node.get("target"))
            out.append(f"    at {target}: {node.get('html', '')[:160]}")
            summary = (node.get("failureSummary") or "").replace("\n", " / ")
            out.append(f"      {summary[:300]}")
    return "\n".join(out)


def csrf_token(page: Page) -> str:
    return page.locator("input[name=csrf]").first.get_attribute("value") or ""


def flash(page: Page):
    """The one-time message a POST leaves for the next page."""
    return page.locator("main .flash")


# ---- the keyboard alone -------------------------------------------------------------------


def focused(page: Page) -> dict:
    """What has the focus: tag, type, name, value, id, href, text, aria-label, its form's
    action and the form's ``change`` (which setting a privacy form changes)."""
    return page.evaluate(
        """() => { const e = document.activeElement; return {
            tag: e.tagName.toLowerCase(), type: e.type || '', name: e.name || '',
            value: e.value || '', id: e.id || '', href: e.getAttribute('href') || '',
            text: (e.innerText || '').trim(), label: e.getAttribute('aria-label') || '',
            form: e.form ? (e.form.getAttribute('action') || '') : '',
            change: e.form && e.form.elements.change ? e.form.elements.change.value : '' }; }"""
    )


def tab_to(page: Page, matches, *, limit: int = 120, backwards: bool = False) -> dict:
    """Press Tab (Shift+Tab) until the focused element satisfies ``matches``; fails if it
    is not reached within ``limit`` presses (so it is not reachable by keyboard)."""
    key = "Shift+Tab" if backwards else "Tab"
    seen = []
    for _ in range(limit):
        page.keyboard.press(key)
        now = focused(page)
        if matches(now):
            return now
        seen.append(now.get("text") or now.get("name") or now.get("href") or now.get("tag"))
    raise AssertionError(f"not reached with {key} in {limit} presses; focus went: {seen[:40]}")


def link_to(path: str):
    return lambda f: f["tag"] == "a" and f["href"].rstrip("/") == f"{PORTAL}{path}".rstrip("/")


def button(*, value: str | None = None, form: str | None = None):
    """A button (of the form posting to ``form``, under the portal)."""

    def matches(f: dict) -> bool:
        if f["tag"] != "button":
            return False
        if value is not None and f["value"] != value:
            return False
        return form is None or f["form"] == f"{PORTAL}{form}"

    return matches


def field(element_id: str):
    return lambda f: f["id"] == element_id


def press_enter_and_wait(page: Page) -> None:
    with page.expect_navigation():
        page.keyboard.press("Enter")
