"""A secured e-resept world in-process, on both backends.

World (organisation and HPR numbers are valid-looking made-up values):
- legekontor "lk" (HER-id 81001) with GP "gp" (LE, HPR 2000001), who is GP of "kari" and
  "ola"; a midwife "jordmor" (JO) there; a hospital doctor "hdoc" (LE) at "hf";
- pharmacies "apotek1" and "apotek2" with pharmacists "farm1" (FA) and "farm2" (FA1);
- bandagist "bandasjist" (Organization.type utleverer-type|bandasjist) with "band";
- citizens "kari" and "ola" (citizen tokens);
- a small FEST catalogue written through the FEST mapping (fest/resources.py): warfarin,
  ibuprofen (high interaction with warfarin), morphine (A), diazepam (B), amoxicillin and
  clarithromycin (antibiotics), simvastatin (moderate with clarithromycin), a hormonal
  contraceptive, a bandage (forbruksmateriell).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest

from enjournal.security.keys import generate
from enjournal.security.provider import DemoUser, Provider, ProviderConfig
from enjournal.security.setup import Security
from enjournal.security.tokens import TokenVerifier
from enjournal.server.app import create_app
from enjournal.services.eresept.actors import BANDAGIST, DISPENSER_TYPE, PHARMACY
from enjournal.services.eresept.fest import resources as fest
from enjournal.settings import Settings
from tests.security.conftest import FNR, HPR, ORGNR, PIDS

ISSUER = "http://test/oidc"
HER = "urn:oid:2.16.578.1.12.4.1.2"
ORGS = {
    "lk": ("974760673", None),
    "hf": ("983974899", None),
    "apotek1": ("981275721", PHARMACY),
    "apotek2": ("925308293", PHARMACY),
    "bandasjist": ("908101111", BANDAGIST),
}

# varenr: (name, ATC, reseptgruppe, kind)
PRODUCTS = {
    "100001": ("Warfarin tab 2,5 mg", "B01AA03", "C", "legemiddel"),
    "100002": ("Ibuprofen tab 400 mg", "M01AE01", "C", "legemiddel"),
    "100003": ("Morfin tab 10 mg", "N02AA01", "A", "legemiddel"),
    "100004": ("Diazepam tab 5 mg", "N05BA01", "B", "legemiddel"),
    "100005": ("Amoksicillin kaps 500 mg", "J01CA04", "C", "legemiddel"),
    "100006": ("P-pille tab", "G03AA07", "C", "legemiddel"),
    "100007": ("Kompress steril 10x10", None, None, "forbruksmateriell"),
    "100008": ("Simvastatin tab 20 mg", "C10AA01", "C", "legemiddel"),
    "100009": ("Klaritromycin tab 500 mg", "J01FA09", "C", "legemiddel"),
}
WARFARIN, IBUPROFEN, MORPHINE, DIAZEPAM = "100001", "100002", "100003", "100004"
AMOXICILLIN, CONTRACEPTIVE, BANDAGE = "100005", "100006", "100007"
SIMVASTATIN, CLARITHROMYCIN = "100008", "100009"
# id: (relevans, side A ATCs, side B ATCs)
INTERACTIONS = {
    "1": ("1", ["B01AA03"], ["M01A"]),
    "2": ("2", ["C10AA01"], ["J01FA09"]),
}
HIGH_WARFARIN_NSAID = "fest-int-1"


def catalogue() -> list[dict]:
    out = []
    for varenr, (name, atc, group, kind) in PRODUCTS.items():
        record = {"varenr": varenr, "name": name, "kind": kind, "active": True}
        if atc:
            record["atc"] = {"code": atc, "display": name}
        if group:
            record["group"] = {"code": group, "display": group}
        out.append(fest.medication(record, {}, {}, {}, {}))
    for id_, (relevans, a, b) in INTERACTIONS.items():
        record = {
            "id": id_,
            "relevans": {"code": relevans, "display": relevans},
            "sides": [[{"code": c} for c in a], [{"code": c} for c in b]],
            "mechanism": "demo",
            "consequence": f"demo consequence {id_}",
            "management": "",
        }
        out.append(fest.interaction(record))
    return out


def org(id_: str) -> dict:
    orgnr, kind = ORGS[id_]
    out = {
        "resourceType": "Organization",
        "id": id_,
        "name": f"{id_} AS",
        "identifier": [{"system": ORGNR, "value": orgnr}],
    }
    if kind:
        out["type"] = [{"coding": [{"system": DISPENSER_TYPE, "code": kind}]}]
    return out


def practitioner(id_: str, hpr: str) -> dict:
    return {
        "resourceType": "Practitioner",
        "id": id_,
        "identifier": [{"system": HPR, "value": hpr}],
        "name": [{"family": id_}],
    }


def patient(id_: str, gp: str | None) -> dict:
    out = {
        "resourceType": "Patient",
        "id": id_,
        "birthDate": "1980-01-02",
        "identifier": [{"system": FNR, "value": PIDS[id_]}],
        "name": [{"family": id_}],
    }
    if gp:
        out["generalPractitioner"] = [{"reference": f"Practitioner/{gp}"}]
    return out


def world() -> list[dict]:
    return [
        *(org(k) for k in ORGS),
        practitioner("gp", "2000001"),
        practitioner("hdoc", "2000003"),
        {
            "resourceType": "PractitionerRole",
            "id": "gp-role",
            "practitioner": {"reference": "Practitioner/gp"},
            "organization": {"reference": "Organization/lk"},
        },
        patient("kari", "gp"),
        patient("ola", "gp"),
        patient("siri", None),
        *catalogue(),
    ]


def _personnel(name, hpr, profession, org_id, her_id=None):
    return DemoUser(
        name,
        "personnel",
        name,
        hpr=hpr,
        profession=profession,
        org_nr=ORGS[org_id][0],
        her_id=her_id,
    )


USERS = {
    "gp": _personnel("gp", "2000001", "LE", "lk", "81001"),
    "jordmor": _personnel("jordmor", "2000002", "JO", "lk"),
    "hdoc": _personnel("hdoc", "2000003", "LE", "hf"),
    "nurse": _personnel("nurse", "2000004", "SP", "lk"),
    "farm1": _personnel("farm1", "2000011", "FA", "apotek1"),
    "farm2": _personnel("farm2", "2000012", "FA1", "apotek2"),
    "band": _personnel("band", "2000021", None, "bandasjist"),
    "kari": DemoUser("kari", "citizen", "Kari", pid=PIDS["kari"]),
    "ola": DemoUser("ola", "citizen", "Ola", pid=PIDS["ola"]),
}
SCOPES = {"personnel": "user/*.cruds", "citizen": "patient/*.cruds"}


@dataclass
class World:
    http: httpx.AsyncClient
    provider: Provider
    store: object
    tokens: dict = field(default_factory=dict)

    def headers(self, who: str) -> dict:
        if who not in self.tokens:
            user = USERS[who]
            self.tokens[who] = self.provider.issue_token(user, scopes=SCOPES[user.kind])
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def post(self, who: str, path: str, body: dict | None = None):
        return await self.http.post(
            f"/fhir/{path}", json=body or params(), headers=self.headers(who)
        )

    async def get(self, who: str, path: str):
        return await self.http.get(f"/fhir/{path}", headers=self.headers(who))

    # ---- the chain's steps, as the tests use them ----------------------------------------

    async def prescribe(self, who="gp", expect=201, **kw) -> dict:
        response = await self.post(who, "MedicationRequest/$prescribe", prescribe_body(**kw))
        assert response.status_code == expect, response.text
        return response.json()

    async def lookup(self, who: str, patient_name: str, reference: str | None = None) -> list:
        extra = {"reference-number": reference} if reference else {}
        response = await self.post(
            who, "MedicationRequest/$dispensable", params(patient=PIDS[patient_name], **extra)
        )
        assert response.status_code == 200, response.text
        return [e["resource"] for e in response.json().get("entry", [])]

    async def step(self, who: str, id_: str, op: str, **kw):
        return await self.post(who, f"MedicationRequest/{id_}/${op}", params(**kw))


def params(**values) -> dict:
    """A Parameters resource; lists repeat a parameter; dicts with resourceType are
    resources; numbers valueDecimal; booleans valueBoolean; strings valueString."""
    parts = []
    for name, value in values.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, dict) and "resourceType" in v:
                parts.append({"name": name, "resource": v})
            elif isinstance(v, bool):
                parts.append({"name": name, "valueBoolean": v})
            elif isinstance(v, int | float):
                parts.append({"name": name, "valueDecimal": v})
            else:
                parts.append({"name": name, "valueString": v})
    return {"resourceType": "Parameters", "parameter": parts}


def prescription(
    varenr=IBUPROFEN,
    patient_id="kari",
    quantity=30,
    repeats=0,
    blue=False,
    validity_end=None,
    dispenser=None,
) -> dict:
    mr = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": f"Medication/fest-{varenr}"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "dosageInstruction": [{"text": "1 tablett 3 ganger daglig"}],
        "dispenseRequest": {
            "numberOfRepeatsAllowed": repeats,
            "quantity": {"value": quantity, "unit": "stk"},
        },
    }
    if blue:
        mr["extension"] = [
            {
                "url": "https://enjournal.no/fhir/StructureDefinition/reimbursement",
                "valueCoding": {"system": "urn:oid:2.16.578.1.12.4.1.1.7427", "code": "200"},
            }
        ]
    if validity_end:
        mr["dispenseRequest"]["validityPeriod"] = {"end": validity_end}
    if dispenser:
        mr["dispenseRequest"]["performer"] = {
            "identifier": {"system": ORGNR, "value": ORGS[dispenser][0]}
        }
    return mr


def prescribe_body(acknowledge=None, **kw) -> dict:
    extra = {"acknowledge": acknowledge} if acknowledge else {}
    return params(prescription=prescription(**kw), **extra)


def part(body: dict, name: str) -> list:
    return [p.get("resource", p) for p in body.get("parameter", []) if p["name"] == name]


@pytest.fixture
async def world_store(store):
    # No caches to drop: each app (``eresept``) builds its platform, with its own e-resept
    # state (services/eresept/state.py).
    async with store.transaction() as tx:
        for resource in world():
            await tx.update(resource, resource["id"])
    yield store


@pytest.fixture
async def eresept(world_store):
    provider = Provider(ProviderConfig(issuer=ISSUER, key=generate(), users=list(USERS.values())))
    from enjournal.security.ratelimit import MemoryLimiter

    security = Security(
        verifier=TokenVerifier([provider.issuer_config()]),
        provider=provider,
        limiter=MemoryLimiter(),
    )
    await security.start(world_store)
    provider.users = {u.name: u for u in USERS.values()}
    settings = Settings(database_url="unused", public_url="http://test")
    app = create_app(settings, world_store, security)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield World(http, provider, world_store)
    await security.stop()
