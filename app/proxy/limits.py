"""Rate limits shared by every process through Redis.

- requests per minute per key: a counter per key and minute;
- concurrent requests per account: a sorted set of in-flight request ids scored by start time, so
  a process that dies mid-request frees its slot when the entry ages out;
- invalid keys per client address: a client that keeps presenting bad keys is throttled (the Terms
  forbid key scraping); a valid key is never refused for what others sent from its address.
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
    with redis.pipeline(transaction=False) as pipe:
        pipe.incr(name)
        pipe.expire(name, 120)
        count, _ = pipe.execute()
    return remaining if count > limit else 0


def admit_request(
    redis: Redis,
    *,
    key_id: int,
    rpm_limit: int,
    account_id: int,
    request_id: str,
    max_in_flight: int,
) -> tuple[str | None, int]:
    """Count the request against its key's minute and register it in flight, in one round trip.

    Returns (None, 0) when admitted; otherwise ("rpm" or "in_flight", seconds to wait), with the
    in-flight entry taken back.
    """
    now = time.time()
    minute, remaining = _minute_window(now)
    rpm_name = f"onekey:rpm:{key_id}:{minute}"
    inflight_name = f"onekey:inflight:{account_id}"
    with redis.pipeline(transaction=False) as pipe:
        pipe.incr(rpm_name)
        pipe.expire(rpm_name, 120)
        pipe.zremrangebyscore(inflight_name, 0, now - INFLIGHT_MAX_AGE_SECONDS)
        pipe.zadd(inflight_name, {request_id: now})
        pipe.zcard(inflight_name)
        pipe.expire(inflight_name, INFLIGHT_MAX_AGE_SECONDS)
        count, _, _, _, in_flight, _ = pipe.execute()
    if count > rpm_limit:
        refusal = ("rpm", remaining)
    elif in_flight > max_in_flight:
        refusal = ("in_flight", 1)
    else:
        return None, 0
    redis.zrem(inflight_name, request_id)
    return refusal


def leave_inflight(redis: Redis, account_id: int, request_id: str) -> None:
    redis.zrem(f"onekey:inflight:{account_id}", request_id)


def record_invalid_key(redis: Redis, address: str, now: float | None = None) -> int:
    """Count an invalid key presented from `address`; seconds it must wait when it has presented
    too many this minute, else 0."""
    minute, remaining = _minute_window(now or time.time())
    name = f"onekey:badkey:{address}:{minute}"
    with redis.pipeline(transaction=False) as pipe:
        pipe.incr(name)
        pipe.expire(name, 120)
        count, _ = pipe.execute()
    return remaining if count > INVALID_KEY_LIMIT_PER_MINUTE else 0
