"""OneKey chaos soak: mixed load with upstream faults, client disconnects, killed processes and a
Stripe webhook storm, then an exact audit of the money.

    /work/main/.venv/bin/python bench/chaos.py             # 10,000 requests
    /work/main/.venv/bin/python bench/chaos.py --quick     # 1,000 requests
    /work/main/.venv/bin/python bench/chaos.py --help

Starts a fresh PostgreSQL database (127.0.0.1:5432, user postgres; dropped at the end), Redis db 14
(flushed before and after), the fake upstreams of tests/fakes (in this process), localstripe,
OneKey under gunicorn (2 gevent workers, 1 s heartbeat, 3 s TTL, 3 s upstream read timeout) and one
RQ worker (`python worker.py`). Sends N requests over every route and provider from a pool of
threads, each carrying fault directives for the fakes; mid-run buys credits through localstripe,
kills the RQ worker (-9, restarted) and one gunicorn worker (-9, respawned by the master), and
re-posts every Stripe event 5 times, signed, shuffled. Afterwards runs the hold sweeps, drains the
queues, compares the ledger's usage debits with the fakes' own usage reports priced independently
(tests/proxy/exact.py), counts open holds and purchase credits, runs `flask ledger check`, writes
bench/results-<date>-chaos.md and prints it. Everything it started is stopped, also on Ctrl-C.
"""

# ruff: noqa: S603, S311 (runs local programs; random only shapes the load)

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
sys.path.insert(0, str(ROOT))

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/14"
HEARTBEAT_TTL = 3
UPSTREAM_KEYS = {
    "openai": "sk-upstream-openai",
    "xai": "xai-upstream",
    "anthropic": "sk-ant-upstream",
    "gemini": "gemini-upstream",
}
TAG = re.compile(r"chaosreq(\d+)x")
MAX_TOKENS = 200


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the processes ---------------------------------------------------------------------------


class Processes:
    """Every child this run started, each in its own session, stopped in reverse order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen, object]] = []

    def start(self, name: str, argv: list[str], env: dict, log_path: Path) -> subprocess.Popen:
        handle = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.items.append((name, process, handle))
        return process

    def stop(self, process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 40):
        if process.poll() is not None:
            # the leader is gone (killed -9): what it forked may live on in its group (the RQ
            # worker's scheduler process does)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def stop_all(self) -> None:
        for _name, process, handle in reversed(self.items):
            try:
                self.stop(process)
            except Exception:
                traceback.print_exc()
            handle.close()
        self.items.clear()


def wait_http(url: str, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start")


# --- the load --------------------------------------------------------------------------------

# (route kind, model, provider as the fakes name it)
TARGETS = [
    ("chat", "gpt-4o-mini", "openai"),
    ("chat", "claude-haiku-4-5", "anthropic"),
    ("chat", "gemini-2.5-flash", "gemini"),
    ("chat", "grok-3-mini", "xai"),
    ("responses", "gpt-4o-mini", "openai"),
    ("responses", "grok-3-mini", "xai"),
    ("messages", "claude-haiku-4-5", "anthropic"),
    ("messages", "claude-sonnet-4-5", "anthropic"),
    ("gemini", "gemini-2.5-flash", "gemini"),
    ("gemini", "gemini-2.5-pro", "gemini"),
]


@dataclass
class Plan:
    index: int
    kind: str
    model: str
    provider: str
    stream: bool
    fault: str
    directives: str
    disconnect_after: int | None = None  # client closes after this many data frames


@dataclass
class Result:
    plan: Plan
    outcome: str
    status: int | None = None
    request_id: str | None = None
    frames: int = 0
    seconds: float = 0.0


def make_plan(rng: random.Random, index: int) -> Plan:
    kind, model, provider = rng.choice(TARGETS)
    stream = rng.random() < 0.6
    chunks = rng.randint(1, 8)
    extra = []
    if rng.random() < 0.3:
        extra.append(f"cached={rng.randint(1, 50)}")
    if rng.random() < 0.3:
        extra.append(f"reasoning={rng.randint(1, 20)}")
    if provider == "anthropic" and rng.random() < 0.2:
        extra.append(f"cache_write={rng.randint(1, 30)}")
        if rng.random() < 0.5:
            extra.append(f"cache_write_1h={rng.randint(1, 30)}")
    if provider == "gemini" and rng.random() < 0.2:
        extra.append(f"tooluse={rng.randint(1, 9)}")
    faults = [
        ("none", 40),
        ("error", 10),
        ("drop", 10),
        ("midstream_error", 6),
        ("nousage", 8),
        ("slow", 8),
        ("disconnect", 14),
        ("hang", 1),
        ("bad_model", 1),
        ("unaffordable", 2),
    ]
    fault = rng.choices([f for f, _ in faults], [w for _, w in faults])[0]
    disconnect_after = None
    if fault == "error":
        extra.append(f"error={rng.choice([400, 404, 429, 500, 502, 503])}")
    elif fault == "drop":
        drop = rng.randint(0, 4)
        chunks = max(chunks, drop + 1)
        extra.append(f"drop={drop}")
    elif fault == "midstream_error":
        stream = True
        chunks = max(chunks, 3)
        extra.append("midstream_error")
    elif fault == "nousage":
        extra.append("nousage")
    elif fault == "slow":
        extra.append(f"slow={rng.randint(5, 40)}")
    elif fault == "disconnect":
        stream = True
        chunks = rng.randint(8, 14)
        extra.append("slow=60")
        if provider == "gemini" and rng.random() < 0.5:
            extra.append("long_after_disconnect")
        disconnect_after = rng.randint(1, 4)
    elif fault == "hang":
        extra.append("hang")
    directives = f"[[fake:chunks={chunks} {' '.join(extra)}]]".replace(" ]]", "]]")
    return Plan(index, kind, model, provider, stream, fault, directives, disconnect_after)


def request_of(plan: Plan, base: str, key: str) -> tuple[str, dict, dict]:
    """(url, headers, JSON body) for a plan, in its route's own dialect."""
    text = f"chaosreq{plan.index}x tell me something {plan.directives}"
    model = "no-such-model-7" if plan.fault == "bad_model" else plan.model
    limit = 10**9 if plan.fault == "unaffordable" else MAX_TOKENS
    if plan.kind == "chat":
        body = {
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": limit,
        }
        if plan.stream:
            body["stream"] = True
            if plan.index % 5:  # now and then a stream without the usage chunk
                body["stream_options"] = {"include_usage": True}
        return f"{base}/v1/chat/completions", {"Authorization": f"Bearer {key}"}, body
    if plan.kind == "responses":
        body = {"model": model, "input": text, "max_output_tokens": limit}
        if plan.stream:
            body["stream"] = True
        return f"{base}/v1/responses", {"Authorization": f"Bearer {key}"}, body
    if plan.kind == "messages":
        body = {
            "model": model,
            "max_tokens": limit,
            "messages": [{"role": "user", "content": text}],
        }
        if plan.stream:
            body["stream"] = True
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        return f"{base}/anthropic/v1/messages", headers, body
    body = {
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generationConfig": {"maxOutputTokens": limit},
    }
    method = "streamGenerateContent?alt=sse" if plan.stream else "generateContent"
    return (
        f"{base}/gemini/v1beta/models/{model}:{method}",
        {"x-goog-api-key": key},
        body,
    )


_local = threading.local()


def send(plan: Plan, base: str, key: str) -> Result:
    import requests

    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    url, headers, body = request_of(plan, base, key)
    started = time.monotonic()
    result = Result(plan, "?")
    try:
        with session.post(url, headers=headers, json=body, stream=True, timeout=(5, 30)) as resp:
            result.status = resp.status_code
            result.request_id = resp.headers.get("x-request-id")
            if plan.stream and resp.status_code == 200:
                buffer = b""
                for piece in resp.iter_content(chunk_size=None):
                    buffer += piece
                    result.frames = buffer.count(b"data:")
                    if plan.disconnect_after is not None and result.frames >= plan.disconnect_after:
                        result.outcome = "client disconnect"
                        break
                else:
                    result.outcome = "stream 200"
                    if b'"error"' in buffer or b"event: error" in buffer:
                        result.outcome = "stream 200, in-stream error"
                if result.outcome == "client disconnect":
                    # leaving the with-block closes the half-read connection; drop the pool too
                    _local.session = None
            else:
                resp.content  # noqa: B018 (read the whole answer)
                result.outcome = f"{'stream' if plan.stream else 'plain'} {resp.status_code}"
    except requests.RequestException as exc:
        result.outcome = f"client error: {type(exc).__name__}"
        session.close()
        _local.session = None
    result.seconds = time.monotonic() - started
    return result


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    procs: Processes = field(default_factory=Processes)
    events: list[str] = field(default_factory=list)
    killed_tokens: set[str] = field(default_factory=set)
    db_name: str = ""
    drop_db: object = None
    fakes: object = None
    emulator: object = None

    def note(self, message: str) -> None:
        log(message)
        self.events.append(f"{time.strftime('%H:%M:%S')} {message}")


def create_database(run: Run) -> str:
    from sqlalchemy import create_engine, text

    name = f"onekey_chaos_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    run.db_name, run.drop_db = name, drop
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def gunicorn_children(master_pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(master_pid).children()]


def token_of_pid(redis, pid: int) -> str | None:
    for key in redis.scan_iter("onekey:alive:*"):
        if redis.get(key) == str(pid).encode():
            return key.decode().rsplit(":", 1)[1]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 requests")
    parser.add_argument("--threads", type=int, default=12)
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--purchases", type=int, default=3)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--max-minutes", type=float, default=30, help="stop sending after this")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.requests = min(args.requests, 1000)
    WORK.mkdir(exist_ok=True)
    run = Run(args)
    instance = Path(tempfile.mkdtemp(prefix="onekey-chaos-"))
    started = time.monotonic()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    redis_client = None
    try:
        import redis as redis_lib

        redis_client = redis_lib.Redis.from_url(REDIS_URL)
        redis_client.flushdb()
        database_url = create_database(run)
        log(f"database {run.db_name}, Redis db 14")
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "SECRET_KEY": "chaos-secret-key",
            "KEY_HASH_SECRET": "chaos-key-hash-secret",
            "ONEKEY_INSTANCE_PATH": str(instance / "instance"),
            "MAIL_SMTP_URL": "",
            # the sweeps run in this process: they must read the server's TTL
            "HEARTBEAT_INTERVAL_SECONDS": "1",
            "HEARTBEAT_TTL_SECONDS": str(HEARTBEAT_TTL),
        }
        os.environ.update(env)

        from tests.fakes.upstreams import FakeUpstreams
        from tests.stripe_emulator import (
            PUBLISHABLE_KEY,
            SECRET_KEY,
            StripeEmulator,
            webhook_secret,
        )

        run.fakes = fakes = FakeUpstreams(keys=UPSTREAM_KEYS).start()
        run.emulator = emulator = StripeEmulator(WORK / "chaos-localstripe.log")
        emulator.start()
        emulator.reset()
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        emulator.register_webhook(f"{base}/webhooks/stripe")
        stripe_env = {
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
            "STRIPE_WEBHOOK_SECRET": webhook_secret(),
            "STRIPE_API_BASE": emulator.url,
            "STRIPE_JS_URL": emulator.js_url,
        }
        os.environ.update(stripe_env)

        from app import create_app
        from app.extensions import db
        from app.services.catalog import sync_catalog

        app = create_app({"TESTING": True, "SERVER_NAME": None, "MAIL_SMTP_URL": ""})
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            sync_catalog(app.config["MARGIN_BPS"])
            db.session.commit()
        log("migrated, catalogue synced")

        server_env = {
            **os.environ,
            **env,
            **stripe_env,
            **{k: v for k, v in fakes.env().items()},
            "PORT": str(port),
            "WEB_CONCURRENCY": "2",
            "WEB_WORKER_CLASS": "gevent",
            "HEARTBEAT_INTERVAL_SECONDS": "1",
            "HEARTBEAT_TTL_SECONDS": str(HEARTBEAT_TTL),
            "UPSTREAM_CONNECT_TIMEOUT": "2",
            "UPSTREAM_READ_TIMEOUT": "3",
            "SSE_KEEPALIVE_SECONDS": "1",
            "RATE_LIMIT_RPM": "1000000",
            "MAX_CONCURRENT_PER_ACCOUNT": "1000",
        }
        gunicorn = run.procs.start(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            server_env,
            WORK / "chaos-gunicorn.log",
        )
        wait_http(f"{base}/healthz", gunicorn, "gunicorn")
        worker_cmd = [sys.executable, "worker.py"]
        worker = run.procs.start("rq worker", worker_cmd, server_env, WORK / "chaos-worker.log")
        log(f"gunicorn {gunicorn.pid} on {base}, RQ worker {worker.pid}")

        from tests.proxy.conftest import make_funded_key

        keys = [
            make_funded_key(app, "100000", email=f"chaos{n}@example.com")[0]
            for n in range(args.accounts)
        ]
        make_funded_key(app, "0", email="buyer@example.com")

        # -- load, with the mid-run events at fixed points of progress
        rng = random.Random(args.seed)
        plans = [make_plan(rng, i) for i in range(args.requests)]
        results: list[Result] = []
        done = [0]
        lock = threading.Lock()
        stop_sending = threading.Event()
        deadline = time.monotonic() + args.max_minutes * 60

        def one(plan: Plan) -> Result | None:
            if stop_sending.is_set() or time.monotonic() > deadline:
                return None
            result = send(plan, base, keys[plan.index % len(keys)])
            with lock:
                results.append(result)
                done[0] += 1
                if done[0] % 500 == 0:
                    log(f"{done[0]} of {len(plans)} requests")
            return result

        def at(fraction: float) -> None:
            while done[0] < fraction * len(plans) and not load_over.is_set():
                time.sleep(0.2)

        load_over = threading.Event()
        chaos_state: dict = {"purchases": [], "storm": collections.Counter(), "errors": []}

        def chaos() -> None:
            nonlocal worker
            try:
                at(0.15)
                chaos_state["purchases"] = buy_credits(app, emulator, args.purchases, run)
                at(0.35)
                run.note(f"kill -9 RQ worker {worker.pid}")
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
                time.sleep(1)
                worker = run.procs.start(
                    "rq worker", worker_cmd, server_env, WORK / "chaos-worker.log"
                )
                run.note(f"RQ worker restarted as {worker.pid}")
                at(0.5)
                victim = gunicorn_children(gunicorn.pid)[0]
                token = token_of_pid(redis_client, victim)
                run.killed_tokens.add(token or "?")
                run.note(f"kill -9 gunicorn worker {victim} (heartbeat token {token})")
                os.kill(victim, signal.SIGKILL)
                time.sleep(3)
                run.note(f"gunicorn workers now {gunicorn_children(gunicorn.pid)}")
                at(0.65)
                chaos_state["storm"] = webhook_storm(emulator, base, run)
            except Exception as exc:
                chaos_state["errors"].append(f"{type(exc).__name__}: {exc}")
                traceback.print_exc()

        controller = threading.Thread(target=chaos, name="chaos", daemon=True)
        controller.start()
        load_started = time.monotonic()
        try:
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(one, plans))
        except KeyboardInterrupt:
            stop_sending.set()
            raise
        load_seconds = time.monotonic() - load_started
        load_over.set()
        controller.join(timeout=120)
        log(f"load done: {len(results)} requests in {load_seconds:.0f} s")

        # -- let everything finish, sweep, drain
        for call in list(fakes.calls):
            call.wait_finished(40)
        settle_wait(app, run, timeout=30)
        from app.tasks.maintenance import expire_holds_job, release_orphaned_holds_job

        released = []
        with app.app_context():
            time.sleep(HEARTBEAT_TTL + 1)
            released.append(release_orphaned_holds_job())
            time.sleep(HEARTBEAT_TTL + 1)
            released.append(release_orphaned_holds_job())
            released.append(expire_holds_job())
            db.session.remove()
        run.note(f"sweeps released {released} holds (orphan, orphan, expired)")
        run.procs.stop(worker)
        drain = subprocess.run(
            [sys.executable, "worker.py", "--burst"],
            cwd=ROOT,
            env=server_env,
            capture_output=True,
            timeout=300,
        )
        run.note(f"queues drained (worker --burst exit {drain.returncode})")
        check = subprocess.run(
            [sys.executable, "-m", "flask", "ledger", "check"],
            cwd=ROOT,
            env=server_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        report = audit(app, run, results, chaos_state, check, load_seconds, released)
        report += f"\nTotal duration: {time.monotonic() - started:.0f} s.\n"
        output = args.output or BENCH / f"results-{dt.date.today().isoformat()}-chaos.md"
        output.write_text(report)
        print(report)
        log(f"report written to {output}")
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        run.procs.stop_all()
        if run.emulator is not None:
            run.emulator.stop()
        if run.fakes is not None:
            run.fakes.stop()
        if run.drop_db is not None:
            try:
                run.drop_db()
                log(f"database {run.db_name} dropped")
            except Exception:
                traceback.print_exc()
        if redis_client is not None:
            redis_client.flushdb()
        shutil.rmtree(instance, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settle_wait(app, run: Run, timeout: float) -> None:
    """Until every open hold belongs to a killed process (the others settle on their own)."""
    from sqlalchemy import select

    from app import heartbeat
    from app.extensions import db
    from app.models import Hold

    deadline = time.monotonic() + timeout
    while True:
        with app.app_context():
            open_ids = db.session.execute(
                select(Hold.id, Hold.request_id).where(Hold.status == "open")
            ).all()
            db.session.remove()
        live = [h for h in open_ids if heartbeat.token_of(h[1]) not in run.killed_tokens]
        if not live or time.monotonic() > deadline:
            run.note(
                f"{len(open_ids)} holds open before the sweeps ({len(live)} of live processes)"
            )
            return
        time.sleep(0.5)


# --- Stripe ----------------------------------------------------------------------------------


def buy_credits(app, emulator, count: int, run: Run) -> list[tuple[int, str]]:
    """`count` purchases of $5..$20 by the buyer, through the pages and localstripe; the webhook
    goes to gunicorn, the worker credits. Returns [(purchase id, amount)]."""
    from tests.helpers import Browser
    from tests.shop import CONFIRM_ACTION, Shop
    from tests.stripe_emulator import CARD_OK

    bought = []
    client = app.test_client()
    browser = Browser(client)
    browser.login("buyer@example.com")
    shop = Shop(app, browser, emulator)
    for n in range(count):
        amount = str(5 + 5 * n)
        purchase_id, secret = shop.start(amount)
        response = shop.pay(purchase_id, secret, CARD_OK)
        assert response.status_code == 200, response.status_code
        assert CONFIRM_ACTION  # the module's page patterns are what Shop parses
        bought.append((purchase_id, amount))
        run.note(f"purchase {purchase_id} of ${amount} paid through localstripe")
    return bought


def webhook_storm(emulator, base: str, run: Run) -> collections.Counter:
    """Every event localstripe sent, re-posted 5 times, signed, in shuffled order."""
    import requests

    from tests.stripe_emulator import sign

    events = emulator.events()
    deliveries = [event for event in events for _ in range(5)]
    random.Random(7).shuffle(deliveries)
    answers: collections.Counter = collections.Counter()
    for event in deliveries:
        payload = json.dumps(event).encode()
        response = requests.post(
            f"{base}/webhooks/stripe",
            data=payload,
            headers={"Stripe-Signature": sign(payload), "Content-Type": "application/json"},
            timeout=10,
        )
        duplicate = response.ok and response.json().get("duplicate")
        answers[f"{response.status_code}{' duplicate' if duplicate else ''}"] += 1
    kinds = collections.Counter(event["type"] for event in events)
    run.note(f"webhook storm: {len(events)} events {dict(kinds)} x5 -> {dict(answers)}")
    return answers


# --- the audit -------------------------------------------------------------------------------


def delivered_text(call) -> str:
    """The text of the content chunks the fake wrote (its deterministic answer, cut short)."""
    from tests.fakes.common import answer_pieces

    d = call.directives
    if d is None or call.chunks_sent == 0:
        return ""
    if not call.stream and call.completed:
        # a whole answer: its `chunks_sent` counts parts (Gemini: one), the text is all of it
        return "".join(answer_pieces(call.provider, d.chunks, d.chunks))
    return "".join(answer_pieces(call.provider, call.chunks_sent, d.chunks))


def audit(app, run, results, chaos_state, check, load_seconds, released) -> str:
    from sqlalchemy import func, select

    from app import heartbeat
    from app.extensions import db
    from app.models import Hold, LedgerEntry, Purchase, UsageRecord
    from tests.proxy.exact import expected_cost, expected_from_call

    route_of = {"chat": "chat", "responses": "responses", "messages": "chat", "gemini": "chat"}
    by_index = {r.plan.index: r for r in results}
    calls_by_index: dict[int, list] = collections.defaultdict(list)
    for call in run.fakes.calls:
        match = TAG.search(json.dumps(call.body))
        if match:
            calls_by_index[int(match.group(1))].append(call)
    with app.app_context():
        records = db.session.scalars(select(UsageRecord)).all()
        debits = dict(
            db.session.execute(
                select(LedgerEntry.reference_id, func.sum(LedgerEntry.amount_nanocredits))
                .where(LedgerEntry.kind == "usage")
                .group_by(LedgerEntry.reference_id)
            ).all()
        )
        total_usage_debits = -sum(debits.values())
        open_holds = db.session.execute(
            select(Hold.id, Hold.request_id, Hold.amount_nanocredits).where(Hold.status == "open")
        ).all()
        hold_status = collections.Counter(
            dict(db.session.execute(select(Hold.status, func.count()).group_by(Hold.status)).all())
        )
        released_holds = db.session.execute(
            select(Hold.request_id).where(Hold.status.in_(("expired", "released")))
        ).all()
        purchases = db.session.scalars(select(Purchase)).all()
        purchase_rows = [
            (p.id, p.amount_cents, p.status, p.stripe_payment_intent_id) for p in purchases
        ]
        credit_entries = db.session.execute(
            select(
                LedgerEntry.reference_id,
                func.count(),
                func.sum(LedgerEntry.amount_nanocredits),
            )
            .where(LedgerEntry.kind == "purchase")
            .group_by(LedgerEntry.reference_id)
        ).all()
        record_rows = [
            (
                r.request_id,
                r.hold_id,
                r.status,
                r.cost_nanocredits,
                r.input_tokens,
                r.model_id,
                r.route,
                r.provider,
                r.output_tokens,
            )
            for r in records
        ]
        db.session.remove()

    def debit_of(hold_id) -> int:
        return -(debits.get(f"hold:{hold_id}") or 0)

    records_by_rid = {row[0]: row for row in record_rows}
    buckets = {
        "reported, complete": [0, 0, 0, []],  # requests, ledger, expected, mismatches
        "reported, cut short (partial)": [0, 0, 0, []],
        "no usage reported (estimated)": [0, 0, 0, []],
        "no usage, no content": [0, 0, 0, []],
        "client disconnect, cut short (upper bound)": [0, 0, 0, []],
    }
    in_killed = [0, 0]  # requests, provider cost unbilled
    mapped_rids = set()
    unmapped_calls = 0
    for index, result in by_index.items():
        calls = calls_by_index.get(index, [])
        row = records_by_rid.get(result.request_id) if result.request_id else None
        if row:
            mapped_rids.add(row[0])
        ledger = debit_of(row[1]) if row else 0
        if not calls:
            if row and ledger:
                buckets["no usage, no content"][3].append((index, "billed with no call", ledger))
            continue
        call = calls[0]
        if len(calls) > 1:
            unmapped_calls += len(calls) - 1
        killed = heartbeat.token_of(result.request_id) in run.killed_tokens or (
            result.request_id is None and result.outcome.startswith("client error")
        )
        if row is None and killed:
            # the web process died under it: no settlement, its hold released by the sweep
            in_killed[0] += 1
            if call.usage_reported:
                cost, _ = expected_cost(
                    app,
                    result.plan.model,
                    expected_from_call(call, route_of[result.plan.kind]).classes,
                    expected_from_call(call, route_of[result.plan.kind]).prompt_tokens,
                )
                in_killed[1] += cost
            continue
        text = delivered_text(call)
        if call.usage_reported is not None and call.status == 200:
            exp = expected_from_call(call, route_of[result.plan.kind])
            classes = dict(exp.classes)
            whole = call.completed and not call.directives.midstream_error
            name = "reported, complete" if whole else "reported, cut short (partial)"
            if not whole:
                classes["output"] = max(classes["output"], math.ceil(len(text.encode()) / 4))
            cost, _ = expected_cost(app, result.plan.model, classes, exp.prompt_tokens)
        elif text:
            name = "no usage reported (estimated)"
            input_tokens = row[4] if row else 0
            classes = {"input": input_tokens, "output": math.ceil(len(text.encode()) / 4)}
            cost, _ = expected_cost(app, result.plan.model, classes, input_tokens)
        else:
            name = "no usage, no content"
            cost = 0
        upper_bound = result.outcome == "client disconnect" and not call.completed
        if upper_bound:
            name = "client disconnect, cut short (upper bound)"
        bucket = buckets[name]
        bucket[0] += 1
        bucket[1] += ledger
        bucket[2] += cost
        if ledger > cost if upper_bound else ledger != cost:
            bucket[3].append(
                (
                    index,
                    f"{result.plan.kind} {result.plan.model} stream={result.plan.stream} "
                    f"{result.plan.directives} -> {result.outcome}, record "
                    f"{row[2:5] + row[8:9] if row else None} (status, cost, in, out), fake "
                    f"usage {call.usage_reported}, chunks {call.chunks_sent}, "
                    f"completed {call.completed}",
                    ledger - cost,
                )
            )
    unmapped_records = [row for row in record_rows if row[0] not in mapped_rids]
    unmapped_debits = sum(debit_of(row[1]) for row in unmapped_records)

    outcomes = collections.Counter(r.outcome for r in results)
    by_fault = collections.Counter((r.plan.fault, r.outcome) for r in results)
    routes = collections.Counter(
        (r.plan.kind, r.plan.provider, "stream" if r.plan.stream else "plain") for r in results
    )
    record_status = collections.Counter(row[2] for row in record_rows)
    released_killed = sum(
        1 for (rid,) in released_holds if heartbeat.token_of(rid) in run.killed_tokens
    )

    lines = [
        f"# Chaos soak — {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"`bench/chaos.py --requests {run.args.requests} --threads {run.args.threads} "
        f"--accounts {run.args.accounts} --seed {run.args.seed}`: {len(results)} requests sent "
        f"in {load_seconds:.0f} s ({len(results) / max(load_seconds, 1):.1f}/s), gunicorn 2 gevent "
        "workers on PostgreSQL, Redis db 14, fake upstreams, localstripe, one RQ worker.",
        "",
        "## Money",
        "",
        "Expected costs are computed independently of the gateway: token classes from the usage "
        "object each fake put on the wire (`tests/proxy/exact.py`: `expected_from_call`), priced "
        "from the bundled catalogue with the margin (`expected_cost`). Requests are matched to "
        "the fakes' calls by a tag in the prompt and to usage records by `x-request-id`; ledger "
        "debits are the `usage` entries of each record's hold.",
        "",
        "| bucket | requests | Σ ledger debits (nc) | Σ expected (nc) | Δ (nc) | mismatched requests |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, (count, ledger, expected, bad) in buckets.items():
        lines.append(
            f"| {name} | {count:,} | {ledger:,} | {expected:,} | {ledger - expected:,} | {len(bad)} |"
        )
    total_ledger = sum(b[1] for b in buckets.values())
    total_expected = sum(b[2] for b in buckets.values())
    lines += [
        f"| **all matched** | {sum(b[0] for b in buckets.values()):,} | {total_ledger:,} | "
        f"{total_expected:,} | **{total_ledger - total_expected:,}** | "
        f"{sum(len(b[3]) for b in buckets.values())} |",
        "",
        "- *reported, complete*: the fake wrote its whole answer with usage: expected = reported "
        "tokens × posted price, exactly.",
        "- *cut short (partial)*: usage was written but the answer was not finished (drop, client "
        "disconnect, in-stream error): expected = reported counts with output = max(reported, ceil(UTF-8 bytes of "
        "the text the fake wrote / 4)) — the rule of `app/services/usage.py`; the gateway counts "
        "bytes it delivered, which can be less than the fake wrote when the client left first.",
        "- *estimated*: no usage on the wire but content written: expected = ceil(text bytes the "
        "fake wrote / 4) output + the record's input tokens (ceil(text bytes sent / 4) plus "
        "allowances, the basis the record keeps, as `settlement_usage` bills), at the posted "
        "prices.",
        "- *no usage, no content*: errors, hangs, drops before any byte: expected 0.",
        "- *client disconnect, cut short*: the client closed an OpenAI/Anthropic/xAI stream "
        "(Gemini streams are drained, so they land in *complete*); expected as for partial / "
        "estimated but from the text the fake wrote, an upper bound of what the gateway "
        "delivered (it bills delivered bytes): a mismatch here is a debit *above* that bound; "
        "Δ < 0 is text the fake wrote that never reached the client.",
        "",
        f"Σ of every usage debit in the ledger: {total_usage_debits:,} nc; of those on records "
        f"not matched to a request: {unmapped_debits:,} nc ({len(unmapped_records)} records).",
        f"Requests lost with the killed web worker (no answer, no record): {in_killed[0]}; "
        f"provider-reported cost of them, never debited (their holds released by the sweep): "
        f"{in_killed[1]:,} nc.",
        "",
    ]
    for name, (_c, _l, _e, bad) in buckets.items():
        if bad:
            lines.append(f"Mismatches in *{name}* (first 15 of {len(bad)}): request, what, Δ nc")
            lines += [f"- {i}: {what}: {delta:,}" for i, what, delta in bad[:15]]
            lines.append("")
    lines += [
        "## Holds",
        "",
        f"- holds by status at the end: {dict(hold_status)}",
        f"- sweeps released: orphan sweep {released[0]} then {released[1]}, expiry {released[2]}; "
        f"holds of the killed web worker released: {released_killed}",
        f"- **holds still open after the sweeps: {len(open_holds)}** "
        f"({sum(h[2] for h in open_holds):,} nc)",
        "",
        "## Purchases (localstripe, then each event re-posted 5× signed, shuffled)",
        "",
        "| purchase | amount | status | PaymentIntent | purchase ledger entries | credited (nc) |",
        "| --- | ---: | --- | --- | ---: | ---: |",
    ]
    credits = {ref: (n, amount) for ref, n, amount in credit_entries}
    for pid, cents, status, intent in purchase_rows:
        n, amount = credits.get(intent, (0, 0))
        lines.append(f"| {pid} | ${cents / 100:.2f} | {status} | {intent} | {n} | {amount:,} |")
    lines += [
        "",
        f"Storm answers: {dict(chaos_state['storm'])}. Chaos errors: {chaos_state['errors'] or 'none'}.",
        "",
        "## `flask ledger check`",
        "",
        f"exit {check.returncode}: `{(check.stdout + check.stderr).strip()[-500:]}`",
        "",
        "## Requests by outcome",
        "",
        "| outcome | requests |",
        "| --- | ---: |",
        *[f"| {k} | {v:,} |" for k, v in outcomes.most_common()],
        "",
        f"Usage records by status: {dict(record_status)}.",
        "",
        "| fault | outcome | requests |",
        "| --- | --- | ---: |",
        *[f"| {f} | {o} | {v:,} |" for (f, o), v in sorted(by_fault.items())],
        "",
        "| route | provider | mode | requests |",
        "| --- | --- | --- | ---: |",
        *[f"| {k} | {p} | {m} | {v:,} |" for (k, p, m), v in sorted(routes.items())],
        "",
        "## Timeline",
        "",
        *[f"- {e}" for e in run.events],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
