"""Derive ``enjournal/fhir/definitions/element_types.json`` from the official HL7 R4 package.

For every element of every R4 resource and complex datatype (from the StructureDefinition
snapshots in ``Bundle-resources.json`` and ``Bundle-types.json``) the table lists the element's
type codes, e.g. ``"Observation.value[x]": ["Quantity", "CodeableConcept", ...]``.  Elements
defined by ``contentReference`` (``Questionnaire.item.item``) are listed under
``contentReference`` with the path they repeat, and ``baseTypes`` gives each type's parent type
(``Age`` -> ``Quantity``, ``code`` -> ``string``) for FHIRPath ``is``/``as``.

Run ``python scripts/build_element_types.py [PACKAGE_DIR]``.  Without an argument the package is
looked for in ``.cache/hl7.fhir.r4.examples-4.0.1/package`` and then ``/tmp/defs/package``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "enjournal" / "fhir" / "definitions" / "element_types.json"
PACKAGE = "hl7.fhir.r4.examples"
VERSION = "4.0.1"
SOURCE = f"npm:{PACKAGE}@{VERSION}"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}


def find_package() -> Path:
    for candidate in (
        ROOT / ".cache" / f"{PACKAGE}-{VERSION}" / "package",
        Path("/tmp/defs/package"),
    ):
        if (candidate / "Bundle-resources.json").exists():
            return candidate
    raise SystemExit("R4 package not found; pass its directory as the first argument")


def type_code(t: dict) -> str:
    for ext in t.get("extension", ()):
        if ext.get("url") == FHIR_TYPE_EXT:
            return ext.get("valueUrl") or ext.get("valueUri") or t["code"]
    return SYSTEM_TYPES.get(t["code"], t["code"])


def build(package: Path) -> dict:
    types: dict[str, list[str]] = {}
    content_refs: dict[str, str] = {}
    base_types: dict[str, str] = {}
    resources: list[str] = []
    for bundle in ("Bundle-types.json", "Bundle-resources.json"):
        data = json.loads((package / bundle).read_text("utf-8"))
        for entry in data["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") != "StructureDefinition":
                continue
            if sd.get("derivation") == "constraint":
                continue
            name = sd["type"]
            base = sd.get("baseDefinition", "").rsplit("/", 1)[-1]
            if base:
                base_types[name] = base
            if sd["kind"] == "resource":
                resources.append(name)
            if sd["kind"] == "primitive-type":
                continue
            for element in sd["snapshot"]["element"]:
                path = element["path"]
                if "." not in path:
                    continue
                if "contentReference" in element:
                    content_refs[path] = element["contentReference"].lstrip("#")
                    continue
                codes = []
                for t in element.get("type", ()):
                    code = type_code(t)
                    if code not in codes:
                        codes.append(code)
                if codes:
                    types[path] = codes
    # SimpleQuantity and MoneyQuantity are constraints on Quantity, used as element types.
    base_types.setdefault("SimpleQuantity", "Quantity")
    base_types.setdefault("MoneyQuantity", "Quantity")
    return {
        "source": SOURCE,
        "resourceTypes": sorted(resources),
        "baseTypes": dict(sorted(base_types.items())),
        "contentReference": dict(sorted(content_refs.items())),
        "elements": types,
    }


def main() -> None:
    package = Path(sys.argv[1]) if len(sys.argv) > 1 else find_package()
    table = build(package)
    OUT.write_text(json.dumps(table, separators=(",", ":"), ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(table['elements'])} elements)")


if __name__ == "__main__":
    main()
