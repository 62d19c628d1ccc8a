"""Runs the services' scheduled jobs in the server process, and once from the command line."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from enjournal.services import Job, utc_now

log = logging.getLogger("enjournal.jobs")


async def run_once(store, jobs: list[Job], now: datetime | None = None) -> dict[str, int]:
    """One pass of every job at ``now`` (default: the real time)."""
    done: dict[str, int] = {}
    for job in jobs:
        done[job.name] = await job.run(store, now or utc_now())
    return done


class JobRunner:
    """Runs each job every ``job.every`` seconds until stopped; a failing pass is logged and
    retried at the next interval, never fatal to the server."""

    def __init__(self, store, jobs: list[Job], clock=utc_now):
        self.store, self.jobs, self.clock = store, jobs, clock
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(job)) for job in self.jobs]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _loop(self, job: Job) -> None:
        while True:
            await asyncio.sleep(job.every)
            try:
                count = await job.run(self.store, self.clock())
                if count:
                    log.info("job done", extra={"fields": {"job": job.name, "count": count}})
            except Exception:  # a job's failure must not stop the server
                log.exception("job failed", extra={"fields": {"job": job.name}})
