"""FhirRequest and FhirResponse: plain values passed between the HTTP adapter and the router."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Invalid, Issue
from enjournal.storage.base import StoredResource


@dataclass
class FhirRequest:
    method: str
    path: list[str]  # segments after the FHIR base, e.g. ["Patient", "123", "_history", "2"]
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    base_url: str = "http://localhost/fhir"
    # The access guard of an authenticated request (enjournal.security.guard.Guard), or
    # None when the server runs without security (tests of the FHIR core, benchmarks).
    guard: Any = None
    # CapabilityStatement.rest.security of this server (enjournal.security.smart); None when
    # the request comes from inside the process, where no security applies.
    security: dict | None = None
    # The operations of the platform serving the request (enjournal.rest.operations.Operations);
    # None: no operations (a request made outside a platform).
    operations: Any = None
    _json: Any = None

    @property
    def context(self) -> Any:
        """The request's access context (enjournal.security.context.AccessContext: principal,
        access basis, audit trail), kept by its guard; None without security."""
        return None if self.guard is None else self.guard.context

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body parsed as JSON; Invalid for a missing or malformed body."""
        if self._json is None:
            if not self.body:
                raise Invalid("the request needs a body")
            try:
                self._json = jsonio.loads_input(self.body)
            except jsonio.Refused as error:
                raise Invalid(f"the body is refused: {error}") from None
            except jsonio.JsonError as error:
                raise Invalid(f"the body is not valid JSON: {error}") from None
        return self._json

    def resource(self) -> dict:
        body = self.json()
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise Invalid("the body must be a FHIR resource with a resourceType")
        return body

    def prefer(self, key: str) -> str | None:
        """One token of the Prefer header, e.g. prefer("return") -> "minimal"."""
        for part in (self.header("prefer") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name.strip() == key:
                return value.strip().strip('"')
        return None

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


@dataclass
class FhirResponse:
    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stored: StoredResource | None = None  # the resource version this response is about

    @classmethod
    def of(cls, value: dict, status: int = 200, **headers: str) -> FhirResponse:
        return cls(status, jsonio.dumps(value), dict(headers))


def etag(version: int) -> str:
    return f'W/"{version}"'


def http_date(ms: int) -> str:
    return formatdate(ms / 1000, usegmt=True)


def version_headers(stored: StoredResource, base_url: str, *, location: bool) -> dict[str, str]:
    headers = {"ETag": etag(stored.version), "Last-Modified": http_date(stored.last_updated)}
    if location:
        headers["Location"] = f"{base_url}/{stored.type}/{stored.id}/_history/{stored.version}"
    return headers


def outcome(issues: list[Issue]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def info_outcome(message: str) -> dict:
    return outcome([Issue("information", "informational", message)])


def parse_etag(value: str | None) -> int | None:
    """``W/"3"`` or ``"3"`` or ``3`` -> 3."""
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit()):
        raise Invalid(f"bad version in ETag header: {value!r}")
    return int(text)
