"""Kjernejournal's FHIR operations (docs/kjernejournal.md has examples).

- ``GET Patient/[id]/$summary``: the signed IPS document (``summary.py``, ``signing.py``).
- ``POST /$kj-status``: NHN's status call: does the patient have critical information, when
  did it change, restricted, reserved, is the caller blocked; no content, not audit-logged.
- ``POST Patient/[id]/$kj-critical-info``: register, update or remove (entered-in-error) one
  entry of critical information, by a physician; the recorder comes from the token.
- ``GET|POST Patient/[id]/$kj-privacy``: the citizen's restriction, blocking and reservation.
- ``POST Patient/[id]/$kj-own-registration``: the patient's own registrations (contacts,
  communication needs, diseases from a fixed list), by the patient or a parent of a child
  under 12 (``own.py``); ``GET /$kj-own-condition-codes``: that list as a CodeSystem.
- ``GET /$document-signing-key``: the public key (JWKS) that verifies ``$summary``.

Every read of the kjernejournal states its basis in ``nhn-access-basis`` (domain.md 2.3) and
is audited with it; emergency and restricted-part accesses are flagged for follow-up.
"""

from __future__ import annotations

import contextlib
import gc
from datetime import datetime

import orjson

from enjournal.fhir import jsonio
from enjournal.fhir.datetime import format_instant
from enjournal.fhir.errors import Conflict, FhirError, Forbidden, Invalid, NotFound
from enjournal.rest.interactions.common import validate_for_write
from enjournal.rest.message import FhirResponse, info_outcome, version_headers
from enjournal.rest.operations import Operation, register
from enjournal.security.audit import audit_event
from enjournal.security.keys import load_or_create
from enjournal.security.scopes import grant
from enjournal.services.inputs import count_refusal, operation_parameters, refused
from enjournal.services.kjernejournal import own, records, rules, signing, summary
from enjournal.services.kjernejournal.privacy import consent_id, to_consent

KJ_TYPES = ("AllergyIntolerance", "Condition", "Procedure", "Device", "Flag")
# The element naming the patient, and the one naming who registered, per type.
PATIENT_ELEMENT = {
    "AllergyIntolerance": "patient",
    "Condition": "subject",
    "Procedure": "subject",
    "Device": "patient",
    "Flag": "subject",
}
RECORDER_ELEMENT = {
    "AllergyIntolerance": "recorder",
    "Condition": "recorder",
    "Procedure": "recorder",
    "Flag": "author",
}


class Service:
    """The operations, bound to the server's settings, key and clock."""

    def __init__(self, context):
        self.context = context
        self._key = None

    @property
    def key(self):
        if self._key is None:
            self._key = load_or_create(self.context.settings.signing_key_file)
        return self._key

    def now(self) -> datetime:
        return self.context.clock()

    def server_device(self) -> dict:
        return {
            "resourceType": "Device",
            "id": "enjournal-server",
            "identifier": [
                {"system": "urn:ietf:rfc:3986", "value": self.context.settings.fhir_base}
            ],
            "deviceName": [{"name": "enjournal kjernejournal", "type": "user-friendly-name"}],
        }

    # ---- access ---------------------------------------------------------------------------

    async def access(self, request, tx, patient_id: str, interaction: str) -> rules.Access:
        """The caller's access to this kjernejournal, or the error to answer with (a refusal
        is audited too)."""
        basis = (request.header("nhn-access-basis") or "").strip().upper() or None
        guard = request.guard
        if guard is None:  # security off (core tests, benchmarks)
            return rules.Access(basis, "TREAT")
        principal = guard.principal
        try:
            if grant(principal.scopes, "Patient", "r") is None:
                raise Forbidden("the token's scopes do not allow reading patient data")
            privacy, _ = await records.privacy(tx, patient_id)
            facts = await guard.facts(tx, patient_id)
            if principal.kind == "citizen":
                return rules.citizen_access(facts.own_record, facts.child_in_care)
            if principal.kind != "personnel":
                raise Forbidden("the kjernejournal is for health personnel and the patient")
            return rules.personnel_access(
                hpr=principal.hpr,
                profession=principal.profession,
                basis=basis,
                reason=guard.emergency_reason,
                care_relationship=facts.care_relationship,
                blocked_by_consent=facts.blocked_by_consent,
                privacy=privacy,
            )
        except FhirError as error:
            count_refusal(guard)
            guard.events.append(
                audit_event(
                    principal,
                    action="R",
                    subtype=interaction,
                    outcome="4",
                    patient_id=patient_id,
                    purpose="ETREAT" if basis == rules.AKUTT else "TREAT",
                    emergency_reason=guard.emergency_reason,
                    request_id=guard.request_id,
                    access_basis=basis if basis in rules.BASES else None,
                    outcome_desc=error.message,
                )
            )
            raise

    async def audit(self, request, tx, patient_id, access, *, action, interaction, refs=()):
        guard = request.guard
        if guard is None:
            return
        principal = guard.principal
        event = audit_event(
            principal,
            action=action,
            subtype=interaction,
            patient_id=patient_id,
            entities=list(refs),
            purpose=access.purpose,
            emergency_reason=guard.emergency_reason if access.emergency else None,
            request_id=guard.request_id,
            access_basis=access.basis,
            organisation_name=await records.organisation_name(tx, principal.org_nr),
        )
        if access.opened_restricted:
            # Flag for follow-up: restricted (sperret) parts were opened.
            for entity in event.get("entity", []):
                if (entity.get("role") or {}).get("code") == "1":
                    entity.setdefault("securityLabel", []).append(
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                            "code": "R",
                            "display": "restricted",
                        }
                    )
                    entity.setdefault("detail", []).append(
                        {
                            "type": "opened-restricted-parts",
                            "valueString": ",".join(sorted(access.opened_restricted)),
                        }
                    )
        guard.events.append(event)

    # ---- $summary -----------------------------------------------------------------------------

    async def summary(self, request, tx) -> FhirResponse:
        patient_id = request.path[1]
        stored = await tx.read("Patient", patient_id)
        access = await self.access(request, tx, patient_id, "$summary")
        now = self.now()
        privacy, _ = await records.privacy(tx, patient_id)
        body = await self.document(tx, stored, access, now, privacy)
        await self.audit(
            request,
            tx,
            patient_id,
            access,
            action="R",
            interaction="$summary",
            refs=[f"Patient/{patient_id}"],
        )
        return FhirResponse(200, body)

    async def document(
        self, tx, stored_patient, access: rules.Access, now: datetime, privacy=None
    ) -> bytes:
        """The signed document, serialised (built cold on every call: no cache).

        The rows are read first, as bytes (what they refer to is found in the bytes); then
        parsing, building, encoding and signing run in one block without cyclic garbage
        collection, and every object they made is freed before collection resumes."""
        found: dict[bytes, tuple] = {}  # stored bytes -> (reference tokens, references)
        by_tokens: dict[tuple, set] = {}  # most rows name the same few references

        def scan(content: bytes) -> bytes:
            if content not in found:
                tokens = summary.reference_tokens(content)
                if tokens is None:
                    refs = summary.referenced(content)
                else:
                    key = tuple(tokens)
                    refs = by_tokens.get(key)
                    if refs is None:
                        refs = by_tokens[key] = summary.referenced(content, tokens)
                found[content] = (tokens, refs)
            return content

        def outside(contents) -> set[tuple[str, str]]:
            return {r for c in contents for r in found[c][1] if r[0] in records.SHARED_TYPES}

        patient = scan(stored_patient.content)
        rows = [scan(r.content) for r in await records.patient_rows(tx, stored_patient.id)]
        shared = await records.shared(tx, outside([patient, *rows]), parse=scan)
        second = outside(shared.values()) - set(shared)
        if second:  # one level further: a PractitionerRole's practitioner
            shared.update(await records.shared(tx, second, parse=scan))
        with _no_collection():
            return self._signed(patient, rows, shared, found, access, now, privacy)

    def _signed(self, patient, rows, shared, found, access, now, privacy=None) -> bytes:
        """Parse, build, encode and sign (no I/O).  Returns only bytes, so the tens of
        thousands of dicts made here are freed by reference counting on return."""
        raw: dict[int, bytes] = {}  # stored bytes by id() of the parsed dict
        refs: dict[int, set[tuple[str, str]]] = {}  # what each refers to, same key
        tokens: dict[int, list[bytes] | None] = {}  # its reference tokens, same key

        def parsed(content: bytes) -> dict:
            resource = jsonio.loads(content)  # decimals as written: they are signed
            key = id(resource)
            raw[key] = content
            tokens[key], refs[key] = found[content]
            return resource

        document = summary.build(
            parsed(patient),
            [parsed(content) for content in rows],
            {ref: parsed(content) for ref, content in shared.items()},
            now=now,
            withheld=access.withheld,
            server=self.server_device(),
            raw=raw,
            refs=refs,
            privacy=privacy,
        )
        body, canonical = summary.encode(document, raw, tokens)
        device_url = document.entries[-1][0]
        signature = signing.signature_of(
            canonical, self.key, document.head["timestamp"], {"reference": device_url}
        )
        return summary.with_signature(body, signature)

    # ---- $kj-status ---------------------------------------------------------------------------

    async def status(self, request, tx) -> FhirResponse:
        guard = request.guard
        if guard is not None and guard.principal.kind != "personnel":
            raise Forbidden("the status call is for health personnel")
        values = operation_parameters(request, "$kj-status")
        nin = values.get("nin") or request.header("nhn-patient-nin")
        if not isinstance(nin, str) or not nin.strip():
            raise Invalid("name the patient: parameter nin or header nhn-patient-nin")
        patient_id = await records.patient_by_nin(tx, nin.strip())
        if patient_id is None:
            raise NotFound("no patient with this national identity number")
        privacy, _ = await records.privacy(tx, patient_id)
        hpr = guard.principal.hpr if guard is not None else None
        out: list[dict] = []
        changed: dict[str, int] = {}
        active = 0
        if privacy.reserved_at is None:
            for row in await records.patient_rows(tx, patient_id, KJ_TYPES):
                if not records.is_kj(row.content):
                    continue
                resource = orjson.loads(row.content)
                tag = records.kj_tag(resource)
                if tag == rules.PATIENT_REGISTRATION or privacy.before_start(
                    (resource.get("meta") or {}).get("lastUpdated")
                ):
                    continue
                changed[tag or row.type] = max(changed.get(tag or row.type, 0), row.last_updated)
                if not rules.entered_in_error(resource):
                    active += 1
        out.append({"name": "hasCriticalInformation", "valueBoolean": active > 0})
        if changed:
            out.append(
                {"name": "lastChanged", "valueDateTime": format_instant(max(changed.values()))}
            )
            for category, ms in sorted(changed.items()):
                out.append(
                    {
                        "name": "changed",
                        "part": [
                            {"name": "category", "valueCode": category},
                            {"name": "dateTime", "valueDateTime": format_instant(ms)},
                        ],
                    }
                )
        out.append({"name": "restricted", "valueBoolean": bool(privacy.restricted)})
        for part in sorted(privacy.restricted):
            out.append({"name": "restrictedPart", "valueCode": part})
        out.append({"name": "reserved", "valueBoolean": privacy.reserved_at is not None})
        out.append({"name": "callerBlocked", "valueBoolean": bool(hpr and hpr in privacy.blocked)})
        return FhirResponse.of({"resourceType": "Parameters", "parameter": out})

    # ---- $kj-critical-info ----------------------------------------------------------------------

    async def critical_info(self, request, tx) -> FhirResponse:
        patient_id = request.path[1]
        await tx.read("Patient", patient_id)
        guard = request.guard
        values = operation_parameters(request, "$kj-critical-info")
        if "remove" not in values and "resource" not in values:
            raise Invalid("$kj-critical-info needs the parameter 'resource' or 'remove'")
        if guard is not None:
            try:
                rules.may_register(guard.principal.kind, guard.principal.profession)
            except Forbidden as error:
                message = error.message
                raise refused(request, "c", "$kj-critical-info", message, patient_id) from None
        access = await self.access(request, tx, patient_id, "$kj-critical-info")
        now = self.now()
        if "remove" in values:
            resource, status = await self._remove(tx, patient_id, values["remove"], request, now)
        else:
            resource, status = await self._register(
                tx, patient_id, values.get("resource"), request, now
            )
        validate_for_write(resource)
        if status == 201:
            stored = await tx.create(resource)
        else:
            stored = await tx.update(resource, resource["id"])
        await self.audit(
            request,
            tx,
            patient_id,
            access,
            action="C" if status == 201 else "U",
            interaction="$kj-critical-info",
            refs=[f"{stored.type}/{stored.id}"],
        )
        headers = version_headers(stored, request.base_url, location=status == 201)
        return FhirResponse(status, stored.content, headers, stored)

    async def _register(self, tx, patient_id, resource, request, now) -> tuple[dict, int]:
        if not isinstance(resource, dict) or resource.get("resourceType") not in KJ_TYPES:
            raise Invalid("give the entry as parameter 'resource': one of " + ", ".join(KJ_TYPES))
        type_ = resource["resourceType"]
        element = PATIENT_ELEMENT[type_]
        named = (resource.get(element) or {}).get("reference")
        if named and named not in (f"Patient/{patient_id}",):
            raise Invalid(
                f"{type_}.{element} names another patient", expression=f"{type_}.{element}"
            )
        resource[element] = {"reference": f"Patient/{patient_id}"}
        category = rules.category_of(resource)
        rules.complete(resource)
        rules.check_entry(resource, category)
        previous = None
        if resource.get("id") and await tx.exists(type_, resource["id"]):
            current = await tx.read_for_update(type_, resource["id"])
            previous = jsonio.loads(current.content)
            if (
                not records.is_kj(previous)
                or (previous.get(element) or {}).get("reference") != f"Patient/{patient_id}"
            ):
                raise Invalid(
                    f"{type_}/{resource['id']} is not this patient's critical information"
                )
        else:
            resource.pop("id", None)
        self._stamp(resource, category, request, now, previous)
        return resource, 201 if previous is None else 200

    async def _remove(self, tx, patient_id, target, request, now) -> tuple[dict, int]:
        ref = summary._parse_reference(
            target if isinstance(target, str) else (target or {}).get("reference")
        )
        if ref is None or ref[0] not in KJ_TYPES:
            raise Invalid("remove names an entry, e.g. AllergyIntolerance/123")
        current = await tx.read_for_update(*ref)
        resource = jsonio.loads(current.content)
        element = PATIENT_ELEMENT[ref[0]]
        if (
            not records.is_kj(resource)
            or (resource.get(element) or {}).get("reference") != f"Patient/{patient_id}"
        ):
            raise NotFound(f"{ref[0]}/{ref[1]} is not this patient's critical information")
        rules.mark_entered_in_error(resource)
        category = rules.category_of(resource)
        self._stamp(resource, category, request, now, jsonio.loads(current.content))
        return resource, 200

    def _stamp(self, resource, category, request, now, previous) -> None:
        """Tag, category and who registered (from the token; the first registrar is kept,
        later changes name the updater)."""
        type_ = resource["resourceType"]
        meta = resource.setdefault("meta", {})
        meta["tag"] = [t for t in meta.get("tag", []) if t.get("system") != rules.KJ] + [
            {"system": rules.KJ, "code": category.code, "display": category.display}
        ]
        if type_ in ("Condition", "Flag"):
            codings = [{"system": rules.KJ, "code": category.code, "display": category.display}]
            if category.nhn_code:
                codings.append(
                    {
                        "system": "http://nhn.no/kj/fhir/CodeSystem/CriticalInfoCategory",
                        "code": category.nhn_code,
                    }
                )
            others = [
                c
                for c in resource.get("category", [])
                if not any(x.get("system") == rules.KJ for x in c.get("coding", []))
            ]
            resource["category"] = [{"coding": codings}, *others]
        guard = request.guard
        principal = guard.principal if guard is not None else None
        me = rules.recorder_role(
            principal.hpr if principal else None,
            principal.name if principal else None,
            principal.org_nr if principal else None,
            principal.profession if principal else None,
            "recorder",
        )
        contained = [
            c for c in resource.get("contained", []) if c.get("id") not in ("recorder", "updater")
        ]
        extensions = [
            e
            for e in resource.get("extension", [])
            if e.get("url") not in (rules.KJ_UPDATER, rules.KJ_UPDATED, rules.REGISTERED_BY)
        ]
        if previous is not None:
            first = next(
                (c for c in previous.get("contained", []) if c.get("id") == "recorder"), me
            )
            contained.append(first)
            updater = dict(me, id="updater")
            contained.append(updater)
            extensions.append(
                {"url": rules.KJ_UPDATER, "valueReference": {"reference": "#updater"}}
            )
            extensions.append(
                {"url": rules.KJ_UPDATED, "valueDateTime": now.isoformat(timespec="seconds")}
            )
        else:
            contained.append(me)
        extensions.append(
            {"url": rules.REGISTERED_BY, "valueReference": {"reference": "#recorder"}}
        )
        resource["contained"] = contained
        resource["extension"] = extensions
        if type_ in RECORDER_ELEMENT:
            resource[RECORDER_ELEMENT[type_]] = {"reference": "#recorder"}
        if type_ in ("AllergyIntolerance", "Condition") and not resource.get("recordedDate"):
            resource["recordedDate"] = now.isoformat(timespec="seconds")

    # ---- $kj-privacy --------------------------------------------------------------------------

    async def privacy(self, request, tx) -> FhirResponse:
        patient_id = request.path[1]
        await tx.read("Patient", patient_id)
        guard = request.guard
        action = "u" if request.method == "POST" else "r"
        values = operation_parameters(request, "$kj-privacy")
        if guard is not None:
            facts = await guard.facts(tx, patient_id)
            if guard.principal.kind != "citizen" or not facts.own_record:
                message = "privacy settings are the patient's own to read and change"
                raise refused(request, action, "$kj-privacy", message, patient_id)
        current, _ = await records.privacy(tx, patient_id)
        if request.method == "POST":
            now = self.now()
            try:
                updated = rules.privacy_from_parameters(values, now, current)
            except Forbidden as error:
                raise refused(request, "u", "$kj-privacy", error.message, patient_id) from None
            consent = to_consent(patient_id, updated, now)
            validate_for_write(consent)
            await tx.update(consent, consent_id(patient_id))
            current = updated
            if guard is not None:
                guard.events.append(
                    audit_event(
                        guard.principal,
                        action="U",
                        subtype="$kj-privacy",
                        patient_id=patient_id,
                        entities=[f"Consent/{consent_id(patient_id)}"],
                        purpose="PATRQT",
                        request_id=guard.request_id,
                    )
                )
        return FhirResponse.of(_privacy_parameters(current))

    async def lift_block(self, request, tx) -> FhirResponse:
        """A health worker who is not blocked lifts the patient's block of another (with a
        reason), as helsenorge sends the patient to (domain.md 2.3).  Audited, and shown in
        the patient's access log; the free-text reason is kept in the settings' history,
        not in the log (citizens' logs show no free text, domain.md 10)."""
        patient_id = request.path[1]
        await tx.read("Patient", patient_id)
        values = operation_parameters(request, "$kj-lift-block", required=("hpr", "reason"))
        hpr, reason = str(values["hpr"]).strip(), str(values["reason"]).strip()
        current, _ = await records.privacy(tx, patient_id)
        await self._may_lift(request, tx, patient_id, current)
        caller_hpr = request.guard.principal.hpr if request.guard is not None else None
        try:
            updated = rules.lift_block(current, hpr, caller_hpr or "trusted", reason)
        except Forbidden as error:
            raise refused(request, "u", "$kj-lift-block", error.message, patient_id) from None
        now = self.now()
        consent = to_consent(patient_id, updated, now)
        consent["extension"] = [_lifted(hpr, caller_hpr, reason, now)]
        validate_for_write(consent)
        await tx.update(consent, consent_id(patient_id))
        guard = request.guard
        if guard is not None:
            guard.events.append(
                audit_event(
                    guard.principal,
                    action="U",
                    subtype="$kj-lift-block",
                    patient_id=patient_id,
                    entities=[f"Consent/{consent_id(patient_id)}"],
                    purpose="TREAT",
                    request_id=guard.request_id,
                    organisation_name=await records.organisation_name(tx, guard.principal.org_nr),
                    outcome_desc=f"Blokkering av helsepersonell (HPR {hpr}) opphevet",
                )
            )
        return FhirResponse.of(_privacy_parameters(updated))

    async def _may_lift(self, request, tx, patient_id: str, privacy: rules.Privacy) -> None:
        """Health personnel with a care relationship whom the patient has not blocked."""
        guard = request.guard
        if guard is None:
            return
        principal = guard.principal
        if principal.kind != "personnel":
            message = "a block is lifted by a health worker who is not blocked, or the helpline"
            raise refused(request, "u", "$kj-lift-block", message, patient_id)
        if privacy.reserved_at is not None:
            message = "no kjernejournal exists for this patient"
            raise refused(request, "u", "$kj-lift-block", message, patient_id, NotFound)
        facts = await guard.facts(tx, patient_id)
        if facts.blocked_by_consent or (principal.hpr and principal.hpr in privacy.blocked):
            message = "a health worker the patient has blocked cannot lift a block"
            raise refused(request, "u", "$kj-lift-block", message, patient_id)
        if facts.care_relationship is None:
            message = "lifting a block needs a care relationship with the patient"
            raise refused(request, "u", "$kj-lift-block", message, patient_id)

    # ---- $kj-own-registration -----------------------------------------------------------------

    async def own_registration(self, request, tx) -> FhirResponse:
        """Add, change or remove one of the patient's own registrations.  The patient
        (own record) or a parent of a child under 12 at the same address (domain.md 2.3:
        parents represent children under 12 on helsenorge); never health personnel."""
        patient_id = request.path[1]
        await tx.read_for_update("Patient", patient_id)  # one writer per patient: the 30 limit
        guard = request.guard
        registrant = None
        if guard is not None:
            principal = guard.principal
            if principal.kind != "citizen":
                message = (
                    "the patient's own registrations are registered by the patient, "
                    "not by health personnel"
                )
                raise refused(request, "u", "$kj-own-registration", message, patient_id)
            facts = await guard.facts(tx, patient_id)
            if not (facts.own_record or facts.child_in_care):
                message = (
                    "own registrations are made by the patient, or a parent for a child under 12"
                )
                raise refused(request, "u", "$kj-own-registration", message, patient_id)
            if facts.child_in_care:
                registrant = own.parent(principal.pid, principal.name, patient_id)
        privacy, _ = await records.privacy(tx, patient_id)
        if privacy.reserved_at is not None:
            raise Conflict(
                "the patient has reserved against having a kjernejournal; withdraw the "
                "reservation ($kj-privacy) before registering"
            )
        values = operation_parameters(request, "$kj-own-registration")
        if "remove" in values:
            return await self._remove_own(request, tx, patient_id, values["remove"])
        resource = own.clean(values.get("resource"), patient_id)
        type_ = resource["resourceType"]
        self._check_scope(request, type_, "u" if resource.get("id") else "c")
        mine = [
            jsonio.loads(row.content)
            for row in await records.patient_rows(tx, patient_id, own.TYPES)
            if records.is_kj(row.content)
        ]
        mine = [r for r in mine if own.is_own(r, patient_id)]
        if resource.get("id"):
            current = next(
                (r for r in mine if (r["resourceType"], r["id"]) == (type_, resource["id"])),
                None,
            )
            if current is None:
                raise NotFound(f"{type_}/{resource['id']} is not one of your own registrations")
        if type_ == "Condition":
            own.check_conditions(
                sum(
                    1
                    for r in mine
                    if r["resourceType"] == "Condition" and r["id"] != resource.get("id")
                )
            )
        own.stamp(resource, patient_id, registrant, self.now())
        validate_for_write(resource)
        if resource.get("id"):
            stored, status = await tx.update(resource, resource["id"]), 200
        else:
            stored, status = await tx.create(resource), 201
        self._audit_own(request, patient_id, "C" if status == 201 else "U", stored)
        headers = version_headers(stored, request.base_url, location=status == 201)
        return FhirResponse(status, stored.content, headers, stored)

    async def _remove_own(self, request, tx, patient_id, target) -> FhirResponse:
        ref = summary._parse_reference(
            target if isinstance(target, str) else (target or {}).get("reference")
        )
        if ref is None or ref[0] not in own.TYPES:
            raise Invalid("remove names a registration, e.g. Condition/123")
        self._check_scope(request, ref[0], "d")
        current = await tx.read_for_update(*ref)
        if not own.is_own(jsonio.loads(current.content), patient_id):
            raise NotFound(f"{ref[0]}/{ref[1]} is not one of your own registrations")
        await tx.delete(*ref)
        self._audit_own(request, patient_id, "D", current)
        return FhirResponse.of(info_outcome(f"{ref[0]}/{ref[1]} removed"))

    def _check_scope(self, request, type_: str, action: str) -> None:
        guard = request.guard
        if guard is not None and grant(guard.principal.scopes, type_, action) is None:
            raise Forbidden(f"the token's scopes do not allow this change of {type_}")

    def _audit_own(self, request, patient_id: str, action: str, stored) -> None:
        guard = request.guard
        if guard is None:
            return
        guard.events.append(
            audit_event(
                guard.principal,
                action=action,
                subtype="$kj-own-registration",
                patient_id=patient_id,
                entities=[f"{stored.type}/{stored.id}"],
                purpose="PATRQT",
                request_id=guard.request_id,
            )
        )

    async def own_condition_codes(self, request, tx) -> FhirResponse:
        return FhirResponse.of(own.code_system())

    # ---- the public key -----------------------------------------------------------------------

    async def signing_key(self, request, tx) -> FhirResponse:
        body = orjson.dumps(signing.jwks_of(self.key))
        return FhirResponse(200, body, {"Content-Type": "application/jwk-set+json"})


@contextlib.contextmanager
def _no_collection():
    """No cyclic garbage collection inside this block.  A document allocates tens of
    thousands of dicts and lists, which trigger collections that scan every live container
    (p95 of one 500-resource document in process 27 -> 12 ms without them).  The objects
    are freed by reference counting when the request ends; collection resumes after the
    block.  Only around code without ``await``, so no other request runs while it is off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


LIFTED = "http://enjournal.no/fhir/StructureDefinition/kj-block-lifted"


def _lifted(hpr: str, by: str | None, reason: str, now: datetime) -> dict:
    """Who lifted which block, when and why (kept in the Consent's version history)."""
    parts = [
        {"url": "blocked", "valueString": hpr},
        {"url": "reason", "valueString": reason[:500]},
        {"url": "when", "valueDateTime": now.isoformat(timespec="seconds")},
    ]
    if by:
        parts.append({"url": "by", "valueString": by})
    return {"url": LIFTED, "extension": parts}


def _privacy_parameters(privacy: rules.Privacy) -> dict:
    out: list[dict] = [{"name": "restrict", "valueCode": p} for p in sorted(privacy.restricted)]
    out += [{"name": "block", "valueString": h} for h in sorted(privacy.blocked)]
    out.append({"name": "reserved", "valueBoolean": privacy.reserved_at is not None})
    if privacy.reserved_at is not None:
        out.append(
            {
                "name": "reservedAt",
                "valueDateTime": privacy.reserved_at.isoformat(timespec="seconds"),
            }
        )
        deletion = privacy.reserved_at + rules.RESERVATION_GRACE
        out.append({"name": "deletionAt", "valueDateTime": deletion.isoformat(timespec="seconds")})
    return {"resourceType": "Parameters", "parameter": out}


def register_operations(context) -> Service:
    service = Service(context)
    base = "http://enjournal.no/fhir/OperationDefinition/"
    register(
        Operation(
            "summary",
            "Patient",
            True,
            service.summary,
            ("GET", "POST"),
            definition="http://hl7.org/fhir/uv/ips/OperationDefinition/summary",
        )
    )
    register(
        Operation(
            "kj-status", None, False, service.status, ("POST",), definition=base + "kj-status"
        )
    )
    register(
        Operation(
            "kj-critical-info",
            "Patient",
            True,
            service.critical_info,
            ("POST",),
            writes=True,
            definition=base + "kj-critical-info",
        )
    )
    register(
        Operation(
            "kj-privacy",
            "Patient",
            True,
            service.privacy,
            ("GET", "POST"),
            writes=True,
            definition=base + "kj-privacy",
        )
    )
    register(
        Operation(
            "kj-lift-block",
            "Patient",
            True,
            service.lift_block,
            ("POST",),
            writes=True,
            definition=base + "kj-lift-block",
        )
    )
    register(
        Operation(
            "kj-own-registration",
            "Patient",
            True,
            service.own_registration,
            ("POST",),
            writes=True,
            definition=base + "kj-own-registration",
        )
    )
    register(
        Operation(
            "kj-own-condition-codes",
            None,
            False,
            service.own_condition_codes,
            ("GET",),
            definition=base + "kj-own-condition-codes",
        )
    )
    register(
        Operation(
            "document-signing-key",
            None,
            False,
            service.signing_key,
            ("GET",),
            definition=base + "document-signing-key",
        )
    )
    return service
