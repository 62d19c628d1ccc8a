"""What a register export may carry of each patient: the citizen's controls, applied once per
export (docs/registers.md, "Export and the citizen's controls"; the choices marked ASSUMED
there).

The rules are pure functions over plain values: the store finds the inputs in one query
each per job (``enjournal.storage.exports.protected_patients``, ``consents_of_category``),
``export_policy`` turns them into an ``ExportPolicy``, and the export reader applies it to
every resource it streams without a further round trip:

- ``excluded``: patients whose data is left out altogether (the reader's SQL drops every
  resource that is, or refers to, one of them);
- ``redactions``: patient id -> the elements removed from their Patient (and from the
  RelatedPersons that belong to them, their address and telecom): a confidential address
  (strengt fortrolig / fortrolig, kode 6/7) loses address, telecom, contact and photo; a
  reservation against disclosure with the national id number loses the identity (national
  ids, name, address, telecom, contact, photo);
- ``kj_hidden``: patients whose kjernejournal entries (resources tagged with kjernejournal's
  system) are left out, as the API hides them from a system client: a reservation against
  having a kjernejournal, or a restriction (sperre) of any part;
- ``drops(content)``: a resource hidden in the API whatever the patient's choices (a
  privacy-locked prescription, låst resept).

Interface (the SQL-on-FHIR engines reuse it: build the policy once per run, then filter)::

    policy = export_policy(protected, consents)   # protected: [(patient id, code)]
                                                  # consents: [(patient id, stored JSON)]
    policy.excluded          # frozenset[str]: leave out every row of these patients
    policy.redactions        # dict[str, frozenset[str]]: Patient elements to remove
    policy.kj_hidden         # frozenset[str]: leave out their kjernejournal-tagged rows
    policy.drops(content)    # bytes -> bool: leave this row out (no patient needed)
    policy.touches(type_, id_, content)  # bytes -> bool: needs ``apply`` (a cheap test)
    policy.apply(resource)   # dict -> dict | None: the resource as exported, None to drop

A kjernejournal reservation, restriction or block does not exclude a patient's other data:
those controls govern health personnel's access to the kjernejournal under its own
regulation, while a register receives data under the Health Register Act and its own
regulation (ASSUMED, docs/registers.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

# The national register's address protection on Patient.meta.security (as
# security/representation.py assumes it).
ADDRESS_PROTECTION = "https://enjournal.no/fhir/CodeSystem/adressebeskyttelse"
CONFIDENTIAL = frozenset({"strengt-fortrolig", "fortrolig", "strengt-fortrolig-utland"})
# The citizen's reservations in a register (KPR, domain.md 7): an active Consent denying,
# with this category (as the KPR feed reads it, docs/registers.md "Reservations").
REGISTER_RESERVATION = "https://enjournal.no/fhir/CodeSystem/register-reservation"
WITHOUT_ID = "kpr-fnr"  # against disclosure with the national id number
NO_SECONDARY_USE = "kpr-formal-2"  # against disclosure for purpose 2 (ASSUMED code)
# Kjernejournal's tag and Consent category system (services/kjernejournal/rules.KJ), and the
# kinds of its provision codes ("sperre:<part>", "reservasjon:kjernejournal";
# services/kjernejournal/privacy.py).
KJ = "http://enjournal.no/fhir/CodeSystem/kjernejournal"
KJ_CONTROLS = frozenset({"sperre", "reservasjon"})
# E-resept's privacy lock on a prescription (services/eresept/rules.PRIVACY_EXT).
PRIVACY_LOCK = "https://enjournal.no/fhir/StructureDefinition/privacy-lock"
NATIONAL_IDS = frozenset({"urn:oid:2.16.578.1.12.4.1.4.1", "urn:oid:2.16.578.1.12.4.1.4.2"})

ADDRESS_ELEMENTS = frozenset({"address", "telecom", "contact", "photo"})
IDENTITY_ELEMENTS = ADDRESS_ELEMENTS | {"identifier", "name"}
CONSENT_SYSTEMS = (REGISTER_RESERVATION, KJ)
_KJ_MARKER = f'"system":"{KJ}"'.encode()
_LOCK_MARKER = PRIVACY_LOCK.encode()


@dataclass(frozen=True)
class ExportPolicy:
    excluded: frozenset[str] = frozenset()
    redactions: dict[str, frozenset[str]] = field(default_factory=dict)
    kj_hidden: frozenset[str] = frozenset()

    def drops(self, content: bytes) -> bool:
        """Whether a stored resource is left out whoever it belongs to (a locked
        prescription); a byte test first, parsed only when the marker is there."""
        if _LOCK_MARKER not in content:
            return False
        resource = orjson.loads(content)
        return resource.get("resourceType") == "MedicationRequest" and any(
            e.get("url") == PRIVACY_LOCK for e in resource.get("extension") or ()
        )

    def touches(self, type_: str, id_: str, content: bytes) -> bool:
        """Whether ``apply`` may change or drop this row (cheap: no parse)."""
        if type_ == "Patient":
            return id_ in self.redactions
        if type_ == "RelatedPerson":
            return bool(self.redactions)
        return bool(self.kj_hidden) and _KJ_MARKER in content

    def apply(self, resource: dict) -> dict | None:
        """The resource as exported (redacted), or None to leave it out."""
        patient = _patient_of(resource)
        if _is_kj(resource) and patient in self.kj_hidden:
            return None
        removed = self.redactions.get(patient or "")
        if not removed:
            return resource
        if resource.get("resourceType") == "RelatedPerson":
            removed = removed & {"address", "telecom"}
        return redact(resource, removed)


def export_policy(
    protected: Iterable[tuple[str, str]], consents: Iterable[tuple[str, bytes]]
) -> ExportPolicy:
    """The policy of one export from the patients with a protected address (patient id,
    code) and the Consents that hold their register and kjernejournal choices."""
    redactions: dict[str, frozenset[str]] = {}
    for patient, code in protected:
        if code in CONFIDENTIAL:
            redactions[patient] = redactions.get(patient, frozenset()) | ADDRESS_ELEMENTS
    excluded: set[str] = set()
    kj_hidden: set[str] = set()
    for patient, content in consents:
        consent = orjson.loads(content)
        reserved = _reservations(consent)
        if WITHOUT_ID in reserved:
            redactions[patient] = redactions.get(patient, frozenset()) | IDENTITY_ELEMENTS
        if NO_SECONDARY_USE in reserved:
            excluded.add(patient)
        if {code.split(":", 1)[0] for code in _denied_codes(consent)} & KJ_CONTROLS:
            kj_hidden.add(patient)
    return ExportPolicy(frozenset(excluded), redactions, frozenset(kj_hidden))


def redact(resource: dict, removed: frozenset[str]) -> dict:
    """``resource`` without the ``removed`` elements; national ids go from ``identifier``
    (other identifiers stay), and the result is tagged REDACTED as the security label
    says (http://terminology.hl7.org/CodeSystem/v3-ObservationValue)."""
    out = {k: v for k, v in resource.items() if k not in removed or k == "identifier"}
    if "identifier" in removed and "identifier" in out:
        kept = [i for i in out["identifier"] if i.get("system") not in NATIONAL_IDS]
        if kept:
            out["identifier"] = kept
        else:
            del out["identifier"]
    meta = dict(out.get("meta") or {})
    meta["security"] = [*meta.get("security", []), REDACTED]
    out["meta"] = meta
    return out


REDACTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "REDACTED",
    "display": "redacted",
}


def _reservations(consent: dict) -> set[str]:
    """The register reservations an active, denying Consent holds (its category codes)."""
    provision = consent.get("provision") or {}
    if consent.get("status") != "active" or provision.get("type") != "deny":
        return set()
    return {
        coding.get("code")
        for concept in consent.get("category") or ()
        for coding in concept.get("coding") or ()
        if coding.get("system") == REGISTER_RESERVATION
    } - {None}


def _denied_codes(consent: dict) -> set[str]:
    """The codes of an active Consent's deny provisions (nested under the top one, as
    kjernejournal writes them, or the top one itself)."""
    if consent.get("status") != "active":
        return set()
    top = consent.get("provision") or {}
    provisions = [top, *(top.get("provision") or ())]
    return {
        coding.get("code")
        for provision in provisions
        if provision.get("type") == "deny"
        for concept in provision.get("code") or ()
        for coding in concept.get("coding") or ()
    } - {None}


def _is_kj(resource: dict) -> bool:
    tags = (resource.get("meta") or {}).get("tag") or ()
    return any(tag.get("system") == KJ for tag in tags)


def _patient_of(resource: dict) -> str | None:
    """The patient a resource belongs to: itself, or its patient/subject reference."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    for key in ("patient", "subject", "beneficiary"):
        reference = (resource.get(key) or {}).get("reference") or ""
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference.split("/", 1)[1]
    return None
