"""The national services, built on the FHIR core.

Every service is a subpackage with the same shape, so a newcomer who knows one knows all:

    services/<name>/__init__.py   ``register(platform) -> list[Job]``: adds the service's
                                  operations (``platform.operations.add``), guard hooks
                                  (``platform.add_hook``), Consent categories and search
                                  parameters, and returns its scheduled jobs; called by
                                  ``enjournal.bootstrap`` for every platform it builds
    services/<name>/rules.py      its domain rules as plain functions (no I/O), tested alone
    services/<name>/api.py        its FHIR operations: parse input, authorise, call the rules,
                                  read and write through the store transaction, audit
    services/<name>/jobs.py       its scheduled jobs: ``async def job(store, now) -> int``
    tests/services/<name>/        mirrors it

A service uses the core only through ``enjournal.storage`` (the store transaction),
``enjournal.rest`` (operations, messages), ``enjournal.fhir`` and ``enjournal.security``
(the request's guard and principal, audit events); never another service's internals.
Jobs take the time as an argument, so tests drive them with a controllable clock.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SERVICES = (
    "kjernejournal",
    "eresept",
    "helsenorge",
    "velferdsteknologi",
    "registers",
    "messaging",
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Job:
    """A scheduled job: ``run(store, now)`` does one pass and returns how much it did.
    Jobs are idempotent, so several workers running the same pass is harmless."""

    name: str
    every: float  # seconds between passes
    run: Callable[[Any, datetime], Awaitable[int]]


def register_all(platform: Any) -> list[Job]:
    """Register every service with ``platform`` (an ``enjournal.bootstrap.Platform``: its
    settings, security, clock, operations, guard hooks); return all their jobs."""
    jobs: list[Job] = []
    for name in SERVICES:
        module = importlib.import_module(f"enjournal.services.{name}")
        jobs.extend(module.register(platform) or [])
    return jobs
