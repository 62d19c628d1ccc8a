"""``enjournal import``: load Bundles and NDJSON files, each file all-or-nothing.

Transaction and batch Bundles go through the same code as ``POST /fhir``; collection Bundles,
single resources and NDJSON lines are stored as updates (when they carry an id) or creates.
Each file is one database transaction, so a bad file is reported, skipped, and leaves nothing
half-written, even if the process is killed mid-file.

Shared resources that exports repeat in every patient's transaction Bundle (Synthea's
Organization, Practitioner, Location, ...) are merged by identifier: a plain POST of one
becomes a conditional create on its first identifier, so a copy whose identifier is already
stored is not stored again; references to it point at the stored one.  The summary counts
these as merged, apart from the resources stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from enjournal.fhir import jsonio
from enjournal.fhir.errors import FhirError, Invalid
from enjournal.rest.interactions.common import known_type, validate_for_write
from enjournal.rest.message import FhirRequest
from enjournal.rest.router import handle
from enjournal.storage import Store, Transaction


@dataclass
class FileResult:
    path: Path
    resources: int = 0  # stored (created or updated)
    merged: int = 0  # copies of a stored resource, matched by identifier and not stored again
    seconds: float = 0.0
    error: str | None = None


def expand(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".json", ".ndjson"))
        else:
            files.append(path)
    return files


async def import_file(store: Store, path: Path, operations=None) -> FileResult:
    """Import one file; ``operations`` (the platform's) serve operations named in a Bundle."""
    result = FileResult(path)
    started = time.perf_counter()
    try:
        if path.suffix == ".ndjson":
            result.resources = await _import_ndjson(store, path)
        else:
            result.resources, result.merged = await _import_json(store, path, operations)
    except FhirError as error:
        result.error = "; ".join(issue.diagnostics for issue in error.issues)[:500]
    except OSError as error:
        result.error = f"cannot read the file: {error.strerror}"
    result.seconds = time.perf_counter() - started
    return result


# Shared resources that exports like Synthea's repeat in every patient's Bundle.
SHARED_TYPES = {"Organization", "Practitioner", "Location", "Medication", "PractitionerRole"}


def add_identity_conditions(bundle: dict) -> bool:
    """Turn plain POSTs of shared resources into conditional creates on their identifier,
    so loading many Bundles that repeat one GP or hospital stores it once.  Returns whether
    anything changed."""
    changed = False
    for entry in bundle.get("entry") or []:
        request, resource = entry.get("request") or {}, entry.get("resource") or {}
        if request.get("method") != "POST" or request.get("ifNoneExist"):
            continue
        if resource.get("resourceType") not in SHARED_TYPES:
            continue
        for identifier in resource.get("identifier") or []:
            if identifier.get("system") and identifier.get("value"):
                system, value = identifier["system"], identifier["value"]
                request["ifNoneExist"] = f"identifier={_escape(system)}|{_escape(value)}"
                changed = True
                break
    return changed


def _escape(value: str) -> str:
    from urllib.parse import quote

    return quote(value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,"), safe=":/")


async def _import_json(store: Store, path: Path, operations=None) -> tuple[int, int]:
    """(stored, merged) for one JSON file."""
    body = path.read_bytes()
    try:
        data = jsonio.loads(body)
    except jsonio.JsonError as error:
        raise Invalid(f"not valid JSON: {error}") from None
    if not isinstance(data, dict) or "resourceType" not in data:
        raise Invalid("not a FHIR resource (no resourceType)")
    if data["resourceType"] == "Bundle" and data.get("type") in ("transaction", "batch"):
        if data["type"] == "transaction" and add_identity_conditions(data):
            body = jsonio.dumps(data)
        request = FhirRequest("POST", [], body=body, operations=operations)
        response = await handle(request, store)
        if response.status >= 400:
            issues = orjson.loads(response.body).get("issue", [])
            raise Invalid("; ".join(i.get("diagnostics", "") for i in issues) or "rejected")
        entries = orjson.loads(response.body).get("entry", [])
        failed = [e for e in entries if not e["response"]["status"].startswith("2")]
        if failed:  # a batch: report the entries that did not go in
            raise Invalid(f"{len(failed)} of {len(entries)} batch entries failed")
        merged = _merged(data.get("entry") or [], entries)
        return len(entries) - merged, merged
    if data["resourceType"] == "Bundle":
        resources = [e["resource"] for e in data.get("entry", []) if "resource" in e]
    else:
        resources = [data]
    for resource in resources:
        _check(resource)
    async with store.transaction() as tx:
        for start in range(0, len(resources), BATCH):
            await _put_many(tx, resources[start : start + BATCH])
    return len(resources), 0


def _merged(requests: list[dict], responses: list[dict]) -> int:
    """Conditional creates answered 200: the resource matched one already stored."""
    return sum(
        1
        for entry, answer in zip(requests, responses, strict=False)
        if (entry.get("request") or {}).get("ifNoneExist")
        and answer["response"]["status"].startswith("200")
    )


# Resources written per ``create_many`` call: one statement for the resources rows of each.
BATCH = 1000


async def _import_ndjson(store: Store, path: Path) -> int:
    count = 0
    async with store.transaction() as tx:
        batch: list[dict] = []
        numbers: list[int] = []  # the line of each resource in the batch, for errors
        with path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    resource = jsonio.loads(line)
                except jsonio.JsonError as error:
                    raise Invalid(f"line {number}: not valid JSON: {error}") from None
                try:
                    _check(resource)
                except FhirError as error:
                    raise Invalid(f"line {number}: {error.issues[0].diagnostics}") from None
                batch.append(resource)
                numbers.append(number)
                count += 1
                if len(batch) == BATCH:
                    await _put_lines(tx, batch, numbers)
                    batch, numbers = [], []
        await _put_lines(tx, batch, numbers)
    return count


async def _put_lines(tx: Transaction, batch: list[dict], numbers: list[int]) -> None:
    try:
        await _put_many(tx, batch)
    except FhirError as error:
        number = numbers[getattr(error, "index", 0)]
        raise Invalid(f"line {number}: {error.issues[0].diagnostics}") from None


def _check(resource: object) -> None:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise Invalid("not a FHIR resource (no resourceType)")
    known_type(resource["resourceType"])
    validate_for_write(resource)


async def _put_many(tx: Transaction, resources: list[dict]) -> None:
    """Store each resource as an update when it carries an id (update-as-create when the
    id is new), else as a create: ``create_many`` does both."""
    await tx.create_many(resources, [r.get("id") or None for r in resources])


async def run_import(
    database_url: str,
    paths: list[str],
    console: Console | None = None,
    *,
    brief: bool = False,
    check_codes: bool = True,
) -> int:
    """Import ``paths``; print a per-file summary (``brief``: only failed files and totals);
    exit status 1 if any file failed."""
    console = console or Console(stderr=True)
    files = expand(paths)
    if not files:
        console.print("[red]no .json or .ndjson files found[/red]")
        return 1
    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.settings import Settings

    settings = Settings.from_env(database_url=database_url, terminology_check=check_codes)
    platform = await build_platform(settings)
    store = platform.store
    results: list[FileResult] = []
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} files"),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("importing", total=len(files))
            for path in files:
                results.append(await import_file(store, path, platform.operations))
                progress.advance(task)
    finally:
        await close_platform(platform)
    shown = [r for r in results if r.error] if brief else results
    table = summary_table(results, shown)
    console.print(table if shown else table.caption)
    return 1 if any(r.error for r in results) else 0


def summary_table(results: list[FileResult], shown: list[FileResult]) -> Table:
    table = Table(title="import summary")
    for column in ("file", "stored", "merged", "seconds", "result"):
        table.add_column(column)
    for r in shown:
        table.add_row(
            str(r.path),
            str(r.resources),
            str(r.merged),
            f"{r.seconds:.2f}",
            f"[red]skipped: {r.error}[/red]" if r.error else "[green]loaded[/green]",
        )
    table.caption = summary(results)
    return table


def summary(results: list[FileResult]) -> str:
    loaded = [r for r in results if not r.error]
    stored = sum(r.resources for r in loaded)
    merged = sum(r.merged for r in loaded)
    failed = len(results) - len(loaded)
    seconds = sum(r.seconds for r in results) or 1e-9
    return (
        f"{len(loaded)} of {len(results)} files loaded: {stored} resources stored, "
        f"{merged} merged as duplicates of stored ones (same identifier), "
        f"{failed} files failed (nothing stored from them); "
        f"{(stored + merged) / seconds:.0f} resources/s"
    )
