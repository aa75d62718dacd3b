"""How fast the activity page, the dashboard's spend and the low-balance check read a big ledger.

    .venv/bin/python bench/activity_bench.py                      # PostgreSQL (127.0.0.1:5432)
    .venv/bin/python bench/activity_bench.py --sqlite             # a SQLite file in bench/.work/
    .venv/bin/python bench/activity_bench.py --usage 1000000 --days 365 --others 200

Seeds one account with --usage usage debits spread evenly over the last --days days (one ledger
entry per request, as settlement writes them), a purchase or grant every few days, and --others
other accounts with 5,000 debits each (so the index has neighbours), plus --watchers accounts with a
low-balance threshold; then times, median of --repeat runs, on a warm cache:
activity_page() for the newest page, a page 200 days back and the oldest page; spend(); and one
low-balance check (re-arm + claim). Prints a markdown table and the PostgreSQL plans. The database
(`onekey_bench_activity`, or bench/.work/activity-bench.sqlite3) is made afresh and removed at the
end; `--keep` keeps it and `--reuse` times a kept one again without seeding (the machine's load moves
these figures: run it on a quiet one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = ROOT / "bench" / ".work"


def _timed(function, repeat: int) -> float:
    function()  # warm
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


# Seed statements, one list per dialect: accounts, the account's usage debits (every `step`
# seconds back from now), its purchases and grants (every third day), the other accounts' debits.
PG_SEED = (
    "INSERT INTO accounts (id, email, password_hash, is_admin, status, balance, held, "
    "session_version, terms_version, terms_accepted_at, age_attested_at, created_at) "
    "SELECT g, 'bench' || g || '@example.com', 'x', false, 'active', 0, 0, 1, 'v1', "
    "CAST(:now AS timestamp), CAST(:now AS timestamp), CAST(:opened AS timestamp) "
    "FROM generate_series(1, :accounts) g",
    "INSERT INTO ledger_entries (account_id, kind, amount, reference_type, reference_id, "
    "idempotency_key, created_at) SELECT 1, 'usage', -(1000 + g % 5000), 'usage', 'hold:' || g, "
    "'usage:hold:' || g, CAST(:now AS timestamp) - make_interval(secs => (:n - g) * :step) "
    "FROM generate_series(1, :n) g",
    "INSERT INTO ledger_entries (account_id, kind, amount, reference_type, reference_id, "
    "idempotency_key, created_at) SELECT 1, CASE WHEN g % 2 = 0 THEN 'purchase' ELSE 'grant' END, "
    "50000000000, 'bench', 'c' || g, 'credit:' || g, "
    "CAST(:now AS timestamp) - make_interval(secs => g * 86400 * 3 + 3600) "
    "FROM generate_series(1, :credits) g",
    "INSERT INTO ledger_entries (account_id, kind, amount, reference_type, reference_id, "
    "idempotency_key, created_at) SELECT 2 + g % :others, 'usage', -1000, 'usage', 'o' || g, "
    "'other:' || g, CAST(:now AS timestamp) - make_interval(secs => g * 5) "
    "FROM generate_series(1, :rows) g",
)
# SQLite keeps timestamps as text, in the format the models write.
SQLITE_SEED = (
    "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :accounts) "
    "INSERT INTO accounts (id, email, password_hash, is_admin, status, balance, held, "
    "session_version, terms_version, terms_accepted_at, age_attested_at, created_at) "
    "SELECT g, 'bench' || g || '@example.com', 'x', 0, 'active', 0, 0, 1, 'v1', :now, :now, :opened "
    "FROM s",
    "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
    "INSERT INTO ledger_entries (account_id, kind, amount, reference_type, reference_id, "
    "idempotency_key, created_at) SELECT 1, 'usage', -(1000 + g % 5000), 'usage', 'hold:' || g, "
    "'usage:hold:' || g, strftime('%Y-%m-%d %H:%M:%f000', :now, '-' || ((:n - g) * :step) || "
    "' seconds') FROM s",
    "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :credits) "
    "INSERT INTO ledger_entries (account_id, kind, amount, reference_type, reference_id, "
    "idempotency_key, created_at) SELECT 1, CASE WHEN g % 2 = 0 THEN 'purchase' ELSE 'grant' END, "
    "50000000000, 'bench', 'c' || g, 'credit:' || g, strftime('%Y-%m-%d %H:%M:%f000', :now, "
    "'-' || (g * 86400 * 3 + 3600) || ' seconds') FROM s",
    "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :rows) "
    "INSERT INTO ledger_entries (account_id, kind, amount, reference_type, reference_id, "
    "idempotency_key, created_at) SELECT 2 + g % :others, 'usage', -1000, 'usage', 'o' || g, "
    "'other:' || g, strftime('%Y-%m-%d %H:%M:%f000', :now, '-' || (g * 5) || ' seconds') FROM s",
)
SETTLE_BALANCES = (
    "UPDATE accounts SET balance = COALESCE((SELECT SUM(amount) FROM ledger_entries l "
    "WHERE l.account_id = accounts.id), 0)"
)
# Watchers hold 10 credits with a threshold of 5, every tenth of 20: each check has crossings to
# claim (the bench rolls its claims back, so the same ones each time). Accounts after them set none.
SET_THRESHOLDS = (
    "UPDATE accounts SET balance = 10000000000, low_balance_threshold = CASE WHEN id % 10 = 0 "
    "THEN 20000000000 ELSE 5000000000 END WHERE id > :first AND id <= :last_watcher"
)


def _seed(db, text, args, dialect: str) -> None:
    from app.models.types import utcnow

    now = utcnow().replace(tzinfo=None)
    params = {
        "now": now.isoformat(sep=" "),
        "opened": (now - timedelta(days=args.days + 1)).isoformat(sep=" "),
        "n": args.usage,
        "step": timedelta(days=args.days).total_seconds() / args.usage,
        "accounts": 1 + args.others + args.watchers + args.plain,
        "credits": args.days // 3,
        "others": args.others,
        "rows": args.others * 5000,
        "first": 1 + args.others,
        "last_watcher": 1 + args.others + args.watchers,
    }
    for sql in (PG_SEED if dialect == "postgresql" else SQLITE_SEED) + (
        SETTLE_BALANCES,
        SET_THRESHOLDS,
    ):
        db.session.execute(text(sql), params)
    db.session.commit()
    if dialect == "postgresql":
        # The ledger is append-only: autovacuum soon marks its pages all-visible, which lets the
        # sums run from the index alone. The bench measures that steady state.
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--usage", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--others", type=int, default=200)
    parser.add_argument("--watchers", type=int, default=20_000)
    parser.add_argument("--plain", type=int, default=100_000, help="accounts without a threshold")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    parser.add_argument(
        "--reuse", action="store_true", help="time the database a --keep run seeded, as it is"
    )
    args = parser.parse_args()

    os.environ["ONEKEY_INSTANCE_PATH"] = str(WORK / "instance-activity")
    WORK.mkdir(parents=True, exist_ok=True)
    if args.sqlite:
        path = WORK / "activity-bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            if not args.reuse:
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        from sqlalchemy import create_engine
        from sqlalchemy import text as sql_text

        admin = create_engine(
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
        )
        if not args.reuse:
            with admin.connect() as conn:
                conn.execute(
                    sql_text('DROP DATABASE IF EXISTS "onekey_bench_activity" WITH (FORCE)')
                )
                conn.execute(sql_text('CREATE DATABASE "onekey_bench_activity"'))
        url = "postgresql://postgres@127.0.0.1:5432/onekey_bench_activity"

    from flask_migrate import upgrade
    from sqlalchemy import text

    from app import create_app
    from app.extensions import db
    from app.services import activity, alerts

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "bench",
            "KEY_HASH_SECRET": "bench",
            "REDIS_URL": "redis://127.0.0.1:6379/15",
        }
    )
    with app.app_context():
        upgrade()
        dialect = db.engine.dialect.name
        started = time.perf_counter()
        if not args.reuse:
            _seed(db, text, args, dialect)
        seeded = time.perf_counter() - started
        total = db.session.scalar(text("SELECT COUNT(*) FROM ledger_entries"))
        newest = activity.activity_page(1)
        back = activity.activity_page(1, newest.rows[0].day - timedelta(days=200))
        figures = {
            "activity, newest page": lambda: activity.activity_page(1),
            "activity, 200 days back": lambda: activity.activity_page(
                1, newest.rows[0].day - timedelta(days=200)
            ),
            "activity, oldest page": lambda: activity.activity_page(
                1, newest.rows[0].day - timedelta(days=args.days - 20)
            ),
            "dashboard spend (today, month, 7 days)": lambda: activity.spend(1),
        }

        def check():
            alerts.rearm_recovered()
            alerts.claim_due()
            db.session.rollback()

        figures[
            f"low-balance check: {args.watchers:,} thresholds ({args.watchers // 10:,} due) "
            f"among {1 + args.others + args.watchers + args.plain:,} accounts"
        ] = check
        results = {name: _timed(fn, args.repeat) for name, fn in figures.items()}
        print(
            f"\n{dialect}: {total:,} ledger entries ({args.usage:,} usage debits of one account "
            f"over {args.days} days, {args.others} other accounts), seeded in {seeded:.0f} s\n"
        )
        print("| read | median ms |\n| --- | ---: |")
        for name, ms in results.items():
            print(f"| {name} | {ms:.1f} |")
        print(
            f"\nnewest page: {len(newest.rows)} lines over {len({r.day for r in newest.rows})} days; "
            f"200 days back: {len(back.rows)} lines"
        )
        if dialect == "postgresql":
            day = newest.rows[-1].day
            for label, sql in (
                (
                    "a day's usage, summed",
                    "SELECT SUM(amount), COUNT(*), MAX(created_at) FROM ledger_entries "
                    "WHERE account_id = 1 AND kind = 'usage' AND created_at >= :start "
                    "AND created_at < :start + interval '1 day'",
                ),
                (
                    "the latest usage day before a moment",
                    "SELECT MAX(created_at) FROM ledger_entries "
                    "WHERE account_id = 1 AND kind = 'usage' AND created_at < :start",
                ),
                (
                    "low-balance claim",
                    "UPDATE accounts SET low_balance_alert_sent_at = now() "
                    "WHERE low_balance_threshold IS NOT NULL AND low_balance_alert_sent_at IS NULL "
                    "AND balance < low_balance_threshold AND status = 'active'",
                ),
            ):
                plan = db.session.execute(
                    text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"),
                    {"start": activity.day_start(day)},
                ).scalars()
                print(f"\n{label}:\n```\n" + "\n".join(plan) + "\n```")
                db.session.rollback()

    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if not args.keep:
        if args.sqlite:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        else:
            with admin.connect() as conn:
                conn.execute(
                    sql_text('DROP DATABASE IF EXISTS "onekey_bench_activity" WITH (FORCE)')
                )


if __name__ == "__main__":
    main()
