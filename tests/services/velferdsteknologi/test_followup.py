"""The follow-up after readings are stored: individual thresholds and NEWS2 raise alerts
(DetectedIssue + Task to the care team), once per cause; the nurse acknowledges and closes
them through the API, and only for her own municipality's patients."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from enjournal.rest.message import FhirRequest
from enjournal.security.principal import Principal
from enjournal.services.velferdsteknologi.ingest import Ingest, Message
from tests.probes import current_of_type

from .conftest import MUNICIPALITY, NURSE_HPR, plan_world  # noqa: F401

pytestmark = pytest.mark.backends("memory", "postgres")

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
UCUM = "http://unitsofmeasure.org"


def reading(n, kind, value, unit, at=NOW, device="dev-oxi-1"):
    body = {
        "id": f"{kind}-{n}",
        "type": kind,
        "value": value,
        "unit": unit,
        "measured": at.isoformat(),
        "patient": "13097248022",
    }
    return Message(device, orjson.dumps(body))


async def resources(platform, type_: str) -> list[dict]:
    return [orjson.loads(c) for _, c in await current_of_type(platform.store, type_)]


async def test_a_reading_below_the_threshold_raises_one_alert(planned):
    ingest = Ingest(planned, clock=lambda: NOW)
    await ingest.handle([reading(1, "spo2", 95, "%")])
    assert await resources(planned, "DetectedIssue") == []
    await ingest.handle([reading(2, "spo2", 90, "%")])
    (issue,) = await resources(planned, "DetectedIssue")
    (task,) = await resources(planned, "Task")
    assert issue["patient"]["reference"] == "Patient/vkp-pas-1"
    assert issue["implicated"] == [{"reference": "Goal/spo2-min"}]
    assert issue["severity"] == "moderate" and issue["status"] == "preliminary"
    assert issue["detail"] == "SpO2 90 % er under nedre grense 92 %"
    (evidence,) = issue["evidence"][0]["detail"]
    assert evidence["reference"].startswith("Observation/")
    assert task["focus"]["reference"] == f"DetectedIssue/{issue['id']}"
    assert task["owner"]["reference"] == "CareTeam/hjemmesykepleien"
    assert task["status"] == "requested" and task["priority"] == "urgent"
    # Still low while that alert is open, and the same reading again: no second alert.
    await ingest.handle([reading(3, "spo2", 89, "%"), reading(2, "spo2", 90, "%")])
    assert len(await resources(planned, "DetectedIssue")) == 1


async def test_a_weight_rise_within_three_days_is_an_alert(planned):
    ingest = Ingest(planned, clock=lambda: NOW)
    scale = "dev-scale-1"
    first = reading(1, "weight", 80.0, "kg", NOW - timedelta(days=3), device="dev-bp-1")
    await ingest.handle([first])
    await ingest.handle([reading(2, "weight", 81.9, "kg", NOW, device="dev-bp-1")])
    assert await resources(planned, "DetectedIssue") == []
    await ingest.handle([reading(3, "weight", 82.0, "kg", NOW, device="dev-bp-1")])
    (issue,) = await resources(planned, "DetectedIssue")
    assert issue["implicated"] == [{"reference": "Goal/weight-rise"}]
    assert len(issue["evidence"][0]["detail"]) == 2  # from 80.0 to 82.0
    assert scale  # (the scale of vkp-pas-2 is not this patient's)


async def test_news2_high_is_an_urgent_alert(planned):
    ingest = Ingest(planned, clock=lambda: NOW)
    await ingest.handle(
        [
            reading(1, "pulse", 135, "/min"),  # 3
            reading(2, "respiration-rate", 26, "/min"),  # 3
            reading(3, "temperature", 39.2, "Cel"),  # 2
            reading(4, "spo2", 93, "%"),  # 2 (and under nothing: the Goal says 92)
        ]
    )
    issues = {i["code"]["coding"][0]["code"]: i for i in await resources(planned, "DetectedIssue")}
    assert set(issues) == {"news2"}
    assert issues["news2"]["severity"] == "high"
    assert issues["news2"]["detail"].startswith("NEWS2 10 (høy)")
    (task,) = await resources(planned, "Task")
    assert task["priority"] == "stat"


async def _as_nurse(platform, method: str, path: str, body: dict | None = None, org=MUNICIPALITY):
    nurse = Principal(
        "personnel",
        "siri",
        "epj",
        frozenset({"user/*.cruds"}),
        "Siri Pleie",
        hpr=NURSE_HPR,
        org_nr=org,
    )
    request = FhirRequest(
        method,
        path.split("/"),
        [],
        {"content-type": "application/fhir+json"},
        orjson.dumps(body) if body else b"",
        "http://test/fhir",
    )
    return await platform.handle(request, nurse)


async def test_the_nurse_acknowledges_and_closes_an_alert(planned):
    ingest = Ingest(planned, clock=lambda: NOW)
    await ingest.handle([reading(1, "spo2", 88, "%")])
    tasks = await resources(planned, "Task")
    # SpO2 88 crosses the Goal, and scores 3 in NEWS2 (a single 3: low-medium): two alerts
    assert sorted(t["code"]["coding"][0]["code"] for t in tasks) == ["news2", "threshold"]
    (task,) = [t for t in tasks if t["code"]["coding"][0]["code"] == "threshold"]
    path = f"Task/{task['id']}"
    other = await _as_nurse(planned, "POST", f"{path}/$vkp-acknowledge", org="999999999")
    assert other.status == 404  # another municipality: as if there were nothing
    done = await _as_nurse(planned, "POST", f"{path}/$vkp-acknowledge")
    assert done.status == 200, done.body
    assert orjson.loads(done.body)["status"] == "accepted"
    again = await _as_nurse(planned, "POST", f"{path}/$vkp-acknowledge")
    assert again.status == 409
    no_action = await _as_nurse(
        planned, "POST", f"{path}/$vkp-close", {"resourceType": "Parameters", "parameter": []}
    )
    assert no_action.status == 400
    close = {
        "resourceType": "Parameters",
        "parameter": [{"name": "action", "valueString": "Ringte pasienten, ga oksygen"}],
    }
    closed = await _as_nurse(planned, "POST", f"{path}/$vkp-close", close)
    assert closed.status == 200, closed.body
    assert orjson.loads(closed.body)["output"][0]["valueString"].startswith("Ringte")
    issue = next(i for i in await resources(planned, "DetectedIssue") if i.get("implicated"))
    assert issue["status"] == "final"
    assert issue["mitigation"][0]["action"]["text"].startswith("Ringte")
    # Closed: a new low reading is a new threshold alert (the NEWS2 one is still open).
    await ingest.handle([reading(2, "spo2", 87, "%")])
    assert len(await resources(planned, "DetectedIssue")) == 3


async def test_a_consumer_warms_up_its_patients_and_plans_before_the_first_reading(planned):
    """So the first readings' alerts do not wait for a look-up per patient."""
    ingest = Ingest(planned, clock=lambda: NOW)
    assert await ingest.warm_up() == 2  # the patients of the home devices (dev-spare: none)
    assert set(ingest.followup.plans) == {"vkp-pas-1", "vkp-pas-2"}
    assert ingest.followup.plans["vkp-pas-1"].news2  # the plan was read
    searches = []
    original = ingest.hub.search

    async def counting(type_, params):
        searches.append(type_)
        return await original(type_, params)

    ingest.hub.search = counting  # type: ignore[method-assign]
    await ingest.handle([reading(1, "spo2", 96, "%")])
    assert "Patient" not in searches and "CarePlan" not in searches and "Goal" not in searches
