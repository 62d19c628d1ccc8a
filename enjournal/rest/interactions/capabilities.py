"""capabilities: http://hl7.org/fhir/R4/http.html#capabilities.

The CapabilityStatement is generated from what the router and the definitions really
support, so it cannot drift from the code.  ``rest.security`` is what the HTTP adapter puts
in ``FhirRequest.security`` (built from the server's security set-up by
``enjournal.security.smart``); a request without it comes from inside the process, where no
security applies, and is told so.
"""

from __future__ import annotations

import orjson

from enjournal.fhir.definitions import SearchParameters, resource_types
from enjournal.rest import operations
from enjournal.rest.message import FhirRequest, FhirResponse

INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
# No security element would be valid R4 too, but then a client cannot tell "open" from "not
# said".  The HTTP adapter puts the secured server's element in FhirRequest.security.
OPEN_SECURITY = {
    "cors": False,
    "description": (
        "This server runs without security (ENJOURNAL_AUTH=off): no authentication and no "
        "access control. For tests and benchmarks only."
    ),
}
SEARCH_TYPES = {"number", "date", "string", "token", "reference", "composite", "quantity", "uri"}


def _statement_bytes(
    base_url: str, security: bytes, served: tuple, parameters: SearchParameters
) -> bytes:
    """The statement, built once per platform's search parameters and request shape."""
    key = ("capabilities", base_url, security, served)
    return parameters.memo(key, lambda: _statement(base_url, security, served, parameters))


def _statement(
    base_url: str, security: bytes, served: tuple, parameters: SearchParameters
) -> bytes:
    from enjournal import __version__

    resources = []
    for type_ in sorted(resource_types()):
        params = [
            {"name": code, "definition": p.url, "type": p.type}
            for code, p in sorted(parameters.of(type_).items())
            if p.type in SEARCH_TYPES and (p.expression or code == "_id")
        ]
        entry = {
            "type": type_,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{type_}",
            "interaction": [{"code": c} for c in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "multiple",
            "referencePolicy": ["literal", "logical"],
            "searchInclude": ["*"],
            "searchRevInclude": ["*"],
            "searchParam": params,
        }
        ops = [
            {
                "name": op_name,
                "definition": op_definition or f"{base_url}/OperationDefinition/{type_}-{op_name}",
            }
            for op_type, op_name, op_definition in served
            if op_type == type_
        ]
        if type_ == "Patient":
            ops.append(
                {
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                }
            )
            ops.append(
                {
                    "name": "access-log",
                    "definition": f"{base_url}/OperationDefinition/Patient-access-log",
                }
            )
        if ops:
            entry["operation"] = sorted(
                {o["name"]: o for o in ops}.values(), key=lambda o: o["name"]
            )
        resources.append(entry)
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "kind": "instance",
        "software": {"name": "enjournal", "version": __version__},
        "implementation": {"description": "enjournal FHIR server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "security": orjson.loads(security),
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "search-system"},
                    {"code": "history-system"},
                ],
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    }
                ],
            }
        ],
    }
    return orjson.dumps(statement)


async def capabilities(request: FhirRequest, tx) -> FhirResponse:
    security = orjson.dumps(request.security or OPEN_SECURITY, option=orjson.OPT_SORT_KEYS)
    # The platform's operations, as a hashable key of the cached statement.
    table = operations.of(request).all()
    ops = tuple(sorted({(op.resource_type or "", op.name, op.definition or "") for op in table}))
    # The search parameters the store indexes: the official ones and the platform's services'.
    body = _statement_bytes(request.base_url, security, ops, tx.search_parameters)
    return FhirResponse(200, body)
