"""The catalogue on both backends: load the demo FEST file, look products up, find
interactions at any ATC level, report them as DetectedIssues, reload in place."""

from __future__ import annotations

import orjson
import pytest

from enjournal.fhir.validation import validate
from enjournal.services.eresept.fest import catalogue
from enjournal.services.eresept.fest.catalogue import (
    DEMO_FILE,
    FestError,
    detected_issue,
    interactions,
    load_catalogue,
    load_file,
    product,
)
from enjournal.services.eresept.fest.loader import open_catalogue, parse
from enjournal.storage import open_store

from .helpers import fest, interaction, package, write

WARFARIN, IBUPROFEN, DICLOFENAC, PARACETAMOL = "B01AA03", "M01AE01", "M01AB05", "N02BE01"
METFORMIN, LEVOTHYROXINE, AMOXICILLIN = "A10BA02", "H03AA01", "J01CA04"
SIMVASTATIN, CLARITHROMYCIN = "C10AA01", "J01FA09"


@pytest.fixture
async def demo(store):
    await load_file(store, DEMO_FILE)
    return store


async def _read(store, type_, id_):
    async with store.transaction(write=False) as tx:
        return orjson.loads((await tx.read(type_, id_)).content)


async def test_loading_the_demo_returns_its_entry_count(store):
    with open_catalogue(DEMO_FILE) as stream:
        parsed = parse(stream)
    parsed.close()
    expected = parsed.packages + parsed.consumables + parsed.interactions
    assert await load_file(store, DEMO_FILE) == expected


async def test_products_by_varenr_and_reference(demo):
    async with demo.transaction(write=False) as tx:
        warfarin = await product(tx, "900071")
        same = await product(tx, "Medication/fest-900071")
        morphine = await product(tx, "900011")
        diazepam = await product(tx, "Medication/fest-900041")
        metformin = await product(tx, "900181")
        bandage = await product(tx, "950001")
        nutrition = await product(tx, "960001")
        unknown = await product(tx, "999999")
    assert warfarin == same
    assert warfarin.medication_id == "fest-900071" and warfarin.atc == WARFARIN
    assert warfarin.name == "Warfarin Demofarm tab 2,5 mg" and warfarin.active
    assert (morphine.group, diazepam.group, warfarin.group) == ("A", "B", "C")
    assert morphine.kind == warfarin.kind == "legemiddel"
    assert bandage.kind == "forbruksmateriell" and bandage.atc is None
    assert nutrition.kind == "naeringsmiddel"
    assert {"T90", "E11"} <= set(metformin.reimbursement)
    assert warfarin.reimbursement and not (set(warfarin.reimbursement) & {"T90"})
    assert unknown is None


async def test_a_medication_not_from_fest_is_no_product(demo):
    async with demo.transaction() as tx:
        await tx.update({"resourceType": "Medication", "code": {"text": "local"}}, "local-1")
    async with demo.transaction(write=False) as tx:
        assert await product(tx, "Medication/local-1") is None
        assert await product(tx, "Medication/absent") is None


async def test_every_stored_catalogue_resource_validates(demo):
    with open_catalogue(DEMO_FILE) as stream:
        parsed = parse(stream)
    records = list(parsed.records())
    parsed.close()
    from enjournal.services.eresept.fest.resources import interaction_id

    for record in records:
        if record["t"] == "interaction":
            resource = await _read(
                demo, "MedicinalProductInteraction", interaction_id(record["id"])
            )
        else:
            resource = await _read(demo, "Medication", f"fest-{record['varenr']}")
        assert validate(resource) == [], resource["id"]


async def test_the_contraceptive_lists_both_active_substances(demo):
    resource = await _read(demo, "Medication", "fest-900171")
    names = {i["itemCodeableConcept"]["coding"][0]["display"] for i in resource["ingredient"]}
    assert names == {"Levonorgestrel", "Etinyløstradiol"}


async def _found(store, new, current):
    async with store.transaction(write=False) as tx:
        return await interactions(tx, new, current)


async def test_an_interaction_listed_at_a_group_matches_its_members(demo):
    # FEST lists the NSAIDs as M01A; ibuprofen (M01AE01) and diclofenac (M01AB05) are in it.
    (found,) = await _found(demo, WARFARIN, [IBUPROFEN])
    assert found.severity == "high" and found.id == "fest-int-DEMO-INT-0001"
    assert (found.atc_a, found.atc_b) == (WARFARIN, IBUPROFEN)
    assert "blødning" in found.consequence and found.mechanism
    (other,) = await _found(demo, DICLOFENAC, [WARFARIN])
    assert other.id == found.id and (other.atc_a, other.atc_b) == (DICLOFENAC, WARFARIN)


async def test_severities_follow_relevans(demo):
    (moderate,) = await _found(demo, WARFARIN, [PARACETAMOL])
    (low,) = await _found(demo, METFORMIN, [LEVOTHYROXINE])
    (high,) = await _found(demo, CLARITHROMYCIN, [SIMVASTATIN])
    assert (high.severity, moderate.severity, low.severity) == ("high", "moderate", "low")


async def test_no_interaction_without_a_listed_pair(demo):
    assert await _found(demo, WARFARIN, [AMOXICILLIN, METFORMIN]) == []
    # Two NSAIDs sit on the same side of the warfarin interaction: not an interaction.
    assert await _found(demo, IBUPROFEN, [DICLOFENAC]) == []
    # A less specific code than the one listed does not match (M01 is not all M01A).
    assert await _found(demo, WARFARIN, ["M01"]) == []
    assert await _found(demo, "", [WARFARIN]) == []


async def test_several_found_most_severe_first(demo):
    found = await _found(demo, WARFARIN, [PARACETAMOL, AMOXICILLIN, IBUPROFEN, CLARITHROMYCIN])
    assert [f.severity for f in found] == ["high", "moderate", "moderate"]
    assert {f.atc_b for f in found} == {IBUPROFEN, PARACETAMOL, CLARITHROMYCIN}


async def test_a_detected_issue_validates_and_points_at_the_interaction(demo):
    (found,) = await _found(demo, WARFARIN, [IBUPROFEN])
    issue = detected_issue(
        found, "Patient/p1", ["Medication/fest-900071", "Medication/fest-900081"]
    )
    assert validate(issue) == []
    assert issue["severity"] == "high" and issue["status"] == "final"
    assert issue["code"]["coding"][0]["code"] == "DRG"
    assert issue["detail"] == found.consequence
    assert [r["reference"] for r in issue["implicated"]] == [
        "Medication/fest-900071",
        "Medication/fest-900081",
    ]
    evidence = issue["evidence"][0]["detail"][0]["reference"]
    type_, id_ = evidence.split("/")
    assert (await _read(demo, type_, id_))["id"] == found.id


FIRST = fest(
    package("100001", "Alfa tab 1 mg", "B01AA03")
    + package("100002", "Beta tab 2 mg", "M01AE01")
    + package("100003", "Gamma tab 3 mg", "N02BE01"),
    interaction("I1", "1", ["B01AA03"], ["M01A"])
    + interaction("I2", "2", ["B01AA03"], ["N02BE01"]),
)
SECOND = fest(
    package("100001", "Alfa tab 1 mg (ny pakning)", "B01AA03")
    + package("100003", "Gamma tab 3 mg", "N02BE01")
    + package("100004", "Delta tab 4 mg", "C10AA01"),
    interaction("I2", "3", ["B01AA03"], ["N02BE01"]),
)


async def test_a_newer_catalogue_updates_in_place_and_retires_what_is_gone(store, tmp_path):
    await load_file(store, write(tmp_path / "first.xml", FIRST))
    assert len(await _found(store, "B01AA03", ["M01AE01", "N02BE01"])) == 2
    summary = await load_catalogue(store, write(tmp_path / "second.xml", SECOND))
    assert (summary.inactivated, summary.removed_interactions) == (1, 1)
    renamed = await _read(store, "Medication", "fest-100001")
    assert renamed["code"]["text"] == "Alfa tab 1 mg (ny pakning)"
    assert renamed["meta"]["versionId"] == "2"
    unchanged = await _read(store, "Medication", "fest-100003")
    assert unchanged["meta"]["versionId"] == "1"
    gone = await _read(store, "Medication", "fest-100002")
    assert gone["status"] == "inactive" and gone["code"]["text"] == "Beta tab 2 mg"
    async with store.transaction(write=False) as tx:
        retired = await product(tx, "100002")
        added = await product(tx, "100004")
    assert retired is not None and not retired.active
    assert added is not None and added.active
    # The interaction index follows the new catalogue: I1 is gone, I2 is now low.
    found = await _found(store, "B01AA03", ["M01AE01", "N02BE01"])
    assert [(f.id, f.severity) for f in found] == [("fest-int-I2", "low")]


async def test_reloading_the_same_catalogue_writes_nothing(demo):
    summary = await load_catalogue(demo, DEMO_FILE)
    assert summary.written == 0 and summary.inactivated == 0
    assert (await _read(demo, "Medication", "fest-900071"))["meta"]["versionId"] == "1"


async def test_a_broken_file_leaves_the_catalogue_as_it_was(store, tmp_path):
    await load_file(store, write(tmp_path / "first.xml", FIRST))
    # Good entries first, then one without a Varenr: nothing of the file may be stored.
    broken = fest(
        package("100001", "Alfa ENDRET", "B01AA03")
        + package("100009", "Ny", "N02BE01")
        + package(None, "Uten varenr", "N02BE01")
    )
    with pytest.raises(FestError, match="has no item number"):
        await load_file(store, write(tmp_path / "broken.xml", broken))
    with pytest.raises(FestError, match="not well-formed"):
        await load_file(store, write(tmp_path / "cut.xml", SECOND[: len(SECOND) // 2]))
    assert (await _read(store, "Medication", "fest-100001"))["code"]["text"] == "Alfa tab 1 mg"
    async with store.transaction(write=False) as tx:
        assert await product(tx, "100009") is None
        assert (await product(tx, "100002")).active
    assert len(await _found(store, "B01AA03", ["M01AE01", "N02BE01"])) == 2


async def test_a_catalogue_loaded_by_another_process_is_seen_at_once(store, store_url, tmp_path):
    await load_file(store, write(tmp_path / "first.xml", FIRST))
    assert len(await _found(store, "B01AA03", ["M01AE01"])) == 1  # builds this one's index
    other = await open_store(store_url)  # another worker or `enjournal fest load`
    try:
        await load_file(other, write(tmp_path / "second.xml", SECOND))
    finally:
        await other.close()
    assert await _found(store, "B01AA03", ["M01AE01"]) == []


async def test_batches_are_smaller_than_the_catalogue(store, tmp_path, monkeypatch):
    # Several transactions (BATCH entries each) give the same catalogue as one.
    monkeypatch.setattr(catalogue, "BATCH", 2)
    await load_file(store, write(tmp_path / "first.xml", FIRST))
    await load_file(store, write(tmp_path / "second.xml", SECOND))
    async with store.transaction(write=False) as tx:
        products = [await product(tx, v) for v in ("100001", "100002", "100003", "100004")]
    assert [p.active for p in products] == [True, False, True, True]
