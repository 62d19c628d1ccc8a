"""Every official R4 example resource round-trips: PUT /fhir/<Type>/<id>, then GET (both backends).

The GET must give back the PUT body apart from ``meta.versionId`` and ``meta.lastUpdated``.
JSON is compared with decimals parsed as ``Decimal``, so a decimal must keep its value (1.5 vs
1.50 is the same value; a change of precision is reported by its own test below).
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from enjournal.fhir.definitions import resource_types
from tests.fhir.test_validation import EXAMPLES, KNOWN_INVALID

needs_examples = pytest.mark.skipif(
    EXAMPLES is None, reason="official R4 examples not found (run scripts/fetch_examples.py)"
)

FHIR = {"Content-Type": "application/fhir+json"}
DEFINITION_BUNDLES = {
    "Bundle-resources.json",
    "Bundle-types.json",
    "Bundle-valuesets.json",
    "Bundle-searchParams.json",
    "Bundle-extensions.json",
    "Bundle-conceptmaps.json",
    "Bundle-dataelements.json",
    "Bundle-externals.json",
}

# Examples whose round trip is known to differ: file -> the exact difference lines.  Each must
# still differ exactly so, so the list cannot go stale silently.  (Empty since decimals are
# kept as written: enjournal.fhir.jsonio.)
KNOWN_DIFFERENCES: dict[str, list[str]] = {}


def example_resources() -> list[tuple[str, bytes]]:
    """(file name, bytes) of each ``<Type>-<id>.json`` that is a single resource to store."""
    types = resource_types()
    found = []
    for path in sorted(EXAMPLES.glob("*-*.json")):
        if path.name in DEFINITION_BUNDLES or path.name in KNOWN_INVALID:
            continue
        type_ = path.name.split("-", 1)[0]
        if type_ not in types:
            continue
        raw = path.read_bytes()
        resource = json.loads(raw)
        if not isinstance(resource, dict) or resource.get("resourceType") != type_:
            continue
        if not resource.get("id"):
            continue
        found.append((path.name, raw))
    return found


def comparable(data: dict | bytes | str) -> dict:
    """The resource with decimals as Decimal and without meta.versionId / meta.lastUpdated."""
    resource = json.loads(data, parse_float=Decimal) if not isinstance(data, dict) else data
    meta = dict(resource.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    resource = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        resource["meta"] = meta
    return resource


def differences(a, b, path="") -> list[str]:
    """Where ``a`` (sent) and ``b`` (read back) differ, as readable lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in b:
                out.append(f"{path}.{key}: missing in the result (sent {a[key]!r:.80})")
            elif key not in a:
                out.append(f"{path}.{key}: added in the result ({b[key]!r:.80})")
            else:
                out += differences(a[key], b[key], f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items sent, {len(b)} read back"]
        return [
            line
            for n, (x, y) in enumerate(zip(a, b, strict=True))
            for line in differences(x, y, f"{path}[{n}]")
        ]
    if type(a) is not type(b) or a != b:
        return [f"{path}: sent {a!r:.80}, read back {b!r:.80}"]
    return []


def decimal_texts(raw: bytes) -> list[str]:
    """The decimal literals of a JSON document, as written."""
    texts: list[str] = []

    def keep(text: str) -> Decimal:
        texts.append(text)
        return Decimal(text)

    json.loads(raw, parse_float=keep)
    return texts


@needs_examples
@pytest.mark.slow
async def test_official_examples_round_trip(client):
    examples = example_resources()
    assert len(examples) > 2500, len(examples)
    failures: dict[str, list[str]] = {}
    # Several requests at once: PostgreSQL round trips overlap (examples have distinct ids).
    gate = asyncio.Semaphore(8)

    async def round_trip(name: str, raw: bytes) -> None:
        sent = json.loads(raw)
        url = f"/fhir/{sent['resourceType']}/{sent['id']}"
        async with gate:
            put = await client.put(url, content=raw, headers=FHIR)
            if put.status_code not in (200, 201):
                failures[name] = [f"PUT {put.status_code}: {put.text[:300]}"]
                return
            got = await client.get(url)
        if got.status_code != 200:
            failures[name] = [f"GET {got.status_code}: {got.text[:300]}"]
            return
        if got.json()["meta"]["versionId"] != put.json()["meta"]["versionId"]:
            failures[name] = ["the GET gives another version than the PUT stored"]
            return
        diff = differences(comparable(raw), comparable(got.content))
        if diff != KNOWN_DIFFERENCES.get(name, []):
            failures[name] = diff[:5] or ["listed in KNOWN_DIFFERENCES but round-trips now"]

    await asyncio.gather(*(round_trip(name, raw) for name, raw in examples))
    assert not failures, f"{len(failures)} of {len(examples)} examples do not round-trip:\n" + (
        json.dumps(failures, indent=1)
    )


@needs_examples
async def test_decimal_precision_is_preserved(client):
    raw = (EXAMPLES / "Observation-decimal.json").read_bytes() if EXAMPLES else b""
    sent = json.loads(raw)
    url = f"/fhir/Observation/{sent['id']}"
    put = await client.put(url, content=raw, headers=FHIR)
    assert put.status_code in (200, 201), put.text
    got = await client.get(url)
    assert decimal_texts(got.content) == decimal_texts(raw)
