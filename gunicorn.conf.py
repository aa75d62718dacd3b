"""gunicorn settings.

Access logs never carry query strings (a key may travel as `?key=`) nor password-reset tokens,
which travel in the path. Workers are gevent by default: each relayed stream is a greenlet, so one
process holds thousands of slow streams (bench/README.md has the measurements behind the choice);
`WEB_WORKER_CLASS=gthread` switches to threads.

Metrics (app/metrics.py) run in prometheus_client's multiprocess mode: every worker writes its
figures to files in PROMETHEUS_MULTIPROC_DIR, which a scrape adds up. The folder is the operator's
when set (its `.db` files are removed at start, as prometheus_client requires), else a new
temporary one, removed when the server stops.
"""

import glob
import os
import re
import shutil
import signal
import tempfile

from gunicorn.glogging import Logger

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# SQLite (the embedded default) blocks in C while it waits for its lock, which would stall every
# greenlet of a gevent worker; it gets threads instead.
_on_sqlite = not os.environ.get("DATABASE_URL", "").startswith("postgres")
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread" if _on_sqlite else "gevent")
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "2000"))
threads = int(os.environ.get("WEB_THREADS", "32"))
# Streams may run for minutes: the worker heartbeat, not a request timeout, decides liveness.
timeout = int(os.environ.get("WEB_TIMEOUT", "120"))
# A stop lets a non-streaming call in flight finish, so that it is billed: up to the upstream read
# timeout, with room to settle. Open streams end at once (Gemini's are read for their final counts).
graceful_timeout = int(
    os.environ.get(
        "WEB_GRACEFUL_TIMEOUT", str(int(os.environ.get("UPSTREAM_READ_TIMEOUT", "300")) + 30)
    )
)
accesslog = "-"
# %(U)s is the path without the query string; %(q)s (the query) is deliberately left out.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss "%({x-request-id}o)s"'
# A reset link's token is a credential for one hour, so the part of the path that holds it goes too.
RESET_TOKEN_IN_PATH = re.compile(r"(/password/reset/)[^/]+")


class RedactingLogger(Logger):
    """gunicorn's logger with the password-reset token in a path replaced by [redacted]."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["U"] = RESET_TOKEN_IN_PATH.sub(r"\1[redacted]", atoms["U"] or "")
        return atoms


logger_class = RedactingLogger
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Several OneKey servers may run on one machine (tests, bench); a shared control socket would clash.
control_socket_disable = True


def post_worker_init(worker):
    """On a graceful stop (SIGTERM), open streams end at once, bill what was proven and settle."""
    from app.proxy.streaming import shutting_down

    previous = signal.getsignal(signal.SIGTERM)

    def on_terminate(signum, frame):
        shutting_down.set()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_terminate)


# Where on_starting made the metrics folder itself (the master's environment survives a reload).
METRICS_DIR_CREATED = "ONEKEY_METRICS_DIR_CREATED"


def on_starting(server):
    """Before any worker is forked: an empty metrics folder, named in the environment the workers
    inherit (prometheus_client reads it when first imported, in the worker)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.remove(os.path.join(directory, name))
    else:
        directory = tempfile.mkdtemp(prefix="onekey-metrics-")
        os.environ[METRICS_DIR_CREATED] = directory
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def child_exit(server, worker):
    """A worker is gone: its live gauges go with it, its counters stay (so totals never drop).

    What prometheus_client's `multiprocess.mark_process_dead` does, without importing it into
    the master: it would import ssl there, before a gevent worker forked later patches it.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for path in glob.glob(os.path.join(directory, f"gauge_live*_{worker.pid}.db")):
            os.remove(path)


def on_exit(server):
    created = os.environ.get(METRICS_DIR_CREATED)
    if created:
        shutil.rmtree(created, ignore_errors=True)
