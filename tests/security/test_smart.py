"""How the server tells clients it is protected: CapabilityStatement.rest.security (SMART App
Launch 2.0, read by clients such as fhirclient), the aud check of the provider the settings
build, and the clients a deployer registers in a file (enjournal/security/setup.py)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from enjournal.security import keys
from enjournal.security.setup import DEMO_APP, build_security, clients_from_file
from enjournal.security.smart import OAUTH_URIS, SECURITY_SERVICE
from enjournal.server.app import create_app
from enjournal.settings import Settings
from tests.conftest import MEMORY

PUBLIC = "https://ehelse.example"


pytestmark = MEMORY  # the discovery documents and the provider, not storage


def secured_settings(tmp_path, **overrides) -> Settings:
    options = {
        "database_url": "unused",
        "public_url": PUBLIC,
        "oidc_provider": True,
        "oidc_key_file": str(tmp_path / "oidc-key.json"),
    }
    options.update(overrides)
    return Settings(**options)


async def serve(settings: Settings, store):
    app = create_app(settings, store)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url=PUBLIC, follow_redirects=False)


async def rest_security(http) -> dict:
    r = await http.get("/fhir/metadata")
    assert r.status_code == 200
    return r.json()["rest"][0]["security"]


def oauth_uris(security: dict) -> dict[str, str]:
    """What fhirclient's FHIRAuth.from_capability_security reads."""
    found = {}
    for extension in security.get("extension", []):
        if extension["url"] == OAUTH_URIS:
            found.update({e["url"]: e["valueUri"] for e in extension["extension"]})
    return found


async def test_secured_server_declares_smart_in_its_capability_statement(tmp_path, store):
    async with await serve(secured_settings(tmp_path), store) as http:
        security = await rest_security(http)
        smart = (await http.get("/fhir/.well-known/smart-configuration")).json()
    codings = [c for s in security["service"] for c in s["coding"]]
    assert {(c["system"], c["code"]) for c in codings} == {(SECURITY_SERVICE, "SMART-on-FHIR")}
    uris = oauth_uris(security)
    assert uris == {
        "authorize": smart["authorization_endpoint"],
        "token": smart["token_endpoint"],
        "revoke": smart["revocation_endpoint"],
    }
    assert uris["token"] == f"{PUBLIC}/oidc/token"
    assert "register" not in uris and "registration_endpoint" not in smart  # not offered
    assert security["cors"] is False  # the server sends no CORS headers
    assert f"{PUBLIC}/oidc" in security["description"]


async def test_open_server_says_it_is_open(store):
    app = create_app(Settings(database_url="unused", auth=False), store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as http:
        security = await rest_security(http)
    assert "service" not in security and not oauth_uris(security)
    assert "without security" in security["description"]


async def test_outside_issuers_only_are_named_without_smart_uris(tmp_path, store):
    issuer = {
        "issuer": "https://helseid.example",
        "audience": "enjournal",
        "jwks": keys.public_jwks(keys.generate("EC")),
    }
    settings = secured_settings(tmp_path, oidc_provider=False, trusted_issuers=json.dumps([issuer]))
    async with await serve(settings, store) as http:
        security = await rest_security(http)
    assert [c["code"] for s in security["service"] for c in s["coding"]] == ["OAuth"]
    assert not oauth_uris(security) and "https://helseid.example" in security["description"]


# ----------------------------------------------------------------------------- aud


def authorize_params(aud: str | None, redirect_uri: str, client_id: str = DEMO_APP) -> dict:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid patient/*.rs",
        "state": "s1",
        "code_challenge": "A" * 43,
        "code_challenge_method": "S256",
        "aud": aud,
    }
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize(
    ("base_url", "aud", "accepted"),
    [
        (None, f"{PUBLIC}/fhir", True),
        (None, "https://evil.example/fhir", False),
        (None, None, False),
        (None, f"{PUBLIC}/oidc", False),
        ("https://api.example/r4", "https://api.example/r4", True),
        ("https://api.example/r4", f"{PUBLIC}/fhir", False),
    ],
)
async def test_provider_from_settings_accepts_only_this_servers_aud(
    tmp_path, store, base_url, aud, accepted
):
    settings = secured_settings(tmp_path, base_url=base_url)
    callback = settings.demo_redirect_uris[0]
    async with await serve(settings, store) as http:
        r = await http.get("/oidc/authorize", params=authorize_params(aud, callback))
    if accepted:  # on to the login page (no demo user chosen)
        assert r.status_code == 200 and "Choose a demo user" in r.text
        return
    assert r.status_code == 302 and r.headers["location"].startswith(callback)
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert query["error"] == ["invalid_request"] and "code" not in query


async def test_evil_aud_with_an_unregistered_redirect_is_not_redirected(tmp_path, store):
    async with await serve(secured_settings(tmp_path), store) as http:
        params = authorize_params("https://evil.example/fhir", "https://evil.example/cb")
        r = await http.get("/oidc/authorize", params=params)
    assert r.status_code == 400 and "location" not in r.headers


# ----------------------------------------------------------------------------- registered clients


def write_clients(tmp_path, clients) -> str:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(clients))
    return str(path)


APP = {
    "client_id": "growth-chart",
    "client_name": "Growth chart",
    "redirect_uris": ["https://apps.example/growth/callback", "http://127.0.0.1:9000/cb"],
    "scope": "openid fhirUser launch/patient offline_access patient/Observation.rs",
}
BACKEND_KEY = keys.generate("EC")
BACKEND = {
    "client_id": "lab-system",
    "jwks": keys.public_jwks(BACKEND_KEY),
    "scope": "system/Observation.cruds",
    "org_nr": "983974899",
}


async def test_registered_clients_file(tmp_path, store):
    settings = secured_settings(tmp_path, oidc_clients_file=write_clients(tmp_path, [APP, BACKEND]))
    security = build_security(settings)
    clients = security.provider.clients
    assert set(clients) == {DEMO_APP, "growth-chart", "lab-system"}
    assert clients["growth-chart"].jwk is None and clients["lab-system"].jwk is not None
    assert clients["lab-system"].org_nr == "983974899"
    async with await serve(settings, store) as http:
        for uri in APP["redirect_uris"]:
            params = authorize_params(f"{PUBLIC}/fhir", uri, "growth-chart")
            assert (await http.get("/oidc/authorize", params=params)).status_code == 200
        params = authorize_params(f"{PUBLIC}/fhir", "https://apps.example/other", "growth-chart")
        assert (await http.get("/oidc/authorize", params=params)).status_code == 400


@pytest.mark.parametrize(
    ("clients", "message"),
    [
        ({"client_id": "x"}, "JSON list"),
        (["not an object"], "JSON object"),
        ([{**APP, "secret": "s"}], "unknown fields"),
        ([{**APP, "client_id": "bad id"}], "client_id"),
        ([{**APP, "redirect_uris": ["http://apps.example/cb"]}], "redirect_uris"),
        ([{**APP, "redirect_uris": ["https://apps.example/cb#frag"]}], "redirect_uris"),
        ([{**APP, "redirect_uris": ["/relative"]}], "redirect_uris"),
        ([{**APP, "scope": ""}], "scope"),
        ([{"client_id": "lonely", "scope": "openid"}], "redirect_uris, jwks"),
        ([{**BACKEND, "jwks": {"keys": []}}], "JWK Set"),
        ([{**BACKEND, "jwks": {"keys": [BACKEND_KEY.as_dict(private=True)]}}], "public keys"),
        ([{**BACKEND, "jwks": {"keys": [{"kty": "RSA", "n": "x"}]}}], "malformed"),
        ([{**BACKEND, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}], "no RSA or EC"),
        ([APP, APP], "twice"),
        ([{**APP, "client_id": DEMO_APP}], "twice"),
    ],
)
def test_bad_clients_file_is_refused_with_a_reason(tmp_path, clients, message):
    settings = secured_settings(tmp_path, oidc_clients_file=write_clients(tmp_path, clients))
    with pytest.raises(ValueError, match=message):
        build_security(settings)


def test_clients_file_that_is_not_json(tmp_path):
    path = tmp_path / "clients.json"
    path.write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        clients_from_file(path)
