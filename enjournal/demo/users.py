"""The demo's users, taken from the loaded demo population, so their tokens meet real data.

- gp:         the first GP (fastlege) of the first legekontor; the patients on her list are
              hers to read (care relationship: GP list).
- nurse:      a nurse at the same legekontor (care relationship through the office's
              encounters).
- homecare:   the municipal home-care service's nurse (``homecare.py``): follows six older
              patients at home (care relationship: their episodes of care).
- hospital:   a doctor at the first health trust (``hf-...``, in id order), acting for the trust
              (its organisation number and HER-id): receives the demo's referrals, which the
              trust answers automatically, and sends its discharge summaries (messaging).
- pharmacist: a pharmacist at the first pharmacy (sees prescriptions and dispensations only).
- citizen:    a patient on the GP's list, logging in as themself.
- parent:     the helsenorge portal's parent of two children at her address, 5 and 13
              (``portal.py``); acts for the 5-year-old.
- proxy:      holds a fullmakt (areas 1 and 3) from ``giver``; giver: gave it.
- confidential: a person with a strengt fortrolig address (kode 6).
- system:     an integration client with ``system/*.rs`` (client credentials).
"""

from __future__ import annotations

from enjournal.demo.homecare import NURSE_ID as HOMECARE_NURSE
from enjournal.demo.homecare import SERVICE_ORG_NR as HOMECARE_ORG_NR
from enjournal.demo.portal import PORTAL_USERS
from enjournal.fhir import jsonio
from enjournal.fhir.norwegian_ids import OID_FNR, OID_HER_ID, OID_HPR, OID_ORGNR
from enjournal.security.provider import DemoUser
from enjournal.storage import Store

GP_SCOPES = "openid fhirUser user/*.cruds"
# A pharmacist reads, takes and dispenses prescriptions (e-resept); the access policy and
# the service's role rules narrow this further.
PHARMACIST_SCOPES = "openid fhirUser user/*.rs user/MedicationRequest.u user/MedicationDispense.c"
# A citizen reads their record and makes the changes helsenorge offers: privacy settings
# (Consent), a prescription's privacy lock, their own kjernejournal registrations, and the
# GP office's digital services (messages, appointments, forms).
CITIZEN_SCOPES = (
    "openid fhirUser patient/*.rs patient/Consent.cu patient/MedicationRequest.u "
    "patient/Condition.cud patient/RelatedPerson.cud patient/Flag.cud "
    "patient/Communication.c patient/Appointment.cu patient/QuestionnaireResponse.c"
)
SYSTEM_SCOPES = "system/*.rs"
SCOPES = {
    "gp": GP_SCOPES,
    "nurse": GP_SCOPES,
    "homecare": GP_SCOPES,
    "hospital": GP_SCOPES,
    "pharmacist": PHARMACIST_SCOPES,
    "citizen": CITIZEN_SCOPES,
    **{name: CITIZEN_SCOPES for name in PORTAL_USERS},
    "system": SYSTEM_SCOPES,
}


def _identifier(resource: dict, system: str) -> str | None:
    return next(
        (i.get("value") for i in resource.get("identifier", []) if i.get("system") == system), None
    )


async def _get(tx, type_: str, id_: str) -> dict | None:
    if not await tx.exists(type_, id_):
        return None
    return jsonio.loads((await tx.read(type_, id_)).content)


async def demo_users(store: Store) -> list[DemoUser]:
    """The demo users; empty when the database holds no demo population."""
    users: list[DemoUser] = []
    async with store.transaction(write=False) as tx:
        office = await _get(tx, "Organization", "legekontor-0001")
        gp = await _get(tx, "Practitioner", "legekontor-0001-fastlege-1")
        if office is None or gp is None:
            return users
        office_nr, office_her = _identifier(office, OID_ORGNR), _identifier(office, OID_HER_ID)
        users.append(_personnel("gp", gp, "LE", office_nr, office_her))
        nurse = await _get(tx, "Practitioner", "legekontor-0001-sykepleier-1")
        if nurse is not None:
            users.append(_personnel("nurse", nurse, "SP", office_nr, office_her))
        homecare = await _get(tx, "Practitioner", HOMECARE_NURSE)
        if homecare is not None:  # the home follow-up's nurse (demo/homecare.py)
            users.append(_personnel("homecare", homecare, "SP", HOMECARE_ORG_NR, None))
        hospital = await _hospital_doctor(tx)
        if hospital is not None:
            users.append(hospital)
        pharmacy = await _get(tx, "Organization", "apotek-0001")
        if pharmacy is not None:
            users.append(
                DemoUser(
                    name="pharmacist",
                    kind="personnel",
                    display_name="Farmasøyt Demo",
                    hpr=_pharmacist_hpr(_identifier(pharmacy, OID_ORGNR) or "0"),
                    profession="FA1",
                    org_nr=_identifier(pharmacy, OID_ORGNR),
                    her_id=_identifier(pharmacy, OID_HER_ID),
                )
            )
        listed = await tx.referencing_target(
            "Practitioner", gp["id"], ("Patient",), "general-practitioner", limit=1
        )
        if listed:  # the GP's first listed patient
            patient = jsonio.loads(listed[0].content)
            name = patient["name"][0]
            users.append(
                DemoUser(
                    name="citizen",
                    kind="citizen",
                    display_name=" ".join([*name.get("given", []), name.get("family", "")]),
                    pid=_identifier(patient, OID_FNR),
                    patient=listed[0].id,
                    fhir_user=f"Patient/{listed[0].id}",
                )
            )
        for handle, patient_id in PORTAL_USERS.items():
            portal_patient = await _get(tx, "Patient", patient_id)
            if portal_patient is not None:
                users.append(_citizen(handle, portal_patient))
    return users


async def _hospital_doctor(tx) -> DemoUser | None:
    """The first health trust's first doctor, acting for the trust (its number and HER-id)."""
    for found in await tx.with_id_prefix("Organization", "hf-", limit=50):
        trust = jsonio.loads(found.content)
        if (trust.get("type") or [{}])[0].get("text") != "Helseforetak":
            continue
        doctors = await tx.with_id_prefix("Practitioner", f"{found.id}-", limit=50)
        doctor = next((d for d in doctors if "-lege-" in d.id), None)
        if doctor is None:
            return None
        return _personnel(
            "hospital", jsonio.loads(doctor.content), "LE",
            _identifier(trust, OID_ORGNR), _identifier(trust, OID_HER_ID),
        )  # fmt: skip
    return None


def _citizen(handle: str, patient: dict) -> DemoUser:
    name = patient["name"][0]
    return DemoUser(
        name=handle,
        kind="citizen",
        display_name=" ".join([*name.get("given", []), name.get("family", "")]),
        pid=_identifier(patient, OID_FNR),
        patient=patient["id"],
        fhir_user=f"Patient/{patient['id']}",
    )


def _personnel(handle: str, practitioner: dict, profession: str, org_nr, her_id) -> DemoUser:
    name = practitioner["name"][0]
    return DemoUser(
        name=handle,
        kind="personnel",
        display_name=" ".join([*name.get("given", []), name.get("family", "")]),
        hpr=_identifier(practitioner, OID_HPR),
        profession=profession,
        org_nr=org_nr,
        her_id=her_id,
        fhir_user=f"Practitioner/{practitioner['id']}",
    )


def _pharmacist_hpr(seed: str) -> str:
    # Deterministic per demo population, nine digits like a real HPR number.
    return str(900000000 + int(seed) % 99999999)[:9]
