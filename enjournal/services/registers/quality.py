"""The data-quality report of a register feed: what the municipality should fix before the
deadline (KPR: reported by 15 January, with daily feedback 1-15 January; domain.md 10).

Each check counts what it found, in all (with a few examples) and per municipality (with
every resource it found, ``Encounter/<id>``): the municipality looks them up in its own
record system and fixes them.  The
report never names a person (no national identity number, name or pseudonym), so it can be
shown to anyone who may see the municipality's figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

EXAMPLES = 5
UNKNOWN_MUNICIPALITY = "ukjent"
ICPC2_FORM = re.compile(r"^[ABDFHKLNPRSTUWXYZ](?:\d{2}|-\d{2})$")  # chapter + component 01-99
ICD10_FORM = re.compile(r"^[A-Z]\d{2}(?:\.\d{1,2})?$")

# check -> (severity, what it means), in the order a report lists them
CHECKS: dict[str, tuple[str, str]] = {
    "patient-unknown": ("error", "the person the data is about was not found"),
    "national-id-missing": ("error", "the person has no fødselsnummer or D-nummer"),
    "national-id-invalid": ("error", "the person's national identity number is not valid"),
    "municipality-missing": ("error", "the person has no municipality number (kommunenummer)"),
    "birth-date-missing": ("warning", "the person has no birth date"),
    "sex-missing": ("warning", "the person has no sex (gender)"),
    "contact-date-missing": ("error", "a contact has no start time"),
    "diagnosis-missing": ("error", "a GP or out-of-hours contact has no diagnosis"),
    "diagnosis-not-found": ("error", "a contact's diagnosis (Condition) was not found"),
    "diagnosis-not-coded": ("error", "a diagnosis is coded in neither ICPC-2 nor ICD-10"),
    "icpc2-invalid": ("error", "an ICPC-2 code that does not exist"),
    "icd10-invalid": ("error", "an ICD-10 code that does not exist"),
    "service-type-missing": ("error", "an episode of care has no service type"),
    "service-code-invalid": ("error", "a service code that is not a KPR service"),
    "service-start-missing": ("error", "a service has no start date"),
    "service-dates-invalid": ("error", "a service ends before it starts or starts before 1980"),
    "hours-missing": ("warning", "a time-based service has no hours per week"),
    "hours-invalid": ("error", "hours per week outside 0-168"),
    "alarm-without-service": ("warning", "a safety alarm in use without the service decided"),
}


@dataclass
class Findings:
    """What the checks found: each (check, resource) once, grouped by municipality."""

    seen: set[tuple[str, str]] = field(default_factory=set)
    by_check: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def add(self, check: str, ref: str, municipality: str | None) -> None:
        if check not in CHECKS:
            raise KeyError(f"unknown data-quality check {check!r}")
        if (check, ref) in self.seen:
            return
        self.seen.add((check, ref))
        self.by_check.setdefault(check, []).append((municipality or UNKNOWN_MUNICIPALITY, ref))

    def count(self, check: str) -> int:
        return len(self.by_check.get(check, ()))

    def report(self, register: str, period_label: str, year: int, rows: dict[str, int]) -> dict:
        deadline = Deadline.after(year)
        return {
            "register": register,
            "period": period_label,
            "deadline": deadline.due.isoformat(),
            "feedbackFrom": deadline.feedback_from.isoformat(),
            "rows": rows,
            "total": sum(len(found) for found in self.by_check.values()),
            "checks": [self._summary(check, found) for check, found in self._ordered()],
            "municipalities": self._by_municipality(),
        }

    def _ordered(self):
        return [(c, self.by_check[c]) for c in CHECKS if c in self.by_check]

    def _summary(self, check: str, found: list[tuple[str, str]]) -> dict:
        severity, meaning = CHECKS[check]
        return {
            "check": check,
            "severity": severity,
            "description": meaning,
            "count": len(found),
            "examples": [ref for _, ref in found[:EXAMPLES]],
        }

    def _by_municipality(self) -> dict[str, dict]:
        grouped: dict[str, dict[str, list[str]]] = {}
        for check, found in self._ordered():
            for municipality, ref in found:
                grouped.setdefault(municipality, {}).setdefault(check, []).append(ref)
        # the municipality's own list is whole: it works through it before the deadline
        return {
            m: {c: {"count": len(refs), "resources": refs} for c, refs in checks.items()}
            for m, checks in sorted(grouped.items())
        }


@dataclass(frozen=True)
class Deadline:
    """When a year's data is due: 15 January the year after, with feedback from 1 January."""

    due: date
    feedback_from: date

    @classmethod
    def after(cls, year: int, month: int = 1, day: int = 15, from_day: int = 1) -> Deadline:
        return cls(date(year + 1, month, day), date(year + 1, month, from_day))


# ---- code checks --------------------------------------------------------------------------


def code_form_ok(kind: str, code: str) -> bool:
    """Whether ``code`` has the form of an ICPC-2 or ICD-10 code."""
    form = ICPC2_FORM if kind == "icpc2" else ICD10_FORM
    return bool(form.match(code))


class CodeChecker:
    """ICPC-2 / ICD-10 codes checked by form, then against the platform's terminology when
    it holds the code system (``known(system, code)`` -> True, False or None: not held)."""

    SYSTEMS = {
        "icpc2": "urn:oid:2.16.578.1.12.4.1.1.7170",
        "icd10": "http://hl7.org/fhir/sid/icd-10",
    }

    def __init__(self, known):
        self.known = known

    async def valid(self, kind: str, code: str) -> bool:
        if not code_form_ok(kind, code):
            return False
        return await self.known(self.SYSTEMS[kind], code) is not False
