"""The admin money overview (`/admin`) with 1,000,000 usage records and 1,000,000 ledger entries
over many accounts: p50/p95 of the page and its chart data per range, on SQLite and PostgreSQL.

    .venv/bin/python bench/overview_bench.py                        # both databases, 1,000,000 rows
    .venv/bin/python bench/overview_bench.py --targets sqlite --rows 100000 --repeat 10
    .venv/bin/python bench/overview_bench.py --explain              # also each statement's plan

It reuses bench/usage_bench.py's records, bulk load, timing and plans: a fresh database, migrated,
the bundled catalogue synced (the list prices), --accounts customers with a key each sharing the
usage records (ids rising with time) and the ledger entries (90% usage, 5% purchases, 2% grants,
1.5% adjustments, 1% refunds, 0.5% disputes) over --days UTC days; the first fold of the rollups,
then --tail records above the watermark. Requests go through Flask's test client in this process,
signed in as an admin past the second factor.
"""

# ruff: noqa: S311, S608 (seeded sample data; statements built from the module's own column names)
from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import usage_bench  # noqa: E402  (sets the bench's instance folder first)
from bench.usage_bench import bulk_insert, explain, records, time_get  # noqa: E402

LEDGER_COLUMNS = ("account_id", "kind", "amount", "idempotency_key", "created_at")
KINDS = (
    ("usage", 900, -1),
    ("purchase", 50, 1),
    ("grant", 20, 1),
    ("adjustment", 15, 1),
    ("refund", 10, -1),
    ("dispute", 5, -1),
)
DB_NAME = "onekey_overview_bench"


def ledger_rows(account_ids: list[int], count: int, start: datetime, end: datetime, rng):
    kinds = [(k, sign) for k, w, sign in KINDS for _ in range(w)]
    span = (end - start).total_seconds()
    for n in range(count):
        kind, sign = kinds[rng.randrange(len(kinds))]
        amount = rng.randrange(1, 50_000_000_000 if kind != "usage" else 500_000_000)
        yield (
            account_ids[n % len(account_ids)],
            kind,
            sign * amount,
            f"bench-{n:012x}",
            start + timedelta(seconds=span * n / count),
        )


def bulk_ledger(engine, rows) -> None:
    columns = ", ".join(LEDGER_COLUMNS)
    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        if engine.dialect.name == "postgresql":
            with (
                driver.cursor() as cursor,
                cursor.copy(f"COPY ledger_entries ({columns}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row((*row[:-1], row[-1].replace(tzinfo=None)))
            driver.commit()
            return
        sql = f"INSERT INTO ledger_entries ({columns}) VALUES (?, ?, ?, ?, ?)"
        cursor = driver.cursor()
        chunk = []
        for row in rows:
            chunk.append((*row[:-1], row[-1].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")))
            if len(chunk) == usage_bench.SEED_CHUNK:
                cursor.execute("BEGIN IMMEDIATE")
                cursor.executemany(sql, chunk)
                cursor.execute("COMMIT")
                chunk = []
        if chunk:
            cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(sql, chunk)
            cursor.execute("COMMIT")
    finally:
        pooled.close()


def run_target(name: str, args) -> dict:
    from flask_migrate import upgrade
    from sqlalchemy import create_engine, func, select, text
    from sqlalchemy.engine import make_url

    from app import create_app
    from app.extensions import db
    from app.models import Account, UsageRecord
    from app.services.accounts import register
    from app.services.catalog import sync_catalog
    from app.services.keys import create_key
    from app.services.usage_rollups import watermark
    from app.tasks.usage import fold_usage_job
    from tests.helpers import TEST_PASSWORD, Browser, enrol_second_factor

    rng = random.Random(20261204)
    drop = None
    if name == "sqlite":
        usage_bench.WORK.mkdir(parents=True, exist_ok=True)
        path = usage_bench.WORK / "overview-bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        base = make_url(args.postgres).set(drivername="postgresql+psycopg")
        admin_engine = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))

        def drop() -> None:
            with admin_engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
            admin_engine.dispose()

        url = base.set(database=DB_NAME).render_as_string(hide_password=False)
    result: dict = {"target": name}
    try:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": url,
                "REDIS_URL": args.redis,
                "SECRET_KEY": "overview-bench",
                "KEY_HASH_SECRET": "overview-bench",
                "MAIL_SMTP_URL": "",
            }
        )
        with app.app_context():
            upgrade()
            sync_catalog(app.config["MARGIN_BPS"])
            boss = register(
                email="boss@example.com",
                password=TEST_PASSWORD,
                age_confirmed=True,
                terms_accepted=True,
                is_admin=True,
            )
            enrol_second_factor(boss)
            customers = []
            for n in range(args.accounts):
                account = register(
                    email=f"c{n}@example.com",
                    password=TEST_PASSWORD,
                    age_confirmed=True,
                    terms_accepted=True,
                )
                customers.append(account)
            db.session.commit()
            pairs = [(a.id, create_key(a, name="k")[0].id) for a in customers]
            # A few below zero and flagged, as the page lists them.
            for account in customers[:5]:
                account.balance_nanocredits = -1_000_000
                account.flagged_reason = "negative balance"
            db.session.commit()
            engine = db.engine
        now = datetime.now(UTC)
        start = (now - timedelta(days=args.days - 1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        end = now - timedelta(minutes=5)
        started = time.perf_counter()
        share = args.rows // len(pairs)
        for account_id, key_id in pairs:
            bulk_insert(engine, records(account_id, [key_id], share, start, end, rng))
        bulk_ledger(engine, ledger_rows([a for a, _ in pairs], args.rows, start, end, rng))
        result["seed_s"] = time.perf_counter() - started
        if name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE usage_records"))
                conn.execute(text("VACUUM ANALYZE ledger_entries"))
        print(f"[{name}] seeded in {result['seed_s']:.0f} s", flush=True)

        started = time.perf_counter()
        with app.app_context():
            report = fold_usage_job()
        result["fold_s"] = time.perf_counter() - started
        result["folded"] = report["folded"]
        tail_start = datetime.now(UTC) - timedelta(seconds=110)
        bulk_insert(engine, records(pairs[0][0], [pairs[0][1]], args.tail, tail_start, now, rng))
        with app.app_context():
            result["usage_rows"] = db.session.scalar(select(func.count(UsageRecord.id)))
            result["tail"] = db.session.scalar(
                select(func.count()).where(UsageRecord.id > watermark())
            )
            result["accounts"] = db.session.scalar(select(func.count(Account.id)))
        print(f"[{name}] fold {result['fold_s']:.1f} s; tail {result['tail']:,}", flush=True)

        browser = Browser(app.test_client())
        browser.login("boss@example.com")
        client = browser.client
        whole = f"range=custom&from={start.date().isoformat()}&to={now.date().isoformat()}"
        urls = [
            ("overview, today", "/admin/?range=today"),
            ("overview, 7 days", "/admin/?range=7d"),
            ("overview, 30 days (default)", "/admin/"),
            (f"overview, all {args.days} days", f"/admin/?{whole}"),
            ("chart, 30 days", "/admin/overview/chart.json?range=30d"),
            (f"chart, all {args.days} days", f"/admin/overview/chart.json?{whole}"),
        ]
        timings = {}
        for label, path in urls:
            timings[label] = time_get(client, path, None, args.warmup, args.repeat)
            print(f"[{name}] {label}: p95 {timings[label]['p95']:.1f} ms", flush=True)
        result["timings"] = timings
        if args.explain:
            result["explain"] = explain(app, client, "/admin/")
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    finally:
        if drop is not None:
            drop()
    return result


def report(results: list[dict], args) -> str:
    first = results[0]
    lines = [
        f"{first['usage_rows']:,} usage records and {args.rows:,} ledger entries over "
        f"{first['accounts']:,} accounts and {args.days} UTC days, {first['tail']:,} records above "
        f"the watermark; {args.repeat} requests per row after {args.warmup} warm-up, Flask test "
        "client in-process (server time only).",
        "",
        "| request | "
        + " | ".join(f"{r['target']} p50 / **p95** / max ms | CPU ms" for r in results)
        + " |",
        "| --- |" + " ---: | ---: |" * len(results),
    ]
    for label in first["timings"]:
        cells = []
        for r in results:
            t = r["timings"][label]
            cells += [
                f"{t['p50']:.1f} / **{t['p95']:.1f}** / {t['max']:.1f}",
                f"{t['cpu_p50']:.1f}",
            ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for r in results:
        lines.append(
            f"- {r['target']}: bulk load {r['seed_s']:.0f} s, first fold {r['folded']:,} records "
            f"in {r['fold_s']:.1f} s"
        )
    for r in results:
        if r.get("explain"):
            lines += ["", f"### Plans, {r['target']}", *r["explain"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--targets", default="sqlite,postgresql")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--tail", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = [run_target(name.strip(), args) for name in args.targets.split(",")]
    text = report(results, args)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
