"""The drug catalogue (FEST) as the e-resept service uses it: look up a product, check a new
medicine against the patient's current ones for interactions, report one as a DetectedIssue,
and load a FEST M30 file into the store.

Packages are ``Medication/fest-<varenr>``, interactions ``MedicinalProductInteraction/
fest-int-<Id>`` (mapping: ``resources.py``; FEST format: ``loader.py``; docs/fest.md).

Loading (``load_file``) has two passes.  Pass one parses and checks the whole file into a
temporary spool; a broken file (not XML, truncated, wrong root or namespace, an entry
without its item number ...) raises ``FestError`` before anything is written, so the
catalogue already in the store stays as it was.  Pass two writes the spool in transactions
of ``BATCH`` resources, skipping resources whose content did not change, then marks packages
missing from the new file inactive and deletes interactions missing from it.  A database
failure in pass two can leave a half-updated catalogue; loading the file again completes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from enjournal.fhir.errors import Gone, NotFound
from enjournal.services.eresept.fest import resources as res
from enjournal.services.eresept.fest.loader import (
    DEMO_FILE,
    FestError,
    Parsed,
    open_catalogue,
    parse,
)

__all__ = [
    "BATCH",
    "DEMO_FILE",
    "FestError",
    "Interaction",
    "InteractionIndexes",
    "LoadSummary",
    "Product",
    "detected_issue",
    "interactions",
    "load_catalogue",
    "load_file",
    "product",
    "product_from_resource",
]

BATCH = 500  # resources per write transaction in pass two


# ---- products ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    """A package (or consumable) in the catalogue, as prescribing and dispensing need it."""

    medication_id: str  # "fest-<varenr>"
    varenr: str
    name: str  # NavnFormStyrke, e.g. "Ibuprofen Demofarm tab 400 mg"
    atc: str | None
    group: str  # Reseptgruppe "A" | "B" | "C" (consumables: "C")
    kind: str  # "legemiddel" | "forbruksmateriell" | "naeringsmiddel"
    reimbursement: tuple[str, ...]  # refusjonskoder (e.g. ICPC-2 / ICD-10 codes)
    active: bool = True  # False: gone from the latest catalogue (kept, not deleted)


def product_from_resource(resource: dict) -> Product | None:
    """The Product a FEST ``Medication`` describes; None for a Medication not from FEST."""
    varenr = next(
        (
            i.get("value")
            for i in resource.get("identifier", [])
            if i.get("system") == res.PACKAGE_SYSTEM
        ),
        None,
    )
    if not varenr:
        return None
    code = resource.get("code") or {}
    atc = next(
        (c.get("code") for c in code.get("coding", []) if c.get("system") == res.ATC_SYSTEM),
        None,
    )
    kinds = res.extension(resource, res.EXT_KIND)
    kind = kinds[0].get("valueCode") if kinds else "legemiddel"
    groups = res.extension(resource, res.EXT_GROUP)
    group = groups[0]["valueCoding"]["code"] if groups else res.CONSUMABLE_GROUP
    return Product(
        medication_id=resource.get("id", ""),
        varenr=varenr,
        name=code.get("text") or varenr,
        atc=atc,
        group=group,
        kind=kind,
        reimbursement=tuple(
            e["valueCoding"]["code"] for e in res.extension(resource, res.EXT_REIMBURSEMENT)
        ),
        active=resource.get("status", "active") == "active",
    )


async def product(tx: Any, ref: str) -> Product | None:
    """The product ``ref`` names: ``"Medication/<id>"`` or a varenr; None when unknown,
    deleted or not a FEST product."""
    ref = ref.strip()
    id_ = ref.split("/")[1] if ref.startswith("Medication/") else res.MEDICATION_PREFIX + ref
    try:
        stored = await tx.read("Medication", id_)
    except (NotFound, Gone):
        return None
    return product_from_resource(orjson.loads(stored.content))


# ---- interactions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Interaction:
    """One interaction found between the new medicine and one current medicine."""

    id: str  # the resource id (resources.interaction_id): MedicinalProductInteraction/<id>
    severity: str  # "high" | "moderate" | "low" (FEST Relevans 1 | 2 | 3)
    consequence: str  # KliniskKonsekvens
    mechanism: str  # Interaksjonsmekanisme
    atc_a: str  # the new medicine's ATC code, as given
    atc_b: str  # the current medicine's ATC code that interacts, as given
    management: str = ""  # Handtering: what to do about it


_RANK = {"high": 0, "moderate": 1, "low": 2}


@dataclass
class _Listed:
    id: str
    severity: str
    consequence: str
    mechanism: str
    management: str


class _Index:
    """Every interaction, keyed by each ATC code (at whatever level FEST lists it)."""

    def __init__(self, resources: Iterable[dict]):
        self.entries: list[_Listed] = []
        self.by_code: dict[str, list[tuple[int, int]]] = {}
        for resource in resources:
            severity = res.extension(resource, res.EXT_SEVERITY)
            if not severity:
                continue  # not one of ours
            number = len(self.entries)
            self.entries.append(
                _Listed(
                    resource["id"],
                    severity[0]["valueCode"],
                    (resource.get("effect") or {}).get("text", ""),
                    resource.get("description", ""),
                    (resource.get("management") or {}).get("text", ""),
                )
            )
            for side, interactant in enumerate(resource.get("interactant", [])):
                for coding in (interactant.get("itemCodeableConcept") or {}).get("coding", []):
                    if coding.get("system") == res.ATC_SYSTEM and coding.get("code"):
                        key = coding["code"].strip().upper()
                        self.by_code.setdefault(key, []).append((number, side))

    def match(self, atc: str) -> dict[int, set[int]]:
        """Entries (and their sides) listing ``atc`` or any of its ancestors: M01A lists
        M01AE01, since ATC codes nest by prefix."""
        atc = atc.strip().upper()
        hits: dict[int, set[int]] = {}
        for length in range(1, len(atc) + 1):
            for number, side in self.by_code.get(atc[:length], ()):
                hits.setdefault(number, set()).add(side)
        return hits


_TYPE = "MedicinalProductInteraction"


class InteractionIndexes:
    """The index built from the stored interactions, rebuilt when they change: the key, the
    type's latest change (``Transaction.latest_change``: one probe of the (type, seq)
    index), is read on every call, so a catalogue loaded by another worker or process is
    seen at once.  The e-resept service keeps one per platform (``state.EreseptState``);
    a few keys are kept."""

    KEEP = 4

    def __init__(self) -> None:
        self._built: dict[tuple, _Index] = {}

    async def get(self, tx: Any) -> _Index:
        key = (type(tx), await tx.latest_change(_TYPE))
        index = self._built.get(key)
        if index is None:
            index = _Index(orjson.loads(f.content) for f in await tx.with_id_prefix(_TYPE))
            while len(self._built) >= self.KEEP:
                self._built.pop(next(iter(self._built)))
            self._built[key] = index
        return index


async def interactions(
    tx: Any, new_atc: str, current_atcs: list[str], indexes: InteractionIndexes | None = None
) -> list[Interaction]:
    """The interactions between a new medicine and the patient's current ones, most severe
    first: one per (interaction, current medicine) pair.  ``indexes`` keeps the index from
    one call to the next; without it the index is built for this call."""
    if not new_atc:
        return []
    index = await (InteractionIndexes() if indexes is None else indexes).get(tx)
    new_hits = index.match(new_atc)
    if not new_hits:
        return []
    found: dict[tuple[int, str], Interaction] = {}
    for current in current_atcs:
        if not current:
            continue
        for number, sides in index.match(current).items():
            mine = new_hits.get(number)
            # The two medicines must sit on different sides of the interaction.
            if not mine or not any(a != b for a in mine for b in sides):
                continue
            entry = index.entries[number]
            found.setdefault(
                (number, current),
                Interaction(
                    id=entry.id,
                    severity=entry.severity,
                    consequence=entry.consequence,
                    mechanism=entry.mechanism,
                    atc_a=new_atc,
                    atc_b=current,
                    management=entry.management,
                ),
            )
    return sorted(found.values(), key=lambda i: (_RANK.get(i.severity, 3), i.id, i.atc_b))


def detected_issue(interaction: Interaction, patient_ref: str, implicated: list[str]) -> dict:
    """An R4 DetectedIssue for a drug interaction (http://hl7.org/fhir/R4/detectedissue.html):
    code DRG (v3 ActCode "Drug Interaction Alert"), its severity, the clinical consequence as
    detail, the medicines involved as implicated, the FEST interaction as evidence."""
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "status": "final",
        "code": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "DRG",
                    "display": "Drug Interaction Alert",
                }
            ],
            "text": f"Interaksjon {interaction.atc_a} + {interaction.atc_b}",
        },
        "severity": interaction.severity,
        "patient": {"reference": patient_ref},
        "evidence": [{"detail": [{"reference": f"{_TYPE}/{interaction.id}"}]}],
    }
    if implicated:
        issue["implicated"] = [{"reference": ref} for ref in implicated]
    if interaction.consequence:
        issue["detail"] = interaction.consequence
    return issue


# ---- loading -------------------------------------------------------------------------------


@dataclass
class LoadSummary:
    fetched: str | None = None  # HentetDato of the file
    products: int = 0  # packages and consumables in the file
    interactions: int = 0
    skipped_interactions: int = 0  # not assessed, or not keyed on ATC codes
    written: int = 0  # resources created or changed
    inactivated: int = 0  # packages gone from the file, now inactive
    removed_interactions: int = 0  # interactions gone from the file, deleted


async def load_file(store: Any, path: str | Path) -> int:
    """Load a FEST M30 file (.xml or .zip); returns the number of catalogue entries
    (products and interactions) it holds.  Raises FestError for a broken file."""
    summary = await load_catalogue(store, path)
    return summary.products + summary.interactions


async def load_catalogue(store: Any, path: str | Path) -> LoadSummary:
    with open_catalogue(path) as stream:
        parsed = parse(stream, name=str(path))
    try:
        return await _write_all(store, parsed)
    finally:
        parsed.close()


async def _write_all(store: Any, parsed: Parsed) -> LoadSummary:
    summary = LoadSummary(
        fetched=parsed.fetched,
        products=parsed.packages + parsed.consumables,
        interactions=parsed.interactions,
        skipped_interactions=parsed.skipped_interactions,
    )
    kept: dict[str, set[str]] = {"Medication": set(), _TYPE: set()}
    batch: dict[tuple[str, str], dict] = {}
    for record in parsed.records():
        if record["t"] == "interaction":
            resource = res.interaction(record)
        else:
            resource = res.medication(
                record, parsed.brands, parsed.strengths, parsed.substances, parsed.reimbursement
            )
        kept[resource["resourceType"]].add(resource["id"])
        batch[(resource["resourceType"], resource["id"])] = resource
        if len(batch) >= BATCH:
            summary.written += await _write_batch(store, batch)
            batch = {}
    if batch:
        summary.written += await _write_batch(store, batch)
    summary.inactivated = await _retire(store, "Medication", kept["Medication"])
    summary.removed_interactions = await _retire(store, _TYPE, kept[_TYPE])
    return summary


async def _write_batch(store: Any, batch: dict[tuple[str, str], dict]) -> int:
    """Write one batch in one transaction, skipping resources that did not change (so a
    reload of the same catalogue makes no new versions)."""
    written = 0
    async with store.transaction(write=True) as tx:
        for type_ in {t for t, _ in batch}:
            ids = [id_ for t, id_ in batch if t == type_]
            stored = {s.id: orjson.loads(s.content) for s in await tx.read_many(type_, ids)}
            for id_ in ids:
                resource = batch[(type_, id_)]
                old = stored.get(id_)
                if old is not None:
                    old.pop("meta", None)
                    if old == resource:
                        continue
                await tx.update(resource, id_)
                written += 1
    return written


async def _retire(store: Any, type_: str, kept: set[str]) -> int:
    """Mark FEST packages missing from the new file inactive (prescriptions refer to them);
    delete interactions missing from it.  Pages through the ids, one transaction a page."""
    prefix = res.INTERACTION_PREFIX if type_ == _TYPE else res.MEDICATION_PREFIX
    done, after = 0, ""
    while True:
        async with store.transaction(write=True) as tx:
            rows = await tx.with_id_prefix(type_, prefix, after, BATCH)
            for found in rows:
                id_ = found.id
                if id_ in kept:
                    continue
                if type_ == _TYPE:
                    await tx.delete(type_, id_)
                    done += 1
                    continue
                resource = orjson.loads(found.content)
                if resource.get("status") == "inactive":
                    continue
                resource.pop("meta", None)
                resource["status"] = "inactive"
                await tx.update(resource, id_)
                done += 1
        if len(rows) < BATCH:
            return done
        after = rows[-1].id
