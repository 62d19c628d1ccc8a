"""Register feeds: each register's pseudonymised file set for a period (docs/registers.md).

A feed is defined by data, not code: ``feeds/<register>/feed.json`` (what each file holds,
what is pseudonymised, coarsened and removed, where identity goes) and the SQL-on-FHIR v2
ViewDefinitions beside it, run by ``enjournal.storage.views.run_view``.  A register's module
(``kpr.py``) turns the views' rows into the files.  :func:`export` makes one file set:

    <out>/<register>/<period>/<register>-<file>-<period>.csv and .parquet   activity files
    <out>/<register>/<period>/identitet/<register>-identitet-<period>.*    identity (0600)
    <out>/<register>/<period>/<register>-kvalitet-<period>.json              data quality
    <out>/<register>/<period>/manifest.json

The resources are read as the registers' own system client (``EXTRACT_CLIENT``) through
``Platform.handle``, so the access policy, guard hooks and audit apply to every read as to
any client's: what the API hides (a privacy lock) the feed does not see.

``$register-export`` (system level, ``register`` and ``period``): the same for a register's
system client (scope ``register/<name>`` or ``register/*``).  With ``Prefer: respond-async``
it runs on the export jobs (``bulk_runner``, kind ``register``): 202 with
``Content-Location`` the status URL (``$export-poll-status?_jobId=``), 202 with
``X-Progress`` (the extract's step) while the job writes the file set, then 200 with a
Parameters: one ``output`` per activity file and the quality report, the identity files
apart as ``identity``, each with its ``$export-file`` URL, and the ``manifest`` (no server
path in it); DELETE cancels.  Only the client that started it, while it still holds the
register's scope, sees its status and fetches its files (the identity file with them).
Without the preference it runs inside the request and answers with the manifest and the
file set's location on the server, as the command does.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import orjson

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Invalid
from enjournal.rest.message import FhirRequest, FhirResponse, info_outcome
from enjournal.rest.operations import Operation
from enjournal.security.principal import Principal
from enjournal.services import Job
from enjournal.services.inputs import operation_parameters, refused
from enjournal.services.registers import bulk, kpr
from enjournal.services.registers.bulk_params import preferences
from enjournal.services.registers.bulk_runner import Failed, job_dir
from enjournal.services.registers.pseudonyms import (
    DIRECT_IDENTIFIERS,
    KEY_BYTES,
    Pseudonymiser,
    load_key,
    without_direct_identifiers,
)
from enjournal.storage import Store
from enjournal.storage import exports as exports_db

log = logging.getLogger("enjournal.registers")
DEFINITION = "https://enjournal.no/fhir/OperationDefinition/register-export"
EXTRACT_CLIENT = "register-extract"
# ASSUMED: a reservation against a register's disclosure with the national identity number
# is a Consent of this category (code "<register>-fnr"); the platform had no such kind.
RESERVATION = kpr.RESERVATION
PAGE = 500
NORWAY = ZoneInfo("Europe/Oslo")
FEEDBACK_EVERY = 3_600.0  # seconds: the job looks each hour, writes once a day
# ids per _id search: within the parser's limits (100 values, 2,048 characters a value)
IDS_PER_SEARCH, ID_CHARS = 100, 2_000
# What the extract reads (read and search only; never a register's scope: the policy keeps
# a register's own client out of direct reads).
EXTRACT_SCOPES = frozenset(
    f"system/{t}.rs"
    for t in (
        "Patient",
        "Encounter",
        "Condition",
        "EpisodeOfCare",
        "Organization",
        "Device",
        "Task",
    )
) | {"system/Consent.rs", "system/CodeSystem.rs"}


class UnknownRegister(LookupError):
    """No feed is defined for the register named."""


class BadPeriod(ValueError):
    """A period that is neither a year (2025) nor a month (2025-03)."""


# ---- periods ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    label: str  # "2025" or "2025-03"
    start: date
    end: date  # exclusive

    @property
    def yearly(self) -> bool:
        return len(self.label) == 4

    def search(self, parameter: str = "date") -> list[tuple[str, str]]:
        """FHIR date criteria matching what overlaps the period."""
        start, end = self.start.isoformat(), self.end.isoformat()
        return [(parameter, f"ge{start}"), (parameter, f"lt{end}")]

    def days_overlapping(self, first: date, last: date | None) -> int:
        """Days of [first, last] (last None: ongoing) inside the period."""
        latest = min(last or self.end, self.end - timedelta(days=1))
        return max(0, (latest - max(first, self.start)).days + 1)


def parse_period(text: str) -> Period:
    match = re.fullmatch(r"(\d{4})(?:-(\d{2}))?", (text or "").strip())
    if not match or not 1900 <= int(match.group(1)) <= 2999:
        raise BadPeriod(f"bad period {text!r}: give a year (2025) or a month (2025-03)")
    year = int(match.group(1))
    if match.group(2) is None:
        return Period(str(year), date(year, 1, 1), date(year + 1, 1, 1))
    month = int(match.group(2))
    if not 1 <= month <= 12:
        raise BadPeriod(f"bad period {text!r}: the month must be 01-12")
    end = date(year + month // 12, month % 12 + 1, 1)
    return Period(f"{year}-{month:02d}", date(year, month, 1), end)


# ---- feed definitions ---------------------------------------------------------------------


@dataclass
class Feed:
    name: str
    description: dict
    views: dict[str, dict]  # role in the feed -> ViewDefinition

    @property
    def removed(self) -> frozenset[str]:
        """Columns that must never reach an activity file."""
        person = self.description.get("person") or {}
        return (
            frozenset([*self.description.get("removed", ()), *person.get("national_id", ())])
            | DIRECT_IDENTIFIERS
        )


def _feeds_dir():
    return resources.files("enjournal.services.registers") / "feeds"


def registers() -> list[str]:
    """The registers that have a feed definition."""
    return sorted(d.name for d in _feeds_dir().iterdir() if (d / "feed.json").is_file())


def load_feed(name: str) -> Feed:
    if name not in registers():
        known = ", ".join(registers())
        raise UnknownRegister(f"unknown register {name!r}; known: {known}")
    folder = _feeds_dir() / name
    description = json.loads((folder / "feed.json").read_text())
    views = {
        role: json.loads((folder / file).read_text()) for role, file in description["views"].items()
    }
    return Feed(name, description, views)


def run_views(feed: Feed, roles: Iterable[str], source: list[Path]) -> dict[str, list[dict]]:
    """The rows of each named view of ``feed`` over ``source`` (NDJSON files of resources of
    any types: each view picks its own)."""
    from enjournal.storage.views import run_view

    return {role: run_view(feed.views[role], source, engine="duckdb").to_dicts() for role in roles}


# ---- reading as the registers' system client ------------------------------------------------


def extract_principal() -> Principal:
    return Principal("system", EXTRACT_CLIENT, EXTRACT_CLIENT, EXTRACT_SCOPES, "Registeruttrekk")


class Reader:
    """Searches and code checks through ``Platform.handle`` as the extract's system client."""

    def __init__(self, platform, principal: Principal | None = None):
        self.platform = platform
        self.principal = principal or extract_principal()
        self._codes: dict[tuple[str, str], bool | None] = {}

    async def call(self, path: str, params: list[tuple[str, str]]) -> tuple[int, dict]:
        request = FhirRequest(
            "GET",
            [p for p in path.split("/") if p],
            params,
            {"accept": "application/fhir+json"},
            b"",
            self.platform.settings.fhir_base,
        )
        principal = self.principal if self.platform.security is not None else None
        response = await self.platform.handle(request, principal)
        return response.status, orjson.loads(response.body) if response.body else {}

    async def pages(self, type_: str, params: list[tuple[str, str]]) -> AsyncIterator[list[dict]]:
        """The matches of a search, a page at a time."""
        query: list[tuple[str, str]] | None = [*params, ("_count", str(PAGE))]
        while query is not None:
            status, bundle = await self.call(type_, query)
            if status >= 400:
                raise LookupError(f"{type_} search refused ({status}): {_diagnostics(bundle)}")
            yield [e["resource"] for e in bundle.get("entry") or () if _is_match(e)]
            query = _next_page(bundle)

    async def spool(self, type_: str, params: list[tuple[str, str]], out: BinaryIO) -> int:
        """Write every match to ``out`` as NDJSON, page by page (the pages are not kept:
        the views read the file); how many were written."""
        written = 0
        async for page in self.pages(type_, params):
            out.writelines(orjson.dumps(resource) + b"\n" for resource in page)
            written += len(page)
        return written

    async def spool_ids(self, type_: str, ids: Iterable[str], out: BinaryIO) -> int:
        """``spool`` the resources of ``type_`` with these ids."""
        written = 0
        for group in _groups(sorted({i for i in ids if i})):
            written += await self.spool(type_, [("_id", ",".join(group))], out)
        return written

    async def code_known(self, system: str, code: str) -> bool | None:
        """Whether the platform's terminology holds ``code`` in ``system``; None when it
        does not hold the code system (then only the code's form can be checked)."""
        key = (system, code)
        if key not in self._codes:
            status, answer = await self.call(
                "CodeSystem/$validate-code", [("url", system), ("code", code)]
            )
            self._codes[key] = _validation(answer) if status == 200 else None
        return self._codes[key]


def _groups(ids: list[str]) -> Iterable[list[str]]:
    """``ids`` in groups that fit one search value."""
    group: list[str] = []
    for id_ in ids:
        if group and (len(group) == IDS_PER_SEARCH or len(",".join([*group, id_])) > ID_CHARS):
            yield group
            group = []
        group.append(id_)
    if group:
        yield group


def _is_match(entry: dict) -> bool:
    return (entry.get("search") or {}).get("mode", "match") == "match"


def _next_page(bundle: dict) -> list[tuple[str, str]] | None:
    for link in bundle.get("link") or ():
        if link.get("relation") == "next" and link.get("url"):
            return parse_qsl(urlsplit(link["url"]).query, keep_blank_values=True)
    return None


def _validation(parameters: dict) -> bool | None:
    for part in parameters.get("parameter") or ():
        if part.get("name") == "result":
            return bool(part.get("valueBoolean"))
    return None


def _diagnostics(outcome: dict) -> str:
    issues = outcome.get("issue") or [{}]
    return str(issues[0].get("diagnostics") or "refused")


# ---- progress -----------------------------------------------------------------------------


class Progress:
    """What an export reports as it goes (the CLI draws a bar; the operation ignores it)."""

    def start(self, total: int) -> None:
        return None

    def step(self, description: str) -> None:
        return None


# ---- the file set -------------------------------------------------------------------------


@dataclass
class Extract:
    """What a register's module makes of a period: activity files, identity, report."""

    files: dict[str, list[dict]]
    identity: list[dict]
    report: dict
    counts: dict[str, int] = field(default_factory=dict)


async def export(
    platform,
    name: str,
    period_text: str,
    out: str | Path | None = None,
    progress: Progress | None = None,
    folder: Path | None = None,
) -> dict:
    """Make ``name``'s file set for a period (in ``<out>/<name>/<period>``, or in
    ``folder``); returns its manifest.  UnknownRegister, BadPeriod or MissingKey before
    anything is read."""
    feed = load_feed(name)
    period = parse_period(period_text)
    key = load_key(platform.settings.register_keys, name)
    progress = progress or Progress()
    made = await BUILDERS[name](feed, Reader(platform), period, Pseudonymiser(name, key), progress)
    progress.step("writing the files")
    folder = folder or Path(out or platform.settings.register_out) / name / period.label
    manifest = write_file_set(feed, period, made, folder, platform.clock(), key)
    progress.step("done")
    return manifest


async def quality_report(platform, name: str, period_text: str, now: datetime) -> Path:
    """Only the data-quality report of a period, as ``kvalitet/<name>-kvalitet-<period>-
    <day>.json`` in the period's folder: the municipality's daily feedback.  It needs no
    register key: the run pseudonymises with a throwaway one, and writes no pseudonym."""
    feed, period = load_feed(name), parse_period(period_text)
    throwaway = Pseudonymiser(name, secrets.token_bytes(KEY_BYTES))
    made = await BUILDERS[name](feed, Reader(platform), period, throwaway, Progress())
    folder = Path(platform.settings.register_out) / name / period.label / "kvalitet"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-kvalitet-{period.label}-{now.date().isoformat()}.json"
    path.write_bytes(jsonio.dumps({**made.report, "generated": now.isoformat()}))
    return path


def write_file_set(
    feed: Feed, period: Period, made: Extract, folder: Path, now: datetime, key: bytes
) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for file, rows in made.files.items():
        columns = feed.description["files"][file]
        _refuse_identifying(feed, columns)
        clean = [without_direct_identifiers(row) for row in rows]  # whatever a view selected
        files += _write_table(folder / f"{feed.name}-{file}-{period.label}", columns, clean)
    identity_dir = folder / feed.description["identity"]["file"]
    identity_dir.mkdir(exist_ok=True)
    identity_dir.chmod(0o700)
    identity = _write_table(
        identity_dir / f"{feed.name}-identitet-{period.label}",
        feed.description["identity"]["columns"],
        made.identity,
        private=True,
    )
    report = folder / f"{feed.name}-kvalitet-{period.label}.json"
    report.write_bytes(jsonio.dumps(made.report))
    manifest = {
        "register": feed.name,
        "title": feed.description.get("title"),
        "period": period.label,
        "periodStart": period.start.isoformat(),
        "periodEnd": (period.end - timedelta(days=1)).isoformat(),
        "generated": now.astimezone(UTC).isoformat(),
        "location": str(folder),
        "keyId": hashlib.sha256(key).hexdigest()[:16],  # which key, never the key
        "files": files,
        "identity": identity,
        "quality": {"path": str(report), "findings": made.report.get("total", 0)},
        "counts": made.counts,
    }
    (folder / "manifest.json").write_bytes(jsonio.dumps(manifest))
    return manifest


def _refuse_identifying(feed: Feed, columns: list[str]) -> None:
    """A feed definition that would put identity in an activity file is not run."""
    leaking = sorted(set(columns) & feed.removed)
    if leaking:
        raise ValueError(f"{feed.name}: an activity file may not hold {', '.join(leaking)}")


def _write_table(stem: Path, columns: list[str], rows: list[dict], private: bool = False):
    import pyarrow
    import pyarrow.parquet

    written = []
    csv_path, parquet_path = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    with _open_private(csv_path) if private else csv_path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([row.get(c) for c in columns] for row in rows)
    table = pyarrow.table({c: [row.get(c) for row in rows] for c in columns})
    if private:
        _open_private(parquet_path).close()
    pyarrow.parquet.write_table(table, parquet_path)
    for path in (csv_path, parquet_path):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        written.append({"path": str(path), "rows": len(rows), "sha256": digest})
    return written


def _open_private(path: Path):
    """A file only its owner may read (the identity file)."""
    path.unlink(missing_ok=True)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", newline="")


# ---- the operation ------------------------------------------------------------------------


# A register's module: ``extract(feed, reader, period, pseudonyms, progress) -> Extract``.
BUILDERS: dict[str, Callable[..., Awaitable[Extract]]] = {"kpr": kpr.extract}


def register(platform) -> None:
    """``$register-export``, and the reservation Consents' category, which is a register's
    rule, not an access restriction the guard should apply."""
    platform.consent_systems.add(RESERVATION)

    async def handler(request, repo) -> FhirResponse:
        if "respond-async" in preferences(request):
            return await register_export_async(platform, request)
        return await register_export(platform, request)

    platform.operations.add(
        Operation("register-export", None, False, handler, definition=DEFINITION)
    )


async def register_export(platform, request) -> FhirResponse:
    """The synchronous form: the file set written where the server keeps feeds; the answer
    names the files by their place in the set, as the job's answer does (no server path)."""
    name, period = _checked(platform, request)
    manifest = await export(platform, name, period)
    return FhirResponse.of(_manifest_parameters(_relative(manifest, Path(manifest["location"]))))


async def register_export_async(platform, request) -> FhirResponse:
    """The kick-off: checked as the synchronous call is (register, period, key), then
    queued in a write transaction of its own (the request's is a read)."""
    name, period = _checked(platform, request)
    if not isinstance(platform.store, Store):
        raise Invalid("an asynchronous export needs the SQLite or PostgreSQL store")
    job = bulk.new_job(request, KIND, {"register": name, "period": period})
    async with platform.store.transaction(write=True) as tx:
        await bulk.create_job(tx, job)
    if request.context is not None:
        request.context.record(action="E", subtype="$register-export", purpose="PUBHLTH",
                               query=f"job={job.id} register={name} period={period}")  # fmt: skip
    location = bulk.status_url(request, job.id)
    body = info_outcome(f"export {job.id} queued; poll {location}")
    return FhirResponse.of(body, 202, **{"Content-Location": location})


def _checked(platform, request) -> tuple[str, str]:
    """The register and period asked for, by the register's client, with its key: 400 or
    403 before anything is queued."""
    from enjournal.services.registers.pseudonyms import MissingKey

    op = "$register-export"
    params = operation_parameters(request, op, required=("register", "period"))
    name, period = params["register"], params["period"]
    if not isinstance(name, str) or not isinstance(period, str):
        raise Invalid(f"{op}: 'register' and 'period' are strings")
    _register_client_only(request, op, name)
    try:
        load_feed(name)
        label = parse_period(period).label
        load_key(platform.settings.register_keys, name)
    except (UnknownRegister, BadPeriod) as error:
        raise Invalid(str(error.args[0])) from None
    except MissingKey as error:
        raise no_key(op, name, error) from None
    return name, label


def no_key(op: str, name: str, error: Exception) -> Invalid:
    """The register's key is missing or unusable: the operator's log says where it was
    looked for; the client is told only that (the server's paths are not its business)."""
    log.warning("register %s: %s", name, error.args[0])
    return Invalid(f"{op}: the server holds no usable key for the register {name!r}")


def _register_client_only(request, op: str, name: str) -> None:
    """Only a system client with the register's scope (or every register's) may export."""
    principal: Any = request.guard.principal if request.guard is not None else None
    if principal is None:
        return  # a platform without security (tests of the FHIR core)
    wanted = {f"register/{name}", "register/*"}
    if principal.kind != "system" or not wanted & set(principal.scopes):
        raise refused(request, "r", op, f"{op} is for the register's system client")


def _manifest_parameters(manifest: dict) -> dict:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "manifest", "valueString": jsonio.dumps(manifest).decode()}],
    }


# ---- the job (``Prefer: respond-async``) ----------------------------------------------------

KIND = "register"
OCTETS = "application/octet-stream"
TYPES = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet",
         ".json": "application/json"}  # fmt: skip


class _JobProgress(Progress):
    """The extract's steps in the job's checkpoint: the status answers them as X-Progress
    (the runner saves the checkpoint as it renews the lease)."""

    def __init__(self, job):
        self.job = job

    def step(self, description: str) -> None:
        self.job.progress = {"step": description[:200]}


def job_handler(platform):
    """The runner's handler for ``register`` jobs: the whole file set in the job's folder
    (a job resumed after its worker died makes it again: the extract has no checkpoint)."""
    from enjournal.services.registers.pseudonyms import MissingKey

    async def run(exporter, store, job) -> dict:
        folder = job_dir(platform.settings, job.id, KIND)
        shutil.rmtree(folder, ignore_errors=True)
        params = job.params
        try:
            manifest = await export(platform, params["register"], params["period"],
                                    progress=_JobProgress(job), folder=folder)  # fmt: skip
        except MissingKey as error:
            raise Failed(no_key("$register-export", params["register"], error).message) from None
        except LookupError as error:  # a search refused to the extract's client
            raise Failed(str(error.args[0])[:300]) from None
        return {"manifest": _relative(manifest, folder)}

    return run


def _relative(manifest: dict, folder: Path) -> dict:
    """The manifest with each file named by its path in the job's folder (``file``): no
    server path goes to the client."""

    def named(entry: dict) -> dict:
        rest = {k: v for k, v in entry.items() if k != "path"}
        return {"file": Path(entry["path"]).relative_to(folder).as_posix(), **rest}

    relative = {k: v for k, v in manifest.items() if k != "location"}
    relative["files"] = [named(f) for f in manifest["files"]]
    relative["identity"] = [named(f) for f in manifest["identity"]]
    relative["quality"] = named(manifest["quality"])
    return relative


def _job_progress(job) -> str:
    if job.status == exports_db.QUEUED:
        return "queued"
    return (job.progress or {}).get("step") or "started"


def _job_answer(request, job) -> FhirResponse:
    """The finished job: its files' URLs, the identity files apart, and the manifest."""
    manifest = copy.deepcopy((job.output or {})["manifest"])
    for entry in [*manifest["files"], *manifest["identity"], manifest["quality"]]:
        entry["url"] = bulk.file_url(request, job.id, entry["file"])
    parameters = [
        {"name": "exportId", "valueString": job.id},
        {"name": "status", "valueCode": "completed"},
        *(_file_part("output", f) for f in [*manifest["files"], manifest["quality"]]),
        *(_file_part("identity", f) for f in manifest["identity"]),
        {"name": "manifest", "valueString": jsonio.dumps(manifest).decode()},
    ]
    body = {"resourceType": "Parameters", "parameter": parameters}
    return FhirResponse.of(body, 200, **bulk.expires(job))


def _file_part(name: str, entry: dict) -> dict:
    parts = [{"name": "name", "valueString": entry["file"]},
             {"name": "location", "valueUri": entry["url"]}]  # fmt: skip
    if "rows" in entry:
        parts.append({"name": "rows", "valueInteger": entry["rows"]})
    if "sha256" in entry:
        parts.append({"name": "sha256", "valueString": entry["sha256"]})
    return {"name": name, "part": parts}


def _job_files(job) -> dict[str, str]:
    manifest = (job.output or {}).get("manifest") or {}
    entries = [*manifest.get("files", ()), *manifest.get("identity", ())]
    entries += [manifest["quality"]] if "quality" in manifest else []
    return {e["file"]: TYPES.get(Path(e["file"]).suffix, OCTETS) for e in entries}


def _job_allowed(request, job) -> None:
    """The owner must still be the register's client: its files (the identity file among
    them) are for the register's key holder only."""
    _register_client_only(request, "$register-export", job.params["register"])


bulk.add_kind(
    KIND,
    bulk.Kind(
        progress=_job_progress,
        answer=_job_answer,
        files=_job_files,
        allowed=_job_allowed,
        handler=job_handler,
    ),
)


def jobs(platform) -> list[Job]:
    """During KPR's feedback days (1-15 January, Norwegian time) the municipality gets the
    previous year's data-quality report once a day (domain.md 10)."""

    async def daily_feedback(_store, now: datetime) -> int:
        return await feedback(platform, now)

    return [Job("register-kpr-daily-feedback", FEEDBACK_EVERY, daily_feedback)]


async def feedback(platform, now: datetime) -> int:
    """Write today's report if it is a feedback day and today's is not written yet."""
    from enjournal.services.registers.quality import Deadline

    today = now.astimezone(NORWAY).date()
    deadline = Deadline.after(today.year - 1)
    if not deadline.feedback_from <= today <= deadline.due:
        return 0
    year = str(today.year - 1)
    written = Path(platform.settings.register_out) / "kpr" / year / "kvalitet"
    if (written / f"kpr-kvalitet-{year}-{today.isoformat()}.json").exists():
        return 0
    await quality_report(platform, "kpr", year, now.astimezone(NORWAY))
    return 1
