"""The terminology service: code systems, value sets and concept maps, like Snowstorm or
Ontoserver provide, inside enjournal.

- ``model``: the shapes every part shares (a code system being loaded, its concepts).
- ``loaders``: pure parsers from publishers' formats (FHIR JSON, ClaML, SNOMED CT RF2, the
  LOINC table, UCUM) to ``CodeSystemDraft``; no database.
- ``store``: concept tables in the main database and the queries the operations need.
- ``operations``: $lookup, $validate-code, $subsumes, $expand, $translate.
"""
