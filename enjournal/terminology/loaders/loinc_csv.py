"""The LOINC table (``LoincTable/Loinc.csv``, comma-separated, quoted, with a header row).

``LOINC_NUM`` -> code, ``LONG_COMMON_NAME`` -> display; ``SHORTNAME``, ``DisplayName`` and
``CONSUMER_NAME`` -> designations (``use`` = the column name); the axis and status columns
present in the file -> properties named as the columns (as HL7's LOINC CodeSystem does);
``STATUS = DEPRECATED`` -> inactive.  Leading lines starting with ``#`` (a notice, as in
enjournal's shipped extract) are skipped.  Rows stream through ``csv.reader``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import IO, Any

from enjournal.terminology.loaders import (
    LoadError,
    Source,
    checked,
    is_path,
    open_text,
    source_name,
)
from enjournal.terminology.model import CodeSystemDraft, Concept, Designation

LOINC_URL = "http://loinc.org"
LOINC_NOTICE = (
    "This material contains content from LOINC (http://loinc.org). LOINC is copyright "
    "Regenstrief Institute, Inc. and the Logical Observation Identifiers Names and Codes "
    "(LOINC) Committee and is available at no cost under the license at "
    "http://loinc.org/license. LOINC® is a registered United States trademark of "
    "Regenstrief Institute, Inc."
)
REQUIRED = ("LOINC_NUM", "LONG_COMMON_NAME")
#: column -> FHIR property type
PROPERTY_COLUMNS: dict[str, str] = {
    "COMPONENT": "string",
    "PROPERTY": "string",
    "TIME_ASPCT": "string",
    "SYSTEM": "string",
    "SCALE_TYP": "string",
    "METHOD_TYP": "string",
    "CLASS": "string",
    "CLASSTYPE": "string",
    "STATUS": "code",
    "ORDER_OBS": "string",
    "EXAMPLE_UNITS": "string",
    "EXAMPLE_UCUM_UNITS": "string",
    "VersionFirstReleased": "string",
    "VersionLastChanged": "string",
}
DESIGNATION_COLUMNS = ("SHORTNAME", "DisplayName", "CONSUMER_NAME")
_CODE = re.compile(r"^\d{1,8}-\d$")
_VERSION_IN_PATH = re.compile(r"Loinc_?(\d+\.\d+)", re.I)


def load_loinc_csv(
    src: Source, *, version: str | None = None, url: str = LOINC_URL, **_: Any
) -> CodeSystemDraft:
    """``version`` defaults from a path like ``Loinc_2.80/LoincTable/Loinc.csv``."""
    source = source_name(src)
    with open_text(src) as f:
        header = _read_header(f, source)[0]
    if version is None and source:
        m = _VERSION_IN_PATH.search(source)
        version = m.group(1) if m else None
    draft = CodeSystemDraft(
        url=url,
        version=version,
        name="LOINC",
        title="LOINC (Logical Observation Identifiers Names and Codes)",
        publisher="Regenstrief Institute, Inc.",
        copyright=LOINC_NOTICE,
        language="en",
        hierarchy_meaning="is-a",
        properties=[(c, t) for c, t in PROPERTY_COLUMNS.items() if c in header],
        concepts=_rows(src, source),
    )
    return checked(draft, source)


def _read_header(f: IO[str], source: str | None) -> tuple[list[str], int]:
    lineno = 0
    for line in f:
        lineno += 1
        if line.startswith("#") or not line.strip():
            continue
        try:
            header = next(csv.reader([line]))
        except csv.Error as e:
            raise LoadError(f"broken CSV header: {e}", lineno, source=source) from None
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise LoadError(
                f"not a LOINC table: missing column(s) {', '.join(missing)}", lineno, source=source
            )
        return header, lineno
    raise LoadError("empty file: no header row", source=source)


def _rows(src: Source, source: str | None) -> Iterator[Concept]:
    if not is_path(src) and hasattr(src, "seek"):
        src.seek(0)  # type: ignore[union-attr]
    with open_text(src) as f:
        header, skipped = _read_header(f, source)
        index = {c: i for i, c in enumerate(header)}
        props = [(c, index[c]) for c in PROPERTY_COLUMNS if c in index]
        designations = [(c, index[c]) for c in DESIGNATION_COLUMNS if c in index]
        code_i, name_i = index["LOINC_NUM"], index["LONG_COMMON_NAME"]
        status_i = index.get("STATUS")
        reader = csv.reader(f)
        n = len(header)
        try:
            for row in reader:
                lineno = skipped + reader.line_num
                if not row:
                    continue
                if len(row) != n:
                    raise LoadError(f"expected {n} fields, found {len(row)}", lineno)
                code = row[code_i].strip()
                if not _CODE.match(code):
                    raise LoadError(f"not a LOINC code: {code!r}", lineno)
                concept = Concept(code=code, display=row[name_i] or None)
                for column, i in designations:
                    if row[i]:
                        concept.designations.append(Designation(row[i], "en", column))
                for column, i in props:
                    if row[i]:
                        concept.properties[column] = [row[i]]
                if status_i is not None and row[status_i] == "DEPRECATED":
                    concept.inactive = True
                yield concept
        except csv.Error as e:
            raise LoadError(f"broken CSV: {e}", skipped + reader.line_num) from None
