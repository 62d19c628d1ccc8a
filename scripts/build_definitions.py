"""Derive enjournal's compact FHIR tables from the official HL7 R4 package.

Source: the npm package ``hl7.fhir.r4.examples`` version 4.0.1 (CC0), which carries the
untouched definition bundles of FHIR R4 (search-parameters.json, profiles-resources.json,
profiles-types.json, valuesets.json) and the CompartmentDefinitions.

Run ``python scripts/build_definitions.py [PACKAGE_DIR]``; without an argument the package is
fetched with ``npm pack`` into ``.cache/``.  The output in ``enjournal/fhir/definitions/`` is
committed, so neither npm nor the network is needed at run time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "enjournal" / "fhir" / "definitions"
PACKAGE = "hl7.fhir.r4.examples"
VERSION = "4.0.1"
SOURCE = f"npm:{PACKAGE}@{VERSION}"


def fetch_package() -> Path:
    cache = ROOT / ".cache" / f"{PACKAGE}-{VERSION}"
    if (cache / "package" / "Bundle-searchParams.json").exists():
        return cache / "package"
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=cache, check=True)
    with tarfile.open(cache / f"{PACKAGE}-{VERSION}.tgz") as tar:
        tar.extractall(cache, filter="data")
    return cache / "package"


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level ``|`` operators."""
    parts, depth, quote, current = [], 0, False, []
    for ch in expression:
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        if ch == "|" and depth == 0 and not quote:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def root_type(part: str) -> str:
    name = part.lstrip("(").strip()
    for i, ch in enumerate(name):
        if not (ch.isalnum() or ch == "_"):
            return name[:i]
    return name


def resource_types(resources_bundle: dict) -> list[str]:
    names = []
    for entry in resources_bundle["entry"]:
        sd = entry["resource"]
        if sd["resourceType"] != "StructureDefinition" or sd["kind"] != "resource":
            continue
        if sd.get("abstract") or sd.get("derivation") != "specialization":
            continue
        names.append(sd["type"])
    return sorted(names)


def search_parameters(bundle: dict, types: list[str]) -> dict:
    by_url = {e["resource"]["url"]: e["resource"] for e in bundle["entry"]}
    table: dict[str, dict] = {t: {} for t in ["Resource", *types]}
    for sp in by_url.values():
        for base in sp["base"]:
            expression = sp.get("expression")
            target_type = "Resource" if base in ("Resource", "DomainResource") else base
            if expression and target_type != "Resource":
                parts = [p for p in split_union(expression) if root_type(p) == base]
                expression = " | ".join(parts) if parts else None
            elif expression and target_type == "Resource":
                expression = expression.replace("Resource.", "", 1)
            entry = {"type": sp["type"], "expression": expression, "url": sp["url"]}
            if sp.get("target"):
                entry["target"] = sp["target"]
            if sp.get("modifier"):
                entry["modifier"] = sp["modifier"]
            if sp.get("comparator"):
                entry["comparator"] = sp["comparator"]
            if sp.get("component"):
                entry["component"] = [
                    {
                        "code": by_url[c["definition"]]["code"],
                        "type": by_url[c["definition"]]["type"],
                        "expression": c["expression"],
                    }
                    for c in sp["component"]
                ]
            if sp.get("chain"):
                entry["chain"] = sp["chain"]
            table.setdefault(target_type, {})[sp["code"]] = entry
    return table


def summary_elements(resources_bundle: dict) -> dict[str, list[str]]:
    """Resource type -> its top-level elements marked isSummary (for ``_summary=true``)."""
    table = {}
    for entry in resources_bundle["entry"]:
        sd = entry["resource"]
        if sd["resourceType"] != "StructureDefinition" or sd["kind"] != "resource":
            continue
        names = []
        for element in sd["snapshot"]["element"]:
            path = element["path"].split(".")
            if len(path) == 2 and element.get("isSummary"):
                names.append(path[1].replace("[x]", ""))
        table[sd["type"]] = names
    return table


def patient_compartment(package: Path) -> dict:
    definition = json.loads((package / "CompartmentDefinition-patient.json").read_text())
    return {r["code"]: r["param"] for r in definition["resource"] if r.get("param")}


def main() -> None:
    package = Path(sys.argv[1]) if len(sys.argv) > 1 else fetch_package()
    resources = json.loads((package / "Bundle-resources.json").read_text())
    types = resource_types(resources)
    params = search_parameters(
        json.loads((package / "Bundle-searchParams.json").read_text()), types
    )
    out = {
        "source": SOURCE,
        "resourceTypes": types,
        "searchParameters": params,
        "compartments": {"Patient": patient_compartment(package)},
        "summaryElements": summary_elements(resources),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "search.json").write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")
    print(f"wrote {OUT / 'search.json'}: {len(types)} resource types")


if __name__ == "__main__":
    main()
