"""Helsenorge portal pages at 50 logged-in citizens: ``python -m bench.helsenorge``
(``make bench-helsenorge``).

Issue 13's target: p95 time to first byte < 100 ms for the kjernejournal, prescriptions and
access-log pages (``/helsenorge/kjernejournal``, ``/resepter``, ``/innsynslogg``) with 50
concurrent logged-in citizens, on 2 cores, on the demo population.

1. The demo population as ``enjournal demo --no-serve --patients N --data DIR`` loads it
   (SQLite, drug catalogue, portal world); DIR is kept and reused by the next run.
2. ``enjournal serve`` (one worker, the default) as a subprocess with the environment the
   demo serves with (``serve_environment``: security on, the embedded provider), waited for
   on ``/health``.  The rate limits are lifted (the load comes from one IP and, for the API
   baseline, one client id); the limiter is still consulted on every API request.
3. ``--citizens`` citizens with a fødselsnummer, drawn from the database, each logged in
   through the portal's own flow (``/helsenorge/login`` -> ``/oidc/authorize`` with
   ``login_hint=pid:<fnr>`` -> ``/helsenorge/callback``); the logins are timed on their own.
4. Portal: one keep-alive connection per citizen, all at once, each looping over the three
   pages; time to first byte (request written to the response head read) and total time
   (whole body read) per page.
5. Baseline, same run, same server and concurrency: the FHIR API calls behind each page over
   HTTP with each citizen's own bearer token (public client ``enjournal-demo-app``, PKCE,
   same ``login_hint``): ``api`` is the page's main call (``$summary``, the MedicationRequest
   search, ``$access-log``); ``api-all`` is every call the page makes, one after the other
   (timed from the first request written to the last response read).  Page minus
   ``api-all`` is the portal's own cost (session, HTML rendering).
6. Each scenario is warmed up (``--warmup``), then ``--rounds`` rounds run the three in turn
   for ``--seconds`` each (after 1 s to settle), so what other processes do on the shared
   machine hits all three alike; the samples of all rounds are pooled, and each round's p95
   is shown too.  The CPU the server, the load generator and everything else used meanwhile
   is reported in cores.
7. Afterwards (``--profile``, on by default), the server stopped: each page ``--repeat``
   times through the app in this process, one at a time (service time without queueing),
   then under cProfile: own time by area of the code, the costliest functions.

Each ``--think`` value is a run of the three scenarios: clients pause a random time (exponential,
that mean) after each page.  With 0 they do not pause: the figures are the latency of a server
kept busy by 50 clients, queueing included; with 1 s, 50 citizens clicking about once a
second each.  The load generator runs on
the same 2 cores as the server; it uses the lean client of ``bench.httpclient`` (httpx costs
several times more CPU per request), and its CPU time is reported.  Timings are printed with
the machine, and saved under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import hashlib
import json
import os
import pstats
import random
import re
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from rich.console import Console
from rich.table import Table

from bench import machine
from bench.common import save_report
from bench.httpclient import Connection, HttpError
from bench.run import free_port, percentile

ROOT = Path(__file__).resolve().parent.parent
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
PAGES = ("kjernejournal", "resepter", "innsynslogg")
TARGET_P95_MS = 100
API_CLIENT = "enjournal-demo-app"
API_SCOPES = "openid fhirUser launch/patient patient/*.rs"
NO_LIMIT = "1000000/1000000"
console = Console(width=130)


@dataclass
class Citizen:
    patient: str
    fnr: str
    cookie: str = ""  # the portal session (hn_session)
    token: str = ""  # bearer token for the API baseline


@dataclass
class Call:
    """One HTTP GET of a scenario step; ``ok``: the statuses that are not errors."""

    path: str
    ok: tuple[int, ...] = (200,)


def page_calls(citizen: Citizen, page: str) -> list[Call]:
    return [Call(f"/helsenorge/{page}")]


def api_calls(citizen: Citizen, page: str, every: bool) -> list[Call]:
    """The FHIR calls behind ``page`` (the main one first), with the page's parameters."""
    p = f"Patient/{citizen.patient}"
    calls = {
        "kjernejournal": [
            Call(f"/fhir/{p}/$summary"),
            Call(f"/fhir/{p}/$kj-privacy"),
            Call("/fhir/$kj-own-condition-codes"),
        ],
        "resepter": [
            Call(f"/fhir/MedicationRequest?subject={p}&_count=200&_sort=-authoredon"),
            Call(f"/fhir/MedicationDispense?subject={p}&_count=200"),
            Call(f"/fhir/Consent/m8-reservation-{citizen.patient}", ok=(200, 403, 404, 410)),
        ],
        "innsynslogg": [Call(f"/fhir/{p}/$access-log?_count=100")],
    }[page]
    return calls if every else calls[:1]


# ---- the demo and its server ----------------------------------------------------------------


def build_demo(data: Path, patients: int) -> None:
    """``enjournal demo --no-serve``: reuses the population in ``data`` when it is there."""
    started = time.monotonic()
    command = [sys.executable, "-m", "enjournal.cli", "demo", "--no-serve"]
    command += ["--patients", str(patients), "--data", str(data)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the demo did not load:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    console.print(f"demo population of {patients} in {data} ({time.monotonic() - started:.0f} s)")


def citizens_with_fnr(database: Path, count: int, seed: int) -> list[Citizen]:
    """``count`` Patients with a fødselsnummer, drawn at random (read-only SQLite)."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT id, content FROM resources WHERE type = 'Patient' AND NOT deleted"
        ).fetchall()
    finally:
        conn.close()
    found = []
    for id_, content in rows:
        patient = json.loads(content)
        fnr = next((i["value"] for i in patient.get("identifier", []) if i["system"] == FNR), "")
        if len(fnr) == 11 and fnr.isdigit():
            found.append(Citizen(id_, fnr))
    found.sort(key=lambda c: c.patient)
    if len(found) < count:
        raise SystemExit(f"only {len(found)} patients with a fødselsnummer; need {count}")
    return random.Random(seed).sample(found, count)


class DemoServer:
    """``enjournal serve`` with ``enjournal demo``'s environment, in its own process group."""

    def __init__(self, data: Path, workers: int = 1, nice: int = 0):
        self.data = data
        self.workers = workers
        self.nice = nice
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data / "bench-server.log"
        self.proc: subprocess.Popen | None = None
        self.redis: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> DemoServer:
        from enjournal.demo.command import ready_for_tokens, serve_environment

        env = {**os.environ, **serve_environment(self.data, "127.0.0.1", self.port)}
        env |= {"ENJOURNAL_AUTH": "on", "ENJOURNAL_LOG_LEVEL": "WARNING"}
        env |= {f"ENJOURNAL_RATE_LIMIT_{k}": NO_LIMIT for k in ("USER", "CLIENT", "IP")}
        if self.workers > 1:  # the portal's sessions must be shared by the workers
            env["ENJOURNAL_REDIS_URL"] = self._start_redis()
        ready_for_tokens(self.data, self.base)
        command = ["nice", "-n", str(self.nice)] if self.nice else []
        command += [sys.executable, "-m", "enjournal.cli", "serve", "--database"]
        command += [env["ENJOURNAL_DATABASE_URL"], "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._wait_healthy(timeout)
        return self

    def _start_redis(self) -> str:
        """A private redis-server (no persistence) on a free port; its URL."""
        port = free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        return f"redis://127.0.0.1:{port}/0"

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"the server exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"the server did not become healthy in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def pids(self) -> list[int]:
        """The server's processes (uvicorn and its workers) and redis-server."""
        assert self.proc is not None
        found = [self.proc.pid, *machine.descendants(self.proc.pid)]
        return found + ([self.redis.pid] if self.redis else [])

    def runqueue_seconds(self) -> float:
        """How long the server's threads have waited, runnable, for a CPU (schedstat): on a
        shared machine, the time other processes took from it."""
        total = 0
        for pid in self.pids():
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for task in tasks:
                try:
                    total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        return total / 1e9

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's processes so far."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> list[float]:
        assert self.proc is not None
        workers = machine.server_workers(self.proc.pid)
        return [round((machine.status_kb(pid, "VmHWM") or 0) / 1024, 1) for pid in workers]

    def stop(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(10)
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


# ---- logging in -----------------------------------------------------------------------------


def _cookie(response: httpx.Response) -> str:
    """The hn_session value the response sets (kept by hand: the cookie is Secure)."""
    for header in response.headers.get_list("set-cookie"):
        found = re.match(r"\s*hn_session=([^;]*)", header)
        if found and found.group(1):
            return found.group(1)
    return ""


def _expect_redirect(response: httpx.Response, step: str) -> str:
    if response.status_code not in (302, 303):
        raise RuntimeError(f"{step}: {response.status_code} {response.text[:300]}")
    return response.headers["location"]


async def portal_login(client: httpx.AsyncClient, citizen: Citizen) -> None:
    """The portal's login flow, as a browser makes it; the session cookie is kept."""
    first = await client.get("/helsenorge/login")
    authorize = _expect_redirect(first, "GET /helsenorge/login")
    hint = urlencode({"login_hint": f"pid:{citizen.fnr}"})
    issued = await client.get(f"{authorize}&{hint}")
    callback = _expect_redirect(issued, "GET /oidc/authorize")
    done = await client.get(callback, headers={"Cookie": f"hn_session={_cookie(first)}"})
    home = _expect_redirect(done, "GET /helsenorge/callback")
    citizen.cookie = _cookie(done)
    if not home.endswith("/helsenorge/") or not citizen.cookie:
        raise RuntimeError(f"the login ended at {home} without a session: {done.text[:300]}")


async def api_token(client: httpx.AsyncClient, citizen: Citizen, base: str) -> None:
    """A bearer token for the citizen: authorization code with PKCE, public client."""
    from enjournal.settings import Settings

    redirect_uri = Settings().demo_redirect_uris[0]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "response_type": "code",
        "client_id": API_CLIENT,
        "redirect_uri": redirect_uri,
        "scope": API_SCOPES,
        "state": secrets.token_urlsafe(16),
        "aud": f"{base}/fhir",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "login_hint": f"pid:{citizen.fnr}",
    }
    issued = await client.get(f"/oidc/authorize?{urlencode(query)}")
    back = parse_qs(urlsplit(_expect_redirect(issued, "GET /oidc/authorize")).query)
    if "code" not in back:
        raise RuntimeError(f"no code for {citizen.fnr}: {back}")
    form = {"grant_type": "authorization_code", "code": back["code"][0]}
    form |= {"redirect_uri": redirect_uri, "client_id": API_CLIENT, "code_verifier": verifier}
    answer = await client.post("/oidc/token", data=form)
    if answer.status_code != 200:
        raise RuntimeError(f"token for {citizen.fnr}: {answer.status_code} {answer.text[:300]}")
    citizen.token = answer.json()["access_token"]


async def log_in_all(base: str, citizens: list[Citizen]) -> dict:
    """Every citizen logged in to the portal; the logins' times."""
    seconds: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for citizen in citizens:
            started = time.perf_counter()
            await portal_login(client, citizen)
            seconds.append(time.perf_counter() - started)
    values = sorted(seconds)
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p95_ms": round(percentile(values, 95) * 1000, 1),
        "max_ms": round(values[-1] * 1000, 1),
    }


async def api_tokens(base: str, citizens: list[Citizen]) -> None:
    """A fresh API token for every citizen (they last 5 minutes; the portal refreshes its
    own)."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for citizen in citizens:
            await api_token(client, citizen, base)


# ---- the load -------------------------------------------------------------------------------


class TimedConnection(Connection):
    """``bench.httpclient.Connection`` that also tells when the response head arrived."""

    async def timed_get(self, path: str) -> tuple[int, float, bytes]:
        """(status, seconds to the response head, body); ``perf_counter`` from the write.
        A connection the server closed while idle (keep-alive timeout) is opened again."""
        if self.writer is None:
            return await self._timed_get(path)
        try:
            return await self._timed_get(path)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            return await self._timed_get(path)

    async def _timed_get(self, path: str) -> tuple[int, float, bytes]:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        request = [f"GET {path} HTTP/1.1\r\n".encode(), self._host_header, b"\r\n"]
        self.writer.write(b"".join(request))
        started = time.perf_counter()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        head = time.perf_counter() - started
        lower = raw.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at < 0:
            raise HttpError(f"response without length: {raw[:200]!r}")
        end = lower.index(b"\r\n", at + 2)
        body = await self.reader.readexactly(int(lower[at + 17 : end]))
        if b"\r\nconnection: close" in lower:
            await self.close()
        return int(raw[9:12]), head, body


@dataclass
class Samples:
    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    served: int = 0  # pages served, measured or not (for the CPU per page)


async def one_step(conn: TimedConnection, calls: list[Call]) -> tuple[float, float, str | None]:
    """The calls one after the other: (first byte of the last, total, first error)."""
    started = time.perf_counter()
    error = None
    for call in calls:
        before = time.perf_counter()
        status, head, body = await conn.timed_get(call.path)
        if status not in call.ok and error is None:
            error = f"{status} {call.path}: {body[:300].decode(errors='replace')}"
    return before - started + head, time.perf_counter() - started, error


async def drive(
    port: int, scenario, citizens: list[Citizen], think: float, settle: float, seconds: float
) -> dict[str, Samples]:
    """Every citizen at once on their own connection, looping over the pages, pausing a
    random time of mean ``think`` seconds after each; measured after ``settle`` seconds, for
    ``seconds``.  ``scenario`` gives (headers, calls(page)) for a citizen."""
    samples = {page: Samples() for page in PAGES}
    measure_from = time.monotonic() + settle
    stop = measure_from + seconds

    async def client(n: int, citizen: Citizen) -> None:
        headers, calls = scenario(citizen)
        conn = TimedConnection("127.0.0.1", port, headers)
        rng = random.Random(n)
        try:
            step = n  # each client starts on another page, so the mix is even at all times
            while time.monotonic() < stop:
                page = PAGES[step % len(PAGES)]
                step += 1
                ttfb, total, error = await one_step(conn, calls(page))
                samples[page].served += 1
                if time.monotonic() >= measure_from:
                    _keep(samples[page], ttfb, total, error)
                if think:
                    await asyncio.sleep(rng.expovariate(1 / think))
        finally:
            await conn.close()

    await asyncio.gather(*(client(n, c) for n, c in enumerate(citizens)))
    return samples


def _keep(samples: Samples, ttfb: float, total: float, error: str | None) -> None:
    samples.ttfb.append(ttfb)
    samples.total.append(total)
    if error:
        samples.errors.append(error)


def machine_busy_seconds() -> float:
    """CPU seconds all cores have been busy (not idle, not waiting for I/O), /proc/stat;
    steal (the hypervisor ran someone else) counts as busy."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def portal_scenario(citizen: Citizen):
    return {"Cookie": f"hn_session={citizen.cookie}"}, lambda page: page_calls(citizen, page)


def api_scenario(every: bool):
    def scenario(citizen: Citizen):
        headers = {"Authorization": f"Bearer {citizen.token}", "Accept": "application/fhir+json"}
        return headers, lambda page: api_calls(citizen, page, every)

    return scenario


def summary(samples: Samples, seconds: float) -> dict:
    def ms(values: list[float], p: float) -> float:
        return round(percentile(values, p) * 1000, 1)

    ttfb, total = sorted(samples.ttfb), sorted(samples.total)
    out: dict = {"count": len(ttfb), "per_second": round(len(ttfb) / seconds, 1)}
    for p in (50, 95, 99):
        out[f"ttfb_p{p}_ms"] = ms(ttfb, p)
    out["ttfb_max_ms"] = round(ttfb[-1] * 1000, 1) if ttfb else None
    out["total_p50_ms"], out["total_p95_ms"] = ms(total, 50), ms(total, 95)
    out["errors"] = len(samples.errors)
    out["error_examples"] = sorted(set(samples.errors))[:5]
    return out


@dataclass
class Usage:
    """CPU seconds over wall seconds, summed over a scenario's rounds."""

    wall: float = 0.0
    server: float = 0.0
    load_generator: float = 0.0
    others: float = 0.0
    server_waiting: float = 0.0  # runnable, waiting for a CPU
    pages: int = 0  # pages (or their API calls) served meanwhile

    def shares(self) -> dict:
        """In cores: the server's, the load generator's and every other process's (the
        machine is shared)."""
        wall = self.wall or 1.0
        return {
            "server_cpu_share": round(self.server / wall, 2),
            "load_generator_cpu_share": round(self.load_generator / wall, 2),
            "others_cpu_share": round(self.others / wall, 2),
            "server_waiting_for_cpu_share": round(self.server_waiting / wall, 2),
            # what the shared machine changes least: the server's CPU time per page
            "server_cpu_ms_per_page": round(self.server * 1000 / max(1, self.pages), 2),
        }


async def measure_once(
    server: DemoServer, scenario, citizens, think: float, settle: float, seconds: float
) -> tuple[dict[str, Samples], Usage]:
    """One round of a scenario: its samples per page and the CPU used meanwhile."""
    server_cpu, own_cpu, busy = server.cpu_seconds(), time.process_time(), machine_busy_seconds()
    waited = server.runqueue_seconds()
    started = time.monotonic()
    samples = await drive(server.port, scenario, citizens, think, settle, seconds)
    usage = Usage(time.monotonic() - started)
    usage.server = server.cpu_seconds() - server_cpu
    usage.load_generator = time.process_time() - own_cpu
    usage.others = max(0.0, machine_busy_seconds() - busy - usage.server - usage.load_generator)
    usage.server_waiting = server.runqueue_seconds() - waited
    usage.pages = sum(s.served for s in samples.values())
    return samples, usage


async def measure(server: DemoServer, scenarios: dict, citizens, think: float, opts) -> dict:
    """Every scenario warmed up, then ``--rounds`` rounds that run each in turn (so what
    other processes do on the shared machine hits all alike); samples pooled per page."""
    console.print(f"think {think:g} s: {len(citizens)} clients; {opts.warmup:g} s warm-up per "
                  f"scenario, then {opts.rounds} rounds of {opts.seconds:g} s each")  # fmt: skip
    for scenario in scenarios.values():
        await drive(server.port, scenario, citizens, think, opts.warmup, 0.0)
    pooled = {name: {page: Samples() for page in PAGES} for name in scenarios}
    usage = {name: Usage() for name in scenarios}
    round_p95: dict = {name: {page: [] for page in PAGES} for name in scenarios}
    for _ in range(opts.rounds):
        for name, scenario in scenarios.items():
            samples, used = await measure_once(server, scenario, citizens, think, 1.0, opts.seconds)
            _add(usage[name], used)
            for page in PAGES:
                _merge(pooled[name][page], samples[page])
                values = sorted(samples[page].ttfb)
                round_p95[name][page].append(round(percentile(values, 95) * 1000, 1))
    return {name: _figures(pooled[name], usage[name], round_p95[name], opts) for name in scenarios}


def _add(total: Usage, one: Usage) -> None:
    total.wall += one.wall
    total.server += one.server
    total.load_generator += one.load_generator
    total.others += one.others
    total.server_waiting += one.server_waiting
    total.pages += one.pages


def _merge(into: Samples, more: Samples) -> None:
    into.ttfb += more.ttfb
    into.total += more.total
    into.errors += more.errors


def _figures(samples: dict[str, Samples], usage: Usage, round_p95: dict, opts) -> dict:
    pages = {page: summary(samples[page], opts.seconds * opts.rounds) for page in PAGES}
    for page, figures in pages.items():
        figures["ttfb_p95_ms_by_round"] = round_p95[page]
        for example in figures["error_examples"]:
            console.print(f"  [red]error[/red] {page}: {example}")
    load = [round(x, 2) for x in os.getloadavg()]
    return {"pages": pages, **usage.shares(), "load_average": load}


# ---- where a page's time goes (in process) ----------------------------------------------


def _server_settings(data: Path):
    """The settings the benchmark's server runs with, for an app in this process."""
    from enjournal.demo.command import serve_environment
    from enjournal.settings import Settings

    env = {**serve_environment(data, "127.0.0.1", 8080), "ENJOURNAL_AUTH": "on"}
    env |= {f"ENJOURNAL_RATE_LIMIT_{k}": NO_LIMIT for k in ("USER", "CLIENT", "IP")}
    os.environ.update(env)
    return Settings.from_env()


async def profile_pages(data: Path, citizen: Citizen, opts) -> dict:
    """Each page ``--repeat`` times, one at a time, through the ASGI app in this process
    (no HTTP, no queueing): the service time; then cProfile over the same requests."""
    from enjournal.bootstrap import close_platform, compose, open_platform
    from enjournal.server.app import create_app

    settings = _server_settings(data)
    platform = await open_platform(compose(settings, serving=True))
    await platform.security.start(platform.store)
    transport = httpx.ASGITransport(app=create_app(settings, platform=platform))
    report: dict = {}
    try:
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
            await portal_login(http, citizen)
            headers = {"Cookie": f"hn_session={citizen.cookie}"}
            for page in PAGES:
                report[page] = await _profile_page(http, f"/helsenorge/{page}", headers, opts)
    finally:
        await platform.security.stop()
        await close_platform(platform)
    return report


async def _profile_page(http: httpx.AsyncClient, path: str, headers: dict, opts) -> dict:
    async def get() -> None:
        response = await http.get(path, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")

    for _ in range(3):
        await get()
    seconds = []
    for _ in range(opts.repeat):
        started = time.perf_counter()
        await get()
        seconds.append(time.perf_counter() - started)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(opts.repeat):
        await get()
    profiler.disable()
    values = sorted(seconds)
    figures: dict = {"mean_ms": round(statistics.fmean(values) * 1000, 1)}
    figures |= {"p50_ms": round(percentile(values, 50) * 1000, 1)}
    figures |= {"p95_ms": round(percentile(values, 95) * 1000, 1)}
    figures["top"] = top_costs(profiler, opts.repeat, opts.top)
    console.print(
        f"{path} in process, one at a time: mean {figures['mean_ms']} ms, "
        f"p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms"
    )
    return figures


def top_costs(profiler: cProfile.Profile, requests: int, count: int) -> dict:
    """Own time by area of the code (adds up to the profiled request; a builtin's time goes
    to the area of its callers), the functions with most own time, and enjournal's functions
    with most cumulative time; ms per request.  (cProfile counts every resumption of a
    coroutine as a call.)"""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows: list[tuple] = []
    areas: dict[str, float] = {}
    for (file, line, name), (_, calls, own, cumulative, callers) in stats.items():
        rows.append((f"{_short(file)}:{line}({name})", calls / requests, own, cumulative))
        for area, seconds in _own_by_area(file, name, own, callers).items():
            areas[area] = areas.get(area, 0.0) + seconds
    rows = [(w, c, o * 1000 / requests, t * 1000 / requests) for w, c, o, t in rows]
    inner = [r for r in rows if r[0].startswith("enjournal/") and "enjournal/server/" not in r[0]]
    by_cost = sorted(areas.items(), key=lambda x: -x[1])
    return {
        "areas": {a: round(seconds * 1000 / requests, 2) for a, seconds in by_cost},
        "own": _ranked(rows, 2, count),
        "cumulative": _ranked(inner, 3, count),
    }


def _own_by_area(file: str, name: str, own: float, callers: dict) -> dict[str, float]:
    """A function's own time by area; a builtin's (but SQLite's and JSON's) split over
    its callers' areas in proportion to the time each call site spent in it."""
    if file != "~" or any(m in name for m in ("sqlite3", "json")) or not callers:
        return {_area(file, name): own}
    total = sum(v[2] for v in callers.values()) or 1.0
    split: dict[str, float] = {}
    for (caller_file, _, caller_name), values in callers.items():
        area = _area(caller_file, caller_name)
        split[area] = split.get(area, 0.0) + own * values[2] / total
    return split


def _ranked(rows: list[tuple], key: int, count: int) -> list[dict]:
    ranked = sorted(rows, key=lambda r: r[key], reverse=True)[:count]
    return [
        {"function": w, "calls": round(c, 1), "own_ms": round(o, 2), "cumulative_ms": round(t, 2)}
        for w, c, o, t in ranked
    ]


def _area(file: str, name: str) -> str:
    """Where a function lives: an enjournal package, the templates, SQLite, JSON, another
    library or standard module by name."""
    if file == "~":
        for marker, area in (("sqlite3", "sqlite3 (C)"), ("json", "json (C)")):
            if marker in name:
                return area
        return "builtins"
    if "jinja2/" in file or "markupsafe/" in file or file.endswith(".html"):
        return "jinja2 (templates)"
    if "/enjournal/" in file:
        parts = file.split("/enjournal/", 1)[1].removesuffix(".py").split("/")
        return "enjournal/" + "/".join(parts[:2] if parts[0] == "services" else parts[:1])
    short = _short(file)
    if short != file:  # a library or a standard module: its top-level name
        return short.split("/", 1)[0].removesuffix(".py")
    return file.split("/")[-1]


def _short(file: str) -> str:
    for cut in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if cut in file:
            return file.split(cut, 1)[1]
    return file


# ---- the report -----------------------------------------------------------------------------


def table(think: str, results: dict) -> Table:
    out = Table(
        title=f"time to first byte (ms) per page, {think} between pages; baseline: the FHIR "
        "calls behind it"
    )
    columns = ("page", "served by", "p50", "p95", "p95 by round", "p99", "max", "total p95")
    for column in (*columns, "req/s", "n"):
        out.add_column(column, justify="left" if column in ("page", "served by") else "right")
    out.add_column("errors", justify="right")
    for page in PAGES:
        for name, scenario in results.items():
            f = scenario["pages"][page]
            p95 = f"{f['ttfb_p95_ms']}"
            if name == "portal":
                good = f["ttfb_p95_ms"] < TARGET_P95_MS
                p95 = f"[{'green' if good else 'red'}]{p95}[/]"
            out.add_row(
                page, name, str(f["ttfb_p50_ms"]), p95,
                " ".join(f"{v:.0f}" for v in f["ttfb_p95_ms_by_round"]), str(f["ttfb_p99_ms"]),
                str(f["ttfb_max_ms"]), str(f["total_p95_ms"]), str(f["per_second"]),
                str(f["count"]), str(f["errors"]),
            )  # fmt: skip
        out.add_section()
    return out


def costs_table(page: str, figures: dict) -> Table:
    title = (
        f"{page}: own time by area and the costliest functions, ms per request "
        f"(cProfile, in process; unprofiled mean {figures['mean_ms']} ms)"
    )
    out = Table(title=title)
    for column in ("area / function", "calls", "own ms", "cumulative ms"):
        out.add_column(column, justify="left" if column == "area / function" else "right")
    areas = list(figures["top"]["areas"].items())
    for area, ms in areas[:12]:
        out.add_row(area, "", str(ms), "")
    out.add_row("(the rest)", "", str(round(sum(ms for _, ms in areas[12:]), 2)), "")
    out.add_section()
    for row in figures["top"]["own"]:
        values = (row["calls"], row["own_ms"], row["cumulative_ms"])
        out.add_row(row["function"], *map(str, values))
    out.add_section()
    for row in figures["top"]["cumulative"]:
        values = (row["calls"], row["own_ms"], row["cumulative_ms"])
        out.add_row(row["function"], *map(str, values))
    return out


def describe_machine() -> dict:
    described = machine.describe(f"n/a (SQLite {sqlite3.sqlite_version})", {})
    console.print(json.dumps(described))
    return described


async def amain(opts: argparse.Namespace) -> dict:
    default = Path(tempfile.gettempdir()) / f"enjournal-bench-helsenorge-{opts.patients}"
    data = Path(opts.data or default)
    data.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": describe_machine(), "options": {**vars(opts), "data": str(data)}}
    build_demo(data, opts.patients)
    citizens = citizens_with_fnr(data / "enjournal.sqlite", opts.citizens, opts.seed)
    if opts.nice:  # the load generator too (and the in-process profile)
        os.setpriority(os.PRIO_PROCESS, 0, opts.nice)
    server = DemoServer(data, opts.workers, opts.nice).start()
    try:
        console.print(f"server {server.base}, log {server.log}")
        report["logins"] = await log_in_all(server.base, citizens)
        console.print(f"logged in {len(citizens)} citizens: {report['logins']}")
        report["results"] = {}
        for think in opts.think:
            await api_tokens(server.base, citizens)
            scenarios = {"portal": portal_scenario}
            scenarios |= {"api": api_scenario(False), "api-all": api_scenario(True)}
            report["results"][f"think {think:g} s"] = await measure(
                server, scenarios, citizens, think, opts
            )
        report["server_peak_rss_mb"] = server.peak_rss_mb()
    finally:
        server.stop()
    if opts.profile:
        report["profile"] = await profile_pages(data, citizens[0], opts)
    for think, results in report["results"].items():
        console.print(table(think, results))
        for name, scenario in results.items():
            console.print(f"{name}: server CPU per page {scenario['server_cpu_ms_per_page']} ms; "
                          f"CPU in cores: server {scenario['server_cpu_share']}, load "
                          f"generator {scenario['load_generator_cpu_share']}, other processes "
                          f"{scenario['others_cpu_share']}; server waiting for a CPU "
                          f"{scenario['server_waiting_for_cpu_share']}; load average "
                          f"{scenario['load_average']}")  # fmt: skip
    for page, figures in report.get("profile", {}).items():
        console.print(costs_table(page, figures))
    save_report("helsenorge", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.helsenorge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--patients", type=int, default=2000, help="demo population size")
    parser.add_argument("--data", help="demo directory (default: a kept temp dir per size)")
    parser.add_argument("--citizens", type=int, default=50, help="concurrent logged-in citizens")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured, per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of every scenario")
    parser.add_argument("--warmup", type=float, default=3.0, help="not measured, per scenario")
    parser.add_argument(
        "--think",
        type=float,
        nargs="+",
        default=[0.0, 1.0],
        help="mean pause between a client's pages (s, exponential); one run per value",
    )
    parser.add_argument("--seed", type=int, default=1, help="which citizens")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn workers (as `enjournal demo`: 1); more share sessions in a redis-server",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="scheduling priority of the server and the load generator (negative: before "
        "other processes on a shared machine; needs root)",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="afterwards, time and profile each page in process, one request at a time",
    )
    parser.add_argument("--repeat", type=int, default=30, help="profiled requests per page")
    parser.add_argument("--top", type=int, default=25, help="rows of each cost table")
    report = asyncio.run(amain(parser.parse_args(argv)))
    for think, results in report["results"].items():
        worst = max(f["ttfb_p95_ms"] for f in results["portal"]["pages"].values())
        console.print(f"{think}: portal p95 TTFB, worst page {worst} ms (target < {TARGET_P95_MS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
