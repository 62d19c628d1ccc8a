"""The official SQL on FHIR v2 suite over the store: each file's resources written to a
PostgreSQL store, each case run by ``run_store_view`` and held to the suite's expectations,
as the inline cases are (test_official_suite.py).  It checks that the store's source (the
stored JSON with its ``meta``, selected by type) changes nothing a view sees."""

from __future__ import annotations

import pytest

from enjournal.fhir.errors import Invalid
from enjournal.storage.views.postgres import run_store_view
from tests.storage.views.test_official_suite import multiset, suite_files, unsupported

pytestmark = [pytest.mark.backends("postgres"), pytest.mark.postgres]


async def load(store, resources: list[dict]) -> None:
    async with store.transaction() as tx:
        for resource in resources:
            await tx.update(dict(resource), resource["id"])


async def purge(store, resources: list[dict]) -> None:
    async with store.transaction() as tx:
        for resource in resources:
            await tx.purge(resource["resourceType"], resource["id"])


async def outcome(store, case: dict) -> str | None:
    """Why ``case`` fails over the store, or None when it passes."""
    if case.get("expectError"):
        try:
            await run_store_view(store, case["view"])
        except Invalid:
            return None
        return "no error"
    result = await run_store_view(store, case["view"])
    if "expectColumns" in case and result.columns != case["expectColumns"]:
        return f"columns {result.columns}"
    if "expectCount" in case and len(result.rows) != case["expectCount"]:
        return f"{len(result.rows)} rows"
    if "expect" in case and multiset(result.to_dicts()) != multiset(case["expect"]):
        return f"rows {result.to_dicts()}"
    return None


async def test_every_case_of_the_suite_over_the_store(store):
    failures, ran = {}, 0
    for suite in suite_files():
        resources = suite["resources"]
        if not all("id" in r for r in resources):
            continue  # the store gives a resource without id one of its own
        await load(store, resources)
        for case in suite["tests"]:
            if unsupported("postgres", suite["stem"], case["title"]):
                continue
            ran += 1
            why = await outcome(store, case)
            if why:
                failures[f"{suite['stem']}: {case['title']}"] = why
        await purge(store, resources)
    assert ran > 120, ran
    assert failures == {}
