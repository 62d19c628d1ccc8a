"""FEST records as FHIR R4 resources: packages as ``Medication``, interactions as
``MedicinalProductInteraction`` (http://hl7.org/fhir/R4/medication.html,
http://hl7.org/fhir/R4/medicinalproductinteraction.html).

Identifier and code systems follow the FHI LMDI implementation guide where it names one
(``http://dmp.no/fhir/NamingSystem/festLegemiddelPakning`` ...); the Volven code lists use
their ``urn:oid:2.16.578.1.12.4.1.1.<list>`` form, as the shipped kodeverk do.  The
extensions are enjournal's own (no national profile defines them yet).
"""

from __future__ import annotations

import re
from typing import Any

PACKAGE_SYSTEM = "http://dmp.no/fhir/NamingSystem/festLegemiddelPakning"
BRAND_SYSTEM = "http://dmp.no/fhir/NamingSystem/festLegemiddelMerkevare"
SUBSTANCE_SYSTEM = "http://hl7.no/fhir/NamingSystem/festLegemiddelvirkestoff"
GTIN_SYSTEM = "https://www.gs1.org/gtin"
ATC_SYSTEM = "http://www.whocc.no/atc"
RESEPTGRUPPE_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.7421"  # Volven 7421 Reseptgruppe
FORM_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.7448"  # Volven 7448 Legemiddelform (kort)

_EXT = "https://enjournal.no/fhir/StructureDefinition/"
EXT_GROUP = _EXT + "fest-reseptgruppe"
EXT_KIND = _EXT + "fest-product-kind"
EXT_BRAND = _EXT + "fest-merkevare"
EXT_REIMBURSEMENT = _EXT + "fest-refusjonskode"
EXT_SEVERITY = _EXT + "fest-interaction-severity"
EXT_RELEVANS = _EXT + "fest-relevans"
EXT_FEST_ID = _EXT + "fest-id"  # the entry's Id in FEST, as written there

# FEST Relevans (interaction severity) -> the DetectedIssue severity it maps to.
# 1 "bør ikke kombineres" (avoid), 2 "ta forholdsregler" (take precautions),
# 3 "ingen tiltak nødvendig" (no action needed).
SEVERITY = {"1": "high", "2": "moderate", "3": "low"}

MEDICATION_PREFIX = "fest-"
INTERACTION_PREFIX = "fest-int-"

# Consumables carry no Reseptgruppe in FEST; they are ordered like group C (no narcotics
# rules, repeats allowed), which is what Product.group says for them.
CONSUMABLE_GROUP = "C"


def _coding(system: str | None, value: dict | None) -> dict | None:
    if value is None:
        return None
    coding: dict[str, Any] = {"code": value["code"]}
    if system:
        coding = {"system": system, **coding}
    if value.get("display"):
        coding["display"] = value["display"]
    return coding


def medication(record: dict, brands: dict, strengths: dict, substances: dict, refusjon: dict):
    """A package (or consumable) record as a ``Medication`` with id ``fest-<varenr>``."""
    varenr = record["varenr"]
    kind = record.get("kind", "legemiddel")
    resource: dict[str, Any] = {
        "resourceType": "Medication",
        "id": MEDICATION_PREFIX + varenr,
        "identifier": [{"system": PACKAGE_SYSTEM, "value": varenr}],
        "code": {"text": record["name"]},
        "status": "active" if record["active"] else "inactive",
    }
    extensions: list[dict] = [{"url": EXT_KIND, "valueCode": kind}]
    for ean in record.get("ean", []):
        resource["identifier"].append({"system": GTIN_SYSTEM, "value": ean})
    atc = _coding(ATC_SYSTEM, record.get("atc"))
    if atc is not None:
        resource["code"]["coding"] = [atc]
    form = _coding(FORM_SYSTEM, record.get("form"))
    if form is not None:
        resource["form"] = {"coding": [form]}
    if record.get("group") is not None:
        extensions.append(
            {"url": EXT_GROUP, "valueCoding": _coding(RESEPTGRUPPE_SYSTEM, record["group"])}
        )
    brand = brands.get(record.get("brand") or "")
    if brand is not None:
        extensions.append(
            {
                "url": EXT_BRAND,
                "valueCodeableConcept": {
                    "coding": [
                        {"system": BRAND_SYSTEM, "code": record["brand"], "display": brand["name"]}
                    ]
                },
            }
        )
        ingredients: list[dict] = []
        for ref in brand["substances"]:
            substance_id = strengths.get(ref, ref)  # VirkestoffMedStyrke -> Virkestoff
            name = substances.get(substance_id)
            if name is None:
                continue
            concept = {"system": SUBSTANCE_SYSTEM, "code": substance_id, "display": name}
            if not any(i["itemCodeableConcept"]["coding"][0] == concept for i in ingredients):
                ingredients.append({"itemCodeableConcept": {"coding": [concept]}, "isActive": True})
        if ingredients:
            resource["ingredient"] = ingredients
    for ref in record.get("refusjon", []):
        for code in refusjon.get(ref, []):
            coding = {"code": code["code"]}
            if code.get("system"):
                coding = {"system": f"urn:oid:{code['system']}", **coding}
            if code.get("display"):
                coding["display"] = code["display"]
            extensions.append({"url": EXT_REIMBURSEMENT, "valueCoding": coding})
    resource["extension"] = extensions
    return resource


def interaction_id(fest_id: str) -> str:
    """``fest-int-<Id>`` for a FEST Id, made a valid FHIR id: FEST ids look like
    ``ID_028A3D4C-C908-...``, and FHIR ids allow only letters, digits, '-' and '.', so the
    ``ID_`` prefix goes and any other character becomes '-'."""
    return INTERACTION_PREFIX + re.sub(r"[^A-Za-z0-9.\-]", "-", fest_id.removeprefix("ID_"))


def interaction(record: dict) -> dict:
    """An interaction record as a ``MedicinalProductInteraction`` (id: ``interaction_id``):
    one interactant per FEST Substansgruppe, its ATC codes as the codings."""
    relevans = record["relevans"]
    resource: dict[str, Any] = {
        "resourceType": "MedicinalProductInteraction",
        "id": interaction_id(record["id"]),
        "extension": [
            {"url": EXT_FEST_ID, "valueString": record["id"]},
            {"url": EXT_SEVERITY, "valueCode": SEVERITY[relevans["code"]]},
            {"url": EXT_RELEVANS, "valueCoding": _coding(None, relevans)},
        ],
        "interactant": [
            {
                "itemCodeableConcept": {
                    "coding": [
                        {k: v for k, v in (("system", ATC_SYSTEM), *atc.items()) if v}
                        for atc in side
                    ]
                }
            }
            for side in record["sides"]
        ],
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "DRG",
                    "display": "Drug Interaction Alert",
                }
            ]
        },
    }
    if record["mechanism"]:
        resource["description"] = record["mechanism"]
    if record["consequence"]:
        resource["effect"] = {"text": record["consequence"]}
    if record["management"]:
        resource["management"] = {"text": record["management"]}
    return resource


def extension(resource: dict, url: str) -> list[dict]:
    return [e for e in resource.get("extension", []) if e.get("url") == url]
