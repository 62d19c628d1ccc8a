"""Hostile or broken input gets a 4xx OperationOutcome, never a 500 (both backends).

One test per class of defect an external check found: strings a database cannot hold,
numbers out of any sensible range, nesting without bound, operation input of the wrong
shape, too many search values, and paths the router cannot match.
"""

from __future__ import annotations

import asyncio

import pytest

FHIR = "application/fhir+json"


def body(text: str) -> dict:
    return {"content": text.encode(), "headers": {"content-type": FHIR}}


def assert_outcome(response, status: int | tuple[int, ...]) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(FHIR)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Traceback" not in response.text
    return outcome


# -- strings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "escaped",
    [r"\ud800", r"x\udfffy", r"\u0000", r"a\u0001b", r"\u001f"],
    ids=["lone-high-surrogate", "lone-low-surrogate", "nul", "soh", "unit-separator"],
)
async def test_a_string_no_database_can_hold_is_refused(client, escaped):
    text = f'{{"resourceType": "Patient", "name": [{{"family": "{escaped}"}}]}}'
    outcome = assert_outcome(await client.post("/fhir/Patient", **body(text)), 400)
    assert "character" in outcome["issue"][0]["diagnostics"]


async def test_a_control_character_in_a_property_name_is_refused(client):
    text = '{"resourceType": "Patient", "a\\u0000": 1}'
    assert_outcome(await client.post("/fhir/Patient", **body(text)), 400)


async def test_tab_cr_lf_stay_allowed(client):
    text = '{"resourceType": "Patient", "name": [{"text": "a\\tb\\r\\nc"}]}'
    r = await client.post("/fhir/Patient", **body(text))
    assert r.status_code == 201, r.text
    assert r.json()["name"][0]["text"] == "a\tb\r\nc"


@pytest.mark.parametrize(
    "url",
    [
        "/fhir/Observation/%00",
        "/fhir/Observation/a%01",
        "/fhir/Patient?name=%00",
        "/fhir/Patient?name%00=x",
        "/fhir/Patient?_id=a%1Fb",
        "/fhir/Observation/a%0Ab",
        "/fhir/Observation/x/_history/%00",
        "/fhir/Patient%0A",
    ],
)
async def test_a_control_character_in_the_url_is_an_outcome(client, url):
    assert_outcome(await client.get(url), 400)


async def test_a_search_value_with_a_control_character_in_a_bundle_is_refused(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Patient?name=%00"}}],
    }
    r = await client.post("/fhir", json=bundle)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json()["entry"][0]["response"]["status"].startswith("400")


async def test_an_unmatched_fhir_path_is_an_outcome(client):
    # Starlette's path pattern does not match every character: its 404 must be FHIR too.
    assert_outcome(await client.get("/fhir/Patient/a%0Db"), (400, 404))


# -- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["1" * 5000, "1." + "1" * 5000, "1e999", "-1e999", "1e-999999"],
    ids=["5000-digit-integer", "5000-digit-decimal", "huge", "huge-negative", "tiny"],
)
async def test_a_number_out_of_range_in_a_body_is_refused(client, number):
    text = (
        '{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, '
        f'"valueQuantity": {{"value": {number}}}}}'
    )
    outcome = assert_outcome(await client.post("/fhir/Observation", **body(text)), 400)
    assert "number" in outcome["issue"][0]["diagnostics"]


async def test_an_ordinary_decimal_keeps_its_precision(client):
    text = (
        '{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, '
        '"valueQuantity": {"value": 66.899999999999991000}}'
    )
    r = await client.post("/fhir/Observation", **body(text))
    assert r.status_code == 201, r.text
    assert b"66.899999999999991000" in r.content


@pytest.mark.parametrize(
    "query",
    [
        "value-quantity=1e999",
        "value-quantity=gt-1e999",
        "value-quantity=1" + "0" * 400,
        "value-quantity=1e-999999|http://unitsofmeasure.org|mg",
        "value-quantity=0e99999999",
        "value-quantity=1" + "0" * 5000,
    ],
)
async def test_a_search_number_out_of_range_is_refused(client, query):
    assert_outcome(await client.get(f"/fhir/Observation?{query}"), 400)


@pytest.mark.parametrize(
    "version", ["99999999999999999999", "2147483648", "0", "²", "-1", "1" * 5000]
)
async def test_a_version_out_of_range_is_not_found(client, version):
    await client.put("/fhir/Patient/x", json={"resourceType": "Patient", "id": "x"})
    assert_outcome(await client.get(f"/fhir/Patient/x/_history/{version}"), (400, 404))


@pytest.mark.parametrize(
    "query", ["_cursor=99999999999999999999", "_count=99999999999999999999", "_count=²"]
)
async def test_history_paging_values_out_of_range_are_refused(client, query):
    await client.put("/fhir/Patient/x", json={"resourceType": "Patient", "id": "x"})
    r = await client.get(f"/fhir/Patient/_history?{query}")
    assert r.status_code in (200, 400), r.text


# -- nesting ---------------------------------------------------------------------------------


def nested_extensions(depth: int) -> dict:
    inner: dict = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(depth):
        inner = {"url": "http://example.org/nested", "extension": [inner]}
    return {"resourceType": "Patient", "extension": [inner]}


async def test_deep_nesting_is_refused_with_a_clear_message(client):
    outcome = assert_outcome(await client.post("/fhir/Patient", json=nested_extensions(200)), 400)
    assert "nest" in outcome["issue"][0]["diagnostics"]


async def test_very_deep_nesting_is_refused(client):
    text = "[" * 100_000 + "]" * 100_000
    assert_outcome(await client.post("/fhir/Patient", **body(text)), 400)


async def test_moderate_nesting_is_accepted(client):
    r = await client.post("/fhir/Patient", json=nested_extensions(10))
    assert r.status_code == 201, r.text


# -- operation input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parameters",
    [
        '"x"',
        "[1]",
        '["a"]',
        "{}",
        '[{"name": 1, "valueString": "x"}]',
        '[{"name": "code", "part": "x"}]',
    ],
)
async def test_an_operation_refuses_parameters_of_the_wrong_shape(client, parameters):
    text = f'{{"resourceType": "Parameters", "parameter": {parameters}}}'
    r = await client.post("/fhir/CodeSystem/$lookup", **body(text))
    assert_outcome(r, 400)


async def test_an_operation_expecting_parameters_refuses_another_resource(client):
    text = '{"resourceType": "Patient"}'
    assert_outcome(await client.post("/fhir/CodeSystem/$lookup", **body(text)), 400)


async def test_validate_refuses_parameters_of_the_wrong_shape(client):
    text = '{"resourceType": "Parameters", "parameter": "x"}'
    assert_outcome(await client.post("/fhir/Patient/$validate", **body(text)), 400)


# -- search size -----------------------------------------------------------------------------


async def test_too_many_values_for_one_parameter_is_refused(client):
    ids = ",".join(f"p{n}" for n in range(2000))
    outcome = assert_outcome(await client.get(f"/fhir/Patient?_id={ids}"), 400)
    assert "at most" in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize("same", [True, False], ids=["repeated", "distinct"])
async def test_too_many_parameters_is_refused(client, same):
    query = "&".join(["name=x" if same else f"name=x{n}" for n in range(300)])
    outcome = assert_outcome(await client.get(f"/fhir/Patient?{query}"), 400)
    assert "at most" in outcome["issue"][0]["diagnostics"]


async def test_too_many_values_in_all_is_refused(client):
    from enjournal.fhir.search.parse import MAX_PARAMETERS, MAX_TOTAL_VALUES

    per_parameter = MAX_TOTAL_VALUES // MAX_PARAMETERS + 1
    values = ",".join(f"x{n}" for n in range(per_parameter))
    query = "&".join([f"name={values}"] * MAX_PARAMETERS)
    outcome = assert_outcome(await client.get(f"/fhir/Patient?{query}"), 400)
    assert "in all" in outcome["issue"][0]["diagnostics"]


async def test_too_many_sort_keys_is_refused(client):
    sort = ",".join(["birthdate", "-name", "_id"] * 10)
    outcome = assert_outcome(await client.get(f"/fhir/Patient?_sort={sort}"), 400)
    assert "at most" in outcome["issue"][0]["diagnostics"]


async def test_a_repeated_criterion_counts_once(client):
    await client.put("/fhir/Patient/p7", json={"resourceType": "Patient", "id": "p7"})
    r = await client.get("/fhir/Patient?_id=p7&_id=p7&_id=p7")
    assert r.status_code == 200 and len(r.json()["entry"]) == 1


async def test_searches_within_the_limits_still_work(client):
    from enjournal.fhir.search.parse import MAX_PARAMETERS, MAX_VALUES

    await client.put("/fhir/Patient/p7", json={"resourceType": "Patient", "id": "p7"})
    ids = ",".join(f"p{n}" for n in range(MAX_VALUES))
    r = await client.get(f"/fhir/Patient?_id={ids}")
    assert r.status_code == 200 and r.json()["entry"][0]["resource"]["id"] == "p7"
    query = "&".join(["_id=p7"] * MAX_PARAMETERS)
    r = await client.get(f"/fhir/Patient?{query}")
    assert r.status_code == 200 and len(r.json()["entry"]) == 1


# -- a client that goes away -----------------------------------------------------------------


async def test_a_request_whose_client_disconnects_is_cancelled_and_rolled_back(store):
    """The app watches for the client's disconnect while it works: the work is cancelled,
    its transaction rolled back, and nothing is answered."""
    from enjournal.rest import operations
    from enjournal.rest.message import FhirResponse
    from enjournal.server.app import create_app
    from enjournal.settings import Settings

    started = asyncio.Event()

    async def slow_write(request, repo):
        tx = repo.trusted
        await tx.create({"resourceType": "Patient"}, id_="half-written")
        await tx.flush()
        started.set()
        await asyncio.sleep(30)
        return FhirResponse(200)

    app = create_app(Settings(database_url="unused", auth=False), store)
    app.state.platform.operations.add(
        operations.Operation("slow-test", "Patient", False, slow_write, ("POST",), writes=True)
    )
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await started.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/fhir/Patient/$slow-test",
        "raw_path": b"/fhir/Patient/$slow-test",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "root_path": "",
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    assert started.is_set()
    assert not await _exists(store, "half-written")
    async with store.transaction(write=True) as tx:  # the writer is free again
        await tx.create({"resourceType": "Patient"}, id_="after")
    assert await _exists(store, "after")


async def _exists(store, id_: str) -> bool:
    async with store.transaction(write=False) as tx:
        return await tx.exists("Patient", id_)
