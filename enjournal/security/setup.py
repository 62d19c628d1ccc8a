"""Putting the security parts together from settings: who is trusted, the embedded provider,
the audit writer and the rate limiter.  The app holds one ``Security`` and starts and stops
it in its lifespan."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enjournal.security.audit import AuditWriter
from enjournal.security.guard import FactsCache
from enjournal.security.keys import load_or_create
from enjournal.security.provider import Client, Provider, ProviderConfig
from enjournal.security.ratelimit import limiter_from_url
from enjournal.security.tokens import IssuerConfig, TokenVerifier

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

    async def stop(self) -> None:
        if self.audit is not None:
            await self.audit.stop()
        await self.verifier.aclose()
        if self.limiter is not None:
            await self.limiter.aclose()


def build_security(settings) -> Security:
    """From ``Settings``: trusted issuers (``trusted_issuers`` JSON), and the embedded provider
    when ``oidc_provider`` is on (its key generated into ``oidc_key_file`` on first start)."""
    issuers = [IssuerConfig(**raw) for raw in json.loads(settings.trusted_issuers or "[]")]
    provider = None
    if settings.oidc_provider:
        key = load_or_create(Path(settings.oidc_key_file))
        provider = Provider(
            ProviderConfig(
                issuer=f"{settings.public_url.rstrip('/')}/oidc",
                key=key,
                audience=settings.audience,
                clients=[
                    Client(
                        "enjournal-demo-app",
                        redirect_uris=settings.demo_redirect_uris,
                        scopes=[
                            "openid",
                            "fhirUser",
                            "launch/patient",
                            "patient/*.rs",
                            "user/*.cruds",
                        ],
                    )
                ],
            )
        )
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
