"""Two platforms in one process keep their own e-resept state (services/eresept/state.py):
an organisation or a product one platform cached from its store is not answered for the
other's, and each runs with its own clock."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx

from enjournal.bootstrap import build_platform, close_platform
from enjournal.fhir import jsonio
from enjournal.server.app import create_app
from enjournal.services.eresept import queries
from enjournal.services.eresept.state import EreseptState, serving
from enjournal.settings import Settings
from tests.services.eresept.conftest import IBUPROFEN, ORGS, params, prescription, world

PHARMACY_NR = ORGS["apotek1"][0]


@asynccontextmanager
async def platform_app(pharmacy_name: str, with_ibuprofen: bool = True):
    """A platform on its own memory store holding the test world, where the pharmacy
    apotek1 has ``pharmacy_name``, served without security (the caller names its
    organisation)."""
    settings = Settings(database_url="memory://", auth=False, terminology_check=False)
    platform = await build_platform(settings)
    async with platform.store.transaction() as tx:
        for resource in world():
            if resource["id"] == "apotek1":
                resource = {**resource, "name": pharmacy_name}
            if resource["id"] == f"fest-{IBUPROFEN}" and not with_ibuprofen:
                continue
            await tx.update(resource, resource["id"])
    app = create_app(settings, platform=platform)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test/fhir") as http:
            yield http, platform.store
    finally:
        await close_platform(platform)


def ibuprofen_prescription() -> dict:
    body = prescription(IBUPROFEN)
    body["requester"] = {
        "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "2000001"}
    }
    return params(prescription=body)


async def test_products_are_cached_per_platform():
    first_app = platform_app("Apotek En")
    second_app = platform_app("Apotek En", with_ibuprofen=False)
    async with first_app as (first, _), second_app as (second, _):
        known = await first.post("/MedicationRequest/$prescribe", json=ibuprofen_prescription())
        assert known.status_code == 201, known.text
        # The first platform cached the product; the second's store does not hold it.
        unknown = await second.post("/MedicationRequest/$prescribe", json=ibuprofen_prescription())
        assert unknown.status_code in (400, 422), unknown.text


async def test_organisations_are_cached_per_platform():
    first_app, second_app = platform_app("Apotek En"), platform_app("Apotek To")
    async with first_app as (first, one), second_app as (second, two):
        for http, store, name in ((first, one, "Apotek En"), (second, two, "Apotek To")):
            created = await http.post(
                "/MedicationRequest/$prescribe", json=ibuprofen_prescription()
            )
            assert created.status_code == 201, created.text
            mr_id = created.json()["parameter"][0]["resource"]["id"]
            taken = await http.post(
                f"/MedicationRequest/{mr_id}/$take", json=params(organization=PHARMACY_NR)
            )
            assert taken.status_code == 200, taken.text
            # The holder is named as this platform's store names the organisation.
            holder = json.dumps(await stored(store, mr_id), ensure_ascii=False)
            assert name in holder and ({"Apotek En", "Apotek To"} - {name}).pop() not in holder


async def stored(store, mr_id: str) -> dict:
    async with store.transaction() as tx:
        return jsonio.loads((await tx.read("MedicationRequest", mr_id)).content)


async def test_each_state_caches_for_itself_and_keeps_its_clock():
    async with platform_app("Apotek En") as (_, one), platform_app("Apotek To") as (_, two):
        then = datetime(2020, 1, 2, tzinfo=UTC)
        states = EreseptState(clock=lambda: then), EreseptState()

        async def name_and_time(request, store):
            from enjournal.services.eresept import api

            async with store.transaction() as tx:
                org = await queries.organization(tx, PHARMACY_NR)
            return org["name"], api.clock()

        first = await serving(name_and_time, states[0])(None, one)
        second = await serving(name_and_time, states[1])(None, two)
        assert first == ("Apotek En", then)
        assert second[0] == "Apotek To" and second[1] > then
