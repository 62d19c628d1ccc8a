"""``Patient/[id]/$access-log``: what the citizen sees (no health worker's free text), the
``date`` and ``organization`` filters, paging with them, and bad values (400).

The world is tests/security's: kari is on GP gp's list at legekontor lk (974760673);
hospital doctor hdoc (hf, 983974899) has no relation to her and reads only in an emergency.
Events at chosen times are appended straight to the audit log.
"""

from __future__ import annotations

import pytest

from enjournal.fhir.datetime import date_range
from enjournal.fhir.validation import validate
from enjournal.security.audit import append, audit_event, citizen_view
from enjournal.security.principal import Principal
from tests.conftest import EVERY_BACKEND, MEMORY
from tests.probes import audit_rows

pytestmark = MEMORY

LK, HF = "974760673", "983974899"
REASON = "Bevisstløs etter trafikkulykke på E6 ved Minnesund"
LOG = "/fhir/Patient/kari/$access-log"


def doctor(hpr: str, org_nr: str) -> Principal:
    return Principal(
        kind="personnel", subject=f"sub-{hpr}", client_id="epj", name=f"Lege {hpr}", hpr=hpr,
        profession="LE", org_nr=org_nr,
    )  # fmt: skip


async def add_reads(store, *reads: tuple[Principal, str]) -> None:
    """Append one read of kari's record per (who, when), in order."""
    events = [
        audit_event(
            who, action="R", subtype="read", patient_id="kari",
            entities=["Observation/kari-obs"], recorded_ms=date_range(when)[0],
        )
        for who, when in reads
    ]  # fmt: skip
    async with store.transaction() as tx:
        await append(tx, events)


async def read_log(secured, query: str = "") -> list[dict]:
    response = await secured.get("kari", LOG + query)
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json()["entry"]]


def times(events: list[dict]) -> list[str]:
    return [e["recorded"][:10] for e in events]


def organisations(events: list[dict]) -> set[str]:
    return {
        a["who"]["identifier"]["value"]
        for e in events
        for a in e["agent"]
        if a["who"].get("type") == "Organization"
    }


# ---- no free text --------------------------------------------------------------------------


@EVERY_BACKEND
async def test_the_citizen_never_sees_a_health_workers_free_text(secured):
    headers = {
        "nhn-access-basis": "AKUTT",
        "nhn-access-reason": REASON.encode(),  # UTF-8, as sent
        "x-request-id": "saksnr-hemmelig-42",
    }
    read = await secured.get("hdoc", "/fhir/Observation/kari-obs", **headers)
    assert read.status_code == 200, read.text
    stored = b"".join(r.event for r in await audit_rows(secured.store) if r.patient_id == "kari")
    assert REASON.encode() in stored and b"saksnr-hemmelig-42" in stored  # security keeps it

    response = await secured.get("kari", LOG)
    assert response.status_code == 200, response.text
    body = response.content.decode()
    for secret in (REASON, "trafikkulykke", "saksnr-hemmelig-42"):
        assert secret not in body
    assert "emergency-reason" not in body and '"query"' not in body
    events = [x["resource"] for x in response.json()["entry"]]
    assert [i for e in events for i in validate(e) if i.severity == "error"] == []
    emergency = [
        e
        for e in events
        if any(label["code"] == "BTG" for label in e["entity"][0].get("securityLabel", []))
    ]
    assert len(emergency) == 1  # the coded basis stays: flag, purpose, basis with its text
    codings = emergency[0]["purposeOfEvent"][0]["coding"]
    assert {c["code"] for c in codings} == {"ETREAT", "AKUTT"}
    assert "Nødrett (akutt helsehjelp)" in {c.get("display") for c in codings}
    assert emergency[0]["agent"][0]["who"]["identifier"]["value"] == "1000003"


async def test_free_text_anywhere_in_an_event_stays_in_the_audit_log(secured):
    # A refusal's or a conflict's message, a search string, and free text a later change
    # might add (a purpose's text, an entity's description): the citizen's copy is built
    # from an allowlist, so none of it reaches her.
    event = audit_event(
        doctor("1000001", LK), action="U", subtype="$take", outcome="4", patient_id="kari",
        entities=["MedicationRequest/kari-mr"], query="name=hemmelig-sok",
        outcome_desc="reseptet er låst: pasienten ba om det i telefonen",
    )  # fmt: skip
    event["purposeOfEvent"][0]["text"] = "fritekst-formal"
    event["entity"][1]["description"] = "fritekst-beskrivelse"
    event["entity"][1]["what"]["display"] = "fritekst-visning"
    event["agent"][0]["role"][0]["text"] = "fritekst-rolle"
    async with secured.store.transaction() as tx:
        await append(tx, [event])
    events = await read_log(secured)
    assert [e["outcome"] for e in events] == ["4"] and "outcomeDesc" not in events[0]
    assert "fritekst" not in str(events) and "telefonen" not in str(events)
    assert [e.get("query") for e in events[0]["entity"]] == [None, None]
    assert events[0]["agent"][0]["role"][0]["coding"][0]["display"] == "Lege"


# ---- filters -------------------------------------------------------------------------------


@EVERY_BACKEND
async def test_date_filter_bounds_the_recorded_time(secured):
    gp = doctor("1000001", LK)
    await add_reads(
        secured.store,
        (gp, "2026-10-31T23:59:59.999Z"),
        (gp, "2026-11-01T00:00:00Z"),
        (gp, "2026-11-15T12:00:00Z"),
        (gp, "2026-11-30T23:59:59Z"),
        (gp, "2026-12-01T00:00:00Z"),
    )
    november = await read_log(secured, "?date=ge2026-11-01&date=le2026-11-30")
    assert times(november) == ["2026-11-30", "2026-11-15", "2026-11-01"]
    assert times(await read_log(secured, "?date=2026-11-15")) == ["2026-11-15"]
    assert times(await read_log(secured, "?date=gt2026-11-30&date=lt2026-12-02")) == ["2026-12-01"]
    assert times(await read_log(secured, "?date=eb2026-11")) == ["2026-10-31"]
    assert await read_log(secured, "?date=ge2026-12-02") == []
    assert await read_log(secured, "?date=ge2026-11-20&date=le2026-11-10") == []


@EVERY_BACKEND
async def test_organisation_filter_matches_the_organisation_agent(secured):
    await add_reads(
        secured.store,
        (doctor("1000001", LK), "2026-11-02"),
        (doctor("1000003", HF), "2026-11-03"),
        (doctor(LK, HF), "2026-11-04"),  # the number as an HPR number: not the organisation
    )
    assert times(await read_log(secured, f"?organization={LK}")) == ["2026-11-02"]
    token = f"?organization=urn:oid:2.16.578.1.12.4.1.4.101|{HF}"
    assert times(await read_log(secured, token)) == ["2026-11-04", "2026-11-03"]
    both = await read_log(secured, f"?organization={HF}&date=2026-11-03")
    assert times(both) == ["2026-11-03"] and organisations(both) == {HF}
    assert await read_log(secured, "?organization=981275721") == []  # the pharmacy: none


async def follow(secured, url: str) -> list[list[dict]]:
    """Every page from ``url`` on, following next links."""
    pages = []
    while url:
        response = await secured.get("kari", url)
        assert response.status_code == 200, response.text
        bundle = response.json()
        pages.append([e["resource"] for e in bundle["entry"]])
        url = next((x["url"] for x in bundle["link"] if x["relation"] == "next"), "")
        url = url.removeprefix("http://test")
    return pages


@EVERY_BACKEND
async def test_paging_with_filters_keeps_them_and_pages_are_full(secured):
    lk, hf, decoy = doctor("1000001", LK), doctor("1000003", HF), doctor(LK, HF)
    reads = [(who, f"2026-11-{day:02d}") for day in range(1, 29) for who in (lk, hf, decoy)]
    await add_reads(secured.store, *reads, (lk, "2026-12-01"))
    pages = await follow(secured, f"{LOG}?organization={LK}&date=le2026-11-30&_count=5")
    assert [len(p) for p in pages] == [5] * 5 + [3]  # no short page before the last
    events = [e for page in pages for e in page]
    assert times(events) == [f"2026-11-{day:02d}" for day in range(28, 0, -1)]
    assert organisations(events) == {LK}


async def test_a_page_stops_at_the_scan_limit_and_says_there_is_more(secured, monkeypatch):
    lk, decoy = doctor("1000001", LK), doctor(LK, HF)
    reads = [(decoy, f"2026-11-{day:02d}") for day in range(2, 20)]
    await add_reads(secured.store, (lk, "2026-11-01"), *reads, (lk, "2026-11-20"))
    monkeypatch.setattr(citizen_view, "SCAN_LIMIT", 6)
    pages = await follow(secured, f"{LOG}?organization={LK}&_count=5")
    assert len(pages) > 2 and [len(p) for p in pages if p] == [1, 1]
    assert times([e for page in pages for e in page]) == ["2026-11-20", "2026-11-01"]


# ---- bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "date=xx2026-11-01",
        "date=ne2026-11-01",
        "date=ap2026-11-01",
        "date=2026-13-01",
        "date=ge2026-11-01,2026-12-01",
        "date=",
        "organization=12345",
        "organization=974760674",  # a wrong check digit
        "organization=abcdefghi",
        f"organization=urn:oid:2.16.578.1.12.4.1.4.1|{LK}",
        f"organization={LK}&organization={HF}",
        "_cursor=x",
    ],
)
async def test_bad_filter_values_are_400s(secured, query):
    response = await secured.get("kari", f"{LOG}?{query}")
    assert response.status_code == 400, (query, response.text)
    assert response.json()["resourceType"] == "OperationOutcome"
