"""Placeholder: being built (issue 15)."""

from __future__ import annotations

from enjournal.services import Job


def register(platform) -> None:
    return None


def jobs(platform) -> list[Job]:
    return []
