"""FHIR search: parsing request parameters into a ``SearchQuery`` (executed by
``enjournal.storage.search_sql``)."""

from enjournal.fhir.search.parse import parse_search
from enjournal.fhir.search.query import (
    DEFAULT_COUNT,
    MAX_COUNT,
    Chain,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    Include,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
)

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "Chain",
    "CompositeValue",
    "Criterion",
    "DateValue",
    "Has",
    "Include",
    "NumberValue",
    "QuantityValue",
    "ReferenceValue",
    "SearchQuery",
    "SortKey",
    "StringValue",
    "TokenValue",
    "UriValue",
    "parse_search",
]
