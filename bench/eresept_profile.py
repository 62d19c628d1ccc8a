"""In-process cost of the pharmacy cycle: ``python -m bench.eresept_profile``.

No network, no server processes: a fresh PostgreSQL database gets the world of
``bench.eresept`` (``--prescriptions``, default 20 000) and the in-process ASGI app is
called directly (no HTTP client), with security off and, with ``--security``, on (tokens,
guard, audit events in the write's transaction and through the audit writer for the
lookup).  One client runs ``--cycles`` cycles of $dispensable, $take, $dispense and prints
per step: mean/p95 time, SQL round trips (statements + BEGIN/COMMIT; an ``executemany`` is
one pipelined round trip) and, with ``--profile``, the functions with most cumulative time
(cProfile) per step.  Prints the load average: compare runs at similar load.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import random
import statistics
import tempfile
import time
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path

import orjson

from bench.eresept import load, pharmacies
from bench.run import Databases
from enjournal.services.eresept import rules

ISSUER = "http://bench/oidc"
STEPS = ("lookup", "take", "dispense")


class RoundTrips:
    """Counts SQL round trips by wrapping the PostgreSQL connection and backend."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.statements: Counter[str] = Counter()
        self.step = "other"

    def install(self, trace: bool) -> None:
        from enjournal.storage import postgres

        counter = self
        for name in ("fetch", "fetchrow", "execute", "executemany"):
            original = getattr(postgres.PostgresConnection, name)

            def wrapped(self_, sql, *args, _original=original):
                counter.counts[counter.step] += 1
                if trace:
                    counter.statements[f"{counter.step}: {sql[:90]}"] += 1
                return _original(self_, sql, *args)

            setattr(postgres.PostgresConnection, name, wrapped)
        transaction = postgres.PostgresBackend.transaction

        @asynccontextmanager
        async def counted(self_, *, write: bool):
            if write:
                counter.counts[counter.step] += 2  # BEGIN and COMMIT
            async with transaction(self_, write=write) as conn:
                yield conn

        postgres.PostgresBackend.transaction = counted


async def call(app, method: str, path: str, body: bytes, headers: list) -> tuple[int, bytes]:
    """One request straight into the ASGI app."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/fhir+json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
        "state": {},
    }
    sent = False
    out: dict = {"status": 0, "body": []}

    async def receive():
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"].append(message.get("body", b""))

    await app(scope, receive, send)
    return out["status"], b"".join(out["body"])


def _params(**values) -> bytes:
    parts = []
    for name, value in values.items():
        key = "valueDecimal" if isinstance(value, int | float) else "valueString"
        parts.append({"name": name, key: value})
    return orjson.dumps({"resourceType": "Parameters", "parameter": parts})


async def build_app(url: str, secured: bool, orgs: list[str]):
    """The app over its own store; with security, a pharmacist's token per organisation."""
    from bench.common import bench_store
    from enjournal.server.app import create_app
    from enjournal.settings import Settings

    store = await bench_store(url, pool_size=4)
    settings = Settings(database_url=url, public_url="http://bench", jobs=False, auth=secured)
    if not secured:
        return create_app(settings, store, None), store, None, {}
    from enjournal.security.keys import generate
    from enjournal.security.provider import DemoUser, Provider, ProviderConfig
    from enjournal.security.ratelimit import MemoryLimiter
    from enjournal.security.setup import Security
    from enjournal.security.tokens import TokenVerifier

    users = [
        DemoUser(
            f"farm{n}",
            "personnel",
            f"Farmasøyt {n}",
            hpr=f"{3000000 + n}",
            profession="FA",
            org_nr=org,
        )
        for n, org in enumerate(orgs)
    ]
    provider = Provider(ProviderConfig(issuer=ISSUER, key=generate(), users=users))
    security = Security(
        verifier=TokenVerifier([provider.issuer_config()]),
        provider=provider,
        limiter=MemoryLimiter(),
    )
    await security.start(store)
    tokens = {
        u.org_nr: provider.issue_token(u, scopes="user/MedicationRequest.cruds") for u in users
    }
    return create_app(settings, store, security), store, security, tokens


async def cycles(app, pids, orgs, tokens, count, trips: RoundTrips, profiles: dict | None):
    times: dict[str, list[float]] = {s: [] for s in STEPS}
    done = Counter()
    rng = random.Random(7)
    base = "/fhir/MedicationRequest"

    async def step(name, path, body, org):
        trips.step = name
        headers = [(b"authorization", f"Bearer {tokens[org]}".encode())] if tokens else []
        profile = profiles.get(name) if profiles is not None else None
        if profile is not None:
            profile.enable()
        started = time.perf_counter()
        status, payload = await call(app, "POST", path, body, headers)
        times[name].append(time.perf_counter() - started)
        if profile is not None:
            profile.disable()
        trips.step = "other"
        return status, payload

    while done["cycles"] < count:
        org = rng.choice(orgs)
        status, body = await step(
            "lookup",
            f"{base}/$dispensable",
            _params(patient=rng.choice(pids), organization=org),
            org,
        )
        assert status == 200, body[:300]
        free = [
            e["resource"]["id"]
            for e in orjson.loads(body).get("entry", [])
            if not any(x["url"] == rules.LOCK_EXT for x in e["resource"].get("extension", []))
        ]
        if not free:
            done["empty"] += 1
            continue
        mr = rng.choice(free)
        status, body = await step("take", f"{base}/{mr}/$take", _params(organization=org), org)
        assert status == 200, body[:300]
        status, body = await step(
            "dispense", f"{base}/{mr}/$dispense", _params(organization=org, quantity=30), org
        )
        assert status == 200, body[:300]
        done["cycles"] += 1
    return times, done


def figures(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"mean {statistics.fmean(ms):6.2f} ms  p95 {p95:6.2f} ms"


async def amain(opts: argparse.Namespace) -> None:
    dbs = Databases(opts.admin_url, keep=opts.keep)
    url = opts.database or await dbs.create("eresept_profile")
    trips = RoundTrips()
    trips.install(opts.trace)
    try:
        if not opts.database:
            pids, timing = await load(url, opts.prescriptions, 2500, 4)
            print(f"load: {timing}")
            Path(tempfile.gettempdir(), "eresept-profile-pids.json").write_bytes(orjson.dumps(pids))
        else:
            pids = orjson.loads(
                Path(tempfile.gettempdir(), "eresept-profile-pids.json").read_bytes()
            )
        orgs = [o["identifier"][0]["value"] for o in pharmacies(random.Random(1), 32)]
        for secured in (False, True) if opts.security else (False,):
            app, store, security, tokens = await build_app(url, secured, orgs)
            await cycles(app, pids, orgs, tokens, 20, trips, None)  # warm caches
            trips.counts.clear()
            trips.statements.clear()
            profiles = {s: cProfile.Profile() for s in STEPS} if opts.profile else None
            times, done = await cycles(app, pids, orgs, tokens, opts.cycles, trips, profiles)
            print(
                f"\nsecurity {'on' if secured else 'off'}: {done['cycles']} cycles "
                f"({done['empty']} empty lookups), load average {os.getloadavg()[0]:.2f}"
            )
            for s in STEPS:
                per = trips.counts[s] / len(times[s])
                print(f"  {s:9s} {figures(times[s])}  round trips {per:5.2f}")
            if opts.trace:
                for statement, n in sorted(trips.statements.items()):
                    print(f"    {n / opts.cycles:5.2f}  {statement}")
            if profiles:
                for s, profile in profiles.items():
                    text = io.StringIO()
                    stats = pstats.Stats(profile, stream=text).sort_stats("cumulative")
                    stats.print_stats(opts.top)
                    print(f"\n--- {s} (cumulative) ---\n" + text.getvalue()[-6000:])
            if security is not None:
                await security.stop()
            await store.close()
    finally:
        if not opts.database:
            await dbs.drop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eresept_profile", description=__doc__)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", help="reuse a loaded database (from --keep)")
    parser.add_argument("--prescriptions", type=int, default=20_000)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--security", action="store_true", help="also measure with security")
    parser.add_argument("--profile", action="store_true", help="cProfile per step")
    parser.add_argument("--trace", action="store_true", help="list the statements per cycle")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    asyncio.run(amain(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
