"""What the access policy needs to know about a caller and a patient, found in the data.

Who the caller is in the data (their Practitioner, PractitionerRole and Organization
resources), their care relationship with a patient (GP list, the GP's office, an encounter,
episode of care or referral), the patient's Consents, and for a citizen their own record and
their children's.  Found with the store's small indexed lookups, kept for the request, and
the slow-changing ones for a short time in the worker's ``FactsCache``.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from enjournal.fhir import jsonio
from enjournal.fhir.norwegian_ids import OID_DNR as DNR
from enjournal.fhir.norwegian_ids import OID_FNR as FNR
from enjournal.fhir.norwegian_ids import OID_HPR as HPR
from enjournal.fhir.norwegian_ids import OID_ORGNR as ORGNR
from enjournal.security import representation as rules
from enjournal.security.policy import PHARMACY_PROFESSIONS, PatientFacts
from enjournal.security.principal import Principal
from enjournal.storage import Transaction

# (resource type, its patient param, its param naming the caregiver, caregiver types)
CARE_LINKS = (
    ("Encounter", "patient", "service-provider", ("Organization",), "encounter"),
    ("Encounter", "patient", "participant", ("Practitioner", "PractitionerRole"), "encounter"),
    ("EpisodeOfCare", "patient", "organization", ("Organization",), "episode of care"),
    ("EpisodeOfCare", "patient", "care-manager", ("Practitioner",), "episode of care"),
    (
        "ServiceRequest",
        "patient",
        "performer",
        ("Organization", "Practitioner", "PractitionerRole"),
        "referral",
    ),
)
PARENT_ROLES = rules.PARENT_ROLES  # grants.py asks here


class FactsCache:
    """Facts that change rarely, shared by the requests of one worker for a short time:
    who the caller is in the data (their Practitioner/Organization resources), their care
    relationship with a patient (seen within ``ttl`` seconds), and a patient's Consents
    (re-read every ``CONSENT_TTL`` seconds, and at once by the worker that stored one)."""

    def __init__(self, ttl: float = 30.0, max_entries: int = 50_000):
        self.ttl, self.max_entries = ttl, max_entries
        self._data: dict[tuple, tuple[float, object]] = {}

    def get(self, key: tuple, ttl: float | None = None):
        """The cached value, if stored less than ``ttl`` (default: the cache's) seconds ago."""
        hit = self._data.get(key)
        limit = self.ttl if ttl is None else min(ttl, self.ttl)
        if hit is None or hit[0] + limit < time.monotonic():
            return _MISSING
        return hit[1]

    def put(self, key: tuple, value) -> None:
        if len(self._data) >= self.max_entries:
            self._data.clear()  # crude but bounded; entries are cheap to recompute
        self._data[key] = (time.monotonic(), value)

    def forget(self, key: tuple) -> None:
        self._data.pop(key, None)


_MISSING = object()
# A patient's Consents are re-read at least this often (seconds) by every worker; the worker
# that stores a Consent forgets its copy at once.
CONSENT_TTL = 2.0


class FactFinder:
    """One request's facts about its caller and the patients it touches."""

    def __init__(
        self,
        principal: Principal,
        cache: FactsCache,
        consent_systems: Collection[str] = frozenset(),
        today=None,
    ):
        self.principal = principal
        self.cache = cache
        self.consent_systems = consent_systems
        self._facts: dict[str, PatientFacts] = {}
        self._caller_refs: set[tuple[str, str]] | None = None
        self._own: set[str] | None = None
        self._represented: dict[str, Representation] | None = None
        self._today = today

    def forget_consents(self, patient: str) -> None:
        """A Consent of ``patient`` is being written: a lifted block must hold at once."""
        self.cache.forget(("consents", patient))
        self._facts.pop(patient, None)

    async def facts_for(self, tx: Transaction, patient: str) -> PatientFacts:
        if patient in self._facts:
            return self._facts[patient]
        facts = PatientFacts(patient)
        if self.principal.kind == "citizen":
            facts.own_record = patient in await self._own_ids(tx)
            acting = (await self.represented(tx)).get(patient)
            if acting is not None and not facts.own_record:
                facts.areas = acting.areas
                # kjernejournal's parents: a child under 12, both areas
                facts.child_in_care = acting.relation == "parent" and acting.areas == rules.BOTH
        elif self.principal.profession in PHARMACY_PROFESSIONS:
            # e-resept: any pharmacy may dispense to anyone who presents; the role rule limits
            # what it sees to prescriptions and dispensations.
            facts.care_relationship = "pharmacy dispensing"
            await self._consents(tx, facts)
        elif self.principal.kind == "personnel":
            facts.care_relationship = await self._care_relationship(tx, patient)
            await self._consents(tx, facts)
        self._facts[patient] = facts
        return facts

    async def caller(self, tx) -> set[tuple[str, str]]:
        """The caller's own Practitioner, PractitionerRole and Organization resources."""
        key = ("caller", self.principal.hpr, self.principal.org_nr)
        if self._caller_refs is None:
            cached = self.cache.get(key)
            if cached is not _MISSING:
                self._caller_refs = cached
        if self._caller_refs is None:
            refs: set[tuple[str, str]] = set()
            for pid in await tx.ids_by_identifier("Practitioner", (HPR,), self.principal.hpr):
                refs.add(("Practitioner", pid))
            for oid in await tx.ids_by_identifier("Organization", (ORGNR,), self.principal.org_nr):
                refs.add(("Organization", oid))
            practitioners = [i for t, i in refs if t == "Practitioner"]
            roles = await tx.referencing(
                "PractitionerRole", "practitioner", "Practitioner", practitioners
            )
            refs.update(("PractitionerRole", id_) for id_ in roles)
            self._caller_refs = refs
            self.cache.put(key, refs)
        return self._caller_refs

    async def _care_relationship(self, tx, patient: str) -> str | None:
        key = ("care", self.principal.hpr, self.principal.org_nr, patient)
        cached = self.cache.get(key)
        if cached is not _MISSING:
            return cached
        found = await self._find_care_relationship(tx, patient)
        self.cache.put(key, found)
        return found

    async def _find_care_relationship(self, tx, patient: str) -> str | None:
        caller = await self.caller(tx)
        if not caller:
            return None
        listed = await tx.references_of("Patient", patient, "general-practitioner")
        if listed is None:
            return None
        gps = set(listed)
        if gps & caller:
            return "gp-list"
        offices = [i for t, i in caller if t == "Organization"]
        gp_practitioners = [i for t, i in gps if t == "Practitioner"]
        # The patient's GP works at the caller's office (the office's nurses and locums);
        # asked only when both are known (the lookup answers False without a query).
        if await tx.same_resource_links(
            "PractitionerRole", "practitioner", gp_practitioners, "organization", offices
        ):
            return "gp-list (same office)"
        for type_, patient_param, link_param, link_types, label in CARE_LINKS:
            targets = [i for t, i in caller if t in link_types]
            if not targets:
                continue
            if await tx.linked(type_, patient_param, patient, link_param, targets):
                return label
        return None

    async def _consents(self, tx, facts: PatientFacts) -> None:
        key = ("consents", facts.patient_id)
        rows = self.cache.get(key, ttl=CONSENT_TTL)
        if rows is _MISSING:
            rows = await tx.contents_referencing("Consent", "patient", "Patient", facts.patient_id)
            self.cache.put(key, rows)
        caller = {f"{t}/{i}" for t, i in await self.caller(tx)}
        blocked_refs: set[str] = set()
        for content in rows:
            consent = jsonio.loads(content)
            if self.consent_systems and any(
                c.get("system") in self.consent_systems
                for cat in consent.get("category", [])
                for c in cat.get("coding", [])
            ):
                continue
            provision = consent.get("provision") or {}
            if consent.get("status") != "active" or provision.get("type") != "deny":
                continue
            actors = {
                (a.get("reference") or {}).get("reference") for a in provision.get("actor", [])
            }
            data = [(d.get("reference") or {}).get("reference") for d in provision.get("data", [])]
            if actors and not (actors & caller):
                continue
            if data:
                blocked_refs.update(d for d in data if d)
            elif actors:
                facts.blocked_by_consent = True
            else:
                facts.restricted_by_consent = True
        facts.blocked_refs = frozenset(blocked_refs)

    async def own_and_children(self, tx) -> set[str]:
        """Citizen: their own Patient ids, plus everyone they may act for now (a child, a
        giver of a fullmakt), whatever the areas: the policy narrows each to its areas."""
        return (await self._own_ids(tx)) | set(await self.represented(tx))

    async def _own_ids(self, tx) -> set[str]:
        if self._own is None:
            pid = self.principal.pid
            self._own = (
                set(await tx.ids_by_identifier("Patient", (FNR, DNR), pid)) if pid else set()
            )
        return self._own

    async def represented(self, tx) -> dict[str, Representation]:
        """Citizen: the people they may act for today, and how (representation.py's rules).
        Found anew for every request (a revoked fullmakt holds at once on every worker),
        with one indexed lookup of the RelatedPersons naming the caller."""
        if self._represented is not None:
            return self._represented
        found: dict[str, Representation] = {}
        pid = self.principal.pid
        rows = await tx.contents_by_identifier("RelatedPerson", pid) if pid else []
        me = await self._me(tx)
        for content in rows:
            related = jsonio.loads(content)
            if not rules.names(related, pid) or related.get("active") is False:
                continue
            if rules.is_fullmakt(related):
                found_one = await self._fullmakt(tx, related, me)
            elif rules.is_parent(related):
                found_one = await self._parenthood(tx, related, me)
            else:
                continue
            if found_one is not None and found_one.areas:
                _merge(found, found_one)
        own = await self._own_ids(tx)
        self._represented = {k: v for k, v in found.items() if k not in own}
        return self._represented

    async def _me(self, tx) -> dict:
        """The caller's own Patient (the first, if the register holds several), or {}."""
        for id_ in sorted(await self._own_ids(tx)):
            content = await tx.content_of("Patient", id_)
            if content is not None:
                return jsonio.loads(content)
        return {}

    async def _parenthood(self, tx, related: dict, me: dict) -> Representation | None:
        child_id = rules.patient_of(related)
        child = await self._patient(tx, child_id)
        if child_id is None or child is None:
            return None
        child_age = rules.patient_age(child, self.today)
        parent_confidential = rules.is_confidential(me)
        child_confidential = rules.is_confidential(child)
        same = False
        if rules.parent_areas(child_age, True, parent_confidential, child_confidential):
            same = await self._a_parent_lives_with(tx, child_id, child, me)
        areas = rules.parent_areas(child_age, same, parent_confidential, child_confidential)
        return Representation(child_id, "parent", areas, child_age)

    async def _a_parent_lives_with(self, tx, child_id: str, child: dict, me: dict) -> bool:
        """Whether the caller or another parent is registered at the child's address."""
        home = _address_keys(child)
        if not home:
            return False
        if _address_keys(me) & home:
            return True
        links = await tx.contents_referencing("RelatedPerson", "patient", "Patient", child_id)
        for content in links:
            link = jsonio.loads(content)
            number = rules.person_number(link)
            if link.get("active") is False or not rules.is_parent(link) or not number:
                continue
            for parent_id in await tx.ids_by_identifier("Patient", (FNR, DNR), number):
                parent = await self._patient(tx, parent_id)
                if parent is not None and _address_keys(parent) & home:
                    return True
        return False

    async def _fullmakt(self, tx, related: dict, me: dict) -> Representation | None:
        giver_id = rules.patient_of(related)
        giver = await self._patient(tx, giver_id)
        if giver_id is None or giver is None:
            return None
        start, end = rules.period(related)
        receiver_age = rules.patient_age(me, self.today)
        if receiver_age is None:
            receiver_age = rules.age_from_number(self.principal.pid, self.today)
        areas = rules.fullmakt_areas(
            rules.patient_age(giver, self.today),
            receiver_age,
            start,
            end,
            related.get("active") is not False,
            rules.areas_of(related),
            rules.is_confidential(giver),
            rules.is_confidential(me),
            self.today,
        )
        return Representation(giver_id, "fullmakt", areas, rules.patient_age(giver, self.today))

    async def _patient(self, tx, id_: str | None) -> dict | None:
        content = await tx.content_of("Patient", id_) if id_ else None
        return jsonio.loads(content) if content is not None else None

    @property
    def today(self) -> date:
        return self._today or date.today()


@dataclass(frozen=True)
class Representation:
    """Whom a citizen acts for: ``relation`` "parent" or "fullmakt", the areas held today,
    the person's age."""

    patient_id: str
    relation: str
    areas: frozenset[str]
    age: int | None


def _merge(found: dict[str, Representation], new: Representation) -> None:
    """A person the caller acts for in two ways (a 13-year-old who also gave a fullmakt):
    the union of the areas, named by the relation that gives the most."""
    old = found.get(new.patient_id)
    if old is None:
        found[new.patient_id] = new
        return
    best = new if len(new.areas) > len(old.areas) else old
    found[new.patient_id] = Representation(
        new.patient_id, best.relation, old.areas | new.areas, best.age
    )


def _address_keys(patient: dict) -> set[str]:
    keys = set()
    for address in patient.get("address", []):
        if address.get("use") == "old" or address.get("period", {}).get("end"):
            continue
        line = " ".join(address.get("line", [])).strip().casefold()
        if line and address.get("postalCode"):
            keys.add(f"{line}|{address['postalCode']}")
    return keys
