"""What a loaded code system is made of, independent of its source format."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Designation:
    value: str
    language: str | None = None  # BCP-47, e.g. "nb", "nn", "en"
    use: str | None = None  # a SNOMED designation use code, e.g. "900000000000013009"


@dataclass
class Concept:
    code: str
    display: str | None = None
    designations: list[Designation] = field(default_factory=list)
    # property code -> values (str for code/string properties, bool/int/float otherwise)
    properties: dict[str, list[object]] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)  # codes of direct is-a parents
    inactive: bool = False


@dataclass
class CodeSystemDraft:
    """A code system on its way into the store.  ``concepts`` may be a generator, so a large
    release streams through without being held in memory."""

    url: str
    version: str | None
    name: str
    title: str | None = None
    publisher: str | None = None
    copyright: str | None = None
    language: str | None = None
    hierarchy_meaning: str | None = "is-a"
    # FHIR CodeSystem.content: "complete", or "fragment" for an extract (a code missing
    # from a fragment may still exist, so write validation does not refuse it).
    content: str = "complete"
    properties: list[tuple[str, str]] = field(default_factory=list)  # (code, FHIR type)
    concepts: Iterable[Concept] = ()
