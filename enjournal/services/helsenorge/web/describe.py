"""One line of text and a date for a FHIR resource, as the portal lists it."""

from __future__ import annotations

from enjournal.web import FhirError


def concept(value: dict | None) -> str:
    value = value or {}
    if value.get("text"):
        return str(value["text"])
    for coding in value.get("coding") or ():
        if coding.get("display") or coding.get("code"):
            return str(coding.get("display") or coding.get("code"))
    return ""


def name(resource: dict) -> str:
    """A person's name (HumanName list) or an organisation's (a string)."""
    if isinstance(resource.get("name"), str):
        return resource["name"]
    for n in resource.get("name") or ():
        if isinstance(n, str):
            return n
        if n.get("text"):
            return str(n["text"])
        return " ".join([*n.get("given", []), n.get("family", "")]).strip()
    return ""


def reference(value: dict | None) -> str:
    value = value or {}
    return str(value.get("display") or value.get("reference") or "")


def medication(resource: dict) -> str:
    found = concept(resource.get("medicationCodeableConcept"))
    return found or reference(resource.get("medicationReference"))


_TEXT = {
    "AllergyIntolerance": lambda r: concept(r.get("code")),
    "Condition": lambda r: concept(r.get("code")),
    "Flag": lambda r: concept(r.get("code")),
    "Immunization": lambda r: concept(r.get("vaccineCode")),
    "Procedure": lambda r: concept(r.get("code")),
    "Device": lambda r: concept(r.get("type")),
    "MedicationRequest": medication,
    "MedicationStatement": medication,
    "MedicationDispense": medication,
    "Encounter": lambda r: concept((r.get("type") or [{}])[0]) or concept(r.get("serviceType")),
    "RelatedPerson": lambda r: " - ".join(
        x for x in (name(r), concept((r.get("relationship") or [{}])[0])) if x
    ),
}
_DATES = (
    "recordedDate",
    "onsetDateTime",
    "occurrenceDateTime",
    "authoredOn",
    "whenHandedOver",
    "effectiveDateTime",
    "date",
)


def text(resource: dict) -> str:
    describe = _TEXT.get(resource.get("resourceType", ""))
    return (describe(resource) if describe else "") or resource.get("resourceType", "")


def when(resource: dict) -> str | None:
    for key in _DATES:
        if resource.get(key):
            return str(resource[key])
    period = resource.get("period") or {}
    return period.get("start")


def where(resource: dict) -> str:
    """Who or where it came from (an encounter's organisation, a recorder)."""
    for key in ("serviceProvider", "recorder", "performer", "requester", "asserter"):
        value = resource.get(key)
        if isinstance(value, list):
            value = (value[0] or {}).get("actor") if value else None
        if value:
            return reference(value)
    return ""


async def names(fhir, references: list[str]) -> dict[str, str]:
    """The names of the people and organisations ``references`` point to, read through the
    API (one read each, none twice); those the citizen may not read keep no name."""
    found: dict[str, str] = {}
    for reference in dict.fromkeys(r for r in references if r.count("/") == 1):
        try:
            found[reference] = name(await fhir.get(reference))
        except FhirError:
            continue
    return found


def named(value: dict | None, known: dict[str, str]) -> str:
    """A reference as a person's or organisation's name: its display, else the name read,
    else nothing (never a bare ``Type/id``)."""
    value = value or {}
    return str(value.get("display") or known.get(value.get("reference", "")) or "")
