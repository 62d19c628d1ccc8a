"""Representation on helsenorge (domain.md 4.1 and 10) as FHIR operations:

    GET       /Patient/$represented      the caller and everyone they may act for today
    GET       /Patient/{id}/$fullmakt    the fullmakts the patient has given and received
    POST      /Patient/{id}/$fullmakt    give (``receiver``, ``receiver-family``, ``area``,
                                         ``start``, ``end``),
                                         revoke (``revoke``), or change (``change`` with the
                                         new terms: the old one is revoked, a new one given)

A fullmakt is a ``RelatedPerson`` in the giver's compartment naming the receiver by
fødselsnummer, role HPOWATT, its service areas in an extension (data model and rules:
``enjournal.security.representation``; docs/helsenorge.md).  Only the patient themself
gives, changes, revokes and lists their fullmakts.  The guard's policy would refuse a
citizen's write of a RelatedPerson (and ``grants.py`` refuses anyone's plain write of a
fullmakt), so after its own rule check this operation writes through ``repo.trusted`` and
audits each change itself.  The access a fullmakt gives is decided by the guard on every
request from the resource as stored (its period included), never by the job that marks
ended ones inactive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Conflict, Invalid, NotFound, Unprocessable
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, is_valid_fnr
from enjournal.rest.interactions.common import validate_for_write
from enjournal.rest.message import FhirResponse, version_headers
from enjournal.rest.operations import Operation
from enjournal.security import representation as rules
from enjournal.security.scopes import grant
from enjournal.services.inputs import operation_parameters, refused

DEFINITION = "https://enjournal.no/fhir/OperationDefinition/"
FULLMAKT, REPRESENTED = "$fullmakt", "$represented"


class FullmaktServices:
    """The operations, on the platform's clock."""

    def __init__(self, platform):
        self.platform = platform

    def today(self) -> date:
        return self.platform.clock().date()

    # ---- whom one may act for ------------------------------------------------------------

    async def represented(self, request, repo) -> FhirResponse:
        """A Parameters with one ``person`` per patient the caller may act for today: the
        caller themself first, then children and givers of fullmakts."""
        guard = request.guard
        if guard is None or guard.principal.kind != "citizen":
            raise refused(request, "r", REPRESENTED, "$represented is for a logged-in citizen")
        tx, today = repo.trusted, self.today()
        acting = await guard.finder.represented(tx)
        own = await guard.finder.own_and_children(tx) - set(acting)
        people = []
        for id_ in sorted(own):
            patient = jsonio.loads((await repo.read("Patient", id_, REPRESENTED)).content)
            people.append(_person(patient, "self", rules.BOTH, rules.patient_age(patient, today)))
        for id_, how in sorted(acting.items()):
            patient = jsonio.loads((await repo.read("Patient", id_, REPRESENTED)).content)
            people.append(_person(patient, how.relation, how.areas, how.age))
        return FhirResponse.of({"resourceType": "Parameters", "parameter": people})

    # ---- the patient's fullmakts ---------------------------------------------------------

    async def fullmakt(self, request, repo) -> FhirResponse:
        patient_id = request.path[1]
        await self._giver(request, repo, patient_id, "r" if request.method == "GET" else "u")
        if request.method == "GET":
            return await self._list(request, repo.trusted, patient_id)
        params = operation_parameters(request, FULLMAKT)
        if "revoke" in params:
            revoked = await self._revoke(request, repo.trusted, patient_id, params["revoke"])
            return _answer(request, revoked, 200)
        if "change" in params:
            old = await self._revoke(request, repo.trusted, patient_id, params["change"])
            previous = jsonio.loads(old.content)
            params.setdefault("receiver", rules.person_number(previous))
            params.setdefault("receiver-family", (previous.get("name") or [{}])[0].get("family"))
        return _answer(request, await self._give(request, repo.trusted, patient_id, params), 201)

    async def _giver(self, request, repo, patient_id: str, action: str) -> None:
        """Only the patient themself: 404 for a patient the caller may not see (as a plain
        read), 403 for one they see but are not (a representative)."""
        await repo.readable("Patient", patient_id, FULLMAKT)
        guard = request.guard
        if guard is None:
            return  # security off: the caller is the patient, by assumption
        principal = guard.principal
        if principal.kind != "citizen":
            message = "fullmakts are given and seen by the patient themself on helsenorge"
            raise refused(request, action, FULLMAKT, message, patient_id)
        if not (await guard.facts(repo.trusted, patient_id)).own_record:
            message = "only the patient themself gives, changes, revokes or lists fullmakts"
            raise refused(request, action, FULLMAKT, message, patient_id)
        if action == "u" and grant(principal.scopes, "RelatedPerson", "c") is None:
            message = "the token's scopes do not allow giving a fullmakt (RelatedPerson)"
            raise refused(request, action, FULLMAKT, message, patient_id)

    async def _list(self, request, tx, patient_id: str) -> FhirResponse:
        given = [
            jsonio.loads(c)
            for c in await tx.contents_referencing(
                "RelatedPerson", "patient", "Patient", patient_id
            )
        ]
        patient = jsonio.loads(await tx.content_of("Patient", patient_id) or b"{}")
        numbers = {
            i.get("value")
            for i in patient.get("identifier", [])
            if i.get("system") in (OID_FNR, OID_DNR)
        }
        received = []
        for number in sorted(n for n in numbers if n):
            for content in await tx.contents_by_identifier("RelatedPerson", number):
                related = jsonio.loads(content)
                if rules.names(related, number):
                    received.append(related)
        today = self.today()
        parts = [_listed(r, "given", today) for r in given if rules.is_fullmakt(r)]
        parts += [_listed(r, "received", today) for r in received if rules.is_fullmakt(r)]
        self._audit_list(request, patient_id, given, received)
        return FhirResponse.of({"resourceType": "Parameters", "parameter": parts})

    def _audit_list(self, request, patient_id: str, given: list, received: list) -> None:
        """One read event for the patient, and one for each giver whose fullmakt was shown
        (the giver's log tells that the receiver looked at it)."""
        refs = [f"RelatedPerson/{r['id']}" for r in given if rules.is_fullmakt(r)]
        self._audit(request, "R", patient_id, refs)
        for related in received:
            if rules.is_fullmakt(related):
                giver = rules.patient_of(related)
                self._audit(request, "R", giver, [f"RelatedPerson/{related['id']}"])

    # ---- giving, revoking ----------------------------------------------------------------

    async def _give(self, request, tx, patient_id: str, params: dict):
        terms = _terms(params, self.today())
        giver = jsonio.loads(await tx.content_of("Patient", patient_id) or b"{}")
        receiver = await _receiver(tx, terms.receiver)
        if receiver is not None and not _family_matches(receiver, terms.family):
            receiver = None  # the number and the name must both be right: no lookup by number
        reason = rules.fullmakt_refusal(
            giver_age=rules.patient_age(giver, terms.today),
            receiver_age=rules.age_from_number(terms.receiver, terms.today),
            giver_confidential=rules.is_confidential(giver),
            receiver_confidential=receiver is None or rules.is_confidential(receiver),
            same_person=rules.names({"identifier": giver.get("identifier", [])}, terms.receiver),
            start=terms.start,
            end=terms.end,
            today=terms.today,
        )
        if reason is not None:
            raise refused(request, "c", FULLMAKT, reason, patient_id, Unprocessable)
        assert receiver is not None  # refused above otherwise
        await self._no_twin(request, tx, patient_id, terms.receiver)
        resource = _fullmakt(patient_id, terms, receiver)
        validate_for_write(resource)
        stored = await tx.create(resource)
        self._audit(request, "C", patient_id, [f"RelatedPerson/{stored.id}"])
        return stored

    async def _no_twin(self, request, tx, patient_id: str, receiver: str) -> None:
        """One fullmakt in force per giver and receiver: a second is a change."""
        for content in await tx.contents_by_identifier("RelatedPerson", receiver):
            related = jsonio.loads(content)
            if (
                rules.is_fullmakt(related)
                and rules.patient_of(related) == patient_id
                and rules.names(related, receiver)
                and _status(related, self.today()) in ("active", "pending")
            ):
                message = (
                    f"you have already given this person a fullmakt (RelatedPerson/"
                    f"{related['id']}); change or revoke it"
                )
                raise refused(request, "c", FULLMAKT, message, patient_id, Conflict)

    async def _revoke(self, request, tx, patient_id: str, value):
        """Mark the giver's fullmakt inactive, ended now; idempotent."""
        id_ = _fullmakt_id(value)
        try:
            current = await tx.read_for_update("RelatedPerson", id_)
        except NotFound:
            current = None
        related = jsonio.loads(current.content) if current is not None else {}
        if current is None or not (
            rules.is_fullmakt(related) and rules.patient_of(related) == patient_id
        ):
            message = f"RelatedPerson/{id_} is not one of your fullmakts"
            raise refused(request, "u", FULLMAKT, message, patient_id, NotFound)
        if related.get("active") is False:
            return current
        now = self.platform.clock().isoformat(timespec="seconds")
        period = related.setdefault("period", {})
        if (period.get("start") or "")[:10] > now[:10]:
            period["start"] = now  # not yet begun: it never will
        period["end"] = now
        related["active"] = False
        validate_for_write(related)
        stored = await tx.update(related, id_, if_match=current.version)
        self._audit(request, "U", patient_id, [f"RelatedPerson/{id_}"])
        return stored

    def _audit(self, request, action: str, patient_id: str | None, refs: list[str]) -> None:
        if request.context is None:
            return
        request.context.record(
            action=action,
            subtype=FULLMAKT,
            patient_id=patient_id,
            entities=refs,
            purpose="PATRQT",
        )


# ---- input and resources ----------------------------------------------------------------


@dataclass(frozen=True)
class Terms:
    """A fullmakt's terms from the operation's parameters."""

    receiver: str  # fødselsnummer or D-number
    family: str  # the receiver's family name, as the giver writes it
    areas: frozenset[str]
    start: date
    end: date | None
    today: date


def _terms(params: dict, today: date) -> Terms:
    receiver = params.get("receiver")
    if not isinstance(receiver, str) or not is_valid_fnr(receiver.strip()):
        raise Invalid("'receiver' must be the receiver's fødselsnummer or D-number (valueString)")
    values = params.get("area")
    codes = values if isinstance(values, list) else [values] if values is not None else []
    if not codes or any(c not in rules.AREAS for c in codes):
        raise Invalid(
            f"'area' (valueCode, repeated) must be one or more of {', '.join(rules.AREAS)}"
        )
    family = params.get("receiver-family")
    if not isinstance(family, str) or not family.strip() or len(family) > 200:
        raise Invalid("'receiver-family' must be the receiver's family name (valueString)")
    start = _date(params.get("start"), "start") or today
    end = _date(params.get("end"), "end")
    return Terms(receiver.strip(), family.strip(), frozenset(codes), start, end, today)


def _family_matches(patient: dict, family: str) -> bool:
    """Helsenorge asks for the receiver's national id and family name: both must match the
    register, so a national id alone finds nobody (and shows no name)."""
    wanted = " ".join(family.split()).casefold()
    names = [" ".join(str(n.get("family", "")).split()).casefold() for n in patient.get("name", [])]
    return wanted in names


def _date(value, name: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise Invalid(f"'{name}' must be a date (valueDate, YYYY-MM-DD)")


def _fullmakt_id(value) -> str:
    if isinstance(value, dict):
        value = value.get("reference")
    kind, _, id_ = (value or "").rpartition("/") if isinstance(value, str) else ("", "", "")
    if kind != "RelatedPerson" or not id_:
        raise Invalid("'revoke' and 'change' name a fullmakt, e.g. RelatedPerson/123")
    return id_


async def _receiver(tx, number: str) -> dict | None:
    """The receiver's Patient (the national register's person), or None."""
    for id_ in await tx.ids_by_identifier("Patient", (OID_FNR, OID_DNR), number):
        content = await tx.content_of("Patient", id_)
        if content is not None:
            return jsonio.loads(content)
    return None


def _fullmakt(giver_id: str, terms: Terms, receiver: dict) -> dict:
    system = OID_DNR if int(terms.receiver[0]) >= 4 else OID_FNR
    period = {"start": terms.start.isoformat()}
    if terms.end is not None:
        period["end"] = terms.end.isoformat()
    resource: dict = {
        "resourceType": "RelatedPerson",
        "extension": [
            {
                "url": rules.AREA_EXTENSION,
                "valueCoding": {"system": rules.AREA_SYSTEM, "code": c, "display": rules.AREAS[c]},
            }
            for c in sorted(terms.areas)
        ],
        "identifier": [{"system": system, "value": terms.receiver}],
        "active": True,
        "patient": {"reference": f"Patient/{giver_id}"},
        "relationship": [
            {
                "coding": [
                    {
                        "system": rules.ROLE_SYSTEM,
                        "code": rules.FULLMAKT_CODE,
                        "display": rules.FULLMAKT_DISPLAY,
                    }
                ]
            }
        ],
        "period": period,
    }
    # The receiver as the giver named them (the register's given names are not the giver's
    # to learn from this operation).
    resource["name"] = [{"family": terms.family}]
    return resource


def _status(related: dict, today: date) -> str:
    """active (in force by its terms), pending (starts later), ended, or revoked."""
    if related.get("active") is False:
        return "revoked"
    start, end = rules.period(related)
    if start and start[:10] > today.isoformat():
        return "pending"
    return "active" if rules.within(start, end, today) else "ended"


def _listed(related: dict, direction: str, today: date) -> dict:
    return {
        "name": "fullmakt",
        "part": [
            {"name": "direction", "valueCode": direction},
            {"name": "status", "valueCode": _status(related, today)},
            {"name": "resource", "resource": related},
        ],
    }


def _person(patient: dict, relation: str, areas: frozenset[str], age: int | None) -> dict:
    reference = {"reference": f"Patient/{patient['id']}", "display": rules.display_name(patient)}
    parts: list[dict] = [
        {"name": "patient", "valueReference": reference},
        {"name": "relation", "valueCode": relation},
    ]
    parts += [{"name": "area", "valueCode": a} for a in sorted(areas)]
    if age is not None:
        parts.append({"name": "age", "valueInteger": age})
    return {"name": "person", "part": parts}


def _answer(request, stored, status: int) -> FhirResponse:
    headers = version_headers(stored, request.base_url, location=status == 201)
    return FhirResponse(status, stored.content, headers, stored)


def register(platform) -> None:
    service = FullmaktServices(platform)
    add = platform.operations.add
    add(
        Operation(
            "represented",
            "Patient",
            False,
            service.represented,
            ("GET",),
            definition=DEFINITION + "represented",
        )
    )
    add(
        Operation(
            "fullmakt",
            "Patient",
            True,
            service.fullmakt,
            ("GET", "POST"),
            writes=("POST",),
            definition=DEFINITION + "fullmakt",
        )
    )
