"""patch with JSON Patch (RFC 6902): http://hl7.org/fhir/R4/http.html#patch.

The patched resource goes through the same validation as any update, so a patch can never
store what a PUT could not.  Access is decided before the patch touches anything: what the
caller may not read answers 404 as if it did not exist, and a failed patch says which
operation failed, never what the stored resource holds.
"""

from __future__ import annotations

import jsonpatch

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Invalid, NotSupported, PreconditionFailed, Unprocessable
from enjournal.rest.interactions.common import known_type, stored_response, validate_for_write
from enjournal.rest.message import FhirRequest, FhirResponse, parse_etag
from enjournal.security.repository import GuardedRepository
from enjournal.storage import StoredResource


async def patch(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    type_ = known_type(request.path[0])
    operations = _operations(request)
    current = await _target(request, repo, type_)
    if_match = parse_etag(request.header("if-match"))
    if if_match is not None and if_match != current.version:
        raise PreconditionFailed(f"{type_}/{current.id} is at version {current.version}")
    patched = _apply(jsonio.loads(current.content), operations)
    if patched.get("resourceType") != type_ or patched.get("id") != current.id:
        raise Unprocessable("a patch may not change resourceType or id")
    validate_for_write(patched)
    stored = await repo.update(
        patched, current.id, if_match=current.version, interaction="patch", current=current
    )
    return stored_response(request, stored, 200)


def _operations(request: FhirRequest) -> list:
    content_type = (request.header("content-type") or "").split(";")[0].strip()
    if content_type not in ("application/json-patch+json", ""):
        raise NotSupported(f"PATCH with {content_type} is not supported; use JSON Patch")
    operations = request.json()
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise Invalid("a JSON Patch body is an array of operation objects")
    return operations


async def _target(request: FhirRequest, repo: GuardedRepository, type_: str) -> StoredResource:
    """The resource to patch, by id or by criteria, among those the caller may read and
    change (checked before the patch touches it)."""
    if len(request.path) > 1:
        return await repo.for_update(type_, request.path[1], "patch")
    if not request.params:
        raise Invalid("PATCH on a type needs search criteria (conditional patch)")
    criteria = "&".join(f"{k}={v}" for k, v in request.params)
    found = await repo.matches(type_, criteria, limit=2)
    if len(found) != 1:
        raise PreconditionFailed(f"the criteria matched {len(found)} resources, not one")
    return await repo.for_update(type_, found[0].id, "patch")


def _apply(document: dict, operations: list) -> dict:
    """Apply the patch; an error names the failing operation, never the document's content
    (jsonpatch's own messages quote the values it compared)."""
    for n, operation in enumerate(operations):
        try:
            document = jsonpatch.apply_patch(document, [operation])
        except jsonpatch.JsonPatchTestFailed:
            raise Unprocessable(f"the patch's test operation {n} failed") from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError):
            op, path = operation.get("op"), operation.get("path")
            raise Unprocessable(
                f"the patch's operation {n} ({op!r} at {path!r}) cannot be applied"
            ) from None
    return document
