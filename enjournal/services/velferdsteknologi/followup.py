"""After readings are stored: does anything need a nurse?  The patient's care plan says
(``rules``): individual thresholds on its Goals, and NEWS2 where the plan asks for it (an
activity coded NEWS2, SNOMED CT 1104051000000101).  A crossing or a NEWS2 band above low
raises an alert (``alerts``: DetectedIssue + Task to the plan's care team).

One open alert per cause: while a DetectedIssue for the same Goal and kind of crossing (or a
NEWS2 alert of the same or a higher severity) is still open, a new crossing adds no alert:
the nurse sees the new readings in the chart of the one alert.  Alerts are created once per
cause (conditional create on the alert's identifier), so evaluating a reading twice (a
redelivered message) is harmless; ingest therefore evaluates stored and duplicate readings
alike, and a crash between storing and evaluating loses no alert.

The plan is read through the hub (policy and audit apply) and kept for ``PLAN_TTL``: a
changed threshold applies within that time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from enjournal.services.velferdsteknologi import alerts, rules
from enjournal.services.velferdsteknologi.hub import Hub, diagnostics

log = logging.getLogger("enjournal.velferdsteknologi")
PLAN_TTL = 60.0  # seconds
NEWS2_CODE = "1104051000000101"  # SNOMED CT: Royal College of Physicians NEWS2 score
SCT = "http://snomed.info/sct"
HISTORY = 200  # readings of one code looked back on for a rise or fall


@dataclass
class Plan:
    thresholds: list[rules.Threshold] = field(default_factory=list)
    news2: bool = False
    owner: dict = field(default_factory=lambda: {"display": "Hjemmetjenesten"})
    read_at: float = 0.0


class FollowUp:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.plans: dict[str, Plan] = {}

    async def evaluate(self, patient_id: str, observations: list[dict], now: datetime) -> int:
        """Alerts raised for these stored readings of one patient."""
        plan = await self.plan(patient_id)
        if not plan.thresholds and not plan.news2:
            return 0
        found = [r for obs in observations for r in _readable(obs)]
        raised = 0
        for reading in found:
            try:
                raised += await self._thresholds(patient_id, plan, reading, now)
            except ValueError as error:  # a Goal in another unit: not compared, not fatal
                log.warning("threshold not compared", extra={"fields": {"why": str(error)}})
        if plan.news2 and _scores_in_news2(found):
            raised += await self._news2(patient_id, plan, now)
        return raised

    async def plan(self, patient_id: str) -> Plan:
        cached = self.plans.get(patient_id)
        if cached is not None and time.monotonic() - cached.read_at < PLAN_TTL:
            return cached
        plan = await self._read_plan(patient_id)
        self.plans[patient_id] = plan
        return plan

    async def _read_plan(self, patient_id: str) -> Plan:
        subject = ("subject", f"Patient/{patient_id}")
        plans = await self.hub.search("CarePlan", [subject, ("status", "active"), ("_count", "20")])
        goals = await self.hub.search(
            "Goal", [subject, ("lifecycle-status", "active,accepted"), ("_count", "100")]
        )
        found, _problems = rules.thresholds(goals)  # the problems show on the plan's page
        plan = Plan(found, any(_asks_news2(p) for p in plans), read_at=time.monotonic())
        teams = [t for p in plans for t in p.get("careTeam") or ()]
        if teams:
            plan.owner = teams[0]
        return plan

    async def _thresholds(self, patient_id: str, plan: Plan, reading, now: datetime) -> int:
        limits = [t for t in plan.thresholds if t.loinc == rules.normalised(reading.loinc)]
        if not limits:
            return 0
        history = await self._history(patient_id, reading, limits)
        raised = 0
        for crossing in rules.crossings(reading, limits, history):
            raised += await self._raise_crossing(patient_id, plan, crossing, now)
        return raised

    async def _history(self, patient_id: str, reading, limits) -> list[rules.Reading]:
        windows = [t.within for t in limits if t.within is not None]
        if not windows:
            return []
        since = reading.at - max(windows)
        found = await self.hub.search(
            "Observation",
            [
                ("subject", f"Patient/{patient_id}"),
                ("code", f"{rules.LOINC}|{_panel_code(reading.loinc)}"),
                ("date", f"ge{since.isoformat()}"),
                ("_count", str(HISTORY)),
            ],
        )
        return [r for obs in found for r in _readable(obs)]

    async def _raise_crossing(self, patient_id: str, plan: Plan, crossing, now: datetime) -> int:
        goal = f"Goal/{crossing.threshold.goal_id}"
        if await self._open(patient_id, "threshold", implicated=goal, crossing=crossing.kind):
            return 0
        severity, priority = rules.severity([crossing])
        what = f"{crossing.threshold.goal_id}:{crossing.kind}:{crossing.evidence[-1]}"
        text = _crossing_text(crossing)
        evidence = [f"Observation/{e}" for e in crossing.evidence]
        issue = self._issue("threshold", patient_id, what, text, severity, evidence, now)
        issue["implicated"] = [{"reference": goal}]
        issue["code"]["coding"].append({"system": alerts.ALERT, "code": crossing.kind})
        return await self._create(issue, patient_id, priority, plan, severity, now)

    async def _news2(self, patient_id: str, plan: Plan, now: datetime) -> int:
        recent = await self.hub.search(
            "Observation",
            [
                ("subject", f"Patient/{patient_id}"),
                ("category", "vital-signs"),
                ("date", f"ge{(now - timedelta(hours=1)).isoformat()}"),
                ("_count", "200"),
            ],
        )
        found = [r for obs in recent for r in _readable(obs)]
        try:
            result = rules.news2_from(found, now)
        except ValueError:  # a vital sign in a unit NEWS2 does not score
            return 0
        if result is None or result.risk == "low":
            return 0
        severity, priority = rules.severity(risk=result.risk)
        if await self._open(patient_id, "news2", at_least=severity):
            return 0
        newest = max(found, key=lambda r: r.at).observation_id
        risk = RISKS.get(result.risk, result.risk)
        text = f"NEWS2 {result.total} ({risk})" + ("" if result.complete else ", delvis")
        evidence = sorted({f"Observation/{r.observation_id}" for r in found})
        issue = self._issue(
            "news2", patient_id, f"{result.risk}:{newest}", text, severity, evidence, now
        )
        return await self._create(issue, patient_id, priority, plan, severity, now)

    def _issue(self, kind, patient_id, what, text, severity, evidence, now) -> dict:
        key = alerts.identifier(kind, patient_id, what)
        return alerts.detected_issue(key, kind, patient_id, text, severity, evidence, now)

    async def _create(self, issue, patient_id, priority, plan, severity, now) -> int:
        return await store_alert(self.hub, issue, priority, plan.owner, severity, now)

    async def _open(
        self,
        patient_id: str,
        kind: str,
        *,
        implicated: str | None = None,
        crossing: str | None = None,
        at_least: str | None = None,
    ) -> bool:
        """Is an alert of this kind still open (for this Goal and kind of crossing, or of at
        least this severity)?"""
        params = [
            ("patient", f"Patient/{patient_id}"),
            ("code", f"{alerts.ALERT}|{kind}"),
            ("_sort", "-_lastUpdated"),
            ("_count", "50"),
        ]
        if implicated:
            params.append(("implicated", implicated))
        # R4 has no status search on DetectedIssue: the newest of the cause are looked at
        found = await self.hub.search("DetectedIssue", params)
        found = [i for i in found if i.get("status") == "preliminary"]
        if crossing:
            found = [i for i in found if crossing in _codes(i)]
        if at_least:
            found = [i for i in found if _rank(i.get("severity")) >= _rank(at_least)]
        return bool(found)


def _readable(observation: dict) -> list[rules.Reading]:
    """The readings of a stored Observation; none when the rules cannot read it (a gateway's
    date without a time of day): one such reading must not stop the others' evaluation."""
    try:
        return rules.readings(observation)
    except ValueError:
        return []


def _rank(severity: str | None) -> int:
    return ("low", "moderate", "high").index(severity) if severity in ("moderate", "high") else 0


async def store_alert(
    hub: Hub,
    issue: dict,
    priority: str,
    owner: dict,
    severity: str,
    now: datetime,
    *,
    requester: dict | None = None,
    deadline: datetime | None = None,
) -> int:
    """Store the alert (DetectedIssue + Task to ``owner``), once per key; 1 if it is new."""
    key, kind = issue["identifier"][0]["value"], issue["code"]["coding"][0]["code"]
    due = deadline or now + rules.DEADLINES[severity][0]
    patient_id = issue["patient"]["reference"].split("/", 1)[1]
    work = alerts.task(key, kind, patient_id, "", priority, owner, now, due)
    if requester:
        work["requester"] = requester
    status, answer = await hub.transaction(alerts.entries(issue, work))
    if status >= 400:
        raise RuntimeError(f"the alert could not be stored: {diagnostics(answer)}")
    created = (answer.get("entry") or [{}])[0].get("response", {}).get("status", "")
    return 1 if created.startswith("201") else 0


def _codes(issue: dict) -> set[str]:
    return {c.get("code") for c in (issue.get("code") or {}).get("coding") or ()}


def _scores_in_news2(found: list[rules.Reading]) -> bool:
    """Does any of these readings score in NEWS2 on its own?  Only then can the patient's
    total have risen, so only then is it worth reading the last hour's vital signs (most
    readings are normal: this spares a search per patient and batch)."""
    for reading in found:
        try:
            alone = rules.news2_from([reading], reading.at, timedelta(0))
        except ValueError:
            continue  # a unit NEWS2 does not score
        if alone is not None and alone.total > 0:
            return True
    return False


def _asks_news2(care_plan: dict) -> bool:
    for activity in care_plan.get("activity") or ():
        code = ((activity.get("detail") or {}).get("code") or {}).get("coding") or ()
        if any(c.get("system") == SCT and c.get("code") == NEWS2_CODE for c in code):
            return True
    return False


def _panel_code(loinc: str) -> str:
    """Blood-pressure components are searched by their panel's code."""
    return "85354-9" if loinc in ("8480-6", "8462-4") else loinc


# What a nurse calls a measurement (LOINC) and a NEWS2 risk, in the alert's text.
NAMES = {
    "2708-6": "SpO2",
    "8867-4": "Puls",
    "8480-6": "Systolisk blodtrykk",
    "8462-4": "Diastolisk blodtrykk",
    "29463-7": "Vekt",
    "8310-5": "Temperatur",
    "15074-8": "Glukose",
    "9279-1": "Respirasjonsfrekvens",
}
RISKS = {"low": "lav", "low-medium": "lav-middels", "medium": "middels", "high": "høy"}


def _crossing_text(crossing) -> str:
    t = crossing.threshold
    name, unit = NAMES.get(t.loinc, t.loinc), f" {t.unit}" if t.unit else ""
    if crossing.kind in ("rise", "fall"):
        change = crossing.value - (crossing.baseline or 0)
        words = "økt" if crossing.kind == "rise" else "falt"
        return f"{name} har {words} {abs(change):g}{unit} (grense {crossing.limit:g}{unit})"
    words = "under nedre" if crossing.kind == "below" else "over øvre"
    return f"{name} {crossing.value:g}{unit} er {words} grense {crossing.limit:g}{unit}"
