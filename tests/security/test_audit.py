"""The tamper-evident audit log, on both backends."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from enjournal.fhir.validation import validate
from enjournal.security.audit import (
    ZERO_HASH,
    AuditWriter,
    access_log,
    append,
    audit_event,
    chain_hash,
    verify,
    verify_command,
)
from enjournal.security.principal import Principal
from enjournal.storage import open_store

DOCTOR = Principal(
    kind="personnel",
    subject="helseid-sub-1",
    client_id="epj-dips",
    name="Kari Nordmann",
    hpr="9144889",
    profession="LE",
    org_nr="974589095",
    her_id="81234",
)
NURSE = Principal(
    kind="personnel",
    subject="helseid-sub-2",
    client_id="epj-cosdoc",
    name="Per Hansen",
    hpr="565501872",
    profession="SP",
    org_nr="983044778",
)
CITIZEN = Principal(
    kind="citizen",
    subject="idporten-sub",
    client_id="helsenorge",
    name="Ola Nordmann",
    pid="15076500565",
    assurance="high",
)
SYSTEM = Principal(kind="system", subject="batch", client_id="kpr-export")


def _read(patient: str = "p1", who: Principal = DOCTOR, **kw) -> dict:
    return audit_event(
        who,
        action="R",
        subtype="read",
        outcome="0",
        patient_id=patient,
        entities=[f"Observation/{patient}-obs"],
        purpose=kw.pop("purpose", "TREAT"),
        **kw,
    )


async def _fill(store, n: int, per_tx: int = 10) -> None:
    for start in range(0, n, per_tx):
        async with store.transaction() as tx:
            await append(tx, [_read(f"p{i % 7}") for i in range(start, min(n, start + per_tx))])


async def _verify(store, **kw):
    async with store.transaction(write=False) as tx:
        return await verify(tx, **kw)


async def _sql(store, *statements: tuple) -> None:
    async with store.transaction() as tx:
        for sql, *args in statements:
            await tx._conn.execute(sql, *args)


async def _disable_triggers(store) -> None:
    """What a DBA can do: the hash chain must catch what follows."""
    if store.dialect == "postgres":
        await _sql(
            store,
            ("ALTER TABLE audit_log DISABLE TRIGGER USER",),
            ("ALTER TABLE audit_head DISABLE TRIGGER USER",),
        )
    else:
        await _sql(
            store,
            *[
                (f"DROP TRIGGER {name}",)
                for name in (
                    "audit_log_no_update",
                    "audit_log_no_delete",
                    "audit_head_no_delete",
                    "audit_head_forward",
                )
            ],
        )


async def _count(store) -> int:
    async with store.transaction(write=False) as tx:
        return (await tx._conn.fetchrow("SELECT count(*) FROM audit_log"))[0]


# ---- events ---------------------------------------------------------------------------------


@pytest.mark.parametrize("who", [DOCTOR, NURSE, CITIZEN, SYSTEM], ids=lambda p: p.kind)
def test_events_validate(who):
    events = [
        _read(who=who, request_id="req-1"),
        audit_event(
            who,
            action="E",
            subtype="search-type",
            outcome="4",
            patient_id="p1",
            entities=["Observation/1", "Observation/2"],
            purpose="PATRQT",
            query="Observation?subject=Patient/p1&code=http://loinc.org|4548-4",
            outcome_desc="partial",
        ),
        audit_event(
            who,
            action="C",
            subtype="create",
            patient_id="p1",
            entities=["Condition/9", "Patient/p1"],
            purpose="ETREAT",
            emergency_reason="Bevisstløs pasient, akutt",
            access_basis="AKUTT",
            organisation_name="Oslo legevakt",
        ),
        audit_event(who, action="E", subtype="$everything", outcome="8", purpose="HOPERAT"),
    ]
    for event in events:
        assert [i for i in validate(event) if i.severity == "error"] == [], event


def test_event_content():
    event = audit_event(
        DOCTOR,
        action="R",
        subtype="read",
        patient_id="p1",
        entities=["Observation/1"],
        purpose="ETREAT",
        emergency_reason="bevisstløs",
        organisation_name="Oslo legevakt",
        request_id="abc",
    )
    assert event["type"]["system"] == "http://terminology.hl7.org/CodeSystem/audit-event-type"
    assert event["subtype"][0] == {
        "system": "http://hl7.org/fhir/restful-interaction",
        "code": "read",
        "display": "read",
    }
    person, org = event["agent"]
    assert person["requestor"] is True and org["requestor"] is False
    assert person["who"]["identifier"] == {
        "system": "urn:oid:2.16.578.1.12.4.1.4.4",
        "value": "9144889",
    }
    assert person["role"][0]["coding"][0]["code"] == "LE"
    assert org["who"]["identifier"]["system"] == "urn:oid:2.16.578.1.12.4.1.4.101"
    assert event["purposeOfEvent"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        "code": "ETREAT",
        "display": "Emergency Treatment",
    }
    patient = event["entity"][0]
    assert patient["what"] == {"reference": "Patient/p1"}
    assert patient["securityLabel"][0]["code"] == "BTG"
    assert patient["detail"][0]["valueString"] == "bevisstløs"
    assert event["entity"][1]["what"] == {"reference": "Observation/1"}
    citizen = audit_event(CITIZEN, action="R", subtype="read", patient_id="p1")
    assert citizen["agent"][0]["who"]["identifier"]["system"] == "urn:oid:2.16.578.1.12.4.1.4.1"
    system = audit_event(SYSTEM, action="R", subtype="read")
    assert system["agent"][0]["who"]["identifier"]["value"] == "kpr-export"


# ---- the chain ------------------------------------------------------------------------------


async def test_empty_log_verifies(store):
    result = await _verify(store)
    assert result.ok and result.checked == 0 and result.head_seq == 0


async def test_chain_verifies_after_many_appends(store):
    await _fill(store, 230, per_tx=23)
    calls = 60
    async with AuditWriter(store) as writer:

        async def reader(i: int) -> None:
            await writer.record([_read(f"p{i % 5}", who=NURSE), _read("p9", who=CITIZEN)])

        async def writer_tx(i: int) -> None:  # audited writes interleaved with the reads
            async with store.transaction() as tx:
                await tx.create({"resourceType": "Patient", "active": True})
                await append(tx, [_read(f"w{i}")])

        await asyncio.gather(*[reader(i) for i in range(calls)], *[writer_tx(i) for i in range(10)])
        assert writer.batches < calls  # group commit: fewer transactions than callers
    total = 230 + 2 * calls + 10
    assert await _count(store) == total
    for page_size in (2000, 7):
        result = await _verify(store, page_size=page_size)
        assert result.ok, result.problem
        assert result.checked == result.last_seq == result.head_seq == total


async def test_two_workers_append_concurrently(store_url):
    """Two stores (two pools, as two worker processes would have) share one chain."""
    first = await open_store(store_url)
    second = await open_store(store_url)
    try:

        async def audited_write(worker, i: int) -> None:
            async with worker.transaction() as tx:
                await tx.create({"resourceType": "Patient", "active": True})
                await append(tx, [_read(f"p{i}"), _read(f"p{i}", who=NURSE)])

        async with AuditWriter(first) as w1, AuditWriter(second) as w2:
            await asyncio.gather(
                *[audited_write(first if i % 2 else second, i) for i in range(20)],
                *[(w1 if i % 2 else w2).record([_read(f"r{i}")]) for i in range(40)],
            )
        result = await _verify(first)
        assert result.ok, result.problem
        assert result.checked == result.head_seq == 2 * 20 + 40
    finally:
        await first.close()
        await second.close()


async def test_hash_is_chained(store):
    await _fill(store, 3)
    async with store.transaction(write=False) as tx:
        rows = await tx._conn.fetch(
            "SELECT seq, event, prev_hash, hash FROM audit_log ORDER BY seq"
        )
    prev = ZERO_HASH
    for seq, event, prev_hash, digest in rows:
        assert bytes(prev_hash) == prev
        assert bytes(digest) == chain_hash(prev, seq, bytes(event))
        assert orjson.loads(bytes(event))["resourceType"] == "AuditEvent"
        prev = bytes(digest)


async def test_writer_flushes_on_stop_and_refuses_after(store):
    writer = AuditWriter(store)
    await writer.start()
    tasks = [asyncio.create_task(writer.record([_read()])) for _ in range(20)]
    await asyncio.sleep(0)
    await writer.stop()
    await asyncio.gather(*tasks)
    assert await _count(store) == 20
    with pytest.raises(RuntimeError):
        await writer.record([_read()])


async def test_writer_rejects_a_malformed_event_alone(store):
    async with AuditWriter(store) as writer:
        with pytest.raises((KeyError, ValueError)):
            await writer.record([{"resourceType": "Patient"}])
        await writer.record([_read()])
    assert (await _verify(store)).checked == 1


# ---- tampering ------------------------------------------------------------------------------


async def test_changed_event_bytes(store):
    await _fill(store, 20)
    await _disable_triggers(store)
    forged = orjson.dumps({**_read(), "action": "C"}, option=orjson.OPT_SORT_KEYS)
    await _sql(store, ("UPDATE audit_log SET event = ? WHERE seq = ?", forged, 7))
    result = await _verify(store)
    assert (result.problem.seq, result.problem.kind) == (7, "changed")
    assert result.checked == 6


async def test_changed_column(store):
    await _fill(store, 20)
    await _disable_triggers(store)
    await _sql(store, ("UPDATE audit_log SET patient_id = ? WHERE seq = ?", "someone-else", 4))
    result = await _verify(store)
    assert (result.problem.seq, result.problem.kind) == (4, "changed")
    assert "patient_id" in result.problem.detail


async def test_changed_and_rehashed_event(store):
    await _fill(store, 20)
    await _disable_triggers(store)
    async with store.transaction() as tx:
        prev = bytes((await tx._conn.fetchrow("SELECT prev_hash FROM audit_log WHERE seq = 9"))[0])
        forged = orjson.dumps(_read("p-other"), option=orjson.OPT_SORT_KEYS)
        await tx._conn.execute(
            "UPDATE audit_log SET event = ?, patient_id = ?, hash = ? WHERE seq = 9",
            forged,
            "p-other",
            chain_hash(prev, 9, forged),
        )
    result = await _verify(store)
    assert (result.problem.seq, result.problem.kind) == (9, "changed")


async def test_removed_row_in_the_middle(store):
    await _fill(store, 20)
    await _disable_triggers(store)
    await _sql(store, ("DELETE FROM audit_log WHERE seq = ?", 11))
    result = await _verify(store, page_size=4)
    assert (result.problem.seq, result.problem.kind) == (11, "removed")
    assert result.checked == 10


async def test_removed_and_renumbered(store):
    await _fill(store, 12)
    await _disable_triggers(store)
    await _sql(
        store,
        ("DELETE FROM audit_log WHERE seq = ?", 5),
        *[("UPDATE audit_log SET seq = ? WHERE seq = ?", s - 1, s) for s in range(6, 13)],
        ("UPDATE audit_head SET seq = ?", 11),
    )
    result = await _verify(store)
    assert (result.problem.seq, result.problem.kind) == (5, "removed")


@pytest.mark.parametrize("other", [6, 15])
async def test_reordered_rows(store, other):
    await _fill(store, 20)
    await _disable_triggers(store)
    await _sql(
        store,
        ("UPDATE audit_log SET seq = ? WHERE seq = ?", -1, 5),
        ("UPDATE audit_log SET seq = ? WHERE seq = ?", 5, other),
        ("UPDATE audit_log SET seq = ? WHERE seq = ?", other, -1),
    )
    result = await _verify(store)
    assert (result.problem.seq, result.problem.kind) == (5, "reordered")
    assert result.checked == 4
    assert str(other) in result.problem.detail


async def test_truncated_tail(store):
    await _fill(store, 20)
    await _disable_triggers(store)
    await _sql(store, ("DELETE FROM audit_log WHERE seq > ?", 15))
    result = await _verify(store)
    assert (result.problem.seq, result.problem.kind) == (16, "head-mismatch")
    assert result.checked == 15 and result.head_seq == 20


async def test_tampered_head(store):
    await _fill(store, 20)
    await _disable_triggers(store)
    await _sql(store, ("UPDATE audit_head SET seq = ?", 12))
    result = await _verify(store)
    assert (result.problem.seq, result.problem.kind) == (13, "head-mismatch")
    await _sql(store, ("UPDATE audit_head SET seq = ?, hash = ?", 20, ZERO_HASH))
    result = await _verify(store)
    assert (result.problem.seq, result.problem.kind) == (20, "head-mismatch")


async def test_triggers_reject_update_and_delete(store):
    await _fill(store, 5)
    for sql, *args in [
        ("UPDATE audit_log SET action = ? WHERE seq = ?", "D", 2),
        ("DELETE FROM audit_log WHERE seq = ?", 2),
        ("DELETE FROM audit_log",),
        ("DELETE FROM audit_head",),
        ("UPDATE audit_head SET seq = ?", 1),
    ]:
        with pytest.raises(Exception, match=r"append-only|audit_head"):
            await _sql(store, (sql, *args))
    if store.dialect == "postgres":
        with pytest.raises(Exception, match="append-only"):
            await _sql(store, ("TRUNCATE audit_log",))
    assert await _count(store) == 5
    assert (await _verify(store)).ok


async def test_failed_transaction_leaves_no_audit_row(store):
    await _fill(store, 3)
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            stored = await tx.create({"resourceType": "Patient", "active": True})
            await append(
                tx,
                [
                    audit_event(
                        DOCTOR,
                        action="C",
                        subtype="create",
                        patient_id=stored.id,
                        entities=[f"Patient/{stored.id}"],
                    )
                ],
            )
            raise RuntimeError("the write fails after its audit event")
    assert await _count(store) == 3
    result = await _verify(store)
    assert result.ok and result.head_seq == 3
    await _fill(store, 2)  # and the chain continues from the committed head
    assert (await _verify(store)).head_seq == 5


# ---- the citizen's view ---------------------------------------------------------------------


async def test_access_log(store):
    async with store.transaction() as tx:
        await append(
            tx,
            [
                _read("p1", access_basis="SAMTYKKE", organisation_name="Bergen legesenter"),
                _read("p2"),
                audit_event(
                    NURSE,
                    action="U",
                    subtype="update",
                    patient_id="p1",
                    entities=["AllergyIntolerance/a1"],
                    purpose="ETREAT",
                    emergency_reason="Akutt allergisk reaksjon",
                    organisation_name="Oslo legevakt",
                ),
            ],
        )
    async with AuditWriter(store) as writer:
        await writer.record([_read("p1", who=CITIZEN, purpose="PATRQT")])
    async with store.transaction(write=False) as tx:
        entries = await access_log(tx, "p1")
        assert [e["seq"] for e in entries] == [4, 3, 1]
        citizen, nurse, doctor = entries
        assert await access_log(tx, "p1", count=1, before_seq=citizen["seq"]) == [nurse]
        assert await access_log(tx, "nobody") == []

    assert doctor["who"] == "Kari Nordmann" and doctor["who_kind"] == "personnel"
    assert doctor["role"] == "Lege" and doctor["role_code"] == "LE"
    assert doctor["organisation"] == "Bergen legesenter"
    assert doctor["organisation_number"] == "974589095"
    assert doctor["action"] == "read" and doctor["interaction"] == "read"
    assert doctor["basis"] == "TREAT" and doctor["access_basis"] == "SAMTYKKE"
    assert doctor["emergency"] is False and doctor["success"] is True
    assert doctor["resources"] == ["Observation"]
    assert doctor["when"].endswith("Z")

    assert nurse["who"] == "Per Hansen" and nurse["role"] == "Sykepleier"
    assert nurse["organisation"] == "Oslo legevakt"
    assert nurse["action"] == "changed" and nurse["basis"] == "ETREAT"
    assert nurse["emergency"] is True
    assert "Akutt allergisk reaksjon" not in str(entries)  # free text: never the citizen's
    assert nurse["basis_text"].startswith("Nødrett")

    assert citizen["who_kind"] == "citizen" and citizen["hpr"] is None
    assert citizen["basis"] == "PATRQT" and citizen["organisation"] is None
    assert doctor["when"] <= nurse["when"] <= citizen["when"]


# ---- the command ----------------------------------------------------------------------------


async def test_verify_command(store_url, capsys):
    store = await open_store(store_url)
    try:
        await _fill(store, 25)
    finally:
        await store.close()
    assert await verify_command(store_url) == 0
    assert "intact" in capsys.readouterr().out
    store = await open_store(store_url)
    try:
        await _disable_triggers(store)
        await _sql(store, ("DELETE FROM audit_log WHERE seq = ?", 13))
    finally:
        await store.close()
    assert await verify_command(store_url) == 1
    out = capsys.readouterr().out
    assert "removed" in out and "13" in out
