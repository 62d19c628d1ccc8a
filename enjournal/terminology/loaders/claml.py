"""ClaML (Classification Markup Language, EN 14463), the XML WHO publishes ICD-10 and
WONCA ICPC-2 in.

The header (``Title``, ``Identifier``, ``RubricKinds``) is read up front; the ``Class``
elements then stream through ``iterparse`` and are cleared as they go.

Mapping: ``Class@code`` -> code; ``Class@kind`` -> property ``kind``; ``SuperClass`` ->
parents; the ``preferred`` rubric -> display; ``preferredLong`` and ``inclusion`` rubrics ->
designations (``use`` = the rubric kind); every other rubric kind (``exclusion``, ``note``,
``coding-hint``, ``definition``, ...) -> a string property named after the kind;
``Meta name/value`` on a Class -> a string property (added to ``draft.properties`` when
first seen).  ``Modifier``/``ModifiedBy`` (ICD-10's generated 5th characters) are not
expanded.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import IO, Any

from enjournal.terminology.loaders import (
    LoadError,
    Source,
    checked,
    is_path,
    open_binary,
    source_name,
)
from enjournal.terminology.model import CodeSystemDraft, Concept, Designation

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
DESIGNATION_KINDS = frozenset({"preferredLong", "inclusion"})

#: canonical URLs for classifications recognised by their ClaML title
KNOWN_URLS = (
    (re.compile(r"ICD-?10", re.I), "http://hl7.org/fhir/sid/icd-10"),
    (re.compile(r"ICPC-?2", re.I), "urn:oid:2.16.578.1.12.4.1.1.7170"),
)
_OID = re.compile(r"^[0-2](\.\d+)+$")


def _text(elem: ET.Element) -> str:
    return " ".join("".join(elem.itertext()).split())


def _events(f: IO[bytes]) -> Iterator[tuple[str, ET.Element]]:
    try:
        yield from ET.iterparse(f, events=("start", "end"))
    except ET.ParseError as e:
        line, col = e.position
        msg = str(e).split(":", 1)[0]
        raise LoadError(f"broken XML: {msg}", f"line {line}, column {col + 1}") from None


def _header(
    events: Iterator[tuple[str, ET.Element]],
) -> tuple[dict[str, Any], ET.Element | None, ET.Element | None]:
    """Consume events up to the first Class; returns the header, the root element and the
    Class element (None when there is none)."""
    head: dict[str, Any] = {"rubric_kinds": [], "meta": {}}
    depth = 0
    root: ET.Element | None = None
    for event, elem in events:
        if event == "start":
            depth += 1
            if root is None:
                root = elem
                if elem.tag != "ClaML":
                    raise LoadError(f"not ClaML: the root element is <{elem.tag}>", "line 1")
            elif depth == 2 and elem.tag == "Class":
                return head, root, elem
            continue
        depth -= 1
        if depth != 1:
            continue
        tag = elem.tag
        if tag == "Title":
            head["title_name"] = elem.get("name")
            head["version"] = elem.get("version")
            head["title"] = _text(elem) or elem.get("name")
        elif tag == "Identifier":
            head.setdefault("identifier", elem.get("uid"))
            head.setdefault("authority", elem.get("authority"))
        elif tag == "Meta":
            head["meta"][elem.get("name")] = elem.get("value")
        elif tag == "Authors":
            head["authors"] = ", ".join(
                a.get("name") or _text(a) for a in elem.iter("Author") if a is not None
            )
        elif tag == "RubricKinds":
            head["rubric_kinds"] = [rk.get("name") for rk in elem.iter("RubricKind")]
    if root is None:
        raise LoadError("empty document")
    return head, root, None


def load_claml(
    src: Source,
    *,
    url: str | None = None,
    version: str | None = None,
    name: str | None = None,
    language: str | None = None,
    **_: Any,
) -> CodeSystemDraft:
    """A ClaML file.  ``url`` defaults from the title (ICD-10, ICPC-2) or an OID
    ``Identifier@uid``; ``language`` picks the preferred label when there are several."""
    source = source_name(src)
    try:
        with open_binary(src) as f:
            head, _root, _first = _header(_events(f))
    except LoadError as e:
        raise e.with_source(source) from None
    title_name = head.get("title_name") or ""
    if url is None:
        for pattern, known in KNOWN_URLS:
            if pattern.search(title_name):
                url = known
                break
    if url is None and head.get("identifier") and _OID.match(head["identifier"]):
        url = f"urn:oid:{head['identifier']}"
    if url is None:
        raise LoadError(
            f"cannot tell the code system's url from the title {title_name!r}: pass url=",
            source=source,
        )
    properties: list[tuple[str, str]] = [("kind", "code")]
    for kind in head["rubric_kinds"]:
        if kind and kind != "preferred" and kind not in DESIGNATION_KINDS:
            properties.append((kind, "string"))
    draft = CodeSystemDraft(
        url=url,
        version=version or head.get("version"),
        name=name or re.sub(r"\W+", "", title_name) or "ClaML",
        title=head.get("title"),
        publisher=head.get("authority") or head.get("authors"),
        language=language,
        hierarchy_meaning="classified-with",
        properties=properties,
    )
    draft.concepts = _classes(src, draft, language)
    return checked(draft, source)


def _classes(src: Source, draft: CodeSystemDraft, language: str | None) -> Iterator[Concept]:
    if not is_path(src) and hasattr(src, "seek"):
        src.seek(0)  # type: ignore[union-attr]
    declared = {code for code, _ in draft.properties}
    count = 0
    with open_binary(src) as f:
        events = _events(f)
        _head, root, first = _header(events)
        if first is None or root is None:
            return
        root.clear()
        depth = 2
        for event, elem in events:
            if event == "start":
                depth += 1
                continue
            depth -= 1
            if depth != 1:
                continue
            if elem.tag == "Class":
                count += 1
                concept = _concept(elem, count, language)
                for prop in concept.properties:
                    if prop not in declared:
                        declared.add(prop)
                        draft.properties.append((prop, "string"))
                yield concept
            root.clear()  # nothing else is open below the root: drop what was handled
        if depth != 0:
            raise LoadError("truncated document")


def _concept(elem: ET.Element, index: int, language: str | None) -> Concept:
    code = (elem.get("code") or "").strip()
    if not code:
        raise LoadError("Class without a code", f"Class #{index}")
    concept = Concept(code=code)
    if elem.get("kind"):
        concept.properties["kind"] = [elem.get("kind")]
    preferred: list[tuple[str | None, str]] = []
    for child in elem:
        tag = child.tag
        if tag == "SuperClass":
            parent = child.get("code")
            if not parent:
                raise LoadError("SuperClass without a code", f"Class {code}")
            concept.parents.append(parent)
        elif tag == "Meta" and child.get("name"):
            concept.properties.setdefault(child.get("name"), []).append(child.get("value"))
        elif tag == "Rubric":
            kind = child.get("kind")
            if not kind:
                raise LoadError("Rubric without a kind", f"Class {code}")
            for label in child.iter("Label"):
                value = _text(label)
                if not value:
                    continue
                lang = label.get(XML_LANG)
                if kind == "preferred":
                    preferred.append((lang, value))
                elif kind in DESIGNATION_KINDS:
                    concept.designations.append(Designation(value, lang, kind))
                else:
                    concept.properties.setdefault(kind, []).append(value)
    if preferred:
        chosen = next((v for lang, v in preferred if language and lang == language), None)
        concept.display = chosen or preferred[0][1]
        for lang, value in preferred:
            if value != concept.display:
                concept.designations.append(Designation(value, lang, "preferred"))
    return concept
