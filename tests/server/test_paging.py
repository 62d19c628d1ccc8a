"""Paging through search results while others write (real HTTP, both backends).

50 "stable" Patients exist for the whole walk through ``Patient?_count=10``; between pages
other Patients are created and deleted (and, in some variants, stable ones updated).  Every
stable Patient must be seen exactly once, and no page may hold a resource twice.
"""

from __future__ import annotations

import httpx
import pytest

STABLE = 50


def patient(family: str, given: str) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family, "given": [given]}]}


def next_link(bundle: dict) -> str | None:
    return next(
        (link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None
    )


@pytest.mark.parametrize(
    ("params", "update_stable"),
    [
        ({"_count": "10"}, False),
        ({"_count": "10"}, True),
        ({"_count": "10", "_sort": "family"}, True),
        ({"_count": "10", "_sort": "-_lastUpdated"}, True),
    ],
    ids=["unsorted", "unsorted+updates", "sort-family+updates", "sort-lastUpdated+updates"],
)
async def test_paging_under_concurrent_writes(live_server, params, update_stable):
    async with httpx.AsyncClient(base_url=f"{live_server}/fhir", timeout=30) as http:

        async def create(family: str, given: str) -> str:
            r = await http.post("/Patient", json=patient(family, given))
            assert r.status_code == 201, r.text
            return r.json()["id"]

        stable, others = [], []
        for n in range(STABLE):
            # Interleave others with the stable ones, so deletions hit every page.
            others.append(await create(f"Annen{n:02d}", "a"))
            stable.append(await create(f"Stabil{n:02d}", "s"))
        others.append(await create("Annen99", "a"))

        seen: list[str] = []
        r = await http.get("/Patient", params=params)
        pages, step = 0, 0
        while True:
            assert r.status_code == 200, r.text
            bundle = r.json()
            ids = [e["resource"]["id"] for e in bundle.get("entry", [])]
            assert len(ids) == len(set(ids)), f"a page repeats a resource: {ids}"
            assert len(ids) <= 10
            seen += ids
            pages += 1
            url = next_link(bundle)
            if url is None:
                break
            # Others write between pages: delete two old others, create two new ones.
            for _ in range(2):
                if others:
                    victim = others.pop(step * 7 % len(others))
                    assert (await http.delete(f"/Patient/{victim}")).status_code in (200, 204)
                others.append(await create(f"Annen{step:02d}", "ny"))
            if update_stable:
                for target in (stable[step * 11 % STABLE], stable[(step * 11 + 5) % STABLE]):
                    body = {
                        **patient(f"Stabil{stable.index(target):02d}", f"v{step}"),
                        "id": target,
                    }
                    r = await http.put(f"/Patient/{target}", json=body)
                    assert r.status_code == 200, r.text
            step += 1
            assert pages < 40, "paging does not end"
            r = await http.get(url)

    missing = [pid for pid in stable if pid not in seen]
    repeated = sorted({pid for pid in seen if seen.count(pid) > 1})
    assert not missing, f"{len(missing)} stable Patients skipped: {missing[:5]}"
    assert not repeated, f"Patients seen twice across pages: {repeated[:5]}"
    assert pages >= 6
