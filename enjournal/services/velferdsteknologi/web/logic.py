"""What the follow-up centre's pages show, worked out from FHIR resources as plain dicts: the
open alerts as rows, the patients under follow-up ordered by risk, ages and waiting times.
Pure: no I/O, and ``now`` is always an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from enjournal.services.velferdsteknologi import alarms, alerts, rules
from enjournal.services.velferdsteknologi.news2 import News2

OPEN = ("requested", "accepted", "in-progress")
SEVERITY_RANK = {"low": 1, "moderate": 2, "high": 3}
# The severity an alert was raised with, from its first priority when its issue is unknown
# (the same mapping the escalation job uses).
PRIORITY_SEVERITY = {"stat": "high", "asap": "high", "urgent": "moderate", "routine": "low"}


def moment(text: str | None) -> datetime | None:
    """A FHIR instant or dateTime (with its offset) as a datetime; None if absent."""
    if not text or "T" not in text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def age_in_years(birth_date: str | None, today: date) -> int | None:
    if not birth_date or len(birth_date) < 10:
        return None
    born = date.fromisoformat(birth_date[:10])
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def waited(since: datetime | None, now: datetime) -> tuple[int, int, int] | None:
    """How long since ``since`` as (days, hours, minutes), never negative; None if unknown."""
    if since is None:
        return None
    minutes = max(0, int((now - since).total_seconds() // 60))
    return minutes // 1440, minutes % 1440 // 60, minutes % 60


def patient_name(patient: dict) -> str:
    names = patient.get("name") or [{}]
    name = names[0]
    if name.get("text"):
        return str(name["text"])
    return " ".join([*(name.get("given") or ()), name.get("family") or ""]).strip()


def reference_id(reference: dict | None, resource_type: str) -> str:
    text = (reference or {}).get("reference") or ""
    prefix = f"{resource_type}/"
    return text[len(prefix) :] if text.startswith(prefix) else ""


# --- alerts ----------------------------------------------------------------------------------


@dataclass
class Alert:
    """One alert (its Task, and the DetectedIssue it is about) as the pages show it."""

    id: str
    kind: str
    patient: str
    status: str
    priority: str
    level: int
    owner: str
    created: datetime | None
    deadline: datetime | None
    severity: str
    text: str = ""
    evidence: list[str] = field(default_factory=list)
    done: str = ""  # what was done, once closed
    closed: datetime | None = None
    overdue: bool = False
    age: tuple[int, int, int] | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def is_alarm(self) -> bool:
        return self.kind == alarms.KIND

    @property
    def can_acknowledge(self) -> bool:
        return self.status == "requested"

    @property
    def can_arrive(self) -> bool:
        return self.is_alarm and self.status == "accepted"

    @property
    def can_close(self) -> bool:
        """Alerts close from any open step; a safety alarm once someone has accepted it."""
        return self.is_open and (not self.is_alarm or self.status != "requested")


def alert(work: dict, issue: dict | None, now: datetime) -> Alert:
    """The row of a Task (``issue``: its focus, if known) at ``now``."""
    issue = issue or {}
    deadline = moment(((work.get("restriction") or {}).get("period") or {}).get("end"))
    created = moment(work.get("authoredOn"))
    status = str(work.get("status") or "")
    found = Alert(
        id=str(work.get("id") or ""),
        kind=_code(work),
        patient=reference_id(work.get("for"), "Patient"),
        status=status,
        priority=str(work.get("priority") or "routine"),
        level=alerts.level(work),
        owner=str((work.get("owner") or {}).get("display") or ""),
        created=created,
        deadline=deadline,
        severity=str(issue.get("severity") or PRIORITY_SEVERITY.get(_first_priority(work), "low")),
        text=str(issue.get("detail") or ""),
        evidence=[r for e in issue.get("evidence") or () for r in _references(e)],
        done=_what_was_done(work),
        closed=moment((work.get("executionPeriod") or {}).get("end")),
    )
    found.overdue = status == "requested" and deadline is not None and now > deadline
    found.age = waited(created, now)
    return found


def _code(work: dict) -> str:
    codings = (work.get("code") or {}).get("coding") or [{}]
    return str(codings[0].get("code") or "")


def _first_priority(work: dict) -> str:
    for ext in work.get("extension") or ():
        if ext.get("url") == alerts.FIRST_PRIORITY:
            return str(ext.get("valueCode"))
    return str(work.get("priority") or "routine")


def _references(evidence: dict) -> list[str]:
    return [str(d.get("reference")) for d in evidence.get("detail") or () if d.get("reference")]


def _what_was_done(work: dict) -> str:
    outputs = work.get("output") or ()
    return next((str(o["valueString"]) for o in outputs if o.get("valueString")), "")


def alerts_of(tasks: list[dict], issues: list[dict], now: datetime) -> list[Alert]:
    """The alerts of ``tasks`` (follow-up alerts only), each with its DetectedIssue, most
    urgent first: overdue, then severity, then the oldest."""
    by_id = {f"DetectedIssue/{i.get('id')}": i for i in issues}
    found = [
        alert(t, by_id.get((t.get("focus") or {}).get("reference") or ""), now)
        for t in tasks
        if alerts.is_alert(t)
    ]
    return sorted(found, key=_urgency)


def _urgency(found: Alert) -> tuple:
    created = found.created.timestamp() if found.created else 0.0
    return (not found.overdue, -SEVERITY_RANK.get(found.severity, 0), created)


# --- the patients under follow-up, by risk ---------------------------------------------------


@dataclass
class Followed:
    id: str
    name: str
    age: int | None
    open_alerts: int = 0
    highest: str | None = None  # the highest severity among the open alerts
    oldest: tuple[int, int, int] | None = None  # how long the oldest open alert has waited
    news2: News2 | None = None


def followed(
    patients: list[dict], open_alerts: list[Alert], news2: dict[str, News2], now: datetime
) -> list[Followed]:
    """The patients with their open alerts and latest NEWS2, highest risk first: the highest
    open alert severity, then the number of open alerts, then the latest NEWS2 (none last),
    then by name."""
    found = []
    for patient in patients:
        pid = str(patient.get("id"))
        mine = [a for a in open_alerts if a.patient == pid and a.is_open]
        row = Followed(pid, patient_name(patient), age_in_years(patient.get("birthDate"), now))
        row.open_alerts = len(mine)
        row.highest = max((a.severity for a in mine), key=_rank, default=None)
        created = [a.created for a in mine if a.created is not None]
        row.oldest = waited(min(created), now) if created else None
        row.news2 = news2.get(pid)
        found.append(row)
    return sorted(found, key=_risk)


def _rank(severity: str | None) -> int:
    return SEVERITY_RANK.get(severity or "", 0)


def _risk(row: Followed) -> tuple:
    news2 = row.news2.total if row.news2 is not None else -1
    return (-_rank(row.highest), -row.open_alerts, -news2, row.name)


def latest_news2(observations: list[dict]) -> News2 | None:
    """NEWS2 of the patient's newest vital signs: the newest of each parameter within an hour
    of the newest reading (rules.news2_from, as the follow-up scores it)."""
    found = readings_of(observations)
    if not found:
        return None
    newest = max(r.at for r in found)
    try:
        return rules.news2_from(found, newest, timedelta(hours=1))
    except ValueError:  # a reading in a unit NEWS2 is not scored in
        return None


def readings_of(observations: list[dict]) -> list[rules.Reading]:
    """The readings of ``observations``; one that cannot be read is left out (not shown)."""
    found = []
    for obs in observations:
        try:
            found.extend(rules.readings(obs))
        except ValueError:
            continue
    return found
