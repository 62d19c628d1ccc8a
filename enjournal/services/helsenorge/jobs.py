"""Helsenorge's scheduled jobs."""

from __future__ import annotations

from enjournal.services import Job


def all_jobs() -> list[Job]:
    return []
