"""A secured server in-process, with a small world of patients, personnel and care links.

World (organisation numbers and HPR numbers are valid-looking made-up values):
- legekontor "lk" with GP "gp" (HPR 1000001) and nurse "nurse" (1000002); patient "kari"
  (adult) is on the GP's list; "kari" has two children: "lise" (8, same address) and "per"
  (13, same address), and a RelatedPerson link from each child to her as mother.
- hospital "hf" with doctor "hdoc" (1000003): patient "ola" has an Encounter there;
  patient "nora" was referred there (ServiceRequest).
- pharmacy "apotek" with pharmacist "farm" (1000004).
- patient "siri" has no relation to anyone; each patient has an Observation and a
  MedicationRequest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest

from enjournal.security.keys import generate
from enjournal.security.provider import Client, DemoUser, Provider, ProviderConfig
from enjournal.security.setup import Security
from enjournal.security.tokens import TokenVerifier
from enjournal.server.app import create_app
from enjournal.settings import Settings

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
ISSUER = "http://test/oidc"
# Synthetic test numbers (month + 80, Skatteetaten's Tenor series): valid, never a person's.
PIDS = {
    "kari": "02818029236",
    "lise": "15811893452",
    "per": "15811391023",
    "ola": "03857003259",
    "nora": "24929113086",
    "siri": "11867506030",
}
ADDRESS = [{"line": ["Storgata 1"], "postalCode": "0155", "city": "OSLO"}]


def org(id_, orgnr):
    return {
        "resourceType": "Organization",
        "id": id_,
        "name": id_,
        "identifier": [{"system": ORGNR, "value": orgnr}],
    }


def practitioner(id_, hpr):
    return {
        "resourceType": "Practitioner",
        "id": id_,
        "identifier": [{"system": HPR, "value": hpr}],
        "name": [{"family": id_}],
    }


def patient(id_, birth, gp=None, address=ADDRESS):
    p = {
        "resourceType": "Patient",
        "id": id_,
        "birthDate": birth,
        "address": address,
        "identifier": [{"system": FNR, "value": PIDS[id_]}],
        "name": [{"family": id_}],
    }
    if gp:
        p["generalPractitioner"] = [{"reference": gp}]
    return p


def observation(id_, patient_id):
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {
            "value": 72,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def medication_request(id_, patient_id):
    return {
        "resourceType": "MedicationRequest",
        "id": id_,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.whocc.no/atc", "code": "A10BA02"}]
        },
    }


def world() -> list[dict]:
    resources = [
        org("lk", "974760673"),
        org("hf", "983974899"),
        org("apotek", "981275721"),
        practitioner("gp", "1000001"),
        practitioner("nurse", "1000002"),
        practitioner("hdoc", "1000003"),
        {
            "resourceType": "PractitionerRole",
            "id": "gp-role",
            "practitioner": {"reference": "Practitioner/gp"},
            "organization": {"reference": "Organization/lk"},
        },
        patient("kari", "1980-01-02", "Practitioner/gp"),
        patient("lise", "2018-01-15", "Practitioner/gp"),
        patient("per", "2013-01-15", "Practitioner/gp"),
        patient("ola", "1970-05-03"),
        patient("nora", "1991-12-24"),
        patient("siri", "1975-06-11"),
        {
            "resourceType": "Encounter",
            "id": "ola-enc",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/ola"},
            "serviceProvider": {"reference": "Organization/hf"},
        },
        {
            "resourceType": "ServiceRequest",
            "id": "nora-ref",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/nora"},
            "performer": [{"reference": "Organization/hf"}],
        },
    ]
    for child in ("lise", "per"):
        resources.append(
            {
                "resourceType": "RelatedPerson",
                "id": f"{child}-mother",
                "patient": {"reference": f"Patient/{child}"},
                "identifier": [{"system": FNR, "value": PIDS["kari"]}],
                "relationship": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                "code": "MTH",
                            }
                        ]
                    }
                ],
            }
        )
    for name in PIDS:
        resources.append(observation(f"{name}-obs", name))
        resources.append(medication_request(f"{name}-mr", name))
    return resources


USERS = {
    "gp": DemoUser(
        "gp", "personnel", "Gina Lege", hpr="1000001", profession="LE", org_nr="974760673"
    ),
    "nurse": DemoUser(
        "nurse", "personnel", "Nils Sykepleier", hpr="1000002", profession="SP", org_nr="974760673"
    ),
    "hdoc": DemoUser(
        "hdoc", "personnel", "Hanne Overlege", hpr="1000003", profession="LE", org_nr="983974899"
    ),
    "farm": DemoUser(
        "farm", "personnel", "Frida Farmasøyt", hpr="1000004", profession="FA", org_nr="981275721"
    ),
    "kari": DemoUser("kari", "citizen", "Kari", pid=PIDS["kari"]),
    "siri": DemoUser("siri", "citizen", "Siri", pid=PIDS["siri"]),
}
SCOPES = {"personnel": "user/*.cruds", "citizen": "patient/*.cruds"}


@dataclass
class Secured:
    http: httpx.AsyncClient
    provider: Provider
    store: object
    security: Security
    tokens: dict = field(default_factory=dict)

    def token(self, who: str, scopes: str | None = None) -> str:
        if who in ("system", "register"):
            from enjournal.security.provider import issue_system_token

            scope = scopes or (
                "system/*.rs register/export" if who == "register" else "system/*.rs"
            )
            return issue_system_token(
                Client(f"{who}-client"), key=self.provider.config.key, issuer=ISSUER, scopes=scope
            )
        user = USERS[who]
        return self.provider.issue_token(user, scopes=scopes or SCOPES[user.kind])

    def headers(self, who: str, **extra) -> dict:
        return {"Authorization": f"Bearer {self.token(who)}", **extra}

    async def get(self, who: str, url: str, **headers):
        return await self.http.get(url, headers=self.headers(who, **headers))


@pytest.fixture
async def secured(store):
    async with store.transaction() as tx:
        for resource in world():
            await tx.update(resource, resource["id"])
    provider = Provider(ProviderConfig(issuer=ISSUER, key=generate(), users=list(USERS.values())))
    from enjournal.security.ratelimit import MemoryLimiter

    security = Security(
        verifier=TokenVerifier([provider.issuer_config()]),
        provider=provider,
        limiter=MemoryLimiter(),
    )
    await security.start(store)
    provider.users = {u.name: u for u in USERS.values()}
    settings = Settings(database_url="unused", public_url="http://test")
    app = create_app(settings, store, security)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Secured(http, provider, store, security)
    await security.stop()
