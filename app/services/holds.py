"""Holds on the hot path: reserve and settle, each one database round trip (DESIGN.md, "The hot path").

`reserve` authenticates the key against its account, checks every limit and places the hold in one
statement on PostgreSQL (data-modifying CTEs); `settle` closes the hold exactly once, writes the
ledger entry and the usage record and moves balance, held and the key's usage in one more. SQLite
has no DML inside a CTE, so there each is one short transaction of a few in-process statements
(BEGIN IMMEDIATE serialises writers).

Rows are always locked in one order, hold, then account, then key, so that placing and closing
holds concurrently cannot deadlock: on PostgreSQL each later step joins the earlier step's output,
so it cannot take its lock first.

The formula for what a request may reserve exists in `decide` (Python) and, for PostgreSQL, in
RESERVE_SQL, which computes the same thing in the database; tests run both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import JSON, bindparam
from sqlalchemy import text as plain_text
from sqlalchemy.exc import DBAPIError

from app.extensions import db
from app.models.types import UTCDateTime, utcnow
from app.services.key_periods import (
    period_over_sql,
    period_params,
    period_start_sql,
    period_usage_sql,
)
from app.services.pricing import UNBOUNDED_TOKENS, affordable_output_tokens, cost_bound


@dataclass(frozen=True)
class HoldRequest:
    """What one request may reserve: its input cost bound and how to price its output.

    `requested_output` is the client's own output limit; None lets the gateway set it (the
    model's maximum, capped at what the account can afford). Checks whose field is None are
    skipped (a hold without a key, or without a model, as the operator's tools place them).
    """

    account_id: int
    input_cost: int  # nanocredits, rounded up
    output_price: int  # nanocredits per million output tokens
    requested_output: int | None
    expires_at: datetime
    max_output_tokens: int = UNBOUNDED_TOKENS
    choices: int = 1
    key_id: int | None = None
    model_pk: int | None = None
    model_version: int | None = None
    model_id: str | None = None  # checked against the key's allow-list
    request_id: str | None = None


@dataclass(frozen=True)
class Reservation:
    hold_id: int
    amount: int
    output_limit: int


@dataclass(frozen=True)
class Refusal:
    """Why nothing was reserved, with the figures a 402 reports.

    reason: key_invalid, key_revoked, key_expired, key_paused, account_not_active, catalog_changed
    (the model was disabled or its prices changed since the caller's copy), model_not_allowed,
    key_limit_reached or insufficient_credits.
    """

    reason: str
    account_status: str | None = None
    balance: int = 0
    held: int = 0
    required: int = 0
    max_affordable_output_tokens: int = 0
    key_remaining: int | None = None


@dataclass(frozen=True)
class Figures:
    """The rows a decision reads, as one reserve statement sees them after taking its locks.

    `key_usage` is what counts against the key's limit: this period's spend when the limit resets
    (services/key_periods.py), its lifetime spend otherwise.
    """

    account_status: str | None
    balance: int
    held: int
    key_found: bool
    key_revoked: bool
    key_expired: bool
    key_limit: int | None
    key_usage: int
    key_held: int
    allowed_models: list[str] | None
    model_current: bool
    key_paused: bool = False


def key_remaining(limit: int | None, usage: int, held: int) -> int | None:
    """What a key may still reserve under its credit limit; None when it has no limit."""
    return None if limit is None else limit - usage - held


def decide(request: HoldRequest, rows: Figures) -> Reservation | Refusal:
    """The reservation a request gets from these rows, or why it gets none (hold_id left 0)."""
    if request.key_id is not None:
        if not rows.key_found:
            return Refusal("key_invalid")
        if rows.key_revoked:
            return Refusal("key_revoked")
        if rows.key_expired:
            return Refusal("key_expired")
    if rows.account_status != "active":
        return Refusal("account_not_active", account_status=rows.account_status)
    if request.key_id is not None and rows.key_paused:
        return Refusal("key_paused")
    if request.model_pk is not None and not rows.model_current:
        return Refusal("catalog_changed")
    if (
        request.model_id is not None
        and rows.allowed_models is not None
        and request.model_id not in rows.allowed_models
    ):
        return Refusal("model_not_allowed")
    available = rows.balance - rows.held
    remaining = key_remaining(rows.key_limit, rows.key_usage, rows.key_held)
    spendable = available if remaining is None else min(available, remaining)
    max_out = affordable_output_tokens(
        spendable - request.input_cost, request.output_price, request.choices
    )
    if request.requested_output is None:
        output_limit = min(request.max_output_tokens, max_out)
    else:
        output_limit = request.requested_output
    output_bound = cost_bound(max(output_limit, 1) * request.choices, request.output_price)
    required = request.input_cost + output_bound
    if output_limit < 1 or required > spendable:
        key_bound = remaining is not None and remaining < available
        return Refusal(
            "key_limit_reached" if key_bound else "insufficient_credits",
            account_status=rows.account_status,
            balance=rows.balance,
            held=rows.held,
            required=required,
            max_affordable_output_tokens=max_out,
            key_remaining=remaining,
        )
    return Reservation(hold_id=0, amount=max(required, 1), output_limit=output_limit)


# The period starts are SQLite's only (PostgreSQL truncates :now itself: key_periods.py).
TIMESTAMP_PARAMS = ("now", "expires_at", "u_created_at", "day_start", "week_start", "month_start")


def text(sql: str):
    """A statement whose timestamp parameters are stored as the models store them (naive UTC, in
    SQLite's text format there)."""
    statement = plain_text(sql)
    present = [name for name in TIMESTAMP_PARAMS if f":{name}" in sql]
    return statement.bindparams(*(bindparam(name, type_=UTCDateTime()) for name in present))


_driver_sql: dict[int, str] = {}


def driver_sql(statement, dialect) -> str:
    """The statement as the driver runs it, compiled once. Without the indentation: psycopg
    caches its parsing of a statement only up to 4 KiB (tests/unit/test_hot_path_statements.py)."""
    sql = _driver_sql.get(id(statement))
    if sql is None:
        compiled = str(statement.compile(dialect=dialect))
        sql = _driver_sql[id(statement)] = "\n".join(line.strip() for line in compiled.splitlines())
    return sql


def run_autocommit(statement, params: dict) -> tuple | None:
    """Run one of this module's PostgreSQL statements by itself and return its first row.

    Each is one statement, atomic by itself, so it runs in autocommit mode (no BEGIN and COMMIT
    round trips) on a pooled connection's driver cursor: the SQLAlchemy machinery around a
    statement costs more CPU than the driver's own work (bench/README.md). Driver errors are raised
    as SQLAlchemy's, so callers see one kind of database error whichever path ran.
    """
    engine = db.engine
    sql = driver_sql(statement, engine.dialect)
    for name in TIMESTAMP_PARAMS:
        if params.get(name) is not None:
            params[name] = params[name].astimezone(UTC).replace(tzinfo=None)
    pooled = engine.raw_connection()
    driver = pooled.driver_connection
    try:
        driver.autocommit = True
        with driver.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    except driver.Error as error:
        if driver.closed or driver.broken:
            # As SQLAlchemy does on a disconnect: this connection and every other one opened
            # before it are replaced on their next checkout (a restarted server dropped them all).
            engine.pool._invalidate(pooled, error)
        raise DBAPIError.instance(sql, params, error, driver.Error) from error
    finally:
        if not driver.closed:
            driver.autocommit = False
        pooled.close()


def _params(request: HoldRequest, now: datetime) -> dict:
    return {
        "account_id": request.account_id,
        "key_id": request.key_id,
        "model_pk": request.model_pk,
        "model_version": request.model_version,
        "model_id": request.model_id,
        "input_cost": request.input_cost,
        "output_price": request.output_price,
        "choices": request.choices,
        "requested": request.requested_output,
        "max_output": request.max_output_tokens,
        "request_id": request.request_id,
        "now": now,
        "expires_at": request.expires_at,
    }


# PostgreSQL: one statement. `acct` then `akey` take the row locks (account first: `akey` joins
# it); `calc` is `decide` in SQL (numeric where a product can pass 2^63); the account, key and
# hold are written only when `calc` refused nothing, the key after the account (`uk` joins `ua`).
RESERVE_SQL = text(
    f"""
WITH acct AS MATERIALIZED (
    SELECT id, status, balance, held FROM accounts
    WHERE id = CAST(:account_id AS integer)
    FOR NO KEY UPDATE
), akey AS MATERIALIZED (
    SELECT k.id, k.revoked_at, k.expires_at, k.paused_at, k.limit_nanocredits,
           {period_usage_sql("k", postgres=True)} AS period_usage,
           k.held_nanocredits, k.allowed_models
    FROM api_keys k JOIN acct ON k.account_id = acct.id
    WHERE k.id = CAST(:key_id AS integer)
    FOR NO KEY UPDATE OF k
), mdl AS (
    SELECT enabled, version FROM catalog_models WHERE id = CAST(:model_pk AS integer)
), figures AS (
    SELECT acct.id AS account_id, acct.status, acct.balance, acct.held, akey.id AS key_id,
           akey.revoked_at, akey.expires_at, akey.paused_at, akey.allowed_models,
           (mdl.enabled AND mdl.version = CAST(:model_version AS bigint)) AS model_current,
           acct.balance - acct.held AS available,
           akey.limit_nanocredits - akey.period_usage - akey.held_nanocredits AS remaining
    FROM acct LEFT JOIN akey ON true LEFT JOIN mdl ON true
), spend AS (
    SELECT f.*, LEAST(f.available, COALESCE(f.remaining, f.available)) AS spendable
    FROM figures f
), afford AS (
    SELECT s.*,
           CASE WHEN CAST(:output_price AS bigint) <= 0 THEN 2147483648
                ELSE LEAST(2147483648, GREATEST(0, floor(
                    (s.spendable - CAST(:input_cost AS bigint))::numeric * 1000000
                    / (CAST(:output_price AS bigint) * CAST(:choices AS integer)))))::bigint
           END AS max_out
    FROM spend s
), limited AS (
    SELECT a.*,
           COALESCE(CAST(:requested AS bigint),
                    LEAST(CAST(:max_output AS bigint), a.max_out)) AS output_limit
    FROM afford a
), calc AS (
    SELECT l.*, r.required, GREATEST(r.required, 1) AS amount,
           CASE
             WHEN CAST(:key_id AS integer) IS NOT NULL AND l.key_id IS NULL THEN 'key_invalid'
             WHEN l.revoked_at IS NOT NULL THEN 'key_revoked'
             WHEN l.expires_at <= CAST(:now AS timestamp) THEN 'key_expired'
             WHEN l.status <> 'active' THEN 'account_not_active'
             WHEN l.paused_at IS NOT NULL THEN 'key_paused'
             WHEN CAST(:model_pk AS integer) IS NOT NULL AND l.model_current IS NOT TRUE
               THEN 'catalog_changed'
             WHEN CAST(:model_id AS text) IS NOT NULL
                  AND json_typeof(l.allowed_models) = 'array'
                  AND NOT (l.allowed_models::jsonb ? CAST(:model_id AS text))
               THEN 'model_not_allowed'
             WHEN l.output_limit < 1 OR r.required > l.spendable THEN
               CASE WHEN l.remaining < l.available THEN 'key_limit_reached'
                    ELSE 'insufficient_credits' END
           END AS refusal
    FROM limited l
    CROSS JOIN LATERAL (
        SELECT CAST(:input_cost AS bigint) + ceil(
            GREATEST(l.output_limit, 1)::numeric * CAST(:choices AS integer)
            * CAST(:output_price AS bigint) / 1000000)::bigint AS required
    ) r
), ua AS (
    UPDATE accounts SET held = accounts.held + calc.amount
    FROM calc WHERE accounts.id = calc.account_id AND calc.refusal IS NULL
    RETURNING accounts.id
), uk AS (
    UPDATE api_keys SET held_nanocredits = api_keys.held_nanocredits + calc.amount,
                        last_used_at = CAST(:now AS timestamp)
    FROM calc, ua WHERE api_keys.id = calc.key_id AND calc.refusal IS NULL
    RETURNING api_keys.id
), h AS (
    INSERT INTO holds (account_id, api_key_id, amount, status, request_id, created_at, expires_at)
    SELECT calc.account_id, calc.key_id, calc.amount, 'open', CAST(:request_id AS text),
           CAST(:now AS timestamp), CAST(:expires_at AS timestamp)
    FROM calc WHERE calc.refusal IS NULL
    RETURNING id
)
SELECT calc.refusal, calc.status, calc.balance, calc.held, calc.required, calc.amount,
       calc.max_out, calc.output_limit, calc.remaining, h.id AS hold_id
FROM calc LEFT JOIN h ON true
"""  # noqa: S608 (constant fragments: key_periods.py)
)

SQLITE_FIGURES_SQL = text(
    f"""
SELECT a.status, a.balance, a.held, k.id, k.revoked_at, k.expires_at <= :now, k.limit_nanocredits,
       {period_usage_sql("k", postgres=False)}, k.held_nanocredits, k.allowed_models, m.enabled,
       m.version, k.paused_at
FROM accounts a
LEFT JOIN api_keys k ON k.id = :key_id AND k.account_id = a.id
LEFT JOIN catalog_models m ON m.id = :model_pk
WHERE a.id = :account_id
"""  # noqa: S608 (constant fragments: key_periods.py)
).columns(allowed_models=JSON())
SQLITE_RESERVE_ACCOUNT = text("UPDATE accounts SET held = held + :amount WHERE id = :account_id")
SQLITE_RESERVE_KEY = text(
    "UPDATE api_keys SET held_nanocredits = held_nanocredits + :amount, last_used_at = :now "
    "WHERE id = :key_id"
)
SQLITE_INSERT_HOLD = text(
    "INSERT INTO holds (account_id, api_key_id, amount, status, request_id, created_at, "
    "expires_at) VALUES (:account_id, :key_id, :amount, 'open', :request_id, :now, :expires_at) "
    "RETURNING id"
)


def reserve(
    request: HoldRequest, now: datetime | None = None, connection=None
) -> Reservation | Refusal:
    """Place a hold for one request, or say why not.

    With `connection`, runs inside the caller's transaction; otherwise commits on a connection of
    its own. Raises the database's errors (the proxy maps an unreachable database to a 503).
    """
    params = _params(request, now or utcnow())
    if connection is not None:
        return _reserve_on(connection, request, params)
    if db.engine.dialect.name == "postgresql":
        return _from_postgres(run_autocommit(RESERVE_SQL, params), request)
    with db.engine.begin() as conn:
        return _reserve_on(conn, request, params)


def _reserve_on(conn, request: HoldRequest, params: dict) -> Reservation | Refusal:
    if conn.dialect.name == "postgresql":
        return _from_postgres(conn.execute(RESERVE_SQL, params).first(), request)
    outcome = _reserve_sqlite(conn, request, params)
    if outcome is None:  # no such account
        return Refusal("key_invalid" if request.key_id is not None else "no_account")
    return outcome


def _from_postgres(row, request: HoldRequest) -> Reservation | Refusal:
    if row is None:  # no such account
        return Refusal("key_invalid" if request.key_id is not None else "no_account")
    refusal, status, balance, held, required, amount, max_out, output_limit, remaining, hold_id = (
        row
    )
    if refusal is None:
        return Reservation(hold_id=hold_id, amount=amount, output_limit=output_limit)
    if refusal in ("key_limit_reached", "insufficient_credits"):
        return Refusal(
            refusal,
            account_status=status,
            balance=balance,
            held=held,
            required=required,
            max_affordable_output_tokens=max_out,
            key_remaining=remaining,
        )
    if refusal == "account_not_active":
        return Refusal(refusal, account_status=status)
    return Refusal(refusal)


def _reserve_sqlite(conn, request: HoldRequest, params: dict) -> Reservation | Refusal | None:
    """None when there is no such account."""
    params = {**params, **period_params(params["now"])}
    row = conn.execute(SQLITE_FIGURES_SQL, params).first()
    if row is None:
        return None
    (status, balance, held, key_id, revoked_at, expired, limit, usage, key_held) = row[:9]
    allowed, enabled, version, paused_at = row[9:]
    figures = Figures(
        account_status=status,
        balance=balance,
        held=held,
        key_found=key_id is not None,
        key_revoked=revoked_at is not None,
        key_expired=bool(expired),
        key_limit=limit,
        key_usage=usage or 0,
        key_held=key_held or 0,
        allowed_models=allowed if isinstance(allowed, list) else None,
        model_current=bool(enabled) and version == request.model_version,
        key_paused=paused_at is not None,
    )
    outcome = decide(request, figures)
    if isinstance(outcome, Refusal):
        return outcome
    params = {**params, "amount": outcome.amount}
    conn.execute(SQLITE_RESERVE_ACCOUNT, params)
    if request.key_id is not None:
        conn.execute(SQLITE_RESERVE_KEY, params)
    hold_id = conn.execute(SQLITE_INSERT_HOLD, params).scalar_one()
    return Reservation(hold_id=hold_id, amount=outcome.amount, output_limit=outcome.output_limit)


# --- settlement ------------------------------------------------------------------------------

USAGE_COLUMNS = (
    "account_id",
    "api_key_id",
    "hold_id",
    "request_id",
    "provider",
    "model_id",
    "route",
    "status",
    "streamed",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
    "list_cost",
    "prices_applied",
    "latency_ms",
    "time_to_first_token_ms",
    "estimate_basis",
    "created_at",
)
USAGE_DEFAULTS = {
    "api_key_id": None,
    "streamed": False,
    "input_tokens": 0,
    "cache_read_tokens": 0,
    "cache_write_5m_tokens": 0,
    "cache_write_1h_tokens": 0,
    "output_tokens": 0,
    "reasoning_tokens": 0,
    "list_cost": None,
    "prices_applied": {},
    "latency_ms": None,
    "time_to_first_token_ms": None,
    "estimate_basis": None,
}


def _usage_params(usage: dict | None, cost: int, now: datetime) -> dict:
    """The usage record's columns as statement parameters (u_<column>); `record` says whether
    one is written."""
    if usage is None:
        return {"record": False, **{f"u_{c}": None for c in USAGE_COLUMNS}}
    values = {**USAGE_DEFAULTS, **usage}
    values["cost"] = cost
    values["prices_applied"] = json.dumps(values["prices_applied"], separators=(",", ":"))
    if values["estimate_basis"] is not None:
        values["estimate_basis"] = json.dumps(values["estimate_basis"], separators=(",", ":"))
    values["created_at"] = now
    values.pop("cost_nanocredits", None)
    return {"record": True, **{f"u_{c}": values.get(c) for c in USAGE_COLUMNS}}


def roll_period_sql(*, postgres: bool) -> str:
    """SET clauses of the key's UPDATE at settlement: when its limit period is over, the new one
    starts with the usage before this cost (key_periods.py). Both read the row as it was."""
    over = period_over_sql("api_keys", postgres=postgres)
    start = period_start_sql("api_keys.limit_reset", postgres=postgres)
    return (
        f"period_usage_base_nanocredits = CASE WHEN {over} THEN api_keys.usage_nanocredits "
        "ELSE api_keys.period_usage_base_nanocredits END, "
        f"period_started_at = CASE WHEN {over} THEN {start} ELSE api_keys.period_started_at END"
    )


PG_ROLL_PERIOD = roll_period_sql(postgres=True)

# PostgreSQL: one statement. The hold is claimed (locked, then closed) first; the ledger entry
# and the usage record follow it; the account is updated with the debit the ledger took, and the
# key after the account (`uk` joins `ua`), rolling its limit period over first when it is over.
SETTLE_SQL = text(
    f"""
WITH claimed AS MATERIALIZED (
    SELECT id, status AS was, account_id, api_key_id, amount FROM holds
    WHERE id = CAST(:hold_id AS bigint) AND status IN ('open', 'expired')
    FOR UPDATE
), h AS (
    UPDATE holds SET status = 'settled', closed_at = CAST(:now AS timestamp),
                     settled_amount = CAST(:cost AS bigint)
    FROM claimed WHERE holds.id = claimed.id
    RETURNING claimed.was, claimed.account_id, claimed.api_key_id,
              CASE WHEN claimed.was = 'open' THEN claimed.amount ELSE 0 END AS release
), le AS (
    INSERT INTO ledger_entries (account_id, kind, amount, reference_type, reference_id,
                                idempotency_key, created_at)
    SELECT h.account_id, 'usage', -CAST(:cost AS bigint), 'usage', CAST(:reference_id AS text),
           CAST(:idempotency_key AS text), CAST(:now AS timestamp)
    FROM h WHERE CAST(:cost AS bigint) > 0
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING amount
), debit AS (
    SELECT COALESCE(SUM(amount), 0) AS amount FROM le
), ua AS (
    UPDATE accounts SET held = accounts.held - h.release,
                        balance = accounts.balance + debit.amount,
                        flagged_reason = CASE
                            WHEN debit.amount < 0 AND accounts.balance + debit.amount < 0
                                 AND accounts.flagged_reason IS NULL THEN 'negative balance'
                            ELSE accounts.flagged_reason END
    FROM h, debit WHERE accounts.id = h.account_id
    RETURNING accounts.id
), uk AS (
    UPDATE api_keys SET held_nanocredits = api_keys.held_nanocredits - h.release,
                        usage_nanocredits = api_keys.usage_nanocredits + CAST(:cost AS bigint),
                        {PG_ROLL_PERIOD}
    FROM h, ua WHERE api_keys.id = h.api_key_id
    RETURNING api_keys.id
), u AS (
    INSERT INTO usage_records (account_id, api_key_id, hold_id, request_id, provider, model_id, route, status,
                               streamed, input_tokens, cache_read_tokens, cache_write_5m_tokens,
                               cache_write_1h_tokens, output_tokens, reasoning_tokens, cost,
                               list_cost, prices_applied, latency_ms, time_to_first_token_ms,
                               estimate_basis, created_at)
    SELECT h.account_id, h.api_key_id, CAST(:hold_id AS bigint), CAST(:u_request_id AS text),
           CAST(:u_provider AS text), CAST(:u_model_id AS text), CAST(:u_route AS text),
           CAST(:u_status AS text), CAST(:u_streamed AS boolean),
           CAST(:u_input_tokens AS integer), CAST(:u_cache_read_tokens AS integer),
           CAST(:u_cache_write_5m_tokens AS integer), CAST(:u_cache_write_1h_tokens AS integer),
           CAST(:u_output_tokens AS integer), CAST(:u_reasoning_tokens AS integer),
           CAST(:u_cost AS bigint), CAST(:u_list_cost AS bigint),
           CAST(:u_prices_applied AS json),
           CAST(:u_latency_ms AS integer), CAST(:u_time_to_first_token_ms AS integer),
           CAST(:u_estimate_basis AS json), CAST(:u_created_at AS timestamp)
    FROM h WHERE CAST(:record AS boolean)
    RETURNING id
)
SELECT h.was FROM h
"""  # noqa: S608 (constant fragments: key_periods.py)
)

SQLITE_CLAIM = text(
    "UPDATE holds SET status = 'settled', closed_at = :now, settled_amount = :cost "
    "WHERE id = :hold_id AND status = :was RETURNING account_id, api_key_id, amount"
)
SQLITE_LEDGER = text(
    "INSERT INTO ledger_entries (account_id, kind, amount, reference_type, reference_id, "
    "idempotency_key, created_at) VALUES (:account_id, 'usage', -:cost, 'usage', :reference_id, "
    ":idempotency_key, :now) ON CONFLICT (idempotency_key) DO NOTHING RETURNING amount"
)
SQLITE_SETTLE_ACCOUNT = text(
    "UPDATE accounts SET held = held - :release, balance = balance + :debit, "
    "flagged_reason = CASE WHEN :debit < 0 AND balance + :debit < 0 AND flagged_reason IS NULL "
    "THEN 'negative balance' ELSE flagged_reason END WHERE id = :account_id"
)
SQLITE_SETTLE_KEY = text(
    "UPDATE api_keys SET held_nanocredits = held_nanocredits - :release, "  # noqa: S608 (constant fragments: key_periods.py)
    f"usage_nanocredits = usage_nanocredits + :cost, {roll_period_sql(postgres=False)} "
    "WHERE id = :api_key_id"
)
SQLITE_USAGE = text(
    """
INSERT INTO usage_records (account_id, api_key_id, hold_id, request_id, provider, model_id, route,
                           status, streamed, input_tokens, cache_read_tokens,
                           cache_write_5m_tokens, cache_write_1h_tokens, output_tokens,
                           reasoning_tokens, cost, list_cost, prices_applied, latency_ms,
                           time_to_first_token_ms, estimate_basis, created_at)
VALUES (:account_id, :api_key_id, :hold_id, :u_request_id, :u_provider, :u_model_id, :u_route,
        :u_status, :u_streamed, :u_input_tokens, :u_cache_read_tokens, :u_cache_write_5m_tokens,
        :u_cache_write_1h_tokens, :u_output_tokens, :u_reasoning_tokens, :u_cost, :u_list_cost,
        :u_prices_applied, :u_latency_ms, :u_time_to_first_token_ms, :u_estimate_basis,
        :u_created_at)
"""
)


def settle(
    hold_id: int,
    cost_nanocredits: int,
    *,
    usage: dict | None = None,
    reference_id: str | None = None,
    now: datetime | None = None,
    connection=None,
) -> bool:
    """Debit the actual cost, release the hold and (given `usage`, the usage record's columns)
    record the request, exactly once; False, changing nothing, when the hold is already closed.

    A hold the expiry job released is still settled late: the cost is debited, the reservation is
    not released twice. The debit may take the balance below zero; the account is then flagged.
    With `connection`, runs inside the caller's transaction; otherwise commits on its own.
    Raises ValueError for a negative cost.
    """
    if cost_nanocredits < 0:
        raise ValueError("a cost cannot be negative")
    now = now or utcnow()
    params = {
        "hold_id": hold_id,
        "cost": cost_nanocredits,
        "now": now,
        "reference_id": reference_id or f"hold:{hold_id}",
        "idempotency_key": f"usage:hold:{hold_id}",
        **_usage_params(usage, cost_nanocredits, now),
    }
    if connection is not None:
        return _settle_on(connection, params)
    if db.engine.dialect.name == "postgresql":
        return run_autocommit(SETTLE_SQL, params) is not None
    with db.engine.begin() as conn:
        return _settle_on(conn, params)


def _settle_on(conn, params: dict) -> bool:
    if conn.dialect.name == "postgresql":
        return conn.execute(SETTLE_SQL, params).first() is not None
    for was in ("open", "expired"):
        claimed = conn.execute(SQLITE_CLAIM, {**params, "was": was}).first()
        if claimed is not None:
            break
    else:
        return False
    account_id, api_key_id, amount = claimed
    step = {
        **params,
        **period_params(params["now"]),
        "account_id": account_id,
        "api_key_id": api_key_id,
        "release": amount if was == "open" else 0,
        "debit": 0,
    }
    if params["cost"] > 0:
        debited = conn.execute(SQLITE_LEDGER, step).first()
        step["debit"] = debited[0] if debited is not None else 0
    conn.execute(SQLITE_SETTLE_ACCOUNT, step)
    if api_key_id is not None:
        conn.execute(SQLITE_SETTLE_KEY, step)
    if params["record"]:
        conn.execute(SQLITE_USAGE, step)
    return True
