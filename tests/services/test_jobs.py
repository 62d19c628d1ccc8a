"""The job runner and `enjournal jobs run`: jobs see the time they are given."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from enjournal.cli import main
from enjournal.services import Job
from enjournal.services.jobs import JobRunner, run_once
from tests.conftest import MEMORY

pytestmark = MEMORY  # the runner, not the store


async def test_run_once_passes_the_given_time(store):
    seen = []

    async def job(store_, now):
        seen.append((store_, now))
        return 3

    when = datetime(2030, 1, 1, tzinfo=UTC)
    done = await run_once(store, [Job("count", 60, job)], when)
    assert done == {"count": 3}
    assert seen == [(store, when)]


async def test_runner_keeps_going_after_a_failing_pass(store):
    calls = []

    async def flaky(store_, now):
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("first pass fails")
        return 1

    runner = JobRunner(store, [Job("flaky", 0.01, flaky)])
    runner.start()
    for _ in range(200):
        if len(calls) >= 2:
            break
        await asyncio.sleep(0.01)
    await runner.stop()
    assert len(calls) >= 2


def test_jobs_command_refuses_a_time_without_offset(tmp_path, capsys):
    code = main(
        [
            "jobs",
            "run",
            "--database",
            f"sqlite:///{tmp_path}/db.sqlite",
            "--now",
            "2030-01-01T00:00:00",
        ]
    )
    assert code == 2
    assert "UTC offset" in capsys.readouterr().err


def test_jobs_command_refuses_a_bad_time(tmp_path, capsys):
    code = main(["jobs", "run", "--database", f"sqlite:///{tmp_path}/db.sqlite", "--now", "soon"])
    assert code == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err
