"""The kjernejournal as an HL7 International Patient Summary document (pure, no I/O).

IPS 2.0.0 (http://hl7.org/fhir/uv/ips/, package hl7.fhir.uv.ips): a document Bundle whose
first entry is a Composition (LOINC 60591-5) with the required sections allergies (48765-2),
medications (10160-0) and problems (11450-4), each with entries or an ``emptyReason``, and
the optional immunizations (11369-6), procedures (47519-4), medical devices (46264-8, as
DeviceUseStatement) and alerts (104605-1, Flag).  Kjernejournal's own tabs without an IPS
section (visit history, the patient's own registrations, GP and next of kin) are extra
sections, which the IPS Composition's open slicing allows.  Every entry has a ``urn:uuid``
fullUrl; a reference to anything not in the Bundle is reduced to its display, so every
reference resolves inside the document.  Narratives are in Norwegian (bokmål).

Speed (docs/performance.md, "Kjernejournal"): references are rewritten on the stored
bytes (``Links``), not by walking parsed resources, and ``encode`` writes the document
body and the canonical bytes that are signed in one pass each, with every resource as a
pre-serialised fragment.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import html
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from enjournal.fhir import jsonio
from enjournal.fhir.datetime import format_instant
from enjournal.fhir.errors import Unprocessable
from enjournal.services.kjernejournal import conformance, rules
from enjournal.services.kjernejournal.records import MARKER, is_kj, kj_tag

LOINC = "http://loinc.org"
EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
NAMESPACE = uuid.UUID("6d1c1f8e-3a51-4a3e-9a77-0a6b8c1e4b21")  # fullUrls of stored resources


@dataclass(frozen=True)
class SectionSpec:
    key: str
    system: str
    code: str
    display: str
    title: str  # Norwegian
    part: str | None  # the restrictable part it belongs to
    required: bool = False


SECTIONS = (
    SectionSpec("alerts", LOINC, "104605-1", "Alert", "Kritisk informasjon", "kritisk-info"),
    SectionSpec(
        "allergies",
        LOINC,
        "48765-2",
        "Allergies and adverse reactions Document",
        "Allergier og overfølsomhetsreaksjoner",
        "kritisk-info",
        True,
    ),
    SectionSpec(
        "problems",
        LOINC,
        "11450-4",
        "Problem list - Reported",
        "Kritiske medisinske tilstander, anestesikomplikasjoner og smitte",
        "kritisk-info",
        True,
    ),
    SectionSpec(
        "medications",
        LOINC,
        "10160-0",
        "History of Medication use Narrative",
        "Legemidler (utleverte og gyldige resepter, siste tre år)",
        "legemidler",
        True,
    ),
    SectionSpec(
        "immunizations", LOINC, "11369-6", "History of Immunization note", "Vaksiner", "vaksiner"
    ),
    SectionSpec(
        "procedures",
        LOINC,
        "47519-4",
        "History of Procedures Document",
        "Pågående behandlinger",
        "kritisk-info",
    ),
    SectionSpec(
        "devices", LOINC, "46264-8", "History of medical device use", "Implantater", "kritisk-info"
    ),
    SectionSpec(
        "visits",
        LOINC,
        "46240-8",
        "History of Hospitalizations+Outpatient visits Narrative",
        "Besøkshistorikk",
        "besokshistorikk",
    ),
    SectionSpec(
        "own",
        rules.KJ,
        "egne-registreringer",
        "Pasientens egne registreringer",
        "Pasientens egne registreringer (registrert av pasienten)",
        "egne-registreringer",
    ),
    SectionSpec("about", rules.KJ, "om-pasienten", "Om pasienten", "Fastlege og pårørende", None),
)


@dataclass
class Entry:
    resource: dict
    full_url: str
    row: list[str] = field(default_factory=list)  # cells of its narrative table row


def stored_url(type_: str, id_: str) -> str:
    """``urn:uuid:`` + uuid5(NAMESPACE, "type/id") (RFC 4122 4.3), without the UUID object,
    which costs more than the hash."""
    h = hashlib.sha1(_NAMESPACE_BYTES + f"{type_}/{id_}".encode()).hexdigest()
    # Version 5 in the 13th hex digit, the RFC 4122 variant (10xx) in the 17th.
    return f"urn:uuid:{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


_NAMESPACE_BYTES = NAMESPACE.bytes


@dataclass
class Document:
    """The document before serialisation: Bundle fields, entries (fullUrl, resource) and
    where every stored resource's reference points (``urls``)."""

    head: dict
    entries: list[tuple[str, dict]]
    urls: dict[tuple[str, str], str]


def build(
    patient: dict,
    resources: list[dict],
    shared: dict[tuple[str, str], dict],
    *,
    now: datetime,
    withheld: frozenset[str] = frozenset(),
    server: dict,
    raw: dict[int, bytes] | None = None,
    refs: dict[int, set[tuple[str, str]]] | None = None,
    privacy: rules.Privacy | None = None,
) -> Document:
    """The unsigned IPS document.  ``resources`` are the patient's (parsed), ``shared`` the
    practitioners, organisations and medications they refer to, ``withheld`` the restricted
    parts the caller may not open, ``server`` the Device that authors it, ``raw`` the stored
    bytes of parsed resources by ``id()`` of their dict and ``refs`` what they refer to
    (``referenced``), both optional: they save serialising and searching again.  ``privacy``:
    the patient's settings; a kjernejournal started anew after a reservation shows nothing
    dated before its start (medicines, vaccines, visits, entries)."""
    raw = raw or {}
    found = _Collected.start(patient["id"], shared, now)
    _collect(found, resources, raw, privacy or rules.Privacy())
    _add_gps(found, patient)
    _withhold(found, withheld)
    entries = [entry for spec in SECTIONS for entry in found.sections[spec.key]]
    patient = _conforming(patient, entries)
    members = [patient, *found.included, *(e.resource for e in entries)]
    _include_shared(found, members, entries, _References(raw, refs or {}))
    found.urls[("Device", server["id"])] = _SERVER_URL
    composition = _composition(found, patient, server, now, withheld)
    bundle_entries = _bundle_entries(found, composition, patient, entries, server)
    return Document(_bundle_head(composition["date"]), bundle_entries, found.urls)


# ---- what build gathers -----------------------------------------------------------------------


@dataclass
class _Collected:
    """The sections' entries, and where every stored resource's reference points."""

    patient_id: str
    shared: dict[tuple[str, str], dict]
    today: str  # ISO date: an alert that ended before it is left out
    window: str  # ISO date: the start of the medication window
    urls: dict[tuple[str, str], str]
    sections: dict[str, list[Entry]]
    critical: list[str] = field(default_factory=list)  # the lines of the critical summary
    included: list[dict] = field(default_factory=list)  # in the Bundle, in no section

    @classmethod
    def start(cls, patient_id: str, shared: dict, now: datetime) -> _Collected:
        urls = {("Patient", patient_id): stored_url("Patient", patient_id)}
        sections: dict[str, list[Entry]] = {spec.key: [] for spec in SECTIONS}
        window = rules.medication_window(now).date().isoformat()
        return cls(patient_id, shared, now.date().isoformat(), window, urls, sections)

    def add(self, key: str, resource: dict, row: list[str]) -> Entry:
        ref = (resource["resourceType"], resource["id"])
        url = self.urls.get(ref)
        if url is None:
            url = self.urls[ref] = stored_url(*ref)
        entry = Entry(resource, url, row)
        self.sections[key].append(entry)
        return entry

    def include(self, resource: dict) -> None:
        """A stored resource an entry is made from (a device, a dispensing)."""
        ref = (resource["resourceType"], resource["id"])
        self.urls[ref] = stored_url(*ref)
        self.included.append(resource)


def _collect(
    found: _Collected, resources: list[dict], raw: dict[int, bytes], privacy: rules.Privacy
) -> None:
    """Each resource into its section, newest first."""
    locked = _locked_prescriptions(resources)
    for resource in sorted(resources, key=_sort_key, reverse=True):
        if privacy.started_at is not None and privacy.before_start(_when(resource)):
            continue
        if _is_kj_entry(resource, raw):
            _add_kj_entry(found, resource)
        elif not _locked_out(resource, locked):
            add = _RECORD_ENTRIES.get(resource["resourceType"])
            if add is not None:
                add(found, resource)


def _is_kj_entry(resource: dict, raw: dict[int, bytes]) -> bool:
    content = raw.get(id(resource))
    # The marker in the stored bytes first: most rows are not kjernejournal entries.
    return (content is None or MARKER in content) and is_kj(resource)


def _add_kj_entry(found: _Collected, resource: dict) -> None:
    if rules.entered_in_error(resource):
        return
    type_ = resource["resourceType"]
    tag = kj_tag(resource)
    if tag == rules.PATIENT_REGISTRATION:
        found.add("own", resource, [_type_label(type_), _own_text(resource), "Pasientregistrert"])
        return
    category = rules.CATEGORIES.get(tag or "")
    label = category.display if category else tag or ""
    add = _KJ_ENTRIES.get(type_)
    if add is not None:
        add(found, resource, label)


# ---- critical information: one function per type --------------------------------------------


def _kj_allergy(found: _Collected, resource: dict, label: str) -> None:
    found.add("allergies", resource, _allergy_row(resource, label))
    if resource.get("criticality") == "high":
        found.critical.append(f"{label}: {_text(resource)} (høy kritikalitet)")


def _kj_condition(found: _Collected, resource: dict, label: str) -> None:
    row = [label, _text(resource), _status(resource), _recorder(resource)]
    found.add("problems", resource, row)
    found.critical.append(f"{label}: {_text(resource)}")


def _kj_flag(found: _Collected, resource: dict, label: str) -> None:
    end = (resource.get("period") or {}).get("end")
    if end and end[:10] < found.today:
        return  # no longer valid
    validity = f"gyldig til {end}" if end else ""
    found.add("alerts", resource, [label, _text(resource), validity, _recorder(resource)])
    found.critical.append(f"{label}: {_text(resource)}" + (f" ({validity})" if end else ""))


def _kj_procedure(found: _Collected, resource: dict, label: str) -> None:
    found.add("procedures", resource, [label, _text(resource), resource.get("status", "")])
    found.critical.append(f"{label}: {_text(resource)}")


def _kj_device(found: _Collected, resource: dict, label: str) -> None:
    found.include(resource)
    statement = _device_use(resource, found.patient_id)
    found.add("devices", statement, [label, _device_text(resource)])
    found.critical.append(f"{label}: {_device_text(resource)}")


def _device_use(device: dict, patient_id: str) -> dict:
    """The DeviceUseStatement the IPS devices section holds for an implant."""
    statement = {
        "resourceType": "DeviceUseStatement",
        "id": f"kj-{device['id']}",
        "status": "active",
        "subject": {"reference": f"Patient/{patient_id}"},
        "device": {"reference": f"Device/{device['id']}"},
        "recordedOn": (device.get("meta") or {}).get("lastUpdated"),
    }
    if not statement["recordedOn"]:
        del statement["recordedOn"]
    return statement


_KJ_ENTRIES = {
    "AllergyIntolerance": _kj_allergy,
    "Condition": _kj_condition,
    "Flag": _kj_flag,
    "Procedure": _kj_procedure,
    "Device": _kj_device,
}


# ---- the rest of the record: one function per type -------------------------------------------


def _prescription(found: _Collected, resource: dict) -> None:
    status = resource.get("status")
    authored = (resource.get("authoredOn") or "")[:10]
    if status in ("active", "on-hold"):
        mark = "Gyldig resept"
    elif status in ("stopped", "cancelled", "completed") and authored >= found.window:
        mark = "Utlevert" if status == "completed" else "Seponert (trukket tilbake)"
    else:
        return
    found.add("medications", resource, [_medication(resource, found.shared), authored, mark])


def _dispensing(found: _Collected, resource: dict) -> None:
    handed = (resource.get("whenHandedOver") or "")[:10]
    if resource.get("status") not in ("completed", None) or handed < found.window:
        return
    found.include(resource)
    statement = _medication_statement(resource, found.patient_id)
    row = [_medication(resource, found.shared), handed, "Utlevert"]
    found.add("medications", statement, row)


def _medication_statement(dispense: dict, patient_id: str) -> dict:
    """The MedicationStatement the IPS medications section holds for a dispensing."""
    statement = {
        "resourceType": "MedicationStatement",
        "id": f"kj-{dispense['id']}",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": dispense["whenHandedOver"],
        "derivedFrom": [{"reference": f"MedicationDispense/{dispense['id']}"}],
    }
    for key in ("medicationCodeableConcept", "medicationReference"):
        if key in dispense:
            # Shared with the dispense's dict: nothing changes either in place (``_encode``
            # rewrites a copy when it must).
            statement[key] = dispense[key]
    return statement


def _immunization(found: _Collected, resource: dict) -> None:
    if resource.get("status") == "entered-in-error":
        return
    date = (resource.get("occurrenceDateTime") or "")[:10]
    found.add("immunizations", resource, [_concept_text(resource.get("vaccineCode")), date])


def _visit(found: _Collected, resource: dict) -> None:
    start = ((resource.get("period") or {}).get("start") or "")[:10]
    provider = _display(resource.get("serviceProvider"), found.shared)
    found.add("visits", resource, [start, provider, _encounter_kind(resource)])


def _next_of_kin(found: _Collected, resource: dict) -> None:
    found.add("about", resource, ["Pårørende", _person_name(resource), _relationship(resource)])


_RECORD_ENTRIES = {
    "MedicationRequest": _prescription,
    "MedicationDispense": _dispensing,
    "Immunization": _immunization,
    "Encounter": _visit,
    "RelatedPerson": _next_of_kin,
}


def _add_gps(found: _Collected, patient: dict) -> None:
    for gp in patient.get("generalPractitioner", []):
        ref = _parse_reference(gp.get("reference"))
        if ref and ref in found.shared:
            gp_resource = found.shared[ref]
            found.add("about", gp_resource, ["Fastlege", _shared_name(gp_resource), ""])


def _withhold(found: _Collected, withheld: frozenset[str]) -> None:
    """Withheld parts: their entries are left out of the document altogether."""
    for spec in SECTIONS:
        if spec.part and spec.part in withheld:
            found.sections[spec.key] = []
    if "kritisk-info" in withheld:
        found.critical = []
        found.included = [r for r in found.included if r["resourceType"] != "Device"]
    if "legemidler" in withheld:
        found.included = [r for r in found.included if r["resourceType"] != "MedicationDispense"]


@dataclass
class _References:
    """What a parsed resource refers to: known from the caller, else found in its bytes."""

    raw: dict[int, bytes]
    refs: dict[int, set[tuple[str, str]]]

    def of(self, resource: dict) -> set[tuple[str, str]]:
        found = self.refs.get(id(resource))
        if found is not None:
            return found
        return referenced(self.raw.get(id(resource)) or resource)


def _include_shared(
    found: _Collected, members: list[dict], entries: list[Entry], references: _References
) -> None:
    """The shared resources the members refer to (practitioners, organisations, medications),
    and one level further (a PractitionerRole's practitioner)."""
    wanted: set[tuple[str, str]] = set()
    for member in members:
        wanted |= references.of(member)
    for ref in list(wanted):
        if ref in found.shared:
            wanted |= references.of(found.shared[ref])
    in_entries = {(e.resource["resourceType"], e.resource["id"]) for e in entries}
    for ref in sorted(wanted):
        if ref in found.shared and ref not in in_entries:
            found.included.append(found.shared[ref])
            found.urls[ref] = stored_url(*ref)


# ---- the document around the entries ---------------------------------------------------------

_SERVER_URL = f"urn:uuid:{uuid.uuid5(NAMESPACE, 'enjournal-server')}"


def _composition(
    found: _Collected, patient: dict, server: dict, now: datetime, withheld: frozenset[str]
) -> dict:
    critical = found.critical
    sections = [
        _section(spec, found.sections[spec.key], spec.part in withheld, critical)
        for spec in SECTIONS
    ]
    author = {"reference": _SERVER_URL, "display": server.get("deviceName", [{}])[0].get("name")}
    return {
        "resourceType": "Composition",
        "id": str(uuid.uuid4()),
        "language": "nb",
        "text": _narrative(_header(patient, found.shared, critical, withheld)),
        "status": "final",
        "type": {
            "coding": [{"system": LOINC, "code": "60591-5", "display": "Patient summary Document"}]
        },
        "subject": {"reference": found.urls[("Patient", patient["id"])]},
        "date": format_instant(int(now.timestamp() * 1000)),
        "author": [author],
        "title": "Kjernejournal: pasientsammendrag (International Patient Summary)",
        "confidentiality": "R",
        "section": [s for s in sections if s is not None],
    }


def _bundle_entries(
    found: _Collected, composition: dict, patient: dict, entries: list[Entry], server: dict
) -> list[tuple[str, dict]]:
    """(fullUrl, resource): the Composition, the patient, each resource once, the server."""
    composition_url = f"urn:uuid:{composition['id']}"
    patient_url = found.urls[("Patient", patient["id"])]
    out = [(composition_url, composition), (patient_url, patient)]
    seen = {composition_url, patient_url}
    for resource in [*(e.resource for e in entries), *found.included]:
        url = found.urls[(resource["resourceType"], resource["id"])]
        if url not in seen:
            seen.add(url)
            out.append((url, resource))
    out.append((_SERVER_URL, server))
    return out


def _bundle_head(timestamp: str) -> dict:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": ["http://hl7.org/fhir/uv/ips/StructureDefinition/Bundle-uv-ips"]},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": timestamp,
    }


def encode(
    document: Document,
    raw: dict[int, bytes] | None = None,
    tokens: dict[int, list[bytes] | None] | None = None,
) -> tuple[bytes, bytes]:
    """The document as sent (object keys in their stored order, no ``signature`` yet) and
    its canonical form (``signing.canonical``: keys sorted), which is what gets signed.
    ``tokens``: the reference values found in each stored resource (``reference_tokens``),
    by ``id()`` of its dict, so they are not searched for again.

    Both are built from the same per-resource bytes with the same reference rewriting, so
    parsing the first and canonicalising it gives exactly the second."""
    raw = raw or {}
    tokens = tokens or {}
    links = Links(document.urls)
    sent: list[dict] = []
    ordered: list[dict] = []
    for url, resource in document.entries:
        key = id(resource)
        natural, canonical = _encode(resource, raw.get(key), links, tokens.get(key, _UNKNOWN))
        sent.append({"fullUrl": url, "resource": orjson.Fragment(natural)})
        ordered.append({"fullUrl": url, "resource": orjson.Fragment(canonical)})
    body = orjson.dumps({**document.head, "entry": sent})
    canonical = orjson.dumps({**document.head, "entry": ordered}, option=orjson.OPT_SORT_KEYS)
    return body, canonical


def with_signature(body: bytes, signature: dict) -> bytes:
    """``body`` (a JSON object) with ``signature`` added as its last member."""
    return body[:-1] + b',"signature":' + orjson.dumps(signature) + b"}"


def _encode(resource: dict, raw: bytes | None, links: Links, values=None) -> tuple[bytes, bytes]:
    if raw is None:
        raw, values = jsonio.dumps(resource), _UNKNOWN
    natural = raw
    swaps = links.swaps(natural, values)
    if swaps is None:  # a reference to drop: the dict walk does that, on a copy (parts of
        # the parsed resources are shared with the statements made from them)
        resource = copy.deepcopy(resource)
        _rewrite(resource, links.urls)
        natural = jsonio.dumps(resource)
        swaps = []
    # The sorted form holds the same "reference":"..." tokens, so the same swaps apply.
    canonical = orjson.dumps(resource, default=jsonio._default, option=orjson.OPT_SORT_KEYS)
    for old, new in swaps:
        natural = natural.replace(old, new)
        canonical = canonical.replace(old, new)
    return natural, canonical


# ---- sections and narrative -------------------------------------------------------------------

_HEADERS = {
    "alerts": ["Kategori", "Beskrivelse", "Gyldighet", "Registrert av"],
    "allergies": ["Kategori", "Substans", "Kritikalitet", "Status", "Registrert av", "Kilde"],
    "problems": ["Kategori", "Tilstand", "Status", "Registrert av"],
    "medications": ["Legemiddel", "Dato", "Status"],
    "immunizations": ["Vaksine", "Dato"],
    "procedures": ["Kategori", "Behandling", "Status"],
    "devices": ["Kategori", "Implantat"],
    "visits": ["Dato", "Sted", "Type"],
    "own": ["Type", "Opplysning", "Kilde"],
    "about": ["Rolle", "Navn", "Relasjon"],
}


def _section(
    spec: SectionSpec, entries: list[Entry], withheld: bool, critical: list[str]
) -> dict | None:
    if not entries and not spec.required and not withheld and spec.key not in ("alerts",):
        return None
    section: dict = {
        "title": spec.title,
        "code": {"coding": [{"system": spec.system, "code": spec.code, "display": spec.display}]},
    }
    if withheld:
        text = (
            "<p>Pasienten har sperret disse opplysningene. De vises bare med forhøyet "
            "samtykke (FORHOYET_SAMTYKKE) eller ved nødrett (AKUTT).</p>"
        )
        section["text"] = _narrative(text)
        section["emptyReason"] = _empty("withheld", "Sperret av pasienten")
        return section
    if spec.key == "alerts" and critical:
        lines = "".join(f"<li>{_e(line)}</li>" for line in critical)
        body = f"<p>Kritisk informasjon registrert i kjernejournal:</p><ul>{lines}</ul>"
        if entries:
            body += _table(_HEADERS[spec.key], [e.row for e in entries])
        section["text"] = _narrative(body)
    elif entries:
        section["text"] = _narrative(_table(_HEADERS[spec.key], [e.row for e in entries]))
    else:
        section["text"] = _narrative("<p>Ingen registrerte opplysninger i kjernejournal.</p>")
        section["emptyReason"] = _empty("unavailable", "Ingen registrerte opplysninger")
    if entries:
        section["entry"] = [{"reference": e.full_url} for e in entries]
    return section


def _empty(code: str, text: str) -> dict:
    display = {"withheld": "Information Withheld", "unavailable": "Unavailable"}[code]
    return {"coding": [{"system": EMPTY_REASON, "code": code, "display": display}], "text": text}


def _header(patient: dict, shared: dict, critical: list[str], withheld: frozenset[str]) -> str:
    name = _person_name(patient)
    parts = [
        f"<p><b>Kjernejournal for {_e(name)}</b>, "
        f"født {_e(patient.get('birthDate', 'ukjent'))}.</p>"
    ]
    gps = []
    for gp in patient.get("generalPractitioner", []):
        ref = _parse_reference(gp.get("reference"))
        gps.append(_shared_name(shared[ref]) if ref in shared else gp.get("display", ""))
    if gps:
        parts.append(f"<p>Fastlege: {_e(', '.join(g for g in gps if g))}</p>")
    parts.append(
        f"<p>{len(critical)} oppføring(er) med kritisk informasjon.</p>"
        if critical
        else "<p>Ingen kritisk informasjon vises.</p>"
    )
    if withheld:
        names = ", ".join(rules.PARTS[p] for p in sorted(withheld) if p in rules.PARTS)
        parts.append(f"<p>Sperret av pasienten og utelatt: {_e(names)}.</p>")
    return "".join(parts)


def _narrative(body: str) -> dict:
    div = f'<div xmlns="http://www.w3.org/1999/xhtml" lang="nb" xml:lang="nb">{body}</div>'
    return {"status": "generated", "div": div}


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = ""
    if rows:
        # One escape for the whole table: cells and rows joined by control characters that
        # FHIR strings cannot hold (http://hl7.org/fhir/R4/datatypes.html#string), then
        # turned into the tags.
        text = _ROW.join(_CELL.join(_clean(c) for c in row) for row in rows)
        cells = html.escape(text, quote=False)
        body = (
            "<tr><td>"
            + cells.replace(_CELL, "</td><td>").replace(_ROW, "</td></tr><tr><td>")
            + "</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CELL, _ROW = "\x1f", "\x1e"


def _clean(value: object) -> str:
    text = str(value or "")
    if _CELL in text or _ROW in text:
        text = text.replace(_CELL, " ").replace(_ROW, " ")
    return text


def _e(value: object) -> str:
    return html.escape(str(value or ""), quote=False)


# ---- what each entry shows --------------------------------------------------------------------


def _allergy_row(resource: dict, label: str) -> list[str]:
    presumed = any(
        e.get("url") == rules.KJ_PRESUMED and e.get("valueBoolean")
        for e in resource.get("extension", [])
    )
    verification = rules._code(resource.get("verificationStatus"))
    certainty = "antatt" if presumed or verification == "unconfirmed" else "bekreftet"
    clinical = rules._code(resource.get("clinicalStatus")) or "active"
    status = f"{'aktiv' if clinical == 'active' else 'inaktiv'}, {certainty}"
    criticality = {"high": "høy", "low": "lav"}.get(resource.get("criticality"), "")
    return [label, _text(resource), criticality, status, _recorder(resource), _source(resource)]


def _recorder(resource: dict) -> str:
    for contained in resource.get("contained", []):
        if (
            contained.get("resourceType") == "PractitionerRole"
            and contained.get("id") == "recorder"
        ):
            who = contained.get("practitioner") or {}
            hpr = (who.get("identifier") or {}).get("value")
            org = ((contained.get("organization") or {}).get("identifier") or {}).get("value")
            role = next(
                (c.get("code") for cc in contained.get("code", []) for c in cc.get("coding", [])),
                "",
            )
            return f"{who.get('display') or ''} ({role}, HPR {hpr}, org.nr {org})".strip()
    return ""


def _source(resource: dict) -> str:
    for ext in resource.get("extension", []):
        if ext.get("url") == rules.KJ_SOURCE_OF_INFORMATION:
            coding = ext.get("valueCoding") or {}
            concept = ext.get("valueCodeableConcept") or {}
            return (
                coding.get("display")
                or coding.get("code")
                or _concept_text(concept)
                or ext.get("valueString", "")
            )
    return ""


def _own_text(resource: dict) -> str:
    if resource["resourceType"] == "RelatedPerson":
        telecom = resource.get("telecom", [])
        phones = ", ".join(t.get("value", "") for t in telecom if t.get("value"))
        parts = [_person_name(resource), _relationship(resource), phones]
        return ", ".join(p for p in parts if p)
    return _text(resource)


def _status(resource: dict) -> str:
    code = rules._code(resource.get("clinicalStatus"))
    return {"active": "aktiv", "inactive": "inaktiv", "resolved": "avsluttet"}.get(
        code or "", code or ""
    )


def _text(resource: dict) -> str:
    return _concept_text(resource.get("code")) or resource["resourceType"]


def _concept_text(concept) -> str:
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return concept["text"]
    for coding in concept.get("coding", []):
        if coding.get("display"):
            return coding["display"]
    for coding in concept.get("coding", []):
        if coding.get("code"):
            return coding["code"]
    return ""


def _device_text(device: dict) -> str:
    for name in device.get("deviceName", []):
        if name.get("name"):
            return name["name"]
    return _concept_text(device.get("type")) or "Implantat"


def _medication(resource: dict, shared: dict) -> str:
    if "medicationCodeableConcept" in resource:
        return _concept_text(resource["medicationCodeableConcept"])
    ref = _parse_reference((resource.get("medicationReference") or {}).get("reference"))
    if ref in shared:
        return _concept_text(shared[ref].get("code"))
    return (resource.get("medicationReference") or {}).get("display", "")


def _encounter_kind(resource: dict) -> str:
    cls = resource.get("class") or {}
    return {"IMP": "Innleggelse", "AMB": "Poliklinisk", "EMER": "Akutt"}.get(
        cls.get("code"), cls.get("display") or cls.get("code") or ""
    )


def _relationship(resource: dict) -> str:
    return ", ".join(_concept_text(r) for r in resource.get("relationship", []))


def _person_name(resource: dict) -> str:
    for name in resource.get("name", []):
        if name.get("text"):
            return name["text"]
        return " ".join([*name.get("given", []), name.get("family", "")]).strip()
    return ""


def _shared_name(resource: dict) -> str:
    if resource.get("resourceType") == "Organization":
        return resource.get("name", "")
    return _person_name(resource)


def _display(reference, shared: dict) -> str:
    if not isinstance(reference, dict):
        return ""
    ref = _parse_reference(reference.get("reference"))
    if ref in shared:
        return _shared_name(shared[ref])
    return reference.get("display", "")


def _type_label(type_: str) -> str:
    return {
        "Condition": "Sykdom",
        "RelatedPerson": "Kontaktperson",
        "Flag": "Kommunikasjonsbehov",
    }.get(type_, type_)


# A privacy-locked prescription (e-resept's låst resept, domain.md 3.3) carries this
# extension; it is "excluded from LIB", so neither it nor its dispensings are in the
# medicines list, whoever reads the summary (the extension's URL is e-resept's, named here
# rather than importing the other service's internals).
PRIVACY_LOCK = "https://enjournal.no/fhir/StructureDefinition/privacy-lock"


def _locked_prescriptions(resources: list[dict]) -> set[str]:
    return {
        f"MedicationRequest/{r['id']}"
        for r in resources
        if r["resourceType"] == "MedicationRequest"
        and any(e.get("url") == PRIVACY_LOCK for e in r.get("extension", []))
    }


def _locked_out(resource: dict, locked: set[str]) -> bool:
    if not locked:
        return False
    type_ = resource["resourceType"]
    if type_ == "MedicationRequest":
        return f"MedicationRequest/{resource['id']}" in locked
    if type_ == "MedicationDispense":
        prescriptions = resource.get("authorizingPrescription", [])
        return any(a.get("reference") in locked for a in prescriptions)
    return False


def _conforming(patient: dict, entries: list[Entry]) -> dict:
    """Every section entry and the patient with the IPS must-haves they lack said to be
    unknown (``conformance``); what still lacks one (nothing a fill-in can say) stops the
    document: it is never signed invalid."""
    for entry in entries:
        entry.resource = conformance.conform(entry.resource)
    patient = conformance.conform(patient)
    members = (patient, *(e.resource for e in entries))
    missing = {gap for resource in members for gap in conformance.gaps(resource)}
    if missing:
        raise Unprocessable(
            "the record lacks what an IPS document requires: " + ", ".join(sorted(missing))
        )
    return patient


def _when(resource: dict) -> str | None:
    """When a resource became part of the record: its registration for kjernejournal entries,
    else the date of what it records.  The next of kin (Folkeregisteret, not history) have
    none to compare and are always kept (returns the far future)."""
    if is_kj(resource):
        return (resource.get("meta") or {}).get("lastUpdated")
    type_ = resource["resourceType"]
    if type_ == "RelatedPerson":
        return "9999-12-31T00:00:00Z"
    if type_ == "MedicationRequest":
        return resource.get("authoredOn")
    if type_ == "MedicationDispense":
        return resource.get("whenHandedOver")
    if type_ == "Immunization":
        return resource.get("occurrenceDateTime") or resource.get("recorded")
    if type_ == "Encounter":
        return (resource.get("period") or {}).get("start")
    return (resource.get("meta") or {}).get("lastUpdated")


def _sort_key(resource: dict) -> str:
    for key in ("recordedDate", "authoredOn", "whenHandedOver", "occurrenceDateTime"):
        if resource.get(key):
            return str(resource[key])
    period = resource.get("period")
    if isinstance(period, dict) and period.get("start"):
        return str(period["start"])
    return (resource.get("meta") or {}).get("lastUpdated", "")


# ---- references ---------------------------------------------------------------------------------


def _parse_reference(value) -> tuple[str, str] | None:
    if not isinstance(value, str) or value.startswith(("#", "urn:")):
        return None
    return _parse_reference_text(value)


@functools.lru_cache(maxsize=8192)  # the same few references recur in every resource
def _parse_reference_text(value: str) -> tuple[str, str] | None:
    parts = value.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        return None
    return parts[-2], parts[-1]


_REFERENCE = re.compile(rb'"reference":"([^"\\]+)"')
_UNKNOWN = object()  # reference tokens not searched for yet


def reference_tokens(content: bytes) -> list[bytes] | None:
    """The values of the ``"reference":"..."`` tokens in compact JSON, or None when some
    reference is written in a form the pattern does not cover (escapes)."""
    values = _REFERENCE.findall(content)
    return values if len(values) == content.count(_REFERENCE_KEY) else None


def referenced(resource: dict | bytes, values: list[bytes] | None = None) -> set[tuple[str, str]]:
    """Every (type, id) a resource refers to, found in its compact JSON (far cheaper than a
    walk); give the stored bytes when you have them, or the tokens found in them."""
    found: set[tuple[str, str]] = set()
    if values is None:
        content = resource if isinstance(resource, bytes) else jsonio.dumps(resource)
        values = _REFERENCE.findall(content)
    for raw in values:
        ref = _parse_reference(raw.decode())
        if ref:
            found.add(ref)
    return found


_REFERENCE_KEY = b'"reference":'
_TOKEN = b'"reference":"'


class Links:
    """Where each reference in the document points, rewritten on serialised JSON: a stored
    resource's reference becomes its fullUrl; ``#`` (contained) and the document's own
    ``urn:uuid`` references stay."""

    def __init__(self, urls: dict[tuple[str, str], str]):
        self.urls = urls
        self._known = {url.encode() for url in urls.values()}
        self._targets: dict[bytes, tuple] = {}
        # Most resources refer to the same few things (the patient, the GP): their swaps
        # are worked out once per document, by the tuple of tokens.
        self._by_tokens: dict[tuple[bytes, ...], list | None] = {}

    def _swap(self, value: bytes) -> tuple | None:
        """(old token, new token) to replace; () when it stays; None when it must go."""
        if value not in self._targets:
            if value.startswith(b"#") or value in self._known:
                self._targets[value] = ()
            else:
                ref = _parse_reference(value.decode())
                if ref in self.urls:
                    # The closing quote makes the token exact ("Patient/1" is not "Patient/12").
                    new = self.urls[ref].encode()
                    self._targets[value] = (_TOKEN + value + b'"', _TOKEN + new + b'"')
                else:
                    self._targets[value] = None
        return self._targets[value]

    def swaps(self, content: bytes, values=_UNKNOWN) -> list[tuple[bytes, bytes]] | None:
        """The replacements that point ``content``'s references (compact JSON) into the
        document, or None when one must be dropped or is written in a form the pattern does
        not cover (escapes): the dict walk (``_rewrite``) handles those.  ``values``: the
        ``reference_tokens`` of ``content`` when already known."""
        if values is _UNKNOWN:
            values = reference_tokens(content)
        if values is None:
            return None
        if not values:
            return []
        key = tuple(values)
        if key not in self._by_tokens:
            self._by_tokens[key] = self._swaps(values)
        return self._by_tokens[key]

    def _swaps(self, values: list[bytes]) -> list[tuple[bytes, bytes]] | None:
        out = []
        for value in set(values):
            swap = self._swap(value)
            if swap is None:
                return None
            if swap:
                out.append(swap)
        return out

    def relink(self, content: bytes) -> bytes | None:
        """``content`` with its references rewritten (None: see ``swaps``)."""
        swaps = self.swaps(content)
        if swaps is None:
            return None
        for old, new in swaps:
            content = content.replace(old, new)
        return content


def _rewrite(resource: dict, urls: dict[tuple[str, str], str]) -> None:
    """Point references at fullUrls in the document; reduce the rest to their display."""

    def walk(value) -> None:
        if isinstance(value, dict):
            raw = value.get("reference")
            if isinstance(raw, str) and not raw.startswith("#"):
                ref = _parse_reference(raw)
                if ref in urls:
                    value["reference"] = urls[ref]
                elif not (raw.startswith("urn:uuid:") and raw in urls.values()):
                    del value["reference"]
                    value.setdefault("display", "(ikke med i sammendraget)")
            for item in value.values():
                if isinstance(item, dict | list):
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(resource)
