"""The terminology service: code systems, value sets and concept maps, like Snowstorm or
Ontoserver provide, inside enjournal.

- ``model``: the shapes every part shares (a code system being loaded, its concepts).
- ``loaders``: pure parsers from publishers' formats (FHIR JSON, ClaML, SNOMED CT RF2, the
  LOINC table, UCUM) to ``CodeSystemDraft``; no database.
- ``loading``, ``value_sets``, ``expansion``, ``concept_maps``, ``resources``, ``values``:
  loading code systems, finding value sets and concept maps, shaping $expand and $translate;
  their SQL (the concept tables) is ``enjournal.storage.terminology``.
- ``checks``: the check of coded data on write.
- ``operations``: $lookup, $validate-code, $subsumes, $expand, $translate.
"""
