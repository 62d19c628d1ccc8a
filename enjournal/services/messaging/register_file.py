"""Loading the address register (domain.md section 5) from a file into the record.

The file is a FHIR Bundle (collection, transaction or batch) or NDJSON of Organization,
HealthcareService, PractitionerRole and Endpoint resources.  Every resource is validated,
every party carries its HER-id and names Endpoints of the file that receive FHIR messages
(``hl7-fhir-msg``) of the types of kodeverk 8279.  A load is all or nothing: one
transaction, and a clear error naming the line or entry when anything is wrong.

Resources keep their ids (a party without one gets ``her-<HER-id>``), so a reload updates
them in place and makes no new version of what did not change.  What a source loaded last
time is kept in a List (``List/address-register-<source>``) with the file's SHA-256: a
party gone from the new file becomes ``active: false`` and its Endpoints ``off`` (kept,
since old messages name them), and ``load_if_changed`` skips a file already loaded, in
this process (by its hash in memory) and in any other (by the List's).
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from enjournal.fhir import jsonio
from enjournal.fhir.errors import FhirError
from enjournal.fhir.norwegian_ids import OID_HER_ID
from enjournal.fhir.validation import check
from enjournal.services import Job
from enjournal.services.messaging import addresses
from enjournal.services.messaging.rules import FUNCTION_SYSTEM

log = logging.getLogger("enjournal.messaging")

SOURCE = "adresseregisteret"  # the default source: one register per platform
HASH_SYSTEM = "urn:enjournal:address-register-sha256"
CONNECTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
CONNECTION = "hl7-fhir-msg"
KINDS = (*addresses.PARTY_TYPES, "Endpoint")
EVERY_SECONDS = 300.0
_DROPPED_META = ("versionId", "lastUpdated", "source")  # the exporting server's, not ours


class RegisterError(ValueError):
    """The register file cannot be loaded: the message names the line or entry."""


@dataclass
class LoadSummary:
    added: int = 0  # parties new to the record
    changed: int = 0  # parties whose resource changed (a reactivation too)
    unchanged: int = 0
    deactivated: int = 0  # parties gone from the file, now inactive
    endpoints: int = 0  # Endpoints written or switched off


@dataclass
class _Item:
    where: str  # "line 3", "entry 2": for error messages
    resource: dict
    full_url: str | None = None


@dataclass
class _Register:
    resources: list[dict] = field(default_factory=list)  # Endpoints first, then parties
    her_ids: dict[str, str] = field(default_factory=dict)  # "Type/id" of a party -> HER-id


# ---- reading and checking the file ------------------------------------------------------


def read_items(data: bytes) -> list[_Item]:
    """The resources of a Bundle, or of NDJSON (one resource a line)."""
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _ndjson_items(data)
    if isinstance(whole, dict) and whole.get("resourceType") == "Bundle":
        return _bundle_items(whole)
    return [_Item("line 1", whole)] if isinstance(whole, dict) else _ndjson_items(data)


def _bundle_items(bundle: dict) -> list[_Item]:
    if bundle.get("type") not in ("collection", "transaction", "batch"):
        raise RegisterError("the register Bundle's type must be collection, transaction or batch")
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        raise RegisterError("the register Bundle has no entries")
    items = []
    for number, entry in enumerate(entries, 1):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise RegisterError(f"entry {number}: no resource")
        items.append(_Item(f"entry {number}", resource, entry.get("fullUrl")))
    return items


def _ndjson_items(data: bytes) -> list[_Item]:
    items = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise RegisterError(f"line {number}: not JSON ({error})") from None
        if not isinstance(resource, dict):
            raise RegisterError(f"line {number}: not a FHIR resource")
        items.append(_Item(f"line {number}", resource))
    if not items:
        raise RegisterError("the register file holds no resources")
    return items


def prepare(items: list[_Item]) -> _Register:
    """Check every resource, give each its stable id and resolve references between them;
    RegisterError naming the first problem."""
    for item in items:
        _check_item(item)
    _give_ids(items)
    _resolve_full_urls(items)
    register = _Register()
    for item in sorted(items, key=lambda i: i.resource["resourceType"] != "Endpoint"):
        register.resources.append(item.resource)
        if item.resource["resourceType"] != "Endpoint":
            register.her_ids[_ref(item.resource)] = _her_id(item)
    _check_links(items)
    return register


def _check_item(item: _Item) -> None:
    resource = item.resource
    kind = resource.get("resourceType")
    if kind not in KINDS:
        raise RegisterError(f"{item.where}: {kind!r} is not one of {', '.join(KINDS)}")
    _drop_server_meta(resource)
    try:
        check(resource)
    except FhirError as error:
        raise RegisterError(f"{_label(item)}: {error.message}") from None
    if kind == "Endpoint":
        _check_endpoint(item)
    else:
        _her_id(item)


def _drop_server_meta(resource: dict) -> None:
    meta = resource.get("meta")
    if isinstance(meta, dict):
        for key in _DROPPED_META:
            meta.pop(key, None)
        if not meta:
            del resource["meta"]


def _her_id(item: _Item) -> str:
    values = [
        i.get("value")
        for i in item.resource.get("identifier") or []
        if i.get("system") == OID_HER_ID and i.get("value")
    ]
    if len(values) != 1:
        raise RegisterError(f"{_label(item)}: a party needs exactly one HER-id ({OID_HER_ID})")
    return values[0]


def _check_endpoint(item: _Item) -> None:
    endpoint = item.resource
    connection = endpoint.get("connectionType") or {}
    if (connection.get("system"), connection.get("code")) != (CONNECTION_SYSTEM, CONNECTION):
        raise RegisterError(
            f"{_label(item)}: connectionType must be {CONNECTION} ({CONNECTION_SYSTEM})"
        )
    for concept in endpoint.get("payloadType") or []:
        codings = concept.get("coding") or []
        if not any(c.get("system") == FUNCTION_SYSTEM and c.get("code") for c in codings):
            raise RegisterError(
                f"{_label(item)}: every payloadType is a message type of {FUNCTION_SYSTEM}"
            )


def _give_ids(items: list[_Item]) -> None:
    """Ids as given; a party without one gets ``her-<HER-id>``, an Endpoint without one an
    id from its address.  Each (type, id) once."""
    seen: dict[str, str] = {}
    her_seen: dict[str, str] = {}
    for item in items:
        resource = item.resource
        if not resource.get("id"):
            resource["id"] = _default_id(item)
        ref = _ref(resource)
        if ref in seen:
            raise RegisterError(f"{item.where}: {ref} is also {seen[ref]}")
        seen[ref] = item.where
        if resource["resourceType"] != "Endpoint":
            her = _her_id(item)
            if her in her_seen:
                raise RegisterError(f"{_label(item)}: HER-id {her} is also {her_seen[her]}")
            her_seen[her] = item.where


def _default_id(item: _Item) -> str:
    if item.resource["resourceType"] != "Endpoint":
        return f"her-{_her_id(item)}"
    address = item.resource.get("address")
    if not isinstance(address, str) or not address:
        raise RegisterError(f"{item.where}: an Endpoint without an id needs an address")
    return "ep-" + hashlib.sha256(address.encode()).hexdigest()[:24]


def _resolve_full_urls(items: list[_Item]) -> None:
    """References by an entry's fullUrl (``urn:uuid:...``) become ``Type/id``."""
    targets = {i.full_url: _ref(i.resource) for i in items if i.full_url}
    if targets:
        for item in items:
            _rewrite(item.resource, targets)


def _rewrite(node: Any, targets: dict[str, str]) -> None:
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str) and reference in targets:
            node["reference"] = targets[reference]
        for value in node.values():
            _rewrite(value, targets)
    elif isinstance(node, list):
        for value in node:
            _rewrite(value, targets)


def _check_links(items: list[_Item]) -> None:
    """Every party names at least one Endpoint, each one of the file."""
    endpoints = {_ref(i.resource) for i in items if i.resource["resourceType"] == "Endpoint"}
    for item in items:
        if item.resource["resourceType"] == "Endpoint":
            continue
        named = [(r or {}).get("reference") for r in item.resource.get("endpoint") or []]
        if not named:
            raise RegisterError(f"{_label(item)}: a party needs an Endpoint")
        missing = [r for r in named if r not in endpoints]
        if missing:
            raise RegisterError(f"{_label(item)}: {missing[0]} is not an Endpoint of the file")


def _ref(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _label(item: _Item) -> str:
    id_ = item.resource.get("id")
    kind = item.resource.get("resourceType")
    return f"{item.where} ({kind}/{id_})" if id_ else f"{item.where} ({kind})"


# ---- writing --------------------------------------------------------------------------------


async def load_register(
    store: Any, path: str | Path, *, source: str = SOURCE
) -> LoadSummary | None:
    """Load the register file at ``path`` as ``source``; None when the same file (by its
    hash) was the source's last load.  RegisterError or OSError: nothing written."""
    return await load_bytes(store, Path(path).read_bytes(), source=source)


async def load_bytes(
    store: Any, data: bytes, *, source: str = SOURCE, force: bool = False
) -> LoadSummary | None:
    """Load a register file's content (see ``load_register``); ``force`` loads it even when
    it is the source's last load (e.g. to restore resources edited since)."""
    digest = hashlib.sha256(data).hexdigest()
    register = prepare(read_items(data))
    list_id = _list_id(source)
    async with store.transaction() as tx:
        await tx.lock_criteria("List", f"_id={list_id}")  # one load of a source at a time
        manifest = await _manifest(tx, list_id)
        if not force and manifest is not None and _hash_of(manifest) == digest:
            return None
        await _check_her_ids(tx, register)
        summary = await _write(tx, register)
        await _retire(tx, _entries(manifest), register, summary)
        await tx.update(_manifest_resource(source, digest, register), list_id)
    addresses.forget()
    return summary


def _list_id(source: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-." else "-" for c in source.lower())
    return f"address-register-{safe}"[:64]


async def _manifest(tx: Any, list_id: str) -> dict | None:
    found = await tx.read_many("List", [list_id])
    return jsonio.loads(found[0].content) if found else None


def _hash_of(manifest: dict) -> str | None:
    for ident in manifest.get("identifier") or []:
        if ident.get("system") == HASH_SYSTEM:
            return ident.get("value")
    return None


def _entries(manifest: dict | None) -> set[str]:
    if manifest is None:
        return set()
    return {e["item"]["reference"] for e in manifest.get("entry") or []}


def _manifest_resource(source: str, digest: str, register: _Register) -> dict:
    return {
        "resourceType": "List",
        "identifier": [{"system": HASH_SYSTEM, "value": digest}],
        "status": "current",
        "mode": "snapshot",
        "title": f"Adresseregisteret: {source}",
        "entry": [{"item": {"reference": _ref(r)}} for r in register.resources],
    }


async def _check_her_ids(tx: Any, register: _Register) -> None:
    """A HER-id names one party: refuse one that another resource of the record holds."""
    for ref, her in register.her_ids.items():
        for kind in addresses.PARTY_TYPES:
            for found in await tx.by_identifier(kind, (OID_HER_ID,), her):
                other = f"{found.type}/{found.id}"
                if other != ref:
                    raise RegisterError(f"{ref}: HER-id {her} is already that of {other}")


async def _write(tx: Any, register: _Register) -> LoadSummary:
    """Update what changed (no new version of an unchanged resource), counting parties."""
    summary = LoadSummary()
    for kind in KINDS:
        batch = {r["id"]: r for r in register.resources if r["resourceType"] == kind}
        stored = {s.id: jsonio.loads(s.content) for s in await tx.read_many(kind, list(batch))}
        for id_, resource in batch.items():
            outcome = _compare(stored.get(id_), resource)
            if outcome != "unchanged":
                await _update(tx, resource)
            if kind == "Endpoint":
                summary.endpoints += outcome != "unchanged"
            else:
                setattr(summary, outcome, getattr(summary, outcome) + 1)
    return summary


async def _update(tx: Any, resource: dict) -> None:
    """Write; a write check's refusal (e.g. a code the server's code system lacks) is the
    file's error, and rolls the whole load back."""
    try:
        await tx.update(resource, resource["id"])
    except FhirError as error:
        raise RegisterError(f"{_ref(resource)}: {error.message}") from None


def _compare(old: dict | None, new: dict) -> str:
    if old is None:
        return "added"
    old = {k: v for k, v in old.items() if k != "meta"}
    return "unchanged" if old == {k: v for k, v in new.items() if k != "meta"} else "changed"


async def _retire(tx: Any, before: set[str], register: _Register, summary: LoadSummary) -> None:
    """What the source loaded before but the file no longer has: parties inactive,
    Endpoints off."""
    kept = {_ref(r) for r in register.resources}
    for ref in sorted(before - kept):
        kind, id_ = ref.split("/", 1)
        found = await tx.read_many(kind, [id_])
        if not found:
            continue  # deleted through the API meanwhile
        resource = jsonio.loads(found[0].content)
        resource.pop("meta", None)
        if kind == "Endpoint" and resource.get("status") != "off":
            resource["status"] = "off"
            summary.endpoints += 1
        elif kind != "Endpoint" and resource.get("active") is not False:
            resource["active"] = False
            summary.deactivated += 1
        else:
            continue
        await tx.update(resource, id_)


# ---- keeping the copy current -------------------------------------------------------------

# store -> {path: SHA-256 of the content last loaded or found loaded}: spares reading the List
_seen: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


async def load_if_changed(
    platform: Any, path: str | Path, *, source: str = SOURCE
) -> LoadSummary | None:
    """Reload the register file when its content changed since this source's last load
    (None: it did not).  Idempotent: several workers may run it at once."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    seen = _seen.setdefault(platform.store, {})
    key = f"{source}:{Path(path).resolve()}"
    if seen.get(key) == digest:
        return None
    summary = await load_bytes(platform.store, data, source=source)
    seen[key] = digest
    return summary


def addresses_job(platform: Any) -> Job | None:
    """The job keeping the address register current from ``settings.messaging_addresses``
    (every 5 minutes), or None when no file is set."""
    path = platform.settings.messaging_addresses
    if not path:
        return None

    async def reload(store: Any, now: Any) -> int:
        try:
            summary = await load_if_changed(platform, path)
        except (RegisterError, OSError) as error:
            log.error(
                "address register not loaded",
                extra={"fields": {"path": str(path), "error": str(error)}},
            )
            return 0
        if summary is None:
            return 0
        log.info("address register loaded", extra={"fields": {"path": str(path), **vars(summary)}})
        return summary.added + summary.changed + summary.deactivated

    return Job("messaging-addresses", EVERY_SECONDS, reload)
