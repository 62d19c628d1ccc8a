"""$validate: http://hl7.org/fhir/R4/resource-operation-validate.html.

Answers 200 with an OperationOutcome listing every issue; nothing is stored.

The body is either the resource itself or a Parameters wrapper with a ``resource`` parameter
(and optionally ``mode`` and ``profile``).  At ``Parameters/$validate`` a posted Parameters
is the resource to validate unless it has exactly that wrapper's shape, holding a Parameters:
otherwise a Parameters resource could never be validated as itself.
"""

from __future__ import annotations

from enjournal.fhir.errors import Invalid, Issue
from enjournal.rest.interactions.common import known_type
from enjournal.rest.message import FhirRequest, FhirResponse, outcome

_WRAPPER_PARAMETERS = frozenset({"resource", "mode", "profile"})


def _wrapped(body: dict) -> list:
    params = body.get("parameter")
    if not isinstance(params, list):
        return []
    return [
        p.get("resource") for p in params if isinstance(p, dict) and p.get("name") == "resource"
    ]


def _is_wrapper(body: dict, type_: str) -> bool:
    """Whether a Parameters body is the operation's input rather than the resource."""
    if type_ != "Parameters":
        return True
    params = body.get("parameter")
    if not isinstance(params, list) or not params:
        return False
    names = [p.get("name") if isinstance(p, dict) else None for p in params]
    if not set(names) <= _WRAPPER_PARAMETERS or names.count("resource") != 1:
        return False
    inner = _wrapped(body)[0]
    return isinstance(inner, dict) and inner.get("resourceType") == "Parameters"


def _target(body: dict, type_: str) -> dict:
    if body.get("resourceType") != "Parameters" or not _is_wrapper(body, type_):
        return body
    resources = _wrapped(body)
    if not resources or not isinstance(resources[0], dict):
        raise Invalid("$validate with Parameters needs a 'resource' parameter")
    return resources[0]


async def validate(request: FhirRequest, tx) -> FhirResponse:
    from enjournal.fhir.validation import validate as run

    type_ = known_type(request.path[0])
    body = _target(request.resource(), type_)
    issues: list[Issue] = []
    if body.get("resourceType") != type_:
        issues.append(
            Issue("error", "invalid", f"expected a {type_}, got {body.get('resourceType')}")
        )
    else:
        issues = run(body)
    if not issues:
        issues = [Issue("information", "informational", "no issues found")]
    return FhirResponse.of(outcome(issues), 200)
