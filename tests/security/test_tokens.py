"""Access-token verification (tokens.py), SMART scopes (scopes.py) and the signing key (keys.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from joserfc import jwt
from joserfc.jwk import RSAKey

from enjournal.fhir.errors import Unauthorized
from enjournal.security import keys, scopes
from enjournal.security.tokens import (
    HER_ID,
    HPR_NUMBER,
    ORGNR_CHILD,
    ORGNR_PARENT,
    PROFESSION,
    IssuerConfig,
    TokenVerifier,
)

ISS = "https://helseid.test"
AUD = "enjournal"


@pytest.fixture(scope="module")
def ec_key():
    return keys.generate("EC")


@pytest.fixture(scope="module")
def rsa_key():
    return keys.generate("RSA")


@pytest.fixture(scope="module")
def rsa_any():
    """An RSA key without a pinned "alg", so it can sign PS256 / RS512 too."""
    key = RSAKey.generate_key(2048, auto_kid=True)
    return key


def sign(key, claims: dict, **header) -> str:
    alg = header.pop("alg", keys.signing_alg(key))
    h = {"alg": alg, "kid": key.kid, **header}
    return jwt.encode(h, claims, key, algorithms=[alg])


def base_claims(**extra) -> dict:
    now = int(time.time())
    claims = {
        "iss": ISS,
        "aud": AUD,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "j1",
        "client_id": "ehr-client",
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def personnel(**extra) -> dict:
    claims = {
        "sub": "abc123",
        "name": "Kari Lege",
        "scope": "openid user/*.cruds patient/Observation.rs",
        HPR_NUMBER: "565501872",
        PROFESSION: "LE",
        ORGNR_CHILD: "974589095",
        ORGNR_PARENT: "974589000",
        HER_ID: "8143060",
    }
    claims.update(extra)
    return base_claims(**claims)


def verifier(*keys_, **kw) -> TokenVerifier:
    return TokenVerifier([IssuerConfig(ISS, AUD, jwks=keys.public_jwks(*keys_), **kw)])


async def test_personnel_token(ec_key):
    p = await verifier(ec_key).verify(sign(ec_key, personnel(patient="pat-1")))
    assert p.kind == "personnel"
    assert (p.hpr, p.profession, p.org_nr, p.her_id) == ("565501872", "LE", "974589095", "8143060")
    assert p.subject == "abc123" and p.client_id == "ehr-client" and p.name == "Kari Lege"
    assert p.scopes == {"openid", "user/*.cruds", "patient/Observation.rs"}
    assert p.patient == "pat-1" and p.pid is None


async def test_personnel_org_falls_back_to_parent_and_rsa(rsa_key, rsa_any):
    claims = personnel(**{ORGNR_CHILD: None})
    p = await verifier(rsa_key).verify(sign(rsa_key, claims))
    assert p.org_nr == "974589000"
    ps = await verifier(rsa_any).verify(sign(rsa_any, personnel(), alg="PS256"))
    assert ps.hpr == "565501872"


async def test_citizen_token(ec_key):
    claims = base_claims(
        sub="pairwise-x",
        pid="12057900499",
        acr="idporten-loa-substantial",
        scope=["openid", "patient/*.rs"],
        patient="p-42",
        given_name="Ola",
        family_name="Nordmann",
    )
    p = await verifier(ec_key).verify(sign(ec_key, claims))
    assert p.kind == "citizen" and p.pid == "12057900499" and p.assurance == "substantial"
    assert p.scopes == {"openid", "patient/*.rs"} and p.patient == "p-42"
    assert p.name == "Ola Nordmann" and p.hpr is None
    high = await verifier(ec_key).verify(sign(ec_key, {**claims, "acr": "idporten-loa-high"}))
    assert high.assurance == "high"


async def test_system_token(ec_key):
    claims = base_claims(client_id="lab-system", sub="lab-system", scope="system/Observation.cruds")
    claims[ORGNR_PARENT] = "983974899"
    p = await verifier(ec_key).verify(sign(ec_key, claims))
    assert p.kind == "system" and p.client_id == "lab-system" and p.subject == "lab-system"
    assert p.org_nr == "983974899" and p.scopes == {"system/Observation.cruds"}
    # HelseID client-credentials tokens may have no sub at all
    del claims["sub"]
    assert (await verifier(ec_key).verify(sign(ec_key, claims))).subject == "lab-system"


async def test_configured_kind_overrides_guess(ec_key):
    v = verifier(ec_key, kind="personnel")
    with pytest.raises(Unauthorized):  # a citizen-looking token from a personnel-only issuer
        await v.verify(sign(ec_key, base_claims(sub="x", pid="12057900499")))


async def test_audience_list_and_several_allowed(ec_key):
    v = TokenVerifier([IssuerConfig(ISS, ["other", AUD], jwks=keys.public_jwks(ec_key))])
    p = await v.verify(sign(ec_key, personnel(aud=["x", AUD])))
    assert p.kind == "personnel"


now = int(time.time())


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (personnel(exp=now - 100, iat=now - 400, nbf=now - 400), "expired"),
        (personnel(nbf=now + 300), "not yet valid"),
        (personnel(iat=now + 300), "not yet valid"),
        (personnel(aud="someone-else"), "audience"),
        (personnel(iss="https://evil.test"), "issuer"),
        (personnel(exp=None), "required claims"),
        (personnel(client_id=None), "required claims"),
        (personnel(sub=None), "required claims"),
        (base_claims(sub="x", pid="123"), "required claims"),  # malformed pid
        (base_claims(sub="somebody"), "required claims"),  # no kind can be told
        (personnel(**{HPR_NUMBER: "not-a-number"}), "required claims"),
    ],
)
async def test_rejected_claims(ec_key, claims, message):
    with pytest.raises(Unauthorized) as info:
        await verifier(ec_key).verify(sign(ec_key, claims))
    assert message in info.value.message
    assert "eyJ" not in info.value.message  # never echoes the token


async def test_leeway_accepts_small_skew(ec_key):
    t = int(time.time())
    claims = personnel(exp=t - 5, nbf=t + 5, iat=t + 5)
    assert (await verifier(ec_key).verify(sign(ec_key, claims))).hpr
    with pytest.raises(Unauthorized):
        await verifier(ec_key, leeway=0).verify(sign(ec_key, claims))


async def test_forged_signature_other_key(ec_key):
    other = keys.generate("EC")
    forged = jwt.encode({"alg": "ES256", "kid": ec_key.kid}, personnel(), other)  # same kid
    with pytest.raises(Unauthorized, match="signature"):
        await verifier(ec_key).verify(forged)
    tampered = sign(ec_key, personnel())
    head, _body, sig = tampered.split(".")
    evil = _b64(json.dumps({**personnel(), HPR_NUMBER: "999999999"}).encode())
    with pytest.raises(Unauthorized, match="signature"):
        await verifier(ec_key).verify(f"{head}.{evil}.{sig}")


def raw_es256(key, header: dict, claims: dict) -> str:
    """Sign without joserfc's header checks, to build tokens it would refuse to make."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_alg_none(ec_key):
    for alg in ("none", "None", "NONE"):
        head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        body = _b64(json.dumps(personnel()).encode())
        for token in (f"{head}.{body}.", f"{head}.{body}.AAAA"):
            with pytest.raises(Unauthorized):
                await verifier(ec_key).verify(token)


async def test_hs256_key_confusion(rsa_key, ec_key):
    """HS256 'signed' with the issuer's public key (PEM and JWK forms) must fail."""
    for key in (rsa_key, ec_key):
        secrets_ = [
            key.as_pem(private=False),
            json.dumps(keys.public_jwk(key)).encode(),
        ]
        for secret in secrets_:
            head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
            body = _b64(json.dumps(personnel()).encode())
            mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
            with pytest.raises(Unauthorized, match="algorithm"):
                await verifier(key).verify(f"{head}.{body}.{_b64(mac)}")


def test_config_refuses_symmetric_algorithms(ec_key):
    with pytest.raises(ValueError):
        IssuerConfig(ISS, AUD, jwks=keys.public_jwks(ec_key), algorithms=["HS256", "ES256"])
    with pytest.raises(ValueError):
        IssuerConfig(ISS, AUD)  # no key source


async def test_alg_not_in_allow_list(rsa_any):
    token = sign(rsa_any, personnel(), alg="RS512")
    with pytest.raises(Unauthorized, match="algorithm"):
        await verifier(rsa_any).verify(token)
    with pytest.raises(Unauthorized, match="algorithm"):  # narrower per-issuer allow-list
        await verifier(rsa_any, algorithms=["ES256"]).verify(sign(rsa_any, personnel()))


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b", "a.b.c", "....", "x" * 20000, None, 42, "e30.e30.e30"]
)
async def test_malformed(ec_key, token):
    with pytest.raises(Unauthorized):
        await verifier(ec_key).verify(token)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "claims"),
    [
        ({"typ": ["JWT"]}, {}),
        ({"kid": ["x"]}, {}),
        ({}, {"iss": [ISS]}),
        ({}, {"aud": 5}),
        ({}, {"exp": "soon"}),
        ({}, {"scope": 5, "client_id": ["a"]}),
    ],
)
async def test_odd_types_are_unauthorized_not_errors(ec_key, header, claims):
    head = {"alg": "ES256", "kid": ec_key.kid, **header}
    token = raw_es256(ec_key, head, personnel(**claims))
    with pytest.raises(Unauthorized):
        await verifier(ec_key).verify(token)


async def test_raw_signer_makes_valid_tokens(ec_key):
    token = raw_es256(ec_key, {"alg": "ES256", "kid": ec_key.kid}, personnel())
    assert (await verifier(ec_key).verify(token)).hpr


async def test_wrong_typ_rejected(ec_key):
    with pytest.raises(Unauthorized):
        await verifier(ec_key).verify(sign(ec_key, personnel(), typ="dpop+jwt"))


async def test_jwks_url_cached_and_refreshed_on_unknown_kid(ec_key):
    rotated = keys.generate("EC")
    served = {"jwks": keys.public_jwks(ec_key)}
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, json=served["jwks"])

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    cfg = IssuerConfig(ISS, AUD, jwks_url=f"{ISS}/jwks", jwks_min_refresh_seconds=0)
    v = TokenVerifier([cfg], http=http)
    await v.verify(sign(ec_key, personnel()))
    await v.verify(sign(ec_key, personnel()))
    assert len(calls) == 1  # cached
    served["jwks"] = keys.public_jwks(ec_key, rotated)
    assert (await v.verify(sign(rotated, personnel()))).hpr
    assert len(calls) == 2  # refetched for the new kid
    # an unknown kid with nothing new to find: refetch, then fail
    with pytest.raises(Unauthorized):
        await v.verify(sign(keys.generate("EC"), personnel()))
    await http.aclose()


async def test_jwks_refresh_rate_limited(ec_key):
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(200, json=keys.public_jwks(ec_key))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    v = TokenVerifier([IssuerConfig(ISS, AUD, jwks_url=f"{ISS}/jwks")], http=http)
    stranger = keys.generate("EC")
    for _ in range(5):
        with pytest.raises(Unauthorized):
            await v.verify(sign(stranger, personnel()))
    assert len(calls) == 1
    await http.aclose()


async def test_jwks_unreachable(ec_key):
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    v = TokenVerifier([IssuerConfig(ISS, AUD, jwks_url=f"{ISS}/jwks")], http=http)
    with pytest.raises(Unauthorized, match="unavailable"):
        await v.verify(sign(ec_key, personnel()))
    await http.aclose()


async def test_private_key_in_config_is_reduced_to_public(ec_key):
    v = TokenVerifier([IssuerConfig(ISS, AUD, jwks=[ec_key])])
    assert (await v.verify(sign(ec_key, personnel()))).hpr
    assert all(not k.is_private for k in v._keys[ISS].keyset)


# ----------------------------------------------------------------------------- scopes


@pytest.mark.parametrize(
    ("granted", "rtype", "action", "context"),
    [
        ("patient/*.rs", "Observation", "r", "patient"),
        ("patient/*.rs", "Observation", "s", "patient"),
        ("patient/*.rs", "Observation", "c", None),
        ("user/Observation.cruds", "Observation", "d", "user"),
        ("user/Observation.cruds", "Patient", "r", None),
        ("system/*.rs", "Patient", "r", "system"),
        ("system/*.rs", "Patient", "u", None),
        ("patient/Observation.read", "Observation", "s", "patient"),
        ("patient/Observation.read", "Observation", "c", None),
        ("user/*.write", "Condition", "u", "user"),
        ("user/*.write", "Condition", "r", None),
        ("user/*.*", "Condition", "d", "user"),
        ("patient/*.rs user/*.rs", "Patient", "r", "user"),
        ("system/*.rs user/*.rs patient/*.rs", "Patient", "r", "system"),
        ("patient/Observation.rs?category=laboratory", "Observation", "r", None),
        ("patient/*.sr", "Observation", "r", None),  # wrong order: invalid
        ("patient/*.rrs", "Observation", "r", None),
        ("patient/*.", "Observation", "r", None),
        ("launch/patient openid fhirUser", "Patient", "r", None),
        ("patient/observation.rs", "observation", "r", None),
        ("", "Patient", "r", None),
    ],
)
def test_scope_allows(granted, rtype, action, context):
    assert scopes.grant(granted, rtype, action) == context
    assert scopes.allows(granted.split(), rtype, action) is (context is not None)


def test_scope_contexts_and_parse():
    got = scopes.granting_contexts(["patient/*.rs", "user/Patient.r"], "Patient", "r")
    assert got == {"patient", "user"}
    s = scopes.parse_scope("patient/Observation.rs?category=laboratory")
    assert s and s.query == "category=laboratory" and s.actions == {"r", "s"}
    assert scopes.parse_scope("system/*.read").actions == {"r", "s"}
    with pytest.raises(ValueError):
        scopes.allows("patient/*.rs", "Patient", "x")


def test_scope_covered():
    assert scopes.covered("patient/Observation.rs", ["patient/*.cruds"])
    assert scopes.covered("patient/Observation.rs", ["patient/*.read"])
    assert not scopes.covered("patient/Observation.c", ["patient/*.read"])
    assert not scopes.covered("user/Observation.rs", ["patient/*.cruds"])
    assert scopes.covered("openid", ["openid"])
    assert not scopes.covered("openid", ["patient/*.rs"])


# ----------------------------------------------------------------------------- keys


def test_load_or_create(tmp_path):
    path = tmp_path / "sub" / "signing.jwk"
    k1 = keys.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert k1.is_private and k1.kid and keys.signing_alg(k1) == "ES256"
    assert keys.load_or_create(path).kid == k1.kid  # same key next time
    assert keys.load_or_create(tmp_path / "other.jwk").kid != k1.kid  # random, not fixed
    assert "d" not in keys.public_jwks(k1)["keys"][0]
    assert not list(tmp_path.glob("sub/.*tmp"))
    rsa = keys.load_or_create(tmp_path / "rsa.jwk", "RSA")
    assert keys.signing_alg(rsa) == "RS256" and rsa.as_dict()["n"]


def test_load_or_create_fixes_loose_mode_and_rejects_public(tmp_path):
    path = tmp_path / "k.jwk"
    keys.load_or_create(path)
    os.chmod(path, 0o644)
    keys.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    pub = tmp_path / "pub.jwk"
    pub.write_text(json.dumps(keys.public_jwk(keys.generate())))
    with pytest.raises(ValueError):
        keys.load_or_create(pub)
