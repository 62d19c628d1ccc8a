"""The demo's citizen-portal world (helsenorge, docs/helsenorge.md): families, a fullmakt,
a person with a confidential address, a form, and the GP offices' free appointment slots.

Added at load time, next to the generated population, with fixed ids so the demo users
(``users.py``) meet them:

- a parent (``demo-forelder``) with two children at the same address, aged 5
  (``demo-barn-5``, the parent acts for her) and 13 (``demo-barn-13``, no longer), linked by
  RelatedPersons with the parent's fødselsnummer and role MTH;
- a fullmakt: ``demo-fullmaktsgiver`` (A, 84) gave ``demo-fullmektig`` (B) a power of
  attorney (RelatedPerson ``demo-fullmakt``, role HPOWATT) for service areas 1 (innsyn) and
  3 (digitale helsetjenester);
- ``demo-fortrolig``, whose address is strengt fortrolig (kode 6);
- each on the list of the first GP (the ``gp`` demo user) with allergies, prescriptions,
  visits, and a message thread with the GP; the children with vaccines;
- the questionnaire ``egenrapport-for-time`` (a self-report before a GP visit);
- Schedules and Slots of the GPs of the first offices for the next three weeks (weekdays
  08:00-15:00 Norwegian time, 20 minutes each, some busy).

Everything is derived from the seed and the load date: ages and slots are relative to the
day the demo loads (the slots must lie ahead).  ``load_portal`` stores only what is
missing, so a reused demo database keeps its bookings and gains the new days' slots.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from enjournal.demo import codes, places
from enjournal.demo.population import _build_world, _Clock, _medication_id
from enjournal.fhir import norwegian_ids as ids

GP_ID = "legekontor-0001-fastlege-1"
OFFICE_ID = "legekontor-0001"
GP, OFFICE = f"Practitioner/{GP_ID}", f"Organization/{OFFICE_ID}"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
AREA_EXTENSION = "https://enjournal.no/fhir/StructureDefinition/fullmakt-area"
AREA_SYSTEM = "https://enjournal.no/fhir/CodeSystem/helsenorge-service-area"
ADDRESS_PROTECTION = "https://enjournal.no/fhir/CodeSystem/adressebeskyttelse"
TOPIC_SYSTEM = "https://enjournal.no/fhir/CodeSystem/helsenorge-message-topic"
QUESTIONNAIRE_ID = "egenrapport-for-time"
# The demo citizens of the portal: demo user name -> Patient id.
PORTAL_USERS = {
    "parent": "demo-forelder",
    "proxy": "demo-fullmektig",
    "giver": "demo-fullmaktsgiver",
    "confidential": "demo-fortrolig",
}
CHILDREN = ("demo-barn-5", "demo-barn-13")
SLOT_OFFICES = 3  # the GP offices whose GPs get slots (every GP would be millions at scale)
SLOT_DAYS = 21
SLOT_MINUTES = 20
DAY_START, DAY_END = 8 * 60, 15 * 60
BUSY_SHARE = 0.3


# ---- people ---------------------------------------------------------------------------------

# (Patient id, age in years, extra days, female, given, family, lives at the family address)
PEOPLE = (
    ("demo-forelder", 41, 120, True, "Ingrid", "Solberg", True),
    ("demo-barn-5", 5, 90, True, "Emma", "Solberg", True),
    ("demo-barn-13", 13, 200, False, "Jonas", "Solberg", True),
    ("demo-fullmaktsgiver", 84, 30, False, "Arne", "Haugen", False),
    ("demo-fullmektig", 55, 250, True, "Kristin", "Haugen", False),
    ("demo-fortrolig", 34, 10, True, "Nora", "Berg", False),
)


def _born(today: date, years: int, days: int) -> date:
    return date(today.year - years, today.month, min(today.day, 28)) - timedelta(days=days)


def _address(line: str) -> dict:
    m = places.MUNICIPALITIES[0]
    return {
        "use": "home",
        "line": [line],
        "city": m.post_town,
        "district": m.name,
        "postalCode": m.postal_code,
        "country": "NO",
    }


def _patient(row: tuple, today: date, rng: random.Random) -> dict:
    id_, years, days, female, given, family, family_home = row
    birth = _born(today, years, days)
    patient: dict = {
        "resourceType": "Patient",
        "id": id_,
        "identifier": [{"system": ids.OID_FNR, "value": ids.make_fnr(birth, rng, female=female)}],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "female" if female else "male",
        "birthDate": birth.isoformat(),
        "generalPractitioner": [{"reference": GP}],
    }
    if id_ == "demo-fortrolig":
        # Strengt fortrolig adresse (kode 6): the address is not recorded.
        patient["meta"] = {
            "security": [{"system": ADDRESS_PROTECTION, "code": "strengt-fortrolig"}]
        }
    else:
        street = (
            "Bjørkeveien 12"
            if family_home
            else f"{rng.choice(places.STREETS)} {rng.randint(1, 90)}"
        )
        patient["address"] = [_address(street)]
    return patient


def _fnr(patient: dict) -> str:
    return patient["identifier"][0]["value"]


def _related(id_: str, patient: str, of: dict, role: str, display: str) -> dict:
    """A RelatedPerson in ``patient``'s record naming the person ``of`` by fødselsnummer."""
    name = of["name"][0]
    return {
        "resourceType": "RelatedPerson",
        "id": id_,
        "active": True,
        "patient": {"reference": f"Patient/{patient}"},
        "identifier": [{"system": ids.OID_FNR, "value": _fnr(of)}],
        "relationship": [{"coding": [{"system": ROLE_CODE, "code": role, "display": display}]}],
        "name": [{"family": name["family"], "given": name["given"]}],
    }


def _fullmakt(giver: str, holder: dict, start: date) -> dict:
    related = _related("demo-fullmakt", giver, holder, "HPOWATT", "healthcare power of attorney")
    related["period"] = {"start": start.isoformat()}
    related["extension"] = [
        {
            "url": AREA_EXTENSION,
            "valueCoding": {"system": AREA_SYSTEM, "code": area, "display": text},
        }
        for area, text in (
            ("1", "Innsyn i opplysninger registrert om deg"),
            ("3", "Digitale helsetjenester"),
        )
    ]
    return related


# ---- record content -------------------------------------------------------------------------


class _Record:
    """One patient's resources, with ids ``<patient>-<kind>-<n>``."""

    def __init__(self, patient_id: str, today: date, out: list[dict]):
        self.patient_id, self.today, self.out = patient_id, today, out
        self.clock = _Clock()
        self.n = 0

    def add(self, kind: str, resource: dict) -> str:
        self.n += 1
        resource["id"] = f"{self.patient_id}-{kind}-{self.n}"
        self.out.append(resource)
        return f"{resource['resourceType']}/{resource['id']}"

    def at(self, days_ago: int, minute: int) -> str:
        return self.clock.at((self.today - timedelta(days=days_ago)).toordinal(), minute)

    @property
    def me(self) -> dict:
        return {"reference": f"Patient/{self.patient_id}"}

    def allergy(self, index: int, days_ago: int) -> None:
        category, text, atc, criticality, reaction = codes.ALLERGIES[index]
        code: dict = {"text": text}
        if atc:
            code["coding"] = [{"system": codes.ATC, "code": atc, "display": text}]
        self.add(
            "allergi",
            {
                "resourceType": "AllergyIntolerance",
                "clinicalStatus": _coding(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"
                ),
                "verificationStatus": _coding(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "confirmed",
                ),
                "type": "allergy",
                "category": [category],
                "criticality": criticality,
                "code": code,
                "patient": self.me,
                "recordedDate": self.at(days_ago, 600)[:10],
                "recorder": {"reference": GP},
                "reaction": [{"manifestation": [{"text": reaction}]}],
            },
        )

    def visit(self, days_ago: int, text: str) -> str:
        return self.add(
            "konsultasjon",
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                    "display": "ambulatory",
                },
                "type": [{"text": text}],
                "subject": self.me,
                "participant": [{"individual": {"reference": GP}}],
                "period": {"start": self.at(days_ago, 540), "end": self.at(days_ago, 560)},
                "serviceProvider": {"reference": OFFICE},
            },
        )

    def prescription(self, medicine: str, days_ago: int, encounter: str | None = None) -> str:
        m = codes.MEDICATIONS[medicine]
        request: dict = {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationReference": {
                "reference": f"Medication/{_medication_id(medicine)}",
                "display": m.text,
            },
            "subject": self.me,
            "authoredOn": self.at(days_ago, 560),
            "requester": {"reference": GP},
            "dosageInstruction": [{"text": m.dosage}],
        }
        if encounter:
            request["encounter"] = {"reference": encounter}
        return self.add("resept", request)

    def vaccine(self, key: str, days_ago: int) -> None:
        v = codes.VACCINES[key]
        self.add(
            "vaksine",
            {
                "resourceType": "Immunization",
                "status": "completed",
                "vaccineCode": {
                    "coding": [{"system": codes.ATC, "code": v.atc, "display": v.display}],
                    "text": v.display,
                },
                "patient": self.me,
                "occurrenceDateTime": self.at(days_ago, 600),
                "primarySource": True,
                "performer": [{"actor": {"reference": GP}}],
            },
        )

    def message(self, sender: str, text: str, topic: str, days_ago: int, **links) -> str:
        """A Communication in this patient's thread with the GP office (``sender``: the
        GP, or the patient or a representative writing to the GP and the office)."""
        from_gp = sender == GP
        resource: dict = {
            "resourceType": "Communication",
            "status": "completed",
            "category": [{"coding": [{"system": TOPIC_SYSTEM, "code": topic}]}],
            "subject": self.me,
            "sent": self.at(days_ago, 600 if not from_gp else 780),
            "recipient": [self.me] if from_gp else [{"reference": GP}, {"reference": OFFICE}],
            "sender": {"reference": sender},
            "payload": [{"contentString": text}],
        }
        for key, ref in links.items():
            resource[key] = [{"reference": ref}]
        return self.add("melding", resource)


def _coding(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def _content(today: date, out: list[dict]) -> None:
    parent = _Record("demo-forelder", today, out)
    parent.allergy(0, 900)  # penicillin
    visit = parent.visit(60, "Konsultasjon hos fastlege")
    parent.prescription("cetirizine", 60, visit)
    parent.prescription("levothyroxine", 300)
    asked = parent.message(
        "Patient/demo-forelder", "Hei! Kan jeg ta allergitabletten sammen med Levaxin?", "dialog", 5
    )
    parent.message(
        GP,
        "Ja, det går fint. Ta dem gjerne med et par timers mellomrom.",
        "dialog",
        4,
        inResponseTo=asked,
    )
    small = _Record("demo-barn-5", today, out)
    small.allergy(3, 700)  # peanuts
    small.vaccine("mmr", 4 * 365)
    small.vaccine("dtap_ipv_hib_hepb", 5 * 365 - 60)
    small.visit(30, "Konsultasjon hos fastlege")
    teen = _Record("demo-barn-13", today, out)
    teen.vaccine("mmr", 2 * 365)
    teen.vaccine("hpv", 200)
    teen.allergy(5, 1200)  # birch pollen
    teen.prescription("mometasone_nasal", 45, teen.visit(45, "Konsultasjon hos fastlege"))
    giver = _Record("demo-fullmaktsgiver", today, out)
    giver.allergy(2, 2000)  # ibuprofen
    visit = giver.visit(90, "Kontroll diabetes")
    metformin = giver.prescription("metformin", 90, visit)
    giver.prescription("apixaban", 200)
    giver.prescription("atorvastatin", 200)
    asked = giver.message(
        "RelatedPerson/demo-fullmakt",
        "Far trenger ny resept på Metformin.",
        "fornyelse",
        10,
        about=metformin,
    )
    giver.message(GP, "Resepten er fornyet.", "fornyelse", 9, inResponseTo=asked)
    proxy = _Record("demo-fullmektig", today, out)
    proxy.prescription("atorvastatin", 150, proxy.visit(150, "Konsultasjon hos fastlege"))
    hidden = _Record("demo-fortrolig", today, out)
    hidden.allergy(4, 400)  # shellfish
    hidden.prescription("sertraline", 120, hidden.visit(120, "Konsultasjon hos fastlege"))


def questionnaire() -> dict:
    """A short self-report before a GP visit (bokmål), with the common item types."""
    return {
        "resourceType": "Questionnaire",
        "id": QUESTIONNAIRE_ID,
        "url": f"https://enjournal.no/fhir/Questionnaire/{QUESTIONNAIRE_ID}",
        "version": "1",
        "name": "EgenrapportForTime",
        "title": "Egenrapport før time hos fastlegen",
        "status": "active",
        "subjectType": ["Patient"],
        "publisher": "enjournal demo",
        "item": [
            {
                "linkId": "arsak",
                "text": "Hva vil du snakke med legen om?",
                "type": "string",
                "required": True,
            },
            {
                "linkId": "varighet",
                "text": "Hvor mange dager har du hatt plagene?",
                "type": "integer",
            },
            {"linkId": "feber", "text": "Har du hatt feber siste døgn?", "type": "boolean"},
            {
                "linkId": "smerte",
                "text": "Hvor sterke smerter har du?",
                "type": "choice",
                "answerOption": [
                    {
                        "valueCoding": {
                            "system": f"https://enjournal.no/fhir/CodeSystem/{QUESTIONNAIRE_ID}-smerte",
                            "code": code,
                            "display": text,
                        }
                    }
                    for code, text in (
                        ("ingen", "Ingen"),
                        ("lette", "Lette"),
                        ("moderate", "Moderate"),
                        ("sterke", "Sterke"),
                    )
                ],
            },
            {
                "linkId": "legemidler",
                "text": "Bruker du legemidler som ikke står i listen din?",
                "type": "text",
            },
        ],
    }


def portal_resources(seed: int, today: date) -> list[dict]:
    """The families, the fullmakt, the confidential person, their records and the form."""
    rng = random.Random(f"enjournal-demo-portal:{seed}")
    people = {row[0]: _patient(row, today, rng) for row in PEOPLE}
    out = list(people.values())
    parent = people["demo-forelder"]
    for child in CHILDREN:
        out.append(_related(f"{child}-mor", child, parent, "MTH", "mother"))
    out.append(
        _fullmakt("demo-fullmaktsgiver", people["demo-fullmektig"], today - timedelta(days=30))
    )
    _content(today, out)
    out.append(questionnaire())
    return out


# ---- the GPs' appointment slots -------------------------------------------------------------


def slot_resources(
    patients: int, seed: int, today: date, offices: int = SLOT_OFFICES
) -> list[dict]:
    """A Schedule per GP of the first ``offices`` offices (actor: the GP and their role at
    the office), and its 20-minute Slots on the weekdays of the ``SLOT_DAYS`` days after
    ``today``."""
    world = _build_world(patients, seed)
    clock = _Clock()
    out: list[dict] = []
    for office in world.offices[:offices]:
        for gp in office.gps:
            gp_id = gp.ref.split("/", 1)[1]
            out.append(_schedule(gp_id, gp.ref))
            for day in range(1, SLOT_DAYS + 1):
                when = today + timedelta(days=day)
                if when.weekday() < 5:
                    out += _day_slots(gp_id, when, clock, seed)
    return out


def _schedule(gp_id: str, gp_ref: str) -> dict:
    # Schedule.actor names no Organization: the GP's role at the office stands for it.
    return {
        "resourceType": "Schedule",
        "id": f"timebok-{gp_id}",
        "active": True,
        "serviceType": [{"text": "Time hos fastlege"}],
        "actor": [{"reference": gp_ref}, {"reference": f"PractitionerRole/{gp_id}-role"}],
        "comment": "Fastlegens timebok",
    }


def _day_slots(gp_id: str, day: date, clock: _Clock, seed: int) -> list[dict]:
    rng = random.Random(f"enjournal-demo-slots:{seed}:{gp_id}:{day.isoformat()}")
    slots = []
    for minute in range(DAY_START, DAY_END, SLOT_MINUTES):
        slots.append(
            {
                "resourceType": "Slot",
                "id": f"time-{gp_id}-{day:%Y%m%d}-{minute // 60:02d}{minute % 60:02d}",
                "schedule": {"reference": f"Schedule/timebok-{gp_id}"},
                "serviceType": [{"text": "Time hos fastlege"}],
                "status": "busy" if rng.random() < BUSY_SHARE else "free",
                "start": clock.at(day.toordinal(), minute),
                "end": clock.at(day.toordinal(), minute + SLOT_MINUTES),
            }
        )
    return slots


async def load_portal(store, patients: int, seed: int, today: date) -> int:
    """Store what of the portal world and the slots is not there yet; how many were added.
    Existing resources are left alone: a slot booked in the demo stays booked."""
    added = 0
    async with store.transaction() as tx:
        for resource in [*portal_resources(seed, today), *slot_resources(patients, seed, today)]:
            if not await tx.exists(resource["resourceType"], resource["id"]):
                await tx.update(resource, resource["id"])
                added += 1
    return added
