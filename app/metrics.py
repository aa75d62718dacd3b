"""Prometheus metrics, served at `/metrics` (issue 11, item 6).

Recorded as requests are answered, in this process's memory: every request (by its URL rule,
provider and status) with the time until its answer started, and every proxied request's
settlement (its whole duration, its time to first token, the settlements the database could not
take). Under gunicorn, prometheus_client runs in multiprocess mode: gunicorn.conf.py points
PROMETHEUS_MULTIPROC_DIR at a folder it empties at start, each worker keeps its figures in a
memory-mapped file there, and a scrape, whichever worker answers it, adds up every file (those of
workers that died too, so counters never go back). Without that variable (`flask run`, the tests'
app) the default registry of the one process is served.

The hot path pays one labelled counter increment and one histogram observation per request, and
two observations per settlement: memory writes, no I/O, about 15-20 µs of CPU a request in all
(bench/metrics_overhead.py), against ~5 ms of server CPU for a metered request. What is cheap only to count when asked
(open holds, the RQ queues) is read from the database and Redis at scrape time.

Access: a signed-in active admin, or `Authorization: Bearer <METRICS_TOKEN>` when the operator set
that token (a scraper cannot sign in). Anyone else gets the admin area's 404; a wrong token a 401.
"""

from __future__ import annotations

import hmac
import logging
import os
import time

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from flask_login import current_user
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError
from rq import Queue
from rq.registry import FailedJobRegistry
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db

log = logging.getLogger("onekey.metrics")

# Read when prometheus_client chose its value class (at its import, just above): the mode the
# metrics below are really in.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
UNMATCHED_ROUTE = "unmatched"  # a path no URL rule matches: one series, however many paths
HOLD_PURPOSES = ("request", "refund")

# Seconds; a relayed stream may last minutes.
PROXY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, float("inf"))
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, float("inf"))

HTTP_REQUESTS = Counter(
    "onekey_http_requests",
    "Requests answered, by URL rule, provider (proxied requests) and HTTP status.",
    ["route", "provider", "status"],
)
HTTP_DURATION = Histogram(
    "onekey_http_request_duration_seconds",
    "Time until the answer started (for a stream: until the provider answered), by URL rule.",
    ["route"],
)
PROXY_DURATION = Histogram(
    "onekey_proxy_request_duration_seconds",
    "Proxied requests from hold to settlement (a stream's whole length), by provider and the "
    "usage record's status (ok, partial, estimated, upstream_error).",
    ["provider", "outcome"],
    buckets=PROXY_BUCKETS,
)
PROXY_FIRST_TOKEN = Histogram(
    "onekey_proxy_time_to_first_token_seconds",
    "Proxied requests' time to the first token (a non-streamed answer's: to the whole answer).",
    ["provider"],
    buckets=FIRST_TOKEN_BUCKETS,
)
SETTLEMENT_FAILURES = Counter(
    "onekey_settlement_failures",
    "Settlements the database could not take, queued for the worker to retry.",
    ["provider"],
)

bp = Blueprint("metrics", __name__)

# Each metric's labelled children, by label values: `labels()` validates and locks at every call,
# a dict lookup does not (1.4 against 2.2 µs an increment, bench/metrics_overhead.py). As bounded
# as the labels: URL rules, providers, statuses.
_children: dict[tuple, object] = {}


def _child(metric, *labels: str):
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def init_metrics(app: Flask) -> None:
    """Time and count every request, and serve /metrics. Called before the blueprints are
    registered, so the timer starts ahead of every other hook."""
    app.before_request(_start_timer)
    app.after_request(_count_request)
    app.register_blueprint(bp)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count_request(response: Response) -> Response:
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED_ROUTE
    _child(HTTP_REQUESTS, route, g.get("metrics_provider", ""), str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        _child(HTTP_DURATION, route).observe(time.perf_counter() - started)
    return response


def note_provider(provider: str) -> None:
    """Name the provider of the request being served, for its count."""
    g.metrics_provider = provider


def observe_settlement(
    provider: str, outcome: str, seconds: float, first_token_seconds: float | None
) -> None:
    _child(PROXY_DURATION, provider, outcome).observe(seconds)
    if first_token_seconds is not None:
        _child(PROXY_FIRST_TOKEN, provider).observe(first_token_seconds)


def count_settlement_failure(provider: str) -> None:
    _child(SETTLEMENT_FAILURES, provider).inc()


# --- the scrape ------------------------------------------------------------------------------


class _DefaultRegistry:
    """This process's own metrics, when there is no multiprocess folder to read."""

    def collect(self):
        return REGISTRY.collect()


class OperationsCollector:
    """Gauges read when scraped: open holds from the database, RQ queues from Redis. A store that
    does not answer is reported in onekey_metrics_source_up instead of failing the scrape."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        from app.models import Hold
        from app.tasks import QUEUES

        up = GaugeMetricFamily(
            "onekey_metrics_source_up",
            "Whether the store behind the scrape-time gauges answered (1) or not (0).",
            labels=["source"],
        )
        holds = GaugeMetricFamily(
            "onekey_holds_open",
            "Holds not yet settled or released, by purpose.",
            labels=["purpose"],
        )
        held = GaugeMetricFamily(
            "onekey_holds_open_nanocredits",
            "Credit reserved by open holds, in nanocredits, by purpose.",
            labels=["purpose"],
        )
        try:
            # The request's own session: on SQLite a second connection would wait for the write
            # lock that this request's transaction already holds.
            rows = db.session.execute(
                select(
                    Hold.purpose,
                    func.count(),
                    func.coalesce(func.sum(Hold.amount_nanocredits), 0),
                )
                .where(Hold.status == "open")
                .group_by(Hold.purpose)
            ).all()
        except SQLAlchemyError as exc:
            db.session.rollback()
            log.warning("metrics: open holds not counted: %s", type(exc).__name__)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            found = {purpose: (count, amount) for purpose, count, amount in rows}
            for purpose in sorted(set(HOLD_PURPOSES) | set(found)):
                count, amount = found.get(purpose, (0, 0))
                holds.add_metric([purpose], count)
                held.add_metric([purpose], amount)
            yield holds
            yield held

        queued = GaugeMetricFamily(
            "onekey_rq_queue_jobs", "Jobs waiting in each RQ queue.", labels=["queue"]
        )
        failed = GaugeMetricFamily(
            "onekey_rq_failed_jobs", "Jobs in each RQ queue's failed registry.", labels=["queue"]
        )
        redis = self.app.extensions["onekey_redis"]
        try:
            with redis.pipeline(transaction=False) as pipe:
                for name in QUEUES:
                    pipe.llen(Queue(name, connection=redis).key)
                    pipe.zcard(FailedJobRegistry(name, connection=redis).key)
                answers = pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("metrics: queues not measured: %s", type(exc).__name__)
            up.add_metric(["redis"], 0)
        else:
            up.add_metric(["redis"], 1)
            for name, length, failures in zip(QUEUES, answers[::2], answers[1::2], strict=True):
                queued.add_metric([name], length)
                failed.add_metric([name], failures)
            yield queued
            yield failed
        yield up


def scrape_registry(app: Flask) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS_DIR:
        MultiProcessCollector(registry, path=MULTIPROCESS_DIR)
    else:
        registry.register(_DefaultRegistry())
    registry.register(OperationsCollector(app))
    return registry


def _bearer_token() -> str | None:
    authorization = request.headers.get("Authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def _is_active_admin() -> bool:
    """An active admin whose session passed the second factor and is not idle, as the admin area
    requires (app/auth/two_factor.py); reading the metrics does not count as activity."""
    from app.auth import two_factor

    return bool(
        current_user.is_authenticated
        and current_user.is_admin
        and current_user.is_active_account
        and two_factor.missing_step(current_user) is None
    )


@bp.get("/metrics")
def metrics():
    token = current_app.config.get("METRICS_TOKEN") or ""
    presented = _bearer_token()
    if token and presented is not None:
        if not hmac.compare_digest(presented.encode(), token.encode()):
            return Response(
                "Invalid metrics token.\n",
                status=401,
                mimetype="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    elif not _is_active_admin():
        abort(404)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(scrape_registry(current_app._get_current_object()))
    return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
