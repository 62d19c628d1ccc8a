"""The KPR extract (Kommunalt pasient- og brukerregister, domain.md 7 and 10): municipal
health and care services per person, for a year or a month, as the platform holds them.

- ``kontakter`` (as KPR-KUHR): GP contacts (fastlege: an Encounter coded ``fastlege``, or
  at a GP office, an Organization of the kind "Legekontor") and out-of-hours contacts
  (legevakt: coded ``legevakt``) that started in the period, with their diagnoses in ICPC-2
  and ICD-10, in rank order.
- ``tjenester`` (as KPR helse og omsorg): decided services, each an EpisodeOfCare whose
  type is a KPR service code (home nursing 15, practical help 1, safety alarm 6, stays in
  an institution 18-21 ...), with its dates and the days of it inside the period.
- the identity file: pseudonym -> fødselsnummer/D-nummer, for the register's key holder,
  without the persons who reserved against disclosure with their national identity number
  (an active Consent of the ASSUMED category ``register-reservation|kpr-fnr``): their rows
  go out under the pseudonym alone (domain.md 7).

The person columns are the register's pseudonym, sex, birth year and home municipality;
names, addresses, contact details, full birth dates and resource ids never reach an
activity file.  What is wrong or missing is counted in the data-quality report.
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

from enjournal.fhir.norwegian_ids import is_valid_fnr
from enjournal.services.registers.pseudonyms import Pseudonymiser, coarsen_birth
from enjournal.services.registers.quality import CodeChecker, Findings

CONTACT_TYPES = ("fastlege", "legevakt")
GP_OFFICE = "Legekontor"  # Organization.type.text of a GP office in the platform's directory
NOT_DONE = frozenset({"cancelled", "entered-in-error", "planned", "waitlist", "arrived"})
# KPR helse og omsorg service codes (Helsedirektoratet); the code-system URL is ASSUMED.
SERVICES = {
    "1": "Praktisk bistand - daglige gjøremål",
    "2": "Praktisk bistand - opplæring - daglige gjøremål",
    "3": "Praktisk bistand - brukerstyrt personlig assistanse",
    "4": "Dagaktivitetstilbud",
    "5": "Matombringing",
    "6": "Trygghetsalarm",
    "7": "Avlastning - utenfor institusjon",
    "8": "Avlastning i institusjon",
    "9": "Støttekontakt",
    "11": "Omsorgsstønad",
    "15": "Helsetjenester i hjemmet",
    "17": "Dagopphold i institusjon",
    "18": "Tidsbegrenset opphold i institusjon - utredning/behandling",
    "19": "Tidsbegrenset opphold i institusjon - habilitering/rehabilitering",
    "20": "Tidsbegrenset opphold i institusjon - annet",
    "21": "Langtidsopphold i institusjon",
}
TIME_BASED = frozenset({"1", "2", "3", "15"})  # decided in hours per week
ALARM = "6"
EARLIEST_START = date(1980, 1, 1)  # KPR's validity rule for a service's start
VKP_ALERT = "https://enjournal.no/fhir/CodeSystem/vkp-alert"  # velferdsteknologi's alerts
# ASSUMED code systems (docs/registers.md): safety-alarm devices, reservations
WELFARE_TECH = "https://enjournal.no/fhir/CodeSystem/velferdsteknologi-tjeneste"
RESERVATION = "https://enjournal.no/fhir/CodeSystem/register-reservation"


async def extract(feed, reader, period, pseudonyms: Pseudonymiser, progress):
    from enjournal.services.registers.feeds import Extract

    progress.start(10)  # five reads, the views, three reads, the checks
    # the resources read go to NDJSON files the views read, in a private (0700) temporary
    # folder removed at the end: only the views' rows are held in memory
    with tempfile.TemporaryDirectory(prefix="enjournal-kpr-") as spool:
        rows = await _rows(feed, reader, period, progress, Path(spool))
    progress.step("checking the data")
    build = _Build(rows, period, pseudonyms, Findings(), CodeChecker(reader.code_known))
    contacts = await build.contacts()
    services = build.services()
    build.alarms_without_service()
    identity = build.identity()
    counts = {
        "kontakter": len(contacts),
        "tjenester": len(services),
        "persons": len(build.persons_used),
        "personsReserved": len(build.reserved & build.persons_used),
        "identity": len(identity),
    }
    sizes = {"kontakter": len(contacts), "tjenester": len(services)}
    report = build.findings.report(feed.name, period.label, period.start.year, sizes)
    return Extract({"kontakter": contacts, "tjenester": services}, identity, report, counts)


async def _rows(feed, reader, period, progress, spool: Path) -> dict[str, list[dict]]:
    """The views' rows: the activity of the period, then what its rows refer to."""
    from enjournal.services.registers.feeds import run_views

    activity = await _read_activity(reader, period, progress, spool)
    roles = ("contact", "service", "alarm_device", "reservation", "alarm_event")
    rows = run_views(feed, roles, activity)
    progress.step("running the views")
    details = await _read_details(reader, rows, progress, spool)
    rows.update(run_views(feed, ("condition", "organization", "patient"), details))
    return rows


async def _read_activity(reader, period, progress, spool: Path) -> list[Path]:
    files = []
    for type_, params, what in (
        ("Encounter", period.search(), "contacts"),
        ("EpisodeOfCare", period.search(), "services"),
        ("Device", [("type", f"{WELFARE_TECH}|TA")], "safety alarms"),
        ("Consent", [("category", f"{RESERVATION}|kpr-fnr"), ("status", "active")], "reservations"),
        ("Task", [("code", f"{VKP_ALERT}|safety-alarm"), *period.search("authored-on")], "alarms"),
    ):
        progress.step(f"reading {what} ({type_})")
        files.append(spool / f"{type_}.ndjson")
        with files[-1].open("wb") as out:
            await reader.spool(type_, params, out)
    return files


async def _read_details(reader, rows: dict[str, list[dict]], progress, spool: Path) -> list[Path]:
    """The diagnoses, providers and persons the activity rows refer to."""
    conditions = {r["condition_key"] for r in rows["contact"] if r.get("condition_key")}
    providers = {r["provider_key"] for r in rows["contact"] if r.get("provider_key")}
    persons = {
        r["patient_key"]
        for role in ("contact", "service", "alarm_device", "alarm_event")
        for r in rows[role]
        if r.get("patient_key")
    }
    wanted = [
        ("Condition", conditions, "diagnoses"),
        ("Organization", providers, "providers"),
        ("Patient", persons, "persons"),
    ]
    files = []
    for type_, keys, what in wanted:
        progress.step(f"reading {what} ({type_})")
        files.append(spool / f"{type_}.ndjson")
        with files[-1].open("wb") as out:
            await reader.spool_ids(type_, map(_id, keys), out)
    return files


def _id(key: str) -> str:
    """A view's resource key as a resource id (keys are ids, or Type/id)."""
    return str(key).rsplit("/", 1)[-1]


class _Build:
    """The rows of the files from the views' rows, with the findings on the way."""

    def __init__(self, rows, period, pseudonyms, findings: Findings, codes: CodeChecker):
        self.period, self.pseudonyms, self.findings, self.codes = (
            period,
            pseudonyms,
            findings,
            codes,
        )
        self.rows = rows
        self.persons = {_id(r["patient_key"]): r for r in rows["patient"]}
        self.conditions = {_id(r["condition_key"]): r for r in rows["condition"]}
        self.kinds = {_id(r["organization_key"]): r.get("kind") for r in rows["organization"]}
        self.reserved = {
            _id(r["patient_key"])
            for r in rows["reservation"]
            if r.get("patient_key") and r.get("status") == "active"
        }
        self.persons_used: set[str] = set()
        self.alarms: dict[str, int] = {}  # person -> safety-alarm events in the period
        for row in rows["alarm_event"]:
            if row.get("patient_key"):
                pid = _id(row["patient_key"])
                self.alarms[pid] = self.alarms.get(pid, 0) + 1
        self.alarm_persons: set[str] = set()  # with the safety alarm service in the period
        self._person_columns: dict[str, dict] = {}

    # ---- persons ----------------------------------------------------------------------

    def person(self, key: str | None, ref: str) -> dict:
        """The person columns of a row about ``key`` (checked once per person)."""
        pid = _id(key) if key else ""
        if pid in self._person_columns:
            return self._person_columns[pid]
        found = self.persons.get(pid)
        if found is None:
            self.findings.add("patient-unknown", ref, None)
            return {"pseudonym": None, "kjonn": None, "fodselsar": None, "kommune": None}
        self.persons_used.add(pid)
        municipality = _municipality(found)
        patient_ref = f"Patient/{pid}"
        columns = {
            "pseudonym": self._pseudonym(found, patient_ref, municipality),
            "kjonn": found.get("sex"),
            "fodselsar": coarsen_birth(found.get("birth_date"), "year"),
            "kommune": municipality,
        }
        self._person_checks(found, patient_ref, municipality)
        self._person_columns[pid] = columns
        return columns

    def _pseudonym(self, person: dict, ref: str, municipality: str | None) -> str | None:
        number = person.get("fnr") or person.get("dnr")
        if not number:
            self.findings.add("national-id-missing", ref, municipality)
            return None
        if not is_valid_fnr(number):
            self.findings.add("national-id-invalid", ref, municipality)
            return None
        return self.pseudonyms.of(number)

    def _person_checks(self, person: dict, ref: str, municipality: str | None) -> None:
        if municipality is None:
            self.findings.add("municipality-missing", ref, None)
        if not person.get("birth_date"):
            self.findings.add("birth-date-missing", ref, municipality)
        if not person.get("sex"):
            self.findings.add("sex-missing", ref, municipality)

    def identity(self) -> list[dict]:
        """pseudonym -> national identity number, for the key holder; not for the reserved."""
        out = []
        for pid in sorted(self.persons_used - self.reserved):
            person = self.persons[pid]
            columns = self._person_columns[pid]
            if columns["pseudonym"] is None:
                continue
            kind = "FNR" if person.get("fnr") else "DNR"
            number = person.get("fnr") or person.get("dnr")
            out.append(
                {"pseudonym": columns["pseudonym"], "id_type": kind, "fodselsnummer": number}
            )
        return out

    # ---- contacts ---------------------------------------------------------------------

    async def contacts(self) -> list[dict]:
        grouped: dict[str, list[dict]] = {}
        for row in self.rows["contact"]:
            grouped.setdefault(_id(row["contact_key"]), []).append(row)
        out = []
        for cid, rows in sorted(grouped.items()):
            contact = await self._contact(cid, rows)
            if contact is not None:
                out.append(contact)
        return sorted(
            out, key=lambda r: (r["dato"] or "", r["klokkeslett"] or "", r["pseudonym"] or "")
        )

    async def _contact(self, cid: str, rows: list[dict]) -> dict | None:
        first = rows[0]
        kind = self._contact_kind(first)
        if kind is None or first.get("status") in NOT_DONE:
            return None
        ref = f"Encounter/{cid}"
        start = first.get("start") or ""
        if start and not self._starts_in_period(start):
            return None  # overlaps the period, started before it: the earlier period's
        person = self.person(first.get("patient_key"), ref)
        if not start:
            self.findings.add("contact-date-missing", ref, person["kommune"])
        icpc2, icd10 = await self._diagnoses(ref, rows, person["kommune"])
        return {
            **person,
            "kontakttype": kind,
            "kontaktform": first.get("contact_class"),
            "dato": start[:10] or None,
            "klokkeslett": start[11:16] or None,
            "diagnose_icpc2": ";".join(icpc2) or None,
            "diagnose_icd10": ";".join(icd10) or None,
        }

    def _contact_kind(self, row: dict) -> str | None:
        if row.get("contact_type") in CONTACT_TYPES:
            return row["contact_type"]
        provider = row.get("provider_key")
        if provider and self.kinds.get(_id(provider)) == GP_OFFICE:
            return "fastlege"
        return None  # not a municipal contact (a hospital's)

    def _starts_in_period(self, start: str) -> bool:
        day = start[:10]
        return self.period.start.isoformat() <= day < self.period.end.isoformat()

    async def _diagnoses(self, ref: str, rows: list[dict], municipality: str | None):
        icpc2: list[str] = []
        icd10: list[str] = []
        ranked = sorted(
            (r for r in rows if r.get("condition_key")), key=lambda r: r.get("rank") or 99
        )
        if not ranked:
            self.findings.add("diagnosis-missing", ref, municipality)
        for row in ranked:
            condition = self.conditions.get(_id(row["condition_key"]))
            cref = f"Condition/{_id(row['condition_key'])}"
            if condition is None:
                self.findings.add("diagnosis-not-found", ref, municipality)
                continue
            await self._code(condition, "icpc2", icpc2, cref, municipality)
            await self._code(condition, "icd10", icd10, cref, municipality)
            if not condition.get("icpc2") and not condition.get("icd10"):
                self.findings.add("diagnosis-not-coded", cref, municipality)
        return icpc2, icd10

    async def _code(self, condition, kind, into: list[str], ref: str, municipality) -> None:
        code = condition.get(kind)
        if not code:
            return
        if await self.codes.valid(kind, code):
            into.append(code)
        else:
            self.findings.add(f"{kind}-invalid", ref, municipality)

    # ---- services ---------------------------------------------------------------------

    def services(self) -> list[dict]:
        out = [s for row in self.rows["service"] if (s := self._service(row)) is not None]
        return sorted(out, key=lambda r: (r["fra_dato"] or "", r["tjeneste"], r["pseudonym"] or ""))

    def _service(self, row: dict) -> dict | None:
        ref = f"EpisodeOfCare/{_id(row['service_key'])}"
        code = row.get("service_code")
        municipality = self._municipality_of(row.get("patient_key"))
        if not code:
            if not row.get("typed"):  # a typed episode of another kind is not a service
                self.findings.add("service-type-missing", ref, municipality)
            return None
        if row.get("status") in NOT_DONE:
            return None
        first, last = _date(row.get("start")), _date(row.get("end"))
        self._service_checks(code, first, last, ref, municipality)
        days = self.period.days_overlapping(first, last) if first else None
        if first is not None and days == 0:
            return None  # matched by the search (an end a time zone away), not in the period
        person = self.person(row.get("patient_key"), ref)
        self._hours_checks(code, row.get("hours_per_week"), ref, municipality)
        if code == ALARM:
            self.alarm_persons.add(_id(row["patient_key"]))
        return {
            **person,
            "tjeneste": code,
            "tjeneste_navn": SERVICES.get(code),
            "fra_dato": first.isoformat() if first else None,
            "til_dato": last.isoformat() if last else None,
            "dager_i_perioden": days,
            "timer_per_uke": row.get("hours_per_week"),
            "alarmer_i_perioden": self._alarm_count(code, row.get("patient_key")),
        }

    def _service_checks(self, code: str, first, last, ref: str, municipality) -> None:
        if code not in SERVICES:
            self.findings.add("service-code-invalid", ref, municipality)
        if first is None:
            self.findings.add("service-start-missing", ref, municipality)
        elif (last is not None and last < first) or first < EARLIEST_START:
            self.findings.add("service-dates-invalid", ref, municipality)

    def _hours_checks(self, code: str, hours, ref: str, municipality) -> None:
        if code in TIME_BASED and hours is None:
            self.findings.add("hours-missing", ref, municipality)
        elif hours is not None and not 0 <= float(hours) <= 168:
            self.findings.add("hours-invalid", ref, municipality)

    def _alarm_count(self, code: str, key: str | None) -> int | None:
        return self.alarms.get(_id(key), 0) if code == ALARM and key else None

    def alarms_without_service(self) -> None:
        """A safety alarm in use, or raising alarms, for someone without the service (6)
        decided in the period."""
        in_use = [
            (f"Device/{_id(r['device_key'])}", r.get("patient_key"))
            for r in self.rows["alarm_device"]
            if r.get("status") == "active"
        ]
        raised = [
            (f"Task/{_id(r['task_key'])}", r.get("patient_key")) for r in self.rows["alarm_event"]
        ]
        for ref, key in in_use + raised:
            if key and _id(key) not in self.alarm_persons:
                self.findings.add("alarm-without-service", ref, self._municipality_of(key))

    def _municipality_of(self, key: str | None) -> str | None:
        found = self.persons.get(_id(key)) if key else None
        return _municipality(found) if found else None


def _municipality(person: dict) -> str | None:
    code = person.get("municipality")
    if code:
        return str(code)
    district = str(person.get("district") or "")
    return district if len(district) == 4 and district.isdigit() else None


def _date(value) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None
