"""The GP office's digital services on helsenorge (domain.md 4.1 and 10) as FHIR operations:

    POST /Patient/{id}/$message-gp      a message to the GP office (dialog, e-konsultasjon,
                                        renewal request "forny resept") -> Communication
    GET  /Patient/{id}/$gp-slots        the free future slots of the patient's GP
    POST /Appointment/$book             book a free slot -> Appointment; the Slot turns busy
    POST /Appointment/{id}/$cancel      cancel a future appointment; the Slot is free again
    POST /Questionnaire/{id}/$submit    answer a form -> QuestionnaireResponse

Who may: the patient, a parent for a child under 12, or a representative holding the service
area "Digitale helsetjenester" (3); the guard decides that through the policy
(``repo.check_create`` / ``check_change``) on the resource the operation built.  Who wrote is
taken from the token, never from the body: the patient's own ``Patient`` when they act
themselves, the ``RelatedPerson`` that links the representative to the patient when a parent
or a holder of a fullmakt acts (so the message stays in the represented patient's record
alone, and says who wrote it).  A citizen's plain REST writes of these types are refused by
a guard hook (``citizen_writes``): only these operations fill in sender, author and
participants and keep a slot from being booked twice.  docs/helsenorge.md has examples.
"""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Conflict, Forbidden, Invalid, NotFound, Unprocessable
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR
from enjournal.rest.interactions.common import validate_for_write
from enjournal.rest.message import FhirResponse, version_headers
from enjournal.rest.operations import Operation
from enjournal.security.policy import CITIZEN_SERVICE_TYPES
from enjournal.services.helsenorge import rules
from enjournal.services.inputs import operation_parameters, refused

DEFINITION = "https://enjournal.no/fhir/OperationDefinition/"
# Stored JSON never holds a raw NUL byte: the hook is skipped on every read (it checks
# writes only, where the guard calls it whatever the marker).
HOOK_MARKER = b"\x00"
VOUCHED = "helsenorge-gp-vouched"  # Guard.request_cache key: resources an operation built
MAX_SLOTS = 200


class GpServices:
    """The operations, on the platform's clock."""

    def __init__(self, platform):
        self.platform = platform

    def now(self) -> datetime:
        return self.platform.clock()

    # ---- messages ------------------------------------------------------------------------

    async def message_gp(self, request, repo) -> FhirResponse:
        op, tx, patient_id = "$message-gp", repo.trusted, request.path[1]
        params = operation_parameters(request, op, required=("text",))
        text = rules.message_text(params.get("text"))
        topic = rules.message_topic(params.get("topic"))
        patient = await self._patient(request, repo, patient_id, op)
        sender = await self._acting(request, tx, patient_id, op)
        recipients = await self._recipients(request, tx, patient, op)
        thread = await self._own(request, tx, params, patient_id, "in-response-to")
        about = await self._own(request, tx, params, patient_id, "about")
        resource = rules.communication(
            patient_id,
            sender,
            recipients,
            text,
            topic,
            self.now(),
            in_response_to=thread,
            about=about,
        )
        stored = await self._create(request, repo, resource, op)
        self._audit(request, "C", op, patient_id, [f"Communication/{stored.id}"])
        return _created(request, stored)

    async def _recipients(self, request, tx, patient: dict, op: str) -> list[str]:
        """The patient's GP, and the office the GP works at (so the office's inbox finds it)."""
        gps = rules.gp_references(patient)
        try:
            rules.require_gp(patient["id"], gps)
        except Unprocessable as error:
            self._audit(request, "C", op, patient["id"], [], error)
            raise
        practitioners = [r.split("/", 1)[1] for r in gps if r.startswith("Practitioner/")]
        roles = await tx.referencing(
            "PractitionerRole", "practitioner", "Practitioner", practitioners
        )
        for role_id in roles[:5]:
            content = await tx.content_of("PractitionerRole", role_id)
            office = (
                (jsonio.loads(content).get("organization") or {}).get("reference")
                if content
                else None
            )
            if office and office.startswith("Organization/") and office not in gps:
                gps.append(office)
        return gps

    async def _own(self, request, tx, params: dict, patient_id: str, name: str) -> str | None:
        """``in-response-to`` (a message in this patient's own thread) or ``about`` (the
        patient's own prescription a renewal request is about), as a reference."""
        value = params.get(name)
        if value is None:
            return None
        type_, what = _OWN[name]
        id_ = rules.reference(value, type_, name)
        content = await tx.content_of(type_, id_)
        if content is None or rules.subject_patient(jsonio.loads(content)) != patient_id:
            message = f"{type_}/{id_} is not one of this patient's {what}"
            raise refused(request, "c", "$message-gp", message, patient_id, NotFound)
        return f"{type_}/{id_}"

    # ---- appointments --------------------------------------------------------------------

    async def gp_slots(self, request, repo) -> FhirResponse:
        """The free slots of the patient's GP from now on, earliest first (a searchset)."""
        from enjournal.fhir.search import parse_search

        op, tx, patient_id = "$gp-slots", repo.trusted, request.path[1]
        patient = await self._patient(request, repo, patient_id, op)
        rules.require_gp(patient_id, rules.gp_references(patient))
        schedules: list[str] = []
        for ref in await _gp_actors(tx, patient):
            type_, id_ = ref.split("/", 1)
            schedules += await tx.referencing("Schedule", "actor", type_, [id_])
        found: list = []
        if schedules:
            query = parse_search(
                "Slot",
                [
                    ("schedule", ",".join(f"Schedule/{s}" for s in sorted(set(schedules)))),
                    ("status", "free"),
                    ("start", f"ge{rules.instant(self.now())}"),
                    ("_sort", "start"),
                    ("_count", str(MAX_SLOTS)),
                ],
                parameters=tx.search_parameters,
            )
            found = (await tx.search(query)).matches
        self._audit(request, "R", op, patient_id, [f"Slot/{s.id}" for s in found])
        return FhirResponse(200, _searchset(request, [s.content for s in found]))

    async def book(self, request, repo) -> FhirResponse:
        op, tx = "$book", repo.trusted
        params = operation_parameters(request, op, required=("patient", "slot"))
        patient_id = rules.reference(params["patient"], "Patient", "patient")
        slot_id = rules.reference(params["slot"], "Slot", "slot")
        comment = params.get("comment")
        patient = await self._patient(request, repo, patient_id, op)
        await self._acting(request, tx, patient_id, op)
        current = await _read_for_update(tx, "Slot", slot_id)
        slot = jsonio.loads(current.content)
        schedule = await _schedule(tx, slot)
        now = self.now()
        try:
            rules.require_gp(patient_id, rules.gp_references(patient))
            rules.check_bookable(slot, schedule, await _gp_actors(tx, patient), now)
        except (Conflict, Unprocessable) as error:
            self._audit(request, "C", op, patient_id, [f"Slot/{slot_id}"], error)
            raise
        resource = rules.appointment(patient_id, slot, schedule, comment, now)
        slot["status"] = "busy"
        validate_for_write(slot)
        stored = await self._create(request, repo, resource, op)
        await tx.update(slot, slot_id, if_match=current.version)  # nobody booked it meanwhile
        self._audit(request, "C", op, patient_id, [f"Appointment/{stored.id}", f"Slot/{slot_id}"])
        return _created(request, stored)

    async def cancel(self, request, repo) -> FhirResponse:
        op, tx, id_ = "$cancel", repo.trusted, request.path[1]
        params = operation_parameters(request, op)
        reason = params.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise Invalid("'reason' must be a valueString")
        await repo.readable("Appointment", id_, op)  # someone else's: 404, as if missing
        current = await _read_for_update(tx, "Appointment", id_)
        resource = jsonio.loads(current.content)
        patient_id = _patient_participant(resource)
        if patient_id is None:
            raise NotFound(f"Appointment/{id_} is not a patient's appointment")
        await self._acting(request, tx, patient_id, op)
        try:
            rules.cancel(resource, reason, self.now())
        except (Conflict, Unprocessable) as error:
            self._audit(request, "U", op, patient_id, [f"Appointment/{id_}"], error)
            raise
        validate_for_write(resource)
        await self._vouched(request, repo.check_change, resource, op)
        stored = await tx.update(resource, id_, if_match=current.version)
        freed = [await self._free(tx, s) for s in rules.booked_slots(resource)]
        refs = [f"Appointment/{id_}", *(f"Slot/{s}" for s in freed if s)]
        self._audit(request, "U", op, patient_id, refs)
        return FhirResponse(
            200, stored.content, version_headers(stored, request.base_url, location=False), stored
        )

    async def _free(self, tx, slot_id: str) -> str | None:
        try:
            current = await tx.read_for_update("Slot", slot_id)
        except NotFound:
            return None  # the office removed the slot: nothing to free
        slot = jsonio.loads(current.content)
        if slot.get("status") != "busy":
            return None
        slot["status"] = "free"
        await tx.update(slot, slot_id, if_match=current.version)
        return slot_id

    # ---- forms ---------------------------------------------------------------------------

    async def submit(self, request, repo) -> FhirResponse:
        op, tx, questionnaire_id = "$submit", repo.trusted, request.path[1]
        params = operation_parameters(request, op, required=("response",))
        response = params["response"]
        if (
            not isinstance(response, dict)
            or response.get("resourceType") != "QuestionnaireResponse"
        ):
            raise Invalid("'response' must be a QuestionnaireResponse (the parameter's resource)")
        questionnaire = jsonio.loads((await repo.read("Questionnaire", questionnaire_id)).content)
        patient_id = rules.reference(
            params.get("patient") or response.get("subject"), "Patient", "patient"
        )
        await self._patient(request, repo, patient_id, op)
        author = await self._acting(request, tx, patient_id, op)
        try:
            if questionnaire.get("status") != "active":
                raise Unprocessable(f"Questionnaire/{questionnaire_id} is not open for answers")
            rules.check_answers(questionnaire, response)
        except Unprocessable as error:
            self._audit(request, "C", op, patient_id, [f"Questionnaire/{questionnaire_id}"], error)
            raise
        resource = rules.form_answer(response, questionnaire, patient_id, author, self.now())
        stored = await self._create(request, repo, resource, op)
        self._audit(request, "C", op, patient_id, [f"QuestionnaireResponse/{stored.id}"])
        return _created(request, stored)

    # ---- who, and the write --------------------------------------------------------------

    async def _patient(self, request, repo, patient_id: str, op: str) -> dict:
        """The patient, if the caller may see them (404 otherwise, as for a plain read)."""
        stored = await repo.readable("Patient", patient_id, op)
        return jsonio.loads(stored.content)

    async def _acting(self, request, tx, patient_id: str, op: str) -> str:
        """Who acts, as a reference for sender or author: the patient themself, or the
        RelatedPerson that makes the caller a parent or representative of the patient.
        Health personnel use the plain FHIR API (a GP's reply is a Communication)."""
        guard = request.guard
        if guard is None:  # security off: the patient, by assumption
            return f"Patient/{patient_id}"
        principal = guard.principal
        if principal.kind != "citizen":
            message = f"{op} is for the patient or their representative, not for {principal.kind}s"
            raise refused(request, "c", op, message, patient_id, Forbidden)
        facts = await guard.facts(tx, patient_id)
        if facts.own_record:
            return f"Patient/{patient_id}"
        for content in await tx.contents_by_identifier("RelatedPerson", principal.pid or ""):
            related = jsonio.loads(content)
            if related.get("active") is False or not _names(related, principal.pid):
                continue
            if rules.refers_to(related, "patient", f"Patient/{patient_id}"):
                return f"RelatedPerson/{related['id']}"
        message = "you do not represent this patient"
        raise refused(request, "c", op, message, patient_id, Forbidden)

    async def _create(self, request, repo, resource: dict, op: str):
        """Check the caller may write ``resource`` (the policy, with representation areas;
        audited), then store it."""
        validate_for_write(resource)
        await self._vouched(request, repo.check_create, resource, op)
        return await repo.trusted.create(resource)

    async def _vouched(self, request, check, resource: dict, op: str) -> None:
        """``check(resource, op)`` with this operation vouching for the content it built,
        so the hook that refuses citizens' plain writes lets exactly this dict through."""
        guard = request.guard
        if guard is None:
            return
        vouched = guard.request_cache.setdefault(VOUCHED, {})
        vouched[id(resource)] = resource
        try:
            await check(resource, op)
        finally:
            vouched.pop(id(resource), None)

    def _audit(self, request, action, op, patient_id, refs, error=None) -> None:
        context = request.context
        if context is None:
            return
        context.record(
            action=action,
            subtype=op,
            outcome="4" if error is not None else "0",
            patient_id=patient_id,
            entities=list(refs),
            purpose="PATRQT" if context.principal.kind == "citizen" else "TREAT",
            outcome_desc=error.message if error is not None else None,
        )


# ---- the hook on the plain FHIR API --------------------------------------------------------


async def citizen_writes(guard, tx, action: str, resource: dict, patients) -> str | None:
    """Refuse a citizen's plain create or update of a message, appointment or form answer:
    sender, author, participants and the slot's state are filled in by the operations."""
    if action not in ("c", "u") or guard.principal.kind != "citizen":
        return None
    type_ = resource.get("resourceType")
    if type_ not in CITIZEN_SERVICE_TYPES:
        return None
    if id(resource) in guard.request_cache.get(VOUCHED, {}):
        return None
    use = {
        "Communication": "Patient/[id]/$message-gp",
        "Appointment": "Appointment/$book and Appointment/[id]/$cancel",
        "QuestionnaireResponse": "Questionnaire/[id]/$submit",
    }[type_]
    return f"a citizen writes {type_} through {use}"


async def personnel_messages(guard, tx, action: str, resource: dict, patients) -> str | None:
    """A health worker's Communication is sent by themselves: the portal shows the sender,
    so one naming the patient (or a colleague) would put words in someone else's mouth."""
    if action not in ("c", "u") or guard.principal.kind != "personnel":
        return None
    if resource.get("resourceType") != "Communication":
        return None
    sender = resource.get("sender")
    ref = sender.get("reference") if isinstance(sender, dict) else None
    parts = tuple(ref.split("/")[-2:]) if isinstance(ref, str) else ()
    if parts in await guard.finder.caller(tx):
        return None
    return (
        "Communication.sender must be the caller (their Practitioner, PractitionerRole "
        "or Organization)"
    )


# ---- small helpers -------------------------------------------------------------------------


def _names(related: dict, pid: str | None) -> bool:
    return any(
        i.get("system") in (OID_FNR, OID_DNR) and i.get("value") == pid
        for i in related.get("identifier", [])
    )


async def _gp_actors(tx, patient: dict) -> list[str]:
    """Who a schedule of the patient's GP names as actor: the GP (Practitioner), the GP's
    roles, and when the patient lists an office, the roles at that office."""
    refs = rules.gp_references(patient)
    ids = {
        kind: [r.split("/", 1)[1] for r in refs if r.startswith(kind + "/")]
        for kind in ("Practitioner", "Organization")
    }
    roles = await tx.referencing(
        "PractitionerRole", "practitioner", "Practitioner", ids["Practitioner"]
    )
    roles += await tx.referencing(
        "PractitionerRole", "organization", "Organization", ids["Organization"]
    )
    return [*refs, *(f"PractitionerRole/{r}" for r in sorted(set(roles)))]


def _patient_participant(appointment: dict) -> str | None:
    for participant in appointment.get("participant", []):
        ref = (participant.get("actor") or {}).get("reference") or ""
        if ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
    return None


async def _read_for_update(tx, type_: str, id_: str):
    try:
        return await tx.read_for_update(type_, id_)
    except NotFound:
        raise NotFound(f"{type_}/{id_} is not known") from None


async def _schedule(tx, slot: dict) -> dict:
    ref = (slot.get("schedule") or {}).get("reference") or ""
    content = (
        await tx.content_of("Schedule", ref.split("/", 1)[-1])
        if ref.startswith("Schedule/")
        else None
    )
    if content is None:
        raise Unprocessable(f"Slot/{slot.get('id')} belongs to no known schedule")
    return jsonio.loads(content)


def _created(request, stored) -> FhirResponse:
    headers = version_headers(stored, request.base_url, location=True)
    return FhirResponse(201, stored.content, headers, stored)


def _searchset(request, contents: list[bytes]) -> bytes:
    entries = []
    for content in contents:
        resource = jsonio.loads(content)
        entries.append(
            {
                "fullUrl": f"{request.base_url}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
        )
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "entry": entries,
    }
    return jsonio.dumps(bundle)


def register(platform) -> None:
    """Add the operations and the hook to the platform."""
    service = GpServices(platform)
    add = platform.operations.add
    for name, type_, instance, handler, method in (
        ("message-gp", "Patient", True, service.message_gp, "POST"),
        ("gp-slots", "Patient", True, service.gp_slots, "GET"),
        ("book", "Appointment", False, service.book, "POST"),
        ("cancel", "Appointment", True, service.cancel, "POST"),
        ("submit", "Questionnaire", True, service.submit, "POST"),
    ):
        writes = method == "POST"
        add(
            Operation(
                name,
                type_,
                instance,
                handler,
                (method,),
                writes=writes,
                definition=DEFINITION + name,
            )
        )
    platform.add_hook(HOOK_MARKER, citizen_writes)
    platform.add_hook(HOOK_MARKER, personnel_messages)


# What a message may refer to (its parameter: the type, and what it is in words); it must be
# the same patient's (``subject``).
_OWN = {
    "in-response-to": ("Communication", "messages"),
    "about": ("MedicationRequest", "prescriptions"),
}
