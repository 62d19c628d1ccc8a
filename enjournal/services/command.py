"""``enjournal jobs run``: one pass of every service's scheduled jobs."""

from __future__ import annotations

import sys
from datetime import datetime

from enjournal.services.jobs import run_once


async def jobs_command(database_url: str, now: str | None) -> int:
    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.settings import Settings

    when = None
    if now:
        try:
            when = datetime.fromisoformat(now)
        except ValueError:
            print(f"enjournal jobs: --now {now!r} is not an ISO 8601 time", file=sys.stderr)
            return 2
        if when.tzinfo is None:
            print(
                "enjournal jobs: --now needs a UTC offset, e.g. 2026-01-01T00:00:00+00:00",
                file=sys.stderr,
            )
            return 2
    platform = await build_platform(Settings.from_env(database_url=database_url))
    try:
        done = await run_once(platform.store, platform.jobs, when)
    finally:
        await close_platform(platform)
    for name, count in done.items():
        print(f"{name}: {count}")
    return 0
