"""Races between pharmacies, with real concurrent connections (PostgreSQL: a connection
pool and SELECT ... FOR UPDATE; SQLite: its single writer).  Each race runs many times."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from enjournal.fhir import jsonio
from enjournal.fhir.norwegian_ids import make_orgnr
from enjournal.security.provider import DemoUser
from tests.services.eresept.conftest import SCOPES, USERS, part

PHARMACIES = 12


def pharmacists(count: int = PHARMACIES) -> list[str]:
    """Pharmacists at ``count`` different pharmacies (valid organisation numbers)."""
    rng = random.Random(42)
    names = []
    for n in range(count):
        name = f"race-farm{n}"
        USERS[name] = DemoUser(
            name, "personnel", name, hpr=f"30000{n:02d}", profession="FA", org_nr=make_orgnr(rng)
        )
        names.append(name)
    return names


async def dispenses_of(store, mr_id: str) -> list[dict]:
    async with store.transaction(write=False) as tx:
        rows = await tx._conn.fetch(
            "SELECT r.content FROM idx_reference f JOIN resources r ON r.rid = f.rid "
            "WHERE f.type = 'MedicationDispense' AND f.param = 'prescription' "
            "AND f.target_id = ? AND NOT r.deleted",
            mr_id,
        )
    return [jsonio.loads(r[0]) for r in rows]


async def test_racing_takes_exactly_one_pharmacy_wins(eresept):
    names = pharmacists()
    assert SCOPES  # tokens are issued lazily with the personnel scopes
    for _ in range(8):
        mr = part(await eresept.prescribe(), "prescription")[0]
        responses = await asyncio.gather(*(eresept.step(n, mr["id"], "take") for n in names))
        codes = Counter(r.status_code for r in responses)
        assert codes == {200: 1, 409: PHARMACIES - 1}, codes
        winner = next(n for n, r in zip(names, responses, strict=True) if r.status_code == 200)
        loser = next(n for n in names if n != winner)
        assert (await eresept.step(loser, mr["id"], "dispense")).status_code == 409
        assert (await eresept.step(winner, mr["id"], "dispense")).status_code == 200


async def test_racing_dispensings_of_the_last_repeat_exactly_one_succeeds(eresept):
    for _ in range(8):
        mr = part(await eresept.prescribe(quantity=30, repeats=1), "prescription")[0]
        await eresept.step("farm1", mr["id"], "take")
        assert (await eresept.step("farm1", mr["id"], "dispense")).status_code == 200
        # The last repeat: two terminals of the same pharmacy dispense it at once.
        await eresept.step("farm1", mr["id"], "take")
        responses = await asyncio.gather(
            *(eresept.step("farm1", mr["id"], "dispense", quantity=30) for _ in range(6))
        )
        assert Counter(r.status_code for r in responses) == {200: 1, 409: 5}
        assert (
            sum(d["quantity"]["value"] for d in await dispenses_of(eresept.store, mr["id"])) == 60
        )


async def test_nothing_dispensed_more_than_prescribed_under_any_interleaving(eresept):
    names = pharmacists()
    prescriptions = [
        part(await eresept.prescribe(quantity=10, repeats=2), "prescription")[0]["id"]
        for _ in range(4)
    ]

    async def pharmacy(name: str, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(12):
            mr_id = rng.choice(prescriptions)
            if (await eresept.step(name, mr_id, "take")).status_code != 200:
                continue
            amount = rng.choice([3, 5, 10])
            if rng.random() < 0.2:
                await eresept.step(name, mr_id, "release")
            else:
                await eresept.step(name, mr_id, "dispense", quantity=amount)

    await asyncio.gather(*(pharmacy(n, i) for i, n in enumerate(names)))
    for mr_id in prescriptions:
        total = sum(d["quantity"]["value"] for d in await dispenses_of(eresept.store, mr_id))
        stored = (await eresept.get("gp", f"MedicationRequest/{mr_id}")).json()
        remaining = next(
            e["valueDecimal"]
            for e in stored["extension"]
            if e["url"].endswith("remaining-quantity")
        )
        assert total <= 30
        assert total + remaining == 30
