"""The terminology store: concept tables in the main database and the queries behind the
FHIR terminology operations (http://hl7.org/fhir/R4/terminology-service.html).

Tables (Migration 3, ``enjournal.storage.schema``): ``tx_code_systems`` (one row per loaded
url + version), ``tx_concepts``, ``tx_designations``, ``tx_properties``, ``tx_parents``,
``tx_closure`` (every ancestor/descendant pair, self included), ``tx_words`` (normalised
words of displays and designations, and the normalised code, for the $expand text filter)
and ``tx_concept_map`` (indexed groups of large ConceptMaps).

Everything runs on the caller's transaction (``tx`` a ``Transaction``, ``conn`` its
``tx.conn``): a load that fails half-way leaves nothing behind.

ValueSets and ConceptMaps are ordinary FHIR resources: the operations read them by id or
url through the resource store, so a ValueSet PUT through the API is usable at once.  A
ValueSet's ``compose`` becomes one SQL statement (includes UNION-ed, excludes EXCEPT-ed),
evaluated in the database, so an is-a filter over SNOMED CT never loads the hierarchy.

Text filter semantics ($expand ``filter``): the filter is normalised (case and accents
folded, see ``enjournal.fhir.text.normalize``) and split on whitespace; a concept matches
when every token is a prefix of a word of its display or of one of its designations, or of
its code ("dia mel" matches "Diabetes mellitus"; "e11" matches E11 and E11.9).

One module per job: ``code_systems`` (the loaded systems), ``loading`` (concepts into the
tables) and ``values`` (their stored forms), ``concepts`` ($lookup, $validate-code,
$subsumes), ``value_sets`` (finding a ValueSet, compiling its compose) and ``expansion``
($expand, $validate-code against a value set), ``concept_maps`` (storing, $translate),
``resources`` (canonical urls, the resource store).  This package re-exports their names.
"""

from __future__ import annotations

from enjournal.terminology.store.code_systems import (
    CodeSystemInfo,
    code_systems,
    find_code_system,
    require_code_system,
    system_label,
)
from enjournal.terminology.store.concept_maps import (
    Translation,
    find_concept_map,
    save_concept_map,
    translate,
)
from enjournal.terminology.store.concepts import (
    LookupResult,
    Validation,
    code_exists,
    lookup,
    subsumes,
    validate_code,
)
from enjournal.terminology.store.expansion import (
    MAX_EXPANSION,
    TooCostly,
    expand,
    validate_vs_code,
)
from enjournal.terminology.store.loading import BATCH, COMPLETE_LIMIT, save_code_system
from enjournal.terminology.store.resources import split_canonical
from enjournal.terminology.store.value_sets import find_value_set
from enjournal.terminology.store.values import split_use, typed_value

# The names terminology.operations has used since the store was one module.
_label = system_label
_split_use = split_use
_typed_value = typed_value

__all__ = [
    "BATCH",
    "COMPLETE_LIMIT",
    "MAX_EXPANSION",
    "CodeSystemInfo",
    "LookupResult",
    "TooCostly",
    "Translation",
    "Validation",
    "code_exists",
    "code_systems",
    "expand",
    "find_code_system",
    "find_concept_map",
    "find_value_set",
    "lookup",
    "require_code_system",
    "save_code_system",
    "save_concept_map",
    "split_canonical",
    "split_use",
    "subsumes",
    "system_label",
    "translate",
    "typed_value",
    "validate_code",
    "validate_vs_code",
]
