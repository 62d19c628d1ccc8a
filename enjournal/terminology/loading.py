"""Loading a code system: its concepts into the concept tables (``enjournal.storage.
terminology.loading`` holds their SQL), and the CodeSystem resource that describes it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import orjson

from enjournal.storage.terminology import loading as tables
from enjournal.storage.terminology.code_systems import CodeSystemInfo, find_code_system
from enjournal.terminology.model import CodeSystemDraft, Concept
from enjournal.terminology.resources import resource_id
from enjournal.terminology.values import property_value, split_use, typed_value

BATCH = tables.BATCH  # concepts per executemany round
COMPLETE_LIMIT = 500  # code systems up to this size are stored with content "complete"


async def save_code_system(
    tx,
    draft: CodeSystemDraft,
    *,
    progress: Callable[[int], object] | None = None,
    batch_size: int = BATCH,
    resource_id: str | None = None,
    status: str = "active",
) -> CodeSystemInfo:
    """Load ``draft`` (its concepts may be a generator) into the concept tables, replacing
    the same url + version if loaded before, and store a CodeSystem resource describing it
    (``content: complete`` with the concepts for small systems, else ``not-present``).

    Runs in the caller's transaction: if the concepts raise midway, nothing is loaded.
    ``progress(n)`` is called with the number of concepts stored after each batch."""
    cs, old_resource_id = await tables.open_code_system(tx, draft, status)
    resource_id = resource_id or old_resource_id
    count = 0
    kept: list[Concept] | None = []  # the concepts, while few enough for content complete
    rows = tables.ConceptRows(tx, cs)
    for concept in draft.concepts:
        count += 1
        rows.add(concept)
        if kept is not None:
            kept.append(concept)
            if len(kept) > COMPLETE_LIMIT:
                kept = None
        if rows.pending >= batch_size:
            await rows.flush()
            if progress is not None:
                progress(count)
    await rows.flush()
    await tables.build_closure(tx, cs)

    resource_id = resource_id or await _free_resource_id(tx, draft)
    resource = _code_system_resource(draft, status, count, kept)
    await tx.update(resource, resource_id)
    await tables.finish_code_system(tx, cs, count, resource_id)
    if progress is not None:
        progress(count)
    return await find_code_system(tx, draft.url, draft.version or None)  # type: ignore[return-value]


async def _free_resource_id(tx, draft: CodeSystemDraft) -> str:
    """An id derived from name and version, unless another code system's resource has it."""
    base = resource_id(draft.name or "codesystem", draft.version)
    candidate = base
    for n in range(2, 100):
        if not await tx.exists("CodeSystem", candidate):
            return candidate
        stored = await tx.read("CodeSystem", candidate)
        if orjson.loads(stored.content).get("url") == draft.url:
            return candidate
        candidate = f"{base[:60]}-{n}"
    return uuid.uuid4().hex


def _code_system_resource(
    draft: CodeSystemDraft, status: str, count: int, concepts: list[Concept] | None
) -> dict:
    resource: dict = {"resourceType": "CodeSystem", "url": draft.url}
    if draft.version:
        resource["version"] = draft.version
    resource["name"] = re.sub(r"\W", "", draft.name or "") or "CodeSystem"
    if draft.title:
        resource["title"] = draft.title
    resource["status"] = status
    if draft.publisher:
        resource["publisher"] = draft.publisher
    if draft.copyright:
        resource["copyright"] = draft.copyright
    if draft.language:
        resource["language"] = draft.language
    if draft.hierarchy_meaning:
        resource["hierarchyMeaning"] = draft.hierarchy_meaning
    if draft.content == "fragment":
        resource["content"] = "fragment"
    else:
        resource["content"] = "complete" if concepts is not None else "not-present"
    resource["count"] = count
    props = [{"code": c, "type": t} for c, t in draft.properties]
    if concepts and any(c.parents for c in concepts) and "parent" not in dict(draft.properties):
        props.append({"code": "parent", "type": "code"})
    if props:
        resource["property"] = props
    if concepts:
        resource["concept"] = [_concept_json(c) for c in concepts]
    return resource


def _concept_json(concept: Concept) -> dict:
    out: dict = {"code": concept.code}
    if concept.display:
        out["display"] = concept.display
    designations = []
    for d in concept.designations:
        entry: dict = {"value": d.value}
        if d.language:
            entry["language"] = d.language
        use_system, use_code = split_use(d.use)
        if use_code:
            entry["use"] = (
                {"system": use_system, "code": use_code} if use_system else {"code": use_code}
            )
        designations.append(entry)
    if designations:
        out["designation"] = designations
    props = []
    for prop, values in concept.properties.items():
        for value in values:
            text, type_ = property_value(value)
            key, typed = typed_value(text, type_)
            props.append({"code": prop, key: typed})
    props.extend({"code": "parent", "valueCode": p} for p in concept.parents)
    if concept.inactive:
        props.append({"code": "inactive", "valueBoolean": True})
    if props:
        out["property"] = props
    return out
