"""A deterministic synthetic Norwegian population as FHIR R4 transaction Bundles.

``generate_population(patients, seed)`` yields first one bundle of *shared* resources
(regional and local health trusts with departments, municipalities, GP offices, pharmacies,
practitioners with roles, medicines), all with client-chosen ids and ``PUT`` entries, then one
bundle per patient whose resources are ``POST`` entries with ``urn:uuid:`` fullUrls. Patient
resources point to shared ones with literal ``Type/id`` references.

Everything is derived from ``seed`` (and the options) only, so the same call always yields the
same JSON. Person numbers are synthetic Tenor-style fødselsnummer (month + 80) that pass the
mod-11 checks but can never belong to a real person; organisation numbers, HER-ids, RESH-ids
and HPR-numbers are random but well formed.
"""

from __future__ import annotations

import gc
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import orjson

from enjournal.demo import codes, municipal, names, places
from enjournal.fhir import norwegian_ids as ids

DEFAULT_AS_OF = date(2025, 1, 1)

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/practitioner-role"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
CITIZENSHIP = "http://hl7.org/fhir/StructureDefinition/patient-citizenship"
PROPERTY_INFO = "http://hl7.no/fhir/StructureDefinition/no-basis-propertyinformation"
ADDRESS_OFFICIAL = "http://hl7.no/fhir/StructureDefinition/no-basis-address-official"

#: Patients per GP list (fastlegeliste); the national average is a little over 1,000.
PATIENTS_PER_GP = 1_100
#: Share of the population per 5-year age band 0-4 ... 100-104 (SSB 2024, rounded).
AGE_BANDS = (
    5.3,
    5.8,
    6.2,
    6.2,
    6.3,
    6.9,
    7.0,
    6.8,
    6.6,
    6.6,
    6.9,
    6.6,
    6.0,
    5.3,
    5.0,
    4.0,
    2.5,
    1.3,
    0.6,
    0.15,
    0.01,
)
#: Mean resources per patient ~= _FIXED + _PER_SCALE * visit scale (measured, 2,000 patients).
_FIXED_RESOURCES = 7.7
_RESOURCES_PER_SCALE = 52.5


_TRUST_REGION = {t.key: t.region for t in places.HEALTH_TRUSTS}


# --- small FHIR helpers --------------------------------------------------------------------


def _ref(target: str, display: str | None = None) -> dict:
    return {"reference": target, "display": display} if display else {"reference": target}


def _cc(system: str, code: str, display: str, text: str | None = None) -> dict:
    concept: dict = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        concept["text"] = text
    return concept


def _ident(system: str, value: str) -> dict:
    return {"system": system, "value": value}


_CLINICAL = {c: _cc(COND_CLINICAL, c, c.capitalize()) for c in ("active", "resolved")}
_CONFIRMED = _cc(COND_VERIFICATION, "confirmed", "Confirmed")
_PROBLEM = [_cc(COND_CATEGORY, "problem-list-item", "Problem List Item")]
_ENC_DIAGNOSIS = [_cc(COND_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")]
_OBS_CATEGORIES = {
    c: [_cc(OBS_CATEGORY, c, d)]
    for c, d in (("vital-signs", "Vital Signs"), ("laboratory", "Laboratory"))
}
_CLASS = {
    "AMB": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
    "VR": {"system": ACT_CODE, "code": "VR", "display": "virtual"},
    "IMP": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
    "EMER": {"system": ACT_CODE, "code": "EMER", "display": "emergency"},
}
_PROVIDER = {"system": ORG_TYPE, "code": "prov", "display": "Healthcare Provider"}
_GOVERNMENT = {"system": ORG_TYPE, "code": "govt", "display": "Government"}


class _Clock:
    """dateTime strings in Norwegian local time (CET/CEST), cached per day."""

    def __init__(self) -> None:
        self._days: dict[int, tuple[str, str]] = {}

    def day(self, ordinal: int) -> tuple[str, str]:
        cached = self._days.get(ordinal)
        if cached is None:
            d = date.fromordinal(ordinal)
            cached = (d.isoformat(), "+02:00" if _is_summer_time(d) else "+01:00")
            self._days[ordinal] = cached
        return cached

    def at(self, ordinal: int, minute: int) -> str:
        day, offset = self.day(ordinal)
        return f"{day}T{minute // 60:02d}:{minute % 60:02d}:00{offset}"

    def date(self, ordinal: int) -> str:
        return self.day(ordinal)[0]


def _last_sunday(year: int, month: int) -> date:
    last = date(year, month + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() + 1) % 7)


def _is_summer_time(d: date) -> bool:
    return _last_sunday(d.year, 3) <= d < _last_sunday(d.year, 10)


# --- the shared world ----------------------------------------------------------------------


@dataclass
class _Staff:
    ref: str  # "Practitioner/id"
    name: str


@dataclass
class _GpOffice:
    ref: str
    municipality: places.Municipality
    gps: list[_Staff] = field(default_factory=list)
    nurse: _Staff | None = None


@dataclass
class _World:
    resources: list[dict] = field(default_factory=list)
    offices: list[_GpOffice] = field(default_factory=list)
    #: trust key -> department key -> (Organization ref, doctors, nurse)
    departments: dict[str, dict[str, tuple[str, list[_Staff], _Staff]]] = field(
        default_factory=dict
    )
    gp_by_municipality: dict[str, list[tuple[_GpOffice, _Staff]]] = field(default_factory=dict)
    gp_by_trust: dict[str, list[tuple[_GpOffice, _Staff]]] = field(default_factory=dict)
    gp_by_region: dict[str, list[tuple[_GpOffice, _Staff]]] = field(default_factory=dict)
    all_gps: list[tuple[_GpOffice, _Staff]] = field(default_factory=list)


class _Numbers:
    """Unique random identifiers of each kind."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def _unique(self, make) -> str:
        while True:
            value = make()
            if value not in self.used:
                self.used.add(value)
                return value

    def orgnr(self) -> str:
        return self._unique(lambda: ids.make_orgnr(self.rng))

    def her_id(self) -> str:
        return self._unique(lambda: str(self.rng.randint(100_000, 9_999_999)))

    def resh(self) -> str:
        return self._unique(lambda: str(self.rng.randint(100_000, 999_999)))

    def hpr(self) -> str:
        return self._unique(lambda: str(self.rng.randint(1_000_000, 9_999_999)))


def _address(line: str, m: places.Municipality, *, use: str | None = None) -> dict:
    address: dict = {}
    if use:
        address["use"] = use
    address.update(
        line=[line], city=m.post_town, district=m.name, postalCode=m.postal_code, country="NO"
    )
    return address


def _person_name(rng: random.Random, female: bool) -> tuple[str, list[str]]:
    given = rng.choice(names.FEMALE_GIVEN if female else names.MALE_GIVEN)
    family = rng.choice(names.SURNAMES)
    if rng.random() < 0.15:
        family = f"{rng.choice(names.SURNAMES)} {family}"
    return family, given.split()


def _allocate(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` over ``weights`` by largest remainder."""
    s = sum(weights)
    exact = [total * w / s for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _build_world(patients: int, seed: int) -> _World:
    rng = random.Random(f"enjournal-demo-world:{seed}")
    numbers = _Numbers(rng)
    world = _World()
    out = world.resources

    def organization(
        oid: str,
        name: str,
        *,
        kind: dict,
        text: str,
        address: dict | None,
        part_of: str | None = None,
        resh: bool = False,
    ) -> str:
        identifiers = [
            _ident(ids.OID_ORGNR, numbers.orgnr()),
            _ident(ids.OID_HER_ID, numbers.her_id()),
        ]
        if resh:
            identifiers.append(_ident(ids.OID_RESH, numbers.resh()))
        org: dict = {
            "resourceType": "Organization",
            "id": oid,
            "identifier": identifiers,
            "active": True,
            "type": [{"coding": [kind], "text": text}],
            "name": name,
        }
        if address:
            org["address"] = [address]
        if part_of:
            org["partOf"] = _ref(part_of)
        out.append(org)
        return f"Organization/{oid}"

    def practitioner(
        pid: str,
        org_ref: str,
        *,
        category: tuple[str, str],
        role: tuple[str, str],
        role_text: str,
        specialty: tuple[str, str] | None,
    ) -> _Staff:
        female = rng.random() < (0.5 if category[0] == "LE" else 0.88)
        family, given = _person_name(rng, female)
        display = " ".join([*given, family])
        out.append(
            {
                "resourceType": "Practitioner",
                "id": pid,
                "identifier": [
                    _ident(ids.OID_HPR, numbers.hpr()),
                    _ident(ids.OID_HER_ID, numbers.her_id()),
                ],
                "active": True,
                "name": [{"use": "official", "family": family, "given": given}],
                "gender": "female" if female else "male",
                "qualification": [{"code": _cc(codes.VOLVEN_HPR_CATEGORY, *category)}],
            }
        )
        role_res: dict = {
            "resourceType": "PractitionerRole",
            "id": f"{pid}-role",
            "active": True,
            "practitioner": _ref(f"Practitioner/{pid}", display),
            "organization": _ref(org_ref),
            "code": [
                {
                    "coding": [{"system": ROLE_SYSTEM, "code": role[0], "display": role[1]}],
                    "text": role_text,
                }
            ],
        }
        if specialty:
            role_res["specialty"] = [_cc(codes.VOLVEN_SPECIALITY, *specialty)]
        out.append(role_res)
        return _Staff(f"Practitioner/{pid}", display)

    doctor, nurse = ("LE", "Lege"), ("SP", "Sykepleier")
    general_practice = ("1", "Allmennmedisin")
    doctor_role, nurse_role = ("doctor", "Doctor"), ("nurse", "Nurse")

    region_refs = {
        key: organization(
            f"rhf-{key}", name, kind=_PROVIDER, text="Regionalt helseforetak", address=None
        )
        for key, name in places.REGIONS.items()
    }
    for trust in places.HEALTH_TRUSTS:
        m = places.BY_CODE[trust.municipality]
        trust_ref = organization(
            f"hf-{trust.key}",
            trust.name,
            kind=_PROVIDER,
            text="Helseforetak",
            address=_address(f"{trust.hospital}", m),
            part_of=region_refs[trust.region],
            resh=True,
        )
        departments = world.departments[trust.key] = {}
        for dept_key, dept_name in places.DEPARTMENTS:
            oid = f"hf-{trust.key}-{dept_key}"
            dept_ref = organization(
                oid,
                f"{trust.name}, {dept_name}",
                kind=_PROVIDER,
                text="Avdeling",
                address=None,
                part_of=trust_ref,
                resh=True,
            )
            doctors = [
                practitioner(
                    f"{oid}-lege-{i}",
                    dept_ref,
                    category=doctor,
                    role=doctor_role,
                    role_text="Sykehuslege",
                    specialty=None,
                )
                for i in (1, 2)
            ]
            ward_nurse = practitioner(
                f"{oid}-sykepleier-1",
                dept_ref,
                category=nurse,
                role=nurse_role,
                role_text="Sykepleier",
                specialty=None,
            )
            departments[dept_key] = (dept_ref, doctors, ward_nurse)

    for m in places.MUNICIPALITIES:
        organization(
            f"kommune-{m.code}",
            f"{m.name} kommune",
            kind=_GOVERNMENT,
            text="Kommune",
            address=_address("Rådhuset", m),
        )

    gp_total = max(10, math.ceil(patients / PATIENTS_PER_GP))
    per_municipality = _allocate(gp_total, [m.population for m in places.MUNICIPALITIES])
    office_no = 0
    trust_region = {t.key: t.region for t in places.HEALTH_TRUSTS}
    for m, gps in zip(places.MUNICIPALITIES, per_municipality, strict=True):
        while gps > 0:
            size = min(gps, rng.randint(2, 6))
            gps -= size
            office_no += 1
            street = rng.choice(places.STREETS)
            oid = f"legekontor-{office_no:04d}"
            ref = organization(
                oid,
                f"{street} legekontor, {m.name}",
                kind=_PROVIDER,
                text="Legekontor",
                address=_address(f"{street} {rng.randint(1, 60)}", m),
            )
            office = _GpOffice(ref, m)
            for i in range(size):
                staff = practitioner(
                    f"{oid}-fastlege-{i + 1}",
                    ref,
                    category=doctor,
                    role=doctor_role,
                    role_text="Fastlege",
                    specialty=general_practice,
                )
                office.gps.append(staff)
                pair = (office, staff)
                world.all_gps.append(pair)
                world.gp_by_municipality.setdefault(m.code, []).append(pair)
                world.gp_by_trust.setdefault(m.trust, []).append(pair)
                world.gp_by_region.setdefault(trust_region[m.trust], []).append(pair)
            office.nurse = practitioner(
                f"{oid}-sykepleier-1",
                ref,
                category=nurse,
                role=nurse_role,
                role_text="Sykepleier",
                specialty=None,
            )
            world.offices.append(office)

    pharmacies = _allocate(
        max(2, math.ceil(patients / 5_000)), [m.population for m in places.MUNICIPALITIES]
    )
    pharmacy_no = 0
    for m, count in zip(places.MUNICIPALITIES, pharmacies, strict=True):
        for _ in range(count):
            pharmacy_no += 1
            street = rng.choice(places.STREETS)
            organization(
                f"apotek-{pharmacy_no:04d}",
                f"{street} apotek, {m.name}",
                kind=_PROVIDER,
                text="Apotek",
                address=_address(f"{street} {rng.randint(1, 60)}", m),
            )

    for key, med in codes.MEDICATIONS.items():
        out.append(
            {
                "resourceType": "Medication",
                "id": _medication_id(key),
                "code": {
                    "coding": [{"system": codes.ATC, "code": med.atc, "display": med.name}],
                    "text": med.text,
                },
            }
        )
    return world


def _medication_id(key: str) -> str:
    return f"atc-{codes.MEDICATIONS[key].atc.lower()}"


def _shared_bundle(world: _World) -> dict:
    from enjournal.demo.messaging import with_address_register

    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in with_address_register(world.resources)
        ],
    }


# --- one patient ---------------------------------------------------------------------------


@dataclass
class _Options:
    as_of: date
    history_years: int
    visit_scale: float


class _Patient:
    """Builds the resources of one patient into a list of transaction entries."""

    def __init__(self, world: _World, clock: _Clock, rng: random.Random, opts: _Options) -> None:
        self.world, self.clock, self.rng, self.opts = world, clock, rng, opts
        self.entries: list[dict] = []
        self.today = opts.as_of.toordinal()
        self.window_start = self.today - 365 * opts.history_years
        h = f"{rng.getrandbits(80):020x}"
        variant = "89ab"[int(h[16], 16) & 3]
        self.uuid_prefix = f"urn:uuid:{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-"
        self.counter = 0

    # entries
    def uuid(self) -> str:
        # 78 random bits per patient plus a counter: unique, deterministic and cheap
        self.counter += 1
        return f"{self.uuid_prefix}{self.counter:012x}"

    def ri(self, low: int, high: int) -> int:
        """Like ``rng.randint`` but cheaper."""
        return low + int(self.rng.random() * (high - low + 1))

    def add(self, resource: dict) -> str:
        url = self.uuid()
        self.entries.append(
            {
                "fullUrl": url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
        return url

    # demographics
    def build(self, used_numbers: set[str]) -> list[dict]:
        rng, opts = self.rng, self.opts
        band = rng.choices(range(len(AGE_BANDS)), weights=AGE_BANDS)[0]
        age_days = int((band * 5 + rng.random() * 5) * 365.25)
        birth = opts.as_of - timedelta(days=max(age_days, 1))
        self.birth = birth.toordinal()
        self.age = (self.today - self.birth) / 365.25
        p_female = 0.5 if self.age < 75 else 0.56 if self.age < 85 else 0.66
        self.female = rng.random() < p_female
        self.sex = "female" if self.female else "male"
        self.municipality = rng.choices(
            places.MUNICIPALITIES, weights=[m.population for m in places.MUNICIPALITIES]
        )[0]
        self.office, self.gp = self._pick_gp()
        self.trust = self.municipality.trust
        self.physiology()

        dnr = 20 <= self.age < 65 and rng.random() < 0.015
        make = ids.make_dnr if dnr else ids.make_fnr
        number = make(birth, rng, female=self.female)
        while number in used_numbers:
            number = make(birth, rng, female=self.female)
        used_numbers.add(number)
        family, given = _person_name(rng, self.female)
        patient: dict = {
            "resourceType": "Patient",
            "extension": [
                {
                    "url": CITIZENSHIP,
                    "extension": [
                        {
                            "url": "code",
                            "valueCodeableConcept": {
                                "coding": [
                                    {
                                        "system": "urn:iso:std:iso:3166",
                                        "code": rng.choice(("PL", "LT", "SE", "DE"))
                                        if dnr
                                        else "NO",
                                    }
                                ]
                            },
                        }
                    ],
                }
            ],
            "identifier": [_ident(ids.OID_DNR if dnr else ids.OID_FNR, number)],
            "active": True,
            "name": [{"use": "official", "family": family, "given": given}],
            "gender": self.sex,
            "birthDate": birth.isoformat(),
            "address": [self._home_address()],
        }
        if self.age >= 18:
            status = rng.choices(
                ("U", "M", "D", "W"), weights=(40, 45, 10, 5 if self.age < 70 else 30)
            )[0]
            display = {"U": "unmarried", "M": "Married", "D": "Divorced", "W": "Widowed"}[status]
            patient["maritalStatus"] = _cc(MARITAL, status, display)
        patient["generalPractitioner"] = [_ref(self.gp.ref, self.gp.name)]
        self.patient = self.add(patient)
        self.subject = {"reference": self.patient}

        self.chronic_history()
        self.gp_visits()
        self.hospital_stays()
        self.allergies()
        self.immunizations()
        municipal.add_services(self)  # last: the rest of the patient stays as it was
        return self.entries

    def _pick_gp(self) -> tuple[_GpOffice, _Staff]:
        w, m = self.world, self.municipality
        pool = (
            w.gp_by_municipality.get(m.code)
            or w.gp_by_trust.get(m.trust)
            or w.gp_by_region.get(_TRUST_REGION[m.trust])
            or w.all_gps
        )
        return self.rng.choice(pool)

    def _home_address(self) -> dict:
        m = self.municipality
        line = f"{self.rng.choice(places.STREETS)} {self.ri(1, 120)}"
        if self.rng.random() < 0.3:
            line += self.rng.choice("ABCD")
        address = _address(line, m, use="home")
        address["extension"] = [
            {
                "url": PROPERTY_INFO,
                "extension": [
                    {
                        "url": "municipality",
                        "valueCoding": {
                            "system": ids.OID_KOMMUNENUMMER,
                            "code": m.code,
                            "display": m.name,
                        },
                    }
                ],
            },
            {"url": ADDRESS_OFFICIAL, "valueBoolean": True},
        ]
        return address

    def physiology(self) -> None:
        rng, age = self.rng, self.age
        if age >= 18:
            self.height = rng.gauss(180 if not self.female else 167, 7 if not self.female else 6)
            self.bmi = max(17.5, rng.gauss(26 + min(age - 18, 40) * 0.05, 4))
        else:
            adult = 180 if not self.female else 167
            self.height = max(50.0, min(adult, 52 + age * 24 if age < 1 else 75 + (age - 1) * 6))
            self.bmi = rng.gauss(16.5 if age < 12 else 19.5, 1.5)
        self.systolic = 112 + max(age - 20, 0) * 0.45 + rng.gauss(0, 8)
        self.pulse = rng.gauss(72 if age >= 12 else 95, 8)
        self.chronic: dict[str, dict] = {}

    # clinical history
    def chronic_history(self) -> None:
        rng = self.rng
        for c in codes.CHRONIC:
            p = 0.0
            for min_age, p_male, p_female in c.prevalence:
                if self.age >= min_age:
                    p = p_female if self.female else p_male
            if p == 0.0 or rng.random() >= p:
                continue
            first_age = c.prevalence[0][0]
            # later onsets are more likely (prevalence rises with age)
            share = max(rng.random(), rng.random())
            onset_age = first_age + share * max(self.age - first_age, 0.1)
            onset = min(self.birth + int(onset_age * 365.25), self.today - 1)
            self.chronic[c.key] = {"onset": onset}
        if "diabetes2" in self.chronic:
            self.bmi += 4
        if "hypertension" in self.chronic:
            self.systolic += 12
        for key, state in self.chronic.items():
            self._diagnose(codes.CHRONIC_BY_KEY[key], state)

    def _diagnose(self, c: codes.Chronic, state: dict) -> None:
        rng, onset = self.rng, state["onset"]
        encounter = None
        if onset >= self.window_start:
            encounter = self._gp_encounter(onset, reason=None)
        condition: dict = {
            "resourceType": "Condition",
            "clinicalStatus": _CLINICAL["active"],
            "verificationStatus": _CONFIRMED,
            "category": _PROBLEM,
            "code": {
                "coding": [
                    {"system": codes.ICPC2, "code": c.icpc2[0], "display": c.icpc2[1]},
                    {"system": codes.ICD10, "code": c.icd10[0], "display": c.icd10[1]},
                ],
                "text": c.icd10[1],
            },
            "subject": self.subject,
            "onsetDateTime": self.clock.date(onset),
            "recordedDate": self.clock.date(max(onset, self.window_start)),
            "recorder": _ref(self.gp.ref, self.gp.name),
        }
        if encounter:
            condition["encounter"] = {"reference": encounter[0]}
        state["condition"] = cond_ref = self.add(condition)
        if encounter:
            encounter[1]["diagnosis"] = [{"condition": {"reference": cond_ref}, "rank": 1}]
            self._vitals(encounter, onset, c.labs)
        if c.visits_per_year >= 1.0:
            state["episode"] = self.add(
                {
                    "resourceType": "EpisodeOfCare",
                    "status": "active",
                    "type": [{"text": f"Oppfølging hos fastlege: {c.icpc2[1]}"}],
                    "diagnosis": [{"condition": {"reference": cond_ref}, "rank": 1}],
                    "patient": self.subject,
                    "managingOrganization": _ref(self.office.ref),
                    "period": {"start": self.clock.date(onset)},
                    "careManager": _ref(self.gp.ref, self.gp.name),
                }
            )
            if encounter:
                encounter[1]["episodeOfCare"] = [{"reference": state["episode"]}]
        # medicines: first line usually, more lines sometimes, started over the years
        state["prescriptions"] = {}
        for i, med in enumerate(c.medications):
            if rng.random() >= (0.85, 0.35, 0.15, 0.1)[min(i, 3)]:
                if i == 0:
                    break
                continue
            # the list shows the current prescription chain, not decades of history
            start = max(
                onset if i == 0 else self.ri(onset, self.today - 1), self.window_start - 365
            )
            state["prescriptions"][med] = self._prescribe(
                med, start, cond_ref, encounter if start == onset else None, self.gp
            )

    def _prescribe(
        self,
        med: str,
        day: int,
        reason: str | None,
        encounter: tuple[str, dict] | None,
        requester: _Staff,
        status: str = "active",
    ) -> dict:
        m = codes.MEDICATIONS[med]
        request: dict = {
            "resourceType": "MedicationRequest",
            "status": status,
            "intent": "order",
            "medicationReference": _ref(f"Medication/{_medication_id(med)}", m.text),
            "subject": self.subject,
            "authoredOn": self.clock.at(day, self.ri(480, 930)),
            "requester": _ref(requester.ref, requester.name),
            "dosageInstruction": [{"text": m.dosage}],
        }
        if encounter and encounter[0]:
            request["encounter"] = {"reference": encounter[0]}
        if reason:
            request["reasonReference"] = [{"reference": reason}]
        self.add(request)
        return request

    def _gp_encounter(
        self, day: int, reason: str | None, episode: str | None = None
    ) -> tuple[str, dict]:
        rng = self.rng
        start = self.ri(8 * 60, 15 * 60 + 30)
        virtual = rng.random() < 0.15
        encounter: dict = {
            "resourceType": "Encounter",
            "status": "finished",
            "class": _CLASS["VR" if virtual else "AMB"],
            "type": [{"text": "E-konsultasjon" if virtual else "Konsultasjon hos fastlege"}],
            "subject": self.subject,
            "participant": [{"individual": _ref(self.gp.ref, self.gp.name)}],
            "period": {
                "start": self.clock.at(day, start),
                "end": self.clock.at(day, start + rng.choice((15, 20, 20, 30))),
            },
            "serviceProvider": _ref(self.office.ref),
        }
        if reason:
            encounter["diagnosis"] = [{"condition": {"reference": reason}, "rank": 1}]
        if episode:
            encounter["episodeOfCare"] = [{"reference": episode}]
        return self.add(encounter), encounter

    # observations
    def _observation(
        self, kind: str, day: int, encounter: str | None, value: float, performer: _Staff
    ) -> None:
        k = codes.OBSERVATIONS[kind]
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "category": _OBS_CATEGORIES[k.category],
            "code": {
                "coding": [{"system": codes.LOINC, "code": k.loinc, "display": k.display}],
                "text": k.display,
            },
            "subject": self.subject,
            "effectiveDateTime": self.clock.at(day, self.ri(480, 960)),
            "performer": [_ref(performer.ref, performer.name)],
            "valueQuantity": {
                "value": round(value, k.decimals) if k.decimals else round(value),
                "unit": k.unit,
                "system": codes.UCUM,
                "code": k.unit,
            },
        }
        if encounter:
            obs["encounter"] = {"reference": encounter}
        self.add(obs)

    def _blood_pressure(
        self, day: int, encounter: str | None, performer: _Staff, extra: float = 0.0
    ) -> None:
        systolic = round(self.systolic + extra + self.rng.gauss(0, 7))
        diastolic = round(systolic * 0.6 + self.rng.gauss(6, 4))
        components = []
        for (code, display), value in (
            (codes.BP_SYSTOLIC, systolic),
            (codes.BP_DIASTOLIC, diastolic),
        ):
            components.append(
                {
                    "code": {"coding": [{"system": codes.LOINC, "code": code, "display": display}]},
                    "valueQuantity": {
                        "value": value,
                        "unit": "mmHg",
                        "system": codes.UCUM,
                        "code": "mm[Hg]",
                    },
                }
            )
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "category": _OBS_CATEGORIES["vital-signs"],
            "code": {
                "coding": [
                    {"system": codes.LOINC, "code": codes.BP_PANEL[0], "display": codes.BP_PANEL[1]}
                ],
                "text": "Blodtrykk",
            },
            "subject": self.subject,
            "effectiveDateTime": self.clock.at(day, self.ri(480, 960)),
            "performer": [_ref(performer.ref, performer.name)],
            "component": components,
        }
        if encounter:
            obs["encounter"] = {"reference": encounter}
        self.add(obs)

    def _value(self, kind: str, acute: bool = False) -> float:
        g, ch, female = self.rng.gauss, self.chronic, self.female
        if kind == "heart_rate":
            return (
                self.pulse
                + g(0, 6)
                + (25 if "atrial_fibrillation" in ch else 0)
                + (20 if acute else 0)
            )
        if kind == "resp_rate":
            return g(22 if acute else 15, 3)
        if kind == "temperature":
            return g(38.6, 0.5) if acute else g(36.8, 0.25)
        if kind == "spo2":
            low = 6 if acute else 0
            return min(100, g(97 - low - (4 if "copd" in ch else 0), 1.2))
        if kind == "weight":
            return self.bmi * (self.height / 100) ** 2 + g(0, 1)
        if kind == "height":
            return self.height
        if kind == "bmi":
            return self.bmi + g(0, 0.3)
        if kind == "hba1c":
            return max(4.5, g(7.2, 1.0)) if "diabetes2" in ch else g(5.4, 0.3)
        if kind == "glucose":
            return max(3.8, g(8.5, 2.0)) if "diabetes2" in ch else g(5.3, 0.5)
        if kind == "cholesterol":
            treated = "atorvastatin" in self._medicines() or "simvastatin" in self._medicines()
            return max(2.5, g(4.3 if treated else 5.8 if "hyperlipidemia" in ch else 5.1, 0.7))
        if kind == "ldl":
            treated = "atorvastatin" in self._medicines() or "simvastatin" in self._medicines()
            return max(1.0, g(2.2 if treated else 3.9 if "hyperlipidemia" in ch else 3.1, 0.5))
        if kind == "creatinine":
            base = 70 if female else 85
            return max(
                35, g(base + (25 if "heart_failure" in ch else 0) + max(self.age - 60, 0), 12)
            )
        if kind == "hemoglobin":
            return g(13.3 if female else 14.6, 1.0) - (1.0 if "heart_failure" in ch else 0)
        if kind == "crp":
            return max(1, g(80, 45)) if acute else max(1, g(3, 2))
        if kind == "tsh":
            return max(0.1, g(2.5, 1.2)) if "hypothyroidism" in ch else max(0.4, g(1.8, 0.7))
        raise KeyError(kind)

    def _medicines(self) -> set[str]:
        return {m for s in self.chronic.values() for m in s.get("prescriptions", {})}

    def _vitals(
        self,
        encounter: tuple[str, dict],
        day: int,
        labs: tuple[str, ...],
        acute: bool = False,
        performer: _Staff | None = None,
    ) -> None:
        performer = performer or self.gp
        ref = encounter[0]
        if self.age >= 16 and (not acute or self.rng.random() < 0.5):
            self._blood_pressure(day, ref, performer)
            if self.rng.random() < 0.6:
                self._observation("heart_rate", day, ref, self._value("heart_rate"), performer)
        for kind in labs:
            if acute or self.rng.random() < 0.6:
                self._observation(kind, day, ref, self._value(kind, acute), performer)

    # visits
    def gp_visits(self) -> None:
        age = self.age
        base = (
            2.5
            if age < 6
            else 1.0
            if age < 18
            else 2.2
            if self.female and age < 45
            else 1.6
            if age < 45
            else 2.6
            if age < 67
            else 4.0
        )
        start = max(self.window_start, self.birth + 14)
        years = (self.today - start) / 365.0
        if years <= 0:
            return
        acute_pool = [
            a
            for a in codes.ACUTE
            if a.min_age <= age <= a.max_age and (a.sex is None or a.sex == self.sex)
        ]
        weights = [a.weight for a in acute_pool]
        for _ in range(self._poisson(base * years * self.opts.visit_scale)):
            self._acute_visit(self.ri(start, self.today - 1), acute_pool, weights)
        for key, state in self.chronic.items():
            c = codes.CHRONIC_BY_KEY[key]
            first = max(start, state["onset"] + 7)
            if first >= self.today:
                continue
            span = (self.today - first) / 365.0
            visits = sorted(
                self.ri(first, self.today - 1)
                for _ in range(self._poisson(c.visits_per_year * span * self.opts.visit_scale))
            )
            for day in visits:
                self._follow_up(c, state, day)

    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        if mean > 30:
            return max(0, round(self.rng.gauss(mean, math.sqrt(mean))))
        limit, k, p = math.exp(-mean), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k

    def _acute_visit(self, day: int, pool: list[codes.Acute], weights: list[float]) -> None:
        rng = self.rng
        a = rng.choices(pool, weights=weights)[0]
        encounter = self._gp_encounter(day, reason=None)
        if a.key == "check":
            if self.age >= 16:
                self._blood_pressure(day, encounter[0], self.gp)
            for kind in ("weight", "height", "bmi"):
                if self.age < 18 or kind != "height" or rng.random() < 0.3:
                    self._observation(kind, day, encounter[0], self._value(kind), self.gp)
            return
        resolved = day + self.ri(5, 21)
        condition = {
            "resourceType": "Condition",
            "clinicalStatus": _CLINICAL["resolved" if resolved < self.today else "active"],
            "verificationStatus": _CONFIRMED,
            "category": _ENC_DIAGNOSIS,
            "code": {
                "coding": [{"system": codes.ICPC2, "code": a.icpc2[0], "display": a.icpc2[1]}],
                "text": a.icpc2[1],
            },
            "subject": self.subject,
            "encounter": {"reference": encounter[0]},
            "onsetDateTime": self.clock.date(day - self.ri(0, 4)),
            "recordedDate": self.clock.date(day),
            "recorder": _ref(self.gp.ref, self.gp.name),
        }
        if resolved < self.today:
            condition["abatementDateTime"] = self.clock.date(resolved)
        cond_ref = self.add(condition)
        encounter[1]["diagnosis"] = [{"condition": {"reference": cond_ref}, "rank": 1}]
        for kind in a.labs:
            if rng.random() < 0.7:
                self._observation(kind, day, encounter[0], self._value(kind, acute=True), self.gp)
        if a.medication and rng.random() < 0.6:
            self._prescribe(
                a.medication,
                day,
                cond_ref,
                encounter,
                self.gp,
                status="completed" if resolved < self.today else "active",
            )

    def _follow_up(self, c: codes.Chronic, state: dict, day: int) -> None:
        encounter = self._gp_encounter(day, state["condition"], state.get("episode"))
        self._vitals(encounter, day, c.labs)
        if self.age >= 18 and self.rng.random() < 0.3:
            self._observation("weight", day, encounter[0], self._value("weight"), self.gp)
        # renew prescriptions older than ~10 months (an e-resept is valid for a year)
        for med, request in list(state["prescriptions"].items()):
            authored = date.fromisoformat(request["authoredOn"][:10]).toordinal()
            if day - authored > 300 and day > authored:
                request["status"] = "completed"
                state["prescriptions"][med] = self._prescribe(
                    med, day, state["condition"], encounter, self.gp
                )

    def hospital_stays(self) -> None:
        rng, age = self.rng, self.age
        rate = 0.03 if age < 18 else 0.05 if age < 67 else 0.15
        weighted: list[tuple[float, codes.Code, dict | None]] = []
        for reason, low, high, weight in codes.HOSPITAL_REASONS:
            if low <= age <= high:
                weighted.append((weight, reason, None))
        general = sum(w for w, _, _ in weighted) or 1.0
        stays: list[tuple[codes.Code, dict | None]] = []
        years = min(self.opts.history_years, max(age, 0.05))
        for _ in range(self._poisson(rate * years * self.opts.visit_scale)):
            pick = rng.uniform(0, general)
            for w, reason, _ in weighted:
                pick -= w
                if pick <= 0:
                    stays.append((reason, None))
                    break
        for key, state in self.chronic.items():
            c = codes.CHRONIC_BY_KEY[key]
            span = (self.today - max(self.window_start, state["onset"])) / 365.0
            for _ in range(self._poisson(c.admissions_per_year * span * self.opts.visit_scale)):
                stays.append((c.admission_icd10, state))
        for reason, state in stays:
            first = max(self.window_start, self.birth + 1, state["onset"] if state else 0)
            if first < self.today - 1:
                self._hospital_stay(reason, state, self.ri(first, self.today - 2))

    def _hospital_stay(self, reason: codes.Code, state: dict | None, day: int) -> None:
        rng = self.rng
        code = reason[0]
        dept = (
            "barn"
            if self.age < 16
            else "kir"
            if code[0] in "SK" or code.startswith("M17")
            else "akutt"
            if code.startswith("R07")
            else "med"
        )
        dept_ref, doctors, ward_nurse = self.world.departments[self.trust][dept]
        doctor = rng.choice(doctors)
        inpatient = rng.random() < 0.75
        length = self.ri(1, 8) if inpatient else 0
        end_day = min(day + length, self.today - 1)
        start_minute = self.ri(0, 23 * 60)
        end_minute = self.ri(9 * 60, 15 * 60) if inpatient else min(start_minute + 240, 1439)
        if end_day > day:
            end = self.clock.at(end_day, end_minute)
        else:
            end = self.clock.at(day, max(end_minute, start_minute))
        episode_res: dict = {
            "resourceType": "EpisodeOfCare",
            "status": "finished",
            "type": [{"text": "Spesialisthelsetjeneste"}],
            "diagnosis": [],
            "patient": self.subject,
            "managingOrganization": _ref(dept_ref),
            "period": {"start": self.clock.date(day), "end": self.clock.date(end_day)},
            "careManager": _ref(doctor.ref, doctor.name),
        }
        episode = self.add(episode_res)
        encounter: dict = {
            "resourceType": "Encounter",
            "status": "finished",
            "class": _CLASS["IMP" if inpatient else "EMER"],
            "type": [{"text": "Innleggelse" if inpatient else "Poliklinisk akuttkonsultasjon"}],
            "subject": self.subject,
            "episodeOfCare": [{"reference": episode}],
            "participant": [{"individual": _ref(doctor.ref, doctor.name)}],
            "period": {"start": self.clock.at(day, start_minute), "end": end},
            "serviceProvider": _ref(dept_ref),
        }
        enc_ref = self.add(encounter)
        resolved = state is None and end_day + 14 < self.today
        condition = {
            "resourceType": "Condition",
            "clinicalStatus": _CLINICAL["resolved" if resolved else "active"],
            "verificationStatus": _CONFIRMED,
            "category": _ENC_DIAGNOSIS,
            "code": {
                "coding": [{"system": codes.ICD10, "code": code, "display": reason[1]}],
                "text": reason[1],
            },
            "subject": self.subject,
            "encounter": {"reference": enc_ref},
            "onsetDateTime": self.clock.date(day),
            "recordedDate": self.clock.date(day),
            "recorder": _ref(doctor.ref, doctor.name),
        }
        if resolved:
            condition["abatementDateTime"] = self.clock.date(end_day + 14)
        cond_ref = self.add(condition)
        encounter["diagnosis"] = [{"condition": {"reference": cond_ref}, "rank": 1}]
        encounter["reasonReference"] = [{"reference": cond_ref}]
        episode_res["diagnosis"].append({"condition": {"reference": cond_ref}, "rank": 1})
        acute = code[0] in "JNAK" or code.startswith("I21")
        for kind in ("temperature", "heart_rate", "resp_rate", "spo2"):
            self._observation(kind, day, enc_ref, self._value(kind, acute), ward_nurse)
        if self.age >= 12:
            self._blood_pressure(day, enc_ref, ward_nurse)
        for kind in ("crp", "hemoglobin", "creatinine"):
            self._observation(
                kind, day, enc_ref, self._value(kind, acute and kind == "crp"), doctor
            )
        if code in ("J18.9", "N39.0"):
            med = "phenoxymethylpenicillin" if code == "J18.9" else "pivmecillinam"
            self._prescribe(
                med, end_day, cond_ref, (enc_ref, encounter), doctor, status="completed"
            )

    def allergies(self) -> None:
        rng = self.rng
        if rng.random() >= 0.14:
            return
        for category, text, atc, criticality, reaction in rng.sample(
            codes.ALLERGIES, k=1 if rng.random() < 0.8 else 2
        ):
            code: dict = {"text": text}
            if atc:
                code["coding"] = [{"system": codes.ATC, "code": atc, "display": text}]
            recorded = (
                self.ri(max(self.birth + 180, self.window_start - 3650), self.today - 1)
                if self.today - self.birth > 200
                else None
            )
            if recorded is None:
                continue
            allergy = {
                "resourceType": "AllergyIntolerance",
                "clinicalStatus": _cc(ALLERGY_CLINICAL, "active", "Active"),
                "verificationStatus": _cc(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
                "type": "allergy",
                "category": [category],
                "criticality": criticality,
                "code": code,
                "patient": self.subject,
                "recordedDate": self.clock.date(recorded),
                "recorder": _ref(self.gp.ref, self.gp.name),
                "reaction": [
                    {
                        "manifestation": [{"text": reaction}],
                        "severity": "severe" if criticality == "high" else "mild",
                    }
                ],
            }
            self.add(allergy)

    def immunizations(self) -> None:
        rng, birth_year = self.rng, date.fromordinal(self.birth).year
        given: list[tuple[str, int, _Staff]] = []
        if self.age < 18 and rng.random() < 0.96:
            for vaccine, age_days in codes.CHILDHOOD_PROGRAMME:
                day = self.birth + age_days + self.ri(0, 20)
                if day >= self.today:
                    break
                if vaccine == "hpv" and not (self.female or birth_year >= 2006):
                    continue
                given.append((vaccine, day, self.office.nurse or self.gp))
        flu_group = self.age >= 65 or bool(
            {"copd", "diabetes2", "heart_failure", "asthma", "ihd"} & self.chronic.keys()
        )
        first_year = date.fromordinal(self.window_start).year
        for year in range(first_year, self.opts.as_of.year):
            autumn = date(year, 10, 15).toordinal()
            if not (self.window_start <= autumn < self.today):
                continue
            age_then = (autumn - self.birth) / 365.25
            if flu_group and age_then >= 18 and rng.random() < 0.6:
                given.append(("influenza", autumn + self.ri(0, 45), self.office.nurse or self.gp))
            if year == 2021 and age_then >= 18 and rng.random() < 0.85:
                spring = date(year, 3, 1).toordinal() + self.ri(0, 120)
                given.append(("covid19", spring, self.gp))
                given.append(("covid19", spring + self.ri(21, 84), self.gp))
            elif year >= 2022 and age_then >= 65 and rng.random() < 0.5:
                given.append(("covid19", autumn + self.ri(0, 45), self.gp))
        for vaccine, day, performer in given:
            if day >= self.today:
                continue
            v = codes.VACCINES[vaccine]
            self.add(
                {
                    "resourceType": "Immunization",
                    "status": "completed",
                    "vaccineCode": {
                        "coding": [{"system": codes.ATC, "code": v.atc, "display": v.display}],
                        "text": v.display,
                    },
                    "patient": self.subject,
                    "occurrenceDateTime": self.clock.at(day, self.ri(480, 930)),
                    "primarySource": True,
                    "lotNumber": f"{rng.choice('ABCDEFGHKLMNPRSTUVWXYZ')}{self.ri(1000, 99999)}",
                    "performer": [{"actor": _ref(performer.ref, performer.name)}],
                }
            )


# --- public API ----------------------------------------------------------------------------


def generate_population(
    patients: int,
    seed: int,
    *,
    resources_per_patient: float = 60,
    as_of: date = DEFAULT_AS_OF,
    history_years: int = 5,
    patients_per_bundle: int = 1,
) -> Iterator[dict]:
    """Yield the shared bundle, then the patients' transaction bundles.

    ``resources_per_patient`` is the target mean (it scales the visit rate; young patients
    get far fewer, old and chronically ill ones far more). ``as_of`` is "today" for the
    population: all events lie in the ``history_years`` before it (chronic conditions may
    have started earlier). With ``patients_per_bundle > 1`` several patients share a bundle.
    """
    if patients < 0 or patients_per_bundle < 1:
        raise ValueError("patients must be >= 0 and patients_per_bundle >= 1")
    world = _build_world(patients, seed)
    yield _shared_bundle(world)
    clock = _Clock()
    scale = max(resources_per_patient - _FIXED_RESOURCES, 1) / _RESOURCES_PER_SCALE
    opts = _Options(as_of, history_years, scale)
    used_numbers: set[str] = set()
    batch: list[dict] = []
    for index in range(patients):
        rng = random.Random(seed * 1_000_003 + index)
        # the resources form no reference cycles: skip the collector's full passes meanwhile
        collecting = gc.isenabled()
        gc.disable()
        try:
            batch.extend(_Patient(world, clock, rng, opts).build(used_numbers))
        finally:
            if collecting:
                gc.enable()
        if (index + 1) % patients_per_bundle == 0 or index + 1 == patients:
            yield {"resourceType": "Bundle", "type": "transaction", "entry": batch}
            batch = []


def write_bundles(directory: str | Path, patients: int, seed: int, **options) -> list[Path]:
    """Write each bundle of :func:`generate_population` to ``directory`` as JSON.

    Files are named ``bundle-000000.json`` (shared resources), ``bundle-000001.json`` ... in
    load order. ``options`` are passed on to :func:`generate_population`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, bundle in enumerate(generate_population(patients, seed, **options)):
        path = directory / f"bundle-{i:06d}.json"
        path.write_bytes(orjson.dumps(bundle))
        paths.append(path)
    return paths
