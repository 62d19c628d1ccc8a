"""The SMART App Launch discovery document, ``{fhir base}/.well-known/smart-configuration``.

https://hl7.org/fhir/smart-app-launch/conformance.html — built from the issuer URL of the
authorization server (the embedded provider at ``{public base}/oidc``, or another one that
follows the same endpoint layout).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

CAPABILITIES = (
    "launch-standalone",
    "context-standalone-patient",
    "client-public",
    "client-confidential-asymmetric",
    "permission-v1",
    "permission-v2",
    "permission-patient",
    "permission-user",
    "sso-openid-connect",
)
DEFAULT_SCOPES = (
    "openid",
    "fhirUser",
    "profile",
    "launch/patient",
    "patient/*.rs",
    "patient/*.cruds",
    "user/*.rs",
    "user/*.cruds",
    "system/*.rs",
    "system/*.cruds",
)
SIGNING_ALGORITHMS = ("ES256", "RS256", "PS256")


def smart_configuration(issuer: str, *, scopes_supported: Sequence[str] = DEFAULT_SCOPES) -> dict:
    """The document for an authorization server whose issuer is ``issuer``."""
    issuer = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "scopes_supported": list(scopes_supported),
        "capabilities": list(CAPABILITIES),
        "code_challenge_methods_supported": ["S256"],
    }


def smart_configuration_route(
    issuer: str,
    *,
    path: str = "/.well-known/smart-configuration",
    scopes_supported: Sequence[str] = DEFAULT_SCOPES,
) -> Route:
    """A Starlette route serving the document (mount it under the FHIR base)."""
    document = smart_configuration(issuer, scopes_supported=scopes_supported)

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})

    return Route(path, endpoint, methods=["GET"])
