"""Second attack: ``$export``'s ``_typeFilter`` as an oracle on what the export policy
removes (notes: /work/notes/attack2-registers.md).  A filter is run over the stored, whole
resources, so a client finds a patient by the national id, name or protected address the
policy strips from the file, and the file then ties that value to the patient's data.

Tests marked ``xfail(strict=True)`` demonstrate an open defect; remove the mark when fixed.
"""

from __future__ import annotations

import orjson
import pytest

from tests.security.conftest import PIDS
from tests.services.registers import test_bulk

bulk = test_bulk.bulk

pytestmark = pytest.mark.backends("sqlite", "postgres")
SECRET = [{"line": ["Hemmeligveien 7"], "postalCode": "9990", "city": "BATSFJORD"}]


async def filtered(bulk, type_: str, search: str, who: str = "kpr") -> set[str]:
    """The ids a client gets from ``$export`` with one ``_typeFilter``: by default the KPR
    register's client (``system/*.rs register/export``, which may not read the API)."""
    url = f"/fhir/$export?_type={type_}&_typeFilter={type_}?{search}"
    r = await bulk.kick_off(url, who)
    if r.status_code != 202:  # refusing the filter is a valid fix
        assert r.status_code in (400, 403), r.text[:200]
        return set()
    await bulk.run_jobs()
    headers = await bulk.headers(who)
    status = await bulk.http.get(r.headers["content-location"], headers=headers)
    found = await bulk.lines(status.json(), who)
    return {resource["id"] for resource in found.get(type_, [])}


async def hide_siris_address(bulk) -> None:
    """siri's strengt fortrolig address (the fixture's label) made her own."""
    async with bulk.platform.store.transaction() as tx:
        siri = orjson.loads((await tx.read("Patient", "siri")).content)
        await tx.update({**siri, "address": SECRET}, "siri")


async def test_the_file_itself_strips_what_the_filters_below_search(bulk):
    """The baseline: ola's Patient has no id nor name, siri's no address, in the file."""
    await hide_siris_address(bulk)
    found = await bulk.lines(await bulk.export("/fhir/$export?_type=Patient", "kpr"), "kpr")
    patients = {p["id"]: p for p in found["Patient"]}
    assert "identifier" not in patients["ola"] and "name" not in patients["ola"]
    assert "address" not in patients["siri"]


async def test_a_filter_cannot_find_a_patient_by_a_national_id_the_export_hides(bulk):
    assert await filtered(bulk, "Patient", f"identifier={PIDS['ola']}") == set()
    chain = f"subject:Patient.identifier={PIDS['ola']}"  # a system/*.rs client: chains too
    assert await filtered(bulk, "Observation", chain, "other") == set()


async def test_a_filter_cannot_find_a_patient_by_a_name_the_export_hides(bulk):
    assert await filtered(bulk, "Patient", "name=ola") == set()


async def test_a_filter_cannot_find_a_protected_address(bulk):
    await hide_siris_address(bulk)
    # a prefix search: four kick-offs read a postal code digit by digit
    assert await filtered(bulk, "Patient", "address-postalcode=999") == set()
    assert await filtered(bulk, "Patient", "address=Hemmelig") == set()
    chain = "subject:Patient.address-city=BATS"
    assert await filtered(bulk, "Observation", chain, "other") == set()
