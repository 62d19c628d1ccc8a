"""patch with JSON Patch (RFC 6902): http://hl7.org/fhir/R4/http.html#patch.

The patched resource goes through the same validation as any update, so a patch can never
store what a PUT could not.
"""

from __future__ import annotations

import jsonpatch

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Invalid, NotSupported, PreconditionFailed, Unprocessable
from enjournal.rest.interactions.common import known_type, stored_response, validate_for_write
from enjournal.rest.interactions.conditional import matches
from enjournal.rest.message import FhirRequest, FhirResponse, parse_etag
from enjournal.storage import Transaction


async def patch(request: FhirRequest, tx: Transaction) -> FhirResponse:
    type_ = known_type(request.path[0])
    if len(request.path) > 1:
        id_ = request.path[1]
    else:
        if not request.params:
            raise Invalid("PATCH on a type needs search criteria (conditional patch)")
        found = await matches(tx, type_, "&".join(f"{k}={v}" for k, v in request.params), limit=2)
        if len(found) != 1:
            raise PreconditionFailed(f"the criteria matched {len(found)} resources, not one")
        id_ = found[0].id
    content_type = (request.header("content-type") or "").split(";")[0].strip()
    if content_type not in ("application/json-patch+json", ""):
        raise NotSupported(f"PATCH with {content_type} is not supported; use JSON Patch")
    operations = request.json()
    if not isinstance(operations, list):
        raise Invalid("a JSON Patch body is an array of operations")
    current = await tx.read(type_, id_)
    if_match = parse_etag(request.header("if-match"))
    if if_match is not None and if_match != current.version:
        raise PreconditionFailed(f"{type_}/{id_} is at version {current.version}, not {if_match}")
    try:
        patched = jsonpatch.apply_patch(jsonio.loads(current.content), operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as error:
        raise Unprocessable(f"the patch cannot be applied: {error}") from None
    if patched.get("resourceType") != type_ or patched.get("id") != id_:
        raise Unprocessable("a patch may not change resourceType or id")
    validate_for_write(patched)
    if request.guard:
        await request.guard.check_stored(tx, current, "u", "patch")
        await request.guard.check_write(tx, patched, "u", "patch")
    stored = await tx.update(patched, id_, if_match=current.version)
    return stored_response(request, stored, 200)
