"""``enjournal terminology load FILE...`` and the terminology enjournal ships.

Each file is loaded in one transaction: a broken file (``LoadError`` while parsing, even
half-way through a stream) rolls back and nothing of it is stored; the other files still
load.  Progress shows concepts counted as they stream; a summary table ends the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from enjournal.terminology.loaders import LoadError, detect_and_load
from enjournal.terminology.model import CodeSystemDraft, Concept

DATA = Path(__file__).resolve().parent / "data"


def shipped_drafts() -> Iterator[CodeSystemDraft]:
    """Drafts of everything under ``enjournal/terminology/data/``: the Volven kodeverk,
    the common UCUM units and the LOINC extract (see ``data/README.md``)."""
    from enjournal.terminology.loaders.fhir_json import load_fhir_json_all
    from enjournal.terminology.loaders.loinc_csv import load_loinc_csv

    for path in sorted((DATA / "kodeverk").glob("*.json")):
        yield from load_fhir_json_all(path)
    yield from load_fhir_json_all(DATA / "ucum-common.json")
    loinc = load_loinc_csv(DATA / "loinc-vitals-labs.csv")
    loinc.content = "fragment"  # an extract: other LOINC codes are real codes too
    yield loinc


async def load_shipped(store: Any) -> int:
    """Store every shipped code system (one transaction); returns the number of concepts."""
    from enjournal.terminology.loading import save_code_system

    total = 0
    async with store.transaction() as tx:
        for draft in shipped_drafts():
            counter = _Counter(draft.concepts)
            draft.concepts = counter
            await save_code_system(tx, draft)
            total += counter.count
    return total


async def load_shipped_missing(store: Any) -> int:
    """What ``enjournal migrate`` loads: each shipped code system whose url the database
    does not hold in any version (one transaction); returns the number of concepts loaded.
    Idempotent, and it never shadows a system an operator loaded (a full LOINC stays the
    newest); a newer shipped edition of a held system is loaded with ``terminology load``."""
    from enjournal.storage.terminology.code_systems import held_urls
    from enjournal.terminology.loading import save_code_system

    total = 0
    async with store.transaction() as tx:
        # Several servers may start (and migrate) at once: one loads, the others then see
        # what it loaded.  SQLite's single writer serialises this anyway.
        await tx.lock_criteria("CodeSystem", "shipped code lists")
        held = await held_urls(tx)
        for draft in shipped_drafts():
            if draft.url in held:
                continue
            counter = _Counter(draft.concepts)
            draft.concepts = counter
            await save_code_system(tx, draft)
            held.add(draft.url)
            total += counter.count
    return total


class _Counter:
    """Wraps a concept stream, counting and reporting progress as it is consumed."""

    def __init__(self, concepts: Iterable[Concept], tick: Any = None):
        self.concepts = concepts
        self.tick = tick
        self.count = 0

    def __iter__(self) -> Iterator[Concept]:
        for concept in self.concepts:
            self.count += 1
            if self.tick is not None and self.count % 500 == 0:
                self.tick(self.count)
            yield concept
        if self.tick is not None:
            self.tick(self.count)


@dataclass
class _Result:
    path: str
    systems: list[str]
    concepts: int
    seconds: float
    error: str | None = None


async def load_command(
    database_url: str, paths: Iterable[str | os.PathLike[str]], *, console: Console | None = None
) -> int:
    """Load each file into the database; 0 when all loaded, 1 when any failed."""
    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.settings import Settings
    from enjournal.terminology.loading import save_code_system

    console = console or Console(stderr=True)
    results: list[_Result] = []
    platform = await build_platform(Settings.from_env(database_url=database_url))
    store = platform.store
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,} concepts"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            for path in paths:
                results.append(await _load_one(store, save_code_system, Path(path), progress))
                result = results[-1]
                if result.error:
                    console.print(f"[red]✗ {result.path}: {result.error} (nothing loaded)")
                else:
                    console.print(
                        f"[green]✓ {result.path}: {result.concepts:,} concepts "
                        f"({', '.join(result.systems)})"
                    )
    finally:
        await close_platform(platform)
    _summary(console, results)
    return 1 if any(r.error for r in results) else 0


async def _load_one(store: Any, save: Any, path: Path, progress: Progress) -> _Result:
    start = time.monotonic()
    result = _Result(str(path), [], 0, 0.0)
    task: TaskID = progress.add_task(path.name, total=None)

    def tick(n: int) -> None:
        progress.update(task, completed=result.concepts + n)

    try:
        drafts = detect_and_load(path)
        async with store.transaction() as tx:
            for draft in drafts:
                label = draft.url + (f"|{draft.version}" if draft.version else "")
                progress.update(task, description=f"{path.name}: {label}")
                counter = _Counter(draft.concepts, tick)
                draft.concepts = counter
                await save(tx, draft)
                result.systems.append(label)
                result.concepts += counter.count
    except LoadError as e:
        result.error = str(e)
    except Exception as e:  # a file must not take the others down; report it
        result.error = f"{type(e).__name__}: {e}"
    finally:
        progress.remove_task(task)
        result.seconds = time.monotonic() - start
    if result.error:
        result.systems, result.concepts = [], 0
    return result


def _summary(console: Console, results: list[_Result]) -> None:
    table = Table(title="Terminology load")
    table.add_column("File")
    table.add_column("Code systems")
    table.add_column("Concepts", justify="right")
    table.add_column("Time", justify="right")
    table.add_column("Result")
    for r in results:
        table.add_row(
            r.path,
            "\n".join(r.systems) or "-",
            f"{r.concepts:,}",
            f"{r.seconds:.1f}s",
            "[red]failed, nothing loaded" if r.error else "[green]loaded",
        )
    console.print(table)
    failed = sum(1 for r in results if r.error)
    loaded = len(results) - failed
    console.print(
        f"{loaded} file(s) loaded, {sum(r.concepts for r in results):,} concepts"
        + (f"; [red]{failed} failed" if failed else "")
    )
