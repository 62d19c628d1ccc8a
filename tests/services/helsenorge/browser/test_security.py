"""The portal's defences, seen from a real browser: CSRF tokens, the session cookie's flags,
the headers against framing and injected content, and another citizen's ids in a request
(404, as if they did not exist: the error page tells nothing)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .helpers import PORTAL, csrf_token, flash, login

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STRANGERS_PRESCRIPTION = "demo-fortrolig-resept-3"  # confidential's, not giver's
PRIVACY = f"{PORTAL}/kjernejournal/personvern"


def post(page: Page, path: str, form: dict):
    """A form POST with the browser's cookies (its session), not following redirects."""
    return page.request.post(path, form=form, max_redirects=0)


# ---- CSRF -----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong", ""], ids=["no-token", "wrong", "empty"])
def test_a_form_without_the_sessions_csrf_token_is_refused(signed_in, token):
    page = signed_in("parent")
    hpr = "7770001"
    form = {"change": "block", "hpr": hpr}
    if token is not None:
        form["csrf"] = token
    answer = post(page, PRIVACY, form)
    assert answer.status == 403
    page.goto(PRIVACY)
    expect(page.locator("main li", has_text=hpr)).to_have_count(0)  # nothing was changed


def test_another_sessions_csrf_token_is_refused(signed_in):
    theirs = csrf_token(signed_in("citizen"))
    page = signed_in("parent")
    assert post(page, PRIVACY, {"csrf": theirs, "change": "block", "hpr": "7770002"}).status == 403


def test_the_right_token_is_accepted(signed_in):
    """The control for the refusals above: the same POST with the page's token works."""
    page = signed_in("parent")
    page.goto(PRIVACY)
    answer = post(page, PRIVACY, {"csrf": csrf_token(page), "change": "block", "hpr": "7770003"})
    assert answer.status == 303


def test_a_cross_site_form_reaches_no_session(signed_in, portal: str):
    """SameSite=Lax: another site's form POST arrives without the session cookie."""
    page = signed_in("parent")
    forged = (
        f'<form method="post" action="{portal}{PORTAL}/logout">'
        '<input name="csrf" value="x"><button id="go">go</button></form>'
    )
    page.goto("data:text/html," + forged)
    with page.expect_navigation():
        page.click("#go")
    assert page.url.endswith(f"{PORTAL}/")  # no session: to the start page
    page.goto(f"{PORTAL}/kjernejournal")  # and the real session is still there
    expect(page.locator("form[action$='/logout']")).to_have_count(1)


# ---- the cookie and the headers -------------------------------------------------------------


def test_the_session_cookie_is_flagged(page: Page):
    login(page, "citizen")
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "hn_session"
    assert cookie["httpOnly"] is True
    assert cookie["secure"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == PORTAL
    assert cookie["expires"] == -1  # a session cookie: gone when the browser closes
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it


@pytest.mark.parametrize(
    "path",
    ["/", "/kjernejournal", "/resepter", "/innsynslogg", "/no-such-page"],
)
def test_security_headers(signed_in, path):
    page = signed_in("citizen")
    answer = page.goto(f"{PORTAL}{path}")
    assert answer is not None
    headers = answer.headers
    csp = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, csp
    assert "default-src 'none'" in csp, csp
    assert "script-src" not in csp or "'unsafe-inline'" not in csp, csp
    assert headers.get("x-frame-options") == "DENY"
    assert headers.get("x-content-type-options") == "nosniff"
    assert "no-store" in headers.get("cache-control", "")


def test_the_portal_cannot_be_framed(page: Page, portal: str):
    page.set_content(f'<iframe id="f" src="{portal}{PORTAL}/"></iframe>')
    frame = page.locator("#f").element_handle().content_frame()
    assert frame is not None
    frame.wait_for_load_state()
    # Chromium shows its own error page in place of a frame the portal refused.
    assert frame.url.startswith("chrome-error://"), frame.url


# ---- another citizen's ids ------------------------------------------------------------------


def test_acting_for_a_stranger_is_not_found(signed_in, api):
    stranger = api.own_patient("confidential")["id"]
    page = signed_in("parent")
    answer = post(page, f"{PORTAL}/act-for", {"csrf": csrf_token(page), "patient": stranger})
    assert answer.status == 404
    assert stranger not in answer.text()
    page.goto(f"{PORTAL}/kjernejournal")
    expect(page.locator("p.acting")).not_to_contain_text("Nora")  # still oneself


def test_locking_a_strangers_prescription_is_not_found(signed_in, api):
    page = signed_in("giver")
    form = {"csrf": csrf_token(page), "prescription": STRANGERS_PRESCRIPTION}
    answer = post(page, f"{PORTAL}/resepter/las", form)
    assert answer.status == 404
    request = api.get("gp", f"MedicationRequest/{STRANGERS_PRESCRIPTION}").json()
    assert not any(e["url"].endswith("privacy-lock") for e in request.get("extension", []))


def test_asking_to_renew_a_strangers_prescription_is_not_found(signed_in):
    page = signed_in("giver")
    form = {"csrf": csrf_token(page), "prescription": STRANGERS_PRESCRIPTION}
    answer = post(page, f"{PORTAL}/resepter/fornying", form)
    assert answer.status == 404


def test_removing_a_strangers_registration_is_not_found(signed_in, api):
    stranger = api.own_patient("citizen")["id"]
    conditions = api.get("gp", f"Condition?subject=Patient/{stranger}&_count=1").json()
    entry = conditions["entry"][0]
    target = f"Condition/{entry['resource']['id']}"
    page = signed_in("giver")
    form = {"csrf": csrf_token(page), "remove": target}
    answer = post(page, f"{PORTAL}/kjernejournal/egne", form)
    assert answer.status == 404
    assert api.get("gp", target).status_code == 200  # still there


def test_the_language_choice_is_no_open_redirect(signed_in):
    page = signed_in("citizen")
    for back in ["https://evil.example/", "//evil.example/", f"{PORTAL}//evil.example"]:
        form = {"csrf": csrf_token(page), "lang": "nb", "back": back}  # nb: the session's own
        answer = post(page, f"{PORTAL}/language", form)
        assert answer.status == 303
        assert answer.headers["location"].startswith(f"{PORTAL}/"), back
        assert "evil" not in answer.headers["location"]
    expect(flash(page)).to_have_count(0)
