"""The usage page with 1,000,000 usage records in one account: p95 of the page, its chart data and
its log's pages, and the memory of the CSV export, on SQLite and on PostgreSQL.

    .venv/bin/python bench/usage_bench.py                         # both databases, 1,000,000 rows
    .venv/bin/python bench/usage_bench.py --targets sqlite --rows 200000 --repeat 20
    .venv/bin/python bench/usage_bench.py --explain               # also each statement's plan

For each database it makes a fresh one (SQLite: bench/.work/usage-bench.sqlite3; PostgreSQL: the
database `onekey_usage_bench` at --postgres, dropped first and at the end), migrates it, creates an
account with three keys and bulk-loads the records (PostgreSQL COPY; SQLite executemany in one
transaction) spread over --days UTC days up to a few minutes ago, ids rising with time as
settlements write them, over six models of four providers, with 95% ok, 2% partial, 2% estimated and
1% upstream_error; another account gets 1% as many. It then times the first fold of the rollups
(the scheduler's job, as after migrating a database that already has records) and adds a tail of
--tail records younger than the fold delay, which every figure must add from the raw records.

Requests go through Flask's test client in this process, signed in as the account: server time
(routing, queries, templates), no network. Each URL is asked --warmup times, then --repeat times;
the table has p50, p95 and the slowest. The CSV export of every record of the range is read to its
end, sampling this process's resident memory after each chunk; a second export of a tenth of the
rows shows the peak does not grow with the rows.

Needs Redis (--redis, default redis://127.0.0.1:6379/2: the web hooks write a heartbeat) and, for
the PostgreSQL target, PostgreSQL at --postgres (user postgres, trust).
"""

# ruff: noqa: S311, S608 (seeded sample data; statements built from the module's own column names)
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# Before app.config is imported: development secrets and files go to the bench's own folder.
os.environ.setdefault("ONEKEY_INSTANCE_PATH", str(WORK / "usage-instance"))
os.environ.pop("DATABASE_URL", None)

MODELS = (
    ("gpt-4o-mini", "openai", 40),
    ("gpt-4.1", "openai", 10),
    ("claude-sonnet-4-5", "anthropic", 20),
    ("claude-haiku-4-5", "anthropic", 15),
    ("gemini-2.5-flash", "google", 10),
    ("grok-4", "xai", 5),
)
STATUSES = (("ok", 95), ("partial", 2), ("estimated", 2), ("upstream_error", 1))
COLUMNS = (
    "account_id",
    "api_key_id",
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
    "created_at",
)
PRICES = json.dumps(
    {"tier": 0, "input": 165_000_000, "cache_read": 82_500_000, "output": 660_000_000}
)
SEED_CHUNK = 50_000


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def records(account_id: int, key_ids: list[int], count: int, start: datetime, end: datetime, rng):
    """`count` record rows from start to end, in time order (ids rise with time)."""
    models = [m for m, _, w in MODELS for _ in range(w)]
    providers = {m: p for m, p, _ in MODELS}
    statuses = [s for s, w in STATUSES for _ in range(w)]
    span = (end - start).total_seconds()
    for n in range(count):
        model = models[rng.randrange(len(models))]
        status = statuses[rng.randrange(len(statuses))]
        input_tokens = rng.randrange(50, 20_000)
        output_tokens = rng.randrange(1, 4_000) if status != "upstream_error" else 0
        cached = rng.randrange(0, input_tokens) if rng.random() < 0.3 else 0
        cost = (
            input_tokens * 165_000_000 + cached * 82_500_000 + output_tokens * 660_000_000
        ) // 10**6
        list_cost = (
            input_tokens * 150_000_000 + cached * 75_000_000 + output_tokens * 600_000_000
        ) // 10**6
        yield (
            account_id,
            key_ids[n % len(key_ids)],
            f"req-bench-{n:012x}",
            providers[model],
            model,
            "chat.completions",
            status,
            n % 3 == 0,
            input_tokens,
            cached,
            0,
            0,
            output_tokens,
            output_tokens // 10 if model.startswith("grok") else 0,
            cost,
            list_cost,
            PRICES,
            rng.randrange(200, 9_000),
            rng.randrange(100, 2_000) if n % 3 == 0 else None,
            start + timedelta(seconds=span * n / count),
        )


def bulk_insert(engine, rows) -> None:
    """Load rows fast: COPY on PostgreSQL, one executemany transaction per chunk on SQLite."""
    columns = ", ".join(COLUMNS)
    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        if engine.dialect.name == "postgresql":
            with (
                driver.cursor() as cursor,
                cursor.copy(f"COPY usage_records ({columns}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row((*row[:-1], row[-1].replace(tzinfo=None)))
            driver.commit()
            return
        sql = f"INSERT INTO usage_records ({columns}) VALUES ({', '.join('?' * len(COLUMNS))})"
        cursor = driver.cursor()
        chunk = []
        for row in rows:
            stamp = row[-1].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            chunk.append((*row[:-1], stamp))
            if len(chunk) == SEED_CHUNK:
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


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return {"p50": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


def time_get(client, url: str, headers: dict | None, warmup: int, repeat: int) -> dict:
    for _ in range(warmup):
        response = client.get(url, headers=headers or {})
        assert response.status_code == 200, (url, response.status_code, response.get_data()[:500])
    samples, cpu = [], []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        response = client.get(url, headers=headers or {})
        response.get_data()
        samples.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
        assert response.status_code == 200, url
    return {**percentiles(samples), "cpu_p50": statistics.median(cpu)}


def export(client, url: str) -> dict:
    """Read a CSV export to its end; rows, seconds, and this process's RSS growth at its peak."""
    before = rss_kib()
    peak = before
    rows = 0
    size = 0
    started = time.perf_counter()
    response = client.get(url)
    assert response.status_code == 200, url
    for chunk in response.response:
        rows += chunk.count(b"\n")
        size += len(chunk)
        peak = max(peak, rss_kib())
    response.close()
    return {
        "rows": rows - 1,
        "seconds": time.perf_counter() - started,
        "mb": size / 1e6,
        "rss_growth_mib": (peak - before) / 1024,
        "rss_mib": peak / 1024,
    }


def explain(app, client, url: str) -> list[str]:
    """Each statement one GET of `url` runs, with its plan (and its time, on PostgreSQL)."""
    from sqlalchemy import event

    from app.extensions import db

    captured = []
    with app.app_context():
        engine = db.engine

    def capture(conn, cursor, statement, parameters, context, executemany):
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        client.get(url)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    lines = [f"#### {url}"]
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        for statement, parameters in captured:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            lines.append("```sql\n" + " ".join(statement.split())[:600] + "\n```")
            cursor = driver.cursor()
            if engine.dialect.name == "postgresql":
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS OFF) " + statement, parameters)
                plan = [row[0] for row in cursor.fetchall()]
            else:
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                plan = [row[-1] for row in cursor.fetchall()]
            lines.append("```\n" + "\n".join(plan) + "\n```")
    return lines


def run_target(name: str, args) -> dict:
    from flask_migrate import upgrade
    from sqlalchemy import create_engine, func, select, text
    from sqlalchemy.engine import make_url

    from app import create_app
    from app.extensions import db
    from app.models import Account, UsageRecord
    from app.services.accounts import register
    from app.services.keys import create_key
    from app.services.usage_rollups import watermark
    from app.tasks.usage import fold_usage_job
    from tests.helpers import TEST_PASSWORD, Browser

    rng = random.Random(20261205)
    drop = None
    if name == "sqlite":
        WORK.mkdir(parents=True, exist_ok=True)
        path = WORK / "usage-bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        base = make_url(args.postgres).set(drivername="postgresql+psycopg")
        admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "onekey_usage_bench" WITH (FORCE)'))
            conn.execute(text('CREATE DATABASE "onekey_usage_bench"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text('DROP DATABASE IF EXISTS "onekey_usage_bench" WITH (FORCE)'))
            admin.dispose()

        url = base.set(database="onekey_usage_bench").render_as_string(hide_password=False)
    result: dict = {"target": name, "rows": args.rows}
    try:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": url,
                "REDIS_URL": args.redis,
                "SECRET_KEY": "usage-bench",
                "KEY_HASH_SECRET": "usage-bench",
                "MAIL_SMTP_URL": "",
            }
        )
        with app.app_context():
            upgrade()
            account = register(
                email="bench@example.com",
                password=TEST_PASSWORD,
                age_confirmed=True,
                terms_accepted=True,
            )
            other = register(
                email="other@example.com",
                password=TEST_PASSWORD,
                age_confirmed=True,
                terms_accepted=True,
            )
            db.session.commit()
            keys = [create_key(account, name=f"key {n}")[0].id for n in range(3)]
            other_key = create_key(db.session.get(Account, other.id), name="other")[0].id
            db.session.commit()
            account_id, other_id = account.id, other.id
            engine = db.engine
        now = datetime.now(UTC)
        start, end = now - timedelta(days=args.days - 1), now - timedelta(minutes=5)
        start = start.replace(hour=0, minute=0, second=0, microsecond=0)
        started = time.perf_counter()
        bulk_insert(engine, records(account_id, keys, args.rows, start, end, rng))
        bulk_insert(engine, records(other_id, [other_key], args.rows // 100, start, end, rng))
        result["seed_s"] = time.perf_counter() - started
        if name == "postgresql":
            # As autovacuum would soon after a load this size; SQLite gets no ANALYZE, as in use.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE usage_records"))
        print(
            f"[{name}] seeded {args.rows:,} + {args.rows // 100:,} rows in {result['seed_s']:.1f} s",
            flush=True,
        )

        client = app.test_client()
        browser = Browser(client)
        assert browser.login("bench@example.com").status_code == 302
        today = now.date()
        whole = f"range=custom&from={start.date().isoformat()}&to={today.isoformat()}"

        # Before any fold: every figure from the raw records (what the rollups save).
        raw = {}
        for label, url in (("page, 30 days", "/usage"), ("chart, 30 days", "/usage/chart.json")):
            raw[label] = time_get(client, url, None, 1, max(3, args.repeat // 10))
        result["unfolded"] = raw
        print(f"[{name}] without rollups: {raw}", flush=True)

        started = time.perf_counter()
        with app.app_context():
            report = fold_usage_job()
        result["fold_s"] = time.perf_counter() - started
        result["folded"] = report["folded"]
        print(
            f"[{name}] first fold: {report['folded']:,} records in {result['fold_s']:.1f} s",
            flush=True,
        )

        # A tail above the watermark: what settled in the last two minutes.
        tail_start = datetime.now(UTC) - timedelta(seconds=110)
        bulk_insert(
            engine, records(account_id, keys, args.tail, tail_start, datetime.now(UTC), rng)
        )
        with app.app_context():
            above = db.session.scalar(select(func.count()).where(UsageRecord.id > watermark()))
            middle_id = db.session.scalar(
                select(UsageRecord.id)
                .where(UsageRecord.account_id == account_id)
                .where(UsageRecord.created_at < now - timedelta(days=15))
                .order_by(UsageRecord.created_at.desc(), UsageRecord.id.desc())
                .limit(1)
            )
            a_record = db.session.scalar(
                select(func.max(UsageRecord.id)).where(UsageRecord.account_id == account_id)
            )
        result["tail"] = above
        print(f"[{name}] {above:,} records above the watermark", flush=True)

        urls = [
            ("page, last 30 days (default)", "/usage", None),
            ("page, last 7 days", "/usage?range=7d", None),
            ("page, today", "/usage?range=today", None),
            (f"page, all {args.days} days", f"/usage?{whole}", None),
            ("page, one key", f"/usage?key={keys[1]}", None),
            ("page, one model (15%)", "/usage?model=claude-haiku-4-5", None),
            ("page, one provider", "/usage?provider=anthropic", None),
            ("page, status estimated (2%)", "/usage?status=estimated", None),
            ("page, model + status (0.3%)", "/usage?model=claude-haiku-4-5&status=partial", None),
            ("page, model + status (0.05%)", "/usage?model=grok-4&status=upstream_error", None),
            ("page, a model never used", "/usage?model=gpt-5", None),
            (
                "log page 15 days deep (HTMX)",
                f"/usage?before={middle_id}",
                {"HX-Request": "true", "HX-Target": "usage-table"},
            ),
            (
                "filter change (HTMX view)",
                "/usage?range=7d&model=gpt-4o-mini",
                {"HX-Request": "true", "HX-Target": "usage-view"},
            ),
            ("chart, last 30 days", "/usage/chart.json", None),
            ("chart, 30 days by key", "/usage/chart.json?stack=key", None),
            (f"chart, all {args.days} days", f"/usage/chart.json?{whole}", None),
            ("chart, one model, by key", "/usage/chart.json?model=gpt-4.1&stack=key", None),
            ("request detail", f"/usage/{a_record}", None),
        ]
        timings = {}
        for label, url, headers in urls:
            timings[label] = time_get(client, url, headers, args.warmup, args.repeat)
            print(f"[{name}] {label}: p95 {timings[label]['p95']:.1f} ms", flush=True)
        result["timings"] = timings

        if args.explain:
            result["explain"] = []
            for _, url, _ in urls[:1] + urls[7:10] + urls[11:14]:
                result["explain"] += explain(app, client, url)

        tenth = (today - timedelta(days=max(0, args.days // 10 - 1))).isoformat()
        result["export_small"] = export(client, f"/usage.csv?range=custom&from={tenth}&to={today}")
        result["export"] = export(client, f"/usage.csv?{whole}")
        print(f"[{name}] export: {result['export']}", flush=True)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    finally:
        if drop is not None:
            drop()
    return result


def report(results: list[dict], args) -> str:
    lines = []
    targets = [r["target"] for r in results]
    lines.append(
        f"{args.rows:,} usage records in one account over {args.days} UTC days (+1% in another "
        f"account), {results[0].get('tail', 0):,} of them above the watermark; {args.repeat} "
        "requests per row after a warm-up, Flask test client in-process (server time only). "
        "CPU ms: the median CPU time of this process per request (the web side, SQLite included; "
        "PostgreSQL's own work is not in it)."
    )
    lines.append("")
    header = (
        "| request | "
        + " | ".join(f"{t} p50 / **p95** / max ms | {t} CPU ms" for t in targets)
        + " |"
    )
    lines += [header, "| --- |" + " ---: | ---: |" * len(targets)]
    for label in results[0]["timings"]:
        cells = []
        for r in results:
            t = r["timings"][label]
            cells.append(f"{t['p50']:.1f} / **{t['p95']:.1f}** / {t['max']:.1f}")
            cells.append(f"{t['cpu_p50']:.1f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "| without rollups (watermark 0, every record raw) | " + " | ".join(targets) + " |"
    )
    lines.append("| --- |" + " ---: |" * len(targets))
    for label in results[0]["unfolded"]:
        cells = [f"p95 {r['unfolded'][label]['p95']:.0f} ms" for r in results]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| setup and export | " + " | ".join(targets) + " |")
    lines.append("| --- |" + " ---: |" * len(targets))
    rows = [
        ("bulk load", lambda r: f"{r['seed_s']:.0f} s"),
        ("first fold of the rollups", lambda r: f"{r['folded']:,} records in {r['fold_s']:.1f} s"),
        (
            "CSV export, all records",
            lambda r: (
                f"{r['export']['rows']:,} rows, {r['export']['mb']:.0f} MB in "
                f"{r['export']['seconds']:.0f} s ({r['export']['rows'] / r['export']['seconds']:,.0f} rows/s)"
            ),
        ),
        (
            "its peak RSS growth",
            lambda r: (
                f"{r['export']['rss_growth_mib']:.1f} MiB (RSS {r['export']['rss_mib']:.0f} MiB)"
            ),
        ),
        (
            "CSV export, a tenth of the days",
            lambda r: (
                f"{r['export_small']['rows']:,} rows, RSS growth "
                f"{r['export_small']['rss_growth_mib']:.1f} MiB"
            ),
        ),
    ]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in results) + " |")
    for r in results:
        if r.get("explain"):
            lines.append("")
            lines.append(f"### Plans, {r['target']}")
            lines += r["explain"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--targets", default="sqlite,postgresql")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--tail", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/2")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = [run_target(name.strip(), args) for name in args.targets.split(",")]
    text = report(results, args)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
