"""The national services, built on the FHIR core.

Every service is a subpackage with the same shape, so a newcomer who knows one knows all:

    services/<name>/__init__.py   ``register(context) -> list[Job]``: adds the service's
                                  operations (``enjournal.rest.operations.register``) and
                                  returns its scheduled jobs
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SERVICES = ("kjernejournal", "eresept")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ServiceContext:
    """What a service may use besides the store: settings, the security setup (or None when
    the server runs without security) and the clock."""

    settings: Any  # enjournal.server.settings.Settings
    security: Any = None  # enjournal.security.setup.Security
    clock: Callable[[], datetime] = field(default=utc_now)


@dataclass(frozen=True)
class Job:
    """A scheduled job: ``run(store, now)`` does one pass and returns how much it did.
    Jobs are idempotent, so several workers running the same pass is harmless."""

    name: str
    every: float  # seconds between passes
    run: Callable[[Any, datetime], Awaitable[int]]


def register_all(context: ServiceContext) -> list[Job]:
    """Register every service's operations; return all their jobs."""
    jobs: list[Job] = []
    for name in SERVICES:
        module = importlib.import_module(f"enjournal.services.{name}")
        jobs.extend(module.register(context) or [])
    return jobs
