"""The address register: loading it from a file (all or nothing, reloads deactivate what is
gone), the questions messaging asks of it (find_party, receives, acts_for) and searching it,
on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import io
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from enjournal.security.principal import Principal
from enjournal.services.messaging import addresses
from enjournal.services.messaging.command import find_command, load_addresses_command
from enjournal.services.messaging.register_file import (
    RegisterError,
    addresses_job,
    load_if_changed,
    load_register,
)

pytestmark = pytest.mark.backends("sqlite", "postgres")

SAMPLE = Path(__file__).parent / "data" / "addresses.json"
GP_OFFICE, HOSPITAL, PHARMACY, CLINIC, GP = "8100001", "8100002", "8100003", "8100004", "8100005"
HOSPITAL_ORGNR = "908101111"


def _bundle() -> dict:
    return json.loads(SAMPLE.read_text())


def _write(tmp_path: Path, bundle: dict, name: str = "register.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(bundle))
    return path


def _without(bundle: dict, *ids: str) -> dict:
    smaller = copy.deepcopy(bundle)
    smaller["entry"] = [e for e in smaller["entry"] if e["resource"]["id"] not in ids]
    return smaller


async def _party(platform, her_id: str):
    async with platform.store.transaction(write=False) as tx:
        return await addresses.find_party(tx, her_id, fresh=True)


async def _count(platform, kind: str) -> int:
    async with platform.store.transaction(write=False) as tx:
        return len(await tx.with_id_prefix(kind))


@pytest.fixture(autouse=True)
def _no_cached_parties():
    addresses.forget()
    yield
    addresses.forget()


async def test_load_gives_the_parties_what_they_receive(platform):
    summary = await load_register(platform.store, SAMPLE)
    assert summary is not None
    assert (summary.added, summary.changed, summary.deactivated) == (5, 0, 0)
    assert summary.endpoints == 5
    office = await _party(platform, GP_OFFICE)
    assert office is not None and office.reference == "Organization/ar-legekontor"
    assert office.receives("EPIKRISE") and office.receives("APPREC")
    assert not office.receives("HENVIS")
    hospital = await _party(platform, HOSPITAL)
    assert hospital is not None and hospital.automatic_receipt
    assert hospital.receives("HENVIS") and not hospital.receives("EPIKRISE")
    pharmacy = await _party(platform, PHARMACY)
    assert pharmacy is not None and pharmacy.receives("DIALOG_FORESPORSEL")
    assert not pharmacy.automatic_receipt and not pharmacy.receives("EPIKRISE")
    clinic = await _party(platform, CLINIC)
    assert clinic is not None and clinic.org_nr == HOSPITAL_ORGNR
    gp = await _party(platform, GP)
    assert gp is not None and gp.name == "Kari Nordmann" and gp.reference.startswith("Pract")
    assert await _party(platform, "999") is None


async def test_the_same_file_again_writes_nothing(platform, tmp_path):
    assert await load_register(platform.store, SAMPLE) is not None
    async with platform.store.transaction(write=False) as tx:
        before = (await tx.read("Organization", "ar-sykehus")).version
    assert await load_register(platform.store, SAMPLE) is None
    path = _write(tmp_path, _bundle())  # the same resources in another file: no new versions
    summary = await load_register(platform.store, path)
    assert summary is not None and (summary.unchanged, summary.changed, summary.added) == (5, 0, 0)
    async with platform.store.transaction(write=False) as tx:
        assert (await tx.read("Organization", "ar-sykehus")).version == before


async def test_acts_for(platform):
    await load_register(platform.store, SAMPLE)
    own = Principal(kind="personnel", subject="a", client_id="c", her_id=CLINIC)
    colleague = Principal(kind="system", subject="b", client_id="c", org_nr=HOSPITAL_ORGNR)
    stranger = Principal(kind="personnel", subject="s", client_id="c", org_nr="889906081")
    nobody = Principal(kind="personnel", subject="n", client_id="c")
    async with platform.store.transaction(write=False) as tx:
        assert await addresses.acts_for(tx, own, CLINIC)
        assert await addresses.acts_for(tx, colleague, CLINIC)  # the service's organisation
        assert await addresses.acts_for(tx, colleague, HOSPITAL)
        assert not await addresses.acts_for(tx, colleague, GP_OFFICE)
        assert not await addresses.acts_for(tx, stranger, CLINIC)
        assert not await addresses.acts_for(tx, nobody, CLINIC)


async def test_a_party_gone_from_the_file_is_kept_inactive(platform, tmp_path):
    await load_register(platform.store, SAMPLE)
    assert (await _party(platform, PHARMACY)).receives("APPREC")
    path = _write(tmp_path, _without(_bundle(), "ar-apotek", "ar-apotek-endpoint"))
    summary = await load_register(platform.store, path)
    assert summary is not None and (summary.deactivated, summary.unchanged) == (1, 4)
    pharmacy = await _party(platform, PHARMACY)
    assert pharmacy is not None and not pharmacy.active
    assert not pharmacy.receives("APPREC")
    async with platform.store.transaction(write=False) as tx:
        endpoint = json.loads((await tx.read("Endpoint", "ar-apotek-endpoint")).content)
    assert endpoint["status"] == "off"
    summary = await load_register(platform.store, SAMPLE)  # back in the register
    assert summary is not None and summary.changed == 1
    assert (await _party(platform, PHARMACY)).receives("APPREC")


def _broken_endpoint(bundle: dict) -> dict:
    bundle["entry"][3]["resource"]["connectionType"]["code"] = "direct-project"
    return bundle


def _party_without_her_id(bundle: dict) -> dict:
    bundle["entry"][4]["resource"]["identifier"].pop()
    return bundle


def _invalid_resource(bundle: dict) -> dict:
    bundle["entry"][6]["resource"]["active"] = "yes"
    return bundle


def _dangling_endpoint(bundle: dict) -> dict:
    return _without(bundle, "ar-fastlege-endpoint")


@pytest.mark.parametrize(
    ("spoil", "where"),
    [
        (_broken_endpoint, "entry 4 (Endpoint/ar-sykehus-endpoint)"),
        (_party_without_her_id, "entry 5 (Organization/ar-apotek)"),
        (_invalid_resource, "entry 7 (HealthcareService/ar-poliklinikk)"),
        (_dangling_endpoint, "(PractitionerRole/ar-fastlege)"),
    ],
)
async def test_a_bad_file_names_the_entry_and_writes_nothing(platform, tmp_path, spoil, where):
    with pytest.raises(RegisterError, match=re.escape(where)):
        await load_register(platform.store, _write(tmp_path, spoil(_bundle())))
    assert await _count(platform, "Organization") == 0
    assert await _count(platform, "Endpoint") == 0


async def test_a_bad_line_of_ndjson_names_the_line(platform, tmp_path):
    lines = [json.dumps(e["resource"]) for e in _bundle()["entry"]]
    lines[2] = lines[2][:-5]
    path = tmp_path / "register.ndjson"
    path.write_text("\n".join(lines))
    with pytest.raises(RegisterError, match="line 3: not JSON"):
        await load_register(platform.store, path)
    assert await _count(platform, "Organization") == 0
    path.write_text("\n".join(json.dumps(e["resource"]) for e in _bundle()["entry"]))
    summary = await load_register(platform.store, path)
    assert summary is not None and summary.added == 5


async def test_a_her_id_held_by_another_resource_is_refused(platform, tmp_path):
    async with platform.store.transaction() as tx:
        other = {
            "resourceType": "Organization",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.2", "value": PHARMACY}],
            "name": "Et annet apotek",
        }
        await tx.create(other, id_="annet")
    with pytest.raises(RegisterError, match="HER-id 8100003 is already that of Organization/annet"):
        await load_register(platform.store, SAMPLE)
    assert await _count(platform, "Endpoint") == 0


async def test_load_if_changed_and_the_job(platform, tmp_path):
    path = _write(tmp_path, _bundle())
    assert addresses_job(platform) is None  # no file set
    platform.settings = replace(platform.settings, messaging_addresses=str(path))
    job = addresses_job(platform)
    assert job is not None and job.every == 300
    assert await job.run(platform.store, None) == 5
    assert await load_if_changed(platform, path) is None
    _write(tmp_path, _without(_bundle(), "ar-fastlege", "ar-fastlege-endpoint"))
    summary = await load_if_changed(platform, path)
    assert summary is not None and summary.deactivated == 1
    assert not (await _party(platform, GP)).active
    path.write_text("not a register")
    assert await job.run(platform.store, None) == 0  # logged, not raised


def _search(**criteria):
    async def run(platform) -> list[str]:
        async with platform.store.transaction(write=False) as tx:
            found = await addresses.search_parties(tx, **criteria)
        return sorted(p.her_id for p in found)

    return run


async def test_searching_the_register(platform):
    await load_register(platform.store, SAMPLE)
    assert await _search(her_id=CLINIC)(platform) == [CLINIC]
    assert await _search(name="nordlandssykehuset")(platform) == [HOSPITAL]
    assert await _search(name="poliklinikk")(platform) == [CLINIC]
    assert await _search(org_nr=HOSPITAL_ORGNR)(platform) == [HOSPITAL, CLINIC]
    assert await _search(org_nr="925308293")(platform) == [GP_OFFICE, GP]
    assert await _search(service="medisinsk")(platform) == [CLINIC]
    assert await _search(org_nr=HOSPITAL_ORGNR, service="medisinsk")(platform) == [CLINIC]
    assert await _search(org_nr="925308293", service="medisinsk")(platform) == []
    with pytest.raises(ValueError):
        await _search()(platform)


async def test_the_commands(platform, store_url, capsys):
    out = io.StringIO()
    assert await load_addresses_command(store_url, str(SAMPLE), out=out) == 0
    assert "5 parties added, 0 changed, 0 deactivated" in out.getvalue()
    out = io.StringIO()
    assert await find_command(store_url, org_nr=HOSPITAL_ORGNR, out=out) == 0
    lines = out.getvalue().splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        [HOSPITAL, "Nordlandssykehuset HF", "Organization"],
        [CLINIC, "Medisinsk poliklinikk", "HealthcareService"],
    ]
    assert "HENVIS" in lines[0].split("\t")[3]
    assert await find_command(store_url, name="finnes ikke") == 1
    assert await find_command(store_url) == 2


async def test_the_demo_register_loads_and_says_who_receives_what(platform, tmp_path):
    from enjournal.demo.messaging import address_register
    from enjournal.demo.population import generate_population

    shared = next(generate_population(0, 7))
    register = address_register([e["resource"] for e in shared["entry"]])
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": []}
    bundle["entry"] = [{"resource": r} for r in register]
    summary = await load_register(platform.store, _write(tmp_path, bundle))
    assert summary is not None and summary.added > 0
    by_id = {r["id"]: addresses.her_id_of(r) for r in register if r["resourceType"] != "Endpoint"}
    office = await _party(platform, by_id["legekontor-0001"])
    assert office.receives("EPIKRISE") and not office.receives("HENVIS")
    pharmacy = await _party(platform, by_id["apotek-0001"])
    assert pharmacy.receives("DIALOG_SVAR") and not pharmacy.receives("EPIKRISE")
    clinics = [id_ for id_ in by_id if id_.endswith("-poliklinikk")]
    clinic = await _party(platform, by_id[clinics[0]])
    assert clinic.receives("HENVIS") and clinic.org_nr is not None
    assert sum([(await _party(platform, her)).automatic_receipt for her in by_id.values()]) == 1


def test_the_demo_spells_the_service_s_values_alike():
    from enjournal.demo import messaging as demo
    from enjournal.services.messaging import addresses, register_file, rules

    assert demo.AUTOMATIC_RECEIPT == addresses.AUTOMATIC_RECEIPT
    assert (demo.CONNECTION_SYSTEM, demo.CONNECTION) == (
        register_file.CONNECTION_SYSTEM,
        register_file.CONNECTION,
    )
    assert (demo.FUNCTION_SYSTEM, demo.APPREC) == (rules.FUNCTION_SYSTEM, rules.APPREC)


async def test_a_common_name_finds_parties_without_an_overlong_search(platform):
    """Many people match a short name: their roles are looked up in runs, each search
    value under its limit of 2,048 characters."""
    await load_register(platform.store, SAMPLE)
    async with platform.store.transaction() as tx:
        for n in range(120):
            person = {"resourceType": "Practitioner", "id": f"lege-med-et-langt-navn-{n:04d}",
                      "name": [{"family": f"Hansen {n}"}]}  # fmt: skip
            await tx.create(person, id_=person["id"])
    assert await _search(name="e")(platform)  # no "at most 2048 characters"
