"""An embedded OpenID Connect provider for demos and tests, mounted under ``/oidc``.

It stands in for HelseID (personnel), ID-porten (citizens) and client-credentials issuance
(systems), issuing JWT access tokens with the claims :mod:`enjournal.security.tokens` reads.
It is *not* an identity provider for production: users are configured demo identities, and
choosing one is the whole "login".

Routes (relative to the mount point; the issuer is ``{public base}/oidc``):

``GET  /.well-known/openid-configuration``  discovery
``GET  /jwks``                              the public signing key
``GET  /authorize``                         authorization code + PKCE (S256 only).  Without
                                            ``login_hint`` a minimal page lists the demo
                                            users; ``login_hint=<demo user name>`` skips it.
                                            ``state`` is echoed, ``nonce`` goes in the ID
                                            token, ``redirect_uri`` must be registered.
                                            Demo extension: ``patient=<id>`` chooses the
                                            SMART patient context for personnel;
                                            ``login_hint=pid:<fødselsnummer>`` logs in as
                                            any citizen (a demo population has thousands).
``POST /token``                             ``authorization_code`` (+ ``code_verifier``;
                                            codes are one-time and short-lived),
                                            ``refresh_token`` and ``client_credentials`` with
                                            ``private_key_jwt`` (assertion iss = sub =
                                            client_id, aud = the token endpoint or issuer,
                                            exp, one-time jti)
``POST /revoke``                            RFC 7009: revokes a refresh token (and every
                                            token rotated from the same grant)

``aud`` (SMART) must be this server's FHIR base URL: an authorization request for another
resource server is refused with an error redirect to the (registered) ``redirect_uri``.

A refresh token is issued only when ``offline_access`` or ``online_access`` is granted.  Each
use rotates it (the old one is spent); the grant ends at a fixed time that rotation never
extends (``offline_lifetime``, or the shorter ``online_lifetime``: this provider has no login
session to follow); a refresh token is bound to its client; presenting a spent token again,
or another client's token, revokes the whole grant (RFC 9700 section 4.14).

Codes, refresh tokens and seen assertion ids are kept in memory: run one worker process per
provider; a restart ends every grant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from joserfc import jwt
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route, Router

from enjournal.fhir.errors import Unauthorized
from enjournal.security import scopes as smart_scopes
from enjournal.security import tokens as t
from enjournal.security.keys import SigningKey, public_jwks, signing_alg
from enjournal.security.smart import DEFAULT_SCOPES, GRANT_TYPES, SIGNING_ALGORITHMS

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_FORM_BYTES = 64 * 1024
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PAGE_HEADERS = {
    **_NO_STORE,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
}
_ACR = {"substantial": "idporten-loa-substantial", "high": "idporten-loa-high"}
# scopes about identity / launch context rather than resources: any client may ask for them
_IDENTITY_SCOPES = {"openid", "profile", "fhirUser", "launch/patient"}
# refresh-token scopes: granted only to clients registered with them (or with no scope list)
OFFLINE, ONLINE = "offline_access", "online_access"


@dataclass(frozen=True)
class DemoUser:
    """A demo identity.  ``name`` is the login handle (``login_hint``)."""

    name: str
    kind: Literal["personnel", "citizen"]
    display_name: str | None = None
    hpr: str | None = None  # personnel: HPR number
    profession: str | None = None  # personnel: Volven 9060 code (LE, SP, FA, BA, ...)
    org_nr: str | None = None  # personnel: point of care (orgnr_child)
    org_parent: str | None = None  # personnel: legal entity (orgnr_parent)
    her_id: str | None = None
    pid: str | None = None  # citizen (and optionally personnel): fødselsnummer
    assurance: Literal["substantial", "high"] = "high"
    patient: str | None = None  # SMART patient context by default (a citizen's own Patient id)
    fhir_user: str | None = None  # e.g. "Practitioner/abc"
    claims: Mapping[str, Any] = field(default_factory=dict)  # extra claims, added as given

    def __post_init__(self) -> None:
        if self.kind == "personnel" and not self.hpr:
            raise ValueError(f"demo user {self.name}: personnel need an HPR number")
        if self.kind == "citizen" and not self.pid:
            raise ValueError(f"demo user {self.name}: citizens need a national id (pid)")

    @property
    def subject(self) -> str:
        """A stable pseudonymous ``sub`` (like HelseID / ID-porten, not the national id)."""
        digest = hashlib.sha256(f"enjournal-demo:{self.kind}:{self.name}".encode()).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode().rstrip("=")

    def token_claims(self) -> dict[str, Any]:
        """The identity claims this user's tokens carry (see ``enjournal.security.tokens``)."""
        c: dict[str, Any] = {"sub": self.subject}
        if self.display_name:
            c["name"] = self.display_name
        if self.kind == "personnel":
            c[t.HPR_NUMBER] = self.hpr
            if self.profession:
                c[t.PROFESSION] = self.profession
            if self.org_nr:
                c[t.ORGNR_CHILD] = self.org_nr
            if self.org_parent or self.org_nr:
                c[t.ORGNR_PARENT] = self.org_parent or self.org_nr
            if self.her_id:
                c[t.HER_ID] = self.her_id
            if self.pid:
                c[t.HELSEID_PID] = self.pid
            c[t.ASSURANCE_LEVEL] = self.assurance
            c[t.SECURITY_LEVEL] = "4" if self.assurance == "high" else "3"
        else:
            c[t.PID] = self.pid
            c["acr"] = _ACR[self.assurance]
        if self.fhir_user:
            c["fhirUser"] = self.fhir_user
        c.update(self.claims)
        return c


@dataclass(frozen=True)
class Client:
    """A registered client.  With ``jwk`` (its public key) it is confidential and must use
    ``private_key_jwt``; without, it is a public client limited to the code flow + PKCE."""

    client_id: str
    redirect_uris: Sequence[str] = ()
    jwk: Mapping[str, Any] | None = None
    scopes: Sequence[str] = ()  # allowed scopes (narrower ones are allowed too)
    org_nr: str | None = None  # system tokens: the client's organisation (orgnr_parent)
    org_child: str | None = None  # system tokens: point of care (orgnr_child)
    name: str | None = None
    # The kinds of user who may log in to it (empty: any); a citizen portal takes citizens
    # only, as ID-porten serves only citizens.
    user_kinds: tuple[str, ...] = ()


@dataclass
class ProviderConfig:
    issuer: str  # e.g. "https://ehelse.example/oidc" — the provider is mounted there
    key: SigningKey
    users: Sequence[DemoUser] = ()
    clients: Sequence[Client] = ()
    audience: str = "enjournal"
    token_lifetime: int = 300  # seconds
    code_lifetime: int = 60
    assertion_max_lifetime: int = 300  # a client assertion may be valid at most this long
    leeway: int = 30
    # The SMART ``aud`` authorize parameter must be this URL.  By default the FHIR base next
    # to the provider (``{public base}/fhir`` for the issuer ``{public base}/oidc``).
    fhir_base: str | None = None
    scopes_supported: Sequence[str] = DEFAULT_SCOPES
    offline_lifetime: int = 14 * 24 * 3600  # seconds an offline_access grant lasts
    online_lifetime: int = 3600  # seconds an online_access grant lasts

    def __post_init__(self) -> None:
        self.issuer = self.issuer.rstrip("/")
        if self.fhir_base is None and self.issuer.endswith("/oidc"):
            self.fhir_base = self.issuer.removesuffix("/oidc") + "/fhir"


def issue_token(
    user: DemoUser,
    *,
    key: SigningKey,
    issuer: str,
    audience: str = "enjournal",
    scopes: str | Iterable[str] = (),
    patient: str | None = None,
    client_id: str = "enjournal-cli",
    lifetime: int = 300,
    now: float | None = None,
) -> str:
    """A signed access token for ``user``, as the provider would issue it (for the CLI)."""
    claims = user.token_claims()
    claims.update(_registered(issuer.rstrip("/"), audience, lifetime, now))
    claims["client_id"] = client_id
    claims["scope"] = " ".join(smart_scopes.split(scopes))
    if patient or user.patient:
        claims["patient"] = patient or user.patient
    return _sign(key, claims)


def issue_system_token(
    client: Client,
    *,
    key: SigningKey,
    issuer: str,
    audience: str = "enjournal",
    scopes: str | Iterable[str] = (),
    lifetime: int = 300,
    now: float | None = None,
) -> str:
    """A client-credentials access token for ``client``."""
    claims: dict[str, Any] = {"sub": client.client_id, "client_id": client.client_id}
    if client.name:
        claims["client_name"] = client.name
    if client.org_nr:
        claims[t.ORGNR_PARENT] = client.org_nr
    if client.org_child or client.org_nr:
        claims[t.ORGNR_CHILD] = client.org_child or client.org_nr
    claims.update(_registered(issuer.rstrip("/"), audience, lifetime, now))
    claims["scope"] = " ".join(smart_scopes.split(scopes))
    return _sign(key, claims)


def _registered(issuer: str, audience: str, lifetime: int, now: float | None) -> dict:
    now = int(time.time() if now is None else now)
    return {
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }


def _sign(key: SigningKey, claims: dict, typ: str = "at+jwt") -> str:
    alg = signing_alg(key)
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": typ}, claims, key, algorithms=[alg])


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    user: DemoUser
    scopes: list[str]
    challenge: str
    nonce: str | None
    patient: str | None
    expires: float
    auth_time: int


@dataclass
class _Grant:
    """What a refresh token stands for: one user's authorization of one client."""

    client_id: str
    user: DemoUser
    scopes: list[str]
    patient: str | None
    auth_time: int
    family: str  # every token rotated from one authorization shares it
    expires: float  # the grant's fixed end: rotation never extends it


class Provider:
    """The embedded provider; ``router`` is what the app mounts at ``/oidc``."""

    def __init__(self, config: ProviderConfig, *, clock: Callable[[], float] = time.time):
        self.config = config
        self._clock = clock
        self.users = {u.name: u for u in config.users}
        self.clients = {c.client_id: c for c in config.clients}
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _Grant] = {}  # sha256 of a live refresh token -> its grant
        self._spent: dict[str, _Grant] = {}  # sha256 of a used refresh token -> its grant
        self._seen_jti: dict[tuple[str, str], float] = {}
        self._client_keys = {
            c.client_id: t.to_keyset(dict(c.jwk)) for c in config.clients if c.jwk is not None
        }

    # -- public API ------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.config.issuer

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def routes(self) -> list[Route]:
        return [
            Route("/.well-known/openid-configuration", self.discovery, methods=["GET"]),
            Route("/jwks", self.jwks, methods=["GET"]),
            Route("/authorize", self.authorize, methods=["GET"]),
            Route("/token", self.token, methods=["POST"]),
            Route("/revoke", self.revoke, methods=["POST"]),
        ]

    @property
    def router(self) -> Router:
        return Router(routes=self.routes)

    def issuer_config(self, **overrides: Any) -> t.IssuerConfig:
        """How a :class:`TokenVerifier` trusts this provider (in-process keys, no HTTP)."""
        options: dict[str, Any] = {
            "issuer": self.issuer,
            "audience": self.config.audience,
            "jwks": public_jwks(self.config.key),
            "algorithms": [signing_alg(self.config.key)],
        }
        options.update(overrides)
        return t.IssuerConfig(**options)

    def issue_token(
        self,
        user: DemoUser,
        *,
        audience: str | None = None,
        scopes: str | Iterable[str] = (),
        patient: str | None = None,
        client_id: str = "enjournal-cli",
    ) -> str:
        return issue_token(
            user,
            key=self.config.key,
            issuer=self.issuer,
            audience=audience or self.config.audience,
            scopes=scopes,
            patient=patient,
            client_id=client_id,
            lifetime=self.config.token_lifetime,
            now=self._clock(),
        )

    # -- endpoints -------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        iss = self.issuer
        return JSONResponse(
            {
                "issuer": iss,
                "authorization_endpoint": f"{iss}/authorize",
                "token_endpoint": f"{iss}/token",
                "jwks_uri": f"{iss}/jwks",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "revocation_endpoint": f"{iss}/revoke",
                "grant_types_supported": list(GRANT_TYPES),
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [signing_alg(self.config.key)],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
                "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
                "scopes_supported": list(self.config.scopes_supported),
                "claims_supported": [
                    "sub",
                    "name",
                    "fhirUser",
                    "acr",
                    t.PID,
                    t.HPR_NUMBER,
                    t.PROFESSION,
                    t.ORGNR_PARENT,
                    t.ORGNR_CHILD,
                    t.HER_ID,
                    t.ASSURANCE_LEVEL,
                ],
                "authorization_response_iss_parameter_supported": True,
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(
            public_jwks(self.config.key), headers={"Cache-Control": "public, max-age=300"}
        )

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        client = self.clients.get(q.get("client_id", ""))
        redirect_uri = q.get("redirect_uri", "")
        if client is None or redirect_uri not in client.redirect_uris:
            # never redirect to an unverified URI
            return HTMLResponse(
                _page("Invalid request", "<p>Unknown client or unregistered redirect_uri.</p>"),
                status_code=400,
                headers=_PAGE_HEADERS,
            )
        state = q.get("state")
        try:
            if any(len(v) > 4096 for v in q.values()):
                raise OAuthError("invalid_request", "parameter too long")
            if q.get("response_type") != "code":
                raise OAuthError("unsupported_response_type", "only response_type=code")
            if q.get("code_challenge_method") != "S256" or not _CHALLENGE.match(
                q.get("code_challenge", "")
            ):
                raise OAuthError("invalid_request", "PKCE with S256 is required")
            if not self._is_this_server(q.get("aud", "")):
                raise OAuthError("invalid_request", "aud must be this FHIR server's base URL")
            user = self._user(q.get("login_hint", ""))
            if user is not None and client.user_kinds and user.kind not in client.user_kinds:
                raise OAuthError("access_denied", f"this client serves {client.user_kinds[0]}s")
            if user is None:
                if q.get("prompt") == "none":
                    raise OAuthError("login_required", "no user chosen")
                page = self._chooser(q, client.user_kinds)
                return HTMLResponse(page, headers=_PAGE_HEADERS, status_code=200)
            granted = self._grant_user_scopes(client, q.get("scope", ""))
            patient = self._patient_context(user, granted, q.get("patient"))
        except OAuthError as error:
            return _redirect(
                redirect_uri,
                {"error": error.error, "error_description": error.description, "state": state},
                self.issuer,
            )
        now = self._clock()
        self._purge(now)
        code = secrets.token_urlsafe(32)
        self._codes[code] = _Code(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            user=user,
            scopes=granted,
            challenge=q["code_challenge"],
            nonce=q.get("nonce"),
            patient=patient,
            expires=now + self.config.code_lifetime,
            auth_time=int(now),
        )
        return _redirect(redirect_uri, {"code": code, "state": state}, self.issuer)

    async def token(self, request: Request) -> Response:
        try:
            form = await _read_form(request)
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                body = self._code_grant(form)
            elif grant_type == "refresh_token":
                body = self._refresh_grant(form)
            elif grant_type == "client_credentials":
                body = self._client_credentials(form)
            else:
                raise OAuthError("unsupported_grant_type", "unsupported grant_type")
        except OAuthError as error:
            return _oauth_error(error)
        return JSONResponse(body, headers=_NO_STORE)

    async def revoke(self, request: Request) -> Response:
        """RFC 7009.  Access tokens are short-lived JWTs and cannot be revoked here; for them,
        and for unknown tokens, the answer is 200 all the same (section 2.2)."""
        try:
            form = await _read_form(request)
            client = self._authenticate(form, require_assertion=False)
        except OAuthError as error:
            return _oauth_error(error)
        digest = _digest(form.get("token", ""))
        grant = self._refresh.get(digest) or self._spent.get(digest)
        if grant is not None and grant.client_id == client.client_id:
            self._revoke_family(grant.family)
        return Response(status_code=200, headers=_NO_STORE)

    # -- grants ----------------------------------------------------------------------------

    def _code_grant(self, form: dict[str, str]) -> dict[str, Any]:
        client = self._authenticate(form, require_assertion=False)
        code = self._codes.pop(form.get("code", ""), None)  # one-time, even when the rest fails
        now = self._clock()
        if code is None or code.expires < now or code.client_id != client.client_id:
            raise OAuthError("invalid_grant", "invalid or expired code")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match")
        verifier = form.get("code_verifier", "")
        if not _VERIFIER.match(verifier):
            raise OAuthError("invalid_grant", "invalid code_verifier")
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        if not hmac.compare_digest(expected, code.challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match")

        grant = _Grant(
            client_id=client.client_id,
            user=code.user,
            scopes=code.scopes,
            patient=code.patient,
            auth_time=code.auth_time,
            family=secrets.token_urlsafe(16),
            expires=now + self._grant_lifetime(code.scopes),
        )
        return self._user_tokens(grant, code.scopes, now, nonce=code.nonce)

    def _refresh_grant(self, form: dict[str, str]) -> dict[str, Any]:
        client = self._authenticate(form, require_assertion=False)
        now = self._clock()
        self._purge(now)
        digest = _digest(form.get("refresh_token", ""))
        spent = self._spent.get(digest)
        if spent is not None:  # a replay: the token leaked, or the client is confused
            self._revoke_family(spent.family)
            raise OAuthError("invalid_grant", "refresh token already used; the grant is revoked")
        grant = self._refresh.get(digest)
        if grant is None:
            raise OAuthError("invalid_grant", "invalid or expired refresh token")
        if grant.client_id != client.client_id:  # another client holds this client's token
            self._revoke_family(grant.family)
            raise OAuthError("invalid_grant", "invalid or expired refresh token")
        scopes = smart_scopes.split(form.get("scope", "")) or grant.scopes
        if not set(scopes) <= set(grant.scopes):
            raise OAuthError("invalid_scope", "a refresh cannot widen the granted scope")
        self._spent[digest] = self._refresh.pop(digest)
        return self._user_tokens(grant, scopes, now)

    def _user_tokens(
        self, grant: _Grant, scopes: list[str], now: float, nonce: str | None = None
    ) -> dict[str, Any]:
        """The token response for a user grant: access token, refresh token when the grant
        has offline or online access, ID token when ``openid`` is in ``scopes``."""
        user, lifetime = grant.user, self.config.token_lifetime
        access = user.token_claims()
        access.update(_registered(self.issuer, self.config.audience, lifetime, now))
        access.update(client_id=grant.client_id, scope=" ".join(scopes))
        access["auth_time"] = grant.auth_time
        if grant.patient:
            access["patient"] = grant.patient
        body: dict[str, Any] = {
            "access_token": _sign(self.config.key, access),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(scopes),
        }
        if grant.patient:
            body["patient"] = grant.patient
        if OFFLINE in grant.scopes or ONLINE in grant.scopes:
            body["refresh_token"] = self._new_refresh_token(grant)
        if "openid" in scopes:
            body["id_token"] = self._id_token(grant, scopes, now, nonce)
        return body

    def _id_token(self, grant: _Grant, scopes: list[str], now: float, nonce: str | None) -> str:
        user = grant.user
        idt: dict[str, Any] = {"sub": user.subject, "auth_time": grant.auth_time}
        idt.update(_registered(self.issuer, grant.client_id, self.config.token_lifetime, now))
        if nonce:
            idt["nonce"] = nonce
        if user.display_name:
            idt["name"] = user.display_name
        if user.fhir_user and "fhirUser" in scopes:
            idt["fhirUser"] = user.fhir_user
        return _sign(self.config.key, idt, typ="JWT")

    def _new_refresh_token(self, grant: _Grant) -> str:
        token = secrets.token_urlsafe(32)
        self._refresh[_digest(token)] = grant
        return token

    def _grant_lifetime(self, scopes: list[str]) -> int:
        if OFFLINE in scopes:
            return self.config.offline_lifetime
        return self.config.online_lifetime

    def _revoke_family(self, family: str) -> None:
        for digest in [d for d, g in self._refresh.items() if g.family == family]:
            del self._refresh[digest]

    def _client_credentials(self, form: dict[str, str]) -> dict[str, Any]:
        client = self._authenticate(form, require_assertion=True)
        requested = smart_scopes.split(form.get("scope", ""))
        granted = [
            s
            for s in requested
            if s.startswith("system/") and smart_scopes.covered(s, client.scopes)
        ]
        if granted:
            # A register's client is one whatever it asks for: its register scopes go in
            # every token, so it cannot shed the rule that it reads only through exports.
            granted += smart_scopes.register_scopes(client.scopes)
        if not granted:
            raise OAuthError("invalid_scope", "no requested scope is allowed for this client")
        token = issue_system_token(
            client,
            key=self.config.key,
            issuer=self.issuer,
            audience=self.config.audience,
            scopes=granted,
            lifetime=self.config.token_lifetime,
            now=self._clock(),
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.config.token_lifetime,
            "scope": " ".join(granted),
        }

    def _authenticate(self, form: dict[str, str], *, require_assertion: bool) -> Client:
        """The calling client: private_key_jwt, or (code flow only) a public client_id."""
        assertion = form.get("client_assertion")
        if assertion is None:
            if require_assertion:
                raise OAuthError("invalid_client", "client authentication required", 401)
            client = self.clients.get(form.get("client_id", ""))
            if client is None or client.jwk is not None:
                # unknown, or confidential clients must authenticate
                raise OAuthError("invalid_client", "client authentication failed", 401)
            return client
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_client", "unsupported client_assertion_type", 401)
        client = self._verify_assertion(assertion)
        if form.get("client_id", client.client_id) != client.client_id:
            raise OAuthError("invalid_client", "client authentication failed", 401)
        return client

    def _verify_assertion(self, assertion: str) -> Client:
        failed = OAuthError("invalid_client", "client authentication failed", 401)
        try:
            header, unverified = t.peek(assertion)
        except Unauthorized:
            raise failed from None
        client_id = unverified.get("iss")
        keys = self._client_keys.get(client_id) if isinstance(client_id, str) else None
        if keys is None or header.get("alg") not in SIGNING_ALGORITHMS:
            raise failed
        candidates = t.select_keys(keys, header.get("kid"), header["alg"]) or t.select_keys(
            keys, None, header["alg"]
        )
        now = self._clock()
        try:
            claims = t.decode_jws(assertion, candidates, SIGNING_ALGORITHMS)
            t.validate_claims(
                claims,
                issuer=client_id,
                audience=[self.token_endpoint, self.issuer],
                leeway=self.config.leeway,
                now=int(now),
                required=("sub", "jti"),
            )
        except Unauthorized:
            raise failed from None
        exp = claims["exp"]
        latest = now + self.config.assertion_max_lifetime + self.config.leeway
        if claims["sub"] != client_id or exp > latest:
            raise failed
        self._purge(now)
        seen = (client_id, str(claims["jti"]))
        if seen in self._seen_jti:
            raise OAuthError("invalid_client", "client assertion already used", 401)
        self._seen_jti[seen] = exp + self.config.leeway
        return self.clients[client_id]

    # -- helpers ---------------------------------------------------------------------------

    def _grant_user_scopes(self, client: Client, requested: str) -> list[str]:
        granted = []
        for s in smart_scopes.split(requested):
            if s.startswith("system/") or s in granted:
                continue  # end-user flows never get system scopes
            if not client.scopes or s in _IDENTITY_SCOPES or smart_scopes.covered(s, client.scopes):
                granted.append(s)
        if OFFLINE in granted and ONLINE in granted:
            granted.remove(ONLINE)  # one refresh token, of the longer kind asked for
        return granted

    def _is_this_server(self, aud: str) -> bool:
        base = self.config.fhir_base
        return bool(base and aud) and aud.rstrip("/") == base.rstrip("/")

    def _patient_context(
        self, user: DemoUser, granted: list[str], chosen: str | None
    ) -> str | None:
        if "launch/patient" not in granted:
            return None
        if user.kind == "citizen":
            return user.patient  # citizens launch in their own record only
        return chosen or user.patient

    def _purge(self, now: float) -> None:
        for code in [c for c, v in self._codes.items() if v.expires < now]:
            del self._codes[code]
        for key in [k for k, exp in self._seen_jti.items() if exp < now]:
            del self._seen_jti[key]
        for tokens in (self._refresh, self._spent):
            for digest in [d for d, g in tokens.items() if g.expires < now]:
                del tokens[digest]

    def _user(self, hint: str) -> DemoUser | None:
        """A demo user by name, or a citizen by ``pid:<national id>`` (demo only: the
        resource server decides what that citizen may see, from their own record)."""
        pid = hint.removeprefix("pid:")
        if pid != hint and len(pid) == 11 and pid.isascii() and pid.isdigit():
            return DemoUser(name=hint, kind="citizen", display_name=None, pid=pid)
        return self.users.get(hint)

    def add_client(self, client: Client) -> None:
        """Register ``client`` (a service's own, e.g. the citizen portal's), replacing one of
        the same id."""
        self.clients[client.client_id] = client

    def _chooser(self, q: Mapping[str, str], kinds: tuple[str, ...] = ()) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in q.items()
            if k not in ("login_hint", "patient")
        )
        wants_patient = "launch/patient" in smart_scopes.split(q.get("scope", ""))
        rows = []
        for user in self.users.values():
            if kinds and user.kind not in kinds:
                continue
            label = html.escape(user.display_name or user.name)
            detail = (
                f"{user.kind}, HPR {user.hpr}, {user.profession or ''}"
                if user.kind == "personnel"
                else "citizen"
            )
            rows.append(
                f'<li><button name="login_hint" value="{html.escape(user.name)}">{label}</button>'
                f" <small>{html.escape(detail)}</small></li>"
            )
        patient = (
            "<p><label>Patient id (personnel, SMART launch/patient): "
            '<input name="patient"></label></p>'
            if wants_patient
            else ""
        )
        body = (
            '<form method="get" action="authorize">'
            f"{hidden}{patient}<ul>{''.join(rows)}</ul></form>"
            "<p><small>Demo users only: this provider is for demonstration and tests.</small></p>"
        )
        return _page("Choose a demo user", body)


def _oauth_error(error: OAuthError) -> Response:
    headers = dict(_NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_client"'
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status,
        headers=headers,
    )


def _digest(token: str) -> str:
    """Refresh tokens are kept by hash, so a memory dump does not hand them out."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def _read_form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "expected application/x-www-form-urlencoded")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", "request too large")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "malformed form body") from None
    form: dict[str, str] = {}
    for k, v in pairs:
        if k in form:
            raise OAuthError("invalid_request", f"repeated parameter {k}"[:80])
        form[k] = v
    return form


def _redirect(uri: str, params: dict[str, str | None], issuer: str) -> Response:
    params = {k: v for k, v in params.items() if v is not None}
    params["iss"] = issuer  # RFC 9207 mix-up defence
    sep = "&" if urlsplit(uri).query else "?"
    return RedirectResponse(uri + sep + urlencode(params), status_code=302, headers=_NO_STORE)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}"
        "li{margin:.4em 0}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
