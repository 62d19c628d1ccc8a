"""The terminology tables in the main database and their SQL; the terminology service
(``enjournal.terminology``) reaches them only through these functions, each taking the
caller's transaction ``tx`` (a load that fails half-way leaves nothing behind).

Tables (Migration 3, ``enjournal.storage.schema``): ``tx_code_systems`` (one row per loaded
url + version), ``tx_concepts``, ``tx_designations``, ``tx_properties``, ``tx_parents``,
``tx_closure`` (every ancestor/descendant pair, self included), ``tx_words`` (normalised
words of displays and designations, and the normalised code, for the $expand text filter)
and ``tx_concept_map`` (indexed groups of large ConceptMaps).

A ValueSet's ``compose`` becomes one SQL statement (``compose``: includes UNION-ed,
excludes EXCEPT-ed), evaluated in the database, so an is-a filter over SNOMED CT never
loads the hierarchy.

Text filter semantics ($expand ``filter``): the filter is normalised (case and accents
folded, see ``enjournal.fhir.text.normalize``) and split on whitespace; a concept matches
when every token is a prefix of a word of its display or of one of its designations, or of
its code ("dia mel" matches "Diabetes mellitus"; "e11" matches E11 and E11.9).

One module per table group: ``code_systems`` (the loaded systems), ``loading`` (concepts
into the tables), ``concepts`` ($lookup, $validate-code, $subsumes), ``compose`` and
``expansion`` (a value set's concepts), ``concept_maps`` (the $translate index).  This
package re-exports the questions about code systems and concepts.
"""

from __future__ import annotations

from enjournal.storage.terminology.code_systems import (
    CodeSystemInfo,
    code_systems,
    find_code_system,
    require_code_system,
    system_label,
)
from enjournal.storage.terminology.concepts import (
    LookupResult,
    Validation,
    code_exists,
    lookup,
    subsumes,
    validate_code,
)

__all__ = [
    "CodeSystemInfo",
    "LookupResult",
    "Validation",
    "code_exists",
    "code_systems",
    "find_code_system",
    "lookup",
    "require_code_system",
    "subsumes",
    "system_label",
    "validate_code",
]
