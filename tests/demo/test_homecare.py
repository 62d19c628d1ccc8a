"""The demo's home follow-up: the world loads once, the simulated devices send readings
through the hub, and some of an unwell patient's readings raise alerts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from enjournal.bootstrap import compose, open_platform
from enjournal.demo.homecare import FOLLOWED, load_homecare
from enjournal.fhir.norwegian_ids import is_valid_fnr
from enjournal.security.setup import worker_security
from enjournal.services.velferdsteknologi.simulator import Simulator
from enjournal.settings import Settings
from tests.probes import current_of_type

pytestmark = pytest.mark.backends("memory")
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


@pytest.fixture
async def platform(store_url):
    settings = Settings(database_url=store_url, auth=True, terminology_check=False, jobs=False)
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security))
    await security.start(platform.store)
    numbers = _valid_numbers("010540", 8)
    async with platform.store.transaction() as tx:
        for n in range(8):
            born = "1940-05-01" if n % 4 else "1990-05-01"
            patient = {
                "resourceType": "Patient",
                "id": f"p-{n:03d}",
                "birthDate": born,
                "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": numbers[n]}],
            }
            await tx.update(patient, patient["id"])
    yield platform
    await security.stop()


def _valid_numbers(birth: str, count: int) -> list[str]:
    found = []
    for individual in range(100, 1000):
        candidate = next(
            (
                f"{birth}{individual}{k:02d}"
                for k in range(100)
                if is_valid_fnr(f"{birth}{individual}{k:02d}")
            ),
            None,
        )
        if candidate:
            found.append(candidate)
        if len(found) == count:
            return found
    raise AssertionError("no valid numbers")


async def test_the_world_loads_once_and_the_devices_send(platform):
    added, patients = await load_homecare(platform.store, NOW)
    assert len(patients) == FOLLOWED and all(p != "p-000" for p in patients)  # the older ones
    again, _ = await load_homecare(platform.store, NOW)
    assert added > 0 and again == 0
    simulator = Simulator(platform, seed=3)
    stored = await simulator.round(NOW)
    assert stored == FOLLOWED * 4  # SpO2 and pulse, blood pressure, weight
    unwell = await simulator.round(NOW.replace(minute=5), unwell_share=1.0)
    assert unwell == FOLLOWED * 4
    issues = await current_of_type(platform.store, "DetectedIssue")
    assert len(issues) >= FOLLOWED  # every unwell patient crossed a threshold
