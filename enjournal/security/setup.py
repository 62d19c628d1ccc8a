"""Putting the security parts together from settings: who is trusted, the embedded provider,
the audit writer and the rate limiter.  The app holds one ``Security`` and starts and stops
it in its lifespan."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError

from enjournal.security.audit import AuditWriter
from enjournal.security.facts import FactsCache
from enjournal.security.keys import load_or_create
from enjournal.security.provider import Client, Provider, ProviderConfig
from enjournal.security.ratelimit import limiter_from_url
from enjournal.security.smart import capability_security, issuers_security
from enjournal.security.tokens import IssuerConfig, TokenVerifier, to_keyset

log = logging.getLogger("enjournal.security")


@dataclass
class Security:
    verifier: TokenVerifier
    provider: Provider | None = None
    limiter: Any = None
    audit: AuditWriter | None = None
    issuers: list[IssuerConfig] = field(default_factory=list)
    facts: FactsCache = field(default_factory=FactsCache)
    audit_reads_synchronous: bool = True

    async def start(self, store) -> None:
        self.audit = AuditWriter(store, synchronous=self.audit_reads_synchronous)
        await self.audit.start()
        if self.provider is not None:
            from enjournal.demo.users import demo_users

            users = await demo_users(store)
            self.provider.users = {u.name: u for u in users}
            log.info(
                "embedded OIDC provider",
                extra={
                    "fields": {
                        "issuer": self.provider.issuer,
                        "demo_users": sorted(self.provider.users),
                    }
                },
            )

    def rest_security(self) -> dict:
        """What the CapabilityStatement says about this server's security."""
        if self.provider is not None:
            return capability_security(self.provider.issuer)
        return issuers_security([i.issuer for i in self.issuers])

    async def stop(self) -> None:
        if self.audit is not None:
            await self.audit.stop()
        await self.verifier.aclose()
        if self.limiter is not None:
            await self.limiter.aclose()


def build_security(settings) -> Security:
    """From ``Settings``: trusted issuers (``trusted_issuers`` JSON), and the embedded provider
    when ``oidc_provider`` is on (its key generated into ``oidc_key_file`` on first start, its
    clients the demo app and those in ``oidc_clients_file``)."""
    issuers = [IssuerConfig(**raw) for raw in json.loads(settings.trusted_issuers or "[]")]
    provider = None
    if settings.oidc_provider:
        provider = _embedded_provider(settings)
        issuers.append(provider.issuer_config())
    if not issuers:
        raise ValueError(
            "security is on but no token issuer is trusted: set ENJOURNAL_TRUSTED_ISSUERS or "
            "ENJOURNAL_OIDC_PROVIDER=on (or ENJOURNAL_AUTH=off for an unsecured test server)"
        )
    return Security(
        verifier=TokenVerifier(issuers),
        provider=provider,
        limiter=limiter_from_url(settings.redis_url),
        issuers=issuers,
        audit_reads_synchronous=settings.audit_reads_synchronous,
    )


class NoTokens:
    """The verifier of a process that takes no tokens: every token is refused."""

    issuers: dict = {}

    async def verify(self, token: str):
        from enjournal.fhir.errors import Unauthorized

        raise Unauthorized("this process accepts no access tokens")

    async def aclose(self) -> None:
        return None


def worker_security(settings) -> Security:
    """Security for a process that takes no tokens (a queue consumer acting as a system
    client of its own): the same policy, guard hooks and audit as the server."""
    return Security(
        verifier=NoTokens(),  # type: ignore[arg-type]
        audit_reads_synchronous=settings.audit_reads_synchronous,
    )


DEMO_APP = "enjournal-demo-app"
DEMO_APP_SCOPES = (
    "openid",
    "fhirUser",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "user/*.cruds",
)


def _embedded_provider(settings) -> Provider:
    clients = [Client(DEMO_APP, redirect_uris=settings.demo_redirect_uris, scopes=DEMO_APP_SCOPES)]
    clients_file = settings.oidc_clients_file
    if clients_file:
        clients += clients_from_file(Path(clients_file))
    ids = [c.client_id for c in clients]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{clients_file}: a client_id is registered twice (or is {DEMO_APP})")
    return Provider(
        ProviderConfig(
            issuer=f"{settings.public_url.rstrip('/')}/oidc",
            key=load_or_create(Path(settings.oidc_key_file)),
            audience=settings.audience,
            clients=clients,
            fhir_base=settings.fhir_base,
        )
    )


_CLIENT_FIELDS = {"client_id", "redirect_uris", "jwks", "scope", "client_name", "org_nr"}
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def clients_from_file(path: Path) -> list[Client]:
    """The SMART apps and backend services registered with the embedded provider: a JSON list
    of objects with RFC 7591 names (``client_id``, ``redirect_uris``, ``jwks``, ``scope``,
    ``client_name``) and ``org_nr`` (a backend's organisation).  See docs/smart.md."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a JSON list of clients")
    return [_client(entry, f"{path}[{n}]") for n, entry in enumerate(raw)]


def _client(entry: object, where: str) -> Client:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: a client is a JSON object")
    unknown = set(entry) - _CLIENT_FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    client_id = entry.get("client_id")
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise ValueError(f"{where}: client_id must be 1-64 letters, digits or . _ ~ -")
    redirect_uris = entry.get("redirect_uris", [])
    if not isinstance(redirect_uris, list) or not all(map(_redirect_uri_ok, redirect_uris)):
        raise ValueError(f"{where}: redirect_uris must be https URLs (http only on loopback)")
    jwks = entry.get("jwks")
    if jwks is not None:
        _check_jwks(jwks, where)
    scope = entry.get("scope", "")
    if not isinstance(scope, str) or not scope.split():
        raise ValueError(f"{where}: scope must list the scopes the client may be granted")
    if not redirect_uris and jwks is None:
        raise ValueError(f"{where}: a client needs redirect_uris, jwks (a backend) or both")
    return Client(
        client_id,
        redirect_uris=tuple(redirect_uris),
        jwk=jwks,
        scopes=tuple(scope.split()),
        org_nr=entry.get("org_nr"),
        name=entry.get("client_name"),
    )


def _redirect_uri_ok(uri: object) -> bool:
    """RFC 6749 3.1.2 and RFC 8252 7.3: absolute, no fragment; plain http only on loopback."""
    if not isinstance(uri, str):
        return False
    parts = urlsplit(uri)
    if parts.fragment or not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)


def _check_jwks(jwks: object, where: str) -> None:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError(f'{where}: jwks must be a JWK Set ({{"keys": [...]}})')
    if any(not isinstance(k, dict) or "d" in k for k in keys):
        raise ValueError(f"{where}: jwks must hold public keys only")
    try:
        usable = list(to_keyset({"keys": keys}))
    except JoseError as error:
        raise ValueError(f"{where}: jwks holds a malformed key: {error}") from None
    if not usable:
        raise ValueError(f"{where}: jwks holds no RSA or EC signing key")
