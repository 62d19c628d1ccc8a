"""Derive enjournal's compact structure and terminology tables from the official R4 package.

Source: the npm package ``hl7.fhir.r4.examples`` version 4.0.1 (CC0), the same package
``scripts/build_definitions.py`` reads.  Four files are written to ``enjournal/fhir/definitions``:

``structures.json``
    For every concrete resource type and every datatype (``Bundle-resources.json`` and
    ``Bundle-types.json``, specialisations only, profiles skipped): the snapshot elements as
    ``{"path", "min", "max", "type": [codes], "targets": [resource types of a Reference],
    "ref": contentReference, "binding": value set URL of a *required* binding}``, plus the
    regular expression of each primitive type (from its ``value`` element).

``constraints.json``
    The FHIRPath invariants (``constraint``) of severity error that each concrete type,
    ``DomainResource`` and ``Element`` define themselves (an inherited copy, whose ``source``
    names another StructureDefinition, is left out: it is evaluated on its own type), as
    ``{"key", "path", "expression", "human"}`` rows; ``enjournal.fhir.invariants`` runs them.

``extensions.json``
    For each core extension (``Bundle-extensions.json``): the types its ``value[x]`` may have,
    or ``[]`` for a complex extension (``value[x]`` 0..0, nested extensions only), and its
    contexts as ``[type, expression]`` pairs (element / extension / fhirpath); the validator
    refuses a value of another type, a value on a complex extension, nested extensions on a
    simple one and an extension outside its contexts (``EXTRA_CONTEXTS`` adds the few places
    the package's own resources use a core extension its definition leaves out).  Also
    ``bases``: each resource and datatype's base type (``Age`` -> ``Quantity``, ``Patient``
    -> ``DomainResource``), so an ``Element`` or ``Resource`` context matches what derives
    from it.

``required_valuesets.json``
    Each value set named by a required binding, expanded to ``{system: [codes]}`` from its
    ``compose`` (whole systems, listed concepts, ``is-a`` / ``descendent-of`` / ``is-not-a`` /
    ``=`` / ``regex`` filters, imported value sets, excludes) against the CodeSystems in
    ``Bundle-valuesets.json``, ``Bundle-v3-valuesets.json`` and ``Bundle-v2-valuesets.json``.
    A value set that cannot be expanded exactly (external or incomplete code system, unknown
    filter) is recorded as ``{"unexpandable": reason}`` so the validator skips it.

Run ``python scripts/build_structures.py [PACKAGE_DIR]``; without an argument the package is
taken from /tmp/defs/package when present, else fetched with ``npm pack`` into ``.cache/``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_definitions import OUT, SOURCE, fetch_package

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


def find_package() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    tmp = Path("/tmp/defs/package")
    if (tmp / "Bundle-resources.json").exists():
        return tmp
    return fetch_package()


def _ext(obj: dict, url: str):
    for e in obj.get("extension", ()):
        if e["url"] == url:
            return e.get("valueUrl", e.get("valueString", e.get("valueUri")))
    return None


def _type_code(t: dict) -> str:
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        return _ext(t, FHIR_TYPE_EXT) or code.rsplit(".", 1)[1].lower()
    return code


def structure_tables(sds: list[dict]) -> tuple[dict, dict, set[str]]:
    types: dict[str, dict] = {}
    primitives: dict[str, str | None] = {}
    bindings: set[str] = set()
    for sd in sds:
        if sd.get("derivation") == "constraint" or sd["kind"] == "logical":
            continue
        name = sd["type"]
        elements = sd["snapshot"]["element"]
        if sd["kind"] == "primitive-type":
            regex = None
            for el in elements:
                if el["path"] == f"{name}.value":
                    regex = _ext(el["type"][0], REGEX_EXT)
            primitives[name] = regex
            continue
        if sd.get("abstract") and name not in ("Element", "BackboneElement"):
            continue
        out = []
        for el in elements:
            row: dict = {"path": el["path"], "min": el.get("min", 0), "max": el.get("max", "*")}
            codes, targets = [], []
            for t in el.get("type", ()):
                code = _type_code(t)
                # Resource.id is typed System.String in the R4 snapshots, but the spec says id.
                if sd["kind"] == "resource" and el["path"] == f"{name}.id":
                    code = "id"
                if code not in codes:
                    codes.append(code)
                if code == "Reference":
                    for p in t.get("targetProfile", ()):
                        target = p.removeprefix(SD_PREFIX)
                        if target not in targets:
                            targets.append(target)
            if codes:
                row["type"] = codes
            if targets:
                row["targets"] = targets
            if el.get("contentReference"):
                row["ref"] = el["contentReference"].lstrip("#")
            binding = el.get("binding") or {}
            if binding.get("strength") == "required" and binding.get("valueSet"):
                row["binding"] = binding["valueSet"].split("|")[0]
                bindings.add(row["binding"])
            elif binding.get("strength") in ("extensible", "preferred") and binding.get("valueSet"):
                # Checked by $validate as warnings only (validation.py).
                row["weak_binding"] = [binding["strength"], binding["valueSet"].split("|")[0]]
                bindings.add(row["weak_binding"][1])
            out.append(row)
        types[name] = {"kind": sd["kind"], "elements": out}
    return types, primitives, bindings


def constraint_rows(sds: list[dict]) -> list[dict]:
    """The error-severity invariants each type defines itself, in snapshot order."""
    rows: list[dict] = []
    for sd in sds:
        if sd.get("derivation") == "constraint" or sd["kind"] == "logical":
            continue
        if sd.get("abstract") and sd["type"] not in ("Element", "DomainResource"):
            continue
        root = sd["snapshot"]["element"][0]["path"]
        for el in sd["snapshot"]["element"]:
            for c in el.get("constraint", ()):
                if c.get("severity") != "error" or c.get("source") not in (None, sd["url"]):
                    continue
                if el["path"] != root and el["path"].endswith(".extension"):
                    continue  # Element.extension / Extension.extension: the type's own copy
                row = {"key": c["key"], "path": el["path"], "expression": c.get("expression")}
                row["human"] = c.get("human", "")
                rows.append(row)
    return rows


# Contexts the 4.0.1 definitions leave out but the package's own resources use (thousands of
# times, from the spec's publisher), so an official example is never refused for them.
EXTRA_CONTEXTS = {
    SD_PREFIX + "structuredefinition-fhir-type": ["ElementDefinition.type"],
    SD_PREFIX + "regex": ["ElementDefinition.type"],
    SD_PREFIX + "structuredefinition-normative-version": [
        "CodeSystem",
        "ValueSet",
        "OperationDefinition",
        "ElementDefinition",
    ],
    SD_PREFIX + "translation": ["ValueSet.expansion.contains"],
    SD_PREFIX + "valueset-concept-comments": ["CodeSystem.concept"],
}


def extension_rows(sds: list[dict]) -> dict[str, dict]:
    """url -> {"value": [types], "context": [[type, expression]]} of each core extension."""
    rows: dict[str, dict] = {}
    for sd in sds:
        if sd.get("type") != "Extension" or sd.get("derivation") != "constraint":
            continue
        elements = {e["id"]: e for e in sd["snapshot"]["element"]}
        value = elements.get("Extension.value[x]") or {}
        types = [] if value.get("max") == "0" else [_type_code(t) for t in value.get("type", ())]
        contexts = [
            [c.get("type", "element"), c["expression"]]
            for c in sd.get("context", ())
            if c.get("expression")
        ]
        contexts += [["element", e] for e in EXTRA_CONTEXTS.get(sd["url"], ())]
        rows[sd["url"]] = {"value": types, "context": contexts}
    return dict(sorted(rows.items()))


def base_types(sds: list[dict]) -> dict[str, str]:
    """type -> the type it specialises, for every resource and datatype (profiles skipped)."""
    bases: dict[str, str] = {}
    for sd in sds:
        base = sd.get("baseDefinition", "")
        if sd.get("derivation") == "specialization" and base.startswith(SD_PREFIX):
            bases[sd["type"]] = base[len(SD_PREFIX) :]
    return dict(sorted(bases.items()))


class Unexpandable(Exception):
    pass


class Terminology:
    def __init__(self, resources: list[dict]):
        self.value_sets: dict[str, dict] = {}
        self.code_systems: dict[str, dict] = {}
        for r in resources:
            if r["resourceType"] == "ValueSet":
                self.value_sets.setdefault(r["url"], r)
            elif r["resourceType"] == "CodeSystem":
                known = self.code_systems.get(r["url"])
                if known is None or (
                    known.get("content") != "complete" and r.get("content") == "complete"
                ):
                    self.code_systems[r["url"]] = r
        self._concepts: dict[str, dict] = {}
        self._cache: dict[str, dict[str, set[str]]] = {}

    def concepts(self, system: str) -> dict:
        """code -> {"parents": set, "props": {code: value}} of a complete code system."""
        if system in self._concepts:
            return self._concepts[system]
        cs = self.code_systems.get(system)
        if cs is None:
            raise Unexpandable(f"code system {system} is not in the package")
        if cs.get("content") != "complete":
            raise Unexpandable(f"code system {system} has content {cs.get('content')!r}")
        table: dict[str, dict] = {}

        def walk(concepts, parent):
            for c in concepts:
                entry = table.setdefault(c["code"], {"parents": set(), "props": {}})
                if parent:
                    entry["parents"].add(parent)
                for p in c.get("property", ()):
                    value = next((v for k, v in p.items() if k.startswith("value")), None)
                    if isinstance(value, dict):
                        value = value.get("code")
                    entry["props"].setdefault(p["code"], []).append(value)
                    if p["code"] in ("parent", "subsumedBy") and isinstance(value, str):
                        entry["parents"].add(value)
                walk(c.get("concept", ()), c["code"])

        walk(cs.get("concept", ()), None)
        self._concepts[system] = table
        return table

    def descendants(self, system: str, code: str) -> set[str]:
        table = self.concepts(system)
        children: dict[str, set[str]] = {}
        for c, e in table.items():
            for p in e["parents"]:
                children.setdefault(p, set()).add(c)
        out, todo = set(), [code]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in out:
                    out.add(child)
                    todo.append(child)
        return out

    def _filter(self, system: str, f: dict) -> set[str]:
        op, prop, value = f["op"], f["property"], f["value"]
        table = self.concepts(system)
        if op == "is-a" and prop == "concept":
            return ({value} if value in table else set()) | self.descendants(system, value)
        if op == "descendent-of" and prop == "concept":
            return self.descendants(system, value)
        if op == "is-not-a" and prop == "concept":
            return set(table) - {value} - self.descendants(system, value)
        if op == "regex" and prop == "code":
            return {c for c in table if re.fullmatch(value, c)}
        if op == "=":
            return {c for c, e in table.items() if value in e["props"].get(prop, ())}
        raise Unexpandable(f"filter {op} on {prop} is not supported")

    def _include(self, inc: dict, stack: tuple[str, ...]) -> dict[str, set[str]]:
        result: dict[str, set[str]] | None = None
        if inc.get("system"):
            system = inc["system"]
            if inc.get("concept"):
                codes = {c["code"] for c in inc["concept"]}
            else:
                codes = set(self.concepts(system))
            for f in inc.get("filter", ()):
                codes &= self._filter(system, f)
            result = {system: codes}
        for url in inc.get("valueSet", ()):
            imported = self.expand(url.split("|")[0], stack)
            if result is None:
                result = {s: set(c) for s, c in imported.items()}
            else:
                result = {s: c & imported.get(s, set()) for s, c in result.items()}
        return result or {}

    def expand(self, url: str, stack: tuple[str, ...] = ()) -> dict[str, set[str]]:
        if url in self._cache:
            return self._cache[url]
        if url in stack:
            raise Unexpandable(f"value set {url} includes itself")
        vs = self.value_sets.get(url)
        if vs is None:
            raise Unexpandable(f"value set {url} is not in the package")
        compose = vs.get("compose")
        if not compose:
            raise Unexpandable(f"value set {url} has no compose")
        out: dict[str, set[str]] = {}
        for inc in compose.get("include", ()):
            for system, codes in self._include(inc, (*stack, url)).items():
                out.setdefault(system, set()).update(codes)
        for exc in compose.get("exclude", ()):
            for system, codes in self._include(exc, (*stack, url)).items():
                if system in out:
                    out[system] -= codes
        self._cache[url] = out
        return out


def bundle_resources(package: Path, name: str) -> list[dict]:
    path = package / name
    if not path.exists():
        return []
    return [e["resource"] for e in json.loads(path.read_text())["entry"]]


def main() -> None:
    package = find_package()
    sds = [
        r
        for name in ("Bundle-types.json", "Bundle-resources.json")
        for r in bundle_resources(package, name)
        if r["resourceType"] == "StructureDefinition"
    ]
    types, primitives, bindings = structure_tables(sds)
    constraints = {
        "source": SOURCE,
        "note": "Error-severity invariants, derived by scripts/build_structures.py; do not edit.",
        "constraints": constraint_rows(sds),
    }
    structures = {
        "source": SOURCE,
        "note": "Derived by scripts/build_structures.py from the snapshots; do not edit.",
        "primitives": primitives,
        "types": types,
    }
    terminology = Terminology(
        [
            r
            for name in (
                "Bundle-valuesets.json",
                "Bundle-v3-valuesets.json",
                "Bundle-v2-valuesets.json",
            )
            for r in bundle_resources(package, name)
        ]
    )
    value_sets: dict[str, dict] = {}
    for url in sorted(bindings):
        try:
            expansion = terminology.expand(url)
        except Unexpandable as e:
            value_sets[url] = {"unexpandable": str(e)}
            continue
        if not any(expansion.values()):
            value_sets[url] = {"unexpandable": "expansion is empty"}
            continue
        value_sets[url] = {"codes": {s: sorted(c) for s, c in sorted(expansion.items())}}
    required = {
        "source": SOURCE,
        "note": "Value sets of required (and, for warnings, extensible and preferred) "
        "bindings, expanded by scripts/build_structures.py.",
        "valueSets": value_sets,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    extension_sds = [
        r
        for r in bundle_resources(package, "Bundle-extensions.json")
        if r["resourceType"] == "StructureDefinition"
    ]
    extensions = {
        "source": SOURCE,
        "note": "Core extensions' value types and contexts, by scripts/build_structures.py.",
        "extensions": extension_rows(extension_sds),
        "bases": base_types(sds),
    }
    tables = (
        ("structures.json", structures),
        ("extensions.json", extensions),
        ("required_valuesets.json", required),
        ("constraints.json", constraints),
    )
    for name, table in tables:
        text = json.dumps(table, separators=(",", ":"), sort_keys=True)
        (OUT / name).write_text(text + "\n")
        print(f"wrote {OUT / name}: {len(text) / 1e6:.2f} MB")
    skipped = sorted(u for u, v in value_sets.items() if "unexpandable" in v)
    print(f"{len(types)} types, {len(value_sets)} bound value sets, {len(skipped)} unexpandable")
    for url in skipped:
        print(f"  unexpandable: {url}: {value_sets[url]['unexpandable']}")


if __name__ == "__main__":
    main()
