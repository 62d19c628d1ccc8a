"""The scratch SQLite database a SNOMED CT RF2 release is staged in while it is read: the
loader (``enjournal.terminology.loaders.rf2``) adds the release's active rows, then reads
each table once in concept-id order and merges them.  Not the server's database: a file in
a temporary directory, written without a journal."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

_TABLES = """
CREATE TABLE c (id INTEGER PRIMARY KEY, time TEXT, active TEXT, module TEXT, status TEXT);
CREATE TABLE d (concept INTEGER, id INTEGER, lang TEXT, type TEXT, term TEXT);
CREATE TABLE l (description INTEGER, refset TEXT, acceptability TEXT);
CREATE TABLE r (source INTEGER, destination TEXT);
"""
_INDEXES = """
CREATE INDEX d_concept ON d (concept, id);
CREATE INDEX l_description ON l (description);
CREATE INDEX r_source ON r (source, destination);
"""


class Rf2Stage:
    """Staging tables in ``directory``: concepts, descriptions, language refset members and
    is-a relationships."""

    def __init__(self, directory: str):
        self.db = sqlite3.connect(os.path.join(directory, "stage.sqlite"))
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("PRAGMA cache_size = -16000")  # 16 MB

    def create(self) -> None:
        self.db.executescript(_TABLES)

    def add_concepts(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """(id, effective time, active, module, definition status); a later row wins."""
        self.db.executemany("INSERT OR REPLACE INTO c VALUES (?,?,?,?,?)", rows)

    def add_descriptions(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """(concept, description id, language, type, term)."""
        self.db.executemany("INSERT INTO d VALUES (?,?,?,?,?)", rows)

    def add_language(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """(description id, refset, acceptability)."""
        self.db.executemany("INSERT INTO l VALUES (?,?,?)", rows)

    def add_parents(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """(source concept, destination concept) of is-a relationships."""
        self.db.executemany("INSERT INTO r VALUES (?,?)", rows)

    def finish(self) -> None:
        """Index what was added and commit it, before reading."""
        self.db.executescript(_INDEXES)
        self.db.commit()

    def descriptions(self) -> Iterator[tuple[Any, ...]]:
        """(concept, id, language, type, term, refset, acceptability) by concept, id."""
        return self.db.execute(
            "SELECT d.concept, d.id, d.lang, d.type, d.term, l.refset, "
            "l.acceptability FROM d LEFT JOIN l ON l.description = d.id "
            "ORDER BY d.concept, d.id"
        )

    def parents(self) -> Iterator[tuple[Any, ...]]:
        """(concept, parent) by concept, parent."""
        return self.db.execute("SELECT DISTINCT source, destination FROM r ORDER BY 1, 2")

    def concepts(self) -> Iterator[tuple[Any, ...]]:
        """(id, effective time, active, module, definition status) by id."""
        return self.db.execute("SELECT id, time, active, module, status FROM c ORDER BY id")

    def close(self) -> None:
        self.db.close()
