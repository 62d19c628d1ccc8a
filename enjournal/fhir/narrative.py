"""The R4 rules for narrative XHTML (``Narrative.div``, type ``xhtml``).

http://hl7.org/fhir/R4/narrative.html: the div is well-formed XML, its root is a ``div`` in
the XHTML namespace (txt-3, txt-1), it holds only the basic HTML formatting elements and
attributes of HTML 4.0 chapters 7-11 and 15, ``<a>`` with ``name``/``href``, images and
style attributes (no scripts, forms, frames, objects, base, link or meta, no event handler
attributes, no attributes in another namespace such as ``xlink:``), and it has some
non-whitespace content (txt-2).

Beyond the letter of the spec, for safety: a DOCTYPE or entity declaration is refused (no
entity expansion), as are processing instructions, ``javascript:``/``vbscript:`` URLs and
``data:`` URLs other than images in ``img/@src``, and CSS ``expression(...)`` or script URLs
in ``style``.

:func:`problems` returns ``(malformed, message)`` pairs.  A message names the element path
inside the div (``div/p[2]/a``) and the offending element or attribute, never its content.
"""

from __future__ import annotations

import re
from xml.parsers import expat

__all__ = ["problems"]

XHTML = "http://www.w3.org/1999/xhtml"
XML_NS = "http://www.w3.org/XML/1998/namespace"

# HTML 4.0 chapters 7-11 and 15 (structure, text, lists, tables, presentation), links, images.
_ELEMENT_NAMES = """
    a abbr acronym address area b bdo big blockquote br caption cite code col colgroup dd
    del dfn div dl dt em h1 h2 h3 h4 h5 h6 hr i img ins kbd li map ol p pre q s samp small
    span strong sub sup table tbody td tfoot th thead tr tt u ul var
"""
ELEMENTS = frozenset(_ELEMENT_NAMES.split())
COMMON_ATTRIBUTES = frozenset(["id", "class", "style", "title", "lang", "dir", "xml:lang"])
_ATTRIBUTE_WORDS = {
    "a": "href name rel rev type hreflang charset shape coords",
    "img": "src alt width height longdesc border hspace vspace usemap ismap name align",
    "area": "href alt shape coords nohref",
    "map": "name",
    "table": "summary width border frame rules cellspacing cellpadding align",
    "td": "abbr axis headers scope rowspan colspan align valign char charoff width height nowrap",
    "th": "abbr axis headers scope rowspan colspan align valign char charoff width height nowrap",
    "tr": "align valign char charoff",
    "thead": "align valign char charoff",
    "tbody": "align valign char charoff",
    "tfoot": "align valign char charoff",
    "col": "span width align valign char charoff",
    "colgroup": "span width align valign char charoff",
    "caption": "align",
    "ol": "start type compact",
    "ul": "type compact",
    "li": "type value",
    "blockquote": "cite",
    "q": "cite",
    "del": "cite datetime",
    "ins": "cite datetime",
    "p": "align",
    "div": "align",
    "h1": "align",
    "h2": "align",
    "h3": "align",
    "h4": "align",
    "h5": "align",
    "h6": "align",
    "hr": "align noshade size width",
    "pre": "width",
    "br": "clear",
}
ATTRIBUTES = {k: frozenset(v.split()) | COMMON_ATTRIBUTES for k, v in _ATTRIBUTE_WORDS.items()}
URL_ATTRIBUTES = frozenset({"href", "src", "cite", "longdesc", "usemap"})

_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_SPACE_AND_CONTROL = re.compile(r"[\x00-\x20\x7f]+")
_SCRIPT_URL = re.compile(r"(javascript|vbscript|livescript|data):", re.IGNORECASE)
_BAD_STYLE = re.compile(r"expression\s*\(|javascript:|vbscript:|behavior\s*:|@import", re.I)
_IMAGE_DATA = re.compile(r"data:image/(png|gif|jpeg|jpg|webp|bmp);", re.IGNORECASE)


class _Checker:
    """Collects problems while expat walks the div (no recursion: deep nesting is safe)."""

    def __init__(self):
        self.found: list[tuple[bool, str]] = []
        self.stack: list[str] = []  # element path, e.g. ["div", "p[2]"]
        self.counts: list[dict[str, int]] = [{}]
        self.has_content = False

    def rule(self, message: str) -> None:
        if len(self.found) < 20:  # enough to act on; a hostile div cannot flood the outcome
            self.found.append((False, message))

    def where(self) -> str:
        return "/".join(self.stack)

    def start(self, name: str, attrs: dict[str, str]) -> None:
        ns, _, local = name.rpartition(" ")
        siblings = self.counts[-1]
        siblings[local] = siblings.get(local, 0) + 1
        n = siblings[local]
        self.stack.append(local if n == 1 else f"{local}[{n}]")
        self.counts.append({})
        if len(self.stack) == 1 and (local != "div" or ns != XHTML):
            self.rule(f"the root element must be a div in the XHTML namespace, not <{local}>")
            return
        if ns != XHTML:
            self.rule(f"element <{local}> at {self.where()} is not in the XHTML namespace")
        elif local not in ELEMENTS:
            self.rule(f"element <{local}> is not allowed in a narrative (at {self.where()})")
        else:
            if local == "img":
                self.has_content = True
            for attr, value in attrs.items():
                self.attribute(local, attr, value)

    def attribute(self, element: str, attr: str, value: str) -> None:
        ns, _, local = attr.rpartition(" ")
        name = "xml:" + local if ns == XML_NS else local
        where = f"{self.where()}/@{name}"
        if local.lower().startswith("on"):
            self.rule(f"event handler attribute '{name}' is not allowed (at {where})")
        elif ns and ns != XML_NS:
            self.rule(f"attribute '{local}' in namespace {ns} is not allowed (at {where})")
        elif name not in ATTRIBUTES.get(element, COMMON_ATTRIBUTES):
            self.rule(f"attribute '{name}' is not allowed on <{element}> (at {where})")
        elif name in URL_ATTRIBUTES:
            self.url(element, name, value, where)
        elif name == "style" and _BAD_STYLE.search(_SPACE_AND_CONTROL.sub("", value)):
            self.rule(f"the style attribute holds script or an import (at {where})")

    def url(self, element: str, name: str, value: str, where: str) -> None:
        compact = _SPACE_AND_CONTROL.sub("", value)
        m = _SCRIPT_URL.match(compact)
        if m is None:
            return
        if element == "img" and name == "src" and _IMAGE_DATA.match(compact):
            return
        self.rule(f"a {m[1].lower()}: URL is not allowed in '{name}' (at {where})")

    def end(self, _name: str) -> None:
        self.stack.pop()
        self.counts.pop()

    def text(self, data: str) -> None:
        if not self.has_content and not data.isspace():
            self.has_content = True

    def instruction(self, _target: str, _data: str) -> None:
        self.rule(f"processing instructions are not allowed (at {self.where() or 'top level'})")

    # A browser parses the narrative as HTML, not XML, and reads some XML-valid constructs
    # differently: a CDATA section is a bogus comment that ends at the first ">", and a
    # comment opened as "<!-->" ends at once.  What follows would run as markup, past every
    # check here, so neither may hold anything HTML could misread.
    def cdata(self) -> None:
        self.rule(f"CDATA sections are not allowed (at {self.where() or 'top level'})")

    def comment(self, data: str) -> None:
        if "<" in data or ">" in data or data.startswith("-") or data.endswith("-"):
            self.rule(f"a comment may not hold '<', '>' or start or end with '-' ({self.where()})")


def _parser(checker: _Checker):
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = checker.start
    parser.EndElementHandler = checker.end
    parser.CharacterDataHandler = checker.text
    parser.ProcessingInstructionHandler = checker.instruction
    parser.StartCdataSectionHandler = checker.cdata
    parser.CommentHandler = checker.comment
    # Belt and braces: the text is refused before parsing if it declares anything.
    parser.StartDoctypeDeclHandler = lambda *a: checker.rule("a DOCTYPE is not allowed")
    parser.EntityDeclHandler = lambda *a: checker.rule("entity declarations are not allowed")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    return parser


def problems(div) -> list[tuple[bool, str]]:
    """``(malformed, message)`` for each way ``div`` (Narrative.div) breaks the R4 rules."""
    if type(div) is not str or not div.strip():
        return [(True, "the narrative div must be a non-empty string of XHTML")]
    if _DECLARATION.search(div):
        return [(False, "DOCTYPE and entity declarations are not allowed in a narrative")]
    checker = _Checker()
    try:
        _parser(checker).Parse(div, True)
    except expat.ExpatError as e:
        where = f"line {e.lineno}, column {e.offset}"
        return [
            (True, f"the narrative is not well-formed XML: {expat.ErrorString(e.code)}, {where}")
        ]
    if not checker.found and not checker.has_content:
        checker.rule("the narrative must have some non-whitespace content (txt-2)")
    return checker.found
