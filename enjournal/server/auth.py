"""Bearer-token authentication for the FHIR API (and the services' APIs beside it), as ASGI
middleware.

Every request under a protected prefix (``/fhir``, and those the services add in
``platform.bearer_paths``, e.g. messaging's ``/edi``) needs a valid access token, except the
two documents a client must read before it has one: ``/fhir/metadata`` and
``/fhir/.well-known/smart-configuration``.
The verified ``Principal`` goes into ``scope["state"]["principal"]``, where the rate limiter
and the FHIR handler find it.  Refusals are 401 OperationOutcomes with a
``WWW-Authenticate`` challenge (RFC 6750); the token itself is never logged.
"""

from __future__ import annotations

from enjournal.fhir.errors import Unauthorized
from enjournal.rest.errors import error_response, send_response

PUBLIC = ("/fhir/metadata", "/fhir/.well-known/smart-configuration")
PROTECTED = ("/fhir",)


class AuthMiddleware:
    def __init__(self, app, verifier, prefixes: tuple[str, ...] = PROTECTED):
        self.app = app
        self.verifier = verifier
        self.prefixes = tuple(prefixes)
        self.state = getattr(app, "state", None)

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefixes) or path in PUBLIC:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # No bearer token (none, or another scheme): RFC 6750 3.1, no error code.
            missing = Unauthorized("an access token is required (Authorization: Bearer ...)")
            return await send_response(send, error_response(missing))
        try:
            principal = await self.verifier.verify(token.strip())
        except Unauthorized as error:
            error.bearer_error = "invalid_token"
            return await send_response(send, error_response(error))
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
