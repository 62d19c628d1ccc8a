"""The registers' scheduled jobs, gathered from each area (``jobs(platform)``)."""

from __future__ import annotations

from enjournal.services import Job
from enjournal.services.registers.api import AREAS


def all_jobs(platform) -> list[Job]:
    return [job for area in AREAS for job in area.jobs(platform)]
