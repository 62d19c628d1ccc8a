"""The registry of FHIR operations (``$name``): http://hl7.org/fhir/R4/operations.html.

Services add their operations to their platform's ``Operations`` (``enjournal.bootstrap``)
instead of editing the router, so the router stays small and the CapabilityStatement lists
what is really registered.  The HTTP adapter hands each request its platform's table
(``FhirRequest.operations``).  An
operation is served at the system (``/$name``), type (``/Type/$name``) or instance
(``/Type/id/$name``) level, by GET and/or POST, inside one store transaction (a write
transaction when ``writes`` is set, or for the methods it names).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from enjournal.fhir.errors import Invalid

Handler = Callable[..., Awaitable[object]]


@dataclass(frozen=True)
class Operation:
    name: str  # without the $
    resource_type: str | None  # None: system level
    instance: bool  # served at /Type/id/$name (else /Type/$name or /$name)
    handler: Handler  # async (request, repo: GuardedRepository) -> FhirResponse
    methods: tuple[str, ...] = ("GET", "POST")
    writes: bool | tuple[str, ...] = False  # all methods write, or the methods that do
    definition: str | None = None  # canonical URL of its OperationDefinition

    def writes_for(self, method: str) -> bool:
        """Whether a request by ``method`` needs a write transaction (a GET that only reads
        should not hold a write transaction's connection and locks)."""
        return method in self.writes if isinstance(self.writes, tuple) else self.writes


class Operations:
    """The operations one platform serves (``enjournal.bootstrap`` builds it, services add
    theirs at registration).  Keyed by level, so adding one again replaces it: idempotent."""

    def __init__(self) -> None:
        self._table: dict[tuple[str | None, str, bool], Operation] = {}

    def add(self, operation: Operation) -> Operation:
        self._table[(operation.resource_type, operation.name, operation.instance)] = operation
        return operation

    def remove(self, resource_type: str | None, name: str, instance: bool) -> None:
        self._table.pop((resource_type, name, instance), None)

    def find(self, resource_type: str | None, name: str, instance: bool) -> Operation | None:
        return self._table.get((resource_type, name, instance))

    def all(self) -> list[Operation]:
        return list(self._table.values())


NONE = Operations()  # what a request made outside a platform sees: no operations


def of(request) -> Operations:
    """The operations the platform that received ``request`` serves."""
    return getattr(request, "operations", None) or NONE


def parameters(request, names: tuple[str, ...] = ()) -> dict[str, object]:
    """An operation's input: query parameters for GET, a Parameters resource for POST
    (``valueX`` or ``resource`` parts), as one dict name -> value (lists when repeated).
    Invalid (400) for a POST body that is not a Parameters resource of the right shape."""
    out: dict[str, object] = {}

    def put(name: str, value: object) -> None:
        if name in out:
            existing = out[name]
            out[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            out[name] = value

    for name, value in request.params:
        put(name, value)
    if request.method == "POST" and request.body:
        body = request.json()
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise Invalid("POST to an operation needs a Parameters resource")
        for part in parameter_parts(body):
            value = part.get("resource")
            if value is None:
                value = next((v for k, v in part.items() if k.startswith("value")), None)
            if value is None and "part" in part:
                value = part["part"]
            put(part["name"], value)
    return out


def parameter_parts(body: dict, where: str = "Parameters.parameter") -> list[dict]:
    """The ``parameter`` list of a Parameters resource (or the ``part`` list of one of its
    parameters), checked all the way down: a list of objects, each with a string ``name``,
    whose ``part`` (if any) is such a list and whose ``resource`` (if any) is an object.
    Invalid (400) otherwise, so no operation reads a value of a shape it does not expect."""
    parts = body.get("parameter" if where == "Parameters.parameter" else "part", [])
    if not isinstance(parts, list):
        raise Invalid(f"{where} must be a list of parameters", expression=where)
    for n, part in enumerate(parts):
        here = f"{where}[{n}]"
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise Invalid(f"{here} must be an object with a name", expression=here)
        if "resource" in part and not isinstance(part["resource"], dict):
            raise Invalid(f"{here}.resource must be a resource", expression=here)
        if "part" in part:
            parameter_parts(part, f"{here}.part")
    return parts
