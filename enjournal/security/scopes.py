"""SMART App Launch scopes: what a token's ``scope`` lets the caller do to a resource type.

SMART v2 (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)::

    patient/Observation.rs       context/type.permissions (c r u d s subset, in order)
    user/*.cruds                 ``*`` = every resource type
    system/Patient.rs            backend services, no end user

SMART v1 forms are accepted and translated: ``.read`` → ``rs``, ``.write`` → ``cud``,
``.*`` → ``cruds``.

Granular v2 scopes with a query (``patient/Observation.rs?category=laboratory``) only grant
access to the matching subset, which this module cannot check; :func:`allows` therefore
ignores them (never over-grants).  They are still parsed, so a policy that can evaluate the
query may use :func:`parse_scope` itself.

Other scopes (``openid``, ``fhirUser``, ``launch/patient``, ``offline_access``, HelseID scopes)
are not resource scopes and are ignored here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Context = Literal["patient", "user", "system"]
ACTIONS = "cruds"
CONTEXTS: tuple[Context, ...] = ("patient", "user", "system")
# broadest first: a system grant is not narrowed to a patient, a user grant is the user's
_BREADTH = {"system": 0, "user": 1, "patient": 2}

_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{0,63})\.([a-z*]+)(\?[^\s]*)?$")


@dataclass(frozen=True)
class Scope:
    context: Context
    resource_type: str  # a FHIR resource type or "*"
    actions: frozenset[str]  # subset of c r u d s
    query: str | None = None  # granular v2 restriction, without the "?"
    raw: str = ""

    def grants(self, resource_type: str, action: str) -> bool:
        """True when this (unrestricted) scope allows ``action`` on ``resource_type``."""
        return (
            self.query is None
            and action in self.actions
            and self.resource_type in ("*", resource_type)
        )

    def covers(self, other: Scope) -> bool:
        """True when everything ``other`` allows, this scope allows too."""
        return (
            self.context == other.context
            and self.resource_type in ("*", other.resource_type)
            and other.actions <= self.actions
            and (self.query is None or self.query == other.query)
        )


def parse_scope(text: str) -> Scope | None:
    """A resource scope, or None for anything else (``openid``, malformed, ...)."""
    m = _SCOPE.match(text)
    if not m:
        return None
    context, resource_type, perms, query = m.groups()
    if perms in _V1:
        if query:  # v1 scopes have no query form
            return None
        actions = frozenset(_V1[perms])
    else:
        # v2: non-empty, no repeats, in the canonical order c r u d s
        positions = [ACTIONS.find(ch) for ch in perms]
        if -1 in positions or positions != sorted(set(positions)):
            return None
        actions = frozenset(perms)
    return Scope(context, resource_type, actions, query[1:] if query else None, text)  # type: ignore[arg-type]


def split(scopes: str | Iterable[str] | None) -> list[str]:
    """Scope strings from a space-separated string or an iterable (tokens use both)."""
    if not scopes:
        return []
    if isinstance(scopes, str):
        return scopes.split()
    if not isinstance(scopes, list | tuple | set | frozenset):
        return []
    return [s for item in scopes if isinstance(item, str) for s in item.split()]


def parse_scopes(scopes: str | Iterable[str] | None) -> list[Scope]:
    if isinstance(scopes, frozenset | tuple | str):
        return list(_parse_cached(scopes))
    return [s for s in (parse_scope(t) for t in split(scopes)) if s is not None]


@lru_cache(maxsize=1024)
def _parse_cached(scopes: frozenset | tuple | str) -> tuple[Scope, ...]:
    # A token's scopes are parsed on every request it makes: remember them.
    return tuple(s for s in (parse_scope(t) for t in split(scopes)) if s is not None)


def granting_contexts(
    scopes: str | Iterable[str] | None, resource_type: str, action: str
) -> frozenset[Context]:
    """Every context (patient / user / system) whose scopes allow ``action`` on the type."""
    _check_action(action)
    return frozenset(s.context for s in parse_scopes(scopes) if s.grants(resource_type, action))


def grant(scopes: str | Iterable[str] | None, resource_type: str, action: str) -> Context | None:
    """The broadest context that allows ``action`` on ``resource_type``, or None.

    ``system`` beats ``user`` beats ``patient``: with ``patient`` the caller is limited to
    the launch patient's compartment, with ``user`` to what the user may see, with ``system``
    to what the client is trusted with.
    """
    found = granting_contexts(scopes, resource_type, action)
    return min(found, key=_BREADTH.__getitem__) if found else None


def allows(scopes: str | Iterable[str] | None, resource_type: str, action: str) -> bool:
    """Whether the scopes allow ``action`` (one of c r u d s) on ``resource_type``."""
    return grant(scopes, resource_type, action) is not None


def covered(requested: str, allowed: Iterable[str]) -> bool:
    """Whether ``requested`` is within one of the ``allowed`` scopes (equal, or narrower)."""
    allowed = list(allowed)
    if requested in allowed:
        return True
    want = parse_scope(requested)
    if want is None:
        return False
    return any(a is not None and a.covers(want) for a in map(parse_scope, allowed))


REGISTER = "register"  # a register's client: "register" or "register/<name>" (e.g. register/kpr)


def register_scopes(scopes: Iterable[str]) -> list[str]:
    """The register scopes among ``scopes``: they mark a register's client, whose reads go
    only through the export operations (policy rule 1)."""
    return [s for s in scopes if s == REGISTER or s.startswith(REGISTER + "/")]


def is_register_client(scopes: Iterable[str]) -> bool:
    return bool(register_scopes(scopes))


def _check_action(action: str) -> None:
    if len(action) != 1 or action not in ACTIONS:
        raise ValueError(f"action must be one of c r u d s, not {action!r}")
