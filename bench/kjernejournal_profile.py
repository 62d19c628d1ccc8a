"""In-process cost of one kjernejournal ``$summary`` document: ``python -m
bench.kjernejournal_profile``.

No network, no other processes: a store (SQLite in a temporary directory by default, or
``--database`` a PostgreSQL URL), one patient with ``--size`` resources (the mix of
``bench.kjernejournal.record``, GP and organisation stored), and a secured in-process app
(tokens, access policy, audit, signing).  Measures, for cold documents (no cache):

- ``document``: ``Service.document`` alone (read the rows, parse, build, sign) inside a
  read transaction, the CPU that the 1M benchmark's latency is mostly made of;
- ``request``: the whole ``GET Patient/[id]/$summary`` through the ASGI app with security
  on (token, guard facts, access basis, audit event written, response body).

Prints mean/p50/p95 per part, the load average (the machine is shared: compare runs at
similar load), and with ``--profile`` the functions with most cumulative and own time
(cProfile) over the document part (``--profile request``: over whole requests).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

GP_ID = "legekontor-0001-fastlege-1"
ORG_ID = "legekontor-0001"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
ISSUER = "http://bench/oidc"


def world(patient_id: str, size: int) -> list[dict]:
    from bench.kjernejournal import record

    return [
        {
            "resourceType": "Organization",
            "id": ORG_ID,
            "name": "Legekontor 1",
            "identifier": [{"system": ORGNR, "value": "974760673"}],
        },
        {
            "resourceType": "Practitioner",
            "id": GP_ID,
            "identifier": [{"system": HPR, "value": "1000001"}],
            "name": [{"family": "Lege", "given": ["Gina"]}],
        },
        {
            "resourceType": "Patient",
            "id": patient_id,
            "name": [{"family": "Kjernesen", "given": ["Kari"]}],
            "birthDate": "1970-01-01",
            # A synthetic test number (Tenor series): the demo-user lookup wants one.
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "02818029236"}],
            "generalPractitioner": [{"reference": f"Practitioner/{GP_ID}"}],
        },
        *record(patient_id, size, datetime.now(UTC).date()),
    ]


def figures(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (
        f"mean {statistics.fmean(ms):6.2f} ms  p50 {statistics.median(ms):6.2f} ms  "
        f"p95 {p95:6.2f} ms  (n={len(ms)})"
    )


async def amain(opts: argparse.Namespace) -> None:
    import httpx

    from bench.common import bench_store
    from enjournal.bootstrap import compose
    from enjournal.security.keys import generate
    from enjournal.security.provider import DemoUser, Provider, ProviderConfig
    from enjournal.security.ratelimit import MemoryLimiter
    from enjournal.security.setup import Security
    from enjournal.security.tokens import TokenVerifier
    from enjournal.server.app import create_app
    from enjournal.services.kjernejournal import rules
    from enjournal.services.kjernejournal.api import Service
    from enjournal.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="kj-profile-"))
    url = opts.database or f"sqlite:///{work}/profile.sqlite"
    store = await bench_store(url)
    patient_id = f"kjprof-{os.getpid()}"
    try:
        async with store.transaction() as tx:
            for resource in world(patient_id, opts.size):
                await tx.update(resource, resource["id"])
        gp = DemoUser(
            "gp", "personnel", "Gina Lege", hpr="1000001", profession="LE", org_nr="974760673"
        )
        provider = Provider(ProviderConfig(issuer=ISSUER, key=generate(), users=[gp]))
        security = Security(
            verifier=TokenVerifier([provider.issuer_config()]),
            provider=provider,
            limiter=MemoryLimiter(),
        )
        await security.start(store)
        settings = Settings(
            database_url="unused",
            public_url="http://bench",
            signing_key_file=str(work / "document-key.json"),
            jobs=False,
            rate_limit_user="off",  # one user asking hundreds of times in a row
            rate_limit_client="off",
            rate_limit_ip="off",
        )
        service = Service(compose(settings))
        access = rules.Access("UNNTAK", "TREAT")

        async def document() -> bytes:
            from enjournal.fhir import jsonio

            async with store.transaction(write=False) as tx:
                stored = await tx.read("Patient", patient_id)
                bundle = await service.document(tx, stored, access, service.now())
            return bundle if isinstance(bundle, bytes) else jsonio.dumps(bundle)

        body = await document()
        print(f"document: {len(body) / 1024:.0f} KiB for {opts.size} resources")
        for _ in range(3):
            await document()
        samples = []
        for _ in range(opts.repeat):
            started = time.perf_counter()
            await document()
            samples.append(time.perf_counter() - started)
        print(f"document  {figures(samples)}")

        app = create_app(settings, store, security)
        token = provider.issue_token(gp, scopes="user/*.cruds")
        headers = {"Authorization": f"Bearer {token}", "nhn-access-basis": "UNNTAK"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            path = f"/fhir/Patient/{patient_id}/$summary"
            for _ in range(3):
                response = await http.get(path, headers=headers)
                assert response.status_code == 200, response.text
            samples = []
            for _ in range(opts.repeat):
                started = time.perf_counter()
                response = await http.get(path, headers=headers)
                samples.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
            print(f"request   {figures(samples)}  (secured, audited, via httpx ASGI)")
            print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
            if opts.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(opts.repeat):
                    if opts.profile == "request":
                        await http.get(path, headers=headers)
                    else:
                        await document()
                profiler.disable()
                stats = pstats.Stats(profiler)
                stats.sort_stats("cumulative").print_stats(opts.top)
                stats.sort_stats("tottime").print_stats(opts.top)
        await security.stop()
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.kjernejournal_profile", description=__doc__
    )
    parser.add_argument("--database", help="a database URL (default: a temporary SQLite)")
    parser.add_argument("--size", type=int, default=500, help="the patient's resources")
    parser.add_argument("--repeat", type=int, default=50, help="documents per measurement")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="document",
        choices=("document", "request"),
        help="print cProfile tables over documents (default) or whole requests",
    )
    parser.add_argument("--top", type=int, default=30, help="rows of each cProfile table")
    asyncio.run(amain(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
