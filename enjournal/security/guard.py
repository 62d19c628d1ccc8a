"""The guard: applies the access policy to one request and collects its audit events.

The guarded repository (``security/repository.py``) calls it wherever health data is
touched: a resource read (``check_stored``), a resource about to be written
(``check_write``), a search before it runs (``scope_search``) and its results after
(``filter``).  The guard gathers the facts the policy needs (whose record a resource is in,
the caller's care relationship, the patient's Consents) with small indexed lookups, cached
for the request, and records an AuditEvent for every decision in the request's
``AccessContext``.  The router appends the events in the same transaction as a write, or
through the group-committing audit writer for reads.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import orjson

from enjournal.fhir import jsonio
from enjournal.fhir.definitions import patient_compartment
from enjournal.fhir.errors import Forbidden, NotFound
from enjournal.security import grants
from enjournal.security.context import AccessContext
from enjournal.security.facts import FactFinder, FactsCache
from enjournal.security.policy import (
    DIRECTORY,
    EMERGENCY,
    PHARMACY_PROFESSIONS,
    Decision,
    PatientFacts,
    decide,
)
from enjournal.storage import StoredResource, Transaction

ACTIONS = {"c": "C", "r": "R", "s": "R", "u": "U", "d": "D"}

# A Guard receives from its platform (``enjournal.bootstrap``, through the app):
# ``hooks``: what the national services add for the resources they own (kjernejournal: its
# tagged entries), applied after the general policy by every interaction.  Each is
# ``(marker, check)``: ``marker`` is a byte string whose absence from stored JSON proves the
# hook does not apply (so nothing is parsed for other resources), and
# ``async check(guard, tx, action, resource: dict, patients) -> str | None`` returns the
# reason to refuse, or None.
# ``consent_systems``: Consent categories (coding systems) a service interprets itself; the
# general Consent rules here skip them (kjernejournal's privacy settings are not whole-record
# restrictions).


class Guard:
    """One request's access checks and audit trail."""

    def __init__(
        self,
        context: AccessContext,
        *,
        today=None,
        cache: FactsCache | None = None,
        hooks: Sequence[tuple[bytes, object]] = (),
        consent_systems: Collection[str] = frozenset(),
    ):
        self.context = context
        self.principal = context.principal
        self.resource_hooks = hooks
        self.consent_systems = consent_systems
        self.finder = FactFinder(
            context.principal, cache or FactsCache(ttl=0), consent_systems, today
        )
        # What a service's hook finds once per request (kjernejournal: privacy settings).
        self.request_cache: dict[str, dict] = {}

    @property
    def emergency_reason(self) -> str | None:
        return self.context.reason

    @property
    def refusals(self) -> int:
        return self.context.refusals

    # ---- entry points used by the interactions -------------------------------------------

    async def check_stored(
        self, tx: Transaction, stored: StoredResource, action: str, interaction: str
    ) -> Decision:
        """May the caller do ``action`` on this stored resource?  A refused read looks like
        a missing resource, so it reveals nothing."""
        patients = self._patients_of_stored(stored)
        decision = await self._decide(
            tx, action, stored.type, patients, f"{stored.type}/{stored.id}"
        )
        if action == "d":
            decision = grants.checked_delete(self, stored, decision)
            decision = await grants.checked_calendar(self, tx, stored, decision)
            if stored.type == "Consent":  # a lifted block must hold at once on this worker
                for patient in patients or ():
                    self.finder.forget_consents(patient)
        if decision.allowed:
            decision = await self._hooks(tx, action, stored.content, None, patients, decision)
        self._record(action, interaction, decision, patients, [f"{stored.type}/{stored.id}"])
        if not decision.allowed:
            if action in ("r", "s"):
                raise NotFound(f"{stored.type}/{stored.id} is not known")
            raise Forbidden(decision.reason)
        return decision

    async def visible(self, tx: Transaction, stored: StoredResource, interaction: str) -> bool:
        """Whether the caller may read ``stored``.  Writes ask this first, so that what the
        caller may not read answers exactly as if it did not exist; only a refusal is
        audited here (the write's own check records the allowed access)."""
        patients = self._patients_of_stored(stored)
        decision = await self._readable(tx, stored, patients)
        if not decision.allowed:
            self._record("r", interaction, decision, patients, [f"{stored.type}/{stored.id}"])
        return decision.allowed

    async def check_content(self, tx: Transaction, resource: dict, interaction: str) -> Decision:
        """May the caller read this resource content (e.g. an old version in history)?"""
        try:
            return await self.check_write(tx, resource, "r", interaction)
        except Forbidden:
            raise NotFound(
                f"{resource['resourceType']}/{resource.get('id')} is not known"
            ) from None

    def check_bulk(self, interaction: str) -> None:
        """History across many patients is for system clients (and their scopes) only."""
        if self.principal.kind != "system":
            raise Forbidden(f"{interaction} across patients is open to system clients only")

    async def check_write(
        self, tx: Transaction, resource: dict, action: str, interaction: str
    ) -> Decision:
        """May the caller write ``resource`` (its new content)?"""
        type_ = resource["resourceType"]
        patients = self._patients_in_content(resource)
        if type_ == "Consent":
            for patient in patients or ():
                self.finder.forget_consents(patient)
        # A resource not yet created has no id: its audit event names no entity rather
        # than an empty reference ("Communication/").
        ref = f"{type_}/{resource['id']}" if resource.get("id") else None
        if type_ == "Patient" and action == "c" and self.principal.kind != "citizen":
            patients = None  # registering a new patient: no relation exists yet
        decision = await self._decide(tx, action, type_, patients, ref)
        decision = await grants.checked_write(self, tx, action, resource, decision)
        if decision.allowed and self.resource_hooks:
            decision = await self._hooks(tx, action, None, resource, patients, decision)
        self._record(action, interaction, decision, patients or [], [ref] if ref else [])
        if not decision.allowed:
            raise Forbidden(decision.reason)
        return decision

    async def scope_search(self, tx: Transaction, query, interaction: str = "search-type") -> None:
        """Narrow or refuse a search before it runs, so nothing outside the caller's reach
        is ever fetched.  Results are still filtered afterwards (``filter``)."""
        type_ = query.resource_type
        self.check_traversal(query, interaction)
        in_compartment = type_ is None or type_ in patient_compartment() or type_ == "Patient"
        if not in_compartment or self.principal.kind == "system":
            return
        patient = query.compartment[1] if query.compartment else _patient_criterion(query)
        if self.principal.kind == "citizen":
            own = await self.finder.own_and_children(tx)
            if patient is None:
                if len(own) != 1:
                    raise Forbidden("name the patient (yourself or a child in your care)")
                query.compartment = ("Patient", next(iter(own)))
                patient = query.compartment[1]
            if patient is not None and patient not in own:
                self._record(
                    "s", interaction, Decision(False, reason="not own record"), [patient], []
                )
                raise Forbidden("you may only search your own record or your child's")
            # Someone the caller acts for: only within the areas they hold (a parent of a
            # 13-year-old books appointments but does not read the record).
            decision = await self._decide(tx, "s", type_ or "Patient", [patient], None)
            if not decision.allowed:
                self._record("s", interaction, decision, [patient], [])
                raise Forbidden(f"you may not search this in their record ({decision.reason})")
            return
        if type_ == "Patient" and patient is None:
            if self.principal.profession in PHARMACY_PROFESSIONS and not _names_identifier(query):
                raise Forbidden("a pharmacy looks patients up by national identity number")
            return  # finding a patient: results are filtered to those the caller may see
        if patient is None:
            raise Forbidden(
                f"searching {type_ or 'all types'} needs one patient: use "
                "Patient/[id]/[type] or a patient/subject parameter"
            )
        decision = await self._decide(tx, "s", type_ or "Patient", [patient], None)
        if not decision.allowed:
            self._record("s", interaction, decision, [patient], [])
            raise Forbidden(
                "no access to this patient's record (no care relationship, or the patient "
                "does not exist); state an emergency reason if this is an emergency"
            )

    def check_traversal(self, query, interaction: str) -> None:
        """Chains and ``_has`` ask about resources of other types; the caller must be allowed
        to search those types, or the matches answer for them (a pharmacist's
        ``Patient?identifier=..&_has:Condition:patient:code=R76`` tells a diagnosis)."""
        if self.principal.kind != "system":
            _check_has_targets(query.resource_type, query.criteria)
        facts = PatientFacts("", care_relationship="type check", own_record=True)
        for type_ in _traversed_types(query.criteria):
            in_record = type_ in patient_compartment() or type_ == "Patient"
            decision = decide(self.principal, "s", type_, facts if in_record else None)
            if not decision.allowed:
                self._record("s", interaction, decision, [], [])
                raise Forbidden(f"your role may not search by {type_} ({decision.reason})")

    async def filter(
        self, tx: Transaction, resources: list[StoredResource], interaction: str
    ) -> list[StoredResource]:
        """Drop what the caller may not read; audit what is returned, per patient."""
        kept: list[StoredResource] = []
        by_patient: dict[str | None, list[str]] = {}
        decisions: dict[str | None, Decision] = {}
        for stored in resources:
            patients = self._patients_of_stored(stored)
            decision = await self._readable(tx, stored, patients)
            if not decision.allowed:
                continue
            kept.append(stored)
            for key in patients or [None]:  # every patient the resource names is audited
                by_patient.setdefault(key, []).append(f"{stored.type}/{stored.id}")
                mine = decision.for_patient(key)
                if key not in decisions or mine.emergency:
                    decisions[key] = mine
        for patient, refs in by_patient.items():
            self._record("s", interaction, decisions[patient], [patient] if patient else [], refs)
        return kept

    async def filter_included(
        self, tx: Transaction, included: list, matches: list, query, interaction: str
    ) -> list[StoredResource]:
        """Included resources, filtered like matches.  A pharmacist's dispensing relationship
        covers the patient they looked up, not everyone an include can reach
        (``Practitioner?_revinclude=Patient:general-practitioner`` would list a GP's whole
        list): for them, only the patients of the search's own matches come along."""
        if self.principal.profession in PHARMACY_PROFESSIONS:
            found = {p for s in matches for p in (self._patients_of_stored(s) or ())}
            if query.compartment:
                found.add(query.compartment[1])
            included = [s for s in included if set(self._patients_of_stored(s) or ()) <= found]
        return await self.filter(tx, included, interaction)

    async def count_readable(self, tx: Transaction, resources: list[StoredResource]) -> int:
        """How many of ``resources`` the caller may read (for a total; nothing is returned,
        so nothing is audited per resource: the count itself is, by ``record_count``)."""
        n = 0
        for stored in resources:
            n += (await self._readable(tx, stored, self._patients_of_stored(stored))).allowed
        return n

    def record_count(self, interaction: str, query) -> None:
        """Audit a count-only search: what was asked, about whom if it named a patient."""
        patient = query.compartment[1] if query.compartment else _patient_criterion(query)
        self._record("s", interaction, Decision(True), [patient] if patient else [], [])

    def sees_everything(self, query) -> bool:
        """Whether the caller may read every match of ``query`` whatever it holds, so that
        the database's own count is the caller's: a system client, with no service hook
        that could hide single resources."""
        if self.principal.kind != "system" or self.resource_hooks:
            return False
        type_ = query.resource_type or "Patient"
        return decide(self.principal, "s", type_, PatientFacts("")).allowed

    async def _readable(self, tx: Transaction, stored: StoredResource, patients) -> Decision:
        """The read decision on ``stored``, whose patients are ``patients``; not audited."""
        ref = f"{stored.type}/{stored.id}"
        decision = await self._decide(tx, "r", stored.type, patients, ref)
        if decision.allowed:
            decision = await self._hooks(tx, "r", stored.content, None, patients, decision)
        return decision

    async def reads_record(self, tx: Transaction, patient: str) -> bool:
        """Whether the policy lets the caller read ``patient``'s record; not audited."""
        return (await self._decide(tx, "r", "MedicationRequest", [patient], None)).allowed

    async def facts(self, tx: Transaction, patient: str) -> PatientFacts:
        """What the policy knows of the caller's relation to ``patient`` (care relationship,
        own record, child in care, blocking Consents), for services' own access rules."""
        return await self.finder.facts_for(tx, patient)

    # ---- facts --------------------------------------------------------------------------

    async def _hooks(self, tx, action, content, resource, patients, decision) -> Decision:
        for marker, check in self.resource_hooks:
            if content is not None and marker not in content:
                continue
            parsed = resource if resource is not None else orjson.loads(content)
            reason = await check(self, tx, action, parsed, patients)  # type: ignore[operator]
            if reason:
                return Decision(False, decision.purpose, reason=reason)
        return decision

    async def _decide(self, tx, action, type_, patients, ref) -> Decision:
        if patients is None:
            return decide(self.principal, action, type_, None)
        if not patients:
            # Patient data that names no patient: personnel and systems only.
            facts = PatientFacts("", care_relationship="unattached record")
            if self.principal.kind == "citizen":
                facts.care_relationship = None
            return decide(
                self.principal, action, type_, facts, emergency_reason=self.emergency_reason
            )
        last = Decision(False, reason="no patient")
        emergency_for: set[str] = set()
        for patient in patients:
            facts = await self.finder.facts_for(tx, patient)
            blocked = ref is not None and ref in facts.blocked_refs
            if blocked:
                facts = PatientFacts(patient, blocked_by_consent=True)
            last = decide(
                self.principal, action, type_, facts, emergency_reason=self.emergency_reason
            )
            if not last.allowed:
                return last
            if last.emergency:
                emergency_for.add(patient)
        if emergency_for:  # any patient opened only by the emergency makes it one
            return Decision(True, EMERGENCY, True, last.reason, frozenset(emergency_for))
        return last

    def _patients_of_stored(self, stored: StoredResource) -> list[str] | None:
        """Whose data a stored resource is, read from its content (no query, no parse)."""
        if stored.type == "Patient":
            return [stored.id]
        return _patients(stored.type, stored.content)

    @staticmethod
    def _patients_in_content(resource: dict) -> list[str] | None:
        """Whose data ``resource`` (new content, about to be written) is."""
        type_ = resource["resourceType"]
        if type_ == "Patient":
            return [resource["id"]] if resource.get("id") else None
        return _patients(type_, jsonio.dumps(resource))

    # ---- audit --------------------------------------------------------------------------

    def record_refusal(self, action: str, interaction: str, reason: str, patient=None) -> None:
        """Audit a refusal raised outside the guard's own checks (a service's role rule, a
        search shape the policy refuses), so that every refused access leaves a trace."""
        self.context.refuse(action, interaction, reason, patient)

    def _record(self, action, interaction, decision, patients, refs) -> None:
        for patient in patients or [None]:
            mine = decision.for_patient(patient)
            self.context.record(
                action=ACTIONS.get(action, "E"),
                subtype=interaction,
                outcome="0" if decision.allowed else "4",
                patient_id=patient,
                entities=refs,
                purpose=mine.purpose,
                emergency=mine.emergency,
            )


def _patient_criterion(query) -> str | None:
    """The one patient a search names through a compartment parameter, if any."""
    from enjournal.fhir.search.query import Criterion, ReferenceValue, TokenValue

    params = {*patient_compartment().get(query.resource_type or "", ()), "patient", "subject"}
    for term in query.criteria:
        if not isinstance(term, Criterion) or len(term.values) != 1:
            continue
        value = term.values[0]
        if (
            query.resource_type == "Patient"
            and term.name == "_id"
            and not term.modifier
            and isinstance(value, TokenValue)
            and value.code
        ):
            return value.code
        if (
            term.name in params
            and term.modifier in (None, "Patient")
            and isinstance(value, ReferenceValue)
            and value.id
            and value.type in (None, "Patient")
        ):
            return value.id
    return None


# A reference to a Patient anywhere in a resource's JSON: relative, absolute or versioned.
_PATIENT_REFERENCE = re.compile(
    rb'"reference"\s*:\s*"(?:[^"]*/)?Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^"]*)?"'
)


def _patient_references(content: bytes) -> list[str]:
    return sorted({m.decode() for m in _PATIENT_REFERENCE.findall(content)})


def _patients(type_: str, content: bytes) -> list[str] | None:
    """The patients a resource refers to anywhere (a compartment's subject, a Task's
    ``for``, a Binary's ``securityContext``, a resource inside a Bundle): a reference to a
    patient makes it that patient's data, whatever its type.  None: not patient data; []:
    a compartment type that names no patient (personnel and systems only)."""
    found = _patient_references(content) if b"Patient/" in content else []
    return found if found or type_ in patient_compartment() else None


# Shared reference data a chain may look into freely: it holds no patient's data.
CHAIN_TARGETS = DIRECTORY | {"Medication", "Substance"}


def _check_has_targets(type_: str | None, terms) -> None:
    """Chains and ``_has`` test other resources than those returned, and the guard filters
    only what is returned.  So a chain may only reach shared reference data, or the patient
    whose compartment the searched resource is in (``subject:Patient.name``): a chain to
    another resource (``Task?based-on:Condition.code=R76`` over a Task that names someone
    else's Condition) would test a record the caller may not read.  ``_has`` is safe only
    where the searched resource is itself a patient's data, filtered by that patient:
    ``Practitioner?_has:Patient:general-practitioner:identifier=X`` would tell anyone who
    the GP of national id X is."""
    from enjournal.fhir.search.query import Chain, Has

    for term in terms:
        if isinstance(term, Chain):
            own_patient = term.target_type == "Patient" and term.name in patient_compartment().get(
                type_ or "", ()
            )
            if term.target_type not in CHAIN_TARGETS and not own_patient:
                raise Forbidden(
                    f"a chain into {term.target_type} would test records you may not read; "
                    "search that resource type for the patient instead"
                )
            _check_has_targets(term.target_type, [term.criterion])
        elif isinstance(term, Has):
            if type_ != "Patient" and type_ not in patient_compartment():
                raise Forbidden(
                    f"_has on {type_ or 'all types'} would answer for records you may not "
                    "read; search the patient's own data instead"
                )
            _check_has_targets(term.source_type, [term.criterion])


def _traversed_types(terms) -> set[str]:
    """The resource types a search's chains and ``_has`` criteria look into."""
    from enjournal.fhir.search.query import Chain, Has

    found: set[str] = set()
    for term in terms:
        if isinstance(term, Chain):
            found |= {term.target_type, *_traversed_types([term.criterion])}
        elif isinstance(term, Has):
            found |= {term.source_type, *_traversed_types([term.criterion])}
    return found


def _names_identifier(query) -> bool:
    from enjournal.fhir.search.query import Criterion, TokenValue

    return any(
        isinstance(t, Criterion)
        and t.name == "identifier"
        and t.modifier is None
        and len(t.values) == 1
        and isinstance(t.values[0], TokenValue)
        and t.values[0].system
        and t.values[0].code
        for t in query.criteria
    )
