"""batch and transaction Bundles: http://hl7.org/fhir/R4/http.html#transaction.

A transaction runs in one database transaction: all entries succeed or none is stored.
Entries are processed in the order the spec prescribes (DELETE, POST, PUT/PATCH, GET/HEAD);
``urn:uuid:`` full URLs and conditional references (``Patient?identifier=...``) are resolved
to real ids before any resource is written.  A batch runs each entry on its own.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, quote, urlsplit

from enjournal.fhir import jsonio
from enjournal.fhir.datetime import format_instant
from enjournal.fhir.errors import FhirError, Invalid, NotFound, PreconditionFailed
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR
from enjournal.rest.errors import error_response
from enjournal.rest.interactions.common import known_type, validate_for_write
from enjournal.rest.message import FhirRequest, FhirResponse, outcome
from enjournal.security.repository import GuardedRepository, independent
from enjournal.storage import StoredResource, Transaction
from enjournal.storage.store import new_id

Dispatch = Callable[[FhirRequest, Transaction], Awaitable[FhirResponse]]

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_CONDITIONAL_REF = re.compile(r"^[A-Z][A-Za-z]+\?.+")


async def process_bundle(request: FhirRequest, store, dispatch: Dispatch) -> FhirResponse:
    """``store`` is anything with ``transaction(write=...)``: the Store, or the router's Unit
    (which also appends audit events inside the transaction)."""
    bundle = request.resource()
    if bundle["resourceType"] != "Bundle":
        raise Invalid("POST to the base needs a batch or transaction Bundle")
    kind = bundle.get("type")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise Invalid("Bundle.entry must be an array", expression="Bundle.entry")
    for n, entry in enumerate(entries):
        _check_entry(entry, n)
    if kind == "transaction":
        async with store.transaction(write=True) as tx:
            responses = await _transaction(request, tx, entries, dispatch)
        return _response_bundle("transaction-response", responses)
    if kind == "batch":
        responses = [await _batch_entry(request, store, entry, dispatch) for entry in entries]
        return _response_bundle("batch-response", responses)
    raise Invalid(
        f"Bundle.type must be batch or transaction, not {kind!r}", expression="Bundle.type"
    )


def _check_entry(entry: object, n: int) -> None:
    where = f"Bundle.entry[{n}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise Invalid(f"{where} needs a request", expression=f"{where}.request")
    method, url = entry["request"].get("method"), entry["request"].get("url")
    if method not in ORDER:
        raise Invalid(
            f"{where}.request.method {method!r} is not supported",
            expression=f"{where}.request.method",
        )
    if not isinstance(url, str) or not url:
        raise Invalid(f"{where}.request.url is missing", expression=f"{where}.request.url")
    if method in ("POST", "PUT") and not isinstance(entry.get("resource"), dict):
        raise Invalid(f"{where} needs a resource for {method}", expression=f"{where}.resource")


def _entry_request(outer: FhirRequest, entry: dict, body: bytes = b"") -> FhirRequest:
    req = entry["request"]
    parts = urlsplit(req["url"])
    path = [p for p in parts.path.split("/") if p]
    from urllib.parse import parse_qsl

    headers = {"prefer": outer.header("prefer") or ""}
    for field_name, header in (
        ("ifMatch", "if-match"),
        ("ifNoneExist", "if-none-exist"),
        ("ifNoneMatch", "if-none-match"),
        ("ifModifiedSince", "if-modified-since"),
    ):
        if req.get(field_name):
            headers[header] = req[field_name]
    if req["method"] == "PATCH":
        headers["content-type"] = "application/json-patch+json"
    return FhirRequest(
        req["method"],
        path,
        parse_qsl(parts.query, keep_blank_values=True),
        headers,
        body,
        outer.base_url,
        guard=outer.guard,
        operations=outer.operations,
    )


async def _batch_entry(outer, store, entry, dispatch) -> dict:
    try:
        write = entry["request"]["method"] not in ("GET", "HEAD")
        async with store.transaction(write=write) as tx:
            if isinstance(entry.get("resource"), dict):
                # conditional and logical patient references, as in a transaction; a
                # batch entry names no other entry (no interdependencies, http.html#brules)
                repo = GuardedRepository(tx, outer.guard)
                await _resolve_references(repo, entry["resource"], {})
            body = jsonio.dumps(entry["resource"]) if "resource" in entry else b""
            if entry["request"]["method"] == "PATCH":
                body = _patch_body(entry)
            response = await dispatch(_entry_request(outer, entry, body), tx)
    except FhirError as error:
        response = error_response(error)
    return _response_entry(response)


async def _transaction(outer, tx: Transaction, entries: list[dict], dispatch) -> list[dict]:
    repo = GuardedRepository(tx, outer.guard)
    ids = await _allocate_ids(repo, entries)
    responses: list[dict | None] = [None] * len(entries)
    creates = _Creates(outer, repo, responses)
    for n in sorted(range(len(entries)), key=lambda i: ORDER[entries[i]["request"]["method"]]):
        entry = entries[n]
        try:
            if _plain_create(entry) and (outer.guard is None or independent(entry["resource"])):
                await _prepare_create(repo, entry, ids, creates.write)
                creates.add(n, entry)
                continue
            await creates.write()
            response = await _transaction_entry(outer, repo, entry, ids, dispatch)
        except FhirError as error:
            _blame_entry(error, getattr(error, "entry", n))
            raise
        responses[n] = _response_entry(response)
    try:
        await creates.write()
    except FhirError as error:
        _blame_entry(error, error.entry)  # type: ignore[attr-defined]
        raise
    return [r for r in responses if r is not None]


def _blame_entry(error: FhirError, n: int) -> None:
    for issue in error.issues:
        issue.diagnostics = f"Bundle.entry[{n}]: {issue.diagnostics}"


def _plain_create(entry: dict) -> bool:
    return entry["request"]["method"] == "POST" and entry.get("_existing") is None


class _Creates:
    """Plain creates of a transaction, held back and written together by
    ``Transaction.create_many`` (one statement for the batch's rows).  Without a guard any
    type; with one only types no access check reads (``independent``: the checks read the
    store and must see every earlier entry they depend on written).  Written before any
    other entry and before any lookup, so nothing reads the store without seeing them."""

    def __init__(self, outer: FhirRequest, repo: GuardedRepository, responses: list[dict | None]):
        self.outer, self.repo, self.responses = outer, repo, responses
        self.numbers: list[int] = []
        self.entries: list[dict] = []

    def add(self, n: int, entry: dict) -> None:
        self.numbers.append(n)
        self.entries.append(entry)

    async def write(self) -> None:
        if not self.entries:
            return
        numbers, entries = self.numbers, self.entries
        self.numbers, self.entries = [], []
        try:
            stored = await self.repo.create_many(
                [e["resource"] for e in entries], [e["_id"] for e in entries]
            )
        except FhirError as error:
            error.entry = numbers[getattr(error, "index", 0)]  # type: ignore[attr-defined]
            raise
        for n, one in zip(numbers, stored, strict=True):
            response = FhirResponse(201, None, _location(self.outer, one), one)
            self.responses[n] = _response_entry(response)


async def _prepare_create(
    repo: GuardedRepository, entry: dict, ids: dict[str, str], before_lookup=None
) -> None:
    """A plain POST entry up to its write: references resolved, type and content checked."""
    await _resolve_references(repo, entry["resource"], ids, before_lookup)
    resource = entry["resource"]
    type_ = known_type(entry["request"]["url"].split("?")[0].strip("/"))
    if resource.get("resourceType") != type_:
        raise Invalid(f"the resource is a {resource.get('resourceType')}, the url says {type_}")
    resource.pop("id", None)
    validate_for_write(resource)


async def _lock_conditions(repo: GuardedRepository, entries: list[dict]) -> None:
    """Serialise this transaction's conditional creates and updates with other workers'
    (as a single conditional create does), so two transactions carrying the same
    ``ifNoneExist`` do not both create; taken in one order, so two cannot deadlock."""
    conditions = set()
    for entry in entries:
        req = entry["request"]
        type_ = req["url"].split("?")[0].strip("/")
        if req["method"] == "POST" and req.get("ifNoneExist"):
            conditions.add((type_, req["ifNoneExist"]))
        elif req["method"] == "PUT" and "?" in req["url"]:
            conditions.add((type_, req["url"].split("?", 1)[1]))
    await repo.lock_all_criteria(sorted(conditions))


# The length of one search value's identifiers (MAX_VALUE_CHARS, with room for escapes).
IDENTIFIER_CHARS = 1500


async def _existing_by_identifier(repo: GuardedRepository, entries: list[dict]) -> dict:
    """Entry number -> what its ``ifNoneExist`` matches, for the conditions of the plain
    form ``identifier=system|value``, looked up together (one search per type and
    ``IDENTIFIER_BATCH`` instead of one per entry: a gateway's group of readings)."""
    wanted: dict[str, list[tuple[int, str, str]]] = {}
    for n, entry in enumerate(entries):
        req = entry["request"]
        key = _identifier_condition(req.get("ifNoneExist")) if req["method"] == "POST" else None
        if key is not None:
            type_ = known_type(req["url"].split("?")[0].strip("/"))
            wanted.setdefault(type_, []).append((n, *key))
    known: dict[int, list[StoredResource]] = {}
    for type_, keys in wanted.items():
        if len(keys) < 2:
            continue  # one condition: the general path
        for part in _chunks(keys):
            known.update(await _lookup_identifiers(repo, type_, part))
    return known


def _chunks(keys: list[tuple[int, str, str]]) -> list[list[tuple[int, str, str]]]:
    """Groups whose ``system|value,...`` stays within a search value's length limit."""
    chunks: list[list[tuple[int, str, str]]] = [[]]
    length = 0
    for key in keys:
        size = len(key[1]) + len(key[2]) + 2
        if chunks[-1] and length + size > IDENTIFIER_CHARS:
            chunks.append([])
            length = 0
        chunks[-1].append(key)
        length += size
    return chunks


def _identifier_condition(criteria: str | None) -> tuple[str, str] | None:
    """(system, value) of ``identifier=system|value``, when nothing in it needs escaping."""
    pairs = parse_qsl(criteria or "", keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "identifier":
        return None
    system, bar, value = pairs[0][1].partition("|")
    if not bar or not system or not value or any(c in pairs[0][1] for c in ",$\\"):
        return None
    return (system, value) if "|" not in value else None


async def _lookup_identifiers(repo: GuardedRepository, type_: str, keys: list) -> dict:
    criteria = "identifier=" + ",".join(quote(f"{s}|{v}", safe=":/|") for _, s, v in keys)
    found = await repo.matches(type_, criteria, limit=2 * len(keys))
    by_key: dict[tuple[str, str], list[StoredResource]] = {}
    for stored in found:
        for ident in jsonio.loads(stored.content or b"{}").get("identifier") or ():
            by_key.setdefault((ident.get("system"), ident.get("value")), []).append(stored)
    return {n: by_key.get((s, v), []) for n, s, v in keys}


async def _allocate_ids(repo: GuardedRepository, entries: list[dict]) -> dict[str, str]:
    """fullUrl -> "Type/id" for every entry that creates or names a resource."""
    await _lock_conditions(repo, entries)
    known = await _existing_by_identifier(repo, entries)
    ids: dict[str, str] = {}
    for n, entry in enumerate(entries):
        full_url = entry.get("fullUrl")
        req = entry["request"]
        resource = entry.get("resource") or {}
        type_ = resource.get("resourceType")
        if req["method"] == "POST":
            type_ = known_type(req["url"].split("?")[0].strip("/"))
            target = None
            if req.get("ifNoneExist"):
                found = known.get(n)
                if found is None:
                    found = await repo.matches(type_, req["ifNoneExist"], limit=2)
                if len(found) > 1:
                    raise PreconditionFailed(
                        f"Bundle.entry[{n}]: ifNoneExist matched several {type_} resources"
                    )
                if found:
                    target = found[0].id
                    entry["_existing"] = found[0]
            entry["_id"] = target or new_id()
            if full_url:
                ids[full_url] = f"{type_}/{entry['_id']}"
        elif req["method"] == "PUT" and full_url and type_:
            path = req["url"].split("?")[0].strip("/").split("/")
            if len(path) == 2:
                ids[full_url] = f"{path[0]}/{path[1]}"
            elif "?" in req["url"]:
                found = await repo.matches(type_, req["url"].split("?", 1)[1], limit=2)
                if len(found) > 1:
                    raise PreconditionFailed(
                        f"Bundle.entry[{n}]: conditional update matched several resources"
                    )
                entry["_id"] = found[0].id if found else resource.get("id") or new_id()
                ids[full_url] = f"{type_}/{entry['_id']}"
    return ids


async def _transaction_entry(outer, repo: GuardedRepository, entry, ids, dispatch):
    method = entry["request"]["method"]
    if _plain_create(entry):
        await _prepare_create(repo, entry, ids)
        stored = await repo.create(entry["resource"], id_=entry["_id"])
        return FhirResponse(201, None, _location(outer, stored), stored)
    if method in ("POST", "PUT"):
        await _resolve_references(repo, entry["resource"], ids)
    existing: StoredResource | None = entry.get("_existing")
    if method == "POST" and existing is not None:
        await repo.check_read(existing)
        return FhirResponse(200, None, _location(outer, existing), existing)
    if method == "PUT" and "_id" in entry:
        resource = entry["resource"]
        resource["id"] = entry["_id"]
        validate_for_write(resource)
        stored = await repo.update(resource, entry["_id"])
        return FhirResponse(
            201 if stored.version == 1 else 200, None, _location(outer, stored), stored
        )
    body = jsonio.dumps(entry["resource"]) if "resource" in entry else b""
    if method == "PATCH":
        body = _patch_body(entry)
    return await dispatch(_entry_request(outer, entry, body), repo.trusted)


def _patch_body(entry: dict) -> bytes:
    resource = entry.get("resource") or {}
    if resource.get("resourceType") == "Binary" and resource.get("data"):
        import base64

        return base64.b64decode(resource["data"])
    raise Invalid("a PATCH entry needs a Binary resource holding the JSON Patch document")


async def _resolve_references(
    repo: GuardedRepository, node: object, ids: dict[str, str], before_lookup=None
) -> None:
    """Rewrite references to other entries (urn:uuid, fullUrl) and conditional references
    (to what the caller may read); ``before_lookup()`` runs before a conditional reference
    is searched for."""
    if isinstance(node, dict):
        if "reference" not in node and _national_id(node.get("identifier")):
            await _resolve_logical_patient(repo, node)
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                node[key] = await _target(repo, value, ids, before_lookup)
            elif isinstance(value, (dict, list)):
                await _resolve_references(repo, value, ids, before_lookup)
    elif isinstance(node, list):
        for item in node:
            await _resolve_references(repo, item, ids, before_lookup)


def _national_id(identifier: object) -> bool:
    return isinstance(identifier, dict) and identifier.get("system") in (OID_FNR, OID_DNR)


async def _resolve_logical_patient(repo: GuardedRepository, node: dict) -> None:
    """A logical reference by national id (as HL7 Norway's VKP profiles send a subject)
    gets the literal reference of the one Patient the caller may read with that id; with
    none or several it stays logical (and the resource is nobody's record)."""
    ident = node["identifier"]
    value = str(ident.get("value") or "")
    if not value.isdigit():
        return
    found = await repo.matches("Patient", f"identifier={ident['system']}|{value}", limit=2)
    if len(found) == 1:
        node["reference"] = f"Patient/{found[0].id}"


async def _target(repo: GuardedRepository, reference: str, ids: dict[str, str], before_lookup):
    if reference in ids:
        return ids[reference]
    if reference.startswith("urn:uuid:") or reference.startswith("urn:oid:"):
        raise NotFound(f"the reference {reference} names no entry in the transaction")
    if _CONDITIONAL_REF.match(reference):
        type_, criteria = reference.split("?", 1)
        if before_lookup is not None:
            await before_lookup()
        found = await repo.matches(known_type(type_), criteria, limit=2)
        if len(found) != 1:
            raise PreconditionFailed(
                f"the conditional reference {reference} matched {len(found)} resources, not one"
            )
        ids[reference] = f"{type_}/{found[0].id}"
        return ids[reference]
    return reference


def _location(outer: FhirRequest, stored: StoredResource) -> dict[str, str]:
    return {
        "Location": f"{stored.type}/{stored.id}/_history/{stored.version}",
        "ETag": f'W/"{stored.version}"',
    }


_REASONS = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


def _response_entry(response: FhirResponse) -> dict:
    out: dict = {"status": _REASONS.get(response.status, str(response.status))}
    if "Location" in response.headers:
        out["location"] = response.headers["Location"]
    if "ETag" in response.headers:
        out["etag"] = response.headers["ETag"]
    if response.stored is not None:
        out["lastModified"] = format_instant(response.stored.last_updated)
    entry: dict = {"response": out}
    if response.body and response.status >= 400:
        out["outcome"] = jsonio.loads(response.body)
    elif response.body and response.status < 300:
        entry["resource"] = jsonio.loads(response.body)
    if response.stored is not None:
        entry["fullUrl"] = f"{response.stored.type}/{response.stored.id}"
    return entry


def _response_bundle(kind: str, entries: list[dict]) -> FhirResponse:
    return FhirResponse.of({"resourceType": "Bundle", "type": kind, "entry": entries})


__all__ = ["outcome", "process_bundle"]
