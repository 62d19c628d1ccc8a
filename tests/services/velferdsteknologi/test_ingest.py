"""The hub's ingest on each database: readings stored once, refused with a reason, a device
writing only for its own patient, every write and refusal audited."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from enjournal.fhir import jsonio
from enjournal.services.velferdsteknologi.ingest import Ingest, Message
from tests.probes import audit_rows, current_of_type

from .conftest import PATIENTS

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def reading(n: int, value=96, kind="spo2", unit="%", patient=PATIENTS["vkp-pas-1"], **more):
    body = {
        "id": f"r-{n}",
        "type": kind,
        "value": value,
        "unit": unit,
        "measured": "2026-12-03T09:55:00+01:00",
        "sent": "2026-12-03T09:55:03+01:00",
        "patient": patient,
        **more,
    }
    return orjson.dumps(body)


async def stored_observations(platform) -> list[dict]:
    found = await current_of_type(platform.store, "Observation")
    return [jsonio.loads(content) for _, content in found]


async def test_readings_are_stored_once_and_repeats_are_duplicates(hub):
    ingest = Ingest(hub, clock=lambda: NOW)
    first = await ingest.handle([Message("dev-oxi-1", reading(n)) for n in range(5)])
    assert [o.status for o in first] == ["stored"] * 5
    again = await ingest.handle(
        [Message("dev-oxi-1", reading(n)) for n in (3, 4, 5, 5)]  # a retry, and a copy
    )
    assert [o.status for o in again] == ["duplicate", "duplicate", "stored", "duplicate"]
    found = await stored_observations(hub)
    assert len(found) == 6
    obs = found[0]
    assert obs["subject"]["reference"] == "Patient/vkp-pas-1"
    assert obs["device"]["reference"] == "Device/dev-oxi-1"
    assert ingest.counts["stored"] == 6 and ingest.counts["duplicate"] == 3


async def test_bad_readings_are_refused_with_a_reason_and_counted(hub):
    ingest = Ingest(hub, clock=lambda: NOW)
    outcomes = await ingest.handle(
        [
            Message("dev-oxi-1", reading(1)),
            Message("dev-oxi-1", reading(2, value=140)),  # impossible SpO2
            Message("dev-oxi-1", reading(3, unit="kg")),  # wrong unit
            Message("dev-oxi-1", reading(4, kind="mood")),  # unknown type
            Message("dev-oxi-1", b"{not json"),
            Message("dev-oxi-1", reading(5, patient="123")),
        ]
    )
    assert [o.status for o in outcomes] == ["stored"] + ["refused"] * 5
    codes = [o.code for o in outcomes[1:]]
    assert codes[:3] == ["impossible-value", "wrong-unit", "unknown-type"]
    assert codes[3] == "not-json" and codes[4] == "missing-field"
    assert all(o.reason for o in outcomes[1:])
    assert ingest.counts["refused"] == 5
    assert len(await stored_observations(hub)) == 1  # the good one was not held back


async def test_a_device_cannot_write_for_a_patient_it_is_not_assigned_to(hub):
    ingest = Ingest(hub, clock=lambda: NOW)
    other = PATIENTS["vkp-pas-2"]
    outcomes = await ingest.handle(
        [
            Message("dev-oxi-1", reading(1)),
            Message("dev-oxi-1", reading(2, patient=other)),  # assigned to vkp-pas-1
            Message("dev-spare", reading(3)),  # assigned to nobody
            Message("dev-unknown", reading(4)),
        ]
    )
    assert [o.status for o in outcomes] == ["stored", "refused", "refused", "refused"]
    assert outcomes[1].code == "http-403"
    assert outcomes[2].code == "http-403" and outcomes[3].code == "http-422"
    found = await stored_observations(hub)
    assert [o["subject"]["reference"] for o in found] == ["Patient/vkp-pas-1"]
    refused = await _refusals(hub)
    assert {(r.patient_id, r.actor) for r in refused} >= {("vkp-pas-2", "client:vkp-hub")}


async def _refusals(platform) -> list:
    """Audit rows of refused accesses (outcome other than 0, success)."""
    return [r for r in await audit_rows(platform.store) if r.outcome != "0"]


@pytest.mark.backends("postgres")
async def test_concurrent_consumers_store_a_redelivered_reading_once(hub):
    import asyncio

    ingests = [Ingest(hub, clock=lambda: NOW) for _ in range(4)]
    pulse = {"kind": "pulse", "value": 70, "unit": "/min"}
    group = [Message("dev-bp-1", reading(n, **pulse)) for n in range(20)]
    results = await asyncio.gather(*(i.handle(group) for i in ingests))
    assert sum(o.status == "stored" for r in results for o in r) == 20
    assert len(await stored_observations(hub)) == 20
