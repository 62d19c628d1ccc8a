"""Typed FHIR errors: a closed set of categories, each with its HTTP status and issue code.

    FhirError
     ├── Invalid             400  invalid      (malformed request or resource)
     │    └── Unprocessable  422  processing   (well-formed but breaks a rule or profile)
     ├── Unauthorized        401  login        (no valid access token)
     ├── Forbidden           403  forbidden
     ├── NotFound            404  not-found
     ├── NotSupported        400/405 not-supported
     ├── Conflict            409  conflict
     ├── Gone                410  deleted
     ├── PreconditionFailed  412  conflict     (stale If-Match, conditional matched several)
     ├── TooManyRequests     429  throttled
     └── Busy                503  transient

Services and stores raise these; only the HTTP layer turns them into an OperationOutcome
(``enjournal.fhir.outcome``), so the error policy lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # an IssueType code, e.g. "invalid", "required", "code-invalid"
    diagnostics: str
    expression: list[str] = field(default_factory=list)

    def to_fhir(self) -> dict:
        out: dict = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
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


class Unauthorized(FhirError):
    status = 401
    code = "login"


class TooManyRequests(FhirError):
    status = 429
    code = "throttled"


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
