"""What every entry of the IPS document must carry, and the fill-ins when it is unknown.

The elements with a minimum of one in the IPS 2.0.0 profiles the summary emits
(hl7.fhir.uv.ips, input/fsh/profiles: Procedure-uv-ips ``code``, ``performed[x]``;
DeviceUseStatement-uv-ips ``timing[x]``; MedicationStatement-IPS ``effective[x]``;
Immunization-uv-ips ``vaccineCode``, ``occurrence[x]``; AllergyIntolerance-uv-ips and
Condition-uv-ips ``code``; Patient-uv-ips ``name`` with ips-pat-1), the R4 base elements
with a minimum of one, and the R4 invariants ait-1 (AllergyIntolerance.clinicalStatus SHALL
be present unless verificationStatus is entered-in-error) and con-3 (the same for a
problem-list Condition).

Unknown values are said with the data-absent-reason extension, as the IPS page "Empty
Sections and Missing Data" shows: on the primitive's ``_element`` sibling for dates (``
"_performedDateTime": {"extension": [{"url": ".../data-absent-reason", "valueCode":
"unknown"}]}``), as the extension on a code with a required binding (clinicalStatus), and as
a code from the data-absent-reason code system where the binding is not required.
"""

from __future__ import annotations

DAR = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
DAR_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
UNKNOWN = {"extension": [{"url": DAR, "valueCode": "unknown"}]}
UNKNOWN_CODE = {
    "coding": [{"system": DAR_SYSTEM, "code": "unknown", "display": "Unknown"}],
    "text": "Ukjent",
}

#: Per type: the elements that must be present (``name[x]`` a choice of types).
MUST_HAVE: dict[str, tuple[str, ...]] = {
    "AllergyIntolerance": ("code", "patient"),
    "Condition": ("code", "subject"),
    "Procedure": ("status", "code", "subject", "performed[x]"),
    "DeviceUseStatement": ("status", "subject", "device", "timing[x]"),
    "MedicationStatement": ("status", "medication[x]", "subject", "effective[x]"),
    "MedicationRequest": ("status", "intent", "medication[x]", "subject"),
    "Immunization": ("status", "vaccineCode", "patient", "occurrence[x]"),
    "Flag": ("status", "code", "subject"),
    "Encounter": ("status", "class"),
    "RelatedPerson": ("patient",),
    "Patient": ("name",),
}
#: What an unknown element becomes (elements without one must come from the record).
FILL = {
    "performed[x]": ("_performedDateTime", UNKNOWN),
    "timing[x]": ("_timingDateTime", UNKNOWN),
    "effective[x]": ("_effectiveDateTime", UNKNOWN),
    "occurrence[x]": ("_occurrenceDateTime", UNKNOWN),
    "code": ("code", UNKNOWN_CODE),
    "vaccineCode": ("vaccineCode", UNKNOWN_CODE),
    "clinicalStatus": ("clinicalStatus", UNKNOWN),
}


def present(resource: dict, element: str) -> bool:
    """Is ``element`` there, a choice ``name[x]`` as any ``nameType`` or its ``_`` sibling?"""
    if not element.endswith("[x]"):
        return bool(resource.get(element)) or bool(resource.get(f"_{element}"))
    stem = element[:-3]
    for key, value in resource.items():
        name = key.removeprefix("_")
        if name.startswith(stem) and name[len(stem) : len(stem) + 1].isupper() and value:
            return True
    return False


def required(resource: dict) -> tuple[str, ...]:
    """The elements this resource must carry (the invariants included)."""
    type_ = resource.get("resourceType", "")
    needed = MUST_HAVE.get(type_, ())
    if type_ == "AllergyIntolerance" and not _entered_in_error(resource):
        needed += ("clinicalStatus",)  # ait-1
    if type_ == "Condition" and _problem_list(resource) and not _entered_in_error(resource):
        needed += ("clinicalStatus",)  # con-3
    return needed


def gaps(resource: dict) -> list[str]:
    """What ``resource`` lacks, as ``Type.element`` (empty: it has every must-have)."""
    missing = [e for e in required(resource) if not present(resource, e)]
    if resource.get("resourceType") == "Patient" and not missing and not _named(resource):
        missing.append("name (ips-pat-1: family, given or text)")
    return [f"{resource.get('resourceType')}.{e}" for e in missing]


def conform(resource: dict) -> dict:
    """``resource`` with every fillable must-have it lacks said to be unknown: the same
    dict when nothing is missing (the usual case: no copy), else a shallow copy."""
    missing = [e for e in required(resource) if e in FILL and not present(resource, e)]
    nameless = resource.get("resourceType") == "Patient" and not _named(resource)
    if not missing and not nameless:
        return resource
    out = dict(resource)
    for element in missing:
        key, value = FILL[element]
        out[key] = value
    if nameless:
        out["name"] = [{**UNKNOWN, "text": "Ukjent navn"}, *resource.get("name", [])]
    return out


def _named(patient: dict) -> bool:
    return any(n.get("family") or n.get("given") or n.get("text") for n in patient.get("name", []))


def _entered_in_error(resource: dict) -> bool:
    concept = resource.get("verificationStatus") or {}
    return any(c.get("code") == "entered-in-error" for c in concept.get("coding", []))


def _problem_list(resource: dict) -> bool:
    return any(
        c.get("code") == "problem-list-item"
        for concept in resource.get("category", [])
        for c in concept.get("coding", [])
    )
