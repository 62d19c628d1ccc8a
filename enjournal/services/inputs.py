"""What every service operation does with its input and its refusals.

``operation_parameters`` reads an operation's Parameters body and refuses (400) a body of
another resource type, a ``parameter`` that is not a list of objects, and a missing required
parameter, before anything is read or written: a body of the wrong shape must never fall
back to defaults (a MedicationDispense posted to ``$dispense`` once dispensed the default
quantity).  ``refused`` records a refusal in the audit log (every access decision leaves an
AuditEvent, outcome 4) and returns the error to raise.
"""

from __future__ import annotations

from enjournal.fhir.errors import FhirError, Forbidden, Invalid
from enjournal.rest.operations import parameters


def operation_parameters(
    request, operation: str, required: tuple[str, ...] = (), also: tuple[str, ...] = ()
) -> dict:
    """The operation's parameters (name -> value, lists when repeated).  ``also`` names
    resource types accepted as the whole body besides Parameters (they are then returned
    as ``{}``: the caller reads the body itself)."""
    if request.method == "POST" and request.body:
        body = request.json()
        kind = body.get("resourceType") if isinstance(body, dict) else None
        if kind in also:
            _require({}, operation, required)
            return {}
        if kind != "Parameters":
            raise Invalid(f"{operation} needs a Parameters resource as its body, not {kind!r}")
    values = parameters(request)  # checks the parameters' shape (parameter_parts)
    _require(values, operation, required)
    return values


def _require(values: dict, operation: str, required: tuple[str, ...]) -> None:
    missing = [name for name in required if values.get(name) in (None, "", [])]
    if missing:
        raise Invalid(f"{operation} needs the parameter(s): {', '.join(missing)}")


def refused(
    request,
    action: str,
    operation: str,
    message: str,
    patient: str | None = None,
    error: type[FhirError] = Forbidden,
) -> FhirError:
    """Audit a refusal (outcome 4, with the patient when known; ``action`` one of c r u d
    s, either case) and return the error to raise: Forbidden by default, NotFound where
    the refusal must not reveal that the resource exists."""
    if request.context is not None:
        request.context.refuse(action.lower(), operation, message, patient)
    return error(message)
