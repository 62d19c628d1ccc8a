"""Velferdsteknologi ingest end to end: ``python -m bench.velferdsteknologi``
(``make bench-velferdsteknologi``).

Issue 14's target, on this machine against Mosquitto and PostgreSQL: >= 5,000 readings/s
sustained (published -> validated -> stored and indexed -> thresholds evaluated), alert
latency (publish to alert stored) p99 < 1 s, 0 lost and 0 duplicated readings at the end.

1. A fresh PostgreSQL schema (``--database``, default ``test`` on 127.0.0.1, trust), migrated
   by the platform, with a world of ``--patients`` patients: each with three home devices
   (oximeter, blood-pressure monitor, scale; identifier system ``urn:enjournal:vkp:device``,
   ``Device.patient``, active, owned by the municipality's Organization), an active CarePlan
   and a Goal "SpO2 at least 92 %" (LOINC 2708-6, as tests/services/velferdsteknologi).
2. A private Mosquitto on a free port (the tests' configuration: ``max_inflight_messages
   1000``, a large ``max_queued_messages``, password file, ACL; subscriptions logged, so
   the bench sees when the consumers have subscribed).  One MQTT user per simulated gateway (its own
   password) whose ACL lists the ``vkp/<device>/readings`` topics of its patients' devices:
   the tests give every device its own login, which would be 1,500 connections here.
3. Baseline 1, the broker alone: the same publishers, not paced (as fast as they go, QoS 1),
   with a minimal aiomqtt consumer (QoS 1, a process of its own) that only counts.
4. ``--consumers`` processes of ``enjournal vkp consume`` (broker URL in
   ``ENJOURNAL_MQTT_URL``, each its own client id, one shared group), then the publishers (a
   process of their own: one aiomqtt client per gateway, QoS 1) at ``--rate`` readings/s for
   ``--seconds``; ``--low-share`` of the readings are SpO2 88 % (below the Goal: an alert).
   Each reading carries its publish time in an extra key (``published``), which the reading
   parser ignores; the publishers keep the times of the alerting readings.  The stored
   count is sampled every second (``max(rid)`` of the resources table); after the
   publishers stop, the bench waits for the backlog to drain, then stops the consumers.
5. End counts from the database: Observations stored, distinct reading identifiers among
   them (lost = published - distinct, duplicated = stored - distinct); alerts
   (DetectedIssue): latency = the alert's ``last_updated`` (written inside the alert's
   transaction, epoch ms) minus the publish time of the reading it names as evidence.
   CPU in cores over the publishing window: the consumers, their PostgreSQL backends (found by
   ``application_name``), all PostgreSQL processes, the broker, the publishers, the rest.
6. Baseline 2: asyncpg ``copy_records_to_table`` of as many Observation JSON rows (the same
   Observations the readings become) into a plain ``bare (id text primary key, content
   bytea)`` table, rows/s.
7. ``--profile``: one consumer in this process under cProfile (a group of its own) while the
   publishers run at ``--profile-rate`` for ``--profile-seconds``: own time by area (JSON,
   SQL, guard/policy, audit, follow-up, validation, indexing, MQTT, ...) and the costliest
   functions.

The schema is dropped at the end (``--keep`` keeps it).  The machine and everything measured
are printed and saved to bench/results/velferdsteknologi-<timestamp>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import getpass
import json
import logging
import os
import pstats
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import orjson

from bench.common import bench_platform, save_report, start_report
from bench.run import free_port, percentile

ROOT = Path(__file__).resolve().parent.parent
PG = "postgresql://postgres@127.0.0.1:5432/test"
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
ORG = "urn:oid:2.16.578.1.12.4.1.4.101"
MUNICIPALITY = "964338531"  # the demo home-care service's organisation number (tests)
HOME_DEVICE = "urn:enjournal:vkp:device"
UCUM = "http://unitsofmeasure.org"
CONSUMER_USER = "enjournal-consumer"
DEVICE_KINDS = ("oxi", "bp", "scale")
TARGET_RATE, TARGET_P99_S = 5000, 1.0


def log(message: str) -> None:
    print(message, flush=True)


# ---- the world ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Home:
    """A patient at home: national id, Patient id, and the gateway that serves the home."""

    patient_id: str
    fnr: str
    gateway: str

    def device(self, kind: str) -> str:
        return f"dev-{self.patient_id}-{kind}"


def homes(patients: int, gateways: int, seed: int) -> list[Home]:
    from enjournal.fhir.norwegian_ids import make_fnr

    rng = random.Random(seed)
    found: list[Home] = []
    used: set[str] = set()
    while len(found) < patients:
        born = date(1930 + rng.randrange(60), 1 + rng.randrange(12), 1 + rng.randrange(28))
        fnr = make_fnr(born, rng, female=rng.random() < 0.5)
        if fnr not in used:
            used.add(fnr)
            n = len(found)
            found.append(Home(f"vkp-{n}", fnr, f"gw-{n % gateways}"))
    return found


def world(home_list: list[Home]) -> list[dict]:
    org = {
        "resourceType": "Organization",
        "id": "hjemmetjenesten",
        "identifier": [{"system": ORG, "value": MUNICIPALITY}],
        "name": "Hjemmetjenesten",
    }
    return [org, *(r for home in home_list for r in _home_resources(home))]


def _home_resources(home: Home) -> list[dict]:
    subject = {"reference": f"Patient/{home.patient_id}"}
    patient = {
        "resourceType": "Patient",
        "id": home.patient_id,
        "identifier": [{"system": FNR, "value": home.fnr}],
        "name": [{"family": "Hjemme", "given": [home.patient_id]}],
    }
    devices = [
        {
            "resourceType": "Device",
            "id": home.device(kind),
            "status": "active",
            "identifier": [{"system": HOME_DEVICE, "value": home.device(kind)}],
            "owner": {"identifier": {"system": ORG, "value": MUNICIPALITY}},
            "patient": subject,
        }
        for kind in DEVICE_KINDS
    ]
    goal = {
        "resourceType": "Goal",
        "id": f"spo2-min-{home.patient_id}",
        "lifecycleStatus": "active",
        "description": {"text": "SpO2 minst 92 %"},
        "subject": subject,
        "target": [
            {
                "measure": {"coding": [{"system": "http://loinc.org", "code": "2708-6"}]},
                "detailRange": {"low": {"value": 92, "unit": "%", "system": UCUM, "code": "%"}},
            }
        ],
    }
    plan = {
        "resourceType": "CarePlan",
        "id": f"plan-{home.patient_id}",
        "status": "active",
        "intent": "plan",
        "subject": subject,
        "careTeam": [{"display": "Hjemmesykepleien"}],
        "goal": [{"reference": f"Goal/{goal['id']}"}],
    }
    return [patient, *devices, goal, plan]


async def load_world(url: str, resources: list[dict]) -> float:
    """Migrate the fresh schema through the platform and write the world; seconds taken."""
    from enjournal.bootstrap import close_platform

    started = time.monotonic()
    platform = await bench_platform(url, pool_size=2)
    try:
        for at in range(0, len(resources), 500):
            async with platform.store.transaction() as tx:
                for resource in resources[at : at + 500]:
                    await tx.update(resource, resource["id"])
    finally:
        await close_platform(platform)
    return time.monotonic() - started


# ---- the schema ---------------------------------------------------------------------------


async def create_schema(admin: str) -> str:
    schema = f"bench_vkp_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return schema


async def drop_schema(admin: str, schema: str) -> None:
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def schema_url(admin: str, schema: str, app: str) -> str:
    """The schema's URL; ``application_name`` (asyncpg passes unknown query parameters on
    as server settings) tells the consumers' backends apart in pg_stat_activity."""
    return f"{admin}?search_path={schema}&application_name={app}"


# ---- the broker ---------------------------------------------------------------------------


@dataclass
class Broker:
    port: int
    process: subprocess.Popen
    consumer_password: str
    gateway_passwords: dict[str, str]
    version: str
    log: Path

    def consumer_url(self) -> str:
        return f"mqtt://{CONSUMER_USER}:{self.consumer_password}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_broker(folder: Path, home_list: list[Home]) -> Broker:
    """Mosquitto as the tests run it: passwords and an ACL; a login per gateway that may
    write only its own devices' topics."""
    consumer_password = secrets.token_hex(8)
    gateways = sorted({h.gateway for h in home_list})
    passwords = {g: secrets.token_hex(8) for g in gateways}
    file = folder / "passwords"
    lines = [f"{CONSUMER_USER}:{consumer_password}", *(f"{g}:{p}" for g, p in passwords.items())]
    file.write_text("\n".join(lines) + "\n")
    subprocess.run(["mosquitto_passwd", "-U", str(file)], check=True)  # hash them all at once
    acl = folder / "acl"
    acl.write_text(_acl(home_list))
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {file}\nacl_file {acl}\npersistence false\n"
        "max_inflight_messages 1000\nmax_queued_messages 10000000\n"
        "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        "log_type subscribe\n"
    )
    # its log to a file: a pipe nobody reads fills up and stops the broker
    with (folder / "mosquitto.log").open("wb") as broker_log:
        process = subprocess.Popen(["mosquitto", "-c", str(config)], stderr=broker_log)
    _wait_for_port(port, process, folder / "mosquitto.log")
    version = mosquitto_version()
    return Broker(port, process, consumer_password, passwords, version, folder / "mosquitto.log")


def _acl(home_list: list[Home]) -> str:
    lines = [f"user {CONSUMER_USER}", "topic read vkp/+/readings", "topic read vkp/+/alarms"]
    lines += ["topic read $SYS/#", ""]
    by_gateway: dict[str, list[Home]] = {}
    for home in home_list:
        by_gateway.setdefault(home.gateway, []).append(home)
    for gateway, served in by_gateway.items():
        lines.append(f"user {gateway}")
        lines += [f"topic write vkp/{h.device(k)}/readings" for h in served for k in DEVICE_KINDS]
        lines.append("")
    return "\n".join(lines)


def _wait_for_port(port: int, process: subprocess.Popen, broker_log: Path) -> None:
    import socket

    for _ in range(100):
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto did not start: {broker_log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not open its port")


def mosquitto_version() -> str:
    done = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].strip() if first else "unknown"


async def wait_for_consumers(broker: Broker, group: str, client_ids: list[str]) -> float:
    """Seconds until each consumer has subscribed to the readings (the broker logs it): a
    shared subscription drops what is published before anyone subscribed."""
    started = time.monotonic()
    wanted = [f"{c} 1 $share/{group}/vkp/+/readings" for c in client_ids]
    while not all(w in broker.log.read_text(errors="replace") for w in wanted):
        if time.monotonic() - started > 120:
            raise RuntimeError(f"the consumers did not subscribe in time (see {broker.log})")
        await asyncio.sleep(0.25)
    return time.monotonic() - started


# ---- the publishers (a process of their own) ---------------------------------------------


def reading_payload(
    home: Home, n: int, gateway_no: int, low: bool, rng: random.Random, prefix: str = ""
) -> tuple:
    """(device, payload, reading id) of one reading; ``low``: SpO2 88 % (below the Goal);
    ``prefix`` keeps each phase's reading ids apart."""
    now = time.time()
    measured = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    reading_id = f"{prefix}g{gateway_no}-{n}"
    body: dict = {"id": reading_id, "measured": measured, "patient": home.fnr, "published": now}
    pick = rng.random()
    if low or pick < 0.4:
        kind, value, unit = "oxi", (88 if low else rng.randint(93, 99)), "%"
        body |= {"type": "spo2", "value": value, "unit": unit}
    elif pick < 0.7:
        kind = "oxi"
        body |= {"type": "pulse", "value": rng.randint(55, 95), "unit": "/min"}
    elif pick < 0.9:
        kind = "bp"
        pressure = {"systolic": rng.randint(110, 150), "diastolic": rng.randint(65, 90)}
        body |= {"type": "blood-pressure", "value": pressure, "unit": "mm[Hg]"}
    else:
        kind = "scale"
        body |= {"type": "weight", "value": round(rng.uniform(55, 110), 1), "unit": "kg"}
    return home.device(kind), orjson.dumps(body), reading_id


async def run_gateway(spec: dict, gateway_no: int, served: list[Home], result: dict) -> None:
    """One gateway's client: its share of the rate (or as fast as it goes: rate 0), QoS 1,
    at most ``window`` publishes waiting for their PUBACK.  paho's publish is called directly
    (aiomqtt's awaits each PUBACK in a task of its own: several times the CPU)."""
    import aiomqtt

    name = f"gw-{gateway_no}"
    rng = random.Random(spec["seed"] * 1000 + gateway_no)
    per_second = spec["rate"] / spec["gateways"]
    state = {"acked": 0, "sent": 0}
    room = asyncio.Event()

    def acked(*_args) -> None:  # paho's on_publish, on the event loop
        state["acked"] += 1
        room.set()

    async with aiomqtt.Client(
        "127.0.0.1",
        spec["port"],
        username=name,
        password=spec["passwords"][name],
        identifier=f"{name}-{uuid.uuid4().hex[:6]}",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=spec["window"],
    ) as client:
        paho = client._client
        paho.on_publish = acked
        await _start_barrier(spec)
        started = time.monotonic()
        end = started + spec["seconds"]
        while (now := time.monotonic()) < end:
            n = state["sent"]
            if per_second and n >= int((now - started) * per_second):
                await asyncio.sleep(0.005)
                continue
            if n - state["acked"] >= spec["window"]:
                room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(room.wait(), 1.0)
                continue
            low = rng.random() < spec["low_share"]
            home = served[n % len(served)]
            prefix = spec["prefix"]
            device, payload, reading_id = reading_payload(home, n, gateway_no, low, rng, prefix)
            if low:
                result["low"][reading_id] = time.time()  # within µs of the payload's
            if paho.publish(f"vkp/{device}/readings", payload, qos=1).rc != 0:
                result["failed"] += 1
            state["sent"] += 1
        deadline = time.monotonic() + 60
        while state["acked"] < state["sent"] - result["failed"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        result["published"] += state["acked"]
        result["attempted"] += state["sent"]


async def _start_barrier(spec: dict) -> None:
    """Every gateway starts at the same wall-clock time."""
    delay = spec["start_at"] - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def publish_main(spec: dict) -> dict:
    """The gateways of this publisher process (gateway number modulo the processes)."""
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    home_list = [Home(**h) for h in spec["homes"]]
    by_gateway: dict[int, list[Home]] = {}
    for home in home_list:
        number = int(home.gateway[3:])
        if number % spec["parts"] == spec["part"]:
            by_gateway.setdefault(number, []).append(home)
    result: dict = {"published": 0, "failed": 0, "attempted": 0, "low": {}}
    cpu = time.process_time()
    await asyncio.gather(*(run_gateway(spec, g, s, result) for g, s in by_gateway.items()))
    result["finished_at"] = time.time()
    result["cpu_seconds"] = time.process_time() - cpu
    return result


@dataclass
class Publishers:
    """The publisher processes of one phase; ``start_at``: when they begin (wall clock)."""

    processes: list[tuple[subprocess.Popen, Path]]
    start_at: float

    def finish(self) -> dict:
        """Wait for every process; their results summed."""
        total: dict = {"published": 0, "failed": 0, "attempted": 0, "low": {}}
        total |= {"cpu_seconds": 0.0, "finished_at": 0.0}
        for process, out in self.processes:
            if process.wait() != 0:
                raise RuntimeError(f"a publisher failed ({process.returncode})")
            one = json.loads(out.read_text())
            for key in ("published", "failed", "attempted", "cpu_seconds"):
                total[key] += one[key]
            total["low"] |= one["low"]
            total["finished_at"] = max(total["finished_at"], one["finished_at"])
        return total

    def pids(self) -> list[int]:
        return [p.pid for p, _ in self.processes]


def start_publishers(
    folder: Path, broker: Broker, home_list: list[Home], rate: float, seconds: float, opts
) -> Publishers:
    """``--publishers`` processes, all starting at a wall-clock time 2 s ahead."""
    start_at = time.time() + 2.0
    spec = {
        "port": broker.port,
        "passwords": broker.gateway_passwords,
        "homes": [h.__dict__ for h in home_list],
        "gateways": opts.gateways,
        "rate": rate,
        "seconds": seconds,
        "low_share": opts.low_share,
        "window": opts.window,
        "seed": opts.seed,
        "start_at": start_at,
        "parts": opts.publishers,
        "prefix": secrets.token_hex(2) + "-",
    }
    started = []
    for part in range(opts.publishers):
        spec_file = folder / f"publish-{uuid.uuid4().hex[:6]}.json"
        out = spec_file.with_suffix(".out.json")
        spec_file.write_text(json.dumps({**spec, "part": part}))
        command = [sys.executable, "-m", "bench.velferdsteknologi", "_publish"]
        started.append((subprocess.Popen([*command, str(spec_file), str(out)], cwd=ROOT), out))
    return Publishers(started, start_at)


# ---- baseline 1: the broker alone ---------------------------------------------------------


async def count_main(port: int, password: str, idle: float, out: Path) -> None:
    """The minimal consumer: QoS 1, counts, stops ``idle`` s after the last message."""
    import aiomqtt

    count, first, last = 0, 0.0, 0.0
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        username=CONSUMER_USER,
        password=password,
        identifier=f"counter-{uuid.uuid4().hex[:6]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        await client.subscribe("$share/count/vkp/+/readings", qos=1)
        out.with_suffix(".ready").write_text("1")
        messages = aiter(client.messages)
        while True:
            try:
                await asyncio.wait_for(anext(messages), timeout=idle if count else 120)
            except TimeoutError:
                break
            count += 1
            last = time.time()
            first = first or last
    cpu = time.process_time()
    out.write_text(json.dumps({"count": count, "first": first, "last": last, "cpu": cpu}))


async def broker_baseline(folder: Path, broker: Broker, home_list: list[Home], opts) -> dict:
    out = folder / "count.json"
    command = [sys.executable, "-m", "bench.velferdsteknologi", "_count", str(broker.port)]
    counter = subprocess.Popen([*command, broker.consumer_password, str(out)], cwd=ROOT)
    while not out.with_suffix(".ready").exists():
        await asyncio.sleep(0.05)
    before = cpu_snapshot({"broker": [broker.process.pid]})
    pub = start_publishers(folder, broker, home_list, 0, opts.baseline_seconds, opts)
    start_at = pub.start_at
    published = await asyncio.to_thread(pub.finish)
    await asyncio.to_thread(counter.wait, 60)
    used = cpu_used(before, {"broker": [broker.process.pid]})
    counted = json.loads(out.read_text())
    seconds = max(counted["last"] - start_at, 1e-9)
    figures = {
        "published": published["published"],
        "failed": published["failed"],
        "counted": counted["count"],
        "seconds": round(seconds, 2),
        "messages_per_second": round(counted["count"] / seconds),
        "cpu_seconds": {**{k: round(v, 2) for k, v in used.items()}},
        "publisher_cpu_seconds": round(published["cpu_seconds"], 2),
        "counter_cpu_seconds": round(counted["cpu"], 2),
    }
    log(f"baseline, broker alone: {figures}")
    return figures


# ---- baseline 2: COPY ---------------------------------------------------------------------


async def copy_baseline(url: str, home_list: list[Home], rows: int) -> dict:
    """``rows`` Observations (as the readings become) COPY'd into a plain table."""
    from enjournal.services.velferdsteknologi import readings

    rng, now = random.Random(7), datetime.now(UTC)
    records = []
    for n in range(rows):
        device, payload, _ = reading_payload(home_list[n % len(home_list)], n, 0, False, rng)
        body = orjson.loads(payload)
        obs = readings.observation(body, device, body["patient"], now)
        records.append((f"obs-{n}", orjson.dumps(obs)))
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE bare (id text PRIMARY KEY, content bytea)")
        started = time.perf_counter()
        await conn.copy_records_to_table("bare", records=records, columns=["id", "content"])
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    figures = {"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds)}
    log(f"baseline, COPY: {figures}")
    return figures


# ---- CPU ----------------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_pids() -> list[int]:
    """Every PostgreSQL process on the machine (its backends of other sessions too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
    return found


def machine_cpu() -> float:
    """Seconds of CPU the whole machine spent (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICKS  # without idle and iowait


def cpu_snapshot(groups: dict[str, list[int]]) -> dict:
    snapshot = {name: {pid: process_cpu(pid) for pid in pids} for name, pids in groups.items()}
    return {"groups": snapshot, "machine": machine_cpu(), "at": time.monotonic()}


def cpu_used(before: dict, groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds each group used since ``before`` (a process new since then: all of it)."""
    used = {}
    for name, pids in groups.items():
        old = before["groups"].get(name, {})
        used[name] = sum(process_cpu(pid) - old.get(pid, 0.0) for pid in pids)
    used["machine"] = machine_cpu() - before["machine"]
    used["wall"] = time.monotonic() - before["at"]
    return used


async def backend_pids(url: str, app: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", app)
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


# ---- the consumers ------------------------------------------------------------------------


def start_consumers(url: str, broker: Broker, group: str, opts) -> list[subprocess.Popen]:
    env = {**os.environ, "ENJOURNAL_MQTT_URL": broker.consumer_url()}
    started = []
    for n in range(opts.consumers):
        command = [sys.executable, "-m", "enjournal.cli", "vkp", "consume", "--database", url]
        command += ["--client-id", f"{group}-{n}", "--group", group, "--batch", str(opts.batch)]
        started.append(
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    return started


def stop_consumers(consumers: list[subprocess.Popen]) -> list[str]:
    """SIGTERM (each stores and acknowledges what it holds), then what each printed."""
    for process in consumers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    said = []
    for process in consumers:
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        said.append(out.decode().strip() or err.decode()[-2000:])
    return said


# ---- the end-to-end run -------------------------------------------------------------------


class Sampler:
    """The stored count every second (``max(rid)``: resources only grow during the run)."""

    def __init__(self, url: str):
        self.url = url
        self.samples: list[tuple[float, int]] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            base = await conn.fetchval("SELECT coalesce(max(rid), 0) FROM resources")
            while not self.stop.is_set():
                rid = await conn.fetchval("SELECT coalesce(max(rid), 0) FROM resources")
                self.samples.append((time.time(), rid - base))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), 1.0)
        finally:
            await conn.close()

    def at(self, when: float) -> int:
        """Stored by ``when`` (the last sample before it)."""
        found = [n for t, n in self.samples if t <= when]
        return found[-1] if found else 0

    def latest(self) -> int:
        return self.samples[-1][1] if self.samples else 0


async def end_to_end(url: str, admin: str, schema: str, broker: Broker, home_list, opts) -> dict:
    group = f"bench-{secrets.token_hex(3)}"
    app = f"{schema}_consumer"
    consumer_url = schema_url(admin, schema, app)
    started = time.monotonic()
    consumers = start_consumers(consumer_url, broker, group, opts)
    try:
        ids = [f"{group}-{n}" for n in range(opts.consumers)]
        ready = await wait_for_consumers(broker, group, ids)
        log(f"{opts.consumers} consumers subscribed after {ready:.1f} s")
        return await _measure(url, broker, home_list, consumers, app, opts)
    finally:
        said = stop_consumers(consumers)
        for n, words in enumerate(said):
            log(f"consumer {n}: {words}")
        log(f"end to end phase took {time.monotonic() - started:.0f} s")


async def _measure(url, broker, home_list, consumers, app, opts) -> dict:
    folder = Path(opts.folder)
    sampler = Sampler(url)
    sampling = asyncio.create_task(sampler.run())
    pub = start_publishers(folder, broker, home_list, opts.rate, opts.seconds, opts)
    start_at = pub.start_at
    await asyncio.sleep(max(0.0, start_at - time.time()))
    groups = await _cpu_groups(url, broker, consumers, app)
    before = cpu_snapshot(groups)
    published = await asyncio.to_thread(pub.finish)
    end_at = time.time()
    groups = await _cpu_groups(url, broker, consumers, app)
    used = cpu_used(before, groups)
    used["publishers"] = published["cpu_seconds"]  # their own process_time
    stored_at_end = sampler.at(end_at)
    drained = await _drain(sampler, published["published"], opts.drain_timeout)
    sampler.stop.set()
    await sampling
    figures = {
        "offered_per_second": opts.rate,
        "published": published["published"],
        "publish_failed": published["failed"],
        "published_per_second": round(published["published"] / opts.seconds),
        "stored_in_window": stored_at_end,
        "achieved_per_second": round(stored_at_end / opts.seconds),
        "steady_per_second": _steady(sampler, start_at, end_at),
        "backlog_at_end": published["published"] - stored_at_end,
        "drain_seconds": drained,
        "drained": drained is not None,
        "series": [(round(t - start_at, 1), n) for t, n in sampler.samples],
        "cpu_cores": {k: round(v / used["wall"], 2) for k, v in used.items() if k != "wall"},
        "window_seconds": round(used["wall"], 1),
    }
    figures["cpu_cores"]["rest"] = round(
        figures["cpu_cores"]["machine"]
        - sum(figures["cpu_cores"][k] for k in ("consumers", "postgres_all", "broker"))
        - figures["cpu_cores"]["publishers"],
        2,
    )
    per_second = max(figures["achieved_per_second"], 1)
    for name in ("consumers", "consumer_backends", "broker"):
        cores = figures["cpu_cores"][name]
        figures[f"{name}_cpu_ms_per_reading"] = round(cores * 1000 / per_second, 2)
    figures |= await end_counts(url, published)
    return figures


async def _cpu_groups(url, broker, consumers, app) -> dict[str, list[int]]:
    return {
        "consumers": [p.pid for p in consumers],
        "consumer_backends": await backend_pids(url, app),
        "postgres_all": postgres_pids(),
        "broker": [broker.process.pid],
    }


def _steady(sampler: Sampler, start_at: float, end_at: float) -> int | None:
    """Stored per second from a sixth into the window to its end (past the ramp-up)."""
    from_t = start_at + (end_at - start_at) / 6
    rows = [(t, n) for t, n in sampler.samples if from_t <= t <= end_at]
    if len(rows) < 2 or rows[-1][0] <= rows[0][0]:
        return None
    return round((rows[-1][1] - rows[0][1]) / (rows[-1][0] - rows[0][0]))


async def _drain(sampler: Sampler, published: int, timeout: float) -> float | None:
    """Seconds until everything published is stored (alerts add rows: >=); None if the
    count stopped moving for 20 s or ``timeout`` passed."""
    started = time.monotonic()
    last, moved = -1, time.monotonic()
    while time.monotonic() - started < timeout:
        now = sampler.latest()
        if now >= published:
            await asyncio.sleep(2.0)  # the alerts of the last readings
            return round(time.monotonic() - started, 1)
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > 20:
            return None
        await asyncio.sleep(0.5)
    return None


async def end_counts(url: str, published: dict) -> dict:
    conn = await asyncpg.connect(url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM resources WHERE type = 'Observation' AND NOT deleted"
        )
        distinct = await conn.fetchval(
            "SELECT count(DISTINCT (t.system, t.code)) FROM idx_token t JOIN resources r "
            "USING (rid) WHERE r.type = 'Observation' AND t.param = 'identifier' "
            "AND NOT r.deleted"
        )
        alerts = await conn.fetch(
            "SELECT content, last_updated FROM resources WHERE type = 'DetectedIssue'"
        )
        tasks = await conn.fetchval("SELECT count(*) FROM resources WHERE type = 'Task'")
        latencies = await _alert_latencies(conn, alerts, published["low"])
    finally:
        await conn.close()
    values = sorted(latencies)
    return {
        "stored": stored,
        "distinct_readings": distinct,
        "lost": published["published"] - distinct,
        "duplicated": stored - distinct,
        "low_readings_published": len(published["low"]),
        "alerts": len(alerts),
        "tasks": tasks,
        "alert_latency_samples": len(values),
        "alert_latency_ms": {
            f"p{p}": round(percentile(values, p) * 1000, 1) for p in (50, 95, 99, 100)
        },
    }


async def _alert_latencies(conn, alerts, low: dict[str, float]) -> list[float]:
    """Each alert's ``last_updated`` minus the publish time of its newest evidence."""
    found = []
    for row in alerts:
        issue = orjson.loads(row["content"])
        refs = [d["reference"] for e in issue.get("evidence") or () for d in e.get("detail") or ()]
        if not refs:
            continue
        content = await conn.fetchval(
            "SELECT content FROM resources WHERE type = 'Observation' AND id = $1",
            refs[-1].split("/", 1)[1],
        )
        reading_id = orjson.loads(content)["identifier"][0]["value"]
        if reading_id in low:
            found.append(row["last_updated"] / 1000 - low[reading_id])
    return found


# ---- the profile (one consumer in this process) ------------------------------------------

AREAS = (  # (marker in the file path or builtin's name, area); first match wins
    ("orjson", "JSON"),
    ("json", "JSON"),
    ("enjournal/fhir/jsonio", "JSON"),
    ("asyncpg", "SQL (asyncpg, storage)"),
    ("enjournal/storage/", "SQL (asyncpg, storage)"),
    ("enjournal/security/audit", "audit"),
    ("enjournal/security/", "guard/policy"),
    ("velferdsteknologi/hooks", "guard/policy"),
    ("velferdsteknologi/followup", "follow-up"),
    ("velferdsteknologi/rules", "follow-up"),
    ("velferdsteknologi/alerts", "follow-up"),
    ("velferdsteknologi/readings", "readings (parse)"),
    ("velferdsteknologi/", "ingest, hub"),
    ("enjournal/fhir/validation", "validation"),
    ("enjournal/fhir/invariants", "validation"),
    ("enjournal/fhir/fhirpath", "validation"),
    ("enjournal/fhir/element_types", "validation"),
    ("enjournal/terminology", "validation"),
    ("enjournal/fhir/indexing", "indexing"),
    ("enjournal/fhir/search", "search (parse, bundle)"),
    ("enjournal/rest/", "REST (transaction, routing)"),
    ("enjournal/bootstrap", "REST (transaction, routing)"),
    ("enjournal/", "enjournal (other)"),
    ("paho", "MQTT (paho, aiomqtt)"),
    ("aiomqtt", "MQTT (paho, aiomqtt)"),
    ("asyncio", "asyncio"),
    ("copy.py", "copy"),
)


def _area(file: str, name: str) -> str:
    where = f"{file}:{name}"
    for marker, area in AREAS:
        if marker in where:
            return area
    return "other"


async def profile_consumer(url: str, broker: Broker, home_list: list[Home], opts) -> dict:
    """One consumer in this process under cProfile (a group of its own) while the publishers
    (another process) run at ``--profile-rate``."""
    from enjournal.bootstrap import close_platform, compose, open_platform
    from enjournal.security.setup import worker_security
    from enjournal.services.velferdsteknologi.ingest import Ingest
    from enjournal.services.velferdsteknologi.mqtt import Broker as Endpoint
    from enjournal.services.velferdsteknologi.mqtt import Consumer
    from enjournal.settings import Settings

    settings = Settings.from_env(database_url=url)
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security))
    await security.start(platform.store)
    ingest = Ingest(platform)
    group = f"profile-{secrets.token_hex(3)}"
    consumer = Consumer(ingest, Endpoint.from_url(broker.consumer_url()), group, group=group)
    stop = asyncio.Event()
    profiler = cProfile.Profile(time.process_time)  # CPU time: waiting in epoll is not cost
    try:
        task = asyncio.create_task(consumer.run_forever(stop))
        await wait_for_consumers(broker, group, [group])
        pub = start_publishers(
            Path(opts.folder), broker, home_list, opts.profile_rate, opts.profile_seconds, opts
        )
        # not profiled: the first seconds (patients looked up, care plans read: cached after)
        await asyncio.sleep(max(0.0, pub.start_at - time.time()) + opts.profile_warmup)
        handled_before = _handled(ingest)
        cpu = time.process_time()
        profiler.enable()
        published = await asyncio.to_thread(pub.finish)
        profiler.disable()
        cpu = time.process_time() - cpu
        handled = _handled(ingest) - handled_before
        stop.set()
        await asyncio.wait_for(task, 120)
    finally:
        await security.stop()
        await close_platform(platform)
    figures = {
        "offered_per_second": opts.profile_rate,
        "published": published["published"],
        "profiled_seconds": round(opts.profile_seconds - opts.profile_warmup, 1),
        "handled_while_profiled": handled,
        "counts": dict(ingest.counts),
        "cpu_seconds_profiled": round(cpu, 2),
        "cpu_ms_per_reading_profiled": round(cpu * 1000 / max(handled, 1), 2),
    }
    log(f"profile: {figures}")
    figures |= profile_table(profiler, max(handled, 1), opts.top)
    return figures


def _handled(ingest) -> int:
    return sum(ingest.counts[k] for k in ("stored", "duplicate", "refused"))


def profile_table(profiler: cProfile.Profile, readings: int, count: int) -> dict:
    """Own time by area and the costliest functions, µs per reading (a builtin's own time
    goes to its caller's area, but JSON's)."""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    areas: dict[str, float] = {}
    rows = []
    for (file, line, name), (_, calls, own, cumulative, callers) in stats.items():
        rows.append((f"{_short(file)}:{line}({name})", calls, own, cumulative))
        if file == "~" and "json" not in name and callers:
            total = sum(v[2] for v in callers.values()) or 1.0
            for (cfile, _, cname), v in callers.items():
                area = _area(cfile, cname)
                areas[area] = areas.get(area, 0.0) + own * v[2] / total
        else:
            area = _area(file, name)
            areas[area] = areas.get(area, 0.0) + own
    per = 1e6 / readings
    total = sum(areas.values()) or 1.0
    by_area = sorted(areas.items(), key=lambda x: -x[1])
    own_rows = sorted(rows, key=lambda r: -r[2])[:count]
    inner = [r for r in rows if r[0].startswith("enjournal/")]
    cumulative_rows = sorted(inner, key=lambda r: -r[3])[:count]

    def ranked(rows):
        return [
            {"function": f, "calls_per_reading": round(c / readings, 2),
             "own_us": round(o * per, 1), "cumulative_us": round(t * per, 1)}
            for f, c, o, t in rows
        ]  # fmt: skip

    return {
        "readings": readings,
        "profiled_us_per_reading": round(total * per, 1),
        "areas_us_per_reading": {a: round(s * per, 1) for a, s in by_area},
        "areas_share": {a: round(s / total, 3) for a, s in by_area},
        "own": ranked(own_rows),
        "cumulative": ranked(cumulative_rows),
    }


def _short(file: str) -> str:
    for cut in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if cut in file:
            return file.split(cut, 1)[1]
    return file


# ---- the report ---------------------------------------------------------------------------


def print_summary(report: dict) -> None:
    run, broker, copy = report["end_to_end"], report["broker_baseline"], report["copy_baseline"]
    achieved = run["steady_per_second"] or run["achieved_per_second"]
    log("")
    log(f"offered {run['offered_per_second']}/s, published {run['published_per_second']}/s")
    log(f"stored {run['achieved_per_second']}/s in the window, steady {run['steady_per_second']}/s")
    log(f"backlog at the end {run['backlog_at_end']}, drained in {run['drain_seconds']} s")
    if not run["drained"]:
        log(
            "NOT DRAINED: the consumers were stopped with readings still queued in the broker; "
            "'lost' below counts those (not stored yet), not readings the platform lost"
        )
    ratio = achieved / broker["messages_per_second"]
    log(f"x broker alone ({broker['messages_per_second']} msg/s): {ratio:.3f}")
    log(f"x COPY ({copy['rows_per_second']} rows/s): {achieved / copy['rows_per_second']:.4f}")
    log(
        f"published {run['published']}, stored {run['stored']}, distinct "
        f"{run['distinct_readings']}: lost {run['lost']}, duplicated {run['duplicated']}"
    )
    log(
        f"alerts {run['alerts']} (tasks {run['tasks']}), {run['low_readings_published']} low "
        f"readings; latency ms {run['alert_latency_ms']}, {run['alert_latency_samples']} samples"
    )
    log(f"CPU in cores over {run['window_seconds']} s: {run['cpu_cores']}")
    log(
        f"CPU ms per stored reading: consumers {run['consumers_cpu_ms_per_reading']}, their "
        f"PostgreSQL backends {run['consumer_backends_cpu_ms_per_reading']}"
    )
    met = (
        achieved >= TARGET_RATE
        and run["backlog_at_end"] <= TARGET_RATE
        and run["alert_latency_ms"]["p99"] < TARGET_P99_S * 1000
        and run["lost"] == 0
        and run["duplicated"] == 0
    )
    verdict = "MET" if met else "NOT MET"
    log(f"target (>= {TARGET_RATE}/s sustained, alert p99 < 1 s, no loss or duplicate): {verdict}")
    profile = report.get("profile")
    if profile:
        log(f"\nprofile: one consumer in process, {profile['offered_per_second']}/s offered")
        log(f"{profile['profiled_us_per_reading']} µs per reading profiled; by area (µs/reading):")
        for area, us in profile["areas_us_per_reading"].items():
            log(f"  {us:>9} {profile['areas_share'][area]:>6.1%}  {area}")
        log("costliest own time (µs/reading, calls/reading):")
        for row in profile["own"]:
            log(f"  {row['own_us']:>9} {row['calls_per_reading']:>8}  {row['function']}")
        log("enjournal by cumulative time (µs/reading):")
        for row in profile["cumulative"]:
            log(f"  {row['cumulative_us']:>9} {row['calls_per_reading']:>8}  {row['function']}")


async def amain(opts: argparse.Namespace) -> dict:
    report = await start_report(opts.database, {**vars(opts)})
    home_list = homes(opts.patients, opts.gateways, opts.seed)
    schema = await create_schema(opts.database)
    url = schema_url(opts.database, schema, f"{schema}_bench")
    folder = Path(tempfile.mkdtemp(prefix="bench-vkp-"))
    opts.folder = str(folder)
    broker = start_broker(folder, home_list)
    report["machine"]["mosquitto"] = broker.version
    log(f"schema {schema}, broker :{broker.port} ({broker.version}), files in {folder}")
    try:
        seconds = await load_world(url, world(home_list))
        log(f"world: {opts.patients} patients, {3 * opts.patients} devices, "
            f"{opts.gateways} gateways, loaded in {seconds:.1f} s")  # fmt: skip
        report["broker_baseline"] = await broker_baseline(folder, broker, home_list, opts)
        report["end_to_end"] = await end_to_end(url, opts.database, schema, broker, home_list, opts)
        rows = report["end_to_end"]["published"]
        report["copy_baseline"] = await copy_baseline(url, home_list, rows)
        if opts.profile:
            report["profile"] = await profile_consumer(url, broker, home_list, opts)
    finally:
        broker.stop()
        if not opts.keep:
            await drop_schema(opts.database, schema)
    run = report["end_to_end"]
    achieved = run["steady_per_second"] or run["achieved_per_second"]
    report["ratios"] = {
        "x_broker_alone": round(achieved / report["broker_baseline"]["messages_per_second"], 3),
        "x_copy": round(achieved / report["copy_baseline"]["rows_per_second"], 4),
    }
    print_summary(report)
    save_report("velferdsteknologi", report)
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.velferdsteknologi",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--database", default=os.environ.get("ENJOURNAL_BENCH_VKP_PG", PG),
        help="PostgreSQL database to create (and drop) a schema in")  # fmt: skip
    add("--patients", type=int, default=500, help="patients at home, three devices each")
    add("--gateways", type=int, default=50, help="simulated gateways (MQTT clients)")
    add("--rate", type=float, default=5000, help="offered readings/s")
    add("--seconds", type=float, default=60, help="publishing time (the issue: 300)")
    add("--consumers", type=int, default=2, help="`enjournal vkp consume` processes")
    add("--batch", type=int, default=500, help="the consumers' --batch")
    add("--low-share", type=float, default=0.01, help="share of readings that are SpO2 88 %%")
    add("--window", type=int, default=100, help="publishes awaiting PUBACK per gateway")
    add("--publishers", type=int, default=2, help="publisher processes (gateways split)")
    add("--baseline-seconds", type=float, default=15, help="broker-alone baseline, unpaced")
    add("--drain-timeout", type=float, default=300, help="most seconds to wait for the backlog")
    add("--profile", action=argparse.BooleanOptionalAction, default=False,
        help="afterwards, one consumer in process under cProfile")  # fmt: skip
    add("--profile-rate", type=float, default=300, help="offered readings/s while profiling")
    add("--profile-seconds", type=float, default=40, help="publishing while profiling")
    add("--profile-warmup", type=float, default=15, help="of those, not profiled (caches)")
    add("--top", type=int, default=25, help="rows of the profile's tables")
    add("--seed", type=int, default=1)
    add("--keep", action="store_true", help="keep the schema")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_publish"]:  # the publisher process
        result = asyncio.run(publish_main(json.loads(Path(argv[1]).read_text())))
        Path(argv[2]).write_text(json.dumps(result))
        return 0
    if argv[:1] == ["_count"]:  # the broker baseline's counting consumer
        asyncio.run(count_main(int(argv[1]), argv[2], 3.0, Path(argv[3])))
        return 0
    asyncio.run(amain(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
