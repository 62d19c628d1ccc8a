"""``$register-statistics`` end to end: a small population read through the guard, the
views, suppression, the MeasureReport and the publication log; refused callers."""

from __future__ import annotations

import orjson
import pytest

from enjournal.bootstrap import compose, open_platform
from enjournal.fhir import jsonio
from enjournal.fhir.validation import validate
from enjournal.rest.message import FhirRequest
from enjournal.security.principal import Principal
from enjournal.security.setup import worker_security
from enjournal.services.registers import statistics as stats
from enjournal.services.registers import suppression as S
from enjournal.services.registers import tables as T
from enjournal.settings import Settings

pytestmark = pytest.mark.backends("memory", "postgres")

ICPC2 = "urn:oid:2.16.578.1.12.4.1.1.7170"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
PROPERTY = "http://hl7.no/fhir/StructureDefinition/no-basis-propertyinformation"
STATS_SCOPES = frozenset(
    {
        "system/Encounter.rs",
        "system/Condition.rs",
        "system/Patient.rs",
        "system/EpisodeOfCare.rs",
        "system/MeasureReport.crs",
    }
)
SYSTEM = Principal("system", "stats", "stats-client", STATS_SCOPES, "Statistikk")
NURSE = Principal("personnel", "n1", "ehr", frozenset({"user/*.cruds"}), hpr="9144889")
CITIZEN = Principal("citizen", "c1", "portal", frozenset({"patient/*.rs"}), pid="13097248022")

# (municipality, sex, birth year, [(month, ICPC-2 or ICD-10 code)]) per person
PEOPLE = (
    [("1804", "female", 1950, [("2025-02", "R74")])] * 9
    + [("1804", "male", 1960, [("2025-03", "R74"), ("2025-04", "K86")])] * 8
    + [("1804", "female", 1990, [("2025-05", "K86")])] * 2  # a small cell
    + [("0301", "female", 1980, [("2025-02", "R74")])] * 7
    + [("0301", "male", 2001, [("2025-06", "R74")])] * 6
    + [("0301", "male", 1985, [("2024-12", "R74")])] * 3  # outside 2025
    + [("0301", "female", 1970, [("2025-03", "J45")])] * 4  # hospital, ICD-10 only
)


def population() -> list[dict]:
    out = []
    for n, (place, sex, year, contacts) in enumerate(PEOPLE):
        pid = f"p{n}"
        out.append(_patient(pid, place, sex, year))
        for m, (month, code) in enumerate(contacts):
            eid, cid = f"e{n}-{m}", f"c{n}-{m}"
            system = ICD10 if code == "J45" else ICPC2
            out.append(_encounter(eid, pid, month, cid))
            out.append(_condition(cid, pid, eid, system, code))
    return out


def _patient(pid: str, place: str, sex: str, year: int) -> dict:
    municipality = {"url": "municipality", "valueCoding": {"code": place}}
    address = {"use": "home", "extension": [{"url": PROPERTY, "extension": [municipality]}]}
    return {
        "resourceType": "Patient",
        "id": pid,
        "gender": sex,
        "birthDate": f"{year}-06-15",
        "address": [address],
    }


def _encounter(eid: str, pid: str, month: str, cid: str) -> dict:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": f"{month}-10T10:00:00+01:00", "end": f"{month}-10T10:20:00+01:00"},
        "diagnosis": [{"condition": {"reference": f"Condition/{cid}"}, "rank": 1}],
    }


def _condition(cid: str, pid: str, eid: str, system: str, code: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "code": {"coding": [{"system": system, "code": code}]},
    }


@pytest.fixture
async def platform(store_url):
    settings = Settings(database_url=store_url, auth=True, terminology_check=False, jobs=False)
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security))
    await security.start(platform.store)
    async with platform.store.transaction() as tx:
        for resource in population():
            await tx.update(resource, resource["id"])
    yield platform
    await security.stop()
    await platform.store.close()


async def ask(platform, principal, **params) -> tuple[int, dict]:
    parts = []
    for name, value in params.items():
        kind = "valueInteger" if isinstance(value, int) else "valueString"
        parts.append({"name": name, kind: value})
    body = {"resourceType": "Parameters", "parameter": parts}
    request = FhirRequest(
        "POST",
        ["$register-statistics"],
        [],
        {"content-type": "application/fhir+json"},
        jsonio.dumps(body),
        platform.settings.fhir_base,
    )
    response = await platform.handle(request, principal)
    return response.status, orjson.loads(response.body) if response.body else {}


def cells(report: dict) -> dict[tuple, object]:
    """(dimension=category, ...) -> count, or the suppression reason."""
    group = report["group"][0]
    out = {(): _shown(group["population"][0])}
    for stratifier in group.get("stratifier", []):
        for stratum in stratifier["stratum"]:
            key = tuple(
                (c["code"]["coding"][0]["code"], c["value"]["coding"][0]["code"])
                for c in stratum["component"]
            )
            out[key] = _shown(stratum["population"][0])
    return out


def _shown(population: dict):
    if "count" in population:
        return population["count"]
    return population["extension"][0]["valueCode"]


async def test_contacts_by_municipality_and_sex(platform):
    status, report = await ask(
        platform, SYSTEM, measure="gp-contacts", dimension="municipality,sex", period="2025"
    )
    assert status == 200, report
    assert report["resourceType"] == "MeasureReport" and report["id"]
    assert validate(report) == []
    shown = cells(report)
    # GP contacts in 2025: 1804 women 9+2, men 16; 0301 women 7, men 6 (J45 is not GP)
    assert shown[()] == 40
    assert shown[(("municipality", "1804"),)] == 27
    assert shown[(("municipality", "1804"), ("sex", "male"))] == 16
    assert shown[(("municipality", "0301"), ("sex", "male"))] == 6
    assert shown[(("sex", "female"),)] == 18
    assert 2 not in shown.values() and "primary" not in shown.values()  # nothing small here


async def test_a_small_cell_is_hidden_with_its_complements(platform):
    status, report = await ask(
        platform,
        SYSTEM,
        measure="gp-patients",
        dimension=["municipality", "age"],
        period="2025",
        ageBands="0,30,50,70",
    )
    assert status == 200, report
    shown = cells(report)
    # 1804 aged 30-49 on 2025-01-01: two women born 1990 -> hidden, primary
    assert shown[(("municipality", "1804"), ("age", "30-49"))] == "primary"
    assert list(shown.values()).count("secondary") >= 1
    assert b'"count":2}' not in orjson.dumps(report)  # the two are nowhere
    release = stats.to_release(report)  # the audit needs only what was published
    model = S.Model([release])
    for key in release.suppressed:
        low, high = model.bounds(release, key)
        assert high - low >= 5


async def test_a_second_release_is_audited_against_the_first(platform):
    first = await ask(
        platform,
        SYSTEM,
        measure="gp-contacts",
        dimension="municipality,period",
        period="2025",
        grain="quarter",
    )
    second = await ask(
        platform,
        SYSTEM,
        measure="gp-contacts",
        dimension="municipality,period",
        period="2025-02/2025-06",
        grain="month",
    )
    assert first[0] == 200 and second[0] == 200
    releases = [stats.to_release(first[1]), stats.to_release(second[1])]
    linked = [e["valueString"] for e in second[1]["extension"] if e["url"] == stats.LINKED]
    assert linked == [first[1]["id"]]
    model = S.Model(releases)
    for release in releases:
        for key in release.suppressed:
            low, high = model.bounds(release, key)
            assert high - low >= 5, (release.id, key, low, high)


async def test_others_are_refused(platform):
    for who in (NURSE, CITIZEN):
        status, outcome = await ask(platform, who, measure="contacts", period="2025")
        assert status == 403, outcome
        assert outcome["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "params",
    [
        {"measure": "nonsense", "period": "2025"},
        {"measure": "contacts", "period": "2025-13"},
        {"measure": "contacts", "period": "2025", "threshold": 2},
        {"measure": "contacts", "period": "2025", "dimension": "ward"},
        {"measure": "home-nursing-patients", "period": "2025", "dimension": "chapter"},
        {"measure": "contacts", "period": "2025", "ageBands": "5,10"},
    ],
)
async def test_bad_input_is_a_400(platform, params):
    status, outcome = await ask(platform, SYSTEM, **params)
    assert status == 400, outcome


async def test_a_register_client_reads_nothing_here(platform):
    """A register's client (scope register/...) reads only through export operations (the
    access policy), so the guard refuses the reads this operation makes."""
    register = Principal(
        "system", "kpr", "kpr-client", frozenset({*STATS_SCOPES, "register/export"})
    )
    status, outcome = await ask(platform, register, measure="contacts", period="2025")
    assert status == 403 and "export operations" in outcome["issue"][0]["diagnostics"]


def test_the_command_prints_the_published_table(tmp_path, capsys):
    import asyncio

    from enjournal.cli import main

    url = f"sqlite:///{tmp_path}/stats.sqlite"

    async def load() -> None:
        settings = Settings(database_url=url, auth=False, terminology_check=False, jobs=False)
        platform = await open_platform(compose(settings))
        async with platform.store.transaction() as tx:
            for resource in population():
                await tx.update(resource, resource["id"])
        await platform.store.close()

    asyncio.run(load())
    argv = ["register", "stats", "gp-patients", "--period", "2025", "--database", url]
    assert main([*argv, "-d", "municipality", "-d", "age", "--age-bands", "0,30,50,70"]) == 0
    out = capsys.readouterr().out
    assert "30-49" in out and ". (p)" in out and ". (s)" in out and "Totalt" in out
    assert main([*argv, "--threshold", "1"]) == 2
    assert "at least 3" in capsys.readouterr().err


def _episode(n: int, pid: str, start: str, service: str) -> dict:
    return {
        "resourceType": "EpisodeOfCare",
        "id": f"hs{n}",
        "status": "active",
        "type": [{"coding": [{"system": stats.KPR_SERVICE, "code": service}]}],
        "patient": {"reference": f"Patient/{pid}"},
        "period": {"start": start},
        "extension": [{"url": "https://example.org/hours", "valueDecimal": 2.5}],
    }


async def test_persons_with_home_nursing(platform):
    episodes = [_episode(n, f"p{n}", "2024-11-01", "15") for n in range(0, 8)]
    episodes += [_episode(n, f"p{n}", "2025-03-01", "15") for n in range(20, 22)]
    episodes += [_episode(99, "p30", "2025-01-01", "1")]  # practical help, not nursing
    async with platform.store.transaction() as tx:
        for resource in episodes:
            await tx.update(resource, resource["id"])
    status, report = await ask(
        platform, SYSTEM, measure="home-nursing-patients", dimension="municipality", period="2025"
    )
    assert status == 200, report
    shown = cells(report)
    assert shown[()] == 10  # eight from before 2025, still open, and two new
    assert shown[(("municipality", "0301"),)] == "primary"  # p20, p21: two
    assert shown[(("municipality", "1804"),)] == "secondary"  # else 10 - 8 shows the two


def test_long_id_lists_are_cut_to_the_search_limit():
    ids = [f"{n:036d}" for n in range(250)]
    chunks = stats._chunks(ids)
    assert [i for c in chunks for i in c] == ids
    assert all(len(",".join(c)) <= stats.CHUNK_CHARS and len(c) <= stats.CHUNK for c in chunks)


def test_an_audit_too_large_is_refused(monkeypatch):
    from enjournal.fhir.errors import Invalid

    units = [{"municipality": f"m{n % 7}", "sex": ("f", "m")[n % 2]} for n in range(30)]
    table = T.build("contacts", units, ["municipality", "sex"])
    monkeypatch.setattr(S, "AUDIT_BUDGET", 10)
    with pytest.raises(Invalid, match="too large"):
        S.protect(table, S.Rules())


async def test_releases_of_other_periods_are_not_linked(platform):
    first = await ask(platform, SYSTEM, measure="gp-contacts", dimension="sex", period="2024")
    second = await ask(platform, SYSTEM, measure="gp-contacts", dimension="sex", period="2025")
    third = await ask(platform, SYSTEM, measure="gp-patients", dimension="sex", period="2025-Q1")
    fourth = await ask(platform, SYSTEM, measure="gp-patients", dimension="sex", period="2025")
    assert all(status == 200 for status, _ in (first, second, third, fourth))
    for _, report in (second, fourth):  # no overlap; persons: another period
        assert not [e for e in report["extension"] if e["url"] == stats.LINKED]


EDITOR = Principal(
    "system", "stats", "stats-client", frozenset({*STATS_SCOPES, "system/MeasureReport.cruds"})
)


async def _call(platform, method: str, path: str, body: dict | None = None) -> int:
    request = FhirRequest(
        method,
        path.split("/"),
        [],
        {"content-type": "application/fhir+json"},
        jsonio.dumps(body) if body is not None else b"",
        platform.settings.fhir_base,
    )
    return (await platform.handle(request, EDITOR)).status


async def test_the_publication_log_is_append_only(platform):
    status, report = await ask(platform, EDITOR, measure="gp-contacts", period="2025")
    assert status == 200
    path = f"MeasureReport/{report['id']}"
    untagged = {**report, "identifier": [{"system": "urn:example", "value": "x"}]}
    assert await _call(platform, "DELETE", path) == 403
    assert await _call(platform, "PUT", path, untagged) == 403
    forged = {k: v for k, v in report.items() if k not in ("id", "meta")}
    assert await _call(platform, "POST", "MeasureReport", forged) == 403  # a guess to test
    other = {**forged, "identifier": [{"system": "urn:example", "value": "y"}]}
    assert await _call(platform, "POST", "MeasureReport", other) == 201  # not the log's
    again = await ask(platform, EDITOR, measure="gp-contacts", period="2025")
    assert again[0] == 200  # the operation still writes the log
    linked = [e["valueString"] for e in again[1]["extension"] if e["url"] == stats.LINKED]
    assert linked == [report["id"]]


async def test_gp_contacts_and_all_contacts_are_audited_together(platform):
    first = await ask(platform, SYSTEM, measure="gp-contacts", dimension="municipality,sex",
                      period="2025")  # fmt: skip
    second = await ask(platform, SYSTEM, measure="contacts", dimension="municipality,sex",
                       period="2025-03")  # fmt: skip
    assert first[0] == 200 and second[0] == 200
    linked = [e["valueString"] for e in second[1]["extension"] if e["url"] == stats.LINKED]
    assert linked == [first[1]["id"]]
    releases = [stats.to_release(first[1]), stats.to_release(second[1])]
    assert releases[1].scope["kind"] > releases[0].scope["kind"]  # all contacts include GP's
    model = S.Model(releases)
    for release in releases:
        for key in release.suppressed:
            low, high = model.bounds(release, key)
            assert high - low >= 5, (release.id, key, low, high)
