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
  (strengt fortrolig / fortrolig, kode 6/7) loses address, telecom, contact, photo and the
  narrative; a reservation against disclosure with the national id number loses the
  identity (national ids, name, and all of the above);
- ``national_ids``: patient id -> the national ids (FNR, D-number) of the excluded and
  redacted patients (the store's ``identifier_values`` lookup), so that they are found
  wherever a resource names them, not only in their own Patient (attack A-3): a resource
  naming an excluded patient anywhere (a reference, a ``Reference.identifier``, a contained
  Patient, any string holding their number) is left out; every Reference to a patient
  reserved against disclosure with the number loses its ``display`` and national-id
  ``identifier`` (an identifier-only reference becomes ``Patient/<id>``, as the rest of
  their data links), any national-id Identifier of theirs goes, a contained Patient (or
  RelatedPerson, Person) that is one of these patients is redacted as their Patient is, and
  the narrative of a resource so changed goes with it; a resource that still holds the
  number after that (free text) is left out.  A confidential address hides no name nor
  number, so references to such a patient stay as they are;
- ``kj_hidden``: patients whose kjernejournal entries (resources tagged with kjernejournal's
  system) are left out, as the API hides them from a system client: a reservation against
  having a kjernejournal, or a restriction (sperre) of any part;
- ``drops(content)``: a resource hidden in the API whatever the patient's choices (a
  privacy-locked prescription, låst resept).

Interface (the SQL-on-FHIR engines reuse it: build the policy once per run, then filter)::

    policy = export_policy(protected, consents)   # protected: [(patient id, code)]
                                                  # consents: [(patient id, stored JSON)]
    ids = await tx.identifier_values("Patient", sorted(policy.protected), NATIONAL_IDS)
    policy = export_policy(protected, consents, ids)  # ids: {patient id: [national ids]}
    policy.excluded          # frozenset[str]: leave out every row of these patients
    policy.redactions        # dict[str, frozenset[str]]: Patient elements to remove
    policy.kj_hidden         # frozenset[str]: leave out their kjernejournal-tagged rows
    policy.national_ids      # dict[str, frozenset[str]]: of the excluded and redacted
    policy.protected         # frozenset[str]: the excluded and redacted patients
    policy.drops(content)    # bytes -> bool: leave this row out (no patient needed)
    policy.touches(type_, id_, content)  # bytes -> bool: needs ``apply`` (a cheap test)
    policy.apply(resource)   # dict -> dict | None: the resource as exported, None to drop
    hidden_search(type_, query.criteria, values)  # a _typeFilter parameter that searches
                                                  # what the policy removes, or None

A kjernejournal reservation, restriction or block does not exclude a patient's other data:
those controls govern health personnel's access to the kjernejournal under its own
regulation, while a register receives data under the Health Register Act and its own
regulation (ASSUMED, docs/registers.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from enjournal.fhir.search.query import Chain, Has, Term

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

# The narrative ("text") goes with the elements: it is made from them and may repeat them.
ADDRESS_ELEMENTS = frozenset({"address", "telecom", "contact", "photo", "text"})
IDENTITY_ELEMENTS = ADDRESS_ELEMENTS | {"identifier", "name"}
CONSENT_SYSTEMS = (REGISTER_RESERVATION, KJ)
# Resources that describe a person: one holding a patient's national id is that patient.
PERSONS = frozenset({"Patient", "RelatedPerson", "Person"})
# A person record that links to a patient is that patient's (a master-index Person, an old
# Patient record replaced by hers): type -> the element of ``link`` naming the Patient.  A
# RelatedPerson is someone else, the patient's by ``patient`` (``_patient_of``).
LINKING = {"Person": "target", "Patient": "other"}
_LINK_MARKER = b'"link"'
# What an export's ``_typeFilter`` may not search (attack F-1): a filter runs over the whole
# stored resources, so one by an element this policy removes selects by exactly what the
# file hides (a reserved patient found by her national id, a protected address read by
# prefix).  The search parameters over IDENTITY_ELEMENTS of the person types (identifier,
# name, address, telecom; none of the official ones reads contact or photo), on every
# person type alike (one holding a patient's national id is redacted as her Patient);
# the narrative (``_text``, ``_content``) on every type; a reference's ``:identifier``
# (the policy strips a national id from a Reference); and any value holding a national
# id (the policy removes it wherever it is).  Birth date, gender and the links are not
# removed, so they may be searched.  Practitioners are not protected by the policy.
HIDDEN_SEARCHES = frozenset(
    {"identifier", "name", "family", "given", "phonetic", "telecom", "phone", "email"}
    | {"address", "address-city", "address-country", "address-postalcode", "address-state"}
    | {"address-use"}
)
HIDDEN_ANYWHERE = frozenset({"_text", "_content"})
_KJ_MARKER = f'"system":"{KJ}"'.encode()
_LOCK_MARKER = PRIVACY_LOCK.encode()
# A national id in stored JSON is a run of exactly 11 digits (FNR and D-number): found by
# mapping every digit to "9" and the rest to " " (one C pass) and searching the map for
# eleven "9"s, several times faster than a regular expression over the digits.
_DIGITS = bytes(0x39 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_RUN = b"9" * 11
# A reference to a Patient (relative, absolute, versioned) as the end of a JSON string.
_PATIENT_REF = re.compile(rb'Patient/([A-Za-z0-9.\-]{1,64})(?:/_history/[^"/]*)?"')
_REFERENCE = re.compile(r"(?:^|/)Patient/([A-Za-z0-9.\-]{1,64})(?:/_history/[^/]*)?$")


@dataclass(frozen=True)
class ExportPolicy:
    excluded: frozenset[str] = frozenset()
    redactions: dict[str, frozenset[str]] = field(default_factory=dict)
    kj_hidden: frozenset[str] = frozenset()
    national_ids: dict[str, frozenset[str]] = field(default_factory=dict)
    _names: _Names = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", _Names.of(self))

    @property
    def protected(self) -> frozenset[str]:
        """The excluded and redacted patients: those whose national ids the policy needs."""
        return self.excluded | frozenset(self.redactions)

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
        """Whether ``apply`` may change or drop this row (cheap: byte tests, no parse)."""
        if type_ == "Patient" and id_ in self.redactions:
            return True
        if type_ == "RelatedPerson" and self.redactions:
            return True
        if type_ in LINKING and _LINK_MARKER in content and (self.redactions or self.excluded):
            return True  # perhaps a person record of a protected patient (attack P-1)
        if self.kj_hidden and _KJ_MARKER in content:
            return True
        return self._names.found_in(content)

    def apply(self, resource: dict) -> dict | None:
        """The resource as exported (redacted), or None to leave it out."""
        patient = _patient_of(resource)
        linked = _linked_patients(resource)
        if patient in self.excluded or not self.excluded.isdisjoint(linked):
            return None
        if _is_kj(resource) and patient in self.kj_hidden:
            return None
        names = self._names
        if names:
            content = orjson.dumps(resource)
            if names.found_in(content):  # named elsewhere than by their own Patient
                if names.excluded_in(content):
                    return None
                return names.redact(self._own(resource, patient, linked))
        return self._own(resource, patient, linked)

    def _own(self, resource: dict, patient: str | None, linked: Iterable[str] = ()) -> dict:
        """A Patient without its redacted elements, and so a Person or Patient record that
        links to them (the same person, attack P-1); a RelatedPerson of theirs without the
        address and telecom; other resources as they are."""
        removed = self.redactions.get(patient or "", frozenset())
        for other in linked:
            removed |= self.redactions.get(other, frozenset())
        type_ = resource.get("resourceType")
        if not removed or type_ not in PERSONS:
            return resource
        if type_ == "RelatedPerson":
            removed = removed & {"address", "telecom"}
        return redact(resource, removed)


@dataclass(frozen=True)
class _Names:
    """Where a policy finds its patients outside their own Patient: their national ids
    (``owners``: number -> patient), references to them (``referred``: ids as bytes)."""

    excluded: frozenset[str] = frozenset()
    redactions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    owners: Mapping[str, str] = field(default_factory=dict)
    excluded_numbers: frozenset[str] = frozenset()
    hidden_numbers: frozenset[str] = frozenset()  # of excluded and identity-redacted ones
    numbers: frozenset[bytes] = frozenset()  # every number, for the byte test
    referred: frozenset[bytes] = frozenset()  # excluded and identity-redacted ids

    @classmethod
    def of(cls, policy: ExportPolicy) -> _Names:
        owners: dict[str, str] = {}
        for patient in sorted(policy.national_ids):
            for number in policy.national_ids[patient]:
                owners.setdefault(number, patient)
        hiding = {p for p, removed in policy.redactions.items() if "identifier" in removed}
        hiding |= policy.excluded
        hidden = {n for p in hiding for n in policy.national_ids.get(p, ())}
        excluded = {n for p in policy.excluded for n in policy.national_ids.get(p, ())}
        return cls(
            excluded=policy.excluded,
            redactions=policy.redactions,
            owners=owners,
            excluded_numbers=frozenset(excluded),
            hidden_numbers=frozenset(hidden),
            numbers=frozenset(n.encode() for n in owners),
            referred=frozenset(p.encode() for p in hiding),
        )

    def __bool__(self) -> bool:
        return bool(self.numbers or self.referred)

    def found_in(self, content: bytes) -> bool:
        """Does the stored JSON hold a number or a reference to a patient of the policy?"""
        referred = self.referred
        if referred and not referred.isdisjoint(refs_in(content)):
            return True
        return bool(self.numbers) and not self.numbers.isdisjoint(numbers_in(content))

    def excluded_in(self, content: bytes) -> bool:
        """Does the JSON name an excluded patient: a reference, or their number anywhere?"""
        if any(found.decode() in self.excluded for found in refs_in(content)):
            return True
        return any(n.decode() in self.excluded_numbers for n in numbers_in(content))

    def redact(self, resource: dict) -> dict | None:
        """``resource`` with every mention of a redacted patient redacted as their control
        says; None when a hidden number is still in it (free text)."""
        changed: list[bool] = []
        local = self._contained(resource)
        out = self._walk(resource, local, changed)
        if changed:
            out = {k: v for k, v in out.items() if k != "text"}
            out["meta"] = _labelled(out.get("meta"))
        found = numbers_in(orjson.dumps(out)) if self.hidden_numbers else ()
        if any(n.decode() in self.hidden_numbers for n in found):
            return None
        return out

    def _contained(self, resource: dict) -> dict[str, str]:
        """``#<id>`` -> patient, of the contained persons that are one of the patients."""
        local = {}
        for inner in resource.get("contained") or ():
            owner = self._person(inner) if isinstance(inner, dict) else None
            if owner is not None and isinstance(inner.get("id"), str):
                local[f"#{inner['id']}"] = owner
        return local

    def _person(self, resource: dict) -> str | None:
        """The patient a person resource is, by a national id in its identifiers."""
        if resource.get("resourceType") not in PERSONS:
            return None
        for identifier in resource.get("identifier") or ():
            if isinstance(identifier, dict) and identifier.get("system") in NATIONAL_IDS:
                owner = self.owners.get(identifier.get("value"))  # type: ignore[arg-type]
                if owner is not None:
                    return owner
        return None

    def _walk(self, node, local: dict[str, str], changed: list[bool]):
        if isinstance(node, list):
            return [self._walk(v, local, changed) for v in node if not self._hidden(v, changed)]
        if not isinstance(node, dict):
            return node
        if "resourceType" in node:
            node = self._as_person(node, changed)
        elif _is_reference(node):
            return self._reference(node, local, changed)
        out = {}
        for key, value in node.items():
            if self._hidden(value, changed):  # a single Identifier (valueIdentifier)
                continue
            walked = self._walk(value, local, changed)
            if walked != []:  # an Identifier list emptied: the element goes (FHIR: no [])
                out[key] = walked
        return out

    def _as_person(self, resource: dict, changed: list[bool]) -> dict:
        """A person resource that is a redacted patient, redacted as their Patient."""
        owner = self._person(resource)
        removed = self.redactions.get(owner or "")
        if not removed:
            return resource
        changed.append(True)
        return redact(resource, removed)

    def _hidden(self, value, changed: list[bool]) -> bool:
        """Is ``value`` an Identifier holding a hidden national id (it goes)?"""
        hidden = (
            isinstance(value, dict)
            and value.get("system") in NATIONAL_IDS
            and value.get("value") in self.hidden_numbers
        )
        if hidden:
            changed.append(True)
        return hidden

    def _reference(self, ref: dict, local: dict[str, str], changed: list[bool]) -> dict:
        """A Reference to a patient reserved against disclosure with the number, without
        its ``display`` and national id (identifier-only: now ``Patient/<id>``)."""
        patient = self._target(ref, local)
        if "identifier" not in self.redactions.get(patient or "", ()):
            return ref
        identifier = ref.get("identifier")
        number = identifier.get("value") if isinstance(identifier, dict) else None
        out = {k: v for k, v in ref.items() if k != "display"}
        if number in self.hidden_numbers:
            del out["identifier"]
        if "reference" not in out:
            out["reference"] = f"Patient/{patient}"
        if out != ref:
            changed.append(True)
        return out

    def _target(self, ref: dict, local: dict[str, str]) -> str | None:
        """The patient a Reference names: by its reference, else by a national id."""
        reference = ref.get("reference")
        if isinstance(reference, str):
            if reference.startswith("#"):
                return local.get(reference)
            match = _REFERENCE.search(reference)
            return match.group(1) if match else None
        identifier = ref.get("identifier")
        if isinstance(identifier, dict):
            return self.owners.get(identifier.get("value"))  # type: ignore[arg-type]
        return None


def hidden_search(
    type_: str | None, terms: Iterable[Term], values: Iterable[str] = ()
) -> str | None:
    """The first search parameter of a filter on ``type_`` (its parsed ``terms``, through
    chains and ``_has``, and its raw ``values``) that searches what the policy may remove
    (HIDDEN_SEARCHES), or None when it searches nothing of it."""
    for term in terms:
        found = _hidden_term(type_, term)
        if found is not None:
            return found
    for value in values:
        if numbers_in(value.encode()):
            return "a value holding a national id number"
    return None


def _hidden_term(type_: str | None, term: Term) -> str | None:
    """The parameter (as written: ``subject:Patient.identifier``) if ``term`` searches a
    hidden element, directly or at the end of a chain or ``_has``."""
    if isinstance(term, Chain):
        found = _hidden_term(term.target_type, term.criterion)
        return None if found is None else f"{term.name}:{term.target_type}.{found}"
    if isinstance(term, Has):
        found = _hidden_term(term.source_type, term.criterion)
        return None if found is None else f"_has:{term.source_type}:{term.ref_param}:{found}"
    if term.index_param.endswith(":identifier"):
        return term.index_param
    if term.name in HIDDEN_ANYWHERE:
        return term.name
    return term.name if type_ in PERSONS and term.name in HIDDEN_SEARCHES else None


def export_policy(
    protected: Iterable[tuple[str, str]],
    consents: Iterable[tuple[str, bytes]],
    national_ids: Mapping[str, Iterable[str]] | None = None,
) -> ExportPolicy:
    """The policy of one export from the patients with a protected address (patient id,
    code), the Consents that hold their register and kjernejournal choices, and the
    national ids of the patients it protects (``ExportPolicy.protected``; without them a
    patient is found only by their Patient and indexed references to it)."""
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
    wanted = excluded | set(redactions)
    ids = {
        patient: frozenset(numbers)
        for patient, numbers in (national_ids or {}).items()
        if patient in wanted and numbers
    }
    return ExportPolicy(frozenset(excluded), redactions, frozenset(kj_hidden), ids)


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
    out["meta"] = _labelled(out.get("meta"))
    return out


REDACTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "REDACTED",
    "display": "redacted",
}


def _labelled(meta: dict | None) -> dict:
    """``meta`` with the REDACTED label in ``security`` (once)."""
    meta = dict(meta or {})
    security = list(meta.get("security") or [])
    if REDACTED not in security:
        security.append(REDACTED)
    meta["security"] = security
    return meta


refs_in = _PATIENT_REF.findall  # the ids of the Patients a stored JSON refers to


def numbers_in(content: bytes) -> list[bytes]:
    """The runs of exactly 11 digits in ``content`` (where a national id may be)."""
    mapped = content.translate(_DIGITS)
    found = []
    start = mapped.find(_RUN)
    while start >= 0:  # the leftmost match starts a run of digits
        end = mapped.find(b" ", start + 11)
        end = len(mapped) if end < 0 else end
        if end - start == 11:
            found.append(content[start:end])
        start = mapped.find(_RUN, end)
    return found


def _is_reference(node: dict) -> bool:
    """A Reference: only a Reference's elements, with a ``reference`` string or an
    ``identifier`` object (a logical reference)."""
    if not node.keys() <= REFERENCE_ELEMENTS:
        return False
    return isinstance(node.get("reference"), str) or isinstance(node.get("identifier"), dict)


REFERENCE_ELEMENTS = frozenset({"id", "extension", "reference", "type", "identifier", "display"})


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


def _linked_patients(resource: dict) -> list[str]:
    """The Patients a person record says it is the same person as: a Person's
    ``link.target``, a Patient's ``link.other`` (replaced-by, replaces, refer, seealso all
    link records of one person)."""
    element = LINKING.get(resource.get("resourceType") or "")
    if element is None:
        return []
    found = []
    for link in resource.get("link") or ():
        target = link.get(element) if isinstance(link, dict) else None
        reference = target.get("reference") if isinstance(target, dict) else None
        match = _REFERENCE.search(reference) if isinstance(reference, str) else None
        if match:
            found.append(match.group(1))
    return found


def _patient_of(resource: dict) -> str | None:
    """The patient a resource belongs to: itself, or its patient/subject reference."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    for key in ("patient", "subject", "beneficiary"):
        reference = (resource.get(key) or {}).get("reference") or ""
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference.split("/", 1)[1]
    return None
