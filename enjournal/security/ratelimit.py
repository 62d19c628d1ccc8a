"""Rate limiting: token buckets per client, per user and per IP, in memory or in Redis.

Two limiters share one interface, ``await limiter.hit(key, rate=..., burst=...)`` ->
``(allowed, retry_after_seconds)``:

* ``MemoryLimiter``: in-process buckets, bounded by an LRU of ``max_keys`` entries.  Right
  for one worker, tests and development; with N workers every budget is N times larger.
* ``RedisLimiter``: one atomic Lua script per hit, so every API worker shares one budget.
  The script uses the Redis server's clock (``TIME``), so worker clock skew does not matter.

Redis outage policy: **fail open, degraded to per-worker limits.**  Rate limiting protects
capacity, it is not access control (authentication and authorisation still run), and a cache
outage must not turn into an outage of the clinical API.  While Redis is unreachable each
worker falls back to its own ``MemoryLimiter`` (so traffic is still bounded, only N times
looser), stops trying Redis for ``retry_interval`` seconds so requests do not each wait for a
connect timeout, and logs a warning at most once per ``warn_interval`` seconds.

The ASGI middleware that applies them to requests is ``enjournal.server.ratelimit``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("enjournal.security.ratelimit")

Clock = Callable[[], float]
Limit = tuple[float, int]  # (tokens per second, bucket size)


class Limiter(Protocol):
    async def hit(self, key: str, *, rate: float, burst: int) -> tuple[bool, float]:
        """Take one token from ``key``'s bucket: (allowed, seconds until one is available)."""
        ...

    async def aclose(self) -> None: ...


def check_limit(rate: float, burst: int) -> None:
    if not rate > 0 or burst < 1:
        raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, not {rate}/{burst}")


class MemoryLimiter:
    """Token buckets in a dict; least recently used keys are evicted past ``max_keys``.

    An evicted key starts again with a full bucket, so ``max_keys`` should comfortably exceed
    the number of identities active within one refill period (burst / rate).
    """

    def __init__(self, *, max_keys: int = 100_000, clock: Clock = time.monotonic):
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    async def hit(self, key: str, *, rate: float, burst: int) -> tuple[bool, float]:
        return self.hit_now(key, rate=rate, burst=burst)

    def hit_now(self, key: str, *, rate: float, burst: int) -> tuple[bool, float]:
        """The synchronous core (no await in between read and write, so it is atomic)."""
        check_limit(rate, burst)
        now = self.clock()
        state = self._buckets.get(key)
        if state is None:
            tokens = float(burst)
        else:
            tokens, last = state
            tokens = min(float(burst), tokens + max(0.0, now - last) * rate)
            self._buckets.move_to_end(key)
        if tokens >= 1.0:
            allowed, retry = True, 0.0
            tokens -= 1.0
        else:
            allowed, retry = False, (1.0 - tokens) / rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed, retry

    async def aclose(self) -> None:
        self._buckets.clear()


# KEYS[1] bucket; ARGV rate, burst.  State is a hash {t: tokens, ts: server time in seconds}.
# The key expires once the bucket would be full again, which is the same as having no key.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = burst
else
  local elapsed = now - last
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(burst, tokens + elapsed * rate)
end
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'ts', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, string.format('%.6f', retry)}
"""


class _Throttled:
    """Lets a message through at most once per ``interval`` seconds, counting the rest."""

    def __init__(self, interval: float, clock: Clock = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self.suppressed = 0

    def warn(self, message: str, *args: Any) -> bool:
        now = self.clock()
        if now < self._next:
            self.suppressed += 1
            return False
        self._next = now + self.interval
        suppressed, self.suppressed = self.suppressed, 0
        log.warning(message + " (%d similar warnings suppressed)", *args, suppressed)
        return True


class RedisLimiter:
    """Token buckets in Redis, shared by every worker; see the module doc for outages."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "enjournal:rl:",
        timeout: float = 0.25,
        retry_interval: float = 1.0,
        warn_interval: float = 60.0,
        fallback: MemoryLimiter | None = None,
        clock: Clock = time.monotonic,
    ):
        self.prefix = prefix
        self.client = aioredis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            decode_responses=True,
        )
        self._script = self.client.register_script(_TOKEN_BUCKET)
        self.fallback = fallback or MemoryLimiter(clock=clock)
        self.retry_interval = retry_interval
        self.clock = clock
        self._down_until = 0.0
        self._warning = _Throttled(warn_interval, clock)

    @property
    def degraded(self) -> bool:
        """True while Redis is considered down and the per-worker fallback is in use."""
        return self.clock() < self._down_until

    async def hit(self, key: str, *, rate: float, burst: int) -> tuple[bool, float]:
        check_limit(rate, burst)
        if self.degraded:
            return self.fallback.hit_now(key, rate=rate, burst=burst)
        try:
            allowed, retry = await self._script(keys=[self.prefix + key], args=[rate, burst])
        except (RedisError, OSError) as error:  # TimeoutError is an OSError
            self._down_until = self.clock() + self.retry_interval
            self._warning.warn(
                "rate limiter: Redis unreachable (%s); falling back to per-worker limits",
                type(error).__name__,
            )
            return self.fallback.hit_now(key, rate=rate, burst=burst)
        return bool(int(allowed)), float(retry)

    async def aclose(self) -> None:
        await self.client.aclose()


def limiter_from_url(url: str | None, **options: Any) -> Limiter:
    """``redis://``, ``rediss://`` or ``unix://`` -> ``RedisLimiter``; none or ``memory`` ->
    ``MemoryLimiter``.  Any other scheme is a configuration error rather than a silent
    fallback to per-worker limits."""
    if not url or url.strip().lower() in ("memory", "memory://"):
        return MemoryLimiter(**options)
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisLimiter(url, **options)
    raise ValueError(f"unsupported rate limiter URL scheme {scheme!r}")
