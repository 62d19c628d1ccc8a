"""SNOMED CT RF2 snapshot releases (a release directory or its ``.zip``).

Files used (all under any ``Snapshot`` folder, found by name):

- ``sct2_Concept_Snapshot*.txt``: id, effectiveTime, active, moduleId, definitionStatusId;
- ``sct2_Description_Snapshot*.txt`` (and ``sct2_TextDefinition_Snapshot*.txt``): active
  descriptions -> designations (``use`` = the typeId: FSN 900000000000003001, synonym
  900000000000013009, definition 900000000000550004; ``language`` = languageCode, or the
  BCP-47 tag of the language refset the description is in, see ``language_refsets``);
- ``der2_cRefset_LanguageSnapshot*.txt``: which synonym is preferred -> the display;
- ``sct2_Relationship_Snapshot*.txt``: active inferred ``116680003 |Is a|`` -> parents;
- ``der2_ssRefset_ModuleDependencySnapshot*.txt``: the edition module for the version URI
  ``http://snomed.info/sct/<module>/version/<effectiveTime>``.

Streaming: concepts, active descriptions, language refset members and active is-a
relationships are first staged into a temporary SQLite file (not memory; ``work_dir``), then
read back in one ordered scan per table and merged by concept id; memory stays flat
whatever the release size.  Concepts come out in SCTID order.

Never ship SNOMED CT content: it needs an Affiliate Licence (free in Norway).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from enjournal.storage.terminology.rf2_stage import Rf2Stage
from enjournal.terminology.loaders import LoadError
from enjournal.terminology.model import CodeSystemDraft, Concept, Designation

SCT_URL = "http://snomed.info/sct"
IS_A = "116680003"
FSN = "900000000000003001"
SYNONYM = "900000000000013009"
DEFINITION = "900000000000550004"
PREFERRED = "900000000000548007"
DEFINED = "900000000000073002"
CORE_MODULE = "900000000000207008"
NO_EXTENSION_MODULE = "51000202101"

#: language refset id -> BCP-47 tag; the order is the display preference
DEFAULT_LANGUAGE_REFSETS: dict[str, str] = {
    "900000000000509007": "en-US",
    "900000000000508004": "en-GB",
}

CONCEPT_COLUMNS = ["id", "effectiveTime", "active", "moduleId", "definitionStatusId"]
DESCRIPTION_COLUMNS = [
    "id",
    "effectiveTime",
    "active",
    "moduleId",
    "conceptId",
    "languageCode",
    "typeId",
    "term",
    "caseSignificanceId",
]
RELATIONSHIP_COLUMNS = [
    "id",
    "effectiveTime",
    "active",
    "moduleId",
    "sourceId",
    "destinationId",
    "relationshipGroup",
    "typeId",
    "characteristicTypeId",
    "modifierId",
]
LANGUAGE_COLUMNS = [
    "id",
    "effectiveTime",
    "active",
    "moduleId",
    "refsetId",
    "referencedComponentId",
    "acceptabilityId",
]
MODULE_DEPENDENCY_COLUMNS = [
    "id",
    "effectiveTime",
    "active",
    "moduleId",
    "refsetId",
    "referencedComponentId",
    "sourceEffectiveTime",
    "targetEffectiveTime",
]

_PATTERNS = {
    "concept": re.compile(r"^sct2_Concept_Snapshot.*\.txt$"),
    "description": re.compile(r"^sct2_(Description|TextDefinition)_Snapshot.*\.txt$"),
    "relationship": re.compile(r"^sct2_Relationship_Snapshot.*\.txt$"),
    "language": re.compile(r"^der2_cRefset_LanguageSnapshot.*\.txt$"),
    "module_dependency": re.compile(r"^der2_ssRefset_ModuleDependencySnapshot.*\.txt$"),
}
_DATE = re.compile(r"_(\d{8})(?:\.txt)?$")


class _Release:
    """The RF2 files of a release directory or zip, by role."""

    def __init__(self, path: Path):
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        names: list[str]
        if path.is_dir():
            names = [str(p.relative_to(path)) for p in path.rglob("*.txt")]
        elif zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            names = [n for n in self.zip.namelist() if n.endswith(".txt")]
        elif path.exists():
            raise LoadError("not an RF2 release directory or zip", source=str(path))
        else:
            raise LoadError("no such file or directory", source=str(path))
        self.files: dict[str, list[str]] = {role: [] for role in _PATTERNS}
        for name in sorted(names):
            base = name.replace("\\", "/").rsplit("/", 1)[-1]
            for role, pattern in _PATTERNS.items():
                if pattern.match(base):
                    self.files[role].append(name)
        if not self.files["concept"]:
            raise LoadError("no sct2_Concept_Snapshot*.txt in the release", source=str(path))

    def label(self, name: str) -> str:
        return f"{self.path}/{name}" if self.zip is None else f"{self.path}!{name}"

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[str]]:
        if self.zip is not None:
            raw: IO[bytes] = self.zip.open(name)
        else:
            raw = open(self.path / name, "rb")  # noqa: SIM115
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            yield text

    def rows(self, name: str, columns: list[str]) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) for each data row, checking the header and field count."""
        label = self.label(name)
        with self.open(name) as f:
            header = f.readline().rstrip("\r\n").split("\t")
            if header[: len(columns)] != columns:
                raise LoadError(
                    f"unexpected columns {header!r}: expected {columns!r}", 1, source=label
                )
            n = len(header)
            lineno = 1
            try:
                for line in f:
                    lineno += 1
                    line = line.rstrip("\r\n")
                    if not line:
                        continue
                    fields = line.split("\t")
                    if len(fields) != n:
                        raise LoadError(
                            f"expected {n} tab-separated fields, found {len(fields)}",
                            lineno,
                            source=label,
                        )
                    yield lineno, fields
            except UnicodeDecodeError as e:
                raise LoadError(f"not UTF-8 text ({e.reason})", lineno + 1, source=label) from None

    def check_header(self, name: str, columns: list[str]) -> None:
        with self.open(name) as f:
            header = f.readline().rstrip("\r\n").split("\t")
        if header[: len(columns)] != columns:
            raise LoadError(
                f"unexpected columns {header!r}: expected {columns!r}", 1, source=self.label(name)
            )


def _edition_module(release: _Release) -> tuple[str | None, str | None]:
    """(module, effectiveTime) of the edition from the module dependency refset: the source
    module no other module depends on, at its latest sourceEffectiveTime."""
    sources: dict[str, str] = {}
    targets: set[str] = set()
    for name in release.files["module_dependency"]:
        for _, row in release.rows(name, MODULE_DEPENDENCY_COLUMNS):
            if row[2] != "1":
                continue
            sources[row[3]] = max(sources.get(row[3], ""), row[6])
            targets.add(row[5])
    tops = [m for m in sources if m not in targets]
    if len(tops) == 1:
        return tops[0], sources[tops[0]] or None
    return None, None


def load_rf2(
    path: str | os.PathLike[str],
    *,
    module_id: str | None = None,
    effective_time: str | None = None,
    version: str | None = None,
    language_refsets: dict[str, str] | None = None,
    work_dir: str | None = None,
    **_: Any,
) -> CodeSystemDraft:
    """A SNOMED CT RF2 snapshot release (directory or zip).

    ``language_refsets`` maps language refset ids to BCP-47 tags, in display preference
    order (default en-US then en-GB; for the Norwegian extension pass its bokmål/nynorsk
    refsets first).  ``module_id``/``effective_time`` override what the release says;
    ``version`` overrides the whole version URI.  ``work_dir`` holds the staging file.
    """
    release = _Release(Path(path))
    checks = [
        ("concept", CONCEPT_COLUMNS),
        ("description", DESCRIPTION_COLUMNS),
        ("relationship", RELATIONSHIP_COLUMNS),
        ("language", LANGUAGE_COLUMNS),
        ("module_dependency", MODULE_DEPENDENCY_COLUMNS),
    ]
    for role, columns in checks:
        for name in release.files[role]:
            release.check_header(name, columns)
    if version is None:
        dep_module, dep_time = _edition_module(release)
        concept_file = release.files["concept"][0]
        module = module_id or dep_module
        if module is None:
            if "_INT_" in concept_file or "_INT" in concept_file.rsplit("/", 1)[-1]:
                module = CORE_MODULE
            elif "_NO" in concept_file.rsplit("/", 1)[-1]:
                module = NO_EXTENSION_MODULE
            else:
                raise LoadError(
                    "cannot tell the edition module (no module dependency refset): pass module_id=",
                    source=str(path),
                )
        m = _DATE.search(concept_file)
        when = effective_time or (m.group(1) if m else None) or dep_time
        if when is None:
            raise LoadError("cannot tell the release date: pass effective_time=", source=str(path))
        version = f"{SCT_URL}/{module}/version/{when}"
    refsets = dict(language_refsets or DEFAULT_LANGUAGE_REFSETS)
    return CodeSystemDraft(
        url=SCT_URL,
        version=version,
        name="SNOMED_CT",
        title="SNOMED CT",
        publisher="SNOMED International",
        copyright="This material includes SNOMED Clinical Terms (SNOMED CT), used under the "
        "SNOMED CT Affiliate Licence; SNOMED CT is a registered trademark of SNOMED "
        "International.",
        hierarchy_meaning="is-a",
        properties=[
            ("moduleId", "code"),
            ("effectiveTime", "string"),
            ("sufficientlyDefined", "boolean"),
        ],
        concepts=_concepts(release, refsets, work_dir),
    )


def _batched(rows: Iterator[Any], insert: Callable[[list[Any]], None], size: int = 2000) -> None:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            insert(batch)
            batch = []
    if batch:
        insert(batch)


def _stage(release: _Release, stage: Rf2Stage) -> None:
    stage.create()
    for name in release.files["concept"]:
        label = release.label(name)

        def concept_rows(name: str = name, label: str = label) -> Iterator[tuple[Any, ...]]:
            for lineno, f in release.rows(name, CONCEPT_COLUMNS):
                if not f[0].isdigit():
                    raise LoadError(f"not an SCTID: {f[0]!r}", lineno, source=label)
                yield (int(f[0]), f[1], f[2], f[3], f[4])

        _batched(
            concept_rows(),
            stage.add_concepts,
        )
    for name in release.files["description"]:
        _batched(
            (
                (int(f[4]), int(f[0]), f[5], f[6], f[7])
                for _, f in release.rows(name, DESCRIPTION_COLUMNS)
                if f[2] == "1"
            ),
            stage.add_descriptions,
        )
    for name in release.files["language"]:
        _batched(
            (
                (int(f[5]), f[4], f[6])
                for _, f in release.rows(name, LANGUAGE_COLUMNS)
                if f[2] == "1"
            ),
            stage.add_language,
        )
    for name in release.files["relationship"]:
        _batched(
            (
                (int(f[4]), f[5])
                for _, f in release.rows(name, RELATIONSHIP_COLUMNS)
                if f[2] == "1" and f[7] == IS_A
            ),
            stage.add_parents,
        )
    stage.finish()


def _groups(cursor: Iterator[tuple[Any, ...]]) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
    """Rows ordered by their first column, grouped by it."""
    key: int | None = None
    group: list[tuple[Any, ...]] = []
    for row in cursor:
        if row[0] != key:
            if group:
                yield key, group  # type: ignore[misc]
            key, group = row[0], []
        group.append(row)
    if group:
        yield key, group  # type: ignore[misc]


class _Merge:
    """Look-ups in increasing key order over a grouped, ordered stream."""

    def __init__(self, groups: Iterator[tuple[int, list[tuple[Any, ...]]]]):
        self.groups = groups
        self.head = next(groups, None)

    def take(self, key: int) -> list[tuple[Any, ...]]:
        while self.head is not None and self.head[0] < key:
            self.head = next(self.groups, None)
        if self.head is not None and self.head[0] == key:
            rows = self.head[1]
            self.head = next(self.groups, None)
            return rows
        return []


def _concepts(
    release: _Release, refsets: dict[str, str], work_dir: str | None
) -> Iterator[Concept]:
    """Stage everything in SQLite, then one ordered scan per table, merged by concept id."""
    rank = {refset: i for i, refset in enumerate(refsets)}
    with tempfile.TemporaryDirectory(prefix="enjournal-rf2-", dir=work_dir) as tmp:
        stage = Rf2Stage(tmp)
        try:
            try:
                _stage(release, stage)
            except ValueError as e:
                raise LoadError(f"a non-numeric SCTID ({e})", source=str(release.path)) from None
            descriptions = _Merge(_groups(stage.descriptions()))
            parents = _Merge(_groups(stage.parents()))
            for row in stage.concepts():
                yield _concept(row, descriptions.take(row[0]), parents.take(row[0]), refsets, rank)
        finally:
            stage.close()
            if release.zip is not None:
                release.zip.close()


def _concept(
    c: tuple[Any, ...],
    descriptions: list[tuple[Any, ...]],
    parents: list[tuple[Any, ...]],
    refsets: dict[str, str],
    rank: dict[str, int],
) -> Concept:
    concept = Concept(
        code=str(c[0]),
        inactive=c[2] != "1",
        properties={
            "moduleId": [c[3]],
            "effectiveTime": [c[1]],
            "sufficientlyDefined": [c[4] == DEFINED],
        },
    )
    best: tuple[int, str] | None = None  # (rank, term) of the preferred synonym
    fallback_synonym = fsn = None
    seen: dict[int, int] = {}  # description id -> index in designations
    for _, did, lang, dtype, term, refset, acceptability in descriptions:
        tag = refsets.get(refset) if refset else None
        if did in seen:
            i = seen[did]
            old = concept.designations[i]
            if tag and rank[refset] < _rank_of(old.language, refsets, rank):
                concept.designations[i] = Designation(term, tag, dtype)
        else:
            seen[did] = len(concept.designations)
            concept.designations.append(Designation(term, tag or lang, dtype))
        if dtype == SYNONYM:
            fallback_synonym = fallback_synonym or term
            if acceptability == PREFERRED:
                r = rank.get(refset, len(rank)) if refset else len(rank)
                if best is None or r < best[0]:
                    best = (r, term)
        elif dtype == FSN:
            fsn = fsn or term
    concept.display = best[1] if best else fallback_synonym or fsn
    if not concept.inactive:
        concept.parents = [r[1] for r in parents]
    return concept


def _rank_of(tag: str | None, refsets: dict[str, str], rank: dict[str, int]) -> int:
    for refset, t in refsets.items():
        if t == tag:
            return rank[refset]
    return len(rank)
