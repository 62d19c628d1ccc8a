"""The rate-limit middleware: the buckets of ``enjournal.security.ratelimit`` applied to requests.

``RateLimitMiddleware`` is a pure ASGI middleware; it limits ``/fhir`` and ``/oidc`` and never
``/health`` or ``/metrics``.  A refused request gets ``429``, ``Retry-After`` and an
OperationOutcome with code ``throttled``.  Identities are hashed before they become keys, so
Redis never holds a national id, a token subject or an IP address in clear.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from enjournal.fhir.errors import TooManyRequests
from enjournal.rest.errors import error_response, send_response
from enjournal.security.principal import Principal
from enjournal.security.ratelimit import Limit, Limiter, check_limit

ScopeFunc = Callable[[dict], Any]


def peer_ip(scope: dict) -> str | None:
    """The default key for unauthenticated traffic: the peer address of the connection.

    Behind a reverse proxy run uvicorn with ``--proxy-headers --forwarded-allow-ips`` so
    this is the real client, or pass your own ``key_func``.
    """
    client = scope.get("client")
    return client[0] if client else None


def _digest(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=12).hexdigest()


class RateLimitMiddleware:
    """ASGI middleware: token buckets for ``/fhir`` and ``/oidc`` requests.

    * authenticated (a ``Principal`` in ``scope["state"]["principal"]`` or from
      ``principal_func(scope)``, which may be async): one bucket per client id
      (``per_client``) and one per user (``per_user``; not for ``system`` principals, whose
      subject is the client itself);
    * otherwise one bucket per ``key_func(scope)``, by default the client IP (``per_ip``).

    Any limit set to ``None`` is not applied.  The middleware has to run after the step
    that authenticates the request, or be given a ``principal_func``.
    """

    def __init__(
        self,
        app,
        limiter: Limiter,
        *,
        per_client: Limit | None = (50.0, 200),
        per_user: Limit | None = (10.0, 50),
        per_ip: Limit | None = (5.0, 20),
        key_func: ScopeFunc = peer_ip,
        principal_func: ScopeFunc | None = None,
        paths: tuple[str, ...] = ("/fhir", "/oidc"),
        exempt: tuple[str, ...] = ("/health", "/metrics"),
    ):
        for limit in (per_client, per_user, per_ip):
            if limit is not None:
                check_limit(*limit)
        self.app = app
        self.limiter = limiter
        self.per_client = per_client
        self.per_user = per_user
        self.per_ip = per_ip
        self.key_func = key_func
        self.principal_func = principal_func
        self.paths = paths
        self.exempt = exempt
        if hasattr(app, "state"):
            self.state = app.state

    def limited(self, path: str) -> bool:
        if path in self.exempt or path.startswith(tuple(p + "/" for p in self.exempt)):
            return False
        return path.startswith(self.paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.limited(scope.get("path", "")):
            return await self.app(scope, receive, send)
        allowed, retry = await self.check(scope)
        if allowed:
            return await self.app(scope, receive, send)
        await _refuse(send, retry)

    async def check(self, scope: dict) -> tuple[bool, float]:
        """Take a token from each bucket this request counts against, most specific first;
        stop at the first refusal so a refused user does not also drain the client's budget."""
        retry = 0.0
        for key, limit in await self._buckets(scope):
            allowed, retry = await self.limiter.hit(key, rate=limit[0], burst=limit[1])
            if not allowed:
                return False, retry
        return True, 0.0

    async def _buckets(self, scope: dict) -> list[tuple[str, Limit]]:
        principal = await self._principal(scope)
        buckets: list[tuple[str, Limit]] = []
        if principal is not None:
            if self.per_user and principal.kind != "system":
                who = f"{principal.kind}:{principal.client_id}:{principal.subject}"
                buckets.append(("user:" + _digest(who), self.per_user))
            if self.per_client:
                buckets.append(("client:" + _digest(principal.client_id), self.per_client))
            return buckets
        if self.per_ip:
            ip = self.key_func(scope)
            if inspect.isawaitable(ip):
                ip = await ip
            buckets.append(("ip:" + _digest(str(ip or "unknown")), self.per_ip))
        return buckets

    async def _principal(self, scope: dict) -> Principal | None:
        state = scope.get("state")
        found = None
        if isinstance(state, dict):
            found = state.get("principal")
        elif state is not None:
            found = getattr(state, "principal", None)
        if found is None and self.principal_func is not None:
            found = self.principal_func(scope)
            if isinstance(found, Awaitable):
                found = await found
        return found if isinstance(found, Principal) else None


async def _refuse(send, retry: float) -> None:
    error = TooManyRequests("too many requests, retry later")
    error.retry_after = retry  # rest.errors rounds it up to whole seconds, at least 1
    await send_response(send, error_response(error))
