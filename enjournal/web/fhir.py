"""A web site's FHIR client: every page reads and writes through ``Platform.handle``, the
path the HTTP API takes (token verification, operations, policy, audit), in process.

A site has no side door: it holds the user's access token and nothing else, each call
verifies that token like a bearer token on the API, and what the API refuses the page
cannot show.
"""

from __future__ import annotations

from typing import Any

import orjson

from enjournal.fhir.errors import Unauthorized
from enjournal.rest.message import FhirRequest


class FhirError(Exception):
    """The API refused (4xx): ``status`` and the OperationOutcome's first diagnostics."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class FhirClient:
    """The API as the user of ``access_token`` sees it (``platform``: the Platform)."""

    def __init__(self, platform, access_token: str):
        self.platform = platform
        self.access_token = access_token
        self.base = platform.settings.fhir_base

    async def get(self, path: str, params: list[tuple[str, str]] | None = None) -> dict:
        return await self.call("GET", path, params or [])

    async def post(self, path: str, body: dict) -> dict:
        return await self.call("POST", path, [], body)

    async def operation(self, path: str, **parameters: Any) -> dict:
        """POST ``path`` (an operation) with a Parameters body built from ``parameters``
        (a list value repeats the parameter; None leaves it out)."""
        return await self.post(path, parameters_of(parameters))

    async def call(
        self, method: str, path: str, params: list[tuple[str, str]], body: dict | None = None
    ) -> dict:
        principal = await self._principal()
        request = FhirRequest(
            method,
            [p for p in path.split("/") if p],
            params,
            {"content-type": "application/fhir+json", "accept": "application/fhir+json"},
            orjson.dumps(body) if body is not None else b"",
            self.base,
        )
        response = await self.platform.handle(request, principal)
        answer = orjson.loads(response.body) if response.body else {}
        if response.status >= 400:
            raise FhirError(response.status, _diagnostics(answer))
        return answer

    async def _principal(self):
        try:
            return await self.platform.security.verifier.verify(self.access_token)
        except Unauthorized as error:
            raise FhirError(401, error.message) from None


def parameters_of(values: dict[str, Any]) -> dict:
    """A Parameters resource: ``under_scores`` become ``hyphens``, a list repeats, None is
    left out; bool, int, a resource, a reference (dict) or text."""
    parts = []
    for name, value in values.items():
        for one in value if isinstance(value, list) else [value]:
            if one is not None:
                parts.append({"name": name.replace("_", "-"), **_value(one)})
    return {"resourceType": "Parameters", "parameter": parts}


def _value(value: Any) -> dict:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, dict) and "resourceType" in value:
        return {"resource": value}
    if isinstance(value, dict):
        return {"valueReference": value}
    return {"valueString": str(value)}


def _diagnostics(outcome: dict) -> str:
    for issue in outcome.get("issue") or ():
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
        if text:
            return str(text)
    return "the request was refused"


def entries(bundle: dict, resource_type: str | None = None) -> list[dict]:
    """The resources of a Bundle (of one type, when given)."""
    found = [e.get("resource") or {} for e in bundle.get("entry") or ()]
    return [r for r in found if resource_type is None or r.get("resourceType") == resource_type]
