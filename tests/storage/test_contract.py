"""The repository contract (``enjournal.storage.repository``), one suite on every backend: the
pure-Python memory store, SQLite and PostgreSQL must answer alike.

The search cases and data are those of ``tests/storage/test_search.py`` and the lookups'
world that of ``tests/storage/test_lookups.py``, here run on all three."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from enjournal.fhir.errors import (
    Gone,
    Invalid,
    NotFound,
    NotSupported,
    PreconditionFailed,
    Unprocessable,
)
from enjournal.fhir.search import parse_search
from enjournal.storage import MemoryStore, Repository, RepositoryStore, open_store
from enjournal.storage.repository import protocol_methods
from tests.conftest import PG_DSN, _drop_schema, _pg_schema
from tests.storage.test_lookups import (  # noqa: F401 (fixtures and the services' lookups)
    FNR,
    HPR,
    test_by_identifier,
    test_combined,
    test_date_before,
    test_latest_change,
    test_ping,
    test_referencing_target,
    test_with_id_prefix,
    world,
)
from tests.storage.test_search import CASES, data, ids, obs, q, run  # noqa: F401 (data)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestAssertRewriteWarning")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request, tmp_path):
    """An empty store on each backend (this module's ``store``, for every fixture above)."""
    if request.param == "memory":
        opened = await open_store("memory://")
        yield opened
        await opened.close()
        return
    schema = None
    url = f"sqlite:///{tmp_path}/contract.sqlite"
    if request.param == "postgres":
        schema = await _pg_schema()
        url = f"{PG_DSN}?search_path={schema}"
    opened = await open_store(url)
    yield opened
    await opened.close()
    if schema:
        await _drop_schema(schema)


def patient(family: str = "Nordmann", **extra) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family}], **extra}


def body(stored) -> dict:
    return orjson.loads(stored.content)


# ---- the Protocols ----------------------------------------------------------------------------


async def test_every_protocol_method_exists(store):
    assert isinstance(store, RepositoryStore)
    for name in protocol_methods(RepositoryStore):
        assert callable(getattr(store, name)), name
    for write in (False, True):
        async with store.transaction(write=write) as tx:
            assert isinstance(tx, Repository)
            missing = [n for n in protocol_methods() if not callable(getattr(tx, n, None))]
            assert missing == []
            assert tx.write is write


async def test_open_store_memory_url():
    store = await open_store("memory://")
    assert isinstance(store, MemoryStore) and store.dialect == "memory"
    assert await store.migrate() == []
    await store.close()


# ---- reads and writes -------------------------------------------------------------------------


async def test_create_read_assigns_id_and_meta(store):
    created = await store.create(patient())
    assert (created.version, created.method) == (1, "POST")
    read = await store.read("Patient", created.id)
    assert body(read)["id"] == created.id and body(read)["meta"]["versionId"] == "1"
    assert read.rid == created.rid and read.last_updated == created.last_updated


async def test_update_versions_vread_and_if_match(store):
    created = await store.create(patient("A"))
    second = await store.update(patient("B", meta={"tag": [{"code": "t"}]}), created.id, if_match=1)
    assert second.version == 2 and second.last_updated > created.last_updated
    with pytest.raises(PreconditionFailed):
        await store.update(patient("C"), created.id, if_match=1)
    with pytest.raises(PreconditionFailed):
        await store.update(patient("C"), "absent", if_match=1)
    async with store.transaction(write=False) as tx:
        v1, v2 = [body(await tx.vread("Patient", created.id, v)) for v in (1, 2)]
        for version in (0, 3, 2**40):
            with pytest.raises(NotFound):
                await tx.vread("Patient", created.id, version)
        with pytest.raises(NotFound):
            await tx.vread("Patient", "bad id!", 1)
    assert (v1["name"][0]["family"], v2["name"][0]["family"]) == ("A", "B")
    assert v2["meta"]["tag"] == [{"code": "t"}] and v2["meta"]["versionId"] == "2"


async def test_update_as_create_and_create_with_existing_id(store):
    stored = await store.update(patient(), "kari-1")
    assert (stored.id, stored.version, stored.method) == ("kari-1", 1, "POST")
    async with store.transaction() as tx:
        again = await tx.create(patient("B"), id_="kari-1")
    assert (again.version, again.method) == (2, "PUT")


async def test_ids_are_checked(store):
    with pytest.raises(NotFound):
        await store.read("Patient", "not an id")
    async with store.transaction() as tx:
        with pytest.raises(Invalid):
            await tx.create(patient(), id_="not an id")
        with pytest.raises(Invalid):
            await tx.update(patient(), "x" * 65)
        assert await tx.exists("Patient", "not an id") is False
        assert await tx.delete("Patient", "not an id") is None
        assert await tx.purge("Patient", "not an id") is False
        assert await tx.history("Patient", "not an id") == ([], None)


async def test_delete_gone_history_and_recreate(store):
    created = await store.create(patient())
    assert await store.delete("Patient", created.id) == 2
    assert await store.delete("Patient", created.id) is None
    assert await store.delete("Patient", "never") is None
    with pytest.raises(Gone):
        await store.read("Patient", created.id)
    async with store.transaction(write=False) as tx:
        assert await tx.exists("Patient", created.id) is False
        with pytest.raises(Gone):
            await tx.vread("Patient", created.id, 2)
        entries, _ = await tx.history("Patient", created.id)
    assert [(e.version, e.method, e.deleted) for e in entries] == [
        (2, "DELETE", True),
        (1, "POST", False),
    ]
    back = await store.update(patient("Back"), created.id)
    assert back.version == 3 and await store.read("Patient", created.id)


async def test_delete_if_match(store):
    created = await store.create(patient())
    async with store.transaction() as tx:
        with pytest.raises(PreconditionFailed):
            await tx.delete("Patient", created.id, if_match=2)
        assert await tx.delete("Patient", created.id, if_match=1) == 2


async def test_unknown_resource_is_not_found(store):
    with pytest.raises(NotFound):
        await store.read("Patient", "nope")


async def test_read_many(store):
    for id_ in ("a", "b", "c"):
        await store.update(patient(id_), id_)
    await store.delete("Patient", "b")
    async with store.transaction(write=False) as tx:
        found = await tx.read_many("Patient", ["c", "b", "nope", "a", "c", "bad id!"])
        assert [(r.id, r.version) for r in found] == [("c", 1), ("a", 1)]
        assert body(found[0])["name"][0]["family"] == "c"
        assert await tx.read_many("Observation", ["a"]) == []
        assert await tx.read_many("Patient", []) == []


async def test_failed_transaction_leaves_nothing(store):
    kept = await store.create(patient("Kept"))
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.create(patient(), id_="half")
            await tx.update(patient("Changed"), kept.id)
            await tx.delete("Patient", kept.id)
            raise RuntimeError("crash in the middle")
    with pytest.raises(NotFound):
        await store.read("Patient", "half")
    assert body(await store.read("Patient", kept.id))["name"][0]["family"] == "Kept"
    async with store.transaction(write=False) as tx:
        entries, _ = await tx.history()
        found = await tx.search(parse_search("Patient", q("family=changed")))
    assert [e.id for e in entries] == [kept.id] and found.matches == []


async def test_a_reader_does_not_see_an_uncommitted_write(store):
    async with store.transaction() as tx:
        await tx.create(patient(), id_="pending")
        async with store.transaction(write=False) as reader:
            assert await reader.exists("Patient", "pending") is False
    assert await store.read("Patient", "pending")


async def test_write_checks_run_in_the_transaction(store):
    seen = []

    async def refuse_bad(tx, resource):
        seen.append((tx.write, resource["name"][0]["family"]))
        if resource["name"][0]["family"] == "Bad":
            raise Unprocessable("bad family")

    store.checks.append(refuse_bad)
    try:
        await store.create(patient("Good"))
        with pytest.raises(Unprocessable):
            await store.update(patient("Bad"), "bad")
        with pytest.raises(Unprocessable) as refused:
            async with store.transaction() as tx:
                await tx.create_many([patient("Fine"), patient("Bad")])
        assert refused.value.index == 1
    finally:
        store.checks.remove(refuse_bad)
    assert seen == [(True, "Good"), (True, "Bad"), (True, "Fine"), (True, "Bad")]
    with pytest.raises(NotFound):
        await store.read("Patient", "bad")


async def test_create_many(store):
    await store.update(patient("Old"), "kari")
    await store.update(patient("Gone"), "deleted")
    await store.delete("Patient", "deleted")
    async with store.transaction() as tx:
        assert await tx.create_many([]) == []
        with pytest.raises(ValueError):
            await tx.create_many([patient()], ["a", "b"])
        stored = await tx.create_many(
            [patient("A"), patient("B"), patient("C"), patient("D"), patient("E")],
            ["kari", "new", "deleted", "new", None],
        )
    assert [(s.id, s.version, s.method) for s in stored[:4]] == [
        ("kari", 2, "PUT"),
        ("new", 1, "POST"),
        ("deleted", 3, "PUT"),
        ("new", 2, "PUT"),
    ]
    assert stored[4].version == 1 and len(stored[4].id) == 36
    assert body(await store.read("Patient", "new"))["name"][0]["family"] == "D"
    with pytest.raises(Invalid) as refused:
        async with store.transaction() as tx:
            await tx.create_many([patient(), patient()], [None, "bad id!"])
    assert refused.value.index == 1


async def test_history_pages_since_and_scopes(store):
    for i in range(5):
        await store.create(patient(str(i)))
    await store.update({"resourceType": "Basic", "code": {"text": "x"}}, "b1")
    async with store.transaction(write=False) as tx:
        first, cursor = await tx.history("Patient", count=3)
        second, end = await tx.history("Patient", count=3, before_seq=cursor)
        everything, _ = await tx.history(count=100)
        since, _ = await tx.history(since_ms=everything[1].last_updated, count=100)
        huge, _ = await tx.history(before_seq=2**70, count=100)
        of_id, _ = await tx.history(None, "b1")
    assert len(first) == 3 and len(second) == 2 and end is None
    assert {e.id for e in first}.isdisjoint({e.id for e in second})
    assert [e.type for e in everything] == ["Basic"] + ["Patient"] * 5
    threshold = everything[1].last_updated
    assert [e.id for e in since] == [e.id for e in everything if e.last_updated >= threshold]
    assert len(huge) == 6 and [e.id for e in of_id] == ["b1"]


async def test_purge(store):
    await store.update(patient("A"), "gone")
    await store.update(patient("B"), "gone")
    await store.update(obs("1234", "Patient/gone"), "o1")
    async with store.transaction() as tx:
        await tx.create(patient("Fresh"), id_="fresh")
        assert await tx.purge("Patient", "fresh")
        assert await tx.purge("Patient", "gone")
        assert not await tx.purge("Patient", "gone")
        assert not await tx.purge("Patient", "never")
    for id_ in ("gone", "fresh"):
        with pytest.raises(NotFound):
            await store.read("Patient", id_)
    async with store.transaction(write=False) as tx:
        assert await tx.history("Patient", "gone") == ([], None)
        with pytest.raises(NotFound):
            await tx.vread("Patient", "gone", 1)
        assert await ids(store, "Patient", q("family=a")) == []
        assert await ids(store, "Observation", q("subject=Patient/gone")) == ["o1"]
    again = await store.update(patient("C"), "gone")
    assert (again.version, again.method) == (1, "POST")


async def test_read_for_update(store):
    await store.update({"resourceType": "Basic", "code": {"text": "0"}}, "counter")
    async with store.transaction(write=False) as tx:
        with pytest.raises(RuntimeError):
            await tx.read_for_update("Basic", "counter")

    async def increment():
        async with store.transaction(write=True) as tx:
            current = await tx.read_for_update("Basic", "counter")
            value = int(body(current)["code"]["text"])
            await asyncio.sleep(0.01)
            await tx.update({**body(current), "code": {"text": str(value + 1)}}, "counter")

    await asyncio.gather(*(increment() for _ in range(6)))
    final = await store.read("Basic", "counter")
    assert body(final)["code"]["text"] == "6" and final.version == 7
    async with store.transaction() as tx:
        with pytest.raises(NotFound):
            await tx.read_for_update("Basic", "never")


async def test_lock_criteria_and_flush(store):
    async with store.transaction() as tx:
        await tx.lock_criteria("Patient", "identifier=x|1")
        await tx.create(patient(), id_="locked")
        await tx.flush()
        assert await tx.exists("Patient", "locked")


# ---- the guard's lookups (the world of tests/storage/test_lookups.py) --------------------------


async def test_lookups(store, world):  # noqa: F811
    def ids_of(contents):
        return sorted(orjson.loads(c)["id"] for c in contents)

    async with store.transaction(write=False) as tx:
        assert await tx.ids_by_identifier("Practitioner", (HPR,), "111") == ["p1"]
        assert await tx.ids_by_identifier("Practitioner", (HPR,), "222") == [world["created"]]
        assert await tx.ids_by_identifier("Patient", (FNR,), "03030312345") == []
        assert await tx.ids_by_identifier("Patient", (), "02020212345") == []
        assert ids_of(await tx.contents_by_identifier("RelatedPerson", "04040412345")) == ["rp1"]
        both = ["p1", "p-other"]
        found = await tx.referencing("PractitionerRole", "practitioner", "Practitioner", both)
        assert sorted(found) == ["r-moved", "r1"]
        found = await tx.contents_referencing("Consent", "patient", "Patient", "kari")
        assert ids_of(found) == ["c1"]
        gps = await tx.references_of("Patient", "kari", "general-practitioner")
        assert gps == [("Practitioner", "p1")]
        assert await tx.references_of("Patient", "gone", "general-practitioner") is None
        assert orjson.loads(await tx.content_of("Patient", "kari"))["id"] == "kari"
        assert await tx.content_of("Patient", "gone") is None
        enc = ("Encounter", "patient")
        assert await tx.linked(*enc, "kari", "service-provider", ["o2"]) is True
        assert await tx.linked(*enc, "ola", "service-provider", ["o2"]) is False
        roles = ("PractitionerRole", "practitioner")
        assert await tx.same_resource_links(*roles, ["p1"], "organization", ["o1"]) is True
        assert await tx.same_resource_links(*roles, ["p1"], "organization", ["o2"]) is False


# ---- search (the data and cases of tests/storage/test_search.py) -------------------------------


@pytest.mark.parametrize(("rtype", "params", "expected"), CASES)
async def test_search_matches(data, rtype, params, expected):  # noqa: F811
    assert await ids(data, rtype, q(params)) == expected


MORE_CASES = [
    ("Patient", "_id:not=p1", ["p2", "p3", "p5"]),
    ("Patient", "_id:missing=false", ["p1", "p2", "p3", "p5"]),
    ("Patient", "gender=female,male&birthdate=lt1985", ["p1"]),
    ("Patient", "organization=Organization/org2", ["p1"]),
    ("Patient", "organization:missing=false", ["p1"]),
    ("Patient", "identifier:missing=false&identifier=sys1|", ["p1", "p2"]),
    ("Patient", "_tag:not=http://t|a", ["p2", "p3", "p5"]),
    ("Patient", "given:contains=MIL", ["p3"]),
    ("Patient", "name:exact=Kari", ["p1"]),
    ("Observation", "code=http://loinc.org|", ["o1", "o2", "o3", "o6", "o7"]),
    ("Observation", "code:not=1234", ["o3", "o4", "o5"]),
    ("Observation", "code=|1234", []),
    ("Observation", "value-quantity=ne5.4", ["o2", "o3"]),
    ("Observation", "value-quantity=le7||mg", ["o1", "o2"]),
    ("Observation", "date=ap2023-06-15", ["o3"]),
    ("Observation", "date=ne2023", ["o1", "o2"]),
    ("Observation", "subject=Patient/p1&subject:Patient.birthdate=1980", ["o1", "o2"]),
    ("Observation", "subject:Patient.identifier=sys1|222", ["o3"]),
    ("Organization", "_has:Patient:organization:name=kari", ["org2"]),
    ("Medication", "_has:MedicationRequest:medication:status=stopped", ["m1"]),
    ("Medication", "_has:MedicationRequest:medication:patient.gender=male", ["m1"]),
    ("ValueSet", "url:below=http://example.org/fhir/ValueSet/b", ["vs2"]),
    ("ValueSet", "url:missing=true", []),
    ("RiskAssessment", "probability=ge0.25&probability=le0.5", ["r1", "r2"]),
]


@pytest.mark.parametrize(("rtype", "params", "expected"), MORE_CASES)
async def test_more_search_matches(data, rtype, params, expected):  # noqa: F811
    assert await ids(data, rtype, q(params)) == expected


async def test_system_search_compartment_and_type(data):  # noqa: F811
    assert await ids(data, None, q("_id=p1,o1,m1")) == ["m1", "o1", "p1"]
    assert await ids(data, None, q("_type=Patient,Medication&_id=p1,o1,m1")) == ["m1", "p1"]
    assert await ids(data, None, q("_tag=http://t|a")) == ["p1"]
    assert await ids(data, "Observation", [], compartment=("Patient", "p1")) == ["o1", "o2"]
    assert await ids(data, "Patient", [], compartment=("Patient", "p1")) == ["p1"]
    assert await ids(data, "Medication", [], compartment=("Patient", "p1")) == []
    everything = await ids(data, None, [], compartment=("Patient", "p1"))
    assert everything == ["mr1", "o1", "o2", "p1", "r1"]
    assert await ids(data, None, q("_type=Observation"), compartment=("Patient", "p2")) == ["o3"]


async def test_includes(data):  # noqa: F811
    async def included(rtype, params):
        return sorted(i.id for i in (await run(data, rtype, q(params))).included)

    assert await included("MedicationRequest", "_include=MedicationRequest:medication") == ["m1"]
    assert await included("Observation", "_id=o1&_revinclude=Provenance:target") == ["prov1"]
    assert await included("Observation", "_id=o1&_include=*") == ["p1", "pr1"]
    assert await included("Observation", "_id=o1&_include=Observation:performer:Organization") == []
    assert await included("Observation", "_id=o7&_include=Observation:subject") == []
    assert await included(
        "Patient",
        "_id=p1,org2&_include=Patient:general-practitioner&_revinclude=Observation:subject",
    ) == ["o1", "o2", "pr1"]
    assert await included(
        "Observation",
        "_id=o1&_include=Observation:subject&_include:iterate=Patient:organization"
        "&_include:iterate=Organization:partof",
    ) == ["org1", "org2", "p1"]
    assert await included(
        "Patient",
        "_id=p2&_revinclude=MedicationRequest:subject"
        "&_include:iterate=MedicationRequest:medication",
    ) == ["m1", "mr2"]


async def test_includes_method_and_keep(data):  # noqa: F811
    query = parse_search("Observation", q("_include=Observation:subject&_include=*"))
    async with data.transaction(write=False) as tx:
        matches = (await tx.search(parse_search("Observation", q("_id=o1,o3")))).matches
        everything = await tx.includes(query, matches)
        assert sorted(i.id for i in everything) == ["p1", "p2", "pr1"]

        async def no_practitioners(found):
            return [f for f in found if f.type != "Practitioner"]

        kept = await tx.includes(query, matches, no_practitioners)
        assert sorted(i.id for i in kept) == ["p1", "p2"]
        assert await tx.includes(parse_search("Observation", []), matches) == []
        assert await tx.includes(query, []) == []


async def test_sort(data):  # noqa: F811
    async def order(rtype, params):
        return [m.id for m in (await run(data, rtype, q(params))).matches]

    assert await order("Patient", "_sort=gender,-birthdate") == ["p5", "p1", "p2", "p3"]
    assert await order("Patient", "_sort=-gender,birthdate") == ["p2", "p1", "p5", "p3"]
    assert await order("Observation", "code=1234&_sort=-date") == ["o2", "o1", "o6", "o7"]
    assert await order("Observation", "code=1234&_sort=date") == ["o1", "o2", "o6", "o7"]
    assert await order("Patient", "_sort=-_id") == ["p5", "p3", "p2", "p1"]
    assert await order("Patient", "_sort=family") == ["p5", "p2", "p1", "p3"]
    assert await order("Patient", "_sort=-family") == ["p3", "p1", "p2", "p5"]
    assert await order("Observation", "_sort=value-quantity&value-quantity=gt0") == [
        "o1",
        "o2",
        "o3",
    ]
    assert await order("RiskAssessment", "_sort=-probability") == ["r1", "r2"]
    assert await order("Patient", "_sort=_lastUpdated&_id=p2,p1") == ["p1", "p2"]
    assert await order("Observation", "_sort=subject,_id&code=1234") == ["o1", "o2", "o7", "o6"]


async def test_totals_and_summary_count(data):  # noqa: F811
    r = await run(data, "Patient", q("_count=2"))
    assert len(r.matches) == 2 and r.total == 4
    r = await run(data, "Patient", q("_count=2&_total=none"))
    assert r.total is None
    r = await run(data, "Patient", q("_summary=count"))
    assert r.matches == [] and r.total == 4
    r = await run(data, "Patient", q("_count=0&gender=female"))
    assert r.matches == [] and r.total == 2
    r = await run(data, "Patient", q("_count=2&_sort=birthdate"))
    assert r.total == 4 and r.next_cursor


async def _make_basics(store, n):
    async with store.transaction() as tx:
        for i in range(n):
            resource = {"resourceType": "Basic", "code": {"text": "x"}}
            await tx.update({**resource, "created": f"2020-01-{i + 1:02d}"}, f"b{i:02d}")


@pytest.mark.parametrize("sort", [None, "-created", "created,_id"])
async def test_paging_survives_changes(store, sort):
    await _make_basics(store, 25)
    params = [("code:text", "x"), ("_count", "7")] + ([("_sort", sort)] if sort else [])
    seen: list[str] = []
    result = await run(store, "Basic", params)
    while True:
        seen.extend(m.id for m in result.matches)
        if len(seen) == 7:
            await store.delete("Basic", "b12")
            await store.update({"resourceType": "Basic", "code": {"text": "x"}}, "new1")
        if result.next_cursor is None:
            break
        result = await run(store, "Basic", [*params, ("_cursor", result.next_cursor)])
    assert len(seen) == len(set(seen))
    assert {f"b{i:02d}" for i in range(25)} - {"b12"} <= set(seen)
    if sort == "-created":
        assert seen[:3] == ["b24", "b23", "b22"]


@pytest.mark.parametrize("sort", [None, "created"])
async def test_previous_cursor_cursor_after_and_foreign_cursor(store, sort):
    await _make_basics(store, 12)
    params = [("_count", "5")] + ([("_sort", sort)] if sort else [])
    p1 = await run(store, "Basic", params)
    assert p1.previous_cursor is None and p1.total == 12
    p2 = await run(store, "Basic", [*params, ("_cursor", p1.next_cursor)])
    assert [m.id for m in p2.matches] == [f"b{i:02d}" for i in range(5, 10)]
    assert p2.total is None
    back = await run(store, "Basic", [*params, ("_cursor", p2.previous_cursor)])
    assert [m.id for m in back.matches] == [m.id for m in p1.matches]
    p3 = await run(store, "Basic", [*params, ("_cursor", p2.next_cursor)])
    assert [m.id for m in p3.matches] == ["b10", "b11"] and p3.next_cursor is None
    after = await run(store, "Basic", [*params, ("_cursor", p1.cursor_after(1))])
    assert [m.id for m in after.matches] == [f"b{i:02d}" for i in range(2, 7)]
    with pytest.raises(Invalid):
        await run(store, "Basic", [("_count", "6"), ("_cursor", p1.next_cursor)])
    with pytest.raises(Invalid):
        await run(store, "Basic", [("_cursor", "garbage!")])


async def test_empty_pages_past_the_end(store):
    await _make_basics(store, 3)
    p1 = await run(store, "Basic", [("_count", "3")])
    past = await run(store, "Basic", [("_count", "3"), ("_cursor", p1.cursor_after(2))])
    assert past.matches == [] and past.previous_cursor and past.next_cursor is None
    back = await run(store, "Basic", [("_count", "3"), ("_cursor", past.previous_cursor)])
    assert [m.id for m in back.matches] == ["b00", "b01", "b02"]


async def test_sorted_search_too_large(store, monkeypatch):
    from enjournal.storage import search_sql

    await _make_basics(store, 6)
    monkeypatch.setattr(search_sql, "MAX_SORTED", 5)
    with pytest.raises(Invalid, match="narrow"):
        await run(store, "Basic", q("_sort=created"))


async def test_search_sees_its_own_transactions_writes(store):
    async with store.transaction() as tx:
        await tx.create(patient("Selv"), id_="self")
        found = await tx.search(parse_search("Patient", q("family=selv")))
        assert [m.id for m in found.matches] == ["self"]


async def test_memory_store_refuses_what_it_cannot_do():
    store = await open_store("memory://")
    async with store.transaction(write=False) as tx:
        with pytest.raises(RuntimeError):
            await tx.create(patient())
        with pytest.raises(NotSupported):
            await tx._conn.fetch("SELECT 1")


# ---- the audit log (storage.audit_log) --------------------------------------------------------


def _audit_event(n: int, patient_id: str | None = "p1", **kw) -> dict:
    from enjournal.security.audit import audit_event
    from enjournal.security.principal import Principal

    who = Principal(kind="personnel", subject="s", client_id="c", hpr="9144889", profession="LE")
    return audit_event(
        who, action="R", subtype="read", patient_id=patient_id, recorded_ms=1_000 * n, **kw
    )


async def _append(store, *events: dict) -> None:
    from enjournal.security.audit import append

    async with store.transaction() as tx:
        await append(tx, list(events))


async def _audit_rows(store) -> list:
    from enjournal.storage import audit_log

    async with store.transaction(write=False) as tx:
        return await audit_log.rows_after(tx, -(2**62), 1000)


async def test_audit_append_chains_and_moves_the_head(store):
    from enjournal.security.audit import ZERO_HASH, chain_hash, verify
    from enjournal.storage import audit_log

    async with store.transaction(write=False) as tx:
        assert await audit_log.read_head(tx) == (0, ZERO_HASH)
    await _append(store, _audit_event(1), _audit_event(2, emergency_reason="akutt"))
    await _append(store, _audit_event(3, patient_id=None))
    rows = await _audit_rows(store)
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    prev = ZERO_HASH
    for row in rows:
        assert bytes(row[9]) == prev and bytes(row[10]) == chain_hash(prev, row[0], row[8])
        prev = bytes(row[10])
    assert [(r[1], r[2], r[3], r[4], r[5], bool(r[7])) for r in rows] == [
        (1000, "p1", "hpr:9144889", "R", "0", False),
        (2000, "p1", "hpr:9144889", "R", "0", True),
        (3000, None, "hpr:9144889", "R", "0", False),
    ]
    async with store.transaction() as tx:
        assert await audit_log.lock_head(tx) == (3, prev)
    async with store.transaction(write=False) as tx:
        assert await audit_log.read_head(tx) == (3, prev)
        result = await verify(tx, page_size=2)
    assert result.ok and result.checked == 3 and result.head_seq == 3


async def test_audit_rows_after_pages_in_seq_order(store):
    from enjournal.storage import audit_log

    await _append(store, *(_audit_event(n) for n in range(1, 8)))
    async with store.transaction(write=False) as tx:
        pages = [await audit_log.rows_after(tx, after, 3) for after in (-(2**62), 3, 6, 7)]
        linked = await audit_log.seq_linked_to(tx, bytes(pages[0][0][10]), 99)
        not_other = await audit_log.seq_linked_to(tx, bytes(pages[0][0][10]), 2)
    assert [[int(r[0]) for r in page] for page in pages] == [[1, 2, 3], [4, 5, 6], [7], []]
    assert (linked, not_other) == (2, None)


async def test_audit_patient_rows_newest_first(store):
    from enjournal.storage import audit_log

    await _append(store, *(_audit_event(n, f"p{n % 2}") for n in range(1, 9)))
    async with store.transaction(write=False) as tx:
        first = await audit_log.patient_rows(tx, "p1", 2, None)
        second = await audit_log.patient_rows(tx, "p1", 2, int(first[-1][0]))
        last = await audit_log.patient_rows(tx, "p1", 5, 3)
        nobody = await audit_log.patient_rows(tx, "nobody", 5, None)
    assert [int(r[0]) for r in first] == [7, 5]
    assert [int(r[0]) for r in second] == [3, 1]
    assert [int(r[0]) for r in last] == [1] and nobody == []
    _seq, recorded, action, outcome, purpose, emergency, event, actor = first[0]
    assert (recorded, action, outcome, purpose, bool(emergency)) == (7000, "R", "0", "TREAT", False)
    assert orjson.loads(bytes(event))["recorded"] and actor == "hpr:9144889"


async def test_audit_failed_transaction_leaves_no_events(store):
    from enjournal.security.audit import append, verify
    from enjournal.storage import audit_log

    await _append(store, _audit_event(1))
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await append(tx, [_audit_event(2), _audit_event(3, "p2")])
            raise RuntimeError("the write fails after its audit events")
    await _append(store, _audit_event(4, "p2"))  # the chain continues from the committed head
    rows = await _audit_rows(store)
    assert [(int(r[0]), r[1]) for r in rows] == [(1, 1000), (2, 4000)]
    async with store.transaction(write=False) as tx:
        assert [int(r[0]) for r in await audit_log.patient_rows(tx, "p2", 5, None)] == [2]
        result = await verify(tx)
    assert result.ok and result.head_seq == 2


async def test_memory_audit_log_refuses_writes_in_a_read_transaction():
    from enjournal.security.audit import append

    store = await open_store("memory://")
    async with store.transaction(write=False) as tx:
        with pytest.raises(RuntimeError):
            await append(tx, [_audit_event(1)])
    assert await _audit_rows(store) == []


async def test_memory_audit_log_verify_finds_a_changed_event():
    from enjournal.security.audit import verify

    store = await open_store("memory://")
    await _append(store, *(_audit_event(n) for n in range(1, 4)))
    log = store._state.audit
    row = log.rows[1]
    log.rows[1] = (*row[:8], row[8].replace(b'"R"', b'"U"'), *row[9:])
    async with store.transaction(write=False) as tx:
        result = await verify(tx)
    assert (result.problem.kind, result.problem.seq) == ("changed", 2)


# ---- terminology: the memory store holds no code systems -------------------------------------


async def test_an_empty_store_holds_no_code_systems(store):
    from enjournal.storage.terminology.code_systems import (
        code_system_keys,
        code_systems,
        find_code_system,
        held_urls,
        require_code_system,
    )

    async with store.transaction(write=False) as tx:
        assert await code_systems(tx) == [] and await code_system_keys(tx) == []
        assert await held_urls(tx) == set()
        assert await find_code_system(tx, "http://loinc.org") is None
        with pytest.raises(NotFound, match="not known"):
            await require_code_system(tx, "http://loinc.org", "2.77")


async def test_memory_write_check_checks_units_and_refuses_a_code_system_load():
    from enjournal.terminology.checks import CodeCheck
    from enjournal.terminology.command import load_shipped

    store = await open_store("memory://")
    store.checks.append(CodeCheck())
    coding = {"system": "http://loinc.org", "code": "no-such-code"}
    quantity = {"value": 1, "system": "http://unitsofmeasure.org", "code": "kg"}
    observation = {"resourceType": "Observation", "status": "final", "code": {"coding": [coding]}}
    await store.create({**observation, "valueQuantity": quantity})  # codes it cannot know pass
    with pytest.raises(Unprocessable, match="UCUM"):
        await store.create({**observation, "valueQuantity": {**quantity, "code": "kg!!"}})
    with pytest.raises(NotSupported):
        await load_shipped(store)
