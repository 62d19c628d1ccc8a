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
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from enjournal.fhir import jsonio
from enjournal.fhir.datetime import format_instant
from enjournal.services.kjernejournal import rules
from enjournal.services.kjernejournal.records import is_kj, kj_tag

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
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{type_}/{id_}')}"


def build(
    patient: dict,
    resources: list[dict],
    shared: dict[tuple[str, str], dict],
    *,
    now: datetime,
    withheld: frozenset[str] = frozenset(),
    server: dict,
) -> dict:
    """The unsigned IPS document Bundle.  ``resources`` are the patient's (parsed),
    ``shared`` the practitioners, organisations and medications they refer to, ``withheld``
    the restricted parts the caller may not open, ``server`` the Device that authors it."""
    window = rules.medication_window(now).date().isoformat()
    today = now.date().isoformat()
    urls: dict[tuple[str, str], str] = {
        ("Patient", patient["id"]): stored_url("Patient", patient["id"])
    }
    sections: dict[str, list[Entry]] = {spec.key: [] for spec in SECTIONS}
    extra: list[dict] = []  # resources made for the document (DeviceUseStatement, ...)
    critical_lines: list[str] = []
    included: list[dict] = []

    def add(key: str, resource: dict, row: list[str]) -> Entry:
        ref = (resource["resourceType"], resource["id"])
        url = urls.setdefault(ref, stored_url(*ref))
        entry = Entry(resource, url, row)
        sections[key].append(entry)
        return entry

    for resource in sorted(resources, key=_sort_key, reverse=True):
        type_ = resource["resourceType"]
        if is_kj(resource):
            if rules.entered_in_error(resource):
                continue
            tag = kj_tag(resource)
            if tag == rules.PATIENT_REGISTRATION:
                add("own", resource, [_type_label(type_), _text(resource), "Pasientregistrert"])
                continue
            category = rules.CATEGORIES.get(tag or "")
            label = category.display if category else tag or ""
            if type_ == "AllergyIntolerance":
                add("allergies", resource, _allergy_row(resource, label))
                if resource.get("criticality") == "high":
                    critical_lines.append(f"{label}: {_text(resource)} (høy kritikalitet)")
            elif type_ == "Condition":
                add(
                    "problems",
                    resource,
                    [label, _text(resource), _status(resource), _recorder(resource)],
                )
                critical_lines.append(f"{label}: {_text(resource)}")
            elif type_ == "Flag":
                end = (resource.get("period") or {}).get("end")
                if end and end[:10] < today:
                    continue  # no longer valid
                add(
                    "alerts",
                    resource,
                    [
                        label,
                        _text(resource),
                        f"gyldig til {end}" if end else "",
                        _recorder(resource),
                    ],
                )
                critical_lines.append(
                    f"{label}: {_text(resource)}" + (f" (gyldig til {end})" if end else "")
                )
            elif type_ == "Procedure":
                add("procedures", resource, [label, _text(resource), resource.get("status", "")])
                critical_lines.append(f"{label}: {_text(resource)}")
            elif type_ == "Device":
                urls[("Device", resource["id"])] = stored_url("Device", resource["id"])
                included.append(resource)
                statement = {
                    "resourceType": "DeviceUseStatement",
                    "id": f"kj-{resource['id']}",
                    "status": "active",
                    "subject": {"reference": f"Patient/{patient['id']}"},
                    "device": {"reference": f"Device/{resource['id']}"},
                    "recordedOn": (resource.get("meta") or {}).get("lastUpdated"),
                }
                if not statement["recordedOn"]:
                    del statement["recordedOn"]
                add("devices", statement, [label, _device_text(resource)])
                critical_lines.append(f"{label}: {_device_text(resource)}")
            continue
        if type_ == "MedicationRequest":
            status = resource.get("status")
            authored = (resource.get("authoredOn") or "")[:10]
            if status in ("active", "on-hold"):
                add(
                    "medications",
                    resource,
                    [_medication(resource, shared), authored, "Gyldig resept"],
                )
            elif status in ("stopped", "cancelled", "completed") and authored >= window:
                mark = "Utlevert" if status == "completed" else "Seponert (trukket tilbake)"
                add("medications", resource, [_medication(resource, shared), authored, mark])
        elif type_ == "MedicationDispense":
            handed = (resource.get("whenHandedOver") or "")[:10]
            if resource.get("status") in ("completed", None) and handed >= window:
                urls[("MedicationDispense", resource["id"])] = stored_url(
                    "MedicationDispense", resource["id"]
                )
                included.append(resource)
                statement = {
                    "resourceType": "MedicationStatement",
                    "id": f"kj-{resource['id']}",
                    "status": "completed",
                    "subject": {"reference": f"Patient/{patient['id']}"},
                    "effectiveDateTime": resource["whenHandedOver"],
                    "derivedFrom": [{"reference": f"MedicationDispense/{resource['id']}"}],
                }
                for key in ("medicationCodeableConcept", "medicationReference"):
                    if key in resource:
                        statement[key] = resource[key]
                add("medications", statement, [_medication(resource, shared), handed, "Utlevert"])
        elif type_ == "Immunization":
            if resource.get("status") != "entered-in-error":
                date = (resource.get("occurrenceDateTime") or "")[:10]
                add("immunizations", resource, [_concept_text(resource.get("vaccineCode")), date])
        elif type_ == "Encounter":
            period = resource.get("period") or {}
            provider = _display(resource.get("serviceProvider"), shared)
            add(
                "visits",
                resource,
                [(period.get("start") or "")[:10], provider, _encounter_kind(resource)],
            )
        elif type_ == "RelatedPerson":
            add("about", resource, ["Pårørende", _person_name(resource), _relationship(resource)])

    for gp in patient.get("generalPractitioner", []):
        ref = _parse_reference(gp.get("reference"))
        if ref and ref in shared:
            add("about", shared[ref], ["Fastlege", _shared_name(shared[ref]), ""])

    # Withheld parts: their entries are left out of the document altogether.
    for spec in SECTIONS:
        if spec.part and spec.part in withheld:
            sections[spec.key] = []
    if "kritisk-info" in withheld:
        critical_lines = []
        included = [r for r in included if r["resourceType"] != "Device"]
    if "legemidler" in withheld:
        included = [r for r in included if r["resourceType"] != "MedicationDispense"]

    entries = [entry for spec in SECTIONS for entry in sections[spec.key]]
    members = [patient, *included, *(e.resource for e in entries)]
    # Shared resources the members refer to (practitioners, organisations, medications).
    wanted: set[tuple[str, str]] = set()
    for member in members:
        wanted |= referenced(member)
    for ref in list(wanted):  # one level further: a PractitionerRole's practitioner
        if ref in shared:
            wanted |= referenced(shared[ref])
    in_entries = {(e.resource["resourceType"], e.resource["id"]) for e in entries}
    for ref in sorted(wanted):
        if ref in shared and ref not in in_entries:
            included.append(shared[ref])
            urls[ref] = stored_url(*ref)
    device_url = f"urn:uuid:{uuid.uuid5(NAMESPACE, 'enjournal-server')}"
    composition_url = f"urn:uuid:{uuid.uuid4()}"
    urls[("Device", server["id"])] = device_url
    for resource in [patient, *included, *(e.resource for e in entries), *extra]:
        _rewrite(resource, urls)

    composition = {
        "resourceType": "Composition",
        "id": composition_url.removeprefix("urn:uuid:"),
        "language": "nb",
        "text": _narrative(_header(patient, shared, critical_lines, withheld)),
        "status": "final",
        "type": {
            "coding": [{"system": LOINC, "code": "60591-5", "display": "Patient summary Document"}]
        },
        "subject": {"reference": urls[("Patient", patient["id"])]},
        "date": format_instant(int(now.timestamp() * 1000)),
        "author": [
            {"reference": device_url, "display": server.get("deviceName", [{}])[0].get("name")}
        ],
        "title": "Kjernejournal: pasientsammendrag (International Patient Summary)",
        "confidentiality": "R",
        "section": [
            _section(spec, sections[spec.key], spec.part in withheld, critical_lines)
            for spec in SECTIONS
        ],
    }
    composition["section"] = [s for s in composition["section"] if s is not None]
    bundle_entries = [
        {"fullUrl": composition_url, "resource": composition},
        {"fullUrl": urls[("Patient", patient["id"])], "resource": patient},
    ]
    seen = {composition_url, bundle_entries[1]["fullUrl"]}
    for resource in [*(e.resource for e in entries), *included]:
        url = urls[(resource["resourceType"], resource["id"])]
        if url not in seen:
            seen.add(url)
            bundle_entries.append({"fullUrl": url, "resource": resource})
    bundle_entries.append({"fullUrl": device_url, "resource": server})
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": ["http://hl7.org/fhir/uv/ips/StructureDefinition/Bundle-uv-ips"]},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": composition["date"],
        "entry": bundle_entries,
    }


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
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
    parts = value.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        return None
    return parts[-2], parts[-1]


_REFERENCE = re.compile(rb'"reference":"([^"\\]+)"')


def referenced(resource: dict) -> set[tuple[str, str]]:
    """Every (type, id) a resource refers to (found in its JSON: far cheaper than a walk)."""
    found: set[tuple[str, str]] = set()
    for raw in _REFERENCE.findall(jsonio.dumps(resource)):
        ref = _parse_reference(raw.decode())
        if ref:
            found.add(ref)
    return found


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
            for key, item in value.items():
                if key != "contained" and isinstance(item, dict | list):
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(resource)
