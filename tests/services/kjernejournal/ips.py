"""A check of a document Bundle against the IPS 2.0.0 structure: the section slices of
StructureDefinition-Composition-uv-ips (extracted into ips_sections.json from the CC0
package hl7.fhir.uv.ips), the document Bundle rules, resolvable references, and each
section entry's required elements: the minimum-one elements of the IPS profiles
(hl7.fhir.uv.ips 2.0.0 input/fsh/profiles) and of the R4 base resources, and the R4
invariants ait-1 and con-3 (written here on their own, not imported from the service)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

IPS = json.loads((Path(__file__).parent / "ips_sections.json").read_text())
XHTML = "{http://www.w3.org/1999/xhtml}div"
DAR = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

# Minimum-one elements per type: IPS profile (P) or R4 base (B).
REQUIRED = {
    "AllergyIntolerance": ["code", "patient"],  # P code; B patient
    "Condition": ["code", "subject"],  # P code; B subject
    "Procedure": ["code", "performed[x]", "status", "subject"],  # P code, performed; B
    "DeviceUseStatement": ["timing[x]", "status", "subject", "device"],  # P timing; B
    "MedicationStatement": ["effective[x]", "medication[x]", "status", "subject"],
    "MedicationRequest": ["medication[x]", "status", "intent", "subject"],
    "Immunization": ["vaccineCode", "occurrence[x]", "status", "patient"],
    "Flag": ["code", "status", "subject"],
    "Encounter": ["status", "class"],
}


def problems(bundle: dict) -> list[str]:
    """Everything wrong with ``bundle`` as an IPS document (empty: it conforms)."""
    out: list[str] = []
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "document":
        out.append("not a document Bundle")
    for key in ("identifier", "timestamp"):
        if not bundle.get(key):
            out.append(f"Bundle.{key} missing")
    entries = bundle.get("entry", [])
    urls = [e.get("fullUrl") for e in entries]
    if len(set(urls)) != len(urls) or not all(u and u.startswith("urn:uuid:") for u in urls):
        out.append("fullUrls must be unique urn:uuid")
    by_url = {e["fullUrl"]: e["resource"] for e in entries if e.get("fullUrl")}
    if not entries or entries[0]["resource"].get("resourceType") != "Composition":
        return [*out, "the first entry is not a Composition"]
    composition = entries[0]["resource"]
    codes = [c.get("code") for c in composition.get("type", {}).get("coding", [])]
    if IPS["type"] not in codes:
        out.append("Composition.type is not LOINC 60591-5")
    for key in ("status", "subject", "date", "author", "title"):
        if not composition.get(key):
            out.append(f"Composition.{key} missing")
    subject = by_url.get(composition.get("subject", {}).get("reference"))
    if not subject or subject.get("resourceType") != "Patient":
        out.append("Composition.subject does not resolve to a Patient in the Bundle")
    _narrative(composition, "Composition", out)
    sections = {
        c.get("code"): s
        for s in composition.get("section", [])
        for c in s.get("code", {}).get("coding", [])
    }
    for name, rule in IPS["sections"].items():
        section = sections.get(rule["code"])
        if section is None:
            if rule["min"] >= 1:
                out.append(f"required section {name} ({rule['code']}) missing")
            continue
        if rule["entryOrEmptyReason"] and not (section.get("entry") or section.get("emptyReason")):
            out.append(f"{name}: neither entries nor emptyReason (ips-comp-1)")
        if section.get("entry") and section.get("emptyReason"):
            out.append(f"{name}: emptyReason with entries (cmp-2)")
        for entry in section.get("entry", []):
            target = by_url.get(entry.get("reference"))
            if target is None:
                out.append(f"{name}: entry {entry.get('reference')} does not resolve")
            elif rule["entryTypes"] and target["resourceType"] not in rule["entryTypes"]:
                out.append(f"{name}: a {target['resourceType']} is not an allowed entry")
    for section in composition.get("section", []):
        if not (section.get("text") or section.get("entry") or section.get("section")):
            out.append(f"section {section.get('title')}: no text, entry or section (cmp-1)")
        if section.get("text"):
            _narrative(section, section.get("title"), out)
    referenced_from_sections = {
        e.get("reference") for s in composition.get("section", []) for e in s.get("entry", [])
    }
    for entry in entries[1:]:
        resource = entry["resource"]
        for ref in references(resource):
            if ref.startswith("#"):
                if not any(c.get("id") == ref[1:] for c in resource.get("contained", [])):
                    out.append(f"{resource['resourceType']}: contained {ref} missing")
            elif ref not in by_url:
                out.append(f"{resource['resourceType']}/{resource.get('id')}: {ref} unresolved")
    for entry in entries:
        resource = entry["resource"]
        if (
            entry.get("fullUrl") in referenced_from_sections
            or resource["resourceType"] == "Patient"
        ):
            out += entry_problems(resource)
    clinical = {
        "AllergyIntolerance",
        "Condition",
        "Flag",
        "Immunization",
        "MedicationRequest",
        "MedicationStatement",
        "DeviceUseStatement",
        "Procedure",
        "Encounter",
    }
    for entry in entries:
        if (
            entry["resource"]["resourceType"] in clinical
            and entry["fullUrl"] not in referenced_from_sections
        ):
            out.append(f"{entry['resource']['resourceType']} not referenced from any section")
    return out


def entry_problems(resource: dict) -> list[str]:
    """The required elements a section entry (or the Patient) lacks, and invariants broken."""
    type_ = resource["resourceType"]
    where = f"{type_}/{resource.get('id')}"
    out = [f"{where}: {e} missing" for e in REQUIRED.get(type_, []) if not _has(resource, e)]
    for key, value in resource.items():
        if key.startswith("_") and isinstance(value, dict):
            urls = [x.get("url") for x in value.get("extension", [])]
            if DAR in urls and key[1:] in resource:
                out.append(f"{where}: {key[1:]} has a value and data-absent-reason")
    eie = "entered-in-error" in str(resource.get("verificationStatus"))
    if type_ == "AllergyIntolerance" and not eie and not resource.get("clinicalStatus"):
        out.append(f"{where}: clinicalStatus missing (ait-1)")
    if type_ == "AllergyIntolerance" and eie and resource.get("clinicalStatus"):
        out.append(f"{where}: clinicalStatus with entered-in-error (ait-2)")
    problem_list = "problem-list-item" in str(resource.get("category"))
    if type_ == "Condition" and problem_list and not eie and not resource.get("clinicalStatus"):
        out.append(f"{where}: clinicalStatus missing (con-3)")
    if type_ == "Patient" and not any(
        n.get("family") or n.get("given") or n.get("text") for n in resource.get("name", [])
    ):
        out.append(f"{where}: no family, given or text name (ips-pat-1)")
    return out


def _has(resource: dict, element: str) -> bool:
    if not element.endswith("[x]"):
        return bool(resource.get(element))
    stem = element[:-3]
    for key, value in resource.items():
        name = key.removeprefix("_")
        if name.startswith(stem) and name[len(stem) :][:1].isupper() and value:
            if key.startswith("_"):  # unknown: only as data-absent-reason
                return DAR in str(value)
            return True
    return False


def references(value) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            found.append(value["reference"])
        for key, item in value.items():
            if key != "contained":
                found += references(item)
    elif isinstance(value, list):
        for item in value:
            found += references(item)
    return found


def _narrative(resource: dict, where, out: list[str]) -> None:
    div = (resource.get("text") or {}).get("div", "")
    try:
        root = ET.fromstring(div)
    except ET.ParseError as error:
        out.append(f"{where}: narrative is not well-formed XHTML ({error})")
        return
    if root.tag != XHTML:
        out.append(f"{where}: narrative is not an XHTML div")


def section(bundle: dict, code: str) -> dict | None:
    composition = bundle["entry"][0]["resource"]
    for s in composition["section"]:
        if any(c.get("code") == code for c in s["code"]["coding"]):
            return s
    return None


def section_resources(bundle: dict, code: str) -> list[dict]:
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    s = section(bundle, code) or {}
    return [by_url[e["reference"]] for e in s.get("entry", [])]
