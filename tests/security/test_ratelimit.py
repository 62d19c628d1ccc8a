"""Rate limiting: memory and Redis token buckets, and the ASGI middleware."""

from __future__ import annotations

import asyncio
import logging
import uuid

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from enjournal.security.principal import Principal
from enjournal.security.ratelimit import MemoryLimiter, RedisLimiter, limiter_from_url
from enjournal.server.ratelimit import RateLimitMiddleware

REDIS_URL = "redis://127.0.0.1:6379/0"


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis_prefix():
    """A unique key prefix per test; every key under it is deleted afterwards."""
    prefix = f"test:rl:{uuid.uuid4().hex}:"
    yield prefix
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# --- MemoryLimiter -------------------------------------------------------------------------


async def test_memory_burst_then_refusal_then_refill():
    clock = FakeClock()
    limiter = MemoryLimiter(clock=clock)
    for _ in range(3):
        assert (await limiter.hit("k", rate=2.0, burst=3))[0]
    allowed, retry = await limiter.hit("k", rate=2.0, burst=3)
    assert not allowed
    assert retry == pytest.approx(0.5)
    clock.now += 0.25
    allowed, retry = await limiter.hit("k", rate=2.0, burst=3)
    assert not allowed and retry == pytest.approx(0.25)
    clock.now += 0.25
    assert (await limiter.hit("k", rate=2.0, burst=3))[0]
    assert not (await limiter.hit("k", rate=2.0, burst=3))[0]
    clock.now += 100  # refills to the burst, never beyond it
    assert [(await limiter.hit("k", rate=2.0, burst=3))[0] for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


async def test_memory_keys_are_independent_and_lru_bounded():
    clock = FakeClock()
    limiter = MemoryLimiter(max_keys=2, clock=clock)
    assert (await limiter.hit("a", rate=1, burst=1))[0]
    assert (await limiter.hit("b", rate=1, burst=1))[0]
    assert not (await limiter.hit("a", rate=1, burst=1))[0]  # a is now most recent
    assert (await limiter.hit("c", rate=1, burst=1))[0]  # evicts b, the least recent
    assert len(limiter) == 2
    assert not (await limiter.hit("a", rate=1, burst=1))[0]  # a survived
    assert (await limiter.hit("b", rate=1, burst=1))[0]  # b was evicted: a fresh bucket


async def test_bad_limits_are_rejected():
    with pytest.raises(ValueError):
        await MemoryLimiter().hit("k", rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimitMiddleware(None, MemoryLimiter(), per_ip=(1.0, 0))


# --- RedisLimiter ----------------------------------------------------------------------------


async def test_redis_burst_then_refusal_then_refill(redis_prefix):
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix)
    try:
        results = [await limiter.hit("k", rate=10.0, burst=3) for _ in range(3)]
        assert all(allowed for allowed, _ in results)
        allowed, retry = await limiter.hit("k", rate=10.0, burst=3)
        assert not allowed
        assert 0 < retry <= 0.1 + 1e-6
        await asyncio.sleep(0.15)  # refills 1.5 tokens
        assert (await limiter.hit("k", rate=10.0, burst=3))[0]
        assert not (await limiter.hit("k", rate=10.0, burst=3))[0]
        assert not limiter.degraded
        # the key carries an expiry, so idle buckets do not pile up in Redis
        ttl = await limiter.client.pttl(redis_prefix + "k")
        assert 0 < ttl <= 1300
    finally:
        await limiter.aclose()


async def test_two_workers_share_one_budget(redis_prefix):
    one = RedisLimiter(REDIS_URL, prefix=redis_prefix)
    two = RedisLimiter(REDIS_URL, prefix=redis_prefix)
    try:
        seen = []
        for n in range(6):
            worker = one if n % 2 else two
            seen.append((await worker.hit("shared", rate=0.5, burst=4))[0])
        assert seen == [True, True, True, True, False, False]
        # concurrently, too: exactly the burst gets through
        results = await asyncio.gather(
            *[(one, two)[n % 2].hit("burst", rate=0.5, burst=5) for n in range(20)]
        )
        assert sum(allowed for allowed, _ in results) == 5
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_unreachable_fails_open_to_local_limits(caplog):
    clock = FakeClock()
    limiter = RedisLimiter(
        "redis://127.0.0.1:1/0", timeout=0.2, retry_interval=5, warn_interval=60, clock=clock
    )
    try:
        with caplog.at_level(logging.WARNING, "enjournal.security.ratelimit"):
            assert (await limiter.hit("k", rate=1, burst=2))[0]
            assert limiter.degraded
            assert (await limiter.hit("k", rate=1, burst=2))[0]
            assert not (await limiter.hit("k", rate=1, burst=2))[0]  # still limited, locally
            clock.now += 6  # retry Redis: fails again, but the warning is not repeated
            await limiter.hit("k", rate=1, burst=2)
        warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        await limiter.aclose()


def test_limiter_from_url():
    assert isinstance(limiter_from_url(None), MemoryLimiter)
    assert isinstance(limiter_from_url(""), MemoryLimiter)
    assert isinstance(limiter_from_url("memory://"), MemoryLimiter)
    assert isinstance(limiter_from_url(REDIS_URL), RedisLimiter)
    with pytest.raises(ValueError):
        limiter_from_url("memcached://x")


# --- the middleware ----------------------------------------------------------------------


def _app(limiter, principal: Principal | None = None, **limits) -> RateLimitMiddleware:
    async def ok(request):
        return JSONResponse({"ok": True})

    inner = Starlette(
        routes=[
            Route("/health", ok),
            Route("/metrics", ok),
            Route("/fhir{path:path}", ok, methods=["GET", "POST"]),
            Route("/oidc/{path:path}", ok, methods=["GET", "POST"]),
        ]
    )

    async def auth(scope, receive, send):  # stands in for the lead's authentication step
        if principal is not None and scope["type"] == "http":
            scope.setdefault("state", {})["principal"] = principal
        await limited(scope, receive, send)

    limited = RateLimitMiddleware(inner, limiter, **limits)
    return auth


def _client(app, ip: str = "10.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_middleware_refuses_with_429_retry_after_and_outcome():
    clock = FakeClock()
    app = _app(MemoryLimiter(clock=clock), per_ip=(0.5, 2))
    async with _client(app) as client:
        assert (await client.get("/fhir/Patient")).status_code == 200
        assert (await client.get("/fhir/metadata")).status_code == 200
        refused = await client.get("/fhir/Patient")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "2"
        assert refused.headers["content-type"].startswith("application/fhir+json")
        body = refused.json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["code"] == "throttled"
        assert "10.0.0.1" not in refused.text
        # /oidc shares the IP's budget; health and metrics are never limited
        assert (await client.post("/oidc/token")).status_code == 429
        for _ in range(10):
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
        clock.now += 2
        assert (await client.get("/fhir/Patient")).status_code == 200
    async with _client(app, ip="10.0.0.2") as other:  # another IP has its own budget
        assert (await other.get("/fhir/Patient")).status_code == 200


async def test_middleware_limits_users_and_clients():
    clock = FakeClock()
    limiter = MemoryLimiter(clock=clock)
    limits = {"per_client": (1.0, 3), "per_user": (1.0, 2), "per_ip": (1.0, 1)}
    alice = Principal("personnel", "alice", "ehr-app", hpr="123")
    bob = Principal("personnel", "bob", "ehr-app", hpr="456")
    async with _client(_app(limiter, alice, **limits)) as client:
        # the user's own budget (2) applies, not the IP's (1)
        assert [(await client.get("/fhir/Patient")).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
    async with _client(_app(limiter, bob, **limits)) as client:
        # bob has his own user budget, but the client's (3) is shared with alice
        assert [(await client.get("/fhir/Patient")).status_code for _ in range(2)] == [200, 429]


async def test_middleware_principal_func_and_system_clients():
    clock = FakeClock()
    system = Principal("system", "batch", "batch")

    async def principal_func(scope):
        return system

    app = RateLimitMiddleware(
        _ok_app,
        MemoryLimiter(clock=clock),
        per_client=(1.0, 2),
        per_user=(1.0, 1),  # not applied to system principals
        per_ip=None,
        principal_func=principal_func,
    )
    async with _client(app) as client:
        statuses = [(await client.get("/fhir/Patient")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def _ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})
