"""Bearer-token authentication for the FHIR API, as ASGI middleware.

Every ``/fhir`` request needs a valid access token, except the two documents a client must
read before it has one: ``/fhir/metadata`` and ``/fhir/.well-known/smart-configuration``.
The verified ``Principal`` goes into ``scope["state"]["principal"]``, where the rate limiter
and the FHIR handler find it.  Refusals are 401 OperationOutcomes with a
``WWW-Authenticate`` challenge (RFC 6750); the token itself is never logged.
"""

from __future__ import annotations

import orjson

from enjournal.fhir.errors import Unauthorized

PUBLIC = ("/fhir/metadata", "/fhir/.well-known/smart-configuration")


class AuthMiddleware:
    def __init__(self, app, verifier):
        self.app = app
        self.verifier = verifier
        self.state = getattr(app, "state", None)

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/fhir") or path in PUBLIC:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("an access token is required (Authorization: Bearer ...)")
            principal = await self.verifier.verify(token.strip())
        except Unauthorized as error:
            return await _refuse(send, error.message, bool(token))
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _refuse(send, message: str, had_token: bool) -> None:
    body = orjson.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "login", "diagnostics": message}],
        }
    )
    challenge = 'Bearer realm="enjournal"'
    if had_token:
        challenge += ', error="invalid_token"'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/fhir+json; charset=utf-8"),
                (b"www-authenticate", challenge.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
