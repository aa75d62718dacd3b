"""Requests refused before they reached a provider, per key, so that a customer whose application
fails can see why (the portal's /keys/refusals page).

Kept in Redis, never in the database: per key a list of the last REFUSALS_KEPT refusals (LPUSH +
LTRIM, with a TTL) and a hash of counts by status per UTC day, all written by one pipelined
round trip on the refusal path only. The success path writes nothing: the gateway merely notes on
`g` which key is calling (once authentication found it) and the model asked for.

Recorded: 400 (a bad parameter, once the key is known), 401 (a revoked or expired key: its row
says whose it is), 402, 403, 404 and 429. Not recorded: an unknown key (it has no owner), anything
answered after the provider was called (its errors are the provider's), and OneKey's own 5xx.
Entries hold metadata only: when, the status and code, OneKey's message, the model named, the
route and the request id. A 400's message can quote what the request held (a tool's name, a part's
type), so a 400 keeps the parameter it is about instead of its message.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from flask import g, request
from redis import Redis
from redis.exceptions import RedisError

from app.extensions import get_redis
from app.proxy.errors import CONDITIONS, ProxyError

log = logging.getLogger("onekey.proxy")

RECORDED_STATUSES = frozenset({400, 401, 402, 403, 404, 429})
REFUSALS_KEPT = 50
LIST_TTL_SECONDS = 7 * 86400
COUNT_DAYS = 7
COUNT_TTL_SECONDS = (COUNT_DAYS + 1) * 86400
# Client-chosen strings (a model name, a path) are cut to this many characters.
MAX_FIELD_CHARS = 120


def list_name(key_id: int) -> str:
    return f"onekey:refusals:{key_id}"


def counts_name(key_id: int, day: str) -> str:
    return f"onekey:refusals:{key_id}:{day}"


def utc_day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


@dataclass
class Attempt:
    """What the gateway learnt about the request so far."""

    key_id: int | None = None
    model: str | None = None


def _attempt() -> Attempt:
    attempt = g.get("proxy_attempt")
    if attempt is None:
        attempt = g.proxy_attempt = Attempt()
    return attempt


def note_key(key_id: int) -> None:
    """The presented key exists (revoked, expired or live): refusals from here on are its."""
    _attempt().key_id = key_id


def note_model(name: object) -> None:
    if isinstance(name, str):
        _attempt().model = name[:MAX_FIELD_CHARS]


def upstream_reached() -> None:
    """The provider is being called: what fails from here on is not a refusal."""
    g.pop("proxy_attempt", None)


def record_refusal(error: ProxyError) -> None:
    """Record `error` against the calling key when it is a refusal worth showing; a Redis that
    does not answer only costs the record (the caller's answer is the same)."""
    attempt = g.get("proxy_attempt")
    if attempt is None or attempt.key_id is None:
        return
    # An upstream 4xx passed on with its own status came from the provider.
    if error.status_override is not None or error.status not in RECORDED_STATUSES:
        return
    if error.status == 400:
        message = f"Invalid parameter '{error.param}'." if error.param else "Invalid request."
        param = error.param[:MAX_FIELD_CHARS] if error.param else None
    else:
        message, param = error.message, None
    try:
        record(
            get_redis(),
            key_id=attempt.key_id,
            status=error.status,
            code=CONDITIONS[error.condition][1],
            message=message[:300],
            model=attempt.model,
            route=f"{request.method} {request.path}"[:MAX_FIELD_CHARS],
            request_id=g.get("request_id"),
            param=param,
        )
    except (RedisError, OSError) as exc:
        log.warning("refusal not recorded, Redis did not answer: %s", type(exc).__name__)


def record(
    redis: Redis,
    *,
    key_id: int,
    status: int,
    code: str,
    message: str,
    model: str | None,
    route: str,
    request_id: str | None,
    param: str | None = None,
    at: float | None = None,
) -> None:
    """Add one refusal to the key's list (capped at REFUSALS_KEPT) and to its day's count, in one
    round trip."""
    at = at or time.time()
    entry = {
        "at": round(at, 3),
        "status": status,
        "code": code,
        "message": message,
        "model": model,
        "route": route,
        "request_id": request_id,
    }
    if param:
        entry["param"] = param
    name = list_name(key_id)
    day = counts_name(key_id, utc_day(at))
    with redis.pipeline(transaction=False) as pipe:
        pipe.lpush(name, json.dumps(entry, separators=(",", ":")))
        pipe.ltrim(name, 0, REFUSALS_KEPT - 1)
        pipe.expire(name, LIST_TTL_SECONDS)
        pipe.hincrby(day, str(status), 1)
        pipe.expire(day, COUNT_TTL_SECONDS)
        pipe.execute()


@dataclass
class KeyRefusals:
    """What the portal shows of one key: the newest refusals first, and counts per day."""

    recent: list[dict]
    # (UTC day, {status: count}), today first, for COUNT_DAYS days.
    days: list[tuple[str, dict[int, int]]]

    @property
    def total(self) -> int:
        return sum(sum(counts.values()) for _, counts in self.days)

    @property
    def statuses(self) -> list[int]:
        return sorted({status for _, counts in self.days for status in counts})


def refusals_of(redis: Redis, key_id: int, now: float | None = None) -> KeyRefusals:
    """The key's recorded refusals, in one round trip."""
    now = now or time.time()
    days = [utc_day(now - n * 86400) for n in range(COUNT_DAYS)]
    with redis.pipeline(transaction=False) as pipe:
        pipe.lrange(list_name(key_id), 0, REFUSALS_KEPT - 1)
        for day in days:
            pipe.hgetall(counts_name(key_id, day))
        raw, *counts = pipe.execute()
    recent = []
    for item in raw:
        try:
            entry = json.loads(item)
        except ValueError:
            continue
        if isinstance(entry, dict):
            recent.append(entry)
    return KeyRefusals(
        recent=recent,
        days=[
            (day, {int(status): int(n) for status, n in day_counts.items()})
            for day, day_counts in zip(days, counts, strict=True)
        ],
    )
