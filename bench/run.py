"""OneKey benchmark: one command, every server side by side against one fast fake upstream.

    .venv/bin/python bench/run.py            # full run (about 10 minutes; LiteLLM's first install adds ~2)
    .venv/bin/python bench/run.py --quick    # smoke run (about 3 minutes)

Starts bench/fake_upstream.py, OneKey under gunicorn twice (gevent and gthread workers) on a fresh
PostgreSQL database and Redis db 15, OneKey once more on its embedded default (SQLite and the bundled
redis-server in a fresh instance folder, gthread workers), and the LiteLLM proxy (installed into
bench/.litellm-venv, no database); loads each with wrk (non-streaming at concurrency 1 and 16,
20-chunk streams at 16), samples the RSS and CPU of each server's process tree, holds 1,000 slow
streams against OneKey (bench/slow_streams.py), optionally profiles OneKey with py-spy, then writes
bench/results-<date>.md and prints it. Every process it started is stopped and the database is
dropped at the end, also on Ctrl-C. See bench/README.md.
"""

# ruff: noqa: S603, S607, S310 (runs local programs and loopback URLs that this file builds)

from __future__ import annotations

import argparse
import atexit
import collections
import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"  # logs, configs, profiles (gitignored)
LITELLM_VENV = BENCH / ".litellm-venv"
LITELLM_VERSION = "1.100.5"  # the newest whose [proxy] extra resolves from PyPI as of this harness
MAIN_PY = ROOT / ".venv" / "bin" / "python"
MODEL = "gpt-4o-mini"
UPSTREAM_KEY = "sk-bench-upstream"
LITELLM_MASTER_KEY = "sk-bench-litellm"
EMAIL = "bench@example.com"
# The OneKey targets: name -> (label, gunicorn worker class or None to let gunicorn.conf.py pick,
# database). onekey-sqlite runs on the embedded default: no DATABASE_URL, no REDIS_URL.
ONEKEY_TARGETS = {
    "onekey-gevent": ("OneKey gevent", "gevent", "postgres"),
    "onekey-gthread": ("OneKey gthread", "gthread", "postgres"),
    "onekey-sqlite": ("OneKey gthread, SQLite + embedded Redis", None, "sqlite"),
}
SQLITE_INSTANCE = WORK / "instance-sqlite"  # deleted before onekey-sqlite starts

PROMPT = [{"role": "user", "content": "Say hello in one short sentence."}]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_fd_limit(want: int = 65536) -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((want, max(want, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- processes ---------------------------------------------------------------------------------


class Server:
    """A process this run started, in its own process group; stop() ends exactly that group."""

    running: ClassVar[list[Server]] = []

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict,
        cwd: Path,
        health_url: str = "",
        ready: Callable[[], bool] | None = None,
    ):
        self.name = name
        self.cmd = cmd
        self.env = env
        self.cwd = cwd
        self.health_url = health_url
        self.ready = ready  # instead of health_url, for a server that speaks no HTTP
        self.log_path = WORK / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.stopped_at: float | None = None

    def healthy(self) -> bool:
        if self.ready is not None:
            return self.ready()
        with urllib.request.urlopen(self.health_url, timeout=2) as answer:
            return answer.status == 200

    def start(self, timeout: float = 60) -> Server:
        self.started_at = time.time()
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        Server.running.append(self)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited at start; see {self.log_path}")
                try:
                    if self.healthy():
                        return self
                except OSError:
                    pass
                time.sleep(0.2)
            raise RuntimeError(
                f"{self.name} did not become healthy in {timeout}s; see {self.log_path}"
            )
        except BaseException:
            self.stop(timeout=10)  # what did not start does not linger until the end of the run
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 20) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        # Anything of this group still alive (workers of a master that was killed) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=5)
        self.log_file.close()
        self.stopped_at = self.stopped_at or time.time()
        if self in Server.running:
            Server.running.remove(self)


def stop_all() -> None:
    for server in list(reversed(Server.running)):
        try:
            server.stop(timeout=10)
        except Exception as exc:
            log(f"stopping {server.name}: {exc}")


# --- measurement -------------------------------------------------------------------------------


def tree_cpu(processes: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for proc in processes:
        try:
            times = proc.cpu_times()
            out[proc.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def postgres_backends(database: str) -> list[psutil.Process]:
    """Server processes of our database (its backends), for PostgreSQL's CPU per request."""
    out = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if proc.info["name"] == "postgres" and f" {database} " in cmdline:
            out.append(proc)
    return out


def redis_servers() -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["name"])
        if (p.info["name"] or "").startswith("redis-server")
    ]


class RssSampler(threading.Thread):
    """Sums the RSS of a server's process tree every `interval` seconds; keeps the peak."""

    def __init__(self, interval: float = 0.25):
        super().__init__(daemon=True)
        self.interval = interval
        self.server: Server | None = None
        self.peak = 0
        self.last = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def watch(self, server: Server | None) -> None:
        with self.lock:
            self.server = server
            self.peak = self.last = self.sample() if server else 0

    def reset_peak(self) -> None:
        with self.lock:
            self.peak = self.last

    def sample(self) -> int:
        total = 0
        for proc in self.server.tree() if self.server else []:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                if self.server is None:
                    continue
                self.last = self.sample()
                self.peak = max(self.peak, self.last)


@dataclass
class Target:
    name: str  # "direct", "onekey-gevent", "onekey-gthread", "onekey-sqlite", "litellm"
    label: str
    url: str
    key: str
    server: Server
    idle_rss: int = 0
    phases: dict = field(default_factory=dict)
    slow: dict | None = None
    notes: list = field(default_factory=list)
    database: str = ""  # OneKey: "postgres" or "sqlite"
    redis_url: str = ""  # OneKey: where its in-flight sets are
    redis_server: Server | None = None  # the embedded redis-server this target started
    env: dict = field(default_factory=dict)  # OneKey: the environment of its flask commands
    metering: dict | None = None


@dataclass
class Phase:
    name: str
    concurrency: int
    stream: bool


PHASES = [Phase("c1", 1, False), Phase("c16", 16, False), Phase("stream16", 16, True)]


def body_for(stream: bool, chunks: int) -> str:
    body: dict = {"model": MODEL, "messages": PROMPT}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True}, bench_chunks=chunks)
    return json.dumps(body, separators=(",", ":"))


def run_wrk(url: str, key: str, body: str, concurrency: int, seconds: float) -> dict:
    env = {**os.environ, "BENCH_BODY": body, "BENCH_AUTH": key}
    cmd = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(BENCH / "wrk" / "post.lua"),
        url,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result = json.loads(line[len("BENCH_JSON ") :])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            result["errors"] = sum(v for k, v in result.items() if k.startswith("err_"))
            return result
    raise RuntimeError(f"wrk printed no summary: {out.stdout[-2000:]} {out.stderr[-2000:]}")


def measure_phase(target: Target, phase: Phase, args, sampler: RssSampler, pg_db: str) -> dict:
    body = body_for(phase.stream, args.stream_chunks)
    server_tree = target.server.tree()
    # SQLite runs inside the server's processes: no database process to add.
    pg = postgres_backends(pg_db) if target.database == "postgres" else []
    if target.redis_server is not None:
        redis = target.redis_server.tree()
    else:
        redis = redis_servers() if target.database else []
    before = (tree_cpu(server_tree), tree_cpu(pg), tree_cpu(redis))
    psutil.cpu_percent(None)
    sampler.reset_peak()
    result = run_wrk(target.url, target.key, body, phase.concurrency, args.duration)
    machine_busy = psutil.cpu_percent(None)
    after = (tree_cpu(target.server.tree()), tree_cpu(pg), tree_cpu(redis))
    requests = max(result["requests"], 1)
    result.update(
        peak_rss=sampler.peak,
        machine_cpu_pct=machine_busy,
        server_cpu_ms_per_req=1000 * cpu_delta(before[0], after[0]) / requests,
        pg_cpu_ms_per_req=(
            1000 * cpu_delta(before[1], after[1]) / requests
            if target.database == "postgres"
            else None
        ),
        redis_cpu_ms_per_req=1000 * cpu_delta(before[2], after[2]) / requests,
        server_cpu_cores=cpu_delta(before[0], after[0]) / (result["duration_us"] / 1e6),
    )
    return result


def onekey_inflight(redis_url: str, since: float) -> int:
    """Requests OneKey has in flight that started after `since` (epoch seconds): its per-account
    in-flight sets in Redis, scored by start time. Entries of a server stopped mid-stream linger
    there (they age out after 15 minutes), hence the lower bound."""
    from redis import Redis

    redis = Redis.from_url(redis_url)
    return sum(redis.zcount(name, since, "+inf") for name in redis.scan_iter("onekey:inflight:*"))


def quiesce(target: Target, limit: float = 60) -> float:
    """Wait until the server is idle: requests wrk gave up on may still be running (on OneKey,
    waiting for a row lock costs no CPU, so its in-flight count in its Redis decides). Returns
    seconds waited."""
    server = target.server
    began = time.monotonic()
    before = tree_cpu(server.tree())
    while time.monotonic() - began < limit:
        time.sleep(0.5)
        after = tree_cpu(server.tree())
        busy = cpu_delta(before, after) >= 0.03
        if target.redis_url and not busy:
            busy = onekey_inflight(target.redis_url, server.started_at) > 0
        if not busy:
            break
        before = after
    waited = time.monotonic() - began
    if waited > 3:
        log(f"{server.name} stayed busy for {waited:.0f} s after the load stopped")
        target.notes.append(f"stayed busy for {waited:.0f} s after a load phase stopped")
    return waited


def check_answers(target: Target, chunks: int) -> None:
    """One plain and one streamed request, read in full, before any load."""
    headers = {"Content-Type": "application/json"}
    if target.key:
        headers["Authorization"] = f"Bearer {target.key.split(',')[0]}"
    for stream in (False, True):
        request = urllib.request.Request(
            target.url, data=body_for(stream, chunks).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw = answer.read()
            if answer.status != 200:
                raise RuntimeError(f"{target.name}: status {answer.status}: {raw[:300]!r}")
        if stream:
            frames = [f for f in raw.split(b"\n\n") if f.startswith(b"data: ")]
            if not frames or frames[-1].strip() != b"data: [DONE]" or len(frames) < chunks:
                raise RuntimeError(
                    f"{target.name}: bad stream ({len(frames)} frames): {raw[-300:]!r}"
                )
        else:
            answer_body = json.loads(raw)
            if not answer_body.get("choices") or not answer_body.get("usage"):
                raise RuntimeError(f"{target.name}: bad answer: {raw[:300]!r}")


def run_slow(target: Target, args, sampler: RssSampler, client_python: Path) -> dict:
    sampler.reset_peak()
    psutil.cpu_percent(None)
    before = tree_cpu(target.server.tree())
    cmd = [
        str(client_python),
        str(BENCH / "slow_streams.py"),
        "--url",
        target.url,
        "--key",
        target.key,
        "--streams",
        str(args.slow_streams),
        "--chunks",
        str(args.slow_chunks),
        "--delay-ms",
        str(args.slow_delay_ms),
        "--ramp",
        str(args.slow_ramp),
    ]
    budget = args.slow_ramp + args.slow_chunks * args.slow_delay_ms / 1000 + 15
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=budget + 60)
    for line in out.stdout.splitlines():
        if line.startswith("SLOW_JSON "):
            result = json.loads(line[len("SLOW_JSON ") :])
            break
    else:
        raise RuntimeError(
            f"slow_streams printed no summary: {out.stdout[-1500:]} {out.stderr[-1500:]}"
        )
    result["peak_rss"] = sampler.peak
    result["machine_cpu_pct"] = psutil.cpu_percent(None)
    result["server_cpu_cores"] = cpu_delta(before, tree_cpu(target.server.tree())) / max(
        result["wall_s"], 0.1
    )
    return result


# --- profiling ---------------------------------------------------------------------------------


def profile(target: Target, args, phase: Phase, out: Path) -> dict | None:
    """py-spy over every worker while wrk loads the server; returns the hottest frames."""
    py_spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(py_spy).exists():
        return None
    seconds = max(2, round(args.profile_seconds))
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(target.server.pid),
            "--subprocesses",
            "--nonblocking",
            "--rate",
            "250",
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    wrk = run_wrk(
        target.url,
        target.key,
        body_for(phase.stream, args.stream_chunks),
        phase.concurrency,
        seconds,
    )
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()
    if not out.exists():
        return None
    return {"wrk": wrk, **summarise_profile(out)}


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, location = frame.partition(" (")
    location = location.rstrip(")")
    path = location.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarise_profile(path: Path) -> dict:
    inclusive: collections.Counter = collections.Counter()
    leaf: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += n
        leaf[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    return {"samples": total, "inclusive": inclusive.most_common(60), "self": leaf.most_common(25)}


def scan_log(path: Path) -> list[str]:
    """Server-side trouble a client cannot see: errors and PostgreSQL deadlocks in the log."""
    text = path.read_text(errors="replace")
    notes = []
    errors = sum(1 for line in text.splitlines() if " ERROR " in line or "[ERROR]" in line)
    if errors:
        notes.append(f"{errors} ERROR lines in {path.relative_to(ROOT)}")
    locked = text.count("database is locked")
    if locked:
        notes.append(f"{locked} SQLite 'database is locked' errors")
    deadlocks = text.count("DeadlockDetected")
    if deadlocks:
        failed = text.count("settlement of hold")
        notes.append(
            f"{deadlocks} PostgreSQL deadlocks reported ({failed} settlements failed and left their "
            "hold open for the expiry job)"
        )
    worker_deaths = text.count("WORKER TIMEOUT") + text.count("was sent SIGKILL")
    if worker_deaths:
        notes.append(f"{worker_deaths} worker timeouts/kills")
    return notes


# --- OneKey setup ------------------------------------------------------------------------------


def create_database(pg_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{pg_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(pg_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{pg_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_redis(url: str) -> None:
    from redis import Redis

    Redis.from_url(url).flushdb()


def flask(env: dict, *args: str) -> str:
    out = subprocess.run(
        [str(MAIN_PY), "-m", "flask", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed: {out.stdout}{out.stderr}")
    return out.stdout.strip()


def onekey_env(
    args,
    fake_url: str,
    database_url: str | None = None,
    redis_url: str | None = None,
    instance: Path = WORK / "instance",
) -> dict:
    """OneKey's environment; without a database and Redis URL, the embedded default (SQLite and
    the bundled redis-server, both under `instance`)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "GEMINI_", "XAI_", "OPENAI_", "WEB_", "STRIPE_"))
        and k not in ("ONEKEY_ENV", "DATABASE_URL", "REDIS_URL", "PORT")
    }
    env.update(
        FLASK_APP="wsgi:app",
        SECRET_KEY=secrets.token_urlsafe(32),
        KEY_HASH_SECRET=secrets.token_urlsafe(32),
        ONEKEY_INSTANCE_PATH=str(instance),
        OPENAI_BASE_URL=f"{fake_url}/v1",
        OPENAI_API_KEY=UPSTREAM_KEY,
        # The bench lifts the per-key and per-account limits (the issue allows it).
        RATE_LIMIT_RPM="1000000000",
        MAX_CONCURRENT_PER_ACCOUNT="1000000",
        WEB_CONCURRENCY=str(args.workers),
        WEB_WORKER_CONNECTIONS=str(args.worker_connections),
        WEB_GRACEFUL_TIMEOUT="5",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def provision_onekey(env: dict, accounts: int) -> str:
    """Migrate, sync the catalogue, create `accounts` funded accounts with a key each; returns the
    keys, comma-separated (wrk/post.lua takes them in turn)."""
    flask(env, "db", "upgrade")
    flask(env, "catalog", "sync")

    def funded_key(n: int) -> str:
        email = EMAIL if n == 0 else EMAIL.replace("@", f"{n}@")
        flask(env, "users", "create", email, "--password", secrets.token_urlsafe(16))
        flask(env, "credits", "grant", email, "1000000", "--note", "bench")
        return flask(env, "keys", "create", email, "--name", "bench").splitlines()[-1]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return ",".join(pool.map(funded_key, range(accounts)))


def start_onekey(env: dict, name: str) -> Server:
    port = free_port()
    server_env = {**env, "PORT": str(port)}
    worker_class = ONEKEY_TARGETS[name][1]
    if worker_class:  # else gunicorn.conf.py picks (gthread on SQLite)
        server_env["WEB_WORKER_CLASS"] = worker_class
    return Server(
        name,
        [str(MAIN_PY), "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        server_env,
        ROOT,
        f"http://127.0.0.1:{port}/healthz",
    ).start()


def embedded_locations(env: dict) -> tuple[Path, str]:
    """The SQLite file and the Redis URL OneKey uses in this environment, asked of app/config.py."""
    out = subprocess.run(
        [
            str(MAIN_PY),
            "-c",
            "from app.config import embedded_database_url as d, embedded_redis_url as r; "
            "print(d()); print(r())",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"reading app.config failed: {out.stdout}{out.stderr}")
    database_url, redis_url = out.stdout.split()
    return Path(database_url.removeprefix("sqlite:///")), redis_url


def start_embedded_redis(env: dict, redis_url: str, name: str) -> Server:
    """`python -m app.embedded_redis` (the Procfile's `redis`): redis-server on the unix socket
    under the instance folder, in its own process group like every other server."""
    from redis import Redis
    from redis.exceptions import RedisError

    socket_path = Path(redis_url.removeprefix("unix://"))

    def ready() -> bool:
        if not socket_path.exists():
            return False
        try:
            with Redis(unix_socket_path=str(socket_path), socket_timeout=2) as redis:
                return bool(redis.ping())
        except RedisError:
            return False

    return Server(name, [str(MAIN_PY), "-m", "app.embedded_redis"], env, ROOT, ready=ready).start(
        timeout=30
    )


def start_onekey_sqlite(args, fake_url: str, name: str) -> Target:
    """OneKey on its embedded default: a fresh instance folder, its redis-server, SQLite in it."""
    shutil.rmtree(SQLITE_INSTANCE, ignore_errors=True)
    env = onekey_env(args, fake_url, instance=SQLITE_INSTANCE)
    database_path, redis_url = embedded_locations(env)
    log(f"fresh instance folder {SQLITE_INSTANCE.relative_to(ROOT)}: embedded Redis, SQLite")
    redis_server = start_embedded_redis(env, redis_url, f"{name}-redis")
    try:
        log("migrate, catalogue, account, key")
        key = provision_onekey(env, args.accounts)
        server = start_onekey(env, name)
    except BaseException:
        redis_server.stop()
        raise
    log(f"{name}: SQLite {database_path.relative_to(ROOT)}, Redis {redis_url}")
    return Target(
        name,
        ONEKEY_TARGETS[name][0],
        server.health_url.replace("/healthz", "/v1/chat/completions"),
        key,
        server,
        database="sqlite",
        redis_url=redis_url,
        redis_server=redis_server,
        env=env,
    )


def _utc(epoch: float) -> dt.datetime:
    """Naive UTC, as OneKey's UTCDateTime columns store it."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


def metering_counts(conn, placeholder: str, window: tuple | None = None) -> dict:
    """Usage records by status and open holds, of rows created within `window` (all if None)."""
    where, params = "", ()
    if window:
        where = f" AND created_at >= {placeholder} AND created_at < {placeholder}"
        params = window
    rows = conn.execute(
        "SELECT status, streamed, count(*) FROM usage_records WHERE 1 = 1"  # noqa: S608
        f"{where} GROUP BY 1, 2 ORDER BY 1, 2",
        params,
    ).fetchall()
    open_holds = conn.execute(
        f"SELECT count(*) FROM holds WHERE status = 'open'{where}",  # noqa: S608
        params,
    ).fetchone()[0]
    return {
        "usage_records": [{"status": s, "streamed": bool(st), "count": c} for s, st, c in rows],
        "open_holds": open_holds,
    }


def ledger_check(env: dict) -> dict:
    check = subprocess.run(
        [str(MAIN_PY), "-m", "flask", "ledger", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    return {
        "ledger_check": (check.stdout + check.stderr).strip()[-500:],
        "ledger_ok": check.returncode == 0,
    }


def postgres_metering(target: Target, pg_url: str, db_name: str, check: dict) -> dict:
    """The PostgreSQL targets share one database: each counts the rows created while its server
    ran; `check` is `flask ledger check` of the whole database."""
    import psycopg

    window = (_utc(target.server.started_at), _utc(target.server.stopped_at or time.time()))
    with psycopg.connect(f"{pg_url}/{db_name}") as conn:
        counts = metering_counts(conn, "%s", window)
    return {
        **counts,
        **check,
        "scope": "rows created while this server ran; ledger: whole database",
    }


def sqlite_metering(target: Target) -> dict:
    """onekey-sqlite has its database to itself; run after its server stopped, with its Redis up."""
    import sqlite3

    database_path, _ = embedded_locations(target.env)
    with contextlib.closing(sqlite3.connect(database_path)) as conn:
        counts = metering_counts(conn, "?")
    return {**counts, **ledger_check(target.env), "scope": "its own SQLite database"}


# --- LiteLLM -----------------------------------------------------------------------------------


def ensure_litellm() -> Path:
    python = LITELLM_VENV / "bin" / "python"
    if python.exists():
        probe = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
        )
        if probe.stdout.strip() == LITELLM_VERSION:
            return python
    log(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (once; ~2 minutes)")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            f"litellm[proxy]=={LITELLM_VERSION}",
        ],
        check=True,
    )
    return python


def start_litellm(fake_url: str, workers: int) -> Server:
    port = free_port()
    folder = WORK / "litellm"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {fake_url}/v1\n"
        f"      api_key: {UPSTREAM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n"
    )
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "DATABASE_", "LITELLM_"))
        },
        "LITELLM_LOG": "ERROR",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "NO_DOCS": "True",
    }
    return Server(
        "litellm",
        [
            str(LITELLM_VENV / "bin" / "litellm"),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(workers),
            # gunicorn with uvicorn workers: uvicorn's own multi-process supervisor kills workers
            # whose start takes longer than its health check on a loaded machine, forever.
            "--run_gunicorn",
        ],
        env,
        folder,
        f"http://127.0.0.1:{port}/health/liveliness",
    ).start(timeout=180)


# --- report ------------------------------------------------------------------------------------


def ms(us: float | None) -> str:
    return "–" if not us else f"{us / 1000:.2f}"


def mb(n: int | None) -> str:
    return "–" if not n else f"{n / 2**20:.0f}"


def fmt(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def report(targets: list[Target], args, meta: dict) -> str:
    by = {t.name: t for t in targets}
    lines = [f"# OneKey bench — {meta['started']}", ""]
    lines += [
        f"Machine: {meta['cpus']} cores, {meta['mem_gb']:.0f} GiB, {meta['platform']}; Python "
        f"{meta['python']}; gunicorn {meta['gunicorn']}, gevent {meta['gevent']}; LiteLLM "
        f"{meta.get('litellm', '–')}; wrk {meta['wrk']}.",
        f"Run: `{meta['command']}`; {args.duration:g} s per phase after a warm-up; OneKey "
        f"{args.workers} workers (PostgreSQL `{args.db_name}`, Redis `{args.redis_url}`; "
        f"onekey-sqlite: SQLite and the embedded redis-server in "
        f"`{SQLITE_INSTANCE.relative_to(ROOT)}`; load spread "
        f"over {args.accounts} account{'s' if args.accounts > 1 else ''}), LiteLLM "
        f"{args.litellm_workers} workers (no database). Machine CPU busy before the run: "
        f"{meta['idle_busy_pct']:.0f}%, load average {meta['loadavg']} (other work on the machine "
        "skews every figure).",
        "",
        "## Throughput and latency",
        "",
        "| target | c=1 p50 ms | c=1 p99 ms | c=1 req/s | c=16 p50 ms | c=16 p99 ms | c=16 req/s "
        "| 20-chunk streams/s at 16 | stream p50 ms | errors | idle RSS MB | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in targets:
        p = t.phases
        if not p:
            lines.append(f"| {t.label} | " + " | ".join(["–"] * 11) + " |")
            continue
        errors = sum(x["errors"] for x in p.values())
        peak = max(x["peak_rss"] for x in p.values())
        c1, c16, s16 = p.get("c1"), p.get("c16"), p.get("stream16")
        lines.append(
            f"| {t.label} | {ms(c1 and c1['p50_us'])} | {ms(c1 and c1['p99_us'])} | "
            f"{fmt(c1 and c1['rps'])} | {ms(c16 and c16['p50_us'])} | {ms(c16 and c16['p99_us'])} | "
            f"{fmt(c16 and c16['rps'])} | {fmt(s16 and s16['rps'])} | {ms(s16 and s16['p50_us'])} | "
            f"{errors} | {mb(t.idle_rss)} | {mb(peak)} |"
        )
    lines += [
        "",
        "## CPU per request (server process tree; PostgreSQL backends of the bench database; Redis)",
        "",
        "Redis is every redis-server on the machine for the PostgreSQL targets, the embedded "
        "redis-server for the SQLite one; SQLite runs inside the server's processes (n.a.).",
        "",
        "| target | phase | server CPU ms/req | server cores busy | PostgreSQL CPU ms/req | Redis CPU ms/req | machine CPU % |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in targets:
        for name, x in t.phases.items():
            lines.append(
                f"| {t.label} | {name} | {x['server_cpu_ms_per_req']:.2f} | {x['server_cpu_cores']:.2f} | "
                f"{fmt(x['pg_cpu_ms_per_req'], 2) if t.database == 'postgres' else 'n.a.'} | "
                f"{x['redis_cpu_ms_per_req']:.2f} | {x['machine_cpu_pct']:.0f} |"
            )
    direct = by.get("direct")
    lines += ["", "## Overhead against calling the upstream directly (c=1, non-streaming)", ""]
    lines += ["| target | p50 overhead ms | p99 overhead ms |", "| --- | ---: | ---: |"]
    for t in targets:
        if t is direct or not t.phases.get("c1") or not direct or not direct.phases.get("c1"):
            continue
        d = direct.phases["c1"]
        x = t.phases["c1"]
        if not x["requests"]:
            lines.append(f"| {t.label} | no request completed | – |")
            continue
        lines.append(
            f"| {t.label} | {(x['p50_us'] - d['p50_us']) / 1000:.2f} | {(x['p99_us'] - d['p99_us']) / 1000:.2f} |"
        )
    lit = by.get("litellm")
    lines += ["", "## Ratios against LiteLLM", ""]
    lines += [
        "| target | req/s at 16 ÷ LiteLLM | streams/s at 16 ÷ LiteLLM | c=1 p50 LiteLLM ÷ target |",
        "| --- | ---: | ---: | ---: |",
    ]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}×" if a and b else "–"

    for t in targets:
        if t.name.startswith("onekey") and lit and lit.phases and t.phases:
            lines.append(
                f"| {t.label} | {ratio(t.phases['c16']['rps'], lit.phases['c16']['rps'])} | "
                f"{ratio(t.phases['stream16']['rps'], lit.phases['stream16']['rps'])} | "
                f"{ratio(lit.phases['c1']['p50_us'], t.phases['c1']['p50_us'])} |"
            )
    slow_rows = [t for t in targets if t.slow]
    if slow_rows:
        s0 = slow_rows[0].slow
        lines += [
            "",
            f"## {s0['streams']:,} concurrent slow streams ({args.slow_chunks} chunks, one every "
            f"{args.slow_delay_ms} ms, opened over {args.slow_ramp:g} s)",
            "",
            "| target | ok | failed | failures | peak open at once | first byte p50 / p99 ms | "
            "stream duration p50 / max s | peak RSS MB | RSS per stream KB | server cores busy |",
            "| --- | ---: | ---: | --- | ---: | --- | --- | ---: | ---: | ---: |",
        ]
        for t in slow_rows:
            s = t.slow
            failures = ", ".join(f"{k}: {v}" for k, v in s["failures"].items()) or "none"
            per_stream = (s["peak_rss"] - t.idle_rss) / max(s["peak_open"], 1) / 1024
            lines.append(
                f"| {t.label} | {s['ok']} | {s['failed']} | {failures} | {s['peak_open']} | "
                f"{s['first_byte_p50_ms']:.0f} / {s['first_byte_p99_ms']:.0f} | "
                f"{s['duration_p50_s']:.1f} / {s['duration_max_s']:.1f} (ideal {s['expected_s']:g}) | "
                f"{mb(s['peak_rss'])} | {per_stream:.0f} | {s['server_cpu_cores']:.2f} |"
            )
    lines += ["", "## Targets (goals to measure against, not gates)", ""]
    # One column per OneKey target asked for (all three when none was).
    columns = [n for n in args.targets.split(",") if n in ONEKEY_TARGETS] or list(ONEKEY_TARGETS)
    lines += [
        "| goal | " + " | ".join(ONEKEY_TARGETS[n][0] for n in columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]

    def goal_row(label, fn):
        cells = []
        for name in columns:
            t = by.get(name)
            try:
                cells.append(fn(t) if t and t.phases else "not run")
            except (KeyError, TypeError, ZeroDivisionError, AttributeError):
                cells.append("not run")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    if direct and direct.phases:
        d50 = direct.phases["c1"]["p50_us"]
        goal_row(
            "overhead p50 ≤ 2 ms at c=1, fully metered",
            lambda t: (
                f"{mark((t.phases['c1']['p50_us'] - d50) / 1000 <= 2)}: "
                f"{(t.phases['c1']['p50_us'] - d50) / 1000:.2f} ms"
                if t.phases["c1"]["requests"]
                else "**missed**: no request completed"
            ),
        )
    if lit and lit.phases:
        goal_row(
            "≥ 5× LiteLLM's req/s at 16",
            lambda t: (
                f"{mark(t.phases['c16']['rps'] >= 5 * lit.phases['c16']['rps'])}: "
                f"{t.phases['c16']['rps'] / lit.phases['c16']['rps']:.1f}×"
            ),
        )
        goal_row(
            "≥ 10× LiteLLM's streams/s at 16",
            lambda t: (
                f"{mark(t.phases['stream16']['rps'] >= 10 * lit.phases['stream16']['rps'])}: "
                f"{t.phases['stream16']['rps'] / lit.phases['stream16']['rps']:.1f}×"
            ),
        )
    goal_row(
        f"≥ 1,000 slow streams, no error, RSS ≤ 1 GB (this run: {args.slow_streams:,})",
        lambda t: (
            f"{mark(t.slow['failed'] == 0 and t.slow['ok'] >= 1000 and t.slow['peak_rss'] <= 2**30)}: "
            f"{t.slow['ok']} ok, {t.slow['failed']} failed, {mb(t.slow['peak_rss'])} MB"
        ),
    )
    metered = [t for t in targets if t.metering]
    if metered:
        lines += [
            "",
            "## Metering check (every OneKey request of the run was held, settled and recorded)",
            "",
            "The PostgreSQL targets share one database: each counts the rows created while its "
            "server ran, and `flask ledger check` covers the whole database. onekey-sqlite has its "
            "own SQLite database.",
            "",
        ]
        for t in metered:
            m = t.metering
            records = ", ".join(
                f"{r['count']} {r['status']}{' streamed' if r['streamed'] else ''}"
                for r in m["usage_records"]
            )
            lines.append(
                f"- {t.label}: usage records: {records or 'none'}. Open holds left: "
                f"{m['open_holds']}. `flask ledger check`: {m['ledger_check']!r}."
            )
    for t in targets:
        if t.notes:
            lines += ["", f"Notes on {t.label}: " + "; ".join(t.notes)]
    for key, prof in meta.get("profiles", {}).items():
        if not prof:
            continue
        wrk = prof["wrk"]
        lines += [
            "",
            f"## py-spy profile: OneKey gevent, {key} ({prof['samples']} samples over both workers, "
            f"{wrk['rps']:.0f} req/s while profiled; `--nonblocking`, so slightly optimistic)",
            "",
            "Inclusive share of samples, OneKey's own frames and the libraries it calls (top 30):",
            "",
            "| % | frame |",
            "| ---: | --- |",
        ]
        shown = 0
        for frame, n in prof["inclusive"]:
            if any(
                skip in frame
                for skip in ("<module>", "gevent/", "gunicorn/", "(threading.py)", "greenlet")
            ):
                continue
            lines.append(f"| {100 * n / prof['samples']:.1f} | `{frame}` |")
            shown += 1
            if shown >= 30:
                break
        lines += ["", "Self time (leaf frames, top 15):", "", "| % | frame |", "| ---: | --- |"]
        for frame, n in prof["self"][:15]:
            lines.append(f"| {100 * n / prof['samples']:.1f} | `{frame}` |")
    lines.append("")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="OneKey vs LiteLLM vs direct, in one run.")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short smoke run (~3 minutes): short phases, 200 slow streams of 30 chunks; "
        "options given explicitly win",
    )
    parser.add_argument("--duration", type=float, default=15, help="seconds per load phase")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per server")
    parser.add_argument("--stream-chunks", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="OneKey gunicorn workers")
    parser.add_argument(
        "--worker-connections",
        type=int,
        default=2000,
        help="connections per OneKey gevent worker (gunicorn.conf.py's default: 2000)",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="spread OneKey's load over this many accounts (one key each) [1]",
    )
    parser.add_argument("--litellm-workers", type=int, default=2)
    parser.add_argument("--slow-streams", type=int, default=1000)
    parser.add_argument("--slow-chunks", type=int, default=300)
    parser.add_argument("--slow-delay-ms", type=int, default=100)
    parser.add_argument("--slow-ramp", type=float, default=5.0)
    parser.add_argument(
        "--targets",
        default="direct,onekey-gevent,onekey-gthread,onekey-sqlite,litellm",
        help="which servers to measure, in order [%(default)s]",
    )
    parser.add_argument(
        "--slow-targets",
        default="onekey-gevent,onekey-gthread",
        help="where the slow-stream test runs (onekey-sqlite and litellm allowed) [%(default)s]",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--profile-seconds", type=float, default=8)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--db-name", default="onekey_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--output", help="results file [bench/results-<date>.md]")
    args = parser.parse_args()
    if args.quick:
        quick = {
            "duration": 4,
            "warmup": 1,
            "profile_seconds": 3,
            "slow_streams": 200,
            "slow_chunks": 30,
            "slow_ramp": 2,
        }
        for name, value in quick.items():
            if getattr(args, name) == parser.get_default(name):  # an option given explicitly wins
                setattr(args, name, value)
    targets_wanted = args.targets.split(",")
    known = {"direct", "litellm", *ONEKEY_TARGETS}
    unknown = [n for n in [*targets_wanted, *args.slow_targets.split(",")] if n and n not in known]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if shutil.which("wrk") is None:
        log("wrk is missing: apt-get install -y wrk")
        return 2
    WORK.mkdir(exist_ok=True)
    fd_limit = raise_fd_limit()
    meta = {
        "started": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": " ".join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
        "cpus": psutil.cpu_count(),
        "mem_gb": psutil.virtual_memory().total / 2**30,
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "gunicorn": _version(MAIN_PY, "gunicorn"),
        "gevent": _version(MAIN_PY, "gevent"),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
        "fd_limit": fd_limit,
        "profiles": {},
    }
    if "litellm" in targets_wanted:
        ensure_litellm()
        meta["litellm"] = LITELLM_VERSION
    # uvloop (LiteLLM's venv has it) makes the fake upstream and the slow-stream client cheaper.
    helper_python = Path(sys.executable)
    if (LITELLM_VENV / "bin" / "python").exists():
        helper_python = LITELLM_VENV / "bin" / "python"

    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log("machine load before the run…")
    meta["idle_busy_pct"] = psutil.cpu_percent(interval=3)
    meta["loadavg"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    if meta["idle_busy_pct"] > 15:
        log(
            f"warning: the machine is already {meta['idle_busy_pct']:.0f}% busy; figures will be noisy"
        )

    sampler = RssSampler()
    sampler.start()
    fake_port = free_port()
    fake = Server(
        "fake-upstream",
        [
            str(helper_python),
            str(BENCH / "fake_upstream.py"),
            "--port",
            str(fake_port),
            "--chunks",
            str(args.stream_chunks),
        ],
        os.environ.copy(),
        BENCH,
        f"http://127.0.0.1:{fake_port}/healthz",
    ).start()
    fake_url = f"http://127.0.0.1:{fake_port}"
    targets: list[Target] = []
    database_url = f"{args.pg_url}/{args.db_name}"
    env = onekey_env(args, fake_url, database_url, args.redis_url)
    db_created = False
    try:
        if any(ONEKEY_TARGETS[t][2] == "postgres" for t in targets_wanted if t in ONEKEY_TARGETS):
            log(
                f"fresh database {args.db_name}, Redis {args.redis_url} flushed; migrate, catalogue, account, key"
            )
            create_database(args.pg_url, args.db_name)
            db_created = True
            flush_redis(args.redis_url)
            onekey_key = provision_onekey(env, args.accounts)
        for name in targets_wanted:
            log(f"== {name}")
            try:
                if name == "direct":
                    target = Target(
                        name, "direct (fake upstream)", f"{fake_url}/v1/chat/completions", "", fake
                    )
                elif name == "onekey-sqlite":
                    target = start_onekey_sqlite(args, fake_url, name)
                elif name in ONEKEY_TARGETS:
                    server = start_onekey(env, name)
                    target = Target(
                        name,
                        ONEKEY_TARGETS[name][0],
                        server.health_url.replace("/healthz", "/v1/chat/completions"),
                        onekey_key,
                        server,
                        database="postgres",
                        redis_url=args.redis_url,
                        env=env,
                    )
                elif name == "litellm":
                    server = start_litellm(fake_url, args.litellm_workers)
                    target = Target(
                        name,
                        f"LiteLLM {LITELLM_VERSION}",
                        server.health_url.replace("/health/liveliness", "/v1/chat/completions"),
                        LITELLM_MASTER_KEY,
                        server,
                    )
                else:
                    raise ValueError(f"unknown target {name}")
            except Exception as exc:
                log(f"{name} did not start: {exc}")
                continue
            targets.append(target)
            try:
                check_answers(target, args.stream_chunks)
                sampler.watch(target.server)
                # Warm up on one connection: a concurrent warm-up that jams a server would leave
                # its backlog to the c=1 phase.
                run_wrk(target.url, target.key, body_for(False, args.stream_chunks), 1, args.warmup)
                run_wrk(target.url, target.key, body_for(True, args.stream_chunks), 1, args.warmup)
                quiesce(target)
                target.idle_rss = sampler.sample()
                for phase in PHASES:
                    quiesce(target)
                    result = measure_phase(target, phase, args, sampler, args.db_name)
                    target.phases[phase.name] = result
                    log(
                        f"{name} {phase.name}: {result['rps']:,.0f}/s p50 {ms(result['p50_us'])} ms "
                        f"p99 {ms(result['p99_us'])} ms errors {result['errors']} "
                        f"cpu {result['server_cpu_ms_per_req']:.2f} ms/req rss {mb(result['peak_rss'])} MB"
                    )
                if name == "onekey-gevent" and not args.no_profile:
                    for phase in (PHASES[1], PHASES[2]):
                        log(f"py-spy on {name}, {phase.name}, {args.profile_seconds:g} s")
                        out = WORK / f"profile-{name}-{phase.name}.txt"
                        meta["profiles"][
                            f"{phase.name} ({phase.concurrency} connections"
                            f"{', 20-chunk streams' if phase.stream else ', non-streaming'})"
                        ] = profile(target, args, phase, out)
                if name in args.slow_targets.split(","):
                    quiesce(target)
                    log(
                        f"{name}: {args.slow_streams} slow streams ({args.slow_chunks} × {args.slow_delay_ms} ms)"
                    )
                    target.slow = run_slow(target, args, sampler, helper_python)
                    log(f"{name} slow: {json.dumps(target.slow)}")
            except Exception as exc:
                target.notes.append(f"run failed: {exc}")
                log(f"{name} failed: {exc}")
            finally:
                sampler.watch(None)
                if target.server is not fake:
                    target.server.stop()
                    target.notes += scan_log(target.server.log_path)
                if target.redis_server is not None:
                    # Its metering check needs its database and, for the app to start, its Redis.
                    try:
                        target.metering = sqlite_metering(target)
                    except Exception as exc:
                        target.notes.append(f"metering check failed: {exc}")
                        log(f"{name} metering check failed: {exc}")
                    finally:
                        target.redis_server.stop()
        if db_created:
            check = ledger_check(env)
            for t in targets:
                if t.database == "postgres":
                    try:
                        t.metering = postgres_metering(t, args.pg_url, args.db_name, check)
                    except Exception as exc:
                        t.notes.append(f"metering check failed: {exc}")
                        log(f"{t.name} metering check failed: {exc}")
    finally:
        sampler.stopped.set()
        stop_all()
        if db_created:
            try:
                drop_database(args.pg_url, args.db_name)
                flush_redis(args.redis_url)
            except Exception as exc:
                log(f"cleanup: {exc}")
    text = report(targets, args, meta)
    suffix = "-quick" if args.quick else ""
    output = (
        Path(args.output)
        if args.output
        else BENCH / f"results-{dt.date.today().isoformat()}{suffix}.md"
    )
    output.write_text(text)
    (WORK / "last-run.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "targets": [
                    {
                        "name": t.name,
                        "idle_rss": t.idle_rss,
                        "phases": t.phases,
                        "slow": t.slow,
                        "metering": t.metering,
                        "notes": t.notes,
                    }
                    for t in targets
                ],
            },
            indent=1,
            default=str,
        )
    )
    print(text)
    log(f"written to {output}")
    return 0


def _version(python: Path, package: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version('{package}'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())
