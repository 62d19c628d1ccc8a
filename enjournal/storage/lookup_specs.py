"""The values the store's lookups (``enjournal.storage.lookups``) take and give: what a lookup
found (``Found``), the parts of a combined lookup (``Current``, ``Referencing``,
``ReferencingIdentified``) and a date condition (``DateBefore``).

They are plain data, so any repository (the SQL store, an in-memory one) can answer them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Found:
    """One current resource a lookup found: its type, id, last update (epoch ms) and JSON."""

    type: str
    id: str
    last_updated: int
    content: bytes


@dataclass(frozen=True, slots=True)
class Current:
    """Part of a combined lookup: the current ``type/id`` (``GET [type]/[id]``).
    Answers ``[found]``, or ``[]`` if never stored or deleted."""

    type: str
    id: str


@dataclass(frozen=True, slots=True)
class Referencing:
    """Part of a combined lookup: the current ``type`` resources whose reference search
    parameter ``param`` names ``target_type/target_id`` (``[type]?[param]=[target]``), in no
    particular order."""

    type: str
    param: str
    target_type: str
    target_id: str


@dataclass(frozen=True, slots=True)
class ReferencingIdentified:
    """Part of a combined lookup: the current ``target_type`` resource with the identifier
    ``value`` in one of ``systems`` (any one, if several have it), then the current ``type``
    resources whose ``param`` names it (a patient by national id and its prescriptions).
    Answers ``[target, *referencing]`` (target first, the rest in no particular order), or
    ``[]`` if no resource has the identifier."""

    type: str
    param: str
    target_type: str
    systems: tuple[str, ...]
    value: str


#: What a combined lookup may be asked, part by part.
Spec = Current | Referencing | ReferencingIdentified


@dataclass(frozen=True, slots=True)
class DateBefore:
    """A condition on the date search parameter ``param`` against ``before`` (epoch ms): with
    ``ends`` the whole date (its precision range) ends before it (FHIR's ``eb`` prefix);
    without, the date starts before it (FHIR's ``lt``)."""

    param: str
    before: int
    ends: bool = True
