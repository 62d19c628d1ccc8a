"""A patient with 500 resources gets a complete and correct summary."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from enjournal.fhir import jsonio
from enjournal.services.kjernejournal.signing import verify
from tests.conftest import MEMORY
from tests.security.conftest import patient
from tests.services.kjernejournal import ips
from tests.services.kjernejournal.conftest import KJ, allergy, condition, flag

pytestmark = MEMORY

ATC = "http://www.whocc.no/atc"


def tagged(resource: dict, code: str, id_: str) -> dict:
    resource = dict(resource, id=id_)
    resource["meta"] = {"tag": [{"system": KJ, "code": code}]}
    return resource


def big_record(today: date) -> tuple[list[dict], dict[str, set[str]]]:
    """500 resources, and the ids each section must show (by the KJ rules)."""
    subject = {"reference": "Patient/big"}
    out: list[dict] = []
    expected: dict[str, set[str]] = {
        k: set()
        for k in (
            "48765-2",
            "11450-4",
            "104605-1",
            "10160-0",
            "11369-6",
            "46240-8",
            "46264-8",
            "47519-4",
        )
    }
    for i in range(30):
        a = tagged(allergy(f"Stoff {i}", f"J01CE{i:02d}"), "legemiddelreaksjon", f"al-{i}")
        a["patient"] = subject
        if i % 6 == 0:
            a["verificationStatus"]["coding"][0]["code"] = "entered-in-error"
        else:
            expected["48765-2"].add(a["id"])
        out.append(a)
    for i in range(30):
        c = tagged(condition(f"I{10 + i}", f"Tilstand {i}"), "kritisk-tilstand", f"co-{i}")
        c["subject"] = subject
        out.append(c)
        expected["11450-4"].add(c["id"])
    for i in range(10):
        until = (today + timedelta(days=100 if i < 8 else -100)).isoformat()
        f = tagged(flag(f"Rutine {i}", until), "prosedyreendring", f"fl-{i}")
        f["subject"] = subject
        out.append(f)
        if i < 8:
            expected["104605-1"].add(f["id"])
    for i in range(10):
        out.append(
            tagged(
                {
                    "resourceType": "Device",
                    "patient": subject,
                    "deviceName": [{"name": f"Pacemaker {i}", "type": "user-friendly-name"}],
                },
                "implantat",
                f"de-{i}",
            )
        )
        expected["46264-8"].add(f"kj-de-{i}")
        out.append(
            tagged(
                {
                    "resourceType": "Procedure",
                    "status": "in-progress",
                    "subject": subject,
                    "code": {"text": f"Dialyse {i}"},
                },
                "behandling",
                f"pr-{i}",
            )
        )
        expected["47519-4"].add(f"pr-{i}")
    for i in range(100):
        out.append(
            {
                "resourceType": "Immunization",
                "id": f"im-{i}",
                "status": "completed",
                "patient": subject,
                "occurrenceDateTime": "2020-01-01",
                "vaccineCode": {"coding": [{"system": ATC, "code": "J07BB02"}]},
            }
        )
        expected["11369-6"].add(f"im-{i}")
        out.append(
            {
                "resourceType": "Encounter",
                "id": f"en-{i}",
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "subject": subject,
                "period": {"start": "2021-02-03"},
            }
        )
        expected["46240-8"].add(f"en-{i}")
    recent = (today - timedelta(days=200)).isoformat()
    old = (today - timedelta(days=5 * 365)).isoformat()
    for i in range(80):
        status = "active" if i < 40 else "stopped"
        authored = old if i >= 60 else recent
        out.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"mr-{i}",
                "status": status,
                "intent": "order",
                "subject": subject,
                "authoredOn": authored,
                "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "A10BA02"}]},
            }
        )
        if status == "active" or authored == recent:
            expected["10160-0"].add(f"mr-{i}")
        handed = old if i >= 60 else recent
        out.append(
            {
                "resourceType": "MedicationDispense",
                "id": f"md-{i}",
                "status": "completed",
                "subject": subject,
                "whenHandedOver": handed,
                "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "C07AB02"}]},
            }
        )
        if handed == recent:
            expected["10160-0"].add(f"kj-md-{i}")
    for i in range(50):
        out.append(
            {
                "resourceType": "Observation",
                "id": f"ob-{i}",
                "status": "final",
                "subject": subject,
                "code": {"text": "Puls"},
            }
        )
    return out, expected


async def test_500_resources_give_a_complete_and_correct_summary(kj):
    record, expected = big_record(date.today())
    assert len(record) == 500
    async with kj.store.transaction() as tx:
        await tx.update(
            patient("kari", "1980-01-02", "Practitioner/gp")
            | {
                "id": "big",
                "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "01818099914"}],
            },
            "big",
        )
        for resource in record:
            await tx.update(resource, resource["id"])
    response = await kj.summary("gp", "big", "UNNTAK")
    assert response.status_code == 200, response.text
    bundle = jsonio.loads(response.content)
    assert ips.problems(bundle) == []
    # ~300 KB: beyond joserfc's default payload limit, which verify() raises.
    assert len(response.content) > 200_000
    assert verify(bundle, await kj.jwks())
    for code, ids in expected.items():
        shown = [r["id"] for r in ips.section_resources(bundle, code)]
        assert Counter(shown) == Counter(ids), code
    types = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    assert types["Observation"] == 0
    assert types["MedicationDispense"] == sum(
        1 for i in expected["10160-0"] if i.startswith("kj-md")
    )
