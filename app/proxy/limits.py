"""Rate limits shared by every process through Redis.

- requests per minute per key: a counter per key and minute;
- concurrent requests per account: a sorted set of in-flight request ids scored by start time, so
  a process that dies mid-request frees its slot when the entry ages out;
- invalid keys per client address: a client that keeps presenting bad keys is throttled (the Terms
  forbid key scraping).
"""

from __future__ import annotations

import time

from redis import Redis

INVALID_KEY_LIMIT_PER_MINUTE = 20
# An in-flight entry older than this is a leftover of a crashed process.
INFLIGHT_MAX_AGE_SECONDS = 900


def _minute_window(now: float) -> tuple[int, int]:
    minute = int(now // 60)
    return minute, 60 - int(now % 60)


def take_request_slot(redis: Redis, key_id: int, limit: int, now: float | None = None) -> int:
    """Count one request for the key in the current minute; seconds to wait when over `limit`."""
    now = now or time.time()
    minute, remaining = _minute_window(now)
    name = f"onekey:rpm:{key_id}:{minute}"
    with redis.pipeline() as pipe:
        pipe.incr(name)
        pipe.expire(name, 120)
        count, _ = pipe.execute()
    return remaining if count > limit else 0


def enter_inflight(redis: Redis, account_id: int, request_id: str, limit: int) -> bool:
    """Register a request as in flight; False (and nothing registered) when at the limit."""
    name = f"onekey:inflight:{account_id}"
    now = time.time()
    with redis.pipeline() as pipe:
        pipe.zremrangebyscore(name, 0, now - INFLIGHT_MAX_AGE_SECONDS)
        pipe.zadd(name, {request_id: now})
        pipe.zcard(name)
        pipe.expire(name, INFLIGHT_MAX_AGE_SECONDS)
        _, _, count, _ = pipe.execute()
    if count > limit:
        redis.zrem(name, request_id)
        return False
    return True


def leave_inflight(redis: Redis, account_id: int, request_id: str) -> None:
    redis.zrem(f"onekey:inflight:{account_id}", request_id)


def invalid_key_wait(redis: Redis, address: str, now: float | None = None) -> int:
    """Seconds an address must wait after too many invalid keys this minute, else 0."""
    minute, remaining = _minute_window(now or time.time())
    count = int(redis.get(f"onekey:badkey:{address}:{minute}") or 0)
    return remaining if count >= INVALID_KEY_LIMIT_PER_MINUTE else 0


def record_invalid_key(redis: Redis, address: str, now: float | None = None) -> None:
    minute, _ = _minute_window(now or time.time())
    name = f"onekey:badkey:{address}:{minute}"
    with redis.pipeline() as pipe:
        pipe.incr(name)
        pipe.expire(name, 120)
        pipe.execute()
