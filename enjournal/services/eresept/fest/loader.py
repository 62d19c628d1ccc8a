"""Stream a FEST M30 file (the national drug catalogue from DMP) into plain records.

FEST (forskrivnings- og ekspedisjonsstøtte) is distributed as one XML message, M30
(``fest251.zip`` holding ``fest251.xml``, several hundred MB), whose root ``FEST`` in the
namespace ``http://www.kith.no/xmlstds/eresept/m30/2014-12-01`` holds catalogues (``Kat*``)
of entries (``Oppf*``: ``Id``, ``Tidspunkt``, ``Status`` and the content).  See
../shared/docs/domain.md section 3.6 and docs/fest.md (which parts follow a seen sample and
which are assumed).

The parse is pass one of a load: ``iterparse`` reads the file in chunks, each ``Oppf*``
entry is turned into a small record as soon as it ends and its catalogue is then cleared,
so memory holds one entry at a time plus the small lookup tables (brands, active
substances, reimbursement groups) that packages refer to.  Packages, consumables and
interactions go to a temporary spool file (JSON lines); only a file that parsed completely
is written to the store (pass two, ``catalogue.load_file``), so a broken file changes
nothing.  Errors name the entry (catalogue, position, FEST ``Id``) or the XML line.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.etree.ElementTree import Element, ParseError, iterparse

import orjson

M30_NAMESPACE = "http://www.kith.no/xmlstds/eresept/m30/2014-12-01"
_M30_PREFIX = "http://www.kith.no/xmlstds/eresept/m30/"
DEMO_FILE = Path(__file__).resolve().parent / "data" / "demo-fest.xml"

# Varenr (and Nr of consumables) become part of a FHIR id (fest-<varenr>): [A-Za-z0-9.-]
_VARENR = re.compile(r"[A-Za-z0-9.\-]{1,58}")
_INTERACTION_ID = re.compile(r"[A-Za-z0-9.\-_]{1,58}")  # -> fest-int-<Id>, 64 at most
_RELEVANS = {"1", "2", "3"}


class FestError(Exception):
    """The file is not a FEST M30 catalogue we can load; the message says where and why."""


@dataclass
class Parsed:
    """What pass one found: counts, the lookup tables, and the spool of records."""

    fetched: str | None = None  # HentetDato: when DMP produced the file
    brands: dict[str, dict] = field(default_factory=dict)  # LegemiddelMerkevare Id -> ...
    strengths: dict[str, str] = field(default_factory=dict)  # VirkestoffMedStyrke -> Virkestoff
    substances: dict[str, str] = field(default_factory=dict)  # Virkestoff Id -> name
    reimbursement: dict[str, list[dict]] = field(default_factory=dict)  # Refusjonsgruppe Id
    packages: int = 0
    consumables: int = 0
    interactions: int = 0
    skipped_interactions: int = 0  # InteraksjonIkkeVurdert, or no ATC code on two sides
    spool: IO[bytes] | None = None

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()

    def records(self) -> Iterator[dict]:
        """The spooled packages, consumables and interactions, in file order."""
        assert self.spool is not None
        self.spool.seek(0)
        for line in self.spool:
            yield orjson.loads(line)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: Element, name: str) -> Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _children(element: Element, name: str) -> list[Element]:
    return [child for child in element if _local(child.tag) == name]


def _descendants(element: Element, name: str) -> Iterator[Element]:
    for child in element.iter():
        if _local(child.tag) == name:
            yield child


def _text(element: Element | None, name: str) -> str | None:
    child = None if element is None else _child(element, name)
    if child is None or child.text is None:
        return None
    return child.text.strip() or None


def _coded(element: Element | None, name: str) -> dict | None:
    """A KITH coded value ``<X V="code" S="oid" DN="display"/>`` as a dict, or None."""
    child = None if element is None else _child(element, name)
    if child is None or not (child.get("V") or "").strip():
        return None
    return {"code": child.get("V").strip(), "system": child.get("S"), "display": child.get("DN")}


@contextmanager
def open_catalogue(path: str | Path) -> Iterator[IO[bytes]]:
    """The XML stream of ``path``: a .xml file, or a .zip holding one (e.g. fest251.zip)."""
    path = Path(path)
    if not path.is_file():
        raise FestError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as stream:
            yield stream
        return
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise FestError(f"{path}: a broken zip file ({e})") from None
    with archive:
        names = [n for n in archive.namelist() if n.lower().endswith(".xml")]
        if len(names) > 1:
            names = [n for n in names if Path(n).name.lower() == "fest251.xml"] or names
        if len(names) != 1:
            found = ", ".join(archive.namelist()) or "nothing"
            raise FestError(f"{path}: the zip file should hold one FEST .xml file, not {found}")
        with archive.open(names[0]) as stream:
            yield stream


class _Entry:
    """Where an entry is, for error messages: 'OppfLegemiddelpakning no. 12 (Id ID_...)'."""

    def __init__(self, name: str, number: int, element: Element):
        self.label = f"{name} no. {number}"
        fest_id = _text(element, "Id")
        if fest_id:
            self.label += f" (Id {fest_id})"

    def fail(self, problem: str) -> FestError:
        return FestError(f"{self.label}: {problem}")


def parse(stream: IO[bytes], *, name: str = "the file") -> Parsed:
    """Pass one: check and read the whole file, spooling the records.  Raises FestError."""
    # The spool outlives this call (pass two reads it); Parsed.close() removes it.
    parsed = Parsed(spool=tempfile.TemporaryFile())  # noqa: SIM115
    numbers: dict[str, int] = {}
    try:
        _walk(stream, parsed, numbers)
    except ParseError as e:
        parsed.spool.close()
        raise FestError(f"{name} is not well-formed XML: {e}") from None
    except FestError as e:
        parsed.spool.close()
        raise FestError(f"{name}: {e}") from None
    except BaseException:
        parsed.spool.close()
        raise
    parsed.spool.flush()
    return parsed


def _walk(stream: IO[bytes], parsed: Parsed, numbers: dict[str, int]) -> None:
    depth = 0
    root: Element | None = None
    catalogue: Element | None = None
    for event, element in iterparse(stream, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth == 2:
                catalogue = element
            elif depth == 1:
                root = element
                if element.tag != f"{{{M30_NAMESPACE}}}FEST" and not (
                    element.tag.startswith(f"{{{_M30_PREFIX}") and _local(element.tag) == "FEST"
                ):
                    raise FestError(
                        f"not a FEST M30 file: the root element is {element.tag}, expected "
                        f"{{{M30_NAMESPACE}}}FEST"
                    )
            continue
        depth -= 1
        if depth == 2 and _local(element.tag).startswith("Oppf"):
            kind = _local(element.tag)
            numbers[kind] = numbers.get(kind, 0) + 1
            handler = _HANDLERS.get(kind)
            if handler is not None:
                handler(_Entry(kind, numbers[kind], element), element, parsed)
            catalogue.remove(element)  # the entry is done: keep memory one entry deep
        elif depth == 1:
            if _local(element.tag) == "HentetDato" and element.text:
                parsed.fetched = element.text.strip()
            root.remove(element)
    if root is None:
        raise FestError("the file is empty")


def _spool(parsed: Parsed, record: dict) -> None:
    parsed.spool.write(orjson.dumps(record) + b"\n")


def _varenr(entry: _Entry, value: str | None, where: str) -> str:
    if value is None:
        raise entry.fail(f"{where} has no item number")
    if not _VARENR.fullmatch(value):
        raise entry.fail(f"the item number {value!r} is not a valid varenummer")
    return value


def _package(entry: _Entry, oppf: Element, parsed: Parsed) -> None:
    item = _child(oppf, "Legemiddelpakning")
    if item is None:
        raise entry.fail("has no Legemiddelpakning")
    varenr = _varenr(entry, _text(item, "Varenr"), "Legemiddelpakning (Varenr)")
    group = _coded(item, "Reseptgruppe")
    if group is None:
        raise entry.fail(f"package {varenr} has no Reseptgruppe")
    info = _child(item, "Pakningsinfo")
    brands = (
        []
        if info is None
        else [e.text.strip() for e in _children(info, "RefLegemiddelMerkevare") if e.text]
    )
    _spool(
        parsed,
        {
            "t": "package",
            "fest_id": _text(item, "Id"),
            "varenr": varenr,
            "active": _status(oppf),
            "name": _text(item, "NavnFormStyrke") or varenr,
            "atc": _coded(item, "Atc"),
            "group": group,
            "form": _coded(item, "LegemiddelformKort"),
            "ean": [e.text.strip() for e in _children(item, "Ean") if e.text and e.text.strip()],
            "brand": brands[0] if brands else None,
            "refusjon": _refusjon_refs(item),
        },
    )
    parsed.packages += 1


def _status(oppf: Element) -> bool:
    """Status V="A" is an active entry; anything else (e.g. utgått) is not."""
    status = _coded(oppf, "Status")
    return status is None or status["code"] == "A"


def _refusjon_refs(item: Element) -> list[str]:
    return [
        ref.text.strip()
        for refusjon in _children(item, "Refusjon")
        for ref in _children(refusjon, "RefRefusjonsgruppe")
        if ref.text and ref.text.strip()
    ]


def _brand(entry: _Entry, oppf: Element, parsed: Parsed) -> None:
    item = _child(oppf, "LegemiddelMerkevare")
    brand_id = _text(item, "Id")
    if item is None or brand_id is None:
        raise entry.fail("has no LegemiddelMerkevare with an Id")
    refs = [e.text.strip() for e in _descendants(item, "RefVirkestoffMedStyrke") if e.text]
    refs += [e.text.strip() for e in _descendants(item, "RefVirkestoff") if e.text]
    parsed.brands[brand_id] = {
        "name": _text(item, "Varenavn") or _text(item, "NavnFormStyrke") or brand_id,
        "substances": refs,
    }


def _substance(entry: _Entry, oppf: Element, parsed: Parsed) -> None:
    item = _child(oppf, "Virkestoff")
    substance_id = _text(item, "Id")
    if item is None or substance_id is None:
        raise entry.fail("has no Virkestoff with an Id")
    parsed.substances[substance_id] = _text(item, "Navn") or substance_id


def _strength(entry: _Entry, oppf: Element, parsed: Parsed) -> None:
    item = _child(oppf, "VirkestoffMedStyrke")
    strength_id = _text(item, "Id")
    substance = _text(item, "RefVirkestoff")
    if item is None or strength_id is None or substance is None:
        raise entry.fail("has no VirkestoffMedStyrke with an Id and a RefVirkestoff")
    parsed.strengths[strength_id] = substance


def _reimbursement(entry: _Entry, oppf: Element, parsed: Parsed) -> None:
    for group in _descendants(oppf, "Refusjonsgruppe"):
        group_id = _text(group, "Id")
        if group_id is None:
            continue
        codes = []
        for code in _descendants(group, "Refusjonskode"):
            if (code.get("V") or "").strip():
                codes.append(
                    {
                        "code": code.get("V").strip(),
                        "system": code.get("S"),
                        "display": code.get("DN"),
                    }
                )
        parsed.reimbursement[group_id] = codes


_CONSUMABLE_KINDS = {
    "MedForbrMatr": "forbruksmateriell",  # medical consumables (bandages, needles, ...)
    "MedForbMatr": "forbruksmateriell",  # the spelling in some schema documentation
    "Naringsmiddel": "naeringsmiddel",  # nutrition products
}


def _consumable(entry: _Entry, oppf: Element, parsed: Parsed) -> None:
    for child in oppf:
        kind = _CONSUMABLE_KINDS.get(_local(child.tag))
        if kind is None:
            continue  # Brystprotese is not prescribed through e-resept; skip it
        varenr = _varenr(entry, _text(child, "Nr"), f"{_local(child.tag)} (Nr)")
        _spool(
            parsed,
            {
                "t": "consumable",
                "kind": kind,
                "varenr": varenr,
                "active": _status(oppf),
                "name": _text(child, "Navn") or varenr,
                "refusjon": _refusjon_refs(child),
            },
        )
        parsed.consumables += 1


def _interaction(entry: _Entry, oppf: Element, parsed: Parsed) -> None:
    item = _child(oppf, "Interaksjon")
    if item is None:
        parsed.skipped_interactions += 1  # InteraksjonIkkeVurdert: not assessed, not "none"
        return
    interaction_id = _text(item, "Id")
    if interaction_id is None or not _INTERACTION_ID.fullmatch(interaction_id):
        raise entry.fail(f"the Interaksjon has no usable Id ({interaction_id!r})")
    relevans = _coded(item, "Relevans")
    if relevans is None or relevans["code"] not in _RELEVANS:
        found = None if relevans is None else relevans["code"]
        raise entry.fail(f"Relevans should be 1, 2 or 3, not {found!r}")
    sides = []
    for group in _children(item, "Substansgruppe"):
        codes = []
        for substance in _children(group, "Substans"):
            atc = _coded(substance, "Atc")
            if atc is not None:
                codes.append(
                    {"code": atc["code"], "display": atc["display"] or _text(substance, "Substans")}
                )
        if codes:
            sides.append(codes)
    if len(sides) < 2:
        parsed.skipped_interactions += 1  # cannot be keyed on ATC codes
        return
    _spool(
        parsed,
        {
            "t": "interaction",
            "id": interaction_id,
            "relevans": relevans,
            "consequence": _text(item, "KliniskKonsekvens") or "",
            "mechanism": _text(item, "Interaksjonsmekanisme") or "",
            "management": _text(item, "Handtering") or "",
            "sides": sides,
        },
    )
    parsed.interactions += 1


_HANDLERS: dict[str, Any] = {
    "OppfLegemiddelpakning": _package,
    "OppfLegemiddelMerkevare": _brand,
    "OppfVirkestoff": _substance,
    "OppfVirkestoffMedStyrke": _strength,
    "OppfRefusjon": _reimbursement,
    "OppfHandelsvare": _consumable,
    "OppfInteraksjon": _interaction,
}
