"""The municipal health and care services of a demo patient, for the KPR feed (issue 15).

The population (``population.py``) holds GP contacts and hospital stays; the municipality's
other services are added here, after everything else of a patient and from the patient's own
random stream, so every other resource of the population stays exactly as it was:

- out-of-hours contacts (legevakt): an ``Encounter`` (class EMER) at the municipality with an
  ICPC-2 diagnosis (a ``Condition``), for any age;
- services decided for a person (tjenester), each an ``EpisodeOfCare`` at the municipality
  whose ``type`` is the KPR service code: home nursing (15 "Helsetjenester i hjemmet"),
  practical help (1 "Praktisk bistand - daglige gjøremål"), stays in a nursing home
  (18 "Tidsbegrenset opphold - utredning/behandling", 21 "Langtidsopphold i institusjon")
  and safety alarm (6 "Trygghetsalarm", with its ``Device``), mostly for older patients.

Codes: the KPR service numbers are Helsedirektoratet's (report "Kommunale helse- og
omsorgstjenester 2021", table of services reported to KPR helse og omsorg).  ASSUMED: the
code-system URLs (no published FHIR code system was found), the contact-type codes
``fastlege``/``legevakt``, the hours-per-week extension, the device type code ``TA`` (the
VKP service code, domain.md 6), and every rate below (plausible, not measured).
"""

from __future__ import annotations

from typing import Any

KPR_SERVICE = "https://enjournal.no/fhir/CodeSystem/kpr-tjeneste"  # ASSUMED URL
KPR_CONTACT = "https://enjournal.no/fhir/CodeSystem/kpr-kontakttype"  # ASSUMED
HOURS_PER_WEEK = "https://enjournal.no/fhir/StructureDefinition/kpr-timer-per-uke"  # ASSUMED
WELFARE_TECH = "https://enjournal.no/fhir/CodeSystem/velferdsteknologi-tjeneste"  # ASSUMED
ICPC2 = "urn:oid:2.16.578.1.12.4.1.1.7170"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

SERVICES = {
    "1": "Praktisk bistand - daglige gjøremål",
    "6": "Trygghetsalarm",
    "15": "Helsetjenester i hjemmet",
    "18": "Tidsbegrenset opphold i institusjon - utredning/behandling",
    "21": "Langtidsopphold i institusjon",
}
# (service, minimum age, yearly chance of getting it at 67-79, 80-89, 90+): ASSUMED rates
RATES = (
    ("15", 67, (0.015, 0.06, 0.12)),
    ("1", 67, (0.01, 0.04, 0.08)),
    ("6", 70, (0.01, 0.05, 0.09)),
    ("18", 75, (0.005, 0.03, 0.05)),
    ("21", 80, (0.0, 0.02, 0.06)),
)
HOURS = {"1": (1.0, 6.0), "15": (1.5, 14.0)}  # hours per week decided (ASSUMED ranges)
# Out-of-hours diagnoses (ICPC-2 codes; displays ASSUMED from the Norwegian ICPC-2 names)
OUT_OF_HOURS = (
    ("R74", "Akutt øvre luftveisinfeksjon"),
    ("U71", "Cystitt/urinveisinfeksjon IKA"),
    ("H71", "Akutt mellomørebetennelse/myringitt"),
    ("D73", "Gastroenteritt antatt infeksiøs"),
    ("S18", "Kutt/flenge"),
    ("L77", "Forstuing/forstrekking ankel"),
    ("A03", "Feber"),
    ("R81", "Lungebetennelse"),
)
OUT_OF_HOURS_PER_YEAR = 0.2  # ASSUMED: about one in five people a year


def add_services(patient: Any) -> None:
    """Add the municipal services of ``patient`` (a ``population._Patient`` being built)."""
    out_of_hours_contacts(patient)
    for service, min_age, rates in RATES:
        if patient.age < min_age:
            continue
        rate = rates[0] if patient.age < 80 else rates[1] if patient.age < 90 else rates[2]
        years = patient.opts.history_years
        if patient.rng.random() < 1 - (1 - rate) ** years:
            _service(patient, service)


def out_of_hours_contacts(patient: Any) -> None:
    start = max(patient.window_start, patient.birth + 30)
    years = (patient.today - start) / 365.0
    if years <= 0:
        return
    for _ in range(patient._poisson(OUT_OF_HOURS_PER_YEAR * years * patient.opts.visit_scale)):
        _out_of_hours(patient, patient.ri(start, patient.today - 1))


def _municipality(patient: Any) -> dict:
    m = patient.municipality
    return {"reference": f"Organization/kommune-{m.code}", "display": f"{m.name} kommune"}


def _out_of_hours(patient: Any, day: int) -> None:
    minute = patient.ri(16 * 60, 23 * 60 + 30)  # evenings: when the GP office is closed
    code, display = patient.rng.choice(OUT_OF_HOURS)
    encounter: dict = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "EMER", "display": "emergency"},
        "type": [
            {
                "coding": [{"system": KPR_CONTACT, "code": "legevakt", "display": "Legevakt"}],
                "text": "Legevaktkonsultasjon",
            }
        ],
        "subject": patient.subject,
        "period": {
            "start": patient.clock.at(day, minute),
            "end": patient.clock.at(day, min(minute + 25, 1439)),
        },
        "serviceProvider": _municipality(patient),
    }
    encounter_ref = patient.add(encounter)
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": "resolved"}]},
        "verificationStatus": {"coding": [{"system": _VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": _CATEGORY, "code": "encounter-diagnosis"}]}],
        "code": {"coding": [{"system": ICPC2, "code": code, "display": display}], "text": display},
        "subject": patient.subject,
        "encounter": {"reference": encounter_ref},
        "recordedDate": patient.clock.date(day),
    }
    condition_ref = patient.add(condition)
    encounter["diagnosis"] = [{"condition": {"reference": condition_ref}, "rank": 1}]


_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"


def _service(patient: Any, service: str) -> None:
    """One decided service as an EpisodeOfCare (and a safety alarm's Device)."""
    first = max(patient.window_start, patient.birth + 67 * 365)
    if first >= patient.today - 14:
        return
    start = patient.ri(first, patient.today - 14)
    end = _end(patient, service, start)
    episode: dict = {
        "resourceType": "EpisodeOfCare",
        "status": "finished" if end is not None else "active",
        "type": [
            {
                "coding": [{"system": KPR_SERVICE, "code": service, "display": SERVICES[service]}],
                "text": SERVICES[service],
            }
        ],
        "patient": patient.subject,
        "managingOrganization": _municipality(patient),
        "period": {"start": patient.clock.date(start)},
    }
    if end is not None:
        episode["period"]["end"] = patient.clock.date(end)
    if service in HOURS:
        low, high = HOURS[service]
        hours = round(low + patient.rng.random() * (high - low), 1)
        episode["extension"] = [{"url": HOURS_PER_WEEK, "valueDecimal": hours}]
    patient.add(episode)
    if service == "6":
        patient.add(_alarm_device(patient, in_use=end is None))


def _end(patient: Any, service: str, start: int) -> int | None:
    """A short stay ends within weeks; other services sometimes end, long-term stays not."""
    if service == "18":
        return min(start + patient.ri(7, 42), patient.today - 1)
    if service == "21" or patient.rng.random() < 0.7:
        return None
    end = start + patient.ri(30, 720)
    return end if end < patient.today else None


def _alarm_device(patient: Any, in_use: bool) -> dict:
    return {
        "resourceType": "Device",
        "status": "active" if in_use else "inactive",  # handed back when the service ended
        "type": {
            "coding": [{"system": WELFARE_TECH, "code": "TA", "display": "Trygghetsalarm"}],
            "text": "Trygghetsalarm",
        },
        "patient": patient.subject,
        "owner": _municipality(patient),
    }
