"""Alerts of the home follow-up as FHIR: a ``DetectedIssue`` says what was found (a threshold
crossed, a NEWS2 band reached, a measurement missing, a device gone silent, a safety alarm),
with the readings as evidence; a ``Task`` to the responsible care team carries the work:
requested -> accepted (acknowledged, by whom and when) -> completed (closed, with what was
done), escalated to the next level when nobody acknowledges it in time.

Every alert has a stable identifier built from what raised it (the rule, the patient and the
reading or period), so evaluating the same reading twice (a redelivered message, a job run
twice) finds the alert already there: both resources are conditional creates on it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import quote

ALERT = "https://enjournal.no/fhir/CodeSystem/vkp-alert"
ALERT_ID = "urn:enjournal:vkp:alert"
LEVEL = "https://enjournal.no/fhir/StructureDefinition/vkp-escalation-level"
# The priority an alert was raised with (escalation raises Task.priority; this stays).
FIRST_PRIORITY = "https://enjournal.no/fhir/StructureDefinition/vkp-first-priority"
KINDS = {
    "threshold": "Individuell terskel overskredet",
    "news2": "NEWS2-skår",
    "missing-measurement": "Manglende måling",
    "silent-device": "Utstyr har ikke sendt data",
    "safety-alarm": "Trygghetsalarm",
}


def identifier(kind: str, patient_id: str, what: str) -> str:
    """The alert's stable key: the rule, the patient, and what raised it (characters a
    search would read differently, such as the ``+`` of a time's offset, made ``-``)."""
    return re.sub(r"[^A-Za-z0-9._:\-]", "-", f"{kind}:{patient_id}:{what}")


def detected_issue(
    key: str,
    kind: str,
    patient_id: str,
    text: str,
    severity: str,
    evidence: list[str],
    now: datetime,
) -> dict:
    issue = {
        "resourceType": "DetectedIssue",
        "identifier": [{"system": ALERT_ID, "value": key}],
        "status": "preliminary",
        "code": {"coding": [{"system": ALERT, "code": kind, "display": KINDS[kind]}]},
        "severity": severity,
        "patient": {"reference": f"Patient/{patient_id}"},
        "identifiedDateTime": instant(now),
        "detail": text,
    }
    if evidence:
        issue["evidence"] = [{"detail": [{"reference": r} for r in evidence]}]
    return issue


def task(
    key: str,
    kind: str,
    patient_id: str,
    focus: str,
    priority: str,
    owner: dict,
    now: datetime,
    deadline: datetime,
) -> dict:
    return {
        "resourceType": "Task",
        "identifier": [{"system": ALERT_ID, "value": key}],
        "status": "requested",
        "intent": "order",
        "priority": priority,
        "code": {"coding": [{"system": ALERT, "code": kind, "display": KINDS[kind]}]},
        "focus": {"reference": focus},
        "for": {"reference": f"Patient/{patient_id}"},
        "authoredOn": instant(now),
        "lastModified": instant(now),
        "owner": owner,
        "restriction": {"period": {"end": instant(deadline)}},
        "extension": [
            {"url": LEVEL, "valueInteger": 1},
            {"url": FIRST_PRIORITY, "valueCode": priority},
        ],
    }


def entries(issue: dict, work: dict) -> list[dict]:
    """Transaction entries creating both once (conditional on the alert's identifier)."""
    key = issue["identifier"][0]["value"]
    condition = f"identifier={ALERT_ID}|{quote(key, safe=':')}"
    return [
        {
            "fullUrl": f"urn:uuid:issue-{_slug(key)}",
            "resource": issue,
            "request": {"method": "POST", "url": "DetectedIssue", "ifNoneExist": condition},
        },
        {
            "resource": {**work, "focus": {"reference": f"urn:uuid:issue-{_slug(key)}"}},
            "request": {"method": "POST", "url": "Task", "ifNoneExist": condition},
        },
    ]


def level(work: dict) -> int:
    for ext in work.get("extension") or ():
        if ext.get("url") == LEVEL:
            return int(ext.get("valueInteger") or 1)
    return 1


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _slug(key: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in key)


def is_alert(resource: dict) -> bool:
    return any(i.get("system") == ALERT_ID for i in resource.get("identifier") or ())


def acknowledge(work: dict, who: dict, now: datetime) -> dict:
    """A nurse takes the alert: requested -> accepted, by whom and when."""
    if work.get("status") != "requested":
        raise ValueError(f"an alert that is {work.get('status')} cannot be acknowledged")
    changed = {**work, "status": "accepted", "lastModified": instant(now)}
    changed["executionPeriod"] = {"start": instant(now)}
    changed["note"] = [
        *work.get("note", []),
        {"authorReference": who, "time": instant(now), "text": "Kvittert"},
    ]
    return changed


def close(work: dict, who: dict, what_was_done: str, now: datetime) -> dict:
    """Closed with what was done; an alert nobody acknowledged is acknowledged by closing."""
    if work.get("status") in ("completed", "cancelled"):
        raise ValueError("the alert is closed already")
    if not what_was_done.strip():
        raise ValueError("say what was done")
    changed = {**work, "status": "completed", "lastModified": instant(now)}
    start = (work.get("executionPeriod") or {}).get("start") or instant(now)
    changed["executionPeriod"] = {"start": start, "end": instant(now)}
    changed["output"] = [
        {"type": {"text": "Tiltak"}, "valueString": what_was_done.strip()},
    ]
    changed["note"] = [
        *work.get("note", []),
        {"authorReference": who, "time": instant(now), "text": "Lukket"},
    ]
    return changed


def escalate(work: dict, to_level: int, owner: dict, now: datetime, deadline: datetime) -> dict:
    """Nobody acknowledged in time: the next level owns it, more urgent, with a new deadline."""
    changed = {**work, "owner": owner, "lastModified": instant(now)}
    changed["priority"] = _more_urgent(work.get("priority") or "routine")
    changed["restriction"] = {"period": {"end": instant(deadline)}}
    changed["extension"] = [e for e in work.get("extension") or () if e.get("url") != LEVEL]
    changed["extension"].append({"url": LEVEL, "valueInteger": to_level})
    changed["businessStatus"] = {"text": f"Eskalert til nivå {to_level}"}
    return changed


_PRIORITIES = ("routine", "urgent", "asap", "stat")


def _more_urgent(priority: str) -> str:
    n = _PRIORITIES.index(priority) if priority in _PRIORITIES else 0
    return _PRIORITIES[min(n + 1, len(_PRIORITIES) - 1)]
