"""$validate: http://hl7.org/fhir/R4/resource-operation-validate.html.

Answers 200 with an OperationOutcome listing every issue; nothing is stored.
"""

from __future__ import annotations

from enjournal.fhir.errors import Invalid, Issue
from enjournal.rest.interactions.common import known_type
from enjournal.rest.message import FhirRequest, FhirResponse, outcome


async def validate(request: FhirRequest, tx) -> FhirResponse:
    from enjournal.fhir.validation import validate as run

    type_ = known_type(request.path[0])
    body = request.resource()
    if body["resourceType"] == "Parameters":
        resources = [
            p.get("resource") for p in body.get("parameter", []) if p.get("name") == "resource"
        ]
        if not resources or not isinstance(resources[0], dict):
            raise Invalid("$validate with Parameters needs a 'resource' parameter")
        body = resources[0]
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
