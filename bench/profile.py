"""Profile the server under the benchmark's read-by-id or ingest load with py-spy.

    python -m bench.profile --what read --patients 150 --seconds 15
    python -m bench.profile --what ingest --patients 300

py-spy is not a dependency: ``.venv/bin/pip install py-spy`` first.  Writes a flame graph
(SVG) and py-spy's raw collapsed stacks under bench/results/, and prints the hottest
functions by inclusive and by own samples.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.httpclient import Connection
from bench.run import (
    DEFAULT_ADMIN,
    RESULTS,
    Databases,
    Server,
    make_dataset,
    sample_read_paths,
)


def top_functions(collapsed: Path, n: int = 25) -> tuple[list, list]:
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        count = int(count)
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    pct = lambda c: round(100 * c / max(total, 1), 1)  # noqa: E731
    return (
        [(pct(c), f) for f, c in inclusive.most_common(n)],
        [(pct(c), f) for f, c in own.most_common(n)],
    )


async def main_async(opts: argparse.Namespace) -> None:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    dbs = Databases(opts.database_admin_url, keep=False)
    workdir = Path(tempfile.mkdtemp(prefix="enjournal-profile-"))
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        url = await dbs.create("profile")
        data = make_dataset(opts.patients * 64, 1, workdir)
        async with Server(url, 1, workdir, "profile") as server:
            if opts.what == "ingest":
                conn = Connection("127.0.0.1", server.port)
                await conn.request("POST", "/fhir", data.bundles[0])
                queue = list(reversed(data.bundles[1:]))
            else:
                from bench.run import ingest_http

                await ingest_http(data, server.port, 4)
                paths = await sample_read_paths(url, 5000)
            out = RESULTS / f"profile-{opts.what}-{stamp}"
            spy = subprocess.Popen(
                [
                    pyspy,
                    "record",
                    "--pid",
                    str(server.worker_pids()[0]),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    f"{out}.txt",
                    "--duration",
                    str(int(opts.seconds)),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            stop = time.perf_counter() + opts.seconds
            done = 0

            async def reader(k: int) -> None:
                nonlocal done
                c = Connection("127.0.0.1", server.port)
                i = k
                while time.perf_counter() < stop:
                    await c.request("GET", paths[i % len(paths)])
                    i += opts.concurrency
                    done += 1
                await c.close()

            async def writer() -> None:
                nonlocal done
                c = Connection("127.0.0.1", server.port)
                while queue and time.perf_counter() < stop:
                    await c.request("POST", "/fhir", queue.pop())
                    done += 1
                await c.close()

            if opts.what == "read":
                await asyncio.gather(*(reader(k) for k in range(opts.concurrency)))
            else:
                await asyncio.gather(*(writer() for _ in range(4)))
            spy.wait()
            print(f"{done} requests in {opts.seconds}s while profiling")
        inclusive, own = top_functions(Path(f"{out}.txt"))
        print("inclusive %:")
        for p, f in inclusive:
            print(f"  {p:5.1f}  {f}")
        print("own %:")
        for p, f in own:
            print(f"  {p:5.1f}  {f}")
        print(f"stacks: {out}.txt")
    finally:
        await dbs.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--what", choices=("read", "ingest"), default="read")
    p.add_argument("--patients", type=int, default=150)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--database-admin-url", default=DEFAULT_ADMIN)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
