"""What the benchmark ran on: CPU, cores, memory, Python, PostgreSQL, load; and process RSS."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def python_speed_ms(rounds: int = 3) -> float:
    """The best of ``rounds`` timings of a fixed pure-Python loop (10M additions), in ms: the
    same "cloud core" is not always as fast (neighbours, throttling), and this tells runs on
    different days apart.  Lower is faster."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def describe(pg_version: str, pg_settings: dict[str, str]) -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": memory_gb(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": pg_version,
        "postgresql_settings": pg_settings,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python_loop_ms": python_speed_ms(),
    }


def status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmHWM: peak RSS, VmRSS: current RSS)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            out.append(child)
            out.extend(descendants(child))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def server_workers(pid: int) -> list[int]:
    """The processes that serve requests: the uvicorn process itself with one worker, its
    spawned children with several (the supervisor and multiprocessing's resource tracker
    serve nothing)."""
    children = [p for p in descendants(pid) if "resource_tracker" not in cmdline(p)]
    return children or [pid]
