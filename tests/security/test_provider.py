"""The embedded OpenID Connect provider, end to end over ASGI, verified with TokenVerifier."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from starlette.applications import Starlette
from starlette.routing import Mount

from enjournal.fhir.errors import Unauthorized
from enjournal.security import keys
from enjournal.security.provider import (
    ASSERTION_TYPE,
    Client,
    DemoUser,
    Provider,
    ProviderConfig,
    issue_token,
)
from enjournal.security.smart import smart_configuration_route
from enjournal.security.tokens import IssuerConfig, TokenVerifier

BASE = "http://testserver"
ISSUER = f"{BASE}/oidc"
TOKEN_URL = f"{ISSUER}/token"
APP_CB = "https://app.test/callback"

GP = DemoUser(
    "gp",
    "personnel",
    display_name="Kari Fastlege",
    hpr="565501872",
    profession="LE",
    org_nr="974589095",
    org_parent="974589000",
    her_id="8143060",
    fhir_user="Practitioner/gp-1",
)
NURSE = DemoUser(
    "nurse", "personnel", display_name="Nils Sykepleier", hpr="9144889", profession="SP"
)
PHARMACIST = DemoUser("pharmacist", "personnel", hpr="3456789", profession="FA", org_nr="987654321")
CITIZEN = DemoUser(
    "ola", "citizen", display_name="Ola <Nordmann>", pid="12057900499", patient="pat-ola"
)

BACKEND_KEY = keys.generate("EC")
WEB_KEY = keys.generate("RSA")
PUBLIC_APP = Client(
    "smart-app",
    redirect_uris=[APP_CB],
    scopes=[
        "openid",
        "fhirUser",
        "launch/patient",
        "offline_access",
        "online_access",
        "patient/*.rs",
        "user/*.rs",
    ],
)
WEB_APP = Client(
    "web-ehr",
    redirect_uris=["https://ehr.test/cb"],
    jwk=keys.public_jwk(WEB_KEY),
    scopes=["user/*.cruds"],
)
BACKEND = Client(
    "lab-system",
    jwk=keys.public_jwk(BACKEND_KEY),
    scopes=["system/Observation.cruds", "system/Patient.rs"],
    org_nr="983974899",
    name="Lab",
)
REGISTER_KEY = keys.generate("EC")
REGISTER = Client(
    "kpr",
    jwk=keys.public_jwk(REGISTER_KEY),
    scopes=["system/*.rs", "register/kpr"],
    name="KPR",
)


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def provider(clock):
    config = ProviderConfig(
        issuer=ISSUER,
        key=keys.generate("EC"),
        users=[GP, NURSE, PHARMACIST, CITIZEN],
        clients=[PUBLIC_APP, WEB_APP, BACKEND, REGISTER],
        audience="enjournal",
        fhir_base=f"{BASE}/fhir",
    )
    return Provider(config, clock=clock)


@pytest.fixture
async def http(provider):
    app = Starlette(
        routes=[
            Mount("/oidc", app=provider.router),
            Mount("/fhir", routes=[smart_configuration_route(ISSUER)]),
        ]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE, follow_redirects=False
    ) as client:
        yield client


@pytest.fixture
async def verifier(http):
    """Verifies through the provider's own /jwks, fetched over (ASGI) HTTP."""
    cfg = IssuerConfig(ISSUER, "enjournal", jwks_url=f"{ISSUER}/jwks")
    return TokenVerifier([cfg], http=http)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.decode().rstrip("=")


async def authorize(http, user="gp", scope="openid patient/*.rs", client=PUBLIC_APP, **extra):
    verifier, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uris[0],
        "scope": scope,
        "state": "st-123",
        "nonce": "n-456",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "aud": f"{BASE}/fhir",
    }
    if user:
        params["login_hint"] = user
    params.update(extra)
    r = await http.get("/oidc/authorize", params={k: v for k, v in params.items() if v is not None})
    return r, verifier


def redirect_params(r) -> dict[str, str]:
    assert r.status_code == 302, r.text
    return {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}


async def exchange(http, code, verifier, client=PUBLIC_APP, **extra):
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uris[0],
        "code_verifier": verifier,
        "client_id": client.client_id,
    }
    form.update(extra)
    return await http.post("/oidc/token", data={k: v for k, v in form.items() if v is not None})


def as_web_app() -> dict:
    """The token-request fields that authenticate the confidential WEB_APP."""
    return {
        "client": WEB_APP,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(WEB_KEY, "web-ehr"),
    }


def assertion(key=BACKEND_KEY, client_id="lab-system", **claims) -> str:
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "iat": now,
        "exp": now + 120,
        "jti": uuid.uuid4().hex,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    alg = keys.signing_alg(key)
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, body, key, algorithms=[alg])


async def client_credentials(http, scope="system/Observation.rs", token=None, **extra):
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": token or assertion(),
    }
    form.update(extra)
    return await http.post("/oidc/token", data={k: v for k, v in form.items() if v is not None})


# ----------------------------------------------------------------------------- discovery


async def test_discovery_jwks_and_smart(http, provider):
    d = (await http.get("/oidc/.well-known/openid-configuration")).json()
    assert d["issuer"] == ISSUER and d["token_endpoint"] == TOKEN_URL
    assert d["jwks_uri"] == f"{ISSUER}/jwks" and d["code_challenge_methods_supported"] == ["S256"]
    assert "private_key_jwt" in d["token_endpoint_auth_methods_supported"]
    assert "refresh_token" in d["grant_types_supported"]
    assert d["revocation_endpoint"] == f"{ISSUER}/revoke"
    jwks = (await http.get("/oidc/jwks")).json()
    assert [k["kid"] for k in jwks["keys"]] == [provider.config.key.kid]
    assert all("d" not in k for k in jwks["keys"])
    smart = (await http.get("/fhir/.well-known/smart-configuration")).json()
    assert smart["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert smart["token_endpoint"] == TOKEN_URL
    assert {"launch-standalone", "context-standalone-patient", "permission-v2"} <= set(
        smart["capabilities"]
    )
    assert "client-confidential-asymmetric" in smart["capabilities"]
    assert smart["code_challenge_methods_supported"] == ["S256"]
    assert {"permission-offline", "permission-online"} <= set(smart["capabilities"])
    assert "refresh_token" in smart["grant_types_supported"]
    assert smart["revocation_endpoint"] == f"{ISSUER}/revoke"


# ----------------------------------------------------------------------------- code flow


async def test_code_flow_personnel(http, verifier):
    r, code_verifier = await authorize(http, "gp", "openid fhirUser patient/*.rs user/*.rs")
    p = redirect_params(r)
    assert (
        p["state"] == "st-123" and p["iss"] == ISSUER and r.headers["location"].startswith(APP_CB)
    )
    t = await exchange(http, p["code"], code_verifier)
    assert t.status_code == 200, t.text
    body = t.json()
    assert t.headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer" and 300 <= body["expires_in"] <= 600
    principal = await verifier.verify(body["access_token"])
    assert principal.kind == "personnel" and principal.hpr == "565501872"
    assert principal.profession == "LE" and principal.org_nr == "974589095"
    assert principal.her_id == "8143060" and principal.client_id == "smart-app"
    assert principal.scopes == {"openid", "fhirUser", "patient/*.rs", "user/*.rs"}
    id_token = jwt.decode(body["id_token"], provider_key(verifier)).claims
    assert id_token["nonce"] == "n-456" and id_token["aud"] == "smart-app"
    assert id_token["fhirUser"] == "Practitioner/gp-1"


def provider_key(verifier):
    return next(iter(verifier._keys.values())).keyset


async def test_code_flow_citizen_gets_own_patient_context(http, verifier):
    r, code_verifier = await authorize(
        http, "ola", "openid launch/patient patient/*.rs", patient="someone-else"
    )
    body = (await exchange(http, redirect_params(r)["code"], code_verifier)).json()
    assert body["patient"] == "pat-ola"
    principal = await verifier.verify(body["access_token"])
    assert principal.kind == "citizen" and principal.pid == "12057900499"
    assert principal.assurance == "high" and principal.patient == "pat-ola"


async def test_personnel_chooses_patient_context(http, verifier):
    r, v = await authorize(http, "nurse", "launch/patient patient/*.rs", patient="pat-7")
    body = (await exchange(http, redirect_params(r)["code"], v)).json()
    assert body["patient"] == "pat-7"
    assert (await verifier.verify(body["access_token"])).patient == "pat-7"


async def test_scopes_narrowed_to_client_and_no_system_scopes(http, verifier):
    r, v = await authorize(http, "gp", "patient/Observation.rs user/*.cruds system/*.rs openid")
    body = (await exchange(http, redirect_params(r)["code"], v)).json()
    assert body["scope"] == "patient/Observation.rs openid"


async def test_wrong_verifier_fails_and_burns_code(http):
    r, code_verifier = await authorize(http)
    code = redirect_params(r)["code"]
    bad = await exchange(http, code, secrets.token_urlsafe(48))
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    again = await exchange(http, code, code_verifier)  # the code is gone now
    assert again.status_code == 400


async def test_code_reuse_fails(http):
    r, code_verifier = await authorize(http)
    code = redirect_params(r)["code"]
    assert (await exchange(http, code, code_verifier)).status_code == 200
    reuse = await exchange(http, code, code_verifier)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"


async def test_code_expires(http, clock):
    r, code_verifier = await authorize(http)
    clock.now += 120
    assert (await exchange(http, redirect_params(r)["code"], code_verifier)).status_code == 400


async def test_code_bound_to_redirect_uri_and_client(http):
    r, v = await authorize(http)
    code = redirect_params(r)["code"]
    wrong = await exchange(http, code, v, redirect_uri="https://app.test/other")
    assert wrong.status_code == 400
    r, v = await authorize(http)
    other = await exchange(http, redirect_params(r)["code"], v, client_id="nobody")
    assert other.status_code == 401 and other.json()["error"] == "invalid_client"


async def test_missing_or_short_verifier(http):
    r, _ = await authorize(http)
    t = await exchange(http, redirect_params(r)["code"], None)
    assert t.status_code == 400
    r, _ = await authorize(http)
    assert (await exchange(http, redirect_params(r)["code"], "short")).status_code == 400


async def test_authorize_rejects_unregistered_redirect_without_redirecting(http):
    r, _ = await authorize(http, redirect_uri="https://evil.test/cb")
    assert r.status_code == 400 and "location" not in r.headers
    r, _ = await authorize(http, client_id="unknown")
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"aud": "https://other.test/fhir"}, "invalid_request"),
        ({"aud": "https://evil.example/fhir"}, "invalid_request"),
        ({"aud": f"{BASE}/fhir/Patient"}, "invalid_request"),
        ({"aud": None}, "invalid_request"),  # SMART: aud is required
    ],
)
async def test_authorize_errors_redirect_with_state(http, extra, error):
    r, _ = await authorize(http, **extra)
    p = redirect_params(r)
    assert p["error"] == error and p["state"] == "st-123" and "code" not in p


async def test_aud_is_checked_before_the_login_page(http):
    r, _ = await authorize(http, user=None, aud="https://evil.example/fhir")
    assert redirect_params(r)["error"] == "invalid_request"
    r, _ = await authorize(http, aud=f"{BASE}/fhir/")  # a trailing slash is the same base
    assert "code" in redirect_params(r)


def test_fhir_base_defaults_to_the_one_beside_the_provider():
    config = ProviderConfig(issuer="https://ehelse.example/oidc/", key=keys.generate("EC"))
    assert config.fhir_base == "https://ehelse.example/fhir"
    elsewhere = Provider(ProviderConfig(issuer="https://idp.example", key=keys.generate("EC")))
    assert elsewhere.config.fhir_base is None
    assert not elsewhere._is_this_server("https://idp.example/fhir")  # no base: nothing passes


async def test_chooser_page(http):
    r, _ = await authorize(http, user=None, state='"><script>x</script>')
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["x-frame-options"] == "DENY"
    for name in ("gp", "nurse", "pharmacist", "ola"):
        assert f'value="{name}"' in r.text
    assert "<script>" not in r.text and "Ola &lt;Nordmann&gt;" in r.text
    assert 'name="code_challenge"' in r.text  # original parameters are carried through
    r, _ = await authorize(http, user=None, prompt="none")
    assert redirect_params(r)["error"] == "login_required"


async def test_confidential_client_must_authenticate_in_code_flow(http, verifier):
    r, v = await authorize(http, client=WEB_APP, scope="user/*.rs")
    code = redirect_params(r)["code"]
    t = await exchange(http, code, v, client=WEB_APP)
    assert t.status_code == 401
    r, v = await authorize(http, client=WEB_APP, scope="user/*.rs")
    t = await exchange(http, redirect_params(r)["code"], v, **as_web_app())
    assert t.status_code == 200, t.text
    assert (await verifier.verify(t.json()["access_token"])).client_id == "web-ehr"


# ----------------------------------------------------------------------------- refresh tokens


async def refresh(http, token, client=PUBLIC_APP, **extra):
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client.client_id}
    form.update(extra)
    return await http.post("/oidc/token", data={k: v for k, v in form.items() if v is not None})


async def offline_tokens(
    http, scope="openid launch/patient offline_access patient/*.rs", **extra
) -> dict:
    r, v = await authorize(http, "ola", scope, **extra)
    t = await exchange(http, redirect_params(r)["code"], v)
    assert t.status_code == 200, t.text
    return t.json()


async def test_no_refresh_token_without_offline_or_online_access(http):
    body = await offline_tokens(http, "openid patient/*.rs")
    assert "refresh_token" not in body and "offline_access" not in body["scope"]


async def test_offline_access_not_registered_for_the_client_is_dropped(http):
    r, v = await authorize(http, client=WEB_APP, scope="user/*.rs offline_access")
    t = await exchange(http, redirect_params(r)["code"], v, **as_web_app())
    assert t.json()["scope"] == "user/*.rs" and "refresh_token" not in t.json()


async def test_refresh_token_rotates_and_keeps_the_grant(http, verifier):
    first = await offline_tokens(http)
    assert "offline_access" in first["scope"].split() and first["refresh_token"]
    r = await refresh(http, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert r.headers["cache-control"] == "no-store"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == first["scope"] and second["patient"] == "pat-ola"
    principal = await verifier.verify(second["access_token"])
    assert principal.pid == "12057900499" and principal.patient == "pat-ola"
    narrower = await refresh(http, second["refresh_token"], scope="patient/*.rs")
    assert narrower.status_code == 200 and narrower.json()["scope"] == "patient/*.rs"


async def test_reused_refresh_token_revokes_the_whole_grant(http):
    first = await offline_tokens(http)
    second = (await refresh(http, first["refresh_token"])).json()
    replay = await refresh(http, first["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # the attacker's replay also ends the rotated token the real client holds
    assert (await refresh(http, second["refresh_token"])).status_code == 400


async def test_refresh_token_is_bound_to_its_client(http):
    body = await offline_tokens(http)
    other = await refresh(http, body["refresh_token"], **as_web_app())
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"
    assert (await refresh(http, body["refresh_token"])).status_code == 400  # revoked: leaked


async def test_refresh_cannot_widen_scope_and_a_bad_request_does_not_spend_it(http):
    body = await offline_tokens(http)
    wider = await refresh(http, body["refresh_token"], scope="patient/*.rs user/*.rs")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    assert (await refresh(http, body["refresh_token"])).status_code == 200


async def test_refresh_tokens_expire_and_rotation_does_not_extend_them(http, clock, provider):
    offline = await offline_tokens(http)
    online = await offline_tokens(http, "openid online_access patient/*.rs")
    assert "online_access" in online["scope"].split()
    clock.now += provider.config.online_lifetime - 10
    offline = (await refresh(http, offline["refresh_token"])).json()
    online = (await refresh(http, online["refresh_token"])).json()
    clock.now += 20
    assert (await refresh(http, online["refresh_token"])).status_code == 400
    offline = (await refresh(http, offline["refresh_token"])).json()
    clock.now += provider.config.offline_lifetime
    assert (await refresh(http, offline["refresh_token"])).status_code == 400


async def test_both_offline_and_online_grant_offline_only(http):
    body = await offline_tokens(http, "offline_access online_access patient/*.rs")
    assert body["scope"].split() == ["offline_access", "patient/*.rs"]


async def test_revoke_ends_the_grant(http):
    body = await offline_tokens(http)
    r = await http.post(
        "/oidc/revoke", data={"token": body["refresh_token"], "client_id": "smart-app"}
    )
    assert r.status_code == 200
    assert (await refresh(http, body["refresh_token"])).status_code == 400
    unknown = await http.post("/oidc/revoke", data={"token": "x", "client_id": "smart-app"})
    assert unknown.status_code == 200  # RFC 7009 2.2
    anonymous = await http.post("/oidc/revoke", data={"token": "x", "client_id": "nobody"})
    assert anonymous.status_code == 401


async def test_another_client_cannot_revoke_a_grant(http):
    body = await offline_tokens(http)
    form = {
        "token": body["refresh_token"],
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(WEB_KEY, "web-ehr"),
    }
    assert (await http.post("/oidc/revoke", data=form)).status_code == 200
    assert (await refresh(http, body["refresh_token"])).status_code == 200


# ----------------------------------------------------------------------------- client credentials


async def test_client_credentials(http, verifier):
    r = await client_credentials(http, "system/Observation.rs system/Patient.rs system/*.cruds")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "system/Observation.rs system/Patient.rs"
    principal = await verifier.verify(body["access_token"])
    assert principal.kind == "system" and principal.client_id == "lab-system"
    assert principal.org_nr == "983974899" and principal.name == "Lab"
    assert principal.scopes == {"system/Observation.rs", "system/Patient.rs"}


@pytest.mark.parametrize("asked", ["system/*.rs", "system/Patient.rs register/kpr"])
async def test_a_register_client_cannot_shed_its_register_scope(http, verifier, asked):
    """The register scope marks a client whose reads go only through exports (policy rule
    1): it is in every token of that client, asked for or not."""
    token = assertion(REGISTER_KEY, client_id="kpr")
    r = await client_credentials(http, asked, token=token)
    assert r.status_code == 200, r.text
    principal = await verifier.verify(r.json()["access_token"])
    assert "register/kpr" in principal.scopes
    assert set(r.json()["scope"].split()) == principal.scopes


async def test_client_credentials_audience_may_be_issuer(http):
    assert (await client_credentials(http, token=assertion(aud=ISSUER))).status_code == 200


async def test_replayed_jti_fails(http):
    token = assertion()
    assert (await client_credentials(http, token=token)).status_code == 200
    replay = await client_credentials(http, token=token)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
    same_jti = assertion(jti="fixed")
    assert (await client_credentials(http, token=same_jti)).status_code == 200
    assert (await client_credentials(http, token=assertion(jti="fixed"))).status_code == 401


@pytest.mark.parametrize(
    "token",
    [
        lambda: assertion(key=keys.generate("EC")),  # signed with another key
        lambda: assertion(aud="https://elsewhere.test/token"),
        lambda: assertion(sub="someone-else"),
        lambda: assertion(client_id="web-ehr"),  # iss/sub web-ehr, signed with lab's key
        lambda: assertion(client_id="unknown"),
        lambda: assertion(exp=int(time.time()) - 120),
        lambda: assertion(exp=int(time.time()) + 3600),  # too long-lived
        lambda: assertion(jti=None),
        lambda: assertion(exp=None),
        lambda: "not.a.jwt",
        lambda: (
            base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=")
            + "."
            + base64.urlsafe_b64encode(b'{"iss":"lab-system","sub":"lab-system"}')
            .decode()
            .rstrip("=")
            + "."
        ),
    ],
)
async def test_bad_assertion_fails(http, token):
    r = await client_credentials(http, token=token())
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.headers["cache-control"] == "no-store"


async def test_client_credentials_needs_assertion_and_allowed_scope(http):
    r = await http.post(
        "/oidc/token", data={"grant_type": "client_credentials", "client_id": "lab-system"}
    )
    assert r.status_code == 401
    r = await client_credentials(http, client_assertion_type="urn:other")
    assert r.status_code == 401
    r = await client_credentials(http, "system/Patient.cruds patient/*.rs")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    # a public client cannot use client credentials at all
    r = await http.post(
        "/oidc/token", data={"grant_type": "client_credentials", "client_id": "smart-app"}
    )
    assert r.status_code == 401


async def test_token_endpoint_request_hygiene(http):
    r = await http.post("/oidc/token", data={"grant_type": "password"})
    assert r.json()["error"] == "unsupported_grant_type"
    r = await http.post("/oidc/token", json={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await http.post(
        "/oidc/token",
        content="grant_type=client_credentials&grant_type=authorization_code",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.json()["error"] == "invalid_request"
    assert (await http.get("/oidc/token")).status_code == 405


# ----------------------------------------------------------------------------- CLI helper


async def test_issue_token_for_cli(tmp_path, provider):
    key = keys.load_or_create(tmp_path / "signing.jwk")
    token = issue_token(
        PHARMACIST,
        key=key,
        issuer=ISSUER,
        audience="enjournal",
        scopes="user/MedicationRequest.rs",
        patient="pat-1",
    )
    again = keys.load_or_create(tmp_path / "signing.jwk")
    v = TokenVerifier([IssuerConfig(ISSUER, "enjournal", jwks=keys.public_jwks(again))])
    p = await v.verify(token)
    assert p.kind == "personnel" and p.profession == "FA" and p.org_nr == "987654321"
    assert p.patient == "pat-1" and p.scopes == {"user/MedicationRequest.rs"}
    # the provider's own key does not verify it; the in-process issuer config works for its own
    with pytest.raises(Unauthorized):
        await TokenVerifier([provider.issuer_config()]).verify(token)
    own = provider.issue_token(CITIZEN, scopes=["patient/*.rs"])
    assert (await TokenVerifier([provider.issuer_config()]).verify(own)).pid == "12057900499"


def test_demo_user_validation():
    with pytest.raises(ValueError):
        DemoUser("x", "personnel")
    with pytest.raises(ValueError):
        DemoUser("y", "citizen")
    assert GP.subject != NURSE.subject and GP.subject == DemoUser(**GP.__dict__).subject
