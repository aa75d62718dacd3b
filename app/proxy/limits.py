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
from redis.commands.core import Script

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


# Admission in one command: count the request against its key's minute, then (unless that is over
# its limit) register it in its account's in-flight set unless that is full. Returns {refused, n}:
# refused 0 admitted, 1 over the per-minute limit, 2 too many in flight.
ADMIT_SCRIPT = Script(
    None,
    b"""
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 120)
if count > tonumber(ARGV[1]) then return {1, count} end
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], 0, now - tonumber(ARGV[5]))
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[5])
local in_flight = redis.call('ZCARD', KEYS[2])
if in_flight > tonumber(ARGV[4]) then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return {2, in_flight}
end
return {0, in_flight}
""",
)


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

    Returns (None, 0) when admitted; otherwise ("rpm" or "in_flight", seconds to wait), with
    nothing registered in flight.
    """
    now = time.time()
    minute, remaining = _minute_window(now)
    refused, _ = ADMIT_SCRIPT(  # EVALSHA; the script is loaded once per Redis server
        keys=[f"onekey:rpm:{key_id}:{minute}", f"onekey:inflight:{account_id}"],
        args=[rpm_limit, request_id, repr(now), max_in_flight, INFLIGHT_MAX_AGE_SECONDS],
        client=redis,
    )
    if refused == 1:
        return "rpm", remaining
    if refused == 2:
        return "in_flight", 1
    return None, 0


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
