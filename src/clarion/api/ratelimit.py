"""Token buckets per key: in process by default, shared through Redis when
CLARION_REDIS_URL is set, so N API processes enforce one budget.

A bucket holds up to twice the per-second rate (the burst) and refills
continuously; each request takes one token."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from clarion.config import Settings

BURST_FACTOR = 2.0
KEY_PREFIX = "clarion:rl:"

# Atomic refill-and-take in Redis; returns {allowed, tokens left ×1000, ms until one token}.
_REDIS_BUCKET = """
local rate, burst, now_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now_ms
tokens = math.min(burst, tokens + math.max(0, now_ms - ts) * rate / 1000)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 't', tokens, 'ts', now_ms)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait_ms = 0
if tokens < 1 then wait_ms = math.ceil((1 - tokens) * 1000 / rate) end
return {allowed, math.floor(tokens * 1000), wait_ms}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int  # the burst: what a full bucket holds
    remaining: int
    retry_after: float  # seconds until the next token


class Limiter(Protocol):
    async def take(self, budget: str, key: str, rate: float) -> Decision: ...

    async def aclose(self) -> None: ...


class LocalLimiter:
    """Buckets in this process's memory."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = asyncio.Lock()

    async def take(self, budget: str, key: str, rate: float) -> Decision:
        burst = rate * BURST_FACTOR
        now = time.monotonic()
        async with self._lock:
            tokens, last = self._buckets.get((budget, key), (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._buckets[(budget, key)] = (tokens, now)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / rate
        return Decision(allowed, math.floor(burst), math.floor(tokens), wait)

    async def aclose(self) -> None:
        self._buckets.clear()


class RedisLimiter:
    """Buckets in Redis, shared by every API process pointed at it."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url)
        self._script = self._redis.register_script(_REDIS_BUCKET)

    async def take(self, budget: str, key: str, rate: float) -> Decision:
        burst = rate * BURST_FACTOR
        now_ms = int(time.time() * 1000)
        allowed, left_milli, wait_ms = await self._script(
            keys=[f"{KEY_PREFIX}{budget}:{key}"], args=[rate, burst, now_ms]
        )
        return Decision(bool(allowed), math.floor(burst), int(left_milli) // 1000, int(wait_ms) / 1000)

    async def aclose(self) -> None:
        await self._redis.aclose()


def build_limiter(settings: Settings) -> Limiter:
    return RedisLimiter(settings.redis_url) if settings.redis_url else LocalLimiter()


def rate_for(settings: Settings, budget: str) -> float:
    return {"notifications": settings.rate_limit_notifications, "devices": settings.rate_limit_devices}[budget]


def headers(decision: Decision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(max(0, decision.remaining)),
        "RateLimit-Reset": str(math.ceil(decision.retry_after)),
    }
