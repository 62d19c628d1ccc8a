"""The composition root: the one place a platform is built from its settings.

The server and every command (``serve``, ``migrate``, ``import``, ``fest load``,
``terminology load``, ``jobs run``, ``token``, ``audit verify``, ``demo``) and the test
fixtures get their pieces here, so what the store enforces does not depend on which of them
wrote the data: every platform has every service's search parameters, operations, guard
hooks and jobs, and a store it opened indexes and searches by those search parameters and has
the write checks.

    platform = await build_platform(settings)     # compose + open the store
    ...                                            # platform.store, .operations, .jobs
    await close_platform(platform)

``compose`` is the part without I/O (the app factory runs it before its event loop starts);
``open_platform`` opens the store.  ``migrate_platform`` is ``enjournal migrate``: the schema
and the shipped code lists.  Registration is idempotent and all its state is the platform's
(no process-wide registry), so a process (a test run) may build many platforms.
docs/architecture.md, "Composition root", shows how a service plugs in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from enjournal.fhir.definitions import SearchParameters
from enjournal.rest.operations import Operations
from enjournal.services import Job, register_all, utc_now
from enjournal.settings import Settings
from enjournal.storage import Store, open_store

# ``async check(guard, tx, action, resource, patients) -> str | None`` (security/guard.py)
Hook = Callable[..., Any]


@dataclass
class Platform:
    """Everything one server or command runs on.  Services receive it at registration
    (``register(platform)``) and add their operations, guard hooks, Consent categories and
    search parameters (``search_parameters.add``: the official R4 ones plus the services',
    which the store it opens indexes and searches by)."""

    settings: Settings
    security: Any = None  # enjournal.security.setup.Security, or None without security
    clock: Callable[[], datetime] = utc_now
    serving: bool = False  # the server: its statement time limits apply to the store
    operations: Operations = field(default_factory=Operations)
    search_parameters: SearchParameters = field(default_factory=SearchParameters)
    hooks: list[tuple[bytes, Hook]] = field(default_factory=list)
    consent_systems: set[str] = field(default_factory=set)
    jobs: list[Job] = field(default_factory=list)
    routes: list = field(default_factory=list)  # web pages a service serves (serving only)
    # Path prefixes besides /fhir whose routes need a bearer token (messaging's /edi facade)
    bearer_paths: tuple[str, ...] = ()
    store: Store | None = None
    owns_store: bool = False

    def add_hook(self, marker: bytes, check: Hook) -> None:
        """A guard hook for the resources whose stored JSON holds ``marker`` (idempotent)."""
        if (marker, check) not in self.hooks:
            self.hooks.append((marker, check))

    async def handle(self, fhir_request, principal=None):
        """One FHIR interaction, by ``principal`` (None on a server without security): the
        one path the HTTP API and the citizen portal share, so every page reads and writes
        through the same operations, policy and audit as the API."""
        from enjournal.rest.message import FhirResponse
        from enjournal.rest.router import handle

        security = self.security
        fhir_request.operations = self.operations
        audit = security.audit if security is not None else None
        if security is not None:
            fhir_request.security = self.rest_security
        if principal is not None:
            guard = await self._request_guard(principal, fhir_request, audit)
            if isinstance(guard, FhirResponse):
                return guard  # the refusal of a bad access basis
            fhir_request.guard = guard
        return await handle(fhir_request, self.store, audit)

    @cached_property
    def rest_security(self):
        return self.security.rest_security()

    async def _request_guard(self, principal, fhir_request, audit):
        """The request's guard, or the 400 for an access basis or reason it may not state
        (that refusal audited too: a worker sending a bad basis is worth a reviewer's look)."""
        from enjournal.fhir.errors import Invalid
        from enjournal.rest.errors import error_response
        from enjournal.security.context import AccessContext
        from enjournal.server.observability import request_id as current_request

        request_id = current_request.get()
        try:
            context = AccessContext.from_headers(principal, fhir_request.headers, request_id)
        except Invalid as error:
            refused = AccessContext(principal, request_id=request_id)
            refused.refuse("e", "/".join(fhir_request.path[:1]) or "request", error.message)
            if audit is not None:
                await audit.record(refused.take_events())
            return error_response(error)
        return self.guard(context, cache=self.security.facts)

    def guard(self, context, **options):
        """One request's Guard (over its ``AccessContext``), with this platform's hooks and
        Consent categories."""
        from enjournal.security.guard import Guard

        return Guard(context, hooks=self.hooks, consent_systems=self.consent_systems, **options)


def compose(
    settings: Settings,
    *,
    security: Any = None,
    clock: Callable[[], datetime] = utc_now,
    serving: bool = False,
) -> Platform:
    """The platform without its store (no I/O but reading key files): the terminology
    operations, every service's registration and jobs, and, for a secured server, its
    security built from the settings unless given."""
    from enjournal.terminology.operations import register_all as register_terminology

    if serving and settings.auth and security is None:
        from enjournal.security.setup import build_security

        security = build_security(settings)
    platform = Platform(settings, security, clock, serving)
    register_terminology(platform.operations)
    platform.jobs = register_all(platform)
    return platform


async def open_platform(
    platform: Platform, store: Store | None = None, *, migrate: bool = True
) -> Platform:
    """Give ``platform`` its store: ``store`` when given (already composed by its owner, e.g.
    a test that installs its own checks, opened with ``platform.search_parameters``), else
    one opened from the settings, with the platform's search parameters and the write checks
    the settings ask for."""
    if store is not None:
        adopt_store(platform, store)
        return platform
    platform.store = await open_store(
        platform.settings.database_url,
        search_parameters=platform.search_parameters,
        **_store_options(platform, migrate),
    )
    platform.owns_store = True
    install_checks(platform)
    return platform


def adopt_store(platform: Platform, store: Store) -> None:
    """Serve ``platform`` from a store its owner opened and closes (a test's, shared by
    several apps); it must index what the platform's services search by."""
    if store.search_parameters != platform.search_parameters:
        raise ValueError("the store must index the platform's search parameters")
    platform.store, platform.owns_store = store, False


def _store_options(platform: Platform, migrate: bool) -> dict:
    """The server bounds each statement and sizes its pool; batch commands have no limit."""
    s = platform.settings
    if not platform.serving:
        return {"migrate": migrate, "pool_size": s.pool_size}
    return {
        "migrate": migrate,
        "pool_size": s.pool_size,
        "read_timeout_ms": s.read_timeout_ms,
        "write_timeout_ms": s.write_timeout_ms,
    }


def install_checks(platform: Platform) -> None:
    """The write checks (``Store.checks``): the terminology check unless turned off."""
    from enjournal.terminology.checks import CodeCheck

    checks = platform.store.checks
    if platform.settings.terminology_check and not any(isinstance(c, CodeCheck) for c in checks):
        checks.append(CodeCheck())


async def build_platform(
    settings: Settings,
    *,
    store: Store | None = None,
    security: Any = None,
    clock: Callable[[], datetime] = utc_now,
    serving: bool = False,
    migrate: bool = True,
) -> Platform:
    """``compose`` and ``open_platform`` in one: what the commands and fixtures call."""
    platform = compose(settings, security=security, clock=clock, serving=serving)
    return await open_platform(platform, store, migrate=migrate)


async def close_platform(platform: Platform) -> None:
    """Close the store if the platform opened it."""
    if platform.store is not None and platform.owns_store:
        await platform.store.close()
    platform.store = None


async def migrate_platform(platform: Platform) -> list[int]:
    """``enjournal migrate``: apply the schema migrations, then load the shipped code lists
    (LOINC extract, UCUM, kodeverk) the database does not hold yet.  Returns the migrations
    applied."""
    from enjournal.terminology.checks import CodeCheck
    from enjournal.terminology.command import load_shipped_missing

    applied = await platform.store.migrate()
    if await load_shipped_missing(platform.store):
        for check in platform.store.checks:
            if isinstance(check, CodeCheck):
                check.forget()
    return applied
