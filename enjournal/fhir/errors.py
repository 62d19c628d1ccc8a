"""Typed FHIR errors: a closed set of categories, each with its HTTP status and issue code.

    FhirError
     ├── Invalid             400  invalid      (malformed request or resource)
     │    ├── Unprocessable  422  processing   (well-formed but breaks a rule or profile)
     │    └── TooLarge       413  invalid      (the request body is over the size limit)
     ├── Unauthorized        401  login        (no valid access token)
     ├── Forbidden           403  forbidden
     ├── NotFound            404  not-found
     ├── NotSupported        400/405 not-supported
     ├── Conflict            409  conflict
     ├── Gone                410  deleted
     ├── PreconditionFailed  412  conflict     (stale If-Match, conditional matched several)
     ├── TooManyRequests     429  throttled
     └── Busy                503  transient

Services and stores raise these; only ``enjournal.rest.errors`` turns them into an
OperationOutcome with its status and headers, so the error policy lives in one place.
A few carry what a header needs: ``retry_after`` (Busy, TooManyRequests), ``allow``
(MethodNotAllowed), ``bearer_error`` (Unauthorized after a token was presented); any
may carry ``contained`` resources for its OperationOutcome (e-resept's InteractionConflict).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # an IssueType code, e.g. "invalid", "required", "code-invalid"
    diagnostics: str
    expression: list[str] = field(default_factory=list)
    details: str | None = None  # Issue.details.text, e.g. the id of a detected interaction

    def to_fhir(self) -> dict:
        out: dict = {"severity": self.severity, "code": self.code}
        if self.details is not None:
            out["details"] = {"text": self.details}
        out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = self.expression
        return out


class FhirError(Exception):
    status = 500
    code = "exception"

    def __init__(self, message: str, *, expression: str | None = None, issues=None):
        super().__init__(message)
        self.message = message
        self.issues: list[Issue] = issues or [
            Issue("error", self.code, message, [expression] if expression else [])
        ]


class Invalid(FhirError):
    status = 400
    code = "invalid"


class Unprocessable(Invalid):
    status = 422
    code = "processing"


class TooLarge(Invalid):
    status = 413


class Unauthorized(FhirError):
    status = 401
    code = "login"
    # RFC 6750 error code for the WWW-Authenticate challenge: "invalid_token" once a bearer
    # token was presented and refused; None when the request carried no bearer token.
    bearer_error: str | None = None


class TooManyRequests(FhirError):
    status = 429
    code = "throttled"
    retry_after: float = 1  # seconds, for the Retry-After header


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class NotSupported(FhirError):
    status = 400
    code = "not-supported"


class MethodNotAllowed(NotSupported):
    status = 405

    def __init__(self, message: str, *, allow: tuple[str, ...] = ()):
        super().__init__(message)
        self.allow = allow  # the methods the path does serve (the Allow header)


class Conflict(FhirError):
    status = 409
    code = "conflict"


class Gone(FhirError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    code = "conflict"


class Busy(FhirError):
    status = 503
    code = "transient"
    retry_after: float = 1  # seconds, for the Retry-After header
