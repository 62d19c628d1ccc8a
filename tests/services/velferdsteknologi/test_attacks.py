"""A stranger's attacks on the follow-up: other municipalities' staff, citizens and system
clients without the scopes acting on alerts; malformed input to the operations, the jobs and
the intake; readings written around the device check; alerts never or twice raised."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import orjson
import pytest

from enjournal.rest.message import FhirRequest
from enjournal.security.principal import Principal
from enjournal.services.velferdsteknologi import jobs
from enjournal.services.velferdsteknologi.followup import FollowUp
from enjournal.services.velferdsteknologi.hub import Hub
from enjournal.services.velferdsteknologi.ingest import Ingest, Message
from enjournal.services.velferdsteknologi.intake import AlarmIntake

from .conftest import PATIENTS
from .test_followup import NOW, _as_nurse, reading, resources
from .test_gateway import GATEWAY, post_batch, vkp_observation

pytestmark = pytest.mark.backends("memory", "postgres")
OTHER = "999999999"  # another municipality's organisation number


def fall(n: int, patient: str = PATIENTS["vkp-pas-1"]) -> bytes:
    at = (NOW - timedelta(seconds=5)).isoformat()
    body = {"id": f"ev-{n}", "event": "fall", "patient": patient, "at": at, "sent": NOW.isoformat()}
    return orjson.dumps(body)


async def _alarm(platform) -> dict:
    await AlarmIntake(Hub(platform), Counter(), clock=lambda: NOW).handle(
        [Message("dev-oxi-1", fall(1))]
    )
    tasks = await resources(platform, "Task")
    return next(t for t in tasks if t["code"]["coding"][0]["code"] == "safety-alarm")


async def _threshold_alert(platform) -> dict:
    await Ingest(platform, clock=lambda: NOW).handle([reading(1, "spo2", 88, "%")])
    tasks = await resources(platform, "Task")
    return next(t for t in tasks if t["code"]["coding"][0]["code"] == "threshold")


def _close(action="Ringte pasienten", **more) -> dict:
    parameters = [{"name": "action", "valueString": action}]
    parameters += [{"name": k, **v} for k, v in more.items()]
    return {"resourceType": "Parameters", "parameter": parameters}


async def _as(platform, principal, method, path, body=None, params=()):
    request = FhirRequest(
        method,
        [p for p in path.split("/") if p],
        list(params),
        {"content-type": "application/fhir+json"},
        orjson.dumps(body) if body else b"",
        "http://test/fhir",
    )
    return await platform.handle(request, principal)


def _issue(response) -> str:
    return orjson.loads(response.body)["issue"][0].get("diagnostics", "")


# --- 1. who may act ------------------------------------------------------------------------


async def test_another_municipalitys_nurse_reaches_no_step(planned):
    work = await _threshold_alert(planned)
    alarm = await _alarm(planned)
    for task, op, body in [
        (work, "$vkp-acknowledge", None),
        (work, "$vkp-close", _close()),
        (alarm, "$vkp-acknowledge", None),
        (alarm, "$vkp-arrived", None),
        (alarm, "$vkp-close", _close()),
    ]:
        answer = await _as_nurse(planned, "POST", f"Task/{task['id']}/{op}", body, org=OTHER)
        assert answer.status == 404, (op, answer.body)
        assert b"Patient/" not in answer.body and b"DetectedIssue" not in answer.body
    assert {t["status"] for t in await resources(planned, "Task")} == {"requested"}


async def test_the_response_times_count_only_what_the_caller_may_see(planned):
    await _alarm(planned)
    mine = await _as_nurse(planned, "GET", "$vkp-response-times")
    other = await _as_nurse(planned, "GET", "$vkp-response-times", org=OTHER)
    assert mine.status == 200, mine.body
    assert other.status in (200, 403), other.body
    if other.status == 200:
        assert orjson.loads(other.body).get("parameter", []) == []


CITIZEN = Principal(
    "citizen", "pas-1", "helsenorge", frozenset({"patient/*.rs"}), "Pasient", patient="vkp-pas-1"
)


async def test_a_citizen_and_a_gateway_take_no_step(planned):
    work = await _threshold_alert(planned)
    for who in (CITIZEN, GATEWAY):
        for op, body in [("$vkp-acknowledge", None), ("$vkp-close", _close())]:
            answer = await _as(planned, who, "POST", f"Task/{work['id']}/{op}", body)
            assert answer.status in (403, 404), (who.kind, op, answer.status, answer.body)
    citizen = await _as(planned, CITIZEN, "GET", "$vkp-response-times")
    assert citizen.status == 403, citizen.body
    # A system client without Task scopes sees no Task (the core's rule): nothing counted.
    gateway = await _as(planned, GATEWAY, "GET", "$vkp-response-times")
    assert orjson.loads(gateway.body).get("parameter") == []


async def test_a_gateway_cannot_move_a_reading_to_another_patient(planned):
    assert await post_batch(planned, [vkp_observation(1, 95)]) == ["201"]
    (obs,) = await resources(planned, "Observation")
    moved = {**obs, "subject": {"reference": "Patient/vkp-pas-2"}}
    answer = await _as(planned, GATEWAY, "PUT", f"Observation/{obs['id']}", moved)
    assert answer.status in (403, 404), answer.body


async def test_a_device_named_by_its_absolute_url_is_checked_too(planned):
    obs = vkp_observation(1, 95, fnr=PATIENTS["vkp-pas-2"])  # not dev-oxi-1's patient
    obs["device"] = {"reference": "http://test/fhir/Device/dev-oxi-1"}
    assert await post_batch(planned, [obs]) in (["403"], ["422"])


async def test_a_home_device_named_by_identifier_only_is_not_a_side_door(planned):
    obs = vkp_observation(1, 95, fnr=PATIENTS["vkp-pas-2"])
    obs["device"] = {"identifier": {"system": "urn:enjournal:vkp:device", "value": "dev-oxi-1"}}
    assert await post_batch(planned, [obs]) in (["403"], ["422"])


async def test_another_municipalitys_nurse_cannot_reassign_a_device(planned):
    moved = {
        "resourceType": "Device",
        "id": "dev-oxi-1",
        "status": "active",
        "identifier": [{"system": "urn:enjournal:vkp:device", "value": "dev-oxi-1"}],
        "patient": {"reference": "Patient/vkp-pas-2"},
    }
    answer = await _as_nurse(planned, "PUT", "Device/dev-oxi-1", moved, org=OTHER)
    assert answer.status in (403, 404), answer.body
    answer = await _as_nurse(planned, "PUT", "Device/dev-oxi-1", moved)
    assert answer.status in (403, 404), answer.body  # to a patient she has no relationship with


# --- 2. bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Parameters", "parameter": [{"name": "action", "valueInteger": 3}]},
        {"resourceType": "Parameters", "parameter": [{"name": "action"}]},
        {"resourceType": "Parameters", "parameter": "x"},
        {"resourceType": "Patient"},
        [1, 2],
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "action", "valueString": "x" * 100_000}],
        },
    ],
)
async def test_malformed_close_parameters_are_a_4xx(planned, body):
    work = await _threshold_alert(planned)
    answer = await _as_nurse(planned, "POST", f"Task/{work['id']}/$vkp-close", body)
    assert 400 <= answer.status < 500, answer.body


@pytest.mark.parametrize(
    "outcome",
    [
        {"valueInteger": 5},
        {"valueCoding": {"system": "x"}},
        {"valueString": ""},
        {"valueCode": "a b"},
    ],
)
async def test_odd_alarm_outcomes_are_a_4xx_or_ignored(planned, outcome):
    alarm = await _alarm(planned)
    path = f"Task/{alarm['id']}"
    assert (await _as_nurse(planned, "POST", f"{path}/$vkp-acknowledge")).status == 200
    answer = await _as_nurse(planned, "POST", f"{path}/$vkp-close", _close(outcome=outcome))
    assert answer.status < 500, answer.body


async def test_a_task_that_is_no_alert_and_a_closed_alert(planned):
    work = await _threshold_alert(planned)
    plain = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": "Patient/vkp-pas-1"},
    }
    made = await _as_nurse(planned, "POST", "Task", plain)
    assert made.status == 201, made.body
    plain_id = (
        orjson.loads(made.body)["id"] if made.body else made.headers["location"].split("/")[1]
    )
    answer = await _as_nurse(planned, "POST", f"Task/{plain_id}/$vkp-acknowledge")
    assert answer.status == 404
    answer = await _as_nurse(planned, "POST", "Task/nope/$vkp-acknowledge")
    assert answer.status == 404
    path = f"Task/{work['id']}"
    assert (await _as_nurse(planned, "POST", f"{path}/$vkp-close", _close())).status == 200
    for op, body in [("$vkp-close", _close()), ("$vkp-acknowledge", None), ("$vkp-arrived", None)]:
        again = await _as_nurse(planned, "POST", f"{path}/{op}", body)
        assert again.status in (400, 409), (op, again.body)


@pytest.mark.parametrize(
    "params",
    [
        [("from", "garbage")],
        [("to", "2026-13-45")],
        [("from", "2026-01-01"), ("to", "2025-01-01")],
        [("from", "ge2026")],
        [("bogus", "1")],
    ],
)
async def test_odd_response_time_periods_are_a_4xx(planned, params):
    await _alarm(planned)
    nurse = Principal(
        "personnel",
        "siri",
        "epj",
        frozenset({"user/*.cruds"}),
        "Siri",
        hpr="9144889",
        org_nr="964338531",
    )
    answer = await _as(planned, nurse, "GET", "$vkp-response-times", params=params)
    assert answer.status < 500, answer.body


# --- 4. clinical sense ---------------------------------------------------------------------


def _coded(obs: dict, *codings: tuple[str, str]) -> dict:
    obs["code"] = {"coding": [{"system": s, "code": c} for s, c in codings]}
    return obs


async def _gateway_alerts(platform, observations: list[dict]) -> list[dict]:
    statuses = await post_batch(platform, observations)
    assert set(statuses) == {"201"}, statuses
    hub = Hub(platform)
    await jobs.evaluate_gateway_readings(hub, FollowUp(hub), NOW + timedelta(seconds=5))
    return await resources(platform, "DetectedIssue")


LOINC, MDC = "http://loinc.org", "urn:iso:std:iso:11073:10101"


@pytest.mark.parametrize(
    "codes",
    [
        [(LOINC, "59408-5")],
        [(LOINC, "59408-5"), (LOINC, "2708-6")],
        [(MDC, "150456")],
        [("http://snomed.info/sct", "431314004")],
    ],
)
async def test_a_gateways_low_spo2_in_any_code_we_take_raises_the_alert(planned, codes):
    issues = await _gateway_alerts(planned, [_coded(vkp_observation(1, 88), *codes)])
    kinds = sorted(i["code"]["coding"][0]["code"] for i in issues)
    assert kinds == ["news2", "threshold"]


async def test_one_unreadable_gateway_reading_does_not_silence_the_others(planned):
    dated = vkp_observation(1, 95)
    dated["effectiveDateTime"] = NOW.date().isoformat()  # VKP's examples: a date only
    issues = await _gateway_alerts(planned, [dated, vkp_observation(2, 88)])
    assert sorted(i["code"]["coding"][0]["code"] for i in issues) == ["news2", "threshold"]


async def test_a_weight_in_grams_is_compared_in_kilograms(planned):
    first = _weight(1, 80000, "g", NOW - timedelta(days=1))
    second = _weight(2, 82500, "g", NOW)
    issues = await _gateway_alerts(planned, [first, second])
    (issue,) = issues
    assert issue["implicated"] == [{"reference": "Goal/weight-rise"}]


def _weight(n: int, value, unit: str, at) -> dict:
    obs = _coded(vkp_observation(n, 0, device="dev-bp-1"), (LOINC, "29463-7"))
    obs["valueQuantity"] = {
        "value": value,
        "unit": unit,
        "system": "http://unitsofmeasure.org",
        "code": unit,
    }
    obs["effectiveDateTime"] = at.isoformat()
    return obs


async def test_a_goal_in_another_unit_does_not_stop_the_ingest(planned):
    async with planned.store.transaction() as tx:
        from .conftest import goal

        odd = goal(
            "weight-max-g",
            "29463-7",
            detailRange={
                "high": {
                    "value": 90000,
                    "unit": "g",
                    "system": "http://unitsofmeasure.org",
                    "code": "g",
                }
            },
        )
        await tx.update(odd, odd["id"])
    ingest = Ingest(planned, clock=lambda: NOW)
    outcomes = await ingest.handle(
        [reading(1, "weight", 95, "kg", device="dev-bp-1"), reading(2, "spo2", 88, "%")]
    )
    assert [o.status for o in outcomes] == ["stored", "stored"]
    kinds = sorted(
        i["code"]["coding"][0]["code"] for i in await resources(planned, "DetectedIssue")
    )
    assert "threshold" in kinds  # the SpO2 alert still comes


async def test_a_forged_alert_task_does_not_stop_escalation(planned):
    await _threshold_alert(planned)
    forged = {
        "resourceType": "Task",
        "identifier": [{"system": "urn:enjournal:vkp:alert", "value": "forged"}],
        "status": "requested",
        "intent": "order",
        "for": {"reference": "Patient/vkp-pas-1"},
    }
    # Only the hub raises alerts: the nurse's forged alert Task is refused ...
    assert (await _as_nurse(planned, "POST", "Task", forged)).status == 403
    # ... and one that got into the store anyway (an import) does not stop escalation.
    async with planned.store.transaction() as tx:
        await tx.create(forged)
    escalated = await jobs.escalate(Hub(planned), NOW + timedelta(hours=3))
    assert escalated >= 1


async def test_a_closed_alert_is_not_escalated(planned):
    work = await _threshold_alert(planned)
    path = f"Task/{work['id']}"
    assert (await _as_nurse(planned, "POST", f"{path}/$vkp-close", _close())).status == 200
    await jobs.escalate(Hub(planned), NOW + timedelta(hours=3))
    task = next(t for t in await resources(planned, "Task") if t["id"] == work["id"])
    assert task["status"] == "completed"
    assert task["extension"][0]["valueInteger"] == 1


async def test_an_alarm_from_a_device_without_patient_is_refused(planned):
    outcomes = await AlarmIntake(Hub(planned), Counter(), clock=lambda: NOW).handle(
        [
            Message("dev-spare", fall(1)),
            Message("dev-oxi-1", b'{"id": 1, "event": "fall"}'),
            Message(
                "dev-oxi-1",
                b'{"id": "x", "event": "fall", "patient": "13097248022", '
                b'"at": "2026-12-03T09:00:00", "sent": 5}',
            ),
            Message("dev-oxi-1", b"[]"),
            Message("dev/../x", fall(2)),
        ]
    )
    assert {o.status for o in outcomes} == {"refused"}
