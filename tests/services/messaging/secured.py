"""A secured server on the messaging test world, for the tests that go through HTTP with
tokens (test_access, test_attack_messaging): the GP, the hospital doctor and a stranger;
Kari on the GP's list."""

from __future__ import annotations

import httpx
import orjson

from enjournal.bootstrap import compose, open_platform
from enjournal.fhir.norwegian_ids import OID_HPR
from enjournal.security.keys import generate
from enjournal.security.provider import DemoUser, Provider, ProviderConfig
from enjournal.security.ratelimit import MemoryLimiter
from enjournal.security.setup import Security
from enjournal.security.tokens import TokenVerifier
from enjournal.server.app import create_app
from enjournal.services.messaging.hub import hub_of
from enjournal.settings import Settings
from tests.services.messaging import world

ISSUER = "http://test/oidc"
USERS = {
    "gp": DemoUser("gp", "personnel", "Gina Lege", hpr="1000001", profession="LE",
                   org_nr=world.GP_ORG, her_id=world.GP_HER),
    "hdoc": DemoUser("hdoc", "personnel", "Hanne Overlege", hpr="1000003", profession="LE",
                     org_nr=world.HOSPITAL_ORG),
    "stranger": DemoUser("stranger", "personnel", "Sara Fremmed", hpr="1000009",
                         profession="LE", org_nr="999999999"),
    "kari": DemoUser("kari", "citizen", "Kari", pid=world.KARI),
}  # fmt: skip


def staff() -> list[dict]:
    """The GP and the hospital doctor in the directory, each with a role at their place."""
    out: list[dict] = []
    for name, hpr, org in (("gp", "1000001", "gp"), ("hdoc", "1000003", "hospital")):
        identifier = [{"system": OID_HPR, "value": hpr}]
        out.append(
            {"resourceType": "Practitioner", "id": name, "identifier": identifier,
             "name": [{"family": name}]}
        )  # fmt: skip
        out.append(
            {"resourceType": "PractitionerRole", "id": f"{name}-role",
             "practitioner": {"reference": f"Practitioner/{name}"},
             "organization": {"reference": f"Organization/{org}"}}
        )  # fmt: skip
    return out


async def open_site(store, settings: Settings | None = None):
    """The world, its staff and a secured server on ``store``: (http, provider, platform)."""
    settings = settings or Settings(database_url="unused", public_url="http://test")
    await world.load(store)
    async with store.transaction() as tx:
        for resource in staff():
            await tx.create(resource, id_=resource["id"])
        kari = orjson.loads((await tx.read("Patient", "kari")).content)
        kari["generalPractitioner"] = [{"reference": "Practitioner/gp"}]
        await tx.update(kari, "kari")
    provider = Provider(ProviderConfig(issuer=ISSUER, key=generate(), users=list(USERS.values())))
    security = Security(
        verifier=TokenVerifier([provider.issuer_config()]),
        provider=provider,
        limiter=MemoryLimiter(),
    )
    await security.start(store)
    platform = await open_platform(compose(settings, security=security, serving=True), store)
    app = create_app(settings, platform=platform)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test"), provider, platform


async def close_site(http, platform) -> None:
    await http.aclose()
    await hub_of(platform).close()
    await platform.security.stop()


def auth(provider, who: str) -> dict:
    user = USERS[who]
    scopes = "user/*.cruds" if user.kind == "personnel" else "patient/*.cruds"
    return {"Authorization": f"Bearer {provider.issue_token(user, scopes=scopes)}"}


async def post_json(http, provider, who: str, path: str, body: object):
    headers = {**auth(provider, who), "content-type": "application/fhir+json"}
    return await http.post(path, content=orjson.dumps(body), headers=headers)


async def send(http, provider, who: str, bundle: dict):
    return await post_json(http, provider, who, "/fhir/$process-message", bundle)
