"""The cost of security on the hot path: `python -m bench.security`.

Two servers on one PostgreSQL database loaded with the demo population: one with security
off, one with it on (bearer token check, access policy with care-relationship facts, audit
event committed before the response).  The demo GP reads, by id, Observations of patients on
her list, and searches one such patient's Observations by code; each configuration runs in
alternating rounds so drift of the shared machine hits both alike.  Prints req/s and
p50/p95 for each, and the secured figure as a ratio of the unsecured one (target: at most
25% slower, i.e. throughput ratio >= 0.80).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import save_report, start_report
from bench.httpclient import Connection
from bench.run import Databases, Server, latency_summary

ROOT = Path(__file__).resolve().parent.parent


async def load(url: str, patients: int, workdir: Path) -> None:
    from enjournal.demo.population import write_bundles

    write_bundles(workdir / "bundles", patients, 1)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "enjournal.cli",
            "import",
            "--database",
            url,
            str(workdir / "bundles"),
        ],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def gp_paths(url: str) -> tuple[list[str], list[str]]:
    """Observations (by id) and searches of the demo GP's own patients."""
    from bench.common import bench_store

    store = await bench_store(url, migrate=False)
    try:
        async with store.transaction(write=False) as tx:
            rows = await tx._conn.fetch(
                "SELECT o.id, g.rid FROM idx_reference g JOIN resources p ON p.rid = g.rid "
                "JOIN idx_reference s ON s.target_id = p.id AND s.target_type = 'Patient' "
                "AND s.type = 'Observation' AND s.param = 'subject' "
                "JOIN resources o ON o.rid = s.rid "
                "WHERE g.param = 'general-practitioner' AND g.target_type = 'Practitioner' "
                "AND g.target_id = 'legekontor-0001-fastlege-1' LIMIT 2000"
            )
            patients = await tx._conn.fetch(
                "SELECT p.id FROM idx_reference g JOIN resources p ON p.rid = g.rid "
                "WHERE g.param = 'general-practitioner' "
                "AND g.target_id = 'legekontor-0001-fastlege-1' LIMIT 200"
            )
    finally:
        await store.close()
    reads = [f"/fhir/Observation/{r[0]}" for r in rows]
    searches = [f"/fhir/Observation?patient={r[0]}&code=http://loinc.org|8867-4" for r in patients]
    return reads, searches


def secured_env(key_file: Path, **extra: str) -> None:
    """Set the environment for the next ``Server`` to run with security on (token checks,
    access policy, audit) and its own token provider signing with ``key_file``.  The load
    comes from a few users, so the rate limits are lifted: the limiter is still consulted
    on every request but never refuses.  ``extra``: more ENJOURNAL_* settings."""
    os.environ.update(
        {
            "ENJOURNAL_BENCH_AUTH": "on",
            "ENJOURNAL_OIDC_PROVIDER": "on",
            "ENJOURNAL_OIDC_KEY_FILE": str(key_file),
            "ENJOURNAL_RATE_LIMIT_USER": "1000000/1000000",
            "ENJOURNAL_RATE_LIMIT_CLIENT": "1000000/1000000",
            "ENJOURNAL_RATE_LIMIT_IP": "1000000/1000000",
            **extra,
        }
    )


async def gp_token(url: str, key_file: Path, issuer: str) -> str:
    from bench.common import bench_store
    from enjournal.demo.users import SCOPES, demo_users
    from enjournal.security.keys import load_or_create
    from enjournal.security.provider import issue_token

    store = await bench_store(url, migrate=False)
    try:
        gp = next(u for u in await demo_users(store) if u.name == "gp")
    finally:
        await store.close()
    return issue_token(
        gp, key=load_or_create(key_file), issuer=issuer, scopes=SCOPES["gp"], lifetime=3600
    )


async def drive(
    port: int,
    paths: list[str],
    token: str | None,
    concurrency: int,
    seconds: float,
    headers: dict[str, str] | None = None,
) -> dict:
    """``concurrency`` keep-alive clients GET random ``paths`` for ``seconds``."""
    fixed = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        conn = Connection("127.0.0.1", port, fixed)
        rng = random.Random(n)
        try:
            while time.monotonic() < stop:
                started = time.perf_counter()
                status, _ = await conn.request("GET", rng.choice(paths))
                latencies.append(time.perf_counter() - started)
                errors += status != 200
        finally:
            await conn.close()

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(concurrency)))
    summary = latency_summary(sorted(latencies), time.monotonic() - started)
    summary["errors"] = errors
    return summary


def merge(rounds: list[dict]) -> dict:
    total = sum(r["requests"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    return {
        "requests": total,
        "per_second": round(total / seconds, 1),
        "p50_ms": round(sum(r["p50_ms"] for r in rounds) / len(rounds), 2),
        "p95_ms": round(sum(r["p95_ms"] for r in rounds) / len(rounds), 2),
        "errors": sum(r["errors"] for r in rounds),
    }


async def amain(opts: argparse.Namespace) -> dict:
    report = await start_report(opts.admin_url, vars(opts))
    dbs = Databases(opts.admin_url, keep=False)
    work = Path(tempfile.mkdtemp(prefix="bench-security-"))
    url = await dbs.create("security")
    try:
        print(f"loading {opts.patients} demo patients into {url} ...", flush=True)
        await load(url, opts.patients, work)
        reads, searches = await gp_paths(url)
        key_file = work / "oidc-key.json"
        os.environ["ENJOURNAL_BENCH_AUTH"] = "off"
        plain = Server(url, opts.workers, work, "off")
        async with plain:
            durable = "on" if opts.durable_audit else "off"
            secured_env(key_file, ENJOURNAL_AUDIT_READS_SYNCHRONOUS=durable)
            secured = Server(url, opts.workers, work, "on")
            os.environ["ENJOURNAL_PUBLIC_URL"] = f"http://127.0.0.1:{secured.port}"
            async with secured:
                token = await gp_token(url, key_file, f"http://127.0.0.1:{secured.port}/oidc")
                for name, paths in (("read by id", reads), ("search", searches)):
                    off, on = [], []
                    for _ in range(opts.rounds):
                        off.append(
                            await drive(plain.port, paths, None, opts.concurrency, opts.seconds)
                        )
                        on.append(
                            await drive(secured.port, paths, token, opts.concurrency, opts.seconds)
                        )
                    a, b = merge(off), merge(on)
                    ratio = round(b["per_second"] / a["per_second"], 3)
                    report[name] = {
                        "security_off": a,
                        "security_on": b,
                        "throughput_ratio": ratio,
                        "p50_ratio": round(b["p50_ms"] / a["p50_ms"], 2),
                    }
                    print(
                        f"{name:11s} off {a['per_second']:7.1f} req/s p50 {a['p50_ms']:6.2f} "
                        f"p95 {a['p95_ms']:6.2f} | on {b['per_second']:7.1f} req/s p50 "
                        f"{b['p50_ms']:6.2f} p95 {b['p95_ms']:6.2f} | on/off throughput "
                        f"{ratio:.2f} (errors {a['errors']}/{b['errors']})",
                        flush=True,
                    )
    finally:
        await dbs.drop_all()
    save_report("security", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.security", description=__doc__)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--durable-audit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait for read audit events to reach the disk (the server's default)",
    )
    asyncio.run(amain(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
