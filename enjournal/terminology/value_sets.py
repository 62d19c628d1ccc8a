"""Finding a ValueSet, stored or implicit (its ``compose`` is compiled to SQL by
``enjournal.storage.terminology.compose``)."""

from __future__ import annotations

from enjournal.fhir.errors import Invalid
from enjournal.terminology.resources import search_resources, split_canonical


async def find_value_set(tx, url: str, version: str | None = None) -> dict | None:
    """A ValueSet by canonical url (``url|version`` allowed): a stored ValueSet resource, or
    an implicit one (``{system}?fhir_vs``, ``?fhir_vs=isa/CODE``)."""
    url, version = split_canonical(url, version)
    base, q, query = url.partition("?")
    if q and query.startswith("fhir_vs"):
        include: dict = {"system": base}
        if query.startswith("fhir_vs=isa/"):
            code = query.removeprefix("fhir_vs=isa/")
            include["filter"] = [{"property": "concept", "op": "is-a", "value": code}]
        elif query != "fhir_vs":
            raise Invalid(f"unsupported implicit value set {url!r}")
        if version:
            include["version"] = version
        return {"resourceType": "ValueSet", "url": url, "status": "active",
                "compose": {"include": [include]}}  # fmt: skip
    found = await search_resources(
        tx, "ValueSet", [("url", url)] + ([("version", version)] if version else [])
    )
    if not found:
        return None
    return max(found, key=lambda r: (r.get("version") or "", r["meta"]["lastUpdated"]))
