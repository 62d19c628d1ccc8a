"""The portal on a secured app over the kjernejournal test world (tests/services/
kjernejournal/conftest.py): citizen kari with children lise (8) and per (13), siri a
stranger to all; GP "gp".  ``PortalClient`` logs in through the embedded provider's code
flow with PKCE, as a browser would, and keeps the session cookie itself (httpx does not
send a Secure cookie over http)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from enjournal.security.provider import Provider
from tests.security.conftest import SCOPES
from tests.services.kjernejournal.conftest import KJ_USERS, kj_app

COOKIE = "hn_session"
# Citizens launch in their own record (SMART patient context), as the demo's do.
PORTAL_USERS = {
    name: replace(user, patient=name) if user.kind == "citizen" else user
    for name, user in KJ_USERS.items()
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class PortalClient:
    http: httpx.AsyncClient
    provider: Provider
    store: object
    cookie: str | None = None
    last: httpx.Response | None = None
    cookies_seen: list[str] = field(default_factory=list)

    async def get(self, path: str, **kwargs) -> httpx.Response:
        return await self._send("GET", path, **kwargs)

    async def post(self, path: str, data: dict | None = None, *, csrf: bool = True):
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf", await self.csrf())
        return await self._send("POST", path, data=form)

    async def csrf(self) -> str:
        page = await self.get("/helsenorge/")
        found = CSRF.search(page.text)
        assert found, page.text
        return found.group(1)

    async def login(self, who: str = "kari") -> httpx.Response:
        start = await self.get("/helsenorge/login")
        assert start.status_code == 303, start.text
        query = parse_qs(urlsplit(start.headers["location"]).query)
        params = {k: v[0] for k, v in query.items()}
        chosen = await self.http.get("/oidc/authorize", params={**params, "login_hint": who})
        back = urlsplit(chosen.headers["location"])
        return await self.get(f"{back.path}?{back.query}")

    async def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}
        response = await self.http.request(method, path, headers=headers, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            self.cookies_seen.append(raw)
            name, _, rest = raw.partition("=")
            if name == COOKIE:
                value = rest.split(";", 1)[0].strip('"')
                self.cookie = value or None
        self.last = response
        return response

    def token(self, who: str) -> str:
        user = KJ_USERS[who]
        return self.provider.issue_token(user, scopes=SCOPES[user.kind])

    async def api(self, method: str, path: str, who: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(who)}", **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)


@pytest.fixture
async def portal(store, tmp_path):
    async with kj_app(store, tmp_path, PORTAL_USERS) as (http, provider, _):
        yield PortalClient(http, provider, store)
