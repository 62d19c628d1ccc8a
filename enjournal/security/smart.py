"""How the server tells clients it is protected, and by whom.

- ``{fhir base}/.well-known/smart-configuration``: the SMART App Launch 2.0 discovery
  document (https://hl7.org/fhir/smart-app-launch/conformance.html), built from the issuer
  URL of the authorization server (the embedded provider at ``{public base}/oidc``, or
  another one that follows the same endpoint layout).
- ``CapabilityStatement.rest.security`` (:func:`capability_security`): SMART 2.0 calls this
  way deprecated but clients such as ``fhirclient`` still read it to find the OAuth 2
  endpoints (the ``oauth-uris`` extension); without it they treat the server as open.
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
    "permission-offline",
    "permission-online",
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
    "offline_access",
    "online_access",
    "patient/*.rs",
    "patient/*.cruds",
    "user/*.rs",
    "user/*.cruds",
    "system/*.rs",
    "system/*.cruds",
)
SIGNING_ALGORITHMS = ("ES256", "RS256", "PS256")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def smart_configuration(issuer: str, *, scopes_supported: Sequence[str] = DEFAULT_SCOPES) -> dict:
    """The document for an authorization server whose issuer is ``issuer``."""
    issuer = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/revoke",
        "grant_types_supported": list(GRANT_TYPES),
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


def capability_security(issuer: str) -> dict:
    """``CapabilityStatement.rest.security`` for a server whose SMART authorization server
    is ``issuer`` (same endpoint layout as :func:`smart_configuration`)."""
    issuer = issuer.rstrip("/")
    uris = {name: f"{issuer}/{name}" for name in ("authorize", "token", "revoke")}
    return {
        "extension": [
            {
                "url": OAUTH_URIS,
                "extension": [{"url": name, "valueUri": uri} for name, uri in uris.items()],
            }
        ],
        "cors": False,
        "service": [_service("SMART-on-FHIR", "SMART on FHIR")],
        "description": (
            "SMART App Launch 2.0 (OAuth 2.0 with PKCE, OpenID Connect): every request but "
            "/metadata and /.well-known/smart-configuration needs a bearer token (JWT) from "
            f"the authorization server {issuer}; see .well-known/smart-configuration."
        ),
    }


def issuers_security(issuers: Sequence[str]) -> dict:
    """``rest.security`` when tokens come only from configured outside issuers (HelseID,
    ID-porten, Keycloak), whose endpoints this server does not know: OAuth, no SMART URIs."""
    return {
        "cors": False,
        "service": [_service("OAuth", "OAuth")],
        "description": (
            "Every request but /metadata needs a bearer token (JWT) from a trusted issuer: "
            + ", ".join(issuers)
            + ". Find each issuer's endpoints at {issuer}/.well-known/openid-configuration."
        ),
    }


def _service(code: str, display: str) -> dict:
    return {"coding": [{"system": SECURITY_SERVICE, "code": code, "display": display}]}
