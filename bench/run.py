"""The benchmark: ingest, read by id, clinical searches and memory, against PostgreSQL.

For each size it generates the demo population, then on fresh databases (dropped afterwards):

1. ingest: transaction Bundles POSTed to an ``enjournal serve`` subprocess by several
   concurrent clients, and ``enjournal import`` as a subprocess, both with full validation
   and indexing; baseline: asyncpg ``copy_records_to_table`` of the same resource JSON into a
   bare ``(id text primary key, content bytea)`` table;
2. read by id at 32 concurrent connections, with the server on 1 and on 2 workers; baseline:
   ``SELECT content FROM bare WHERE id = $1`` through an asyncpg pool at the same concurrency;
3. five typical clinical searches (parameters sampled from the loaded data), p50/p95;
4. peak RSS (VmHWM) of the server's worker processes;
5. EXPLAIN (ANALYZE, BUFFERS) of every SQL statement those searches run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson

from bench import machine
from bench.httpclient import Connection, wait_ready

RESULTS = Path(__file__).parent / "results"
DEFAULT_ADMIN = os.environ.get(
    "ENJOURNAL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
#: Mean resources per patient bundle, measured on the demo population (about 60 with the
#: shared resources spread over the patients); only used to pick the number of patients.
RESOURCES_PER_PATIENT = 60


def log(message: str) -> None:
    print(message, flush=True)


# --- statistics --------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def latency_summary(latencies: list[float], seconds: float) -> dict:
    values = sorted(latencies)
    return {
        "requests": len(values),
        "seconds": round(seconds, 2),
        "per_second": round(len(values) / seconds, 1) if seconds else None,
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p95_ms": round(percentile(values, 95) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "max_ms": round(values[-1] * 1000, 2) if values else None,
    }


# --- databases ---------------------------------------------------------------------------


def db_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


class Databases:
    """Creates uniquely named databases and drops them all at the end."""

    def __init__(self, admin_url: str, keep: bool):
        self.admin_url = admin_url
        self.keep = keep
        self.prefix = f"bench_{os.getpid()}"
        self.created: list[str] = []

    async def create(self, label: str) -> str:
        name = f"{self.prefix}_{label}"
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        return db_url(self.admin_url, name)

    async def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        if self.keep or name not in self.created:
            return
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.created.remove(name)

    async def drop_all(self) -> None:
        for name in list(self.created):
            await self.drop(db_url(self.admin_url, name))


# --- the data ----------------------------------------------------------------------------


@dataclass
class Dataset:
    target: int
    patients: int
    bundles: list[bytes]  # transaction Bundles, the shared one first
    copy_rows: list[tuple[str, bytes]]  # ("Type/id", resource JSON) for the COPY baseline
    directory: Path  # the same bundles as files, for ``enjournal import``
    resources: int = 0
    types: dict[str, int] = field(default_factory=dict)


def make_dataset(target: int, seed: int, workdir: Path) -> Dataset:
    from enjournal.demo.population import generate_population

    patients = max(1, round(target / RESOURCES_PER_PATIENT))
    directory = workdir / f"bundles-{target}"
    directory.mkdir(parents=True, exist_ok=True)
    data = Dataset(target, patients, [], [], directory)
    for i, bundle in enumerate(generate_population(patients, seed)):
        body = orjson.dumps(bundle)
        data.bundles.append(body)
        (directory / f"bundle-{i:06d}.json").write_bytes(body)
        for entry in bundle["entry"]:
            resource = dict(entry["resource"])
            rtype = resource["resourceType"]
            resource.setdefault("id", str(uuid.uuid4()))
            data.copy_rows.append((f"{rtype}/{resource['id']}", orjson.dumps(resource)))
            data.types[rtype] = data.types.get(rtype, 0) + 1
    data.resources = len(data.copy_rows)
    return data


# --- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``enjournal serve`` as a subprocess; remembers its workers' peak RSS."""

    def __init__(
        self, database_url: str, workers: int, logdir: Path, label: str, nodelay: bool = False
    ):
        self.module = "bench.serve_nodelay" if nodelay else "enjournal.cli"
        self.url = database_url
        self.workers = workers
        self.port = free_port()
        self.logfile = logdir / f"server-{label}.log"
        self.proc: subprocess.Popen | None = None
        self.peak_rss_kb: list[int] = []

    async def __aenter__(self) -> Server:
        env = {
            **os.environ,
            "ENJOURNAL_LOG_LEVEL": os.environ.get("ENJOURNAL_LOG_LEVEL", "INFO"),
            # the FHIR core without the security layer (token checks, rate limits, audit);
            # set ENJOURNAL_BENCH_AUTH to measure with it (and configure its issuers)
            "ENJOURNAL_AUTH": os.environ.get("ENJOURNAL_BENCH_AUTH", "off"),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.module,
                "serve",
                "--database",
                self.url,
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            stdout=self.logfile.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            await wait_ready("127.0.0.1", self.port)
            # with several workers, wait until each has started (each opens its own pool)
            deadline = time.monotonic() + 30
            while self.workers > 1 and len(self.worker_pids()) < self.workers:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return machine.server_workers(self.proc.pid)

    def sample_rss(self) -> list[int]:
        peaks = [machine.status_kb(pid, "VmHWM") or 0 for pid in self.worker_pids()]
        if peaks and sum(peaks) > sum(self.peak_rss_kb):
            self.peak_rss_kb = peaks
        return peaks

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    async def __aexit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.sample_rss()
        self.stop()


# --- 1. ingest ---------------------------------------------------------------------------


async def ingest_http(data: Dataset, port: int, clients: int) -> dict:
    started = time.perf_counter()
    conn = Connection("127.0.0.1", port)
    status, body = await conn.request("POST", "/fhir", data.bundles[0])
    if status != 200:
        raise RuntimeError(f"shared bundle rejected: {status} {body[:500]!r}")
    queue = list(reversed(data.bundles[1:]))
    failures: list[str] = []

    async def client() -> None:
        c = Connection("127.0.0.1", port)
        try:
            while queue:
                bundle = queue.pop()
                status, body = await c.request("POST", "/fhir", bundle)
                if status != 200:
                    failures.append(f"{status} {body[:300]!r}")
        finally:
            await c.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    await conn.close()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} bundles failed, e.g. {failures[0]}")
    return {
        "clients": clients,
        "resources": data.resources,
        "bundles": len(data.bundles),
        "seconds": round(seconds, 2),
        "resources_per_second": round(data.resources / seconds, 1),
    }


def ingest_import(data: Dataset, url: str, logdir: Path) -> dict:
    logfile = logdir / f"import-{data.target}.log"
    started = time.perf_counter()
    with logfile.open("wb") as out:
        code = subprocess.call(
            [
                sys.executable,
                "-m",
                "enjournal.cli",
                "import",
                "--database",
                url,
                str(data.directory),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
    seconds = time.perf_counter() - started
    if code != 0:
        tail = logfile.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"enjournal import failed ({code}):\n{tail}")
    return {
        "resources": data.resources,
        "files": len(data.bundles),
        "seconds": round(seconds, 2),
        "resources_per_second": round(data.resources / seconds, 1),
    }


async def ingest_copy(data: Dataset, url: str) -> dict:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE bare (id TEXT PRIMARY KEY, content BYTEA NOT NULL)")
        started = time.perf_counter()
        await conn.copy_records_to_table("bare", records=data.copy_rows)
        seconds = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE bare")
    finally:
        await conn.close()
    return {
        "resources": data.resources,
        "seconds": round(seconds, 2),
        "resources_per_second": round(data.resources / seconds, 1),
    }


# --- 2. read by id -----------------------------------------------------------------------


async def read_by_id_http(port: int, paths: list[str], concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    stop_at = 0.0
    rng = random.Random(1)

    async def client(offset: int, record: bool) -> None:
        nonlocal errors
        c = Connection("127.0.0.1", port)
        i = offset
        try:
            while time.perf_counter() < stop_at:
                path = paths[i % len(paths)]
                i += concurrency
                t0 = time.perf_counter()
                status, _ = await c.request("GET", path)
                if record:
                    latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors += 1
        finally:
            await c.close()

    rng.shuffle(paths)
    # warm-up: connections, statement caches, the page cache
    stop_at = time.perf_counter() + min(2.0, seconds / 3)
    await asyncio.gather(*(client(n, False) for n in range(concurrency)))
    cpu0, t0 = time.process_time(), time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(*(client(n, True) for n in range(concurrency)))
    elapsed = time.perf_counter() - t0
    summary = latency_summary(latencies, elapsed)
    summary["errors"] = errors
    summary["concurrency"] = concurrency
    summary["client_cpu_percent"] = round(100 * (time.process_time() - cpu0) / elapsed, 1)
    return summary


async def read_by_id_pg(url: str, keys: list[str], concurrency: int, seconds: float) -> dict:
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    latencies: list[float] = []
    stop_at = 0.0

    async def client(offset: int, record: bool) -> None:
        i = offset
        async with pool.acquire() as conn:
            stmt = await conn.prepare("SELECT content FROM bare WHERE id = $1")
            while time.perf_counter() < stop_at:
                key = keys[i % len(keys)]
                i += concurrency
                t0 = time.perf_counter()
                row = await stmt.fetchrow(key)
                if record:
                    latencies.append(time.perf_counter() - t0)
                assert row is not None

    try:
        stop_at = time.perf_counter() + min(2.0, seconds / 3)
        await asyncio.gather(*(client(n, False) for n in range(concurrency)))
        cpu0, t0 = time.process_time(), time.perf_counter()
        stop_at = t0 + seconds
        await asyncio.gather(*(client(n, True) for n in range(concurrency)))
        elapsed = time.perf_counter() - t0
    finally:
        await pool.close()
    summary = latency_summary(latencies, elapsed)
    summary["concurrency"] = concurrency
    summary["client_cpu_percent"] = round(100 * (time.process_time() - cpu0) / elapsed, 1)
    return summary


# --- 3. searches -------------------------------------------------------------------------

SEARCHES = {
    "observations_by_code": "Observation?subject=Patient/X&code=http://loinc.org|C&_sort=-date",
    "patient_by_family_birthdate": "Patient?family=F&birthdate=D",
    "active_medications_include": (
        "MedicationRequest?patient=Patient/X&status=active&_include=MedicationRequest:medication"
    ),
    "conditions_by_code": "Condition?patient=Patient/X&code=SYSTEM|CODE",
    "encounters_since": "Encounter?patient=Patient/X&date=ge2024-01-01",
}


async def _sample(conn: asyncpg.Connection, rtype: str, n: int, where: str = "") -> list[dict]:
    """About ``n`` resources of ``rtype`` spread over the table."""
    rows = await conn.fetch(
        f"SELECT content FROM resources TABLESAMPLE SYSTEM (10) REPEATABLE (7) "
        f"WHERE type = $1 AND NOT deleted {where} LIMIT $2",
        rtype,
        n * 20,
    )
    if len(rows) < n:  # small tables: a sample may miss
        rows = await conn.fetch(
            f"SELECT content FROM resources WHERE type = $1 AND NOT deleted {where} LIMIT $2",
            rtype,
            n * 20,
        )
    resources = [orjson.loads(r[0]) for r in rows]
    random.Random(3).shuffle(resources)
    return resources


def _ref(resource: dict, element: str) -> str | None:
    return (resource.get(element) or {}).get("reference")


async def search_parameters(url: str, per_search: int) -> dict[str, list[list[tuple[str, str]]]]:
    """Parameter sets for each search, drawn from the loaded data so that they match."""
    conn = await asyncpg.connect(url)
    try:
        params: dict[str, list[list[tuple[str, str]]]] = {k: [] for k in SEARCHES}
        for obs in await _sample(conn, "Observation", per_search):
            loinc = [
                c for c in obs["code"].get("coding", []) if c.get("system") == "http://loinc.org"
            ]
            if loinc and _ref(obs, "subject"):
                params["observations_by_code"].append(
                    [
                        ("subject", _ref(obs, "subject")),
                        ("code", f"http://loinc.org|{loinc[0]['code']}"),
                        ("_sort", "-date"),
                    ]
                )
        for pat in await _sample(conn, "Patient", per_search):
            name = (pat.get("name") or [{}])[0]
            if name.get("family") and pat.get("birthDate"):
                params["patient_by_family_birthdate"].append(
                    [("family", name["family"]), ("birthdate", pat["birthDate"])]
                )
        for mr in await _sample(conn, "MedicationRequest", per_search * 3):
            if mr.get("status") == "active" and _ref(mr, "subject"):
                params["active_medications_include"].append(
                    [
                        ("patient", _ref(mr, "subject")),
                        ("status", "active"),
                        ("_include", "MedicationRequest:medication"),
                    ]
                )
        for cond in await _sample(conn, "Condition", per_search):
            coding = (cond.get("code") or {}).get("coding") or []
            if coding and _ref(cond, "subject"):
                c = coding[-1]
                params["conditions_by_code"].append(
                    [("patient", _ref(cond, "subject")), ("code", f"{c['system']}|{c['code']}")]
                )
        for enc in await _sample(conn, "Encounter", per_search * 3):
            start = (enc.get("period") or {}).get("start", "")
            if start >= "2024-01-01" and _ref(enc, "subject"):
                params["encounters_since"].append(
                    [("patient", _ref(enc, "subject")), ("date", "ge2024-01-01")]
                )
    finally:
        await conn.close()
    # one parameter set per patient (or name), at most per_search of them
    for name, sets in params.items():
        unique = {tuple(s): s for s in sets}
        params[name] = list(unique.values())[:per_search]
    return params


def search_path(name: str, params: list[tuple[str, str]]) -> str:
    rtype = SEARCHES[name].split("?")[0]
    return f"/fhir/{rtype}?{urlencode(params, quote_via=quote, safe='/:')}"


async def run_searches(
    port: int,
    params: dict[str, list[list[tuple[str, str]]]],
    requests: int,
    max_seconds: float = 20.0,
) -> dict:
    """Each search on its own, one request at a time (latency, not throughput)."""
    out = {}
    conn = Connection("127.0.0.1", port)
    try:
        for name, sets in params.items():
            if not sets:
                out[name] = {"error": "no parameters found in the data"}
                continue
            paths = [search_path(name, s) for s in sets]
            for p in paths[:5]:  # warm-up
                await conn.request("GET", p)
            latencies, hits, totals, errors = [], 0, [], 0
            t_start = time.perf_counter()
            for i in range(requests):
                if i >= 20 and time.perf_counter() - t_start > max_seconds:
                    break  # slow searches at large sizes: enough samples for p50/p95
                path = paths[i % len(paths)]
                t0 = time.perf_counter()
                status, body = await conn.request("GET", path)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors += 1
                    continue
                bundle = orjson.loads(body)
                total = bundle.get("total", len(bundle.get("entry") or []))
                totals.append(total)
                hits += total > 0
            requests_done = len(latencies)
            summary = latency_summary(latencies, time.perf_counter() - t_start)
            summary.update(
                example=paths[0],
                parameter_sets=len(paths),
                hit_rate=round(hits / requests_done, 3),
                mean_matches=round(sum(totals) / len(totals), 1) if totals else 0,
                errors=errors,
            )
            out[name] = summary
    finally:
        await conn.close()
    return out


# --- 5. EXPLAIN --------------------------------------------------------------------------


async def explain_searches(
    url: str,
    params: dict[str, list[list[tuple[str, str]]]],
    *,
    generic: bool = False,
    which: int = 0,
) -> dict:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement the store runs for one search of each kind
    (parameter set number ``which``): the search runs for real through a connection that
    records its SQL, then every recorded statement is explained (in a transaction that is
    rolled back).

    ``generic``: explain the *generic* plan, the one PostgreSQL switches to for a prepared
    statement after five executions when it does not estimate it costlier than the custom
    ones.  asyncpg prepares (and caches) every statement, so the server runs generic plans
    once a search shape has been seen a few times."""
    from enjournal.fhir.search import parse_search
    from enjournal.storage.postgres import PostgresConnection, _numbered
    from enjournal.storage.search_sql import run_search

    class Recording(PostgresConnection):
        def __init__(self, raw):
            super().__init__(raw)
            self.statements: list[tuple[str, tuple]] = []

        async def fetch(self, sql, *args):
            self.statements.append((sql, args))
            return await super().fetch(sql, *args)

        async def fetchrow(self, sql, *args):
            self.statements.append((sql, args))
            return await super().fetchrow(sql, *args)

    raw = await asyncpg.connect(url)
    out: dict = {}
    try:
        for name, sets in params.items():
            if not sets:
                continue
            rtype = SEARCHES[name].split("?")[0]
            if which >= len(sets):
                continue
            query = parse_search(rtype, sets[which])
            conn = Recording(raw)
            tr = raw.transaction()
            await tr.start()
            try:
                await run_search(conn, query)
                plans = []
                if generic:
                    await raw.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                for n, (sql, args) in enumerate(conn.statements):
                    if generic:
                        await raw.execute(f"PREPARE bench_q{n} AS {_numbered(sql)}")
                        literals = ", ".join(_literal(a) for a in args)
                        rows = await raw.fetch(
                            f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_q{n}({literals})"
                        )
                        await raw.execute(f"DEALLOCATE bench_q{n}")
                    else:
                        rows = await raw.fetch(
                            "EXPLAIN (ANALYZE, BUFFERS) " + _numbered(sql), *args
                        )
                    plans.append(
                        {
                            "sql": _numbered(sql),
                            "args": [str(a) for a in args],
                            "plan": [r[0] for r in rows],
                        }
                    )
            finally:
                await tr.rollback()
            out[name] = plans
    finally:
        await raw.close()
    return out


KEY_WORDS = (
    "Scan",
    "Sort",
    "Join",
    "Nested Loop",
    "Hash",
    "Limit",
    "Execution Time",
    "Rows Removed",
)


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


EXTENDED_STATISTICS = {
    "idx_token": "type, param, code",
    "idx_string": "type, param, norm",
    "idx_reference": "type, param, target_type",
    "idx_date": "type, param",
}


async def create_extended_statistics(url: str) -> None:
    """Multi-column statistics on the index tables' leading columns, which are strongly
    correlated (a ``param`` belongs to few ``type``s, a ``code`` to one ``param``)."""
    conn = await asyncpg.connect(url)
    try:
        for table, columns in EXTENDED_STATISTICS.items():
            await conn.execute(
                f"CREATE STATISTICS IF NOT EXISTS bench_{table}_stats "
                f"(ndistinct, dependencies, mcv) ON {columns} FROM {table}"
            )
            await conn.execute(f"ANALYZE {table}")
    finally:
        await conn.close()


def execution_ms(plans: list[dict]) -> float:
    """The summed ``Execution Time`` of a search's statements."""
    total = 0.0
    for p in plans:
        for line in p["plan"]:
            if line.startswith("Execution Time:"):
                total += float(line.split()[2])
    return total


def plan_key_lines(plan: list[str]) -> list[str]:
    return [line for line in plan if any(w in line for w in KEY_WORDS)]


# --- orchestration -----------------------------------------------------------------------


async def sample_read_paths(url: str, n: int) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT type, id FROM resources WHERE NOT deleted ORDER BY random() LIMIT $1", n
        )
    finally:
        await conn.close()
    return [f"/fhir/{t}/{i}" for t, i in rows]


async def sample_keys(url: str, n: int) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT id FROM bare ORDER BY random() LIMIT $1", n)
    finally:
        await conn.close()
    return [r[0] for r in rows]


async def table_sizes(url: str) -> dict:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
            "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
        )
        db = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    return {
        "database_mb": round(db / 2**20, 1),
        **{r[0]: round(r[1] / 2**20, 1) for r in rows if r[1] > 2**20},
    }


async def bench_size(target: int, opts: argparse.Namespace, dbs: Databases, workdir: Path) -> dict:
    result: dict = {"target_resources": target}
    loads: dict[str, list[float]] = {}

    def mark(phase: str) -> None:
        loads[phase] = [round(x, 2) for x in os.getloadavg()]

    log(f"\n=== {target:,} resources ===")
    t0 = time.perf_counter()
    data = make_dataset(target, opts.seed, workdir)
    result.update(
        resources=data.resources,
        patients=data.patients,
        bundles=len(data.bundles),
        types=data.types,
        bundle_mb=round(sum(map(len, data.bundles)) / 2**20, 1),
    )
    log(
        f"generated {data.resources:,} resources ({data.patients:,} patients, "
        f"{len(data.bundles):,} bundles) in {time.perf_counter() - t0:.1f}s"
    )

    # 1. ingest --------------------------------------------------------------------------
    mark("copy")
    copy_url = await dbs.create(f"copy_{target}")
    result["copy"] = await ingest_copy(data, copy_url)
    log(f"COPY baseline: {result['copy']['resources_per_second']:,.0f} resources/s")

    mark("ingest_http")
    srv_url = await dbs.create(f"srv_{target}")
    async with Server(srv_url, opts.ingest_workers, workdir, f"ingest-{target}") as server:
        result["ingest_http"] = await ingest_http(data, server.port, opts.ingest_clients)
        result["ingest_http"]["workers"] = opts.ingest_workers
    result["ingest_http"]["peak_rss_mb"] = [round(k / 1024, 1) for k in server.peak_rss_kb]
    r = result["ingest_http"]
    log(
        f"ingest via POST /fhir ({opts.ingest_clients} clients, {opts.ingest_workers} workers): "
        f"{r['resources_per_second']:,.0f} resources/s "
        f"({r['resources_per_second'] / result['copy']['resources_per_second']:.3f} of COPY), "
        f"peak RSS {r['peak_rss_mb']} MB"
    )

    if not opts.skip_import:
        mark("ingest_import")
        imp_url = await dbs.create(f"imp_{target}")
        result["ingest_import"] = ingest_import(data, imp_url, workdir)
        await dbs.drop(imp_url)
        r = result["ingest_import"]
        log(
            f"ingest via enjournal import: {r['resources_per_second']:,.0f} resources/s "
            f"({r['resources_per_second'] / result['copy']['resources_per_second']:.3f} of COPY)"
        )
    shutil.rmtree(data.directory, ignore_errors=True)
    data.bundles.clear()
    data.copy_rows.clear()

    # the planner needs statistics; autovacuum would gather them a little later
    conn = await asyncpg.connect(srv_url)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    result["table_sizes_mb"] = await table_sizes(srv_url)

    # 2.-4. reads and searches with 1 and 2 workers --------------------------------------
    read_paths = await sample_read_paths(srv_url, 20_000)
    params = await search_parameters(srv_url, opts.search_sets)
    result["reads"] = {}
    result["searches"] = {}
    for config in opts.read_workers:
        # "2" is `enjournal serve --workers 2`; "2n" the same with TCP_NODELAY (serve_nodelay)
        workers, nodelay = int(config.rstrip("n")), config.endswith("n")
        label = f"{workers}w" + ("+nodelay" if nodelay else "")
        mark(f"reads_{label}")
        async with Server(
            srv_url, workers, workdir, f"read-{target}-{label}", nodelay=nodelay
        ) as server:
            reads = await read_by_id_http(
                server.port, list(read_paths), opts.concurrency, opts.read_seconds
            )
            server.sample_rss()
            mark(f"searches_{label}")
            searches = await run_searches(server.port, params, opts.search_requests)
            server.sample_rss()
        reads["peak_rss_mb"] = [round(k / 1024, 1) for k in server.peak_rss_kb]
        result["reads"][label] = reads
        result["searches"][label] = searches
        log(
            f"read by id, {label}, {opts.concurrency} clients: "
            f"{reads['per_second']:,.0f} req/s, p50 {reads['p50_ms']} ms, p99 {reads['p99_ms']} ms"
            f", errors {reads['errors']}, client CPU {reads['client_cpu_percent']}%, "
            f"peak RSS {reads['peak_rss_mb']} MB"
        )
        for name, s in searches.items():
            if "error" in s:
                log(f"  search {name}: {s['error']}")
            else:
                log(
                    f"  search {name:30s} p50 {s['p50_ms']:7.2f} ms  p95 {s['p95_ms']:7.2f} ms  "
                    f"hits {s['hit_rate']:.0%}  mean matches {s['mean_matches']}"
                )

    mark("read_baseline")
    keys = await sample_keys(copy_url, 20_000)
    result["read_baseline"] = await read_by_id_pg(
        copy_url, keys, opts.concurrency, opts.read_seconds
    )
    b = result["read_baseline"]
    log(
        f"read baseline (asyncpg, PK): {b['per_second']:,.0f} req/s, p50 {b['p50_ms']} ms, "
        f"p99 {b['p99_ms']} ms"
    )

    # 5. plans ---------------------------------------------------------------------------
    mark("explain")
    result["explain"] = await explain_searches(srv_url, params)
    if opts.print_plans:
        for name, plans in result["explain"].items():
            log(f"  plan {name}:")
            for p in plans:
                for line in plan_key_lines(p["plan"]):
                    log(f"    {line}")
    # experiment: do multi-column statistics on the index tables change the plans?
    mark("explain_extended_stats")
    try:
        await create_extended_statistics(srv_url)
        result["explain_extended_stats"] = await explain_searches(srv_url, params)
        log("  execution times without / with extended statistics:")
        for name, plans in result["explain"].items():
            after = result["explain_extended_stats"].get(name, [])
            log(f"    {name:30s} {execution_ms(plans):8.2f} ms / {execution_ms(after):8.2f} ms")
    except Exception as error:  # an experiment must not lose the run
        result["explain_extended_stats"] = {"error": repr(error)}
        log(f"  extended statistics experiment failed: {error!r}")
    mark("end")
    result["load_average"] = loads
    await dbs.drop(copy_url)
    await dbs.drop(srv_url)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--sizes",
        default="10000,100000",
        help="resource counts, comma separated (default: %(default)s; add 1000000 for the 1M run)",
    )
    p.add_argument(
        "--database-admin-url",
        default=DEFAULT_ADMIN,
        help="a PostgreSQL URL allowed to CREATE DATABASE (default: "
        "$ENJOURNAL_BENCH_PG or %(default)s)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="short measurements (smoke test of the benchmark itself)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--ingest-clients", type=int, default=4)
    p.add_argument("--ingest-workers", type=int, default=2)
    p.add_argument(
        "--read-workers",
        default="1,2,2n",
        help="server configurations for reads and searches: worker counts; a trailing n "
        "runs bench/serve_nodelay.py (TCP_NODELAY fix) instead of enjournal serve",
    )
    p.add_argument("--read-seconds", type=float, default=15.0)
    p.add_argument("--search-requests", type=int, default=300, help="requests per search kind")
    p.add_argument(
        "--search-sets", type=int, default=50, help="distinct parameter sets per search kind"
    )
    p.add_argument("--skip-import", action="store_true", help="skip `enjournal import`")
    p.add_argument("--keep", action="store_true", help="keep the databases")
    p.add_argument("--print-plans", action="store_true", default=True)
    p.add_argument("--output", help="result file (default: bench/results/<timestamp>.json)")
    opts = p.parse_args(argv)
    opts.sizes = [int(s.replace("_", "")) for s in opts.sizes.split(",") if s.strip()]
    opts.read_workers = [w.strip() for w in opts.read_workers.split(",") if w.strip()]
    if opts.quick:
        opts.read_seconds = min(opts.read_seconds, 4.0)
        opts.search_requests = min(opts.search_requests, 60)
        opts.search_sets = min(opts.search_sets, 20)
    return opts


async def amain(opts: argparse.Namespace) -> dict:
    conn = await asyncpg.connect(opts.database_admin_url)
    try:
        pg_version = await conn.fetchval("SHOW server_version")
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in (
                "shared_buffers",
                "work_mem",
                "synchronous_commit",
                "max_connections",
                "effective_cache_size",
                "random_page_cost",
            )
        }
    finally:
        await conn.close()
    info = machine.describe(pg_version, settings)
    log("machine: " + ", ".join(f"{k}={v}" for k, v in info.items() if k != "postgresql_settings"))
    log(f"postgresql settings: {settings}")
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "options": {k: v for k, v in vars(opts).items() if k != "database_admin_url"},
        "sizes": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = (
        Path(opts.output)
        if opts.output
        else RESULTS / (time.strftime("%Y%m%d-%H%M%S") + f"-{'-'.join(map(str, opts.sizes))}.json")
    )
    dbs = Databases(opts.database_admin_url, opts.keep)
    workdir = Path(tempfile.mkdtemp(prefix="enjournal-bench-"))
    log(f"work directory (server and import logs): {workdir}")
    try:
        for size in opts.sizes:
            report["sizes"].append(await bench_size(size, opts, dbs, workdir))
            report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
            output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    finally:
        await dbs.drop_all()
    log(f"\nresult: {output}")
    print_summary(report)
    return report


def print_summary(report: dict) -> None:
    log(
        "\nsummary (targets: ingest >= 1500/s, read >= 2000 req/s, search p95 < 50 ms, "
        "worker RSS < 300 MB)"
    )
    for s in report["sizes"]:
        copy = s["copy"]["resources_per_second"]
        line = [
            f"{s['resources']:>9,} resources:",
            f"POST {s['ingest_http']['resources_per_second']:,.0f}/s "
            f"({s['ingest_http']['resources_per_second'] / copy:.3f}x COPY)",
        ]
        if "ingest_import" in s:
            line.append(
                f"import {s['ingest_import']['resources_per_second']:,.0f}/s "
                f"({s['ingest_import']['resources_per_second'] / copy:.3f}x COPY)"
            )
        base = s["read_baseline"]["per_second"]
        for w, r in s["reads"].items():
            line.append(f"read {w} {r['per_second']:,.0f} req/s ({r['per_second'] / base:.2f}x PK)")
        log("  ".join(line))
        for w, searches in s["searches"].items():
            worst = max((v.get("p95_ms", 0) for v in searches.values()), default=0)
            log(f"    searches {w}: worst p95 {worst} ms")


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    asyncio.run(amain(opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
