"""The portal's login, session and request safety over HTTP (no browser): the code flow
with PKCE, cookie flags, CSRF, headers, logout, and ids of other citizens."""

from __future__ import annotations

import pytest

from tests.conftest import MEMORY
from tests.services.kjernejournal.conftest import allergy

pytestmark = MEMORY


async def test_login_sets_a_new_flagged_session_cookie(portal):
    before = await portal.get("/helsenorge/")
    pre_login = portal.cookie
    home = await portal.login("kari")
    assert home.status_code == 303 and home.headers["location"] == "/helsenorge/"
    assert portal.cookie and portal.cookie != pre_login  # no session fixation
    flags = portal.cookies_seen[-1].lower()
    for flag in ("httponly", "secure", "samesite=lax", "path=/helsenorge"):
        assert flag in flags
    page = await portal.get("/helsenorge/")
    assert "Kari" in page.text and before.status_code == 200


async def test_health_personnel_cannot_log_in_to_the_citizen_portal(portal):
    answer = await portal.login("gp")
    assert answer.status_code == 400
    assert "logout" not in answer.text


async def test_a_callback_with_another_state_is_refused(portal):
    await portal.get("/helsenorge/login")
    answer = await portal.get("/helsenorge/callback?code=x&state=forged")
    assert answer.status_code == 400


async def test_every_page_carries_the_security_headers(portal):
    await portal.login("kari")
    for path in ("/helsenorge/", "/helsenorge/kjernejournal", "/helsenorge/nowhere-x"):
        answer = await portal.get(path)
        csp = answer.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, path
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("token", [None, "forged"])
async def test_a_form_without_the_session_csrf_token_is_refused(portal, token):
    await portal.login("kari")
    data = {"change": "block", "hpr": "1000005"}
    if token:
        data["csrf"] = token
    answer = await portal.post("/helsenorge/kjernejournal/personvern", data, csrf=False)
    assert answer.status_code == 403
    privacy = await portal.api("GET", "/fhir/Patient/kari/$kj-privacy", "kari")
    assert "1000005" not in privacy.text  # nothing changed


async def test_a_form_with_the_token_changes_through_the_api(portal):
    await portal.login("kari")
    answer = await portal.post(
        "/helsenorge/kjernejournal/personvern", {"change": "block", "hpr": "1000005"}
    )
    assert answer.status_code == 303
    privacy = await portal.api("GET", "/fhir/Patient/kari/$kj-privacy", "kari")
    assert "1000005" in privacy.text


async def test_logout_ends_the_session_for_a_copied_cookie_too(portal):
    await portal.login("kari")
    copied = portal.cookie
    answer = await portal.post("/helsenorge/logout")
    assert answer.status_code == 200
    portal.cookie = copied
    after = await portal.get("/helsenorge/kjernejournal")
    assert after.status_code == 303 and after.headers["location"] == "/helsenorge/"


async def test_the_summary_shows_what_the_api_holds(portal):
    registered = await portal.api(
        "POST",
        "/fhir/Patient/kari/$kj-critical-info",
        "gp",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": allergy()}],
        },
        headers={"nhn-access-basis": "UNNTAK"},
    )
    assert registered.status_code in (200, 201), registered.text
    await portal.login("kari")
    page = await portal.get("/helsenorge/kjernejournal")
    assert page.status_code == 200 and "Penicillin" in page.text


async def test_another_citizens_ids_give_404(portal):
    await portal.login("kari")
    stranger = await portal.post("/helsenorge/act-for", {"patient": "siri"})
    assert stranger.status_code == 404
    locked = await portal.post("/helsenorge/resepter/las", {"prescription": "no-such-or-not-yours"})
    assert locked.status_code == 404
    form = await portal.get("/helsenorge/skjema/not-a-form")
    assert form.status_code == 404


async def test_the_language_is_kept_and_only_portal_pages_are_redirected_to(portal):
    await portal.login("kari")
    answer = await portal.post(
        "/helsenorge/language", {"lang": "nn", "back": "https://evil.example/"}
    )
    assert answer.headers["location"] == "/helsenorge/"
    page = await portal.get("/helsenorge/")
    assert '<html lang="nn">' in page.text


async def test_an_expired_access_token_is_refreshed_with_the_login_grant(portal, monkeypatch):
    from types import SimpleNamespace

    from enjournal.web import site as site_module

    await portal.login("kari")
    later = site_module.time.time() + 600  # the 5-minute access token has run out
    monkeypatch.setattr(site_module, "time", SimpleNamespace(time=lambda: later))
    for _ in range(2):  # the refresh token rotates: the second refresh uses the new one
        page = await portal.get("/helsenorge/kjernejournal")
        assert page.status_code == 200, page.text


async def test_anonymous_visits_keep_no_session_until_they_choose(portal):
    await portal.get("/helsenorge/")
    assert portal.cookie is None
    chosen = await portal.get("/helsenorge/language?lang=en&back=/helsenorge/")
    assert chosen.status_code == 303 and portal.cookie
    page = await portal.get("/helsenorge/")
    assert '<html lang="en">' in page.text and "Log in with ID-porten" in page.text


async def test_static_files_carry_the_security_headers(portal):
    answer = await portal.get("/helsenorge/static/portal.css")
    assert answer.status_code == 200
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("raw", ["²", "99999999999999999999999", "1e999", "٣"])
def test_odd_numbers_in_a_form_go_to_the_operation_as_text(raw):
    from enjournal.services.helsenorge.web.forms import _answer

    for kind in ("integer", "decimal"):
        assert _answer({"type": kind, "linkId": "x"}, raw) == {"valueString": raw}
