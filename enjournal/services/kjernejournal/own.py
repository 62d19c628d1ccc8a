"""The patient's own registrations (Pasientens egne registreringer), as plain functions.

Domain brief (../shared/docs/domain.md 2.1, ehelse.no "Innhold og funksjoner i
kjernejournal"): the patient registers next of kin and other contacts, special
communication needs, and diseases: at most 30, chosen from a fixed list of ~24 categories.
They are shown to health personnel marked as patient-reported, and are never critical
information.

Stored as ordinary resources tagged ``meta.tag`` kjernejournal ``egen-registrering``:

- a contact as RelatedPerson (name, telecom, relationship, address);
- a communication need as Flag (category ``kommunikasjonsbehov``, ``code.text``);
- a disease as Condition whose code comes from ``CONDITION_SYSTEM`` (``code_system()``).

[unverified] helsenorge's own list of ~24 disease categories is not in the domain brief:
the list below is enjournal's own, with plausible Norwegian categories.
"""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir.errors import Invalid, Unprocessable
from enjournal.fhir.norwegian_ids import OID_FNR
from enjournal.services.kjernejournal.records import kj_tag
from enjournal.services.kjernejournal.rules import (
    KJ,
    MAX_PATIENT_CONDITIONS,
    PATIENT_REGISTRATION,
    REGISTERED_BY,
)

#: enjournal's code system of diseases a patient may register themselves. [unverified]
CONDITION_SYSTEM = "http://enjournal.no/fhir/CodeSystem/kj-egne-sykdommer"
CONDITIONS = {
    "hjertesykdom": "Hjertesykdom",
    "hoyt-blodtrykk": "Høyt blodtrykk",
    "hjerneslag": "Hjerneslag",
    "diabetes-type-1": "Diabetes type 1",
    "diabetes-type-2": "Diabetes type 2",
    "astma": "Astma",
    "kols": "KOLS (kronisk obstruktiv lungesykdom)",
    "epilepsi": "Epilepsi",
    "kreft": "Kreft",
    "nyresykdom": "Nyresykdom",
    "leversykdom": "Leversykdom",
    "blodsykdom": "Blodsykdom eller blødningsforstyrrelse",
    "stoffskiftesykdom": "Stoffskiftesykdom",
    "revmatisk-sykdom": "Revmatisk sykdom",
    "tarmsykdom": "Inflammatorisk tarmsykdom",
    "psykisk-lidelse": "Psykisk lidelse",
    "demens": "Demens",
    "parkinson": "Parkinsons sykdom",
    "multippel-sklerose": "Multippel sklerose (MS)",
    "migrene": "Migrene",
    "hiv": "Hivinfeksjon",
    "hepatitt": "Hepatitt",
    "osteoporose": "Benskjørhet (osteoporose)",
    "cystisk-fibrose": "Cystisk fibrose",
}
#: Flag.category of a communication need (e.g. interpreter, hearing or sight impairment).
COMMUNICATION = {"system": KJ, "code": "kommunikasjonsbehov", "display": "Kommunikasjonsbehov"}
TYPES = ("Condition", "RelatedPerson", "Flag")
#: The element naming the patient, per type.
PATIENT_ELEMENT = {"Condition": "subject", "RelatedPerson": "patient", "Flag": "subject"}
#: What the patient may set, per type (everything else is ours: tags, status, who).
ACCEPTED = {
    "Condition": ("code", "note", "onsetDateTime"),
    "RelatedPerson": ("name", "telecom", "relationship", "address"),
    "Flag": ("code",),
}


def code_system() -> dict:
    """The fixed list as a FHIR R4 CodeSystem (served by ``$kj-own-condition-codes``)."""
    return {
        "resourceType": "CodeSystem",
        "id": "kj-egne-sykdommer",
        "url": CONDITION_SYSTEM,
        "name": "KjEgneSykdommer",
        "title": "Kjernejournal: sykdommer pasienten kan registrere selv",
        "status": "draft",
        "experimental": True,
        "description": (
            "enjournal's own list of disease categories for the patient's own registrations "
            "in kjernejournal [unverified]: helsenorge's list of about 24 categories is not "
            "published in the sources used."
        ),
        "caseSensitive": True,
        "content": "complete",
        "count": len(CONDITIONS),
        "concept": [{"code": code, "display": display} for code, display in CONDITIONS.items()],
    }


def clean(resource: object, patient_id: str) -> dict:
    """The registration to store: only what the patient may say, for this patient.  Raises
    Invalid (400) or Unprocessable (422)."""
    if not isinstance(resource, dict) or resource.get("resourceType") not in TYPES:
        raise Invalid("give the registration as parameter 'resource': one of " + ", ".join(TYPES))
    type_ = resource["resourceType"]
    element = PATIENT_ELEMENT[type_]
    named = (resource.get(element) or {}).get("reference")
    if named and named != f"Patient/{patient_id}":
        raise Invalid(f"{type_}.{element} names another patient", expression=f"{type_}.{element}")
    out: dict = {"resourceType": type_}
    if resource.get("id"):
        out["id"] = resource["id"]
    for key in ACCEPTED[type_]:
        if key in resource:
            out[key] = resource[key]
    out[element] = {"reference": f"Patient/{patient_id}"}
    if type_ == "Condition":
        out["code"] = condition_code(resource.get("code"))
    elif type_ == "RelatedPerson":
        names = out.get("name") if isinstance(out.get("name"), list) else []
        if not any(isinstance(n, dict) and (n.get("text") or n.get("family")) for n in names):
            raise Unprocessable("a contact has a name", expression="RelatedPerson.name")
    else:
        code = resource.get("code")
        text = code.get("text") if isinstance(code, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise Unprocessable(
                "describe the communication need in Flag.code.text", expression="Flag.code.text"
            )
    return out


def condition_coding(concept: object) -> dict:
    """The one coding from the fixed list, with its display; refuses anything else."""
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    ours = [c for c in codings if isinstance(c, dict) and c.get("system") == CONDITION_SYSTEM]
    if len(ours) != 1 or ours[0].get("code") not in CONDITIONS:
        raise Unprocessable(
            f"a disease is chosen from the fixed list {CONDITION_SYSTEM} "
            "(see $kj-own-condition-codes)",
            expression="Condition.code",
        )
    code = ours[0]["code"]
    return {"system": CONDITION_SYSTEM, "code": code, "display": CONDITIONS[code]}


def condition_code(concept: object) -> dict:
    """Condition.code: the coding from the list, and the patient's own words in ``text``
    (a category can hold several diseases, e.g. two kinds of cancer: 30 from 24)."""
    out: dict = {"coding": [condition_coding(concept)]}
    text = concept.get("text") if isinstance(concept, dict) else None
    if isinstance(text, str) and text.strip():
        out["text"] = text.strip()
    return out


def check_conditions(others: int) -> None:
    """At most 30 diseases; ``others``: how many the patient has besides the one being
    added or changed."""
    if others >= MAX_PATIENT_CONDITIONS:
        raise Unprocessable(
            f"at most {MAX_PATIENT_CONDITIONS} diseases can be registered; remove one first",
            expression="Condition",
        )


def stamp(resource: dict, patient_id: str, registrant: dict | None, now: datetime) -> None:
    """Tag, status and who registered: the patient, or a parent for a child under 12 (a
    contained RelatedPerson ``registrant``)."""
    type_ = resource["resourceType"]
    patient = {"reference": f"Patient/{patient_id}"}
    resource["meta"] = {
        "tag": [{"system": KJ, "code": PATIENT_REGISTRATION, "display": "Pasientregistrert"}]
    }
    who = patient
    if registrant is not None:
        resource["contained"] = [registrant]
        who = {"reference": "#registrant"}
    resource["extension"] = [{"url": REGISTERED_BY, "valueReference": who}]
    when = now.isoformat(timespec="seconds")
    if type_ == "Condition":
        resource["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        }
        resource["category"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            }
        ]
        resource["recorder"] = who
        resource["asserter"] = patient
        resource["recordedDate"] = when
    elif type_ == "Flag":
        resource["status"] = "active"
        resource["category"] = [{"coding": [COMMUNICATION]}]
        resource["author"] = patient
        resource["period"] = {"start": when}
    else:
        resource["active"] = True


def parent(pid: str | None, name: str | None, patient_id: str) -> dict:
    """A parent registering for a child, as the contained RelatedPerson that recorded it."""
    person: dict = {
        "resourceType": "RelatedPerson",
        "id": "registrant",
        "patient": {"reference": f"Patient/{patient_id}"},
        "relationship": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                        "code": "PRN",
                        "display": "parent",
                    }
                ]
            }
        ],
    }
    if pid:
        person["identifier"] = [{"system": OID_FNR, "value": pid}]
    if name:
        person["name"] = [{"text": name}]
    return person


def is_own(resource: dict, patient_id: str) -> bool:
    """An own registration of this patient."""
    type_ = resource.get("resourceType")
    if type_ not in TYPES or kj_tag(resource) != PATIENT_REGISTRATION:
        return False
    return (resource.get(PATIENT_ELEMENT[type_]) or {}).get("reference") == f"Patient/{patient_id}"
