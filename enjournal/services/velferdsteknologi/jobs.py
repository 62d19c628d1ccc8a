"""Velferdsteknologi's scheduled jobs, each through the hub's client (policy and audit).

- ``escalate``: an alert nobody acknowledged by its deadline goes to the next level (a new
  owner, more urgent, a new deadline), up to ``rules.MAX_LEVEL``.
- ``silent_devices``: a home device that sent nothing for ``SILENT_AFTER`` raises an alert,
  once per silence (the key holds the time of its last reading).
- ``evaluate_gateway_readings``: readings a gateway stored over HTTP (a FHIR batch, not
  through the hub) get the same follow-up as the hub's, within ``EVALUATE_EVERY`` seconds:
  each pass looks back ``LOOKBACK`` (several passes see a reading; alerts are made once).
- ``missing_measurements``: a measurement the care plan asks for that is overdue raises an
  alert, once per overdue measurement (the key holds the time of the last one).

Jobs are idempotent (alerts are conditional creates on their key; an escalation re-reads the
Task and changes it only if still due), so two workers running a pass do no harm.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from enjournal.services import Job
from enjournal.services.velferdsteknologi import alerts, rules
from enjournal.services.velferdsteknologi.followup import FollowUp, store_alert
from enjournal.services.velferdsteknologi.hooks import HOME_DEVICE, assigned_patient
from enjournal.services.velferdsteknologi.hub import HUB_SOURCE, Hub

log = logging.getLogger("enjournal.velferdsteknologi")
SILENT_AFTER = timedelta(hours=1)  # the heartbeat window (the issue's default)
GRACE = timedelta(hours=2)  # assumed: a planned measurement is late this long after its time
PAGE = 500
EVALUATE_EVERY = 15.0
LOOKBACK = timedelta(seconds=60)
PRIORITY_SEVERITY = {"stat": "high", "asap": "high", "urgent": "moderate", "routine": "low"}
# Assumed: who owns an alert at each level (the municipality names them in its CareTeam).
LEVEL_OWNERS = {2: "Vakthavende sykepleier", 3: "Vakthavende lege (legevakt)"}


def all_jobs(platform) -> list[Job]:
    hub = Hub(platform)

    def bound(function):
        async def run(_store, now: datetime) -> int:
            return await function(hub, now)

        return run

    followup = FollowUp(hub)

    async def gateway_readings(_store, now: datetime) -> int:
        return await evaluate_gateway_readings(hub, followup, now)

    return [
        Job("vkp-evaluate-gateway-readings", EVALUATE_EVERY, gateway_readings),
        Job("vkp-escalate", 60.0, bound(escalate)),
        Job("vkp-silent-devices", 600.0, bound(silent_devices)),
        Job("vkp-missing-measurements", 900.0, bound(missing_measurements)),
    ]


async def evaluate_gateway_readings(hub: Hub, followup: FollowUp, now: datetime) -> int:
    """Alerts raised for home-device readings stored lately, not by the hub."""
    recent = await hub.search(
        "Observation",
        [("_lastUpdated", f"ge{(now - LOOKBACK).isoformat()}"), ("_count", str(PAGE))],
    )
    by_patient: dict[str, list[dict]] = {}
    for obs in recent:
        if _from_a_gateway(obs):
            patient = obs["subject"]["reference"].split("/", 1)[1]
            by_patient.setdefault(patient, []).append(obs)
    raised = 0
    for patient_id, observations in by_patient.items():
        try:
            raised += await followup.evaluate(patient_id, observations, now)
        except (LookupError, RuntimeError, ValueError):  # one patient's trouble stops nobody else's
            log.exception(
                "gateway readings not evaluated", extra={"fields": {"patient": patient_id}}
            )
    return raised


def _from_a_gateway(obs: dict) -> bool:
    device = (obs.get("device") or {}).get("reference") or ""
    subject = (obs.get("subject") or {}).get("reference") or ""
    source = (obs.get("meta") or {}).get("source")
    return device.startswith("Device/") and subject.startswith("Patient/") and source != HUB_SOURCE


async def escalate(hub: Hub, now: datetime) -> int:
    """One pass over the open, unacknowledged alerts; how many were escalated."""
    waiting = [("identifier", f"{alerts.ALERT_ID}|"), ("status", "requested")]
    open_ = await hub.search("Task", [*waiting, ("_count", str(PAGE))])
    done = 0
    for work in open_:
        try:
            done += await _escalate_one(hub, work, now)
        except (KeyError, TypeError, ValueError):  # a Task not of our making: skip, go on
            log.warning("alert not escalated", extra={"fields": {"task": work.get("id")}})
    return done


async def _escalate_one(hub: Hub, work: dict, now: datetime) -> int:
    created = datetime.fromisoformat(work["authoredOn"].replace("Z", "+00:00"))
    severity = PRIORITY_SEVERITY.get(_first_priority(work), "low")
    level = alerts.level(work)
    to = rules.escalation_due(created, level, False, now, severity)
    if to is None:
        return 0
    deadline = created + sum(rules.DEADLINES[severity][:to], timedelta())
    owner = {"display": LEVEL_OWNERS.get(to, f"Nivå {to}")}
    changed = alerts.escalate(work, to, owner, now, deadline)
    status, _ = await hub.call(
        "PUT", f"Task/{work['id']}", body=changed, headers={"if-match": _etag(work)}
    )
    return 1 if status < 400 else 0


def _first_priority(work: dict) -> str:
    """The priority the alert was raised with (escalation raises it; severity stays)."""
    for ext in work.get("extension") or ():
        if ext.get("url") == alerts.FIRST_PRIORITY:
            return str(ext.get("valueCode"))
    return str(work.get("priority") or "routine")


def _etag(resource: dict) -> str:
    return f'W/"{(resource.get("meta") or {}).get("versionId", "1")}"'


async def silent_devices(hub: Hub, now: datetime) -> int:
    devices = await hub.search(
        "Device", [("identifier", f"{HOME_DEVICE}|"), ("status", "active"), ("_count", str(PAGE))]
    )
    raised = 0
    for device in devices:
        if assigned_patient(device):
            raised += await _silent_device(hub, device, now)
    return raised


async def _silent_device(hub: Hub, device: dict, now: datetime) -> int:
    newest = await hub.search(
        "Observation", [("device", f"Device/{device['id']}"), ("_sort", "-date"), ("_count", "1")]
    )
    last = _effective(newest[0]) if newest else None
    if not rules.silent(last, now, SILENT_AFTER):
        return 0
    patient_id = assigned_patient(device) or ""
    since = last.isoformat() if last else "never"
    text = f"Utstyret {device['id']} har ikke sendt målinger siden {since}"
    evidence = [f"Device/{device['id']}"]
    return await raise_alert(
        hub,
        "silent-device",
        patient_id,
        f"{device['id']}:{since}",
        text,
        evidence,
        device.get("owner") or {},
        now,
    )


async def missing_measurements(hub: Hub, now: datetime) -> int:
    plans = await hub.search("CarePlan", [("status", "active"), ("_count", str(PAGE))])
    raised = 0
    for plan in plans:
        raised += await _missing_for_plan(hub, plan, now)
    return raised


async def _missing_for_plan(hub: Hub, plan: dict, now: datetime) -> int:
    patient = (plan.get("subject") or {}).get("reference") or ""
    codes = _planned_codes(plan)
    if not patient.startswith("Patient/") or not codes:
        return 0
    last = {code: await _last_measured(hub, patient, code) for code in codes}
    try:
        overdue = rules.missing_measurements(plan, last, now, GRACE)
    except ValueError:
        return 0  # a plan the rules cannot read: shown on its page, not guessed at
    owner = (plan.get("careTeam") or [{}])[0]
    raised = 0
    for code in overdue:
        when = last.get(code)
        since = when.isoformat() if when else "never"
        text = f"Planlagt måling {code} mangler (siste: {since})"
        raised += await raise_alert(
            hub,
            "missing-measurement",
            patient.split("/", 1)[1],
            f"{plan['id']}:{code}:{since}",
            text,
            [],
            owner,
            now,
        )
    return raised


def _planned_codes(plan: dict) -> list[str]:
    codes = []
    for activity in plan.get("activity") or ():
        for coding in ((activity.get("detail") or {}).get("code") or {}).get("coding") or ():
            if coding.get("system") == rules.LOINC and coding.get("code"):
                codes.append(coding["code"])
    return codes


async def _last_measured(hub: Hub, patient: str, code: str) -> datetime | None:
    found = await hub.search(
        "Observation",
        [
            ("subject", patient),
            ("code", f"{rules.LOINC}|{code}"),
            ("_sort", "-date"),
            ("_count", "1"),
        ],
    )
    return _effective(found[0]) if found else None


def _effective(observation: dict) -> datetime | None:
    value = observation.get("effectiveDateTime")
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


async def raise_alert(
    hub: Hub,
    kind: str,
    patient_id: str,
    what: str,
    text: str,
    evidence: list[str],
    owner: dict,
    now: datetime,
) -> int:
    """A routine alert of ``kind``, once per ``what``; 1 if it is new."""
    severity, priority = rules.ROUTINE_SEVERITY
    key = alerts.identifier(kind, patient_id, what)
    issue = alerts.detected_issue(key, kind, patient_id, text, severity, evidence, now)
    owner = owner or {"display": "Hjemmetjenesten"}
    return await store_alert(hub, issue, priority, owner, severity, now)
