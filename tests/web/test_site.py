"""enjournal.web without a service: sessions, CSRF, security headers, PKCE, languages.

A bare Site over a stand-in platform (no issuer, sessions in memory) with this folder's
templates; the login against the embedded provider is tested with the citizen portal
(tests/services/helsenorge/test_portal.py)."""

from __future__ import annotations

import base64
import hashlib
import re
from types import SimpleNamespace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from enjournal.web import SECURITY_HEADERS, FhirError, Site, SiteConfig, i18n
from enjournal.web.headers import with_headers
from enjournal.web.login import pkce_challenge, pkce_verifier
from enjournal.web.routes import static_files
from enjournal.web.sessions import MemorySessions, cookie_options, new_session, stored_session
from enjournal.web.site import environment

CONFIG = SiteConfig(
    name="test",
    path="/site",
    package="tests.web",
    client_id="test",
    title="Test",
    scopes="openid",
    user_kinds=("personnel",),
    cookie="test_session",
)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Harness:
    def __init__(self):
        platform = SimpleNamespace(settings=SimpleNamespace(redis_url=None), security=None)
        self.site = Site(platform, CONFIG)
        self.changed: list[str] = []

    def app(self) -> Starlette:
        site = self.site

        async def page(view):
            return "page.html"

        async def change(view):
            self.changed.append(view.field("value"))
            return view.back("/", "changed")

        async def refused(view):
            raise FhirError(403, "another user's")

        routes = [
            Route("/", site.page(page, login=False)),
            Route("/change", site.page(change, login=False), methods=["POST"]),
            Route("/private", site.page(page)),
            Route("/other", site.page(refused, login=False)),
        ]
        return Starlette(routes=[Mount(CONFIG.path, routes=routes)])

    async def logged_in(self) -> str:
        session = new_session()
        session.access_token, session.token_expires, session.ends = "t", 10**12, 10**12
        await self.site.sessions.put(session)
        return session.id


@pytest.fixture
async def web():
    harness = Harness()
    transport = httpx.ASGITransport(app=harness.app())
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as http:
        yield harness, http


async def test_every_answer_carries_the_security_headers(web):
    _, http = web
    for path in ("/site/", "/site/private", "/site/other"):
        answer = await http.get(path)
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value, (path, name)
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]


async def test_static_files_get_the_headers_but_keep_their_caching():
    async def files(scope, receive, send):
        await PlainTextResponse("body", headers={"cache-control": "max-age=60"})(
            scope, receive, send
        )

    transport = httpx.ASGITransport(app=with_headers(files))
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as http:
        answer = await http.get("/portal.css")
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "max-age=60"


async def test_an_anonymous_visit_keeps_no_session_and_a_private_page_sends_it_home(web):
    _, http = web
    page = await http.get("/site/")
    assert "set-cookie" not in page.headers
    assert "02.12.2026 kl. 14:30" in page.text  # the template's filters
    private = await http.get("/site/private")
    assert private.status_code == 303 and private.headers["location"] == "/site/"


@pytest.mark.parametrize("token", [None, "forged"])
async def test_a_form_without_the_session_csrf_token_is_refused(web, token):
    harness, http = web
    cookie = {"cookie": f"test_session={await harness.logged_in()}"}
    form = {"value": "x"} | ({"csrf": token} if token else {})
    answer = await http.post("/site/change", data=form, headers=cookie)
    assert answer.status_code == 403
    assert harness.changed == []  # the handler never ran


async def test_a_form_with_the_session_csrf_token_goes_through(web):
    harness, http = web
    cookie = {"cookie": f"test_session={await harness.logged_in()}"}
    page = await http.get("/site/", headers=cookie)
    csrf = CSRF.search(page.text).group(1)
    answer = await http.post("/site/change", data={"value": "x", "csrf": csrf}, headers=cookie)
    assert answer.status_code == 303 and answer.headers["location"] == "/site/"
    assert harness.changed == ["x"]
    flags = answer.headers["set-cookie"].lower()
    for flag in ("httponly", "secure", "samesite=lax", "path=/site"):
        assert flag in flags


async def test_a_refusal_of_the_api_is_the_404_page(web):
    _, http = web
    answer = await http.get("/site/other")
    assert answer.status_code == 404 and "another user" not in answer.text


def test_the_cookie_flags():
    assert cookie_options("/x") == {
        "httponly": True,
        "secure": True,
        "samesite": "lax",
        "path": "/x",
    }


async def test_sessions_end_when_idle_and_the_least_recent_go_first():
    sessions = MemorySessions(idle=60, max_sessions=2, max_anonymous=2)
    old = new_session(now=0)
    old.access_token, old.ends = "t", 10**12
    await sessions.put(old)
    assert await sessions.get(old.id) is None  # idle since 1970
    a, b, c = (new_session() for _ in range(3))
    for s in (a, b, c):
        s.access_token, s.ends = "t", 10**12
    for s in (a, b):
        await sessions.put(s)
    await sessions.get(a.id)  # a is used again: b is now the least recent
    await sessions.put(c)
    assert await sessions.get(b.id) is None
    assert await sessions.get(a.id) is a and await sessions.get(c.id) is c
    for _ in range(1000):  # a flood of anonymous sessions pushes out no logged-in user
        await sessions.put(new_session())
    assert await sessions.get(a.id) is a and await sessions.get(c.id) is c


async def test_a_session_ends_with_its_login_grant_however_active():
    sessions = MemorySessions(idle=60)
    session = new_session()
    session.access_token, session.ends = "t", 1.0  # the grant ended in 1970
    await sessions.put(session)
    assert await sessions.get(session.id) is None


def test_a_stored_session_keeps_the_services_values_also_from_before_data():
    from dataclasses import asdict

    session = new_session("nn")
    session.data["acting_for"] = "lise"
    assert stored_session(asdict(session)) == session
    legacy = {**asdict(new_session()), "self_patient": "kari"}
    del legacy["data"]  # stored by a worker of the previous release
    assert stored_session(legacy).data == {"self_patient": "kari"}


def test_the_pkce_challenge_is_rfc_7636s():
    # RFC 7636 Appendix B: the example verifier and its S256 challenge.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_a_pkce_verifier_is_new_each_time_and_of_the_allowed_form():
    verifiers = {pkce_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for verifier in verifiers:
        assert re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", verifier)
        digest = hashlib.sha256(verifier.encode()).digest()
        assert pkce_challenge(verifier) == base64.urlsafe_b64encode(digest).decode().rstrip("=")


def test_norwegian_dates_and_numbers_in_every_language():
    for lang in i18n.LANGUAGES:
        assert i18n.day("2026-12-02", lang) == "02.12.2026"
        assert i18n.day("2026-12", lang) == "12.2026"
        assert i18n.number(1234.5, lang).replace("\xa0", " ") == "1 234,5"
    assert i18n.when("2026-12-02T13:30:00Z", "nb") == "02.12.2026 kl. 14:30"
    assert i18n.when("2026-12-02T13:30:00Z", "en") == "02.12.2026 at 14:30"
    assert i18n.chosen("de") == "nb" and i18n.chosen("nn") == "nn"


def test_a_site_without_a_catalogue_shows_the_english_messages():
    assert i18n.translations("tests.web", "nn").gettext("Not found") == "Not found"


async def test_a_site_serves_the_shared_stylesheet_and_falls_back_to_the_shared_templates():
    files = static_files(CONFIG)  # tests.web has no static/ of its own
    transport = httpx.ASGITransport(app=files)
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as http:
        answer = await http.get("/base.css")
    assert answer.status_code == 200 and "--brand" in answer.text
    assert answer.headers["x-frame-options"] == "DENY"
    env = environment(CONFIG, "en")
    assert env.get_template("error.html").filename.endswith("tests/web/templates/error.html")
    assert env.get_template("logged_out.html").filename.endswith(
        "enjournal/web/templates/logged_out.html"
    )
