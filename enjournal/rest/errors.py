"""The one seam where errors become responses.

* ``error_response(error)``: a ``FhirError`` -> a ``FhirResponse`` with the error's status,
  its OperationOutcome and the headers its kind needs (FHIR R4 http.html, RFC 9110,
  RFC 6750):

  - ``Retry-After`` (whole seconds, at least 1) for 429 TooManyRequests and 503 Busy;
  - ``WWW-Authenticate: Bearer realm="enjournal"`` for 401, with ``error="invalid_token"``
    only when a bearer token was presented and refused (RFC 6750 section 3.1: no error
    code for a request without one);
  - ``Allow`` for 405 when the path's methods are known.

* ``wire_headers(response)`` / ``send_response(send, response)``: how every FHIR response
  goes on the wire, the same for the Starlette app (``server/app.py``) and for the pure ASGI
  middleware that refuses before it (authentication, rate limits) or after it (the last
  resort 500): ``application/fhir+json`` and the security headers.  Plain ASGI messages, no
  web framework, so ``rest`` stays free of one.

An OperationOutcome holds only the error's own issues: never an exception's text, a stack
trace or anything the error did not put there itself, so what a caller may not read cannot
reach it through this path (a message names only what the caller sent or may see).
"""

from __future__ import annotations

import math

from enjournal.fhir.errors import (
    Busy,
    FhirError,
    Invalid,
    Issue,
    MethodNotAllowed,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthorized,
)
from enjournal.rest.message import FhirResponse, outcome

FHIR_JSON = "application/fhir+json; charset=utf-8"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
REALM = "enjournal"


def error_response(error: FhirError) -> FhirResponse:
    """The one place a FhirError becomes an HTTP status, headers and an OperationOutcome."""
    body = outcome(error.issues)
    contained = getattr(error, "contained", None)
    if contained:
        body["contained"] = contained
    return FhirResponse.of(body, error.status, **error_headers(error))


def error_headers(error: FhirError) -> dict[str, str]:
    """The headers an error's kind needs besides its body."""
    headers: dict[str, str] = {}
    if isinstance(error, (Busy, TooManyRequests)):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = _challenge(error.bearer_error)
    if isinstance(error, MethodNotAllowed) and error.allow:
        headers["Allow"] = ", ".join(error.allow)
    return headers


def _challenge(bearer_error: str | None) -> str:
    challenge = f'Bearer realm="{REALM}"'
    return challenge + f', error="{bearer_error}"' if bearer_error else challenge


def internal_error() -> FhirResponse:
    """500 for an unexpected exception: a fixed text, never the exception's."""
    issue = Issue("fatal", "exception", "internal server error")
    return error_response(FhirError(issue.diagnostics, issues=[issue]))


def status_error(status: int, message: str, allow: tuple[str, ...] = ()) -> FhirError:
    """The FhirError for an HTTP status the web framework refused with (no route, method
    not allowed); a status without a kind of its own is an Invalid carrying that status."""
    if status == 405:
        return MethodNotAllowed(message, allow=allow)
    kind = {404: NotFound, 413: TooLarge}.get(status)
    if kind is not None:
        return kind(message)
    error = Invalid(message)
    error.status = status
    return error


def wire_headers(response: FhirResponse) -> dict[str, str]:
    """A FHIR response's headers as sent: the security headers, its own, and the FHIR JSON
    content type when it has a body."""
    headers = {**SECURITY_HEADERS, **response.headers}
    typed = any(name.lower() == "content-type" for name in headers)
    if response.body is not None and not typed:
        headers["Content-Type"] = FHIR_JSON
    return headers


async def send_response(send, response: FhirResponse) -> None:
    """Send ``response`` as plain ASGI messages (for middleware outside the app)."""
    body = response.body or b""
    headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in wire_headers(response).items()]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "FHIR_JSON",
    "SECURITY_HEADERS",
    "error_headers",
    "error_response",
    "internal_error",
    "send_response",
    "status_error",
    "wire_headers",
]
