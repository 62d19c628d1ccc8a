"""The hub's in-process FHIR client: every read and write of the follow-up (readings,
care plans, alerts) goes through ``Platform.handle`` as the hub's system client, so the
API's policy, guard hooks and audit apply to it as to any other client (no side door)."""

from __future__ import annotations

import orjson

from enjournal.fhir import jsonio
from enjournal.rest.message import FhirRequest
from enjournal.security.principal import Principal

HUB_CLIENT = "vkp-hub"
HUB_SOURCE = "urn:enjournal:vkp-hub"  # meta.source of what the hub stores
HEADERS = {"content-type": "application/fhir+json", "prefer": "return=minimal"}
# What the hub does: write readings and alerts, read what its rules need.
HUB_SCOPES = frozenset(
    {
        "system/Observation.crs",
        "system/Patient.rs",
        "system/Device.rs",
        "system/CarePlan.rs",
        "system/Goal.rs",
        "system/DetectedIssue.crus",
        "system/Task.crus",
    }
)


def hub_principal(org_nr: str | None = None) -> Principal:
    """The hub's system client (VKP is a HelseID system client in production)."""
    return Principal("system", HUB_CLIENT, HUB_CLIENT, HUB_SCOPES, "VKP-knutepunkt", org_nr=org_nr)


class Hub:
    def __init__(self, platform, principal: Principal | None = None):
        self.platform = platform
        self.principal = principal or hub_principal()

    async def call(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]] | None = None,
        body: dict | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict]:
        request = FhirRequest(
            method,
            [p for p in path.split("/") if p],
            params or [],
            {**HEADERS, **(headers or {})},
            jsonio.dumps(body) if body is not None else b"",
            self.platform.settings.fhir_base,
        )
        # a platform without security (tests of the FHIR core) takes no principal
        principal = self.principal if self.platform.security is not None else None
        response = await self.platform.handle(request, principal)
        return response.status, orjson.loads(response.body) if response.body else {}

    async def transaction(self, entries: list[dict]) -> tuple[int, dict]:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        return await self.call("POST", "", body=bundle)

    async def search(self, type_: str, params: list[tuple[str, str]]) -> list[dict]:
        """The matches of a search (every page is not needed: callers bound ``_count``)."""
        status, bundle = await self.call("GET", type_, params)
        if status >= 400:
            raise LookupError(f"{type_} search refused ({status}): {diagnostics(bundle)}")
        return [
            e["resource"]
            for e in bundle.get("entry") or ()
            if (e.get("search") or {}).get("mode", "match") == "match"
        ]


def diagnostics(outcome: dict) -> str:
    issues = outcome.get("issue") or [{}]
    return str(issues[0].get("diagnostics") or "refused")
