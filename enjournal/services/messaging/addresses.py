"""The address register (Adresseregisteret, AR): who can receive which messages, by HER-id.

A communication party is an Organization (virksomhet), a HealthcareService (tjeneste) or a
PractitionerRole (a person in an organisation), each with its HER-id
(``urn:oid:2.16.578.1.12.4.1.2``) and an Endpoint whose ``payloadType`` lists the message
types (kodeverk 8279) it receives.  Parties are ordinary FHIR resources in the record, so they
are searched with the usual REST API (``Organization?identifier=...``, ``?name=``,
``HealthcareService?organization=``); this module answers the questions messaging asks.
``register_file`` loads the register from a file (and keeps it current).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from enjournal.fhir import jsonio
from enjournal.fhir.norwegian_ids import OID_HER_ID, OID_ORGNR
from enjournal.fhir.search import parse_search
from enjournal.services.messaging import rules
from enjournal.services.messaging.rules import FUNCTION_SYSTEM

PARTY_TYPES = ("Organization", "HealthcareService", "PractitionerRole")
AUTOMATIC_RECEIPT = "http://enjournal.no/fhir/StructureDefinition/automatic-receipt"
_CACHE_SECONDS = 30.0
MAX_PEOPLE = 50  # people matched by name whose roles are looked up (one search value)


@dataclass(frozen=True)
class Party:
    her_id: str
    name: str
    reference: str  # e.g. "Organization/sykehus-1"
    org_nr: str | None  # the organisation number of the virksomhet it belongs to
    accepts: frozenset[str]  # message types (8279) its endpoints receive
    automatic_receipt: bool = False  # its system answers every message it accepts with OK
    active: bool = True

    def receives(self, message_type: str) -> bool:
        return self.active and message_type in self.accepts


_cache: OrderedDict[str, tuple[float, Party | None]] = OrderedDict()
_CACHE_SIZE = 20_000  # parties kept per worker (the register holds some 30,000)


async def find_party(tx, her_id: str, *, fresh: bool = False) -> Party | None:
    """The party with ``her_id`` (None: unknown), kept for a short while per worker; only
    known parties are kept, and at most ``_CACHE_SIZE`` of them (least recently used out),
    so asking for made-up HER-ids grows nothing."""
    hit = _cache.get(her_id)
    if hit is not None and not fresh and hit[0] > time.monotonic():
        _cache.move_to_end(her_id)
        return hit[1]
    party = await _load(tx, her_id)
    if party is None:
        _cache.pop(her_id, None)
        return None
    _cache[her_id] = (time.monotonic() + _CACHE_SECONDS, party)
    _cache.move_to_end(her_id)
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return party


def forget() -> None:
    """Drop the cached parties (after the register was loaded)."""
    _cache.clear()


def her_id_of(resource: dict) -> str | None:
    """The HER-id of a party resource (None: it has none, so it is no party)."""
    for ident in resource.get("identifier") or []:
        if ident.get("system") == OID_HER_ID and ident.get("value"):
            return ident["value"]
    return None


async def _load(tx, her_id: str) -> Party | None:
    for type_ in PARTY_TYPES:
        found = await tx.by_identifier(type_, (OID_HER_ID,), her_id, limit=1)
        if found:
            resource = jsonio.loads(found[0].content)
            return await _party(tx, her_id, resource)
    return None


async def _party(tx, her_id: str, resource: dict) -> Party:
    endpoints = [await _read(tx, r.get("reference")) for r in resource.get("endpoint") or []]
    accepts: set[str] = set()
    automatic = False
    for endpoint in filter(None, endpoints):
        if endpoint.get("status") != "active":
            continue
        for concept in endpoint.get("payloadType") or []:
            for coding in concept.get("coding") or []:
                if coding.get("system") == FUNCTION_SYSTEM and coding.get("code"):
                    accepts.add(coding["code"])
        automatic = automatic or any(
            e.get("url") == AUTOMATIC_RECEIPT and e.get("valueBoolean") is True
            for e in endpoint.get("extension") or []
        )
    return Party(
        her_id=her_id,
        name=party_name(resource) or str(resource.get("id", "")),
        reference=f"{resource['resourceType']}/{resource['id']}",
        org_nr=await _org_nr(tx, resource),
        accepts=frozenset(accepts),
        automatic_receipt=automatic,
        active=resource.get("active", True) is not False,
    )


def party_name(resource: dict) -> str:
    """A party's name: its own, or its person's or organisation's display ("" if none)."""
    if isinstance(resource.get("name"), str):
        return resource["name"]
    for key in ("practitioner", "organization"):
        display = rules.obj(resource.get(key)).get("display")
        if display:
            return str(display)
    return ""


async def _org_nr(tx, resource: dict, depth: int = 0) -> str | None:
    """The organisation number of the virksomhet: its own, or that of the organisation it
    belongs to (``providedBy``, ``organization``, ``partOf``), a few levels up."""
    for ident in resource.get("identifier") or []:
        if resource["resourceType"] == "Organization" and ident.get("system") == OID_ORGNR:
            return ident.get("value")
    if depth > 3:
        return None
    for key in ("providedBy", "organization", "partOf"):
        parent = await _read(tx, (resource.get(key) or {}).get("reference"))
        if parent is not None:
            return await _org_nr(tx, parent, depth + 1)
    return None


async def _read(tx, reference: object) -> dict | None:
    if not isinstance(reference, str) or reference.count("/") != 1:
        return None
    type_, id_ = reference.split("/")
    found = await tx.read_many(type_, [id_])
    return jsonio.loads(found[0].content) if found else None


async def acts_for(tx, principal, her_id: str) -> bool:
    """Whether ``principal`` may send and receive as the party ``her_id``: a person of that
    organisation (their token's HER-id) or a system or person of the organisation (by its
    organisation number) the party belongs to."""
    if principal is None:
        return True  # a platform without security (tests of the core)
    if principal.her_id and principal.her_id == her_id:
        return True
    if not principal.org_nr:
        return False
    party = await find_party(tx, her_id)
    return party is not None and party.org_nr == principal.org_nr


# ---- searching the register ---------------------------------------------------------------


async def search_parties(
    tx,
    *,
    her_id: str | None = None,
    name: str | None = None,
    org_nr: str | None = None,
    service: str | None = None,
    limit: int = 100,
) -> list[Party]:
    """The parties meeting every criterion given (FHIR searches through the store): by
    HER-id; by name (an organisation's, a service's, a person's); those of the
    organisation ``org_nr`` (itself, its departments, their services and people); services
    by name.  ValueError when no criterion is given."""
    found: list[dict[str, dict]] = []
    if her_id:
        found.append(await _by_her_id(tx, her_id, limit))
    if name:
        found.append(await _by_name(tx, name, limit))
    if org_nr:
        found.append(await _by_org_nr(tx, org_nr, limit))
    if service:
        found.append(await _search(tx, "HealthcareService", [("name:contains", service)], limit))
    if not found:
        raise ValueError("search the register by HER-id, name, organisation number or service")
    refs = set.intersection(*(set(f) for f in found))
    parties = []
    for ref in sorted(refs, key=_type_first)[:limit]:
        resource = found[0][ref]
        parties.append(await _party(tx, her_id_of(resource) or "", resource))
    return parties


def _type_first(reference: str) -> tuple[int, str]:
    """Organisations, then services, then people."""
    kind = reference.split("/")[0]
    return PARTY_TYPES.index(kind), reference


async def _search(tx, kind: str, params: list[tuple[str, str]], limit: int) -> dict[str, dict]:
    """ "Type/id" -> resource of the parties (resources with a HER-id) a search finds."""
    query = parse_search(kind, [*params, ("_count", str(limit))], parameters=tx.search_parameters)
    resources = [jsonio.loads(s.content) for s in (await tx.search(query)).matches]
    return {f"{kind}/{r['id']}": r for r in resources if her_id_of(r)}


async def _by_her_id(tx, her_id: str, limit: int) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for kind in PARTY_TYPES:
        found |= await _search(tx, kind, [("identifier", f"{OID_HER_ID}|{her_id}")], limit)
    return found


async def _by_name(tx, name: str, limit: int) -> dict[str, dict]:
    found = await _search(tx, "Organization", [("name:contains", name)], limit)
    found |= await _search(tx, "HealthcareService", [("name:contains", name)], limit)
    query = parse_search(
        "Practitioner",
        [("name:contains", name), ("_count", str(limit))],
        parameters=tx.search_parameters,
    )
    people = [f"Practitioner/{s.id}" for s in (await tx.search(query)).matches][:MAX_PEOPLE]
    for chunk in _chunks(people, 1_500):  # one search value holds at most 2,048 characters
        found |= await _search(tx, "PractitionerRole", [("practitioner", ",".join(chunk))], limit)
    return found


def _chunks(values: list[str], most: int) -> list[list[str]]:
    """``values`` in runs whose comma-joined length is at most ``most``."""
    runs: list[list[str]] = []
    for value in values:
        if runs and len(",".join([*runs[-1], value])) <= most:
            runs[-1].append(value)
        else:
            runs.append([value])
    return runs


async def _by_org_nr(tx, org_nr: str, limit: int) -> dict[str, dict]:
    """The organisation with ``org_nr``, its departments (one level of ``partOf``), and the
    services and people of both."""
    query = parse_search(
        "Organization", [("identifier", f"{OID_ORGNR}|{org_nr}")], parameters=tx.search_parameters
    )
    owners = [f"Organization/{s.id}" for s in (await tx.search(query)).matches]
    if not owners:
        return {}
    found = await _search(
        tx, "Organization", [("_id", ",".join(o.split("/")[1] for o in owners))], limit
    )
    found |= await _search(tx, "Organization", [("partof", ",".join(owners))], limit)
    units = ",".join(sorted({*owners, *(r for r in found if r.startswith("Organization/"))}))
    found |= await _search(tx, "HealthcareService", [("organization", units)], limit)
    found |= await _search(tx, "PractitionerRole", [("organization", units)], limit)
    return found
