"""A secured server with the kjernejournal service, on SQLite and PostgreSQL.

The world of tests/security/conftest.py (GP "gp" with patient "kari" and her children
"lise" (8) and "per" (13) on the list, hospital doctor "hdoc", nurse, pharmacist, patient
"siri" with no relation to anyone), plus:
- "bdoc", a second hospital doctor (HPR 1000005), whom kari may block;
- an Encounter of kari at the hospital, so both hospital doctors treat her;
- citizen tokens for kari, her children lise and per, and siri.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
import pytest

from enjournal.security.keys import generate
from enjournal.security.provider import DemoUser, Provider, ProviderConfig
from enjournal.security.ratelimit import MemoryLimiter
from enjournal.security.setup import Security
from enjournal.security.tokens import TokenVerifier
from enjournal.server.app import create_app
from enjournal.settings import Settings
from tests.security.conftest import ISSUER, PIDS, SCOPES, USERS, Secured, practitioner, world

KJ = "http://enjournal.no/fhir/CodeSystem/kjernejournal"
SOURCE = "http://nhn.no/kj/fhir/StructureDefinition/KjSourceOfInformation"
ICD10 = "http://hl7.org/fhir/sid/icd-10"

KJ_USERS = {
    **USERS,
    "bdoc": DemoUser(
        "bdoc", "personnel", "Bjørn Blokkert", hpr="1000005", profession="LE", org_nr="983974899"
    ),
    "lise": DemoUser("lise", "citizen", "Lise", pid=PIDS["lise"]),
    "per": DemoUser("per", "citizen", "Per", pid=PIDS["per"]),
}


def kj_world() -> list[dict]:
    resources = world()
    resources.append(practitioner("bdoc", "1000005"))
    resources.append(
        {
            "resourceType": "Encounter",
            "id": "kari-enc",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/kari"},
            "serviceProvider": {"reference": "Organization/hf"},
            "period": {"start": "2025-03-01"},
        }
    )
    return resources


class KjClient(Secured):
    def headers(self, who: str, basis: str | None = None, reason: str | None = None, **extra):
        headers = {"Authorization": f"Bearer {self.token(who)}", **extra}
        if basis:
            headers["nhn-access-basis"] = basis
        if reason:
            headers["nhn-access-reason"] = reason
        return headers

    def token(self, who: str, scopes: str | None = None) -> str:
        user = KJ_USERS[who]
        return self.provider.issue_token(user, scopes=scopes or SCOPES[user.kind])

    async def summary(self, who: str, patient: str, basis=None, reason=None):
        return await self.http.get(
            f"/fhir/Patient/{patient}/$summary", headers=self.headers(who, basis, reason)
        )

    async def register(self, who: str, patient: str, resource: dict, basis="UNNTAK"):
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": resource}],
        }
        return await self.http.post(
            f"/fhir/Patient/{patient}/$kj-critical-info",
            json=body,
            headers=self.headers(who, basis),
        )

    async def remove(self, who: str, patient: str, ref: str, basis="UNNTAK"):
        body = {"resourceType": "Parameters", "parameter": [{"name": "remove", "valueString": ref}]}
        return await self.http.post(
            f"/fhir/Patient/{patient}/$kj-critical-info",
            json=body,
            headers=self.headers(who, basis),
        )

    async def own(self, who: str, patient: str, resource=None, remove=None):
        """``$kj-own-registration``: add or change ``resource``, or ``remove`` a reference."""
        param = (
            {"name": "remove", "valueString": remove}
            if remove
            else {"name": "resource", "resource": resource}
        )
        return await self.http.post(
            f"/fhir/Patient/{patient}/$kj-own-registration",
            json={"resourceType": "Parameters", "parameter": [param]},
            headers=self.headers(who),
        )

    async def privacy(self, who: str, patient: str, **settings):
        params = []
        for name, value in settings.items():
            for item in value if isinstance(value, list) else [value]:
                key = "valueBoolean" if isinstance(item, bool) else "valueString"
                params.append({"name": name, key: item})
        return await self.http.post(
            f"/fhir/Patient/{patient}/$kj-privacy",
            json={"resourceType": "Parameters", "parameter": params},
            headers=self.headers(who),
        )

    async def status(self, who: str, nin: str):
        body = {"resourceType": "Parameters", "parameter": [{"name": "nin", "valueString": nin}]}
        response = await self.http.post("/fhir/$kj-status", json=body, headers=self.headers(who))
        return response

    async def jwks(self) -> dict:
        response = await self.http.get("/fhir/$document-signing-key", headers=self.headers("gp"))
        assert response.status_code == 200, response.text
        return response.json()


def allergy(substance="Penicillin", atc="J01CE02", criticality="high") -> dict:
    return {
        "resourceType": "AllergyIntolerance",
        "extension": [
            {
                "url": SOURCE,
                "valueCoding": {"code": "1", "display": "Resultat av tester / analyser"},
            }
        ],
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "confirmed",
                }
            ]
        },
        "category": ["medication"],
        "criticality": criticality,
        "code": {
            "coding": [{"system": "http://www.whocc.no/atc", "code": atc, "display": substance}]
        },
    }


def condition(code="I21", display="Akutt hjerteinfarkt", category="kritisk-tilstand") -> dict:
    return {
        "resourceType": "Condition",
        "extension": [{"url": SOURCE, "valueCoding": {"code": "2", "display": "Pasientjournal"}}],
        "category": [{"coding": [{"system": KJ, "code": category}]}],
        "code": {"coding": [{"system": ICD10, "code": code, "display": display}]},
    }


def flag(text="Ikke gjenoppliv (HLR minus)", until="2099-12-31") -> dict:
    return {
        "resourceType": "Flag",
        "extension": [{"url": SOURCE, "valueCoding": {"code": "2", "display": "Pasientjournal"}}],
        "status": "active",
        "category": [{"coding": [{"system": KJ, "code": "livsforlengende"}]}],
        "code": {"text": text},
        "period": {"start": "2025-01-01", "end": until},
    }


@asynccontextmanager
async def kj_app(store, tmp_path, users=KJ_USERS):
    """The kjernejournal test world on a secured app: (HTTP client, provider, security)."""
    async with store.transaction() as tx:
        for resource in kj_world():
            await tx.update(resource, resource["id"])
    provider = Provider(ProviderConfig(issuer=ISSUER, key=generate(), users=list(users.values())))
    security = Security(
        verifier=TokenVerifier([provider.issuer_config()]),
        provider=provider,
        limiter=MemoryLimiter(),
    )
    await security.start(store)
    provider.users = dict(users)  # start() offers the demo population's users
    settings = Settings(
        database_url="unused",
        public_url="http://test",
        signing_key_file=str(tmp_path / "document-key.json"),
        jobs=False,
    )
    app = create_app(settings, store, security)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, provider, security
    finally:
        await security.stop()


@pytest.fixture
async def kj(store, tmp_path):
    async with kj_app(store, tmp_path) as (http, provider, security):
        yield KjClient(http, provider, store, security)
