"""The e-resept service's state of one platform: its clock, and the caches of stored data
the prescription flow asks for again and again (organisations, FEST products, the
interaction index; they exist for the pharmacy cycle's throughput, docs/performance.md).

``register`` makes one ``EreseptState`` per platform and runs every operation it adds with
it as the current state (``serving``), so two platforms in one process (a test run builds
many; a server could host two) share no cache and keep their own clocks.  Code outside an
operation (a test calling a read directly) gets a fresh state: the wall clock, and nothing
cached from one call to the next.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from enjournal.services import utc_now
from enjournal.services.eresept.fest.catalogue import InteractionIndexes

ORG_TTL = 60.0  # seconds a worker trusts its copy of an organisation
PRODUCT_TTL = 60.0  # seconds a worker trusts its copy of a product
CACHE_SIZE = 10_000  # entries kept before a cache starts over


class TimedCache:
    """Values loaded by key, trusted for ``ttl`` seconds; emptied when it outgrows ``size``
    (simpler than evicting, and a worker only meets so many organisations and packages)."""

    def __init__(self, ttl: float, size: int = CACHE_SIZE):
        self.ttl, self.size = ttl, size
        self._entries: dict[str, tuple[float, Any]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """The value for ``key``: the cached one while fresh, else ``await load()`` (None
        included: an unknown organisation is not asked for again within the ttl)."""
        hit = self._entries.get(key)
        if hit is not None and hit[0] + self.ttl > time.monotonic():
            return hit[1]
        found = await load()
        if len(self._entries) > self.size:
            self._entries.clear()
        self._entries[key] = (time.monotonic(), found)
        return found


@dataclass
class EreseptState:
    """One platform's clock and caches (see the module docstring)."""

    clock: Callable[[], datetime] = utc_now
    organizations: TimedCache = field(default_factory=lambda: TimedCache(ORG_TTL))
    products: TimedCache = field(default_factory=lambda: TimedCache(PRODUCT_TTL))
    interaction_indexes: InteractionIndexes = field(default_factory=InteractionIndexes)


_current: ContextVar[EreseptState | None] = ContextVar("eresept_state", default=None)


def current() -> EreseptState:
    """The state of the platform serving this operation; a fresh one outside an operation."""
    state = _current.get()
    return EreseptState() if state is None else state


def serving(handler, state: EreseptState):
    """``handler`` run with ``state`` as the current state."""

    async def run(request, repo):
        token = _current.set(state)
        try:
            return await handler(request, repo)
        finally:
            _current.reset(token)

    return run
