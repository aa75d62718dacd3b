"""Which web processes are alive, so the holds of one that died are released within minutes.

Every web process has a random token, part of each request id it assigns (`<token>-<random>`), and
keeps the key `onekey:alive:<token>` in Redis fresh from a background thread (a greenlet under
gevent). A hold's request id therefore names the process that placed it. The sweep
(`tasks.maintenance.release_orphaned_holds_job`) releases an open hold only once its process's key
has been missing for a whole TTL, seen at two sweeps, so a live request's hold is never released
because Redis restarted (keys lost) or a beat came a little late. A process killed with -9, or
lost with its machine, stops beating; its holds are then released about a minute later instead of
at their hard expiry, more than an hour on.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger("onekey.heartbeat")
ALIVE_KEY = "onekey:alive:{}"
# A process not beating is first noted here (with when), and held dead once that is a TTL old.
SUSPECT_KEY = "onekey:suspect:{}"
TOKEN_BYTES = 4

_lock = threading.Lock()
_owner_pid: int | None = None
_token: str | None = None


def process_token(redis: Redis, interval: float, ttl: int) -> str:
    """This process's token; the first call in a process (after a fork too) beats once and starts
    the thread that keeps beating."""
    global _owner_pid, _token
    if _owner_pid == os.getpid():
        return _token
    with _lock:
        if _owner_pid != os.getpid():
            token = secrets.token_hex(TOKEN_BYTES)
            _beat(redis, token, ttl)
            threading.Thread(
                target=_beat_forever,
                args=(redis, token, interval, ttl),
                name="onekey-heartbeat",
                daemon=True,
            ).start()
            _token, _owner_pid = token, os.getpid()
    return _token


def new_request_id(redis: Redis, interval: float, ttl: int) -> str:
    return f"{process_token(redis, interval, ttl)}-{secrets.token_hex(10)}"


def token_of(request_id: str | None) -> str | None:
    """The token of the process that assigned a request id; None for ids of another shape."""
    token, dash, _ = (request_id or "").partition("-")
    if dash and len(token) == 2 * TOKEN_BYTES:
        return token
    return None


def _beat(redis: Redis, token: str, ttl: int) -> None:
    try:
        redis.set(ALIVE_KEY.format(token), os.getpid(), ex=ttl)
    except (RedisError, OSError) as exc:
        # Nothing is released meanwhile: the sweep waits until it has seen the key missing twice.
        log.warning("heartbeat not written: %s", type(exc).__name__)


def _beat_forever(redis: Redis, token: str, interval: float, ttl: int) -> None:
    while True:
        time.sleep(interval)
        _beat(redis, token, ttl)


def dead_tokens(redis: Redis, tokens: set[str], *, ttl: int, now: float | None = None) -> set[str]:
    """Of these process tokens, the ones whose key has been missing for at least a TTL, as seen
    by an earlier sweep; a token missing for the first time is noted, one beating again forgotten.
    Raises RedisError (the caller releases nothing then)."""
    now = time.time() if now is None else now
    ordered = sorted(tokens)
    if not ordered:
        return set()
    with redis.pipeline(transaction=False) as pipe:
        for token in ordered:
            pipe.exists(ALIVE_KEY.format(token))
            pipe.get(SUSPECT_KEY.format(token))
        answers = pipe.execute()
    dead = set()
    with redis.pipeline(transaction=False) as pipe:
        for token, alive, suspected in zip(ordered, answers[::2], answers[1::2], strict=True):
            if alive:
                pipe.delete(SUSPECT_KEY.format(token))
            elif suspected is None:
                pipe.set(SUSPECT_KEY.format(token), repr(now), ex=max(10 * ttl, 3600))
            elif now - float(suspected) >= ttl:
                dead.add(token)
        pipe.execute()
    return dead
