"""The operator's view of the background work (issue 11, item 4): RQ's queues and workers, failed
jobs with a retry, and the cron scheduler's runs and heartbeat.

Built on rq's own API rather than by mounting rq-dashboard (the README says why: its pages need
inline scripts and eval under our CSP, its job page inserts exception text as raw HTML, its
actions post without a CSRF token and "requeue all" answers a GET). Reads only; the retry is the
one change, audited like every admin action.

rq 3's CronScheduler keeps its own heartbeat (a sorted set of scheduler names scored by their last
beat, refreshed at every pass of its loop, at most 60 seconds apart) and each periodic job's
history (the ids of the jobs it enqueued), so nothing of ours is written for this page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from rq import Queue, Worker, cron_job_registry, cron_scheduler_registry
from rq.cron import CronJob, CronScheduler, get_cron_job_history_key
from rq.exceptions import InvalidJobOperation, NoSuchJobError, SchedulerNotFound
from rq.job import Job
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from app.admin import bp
from app.extensions import db, get_redis
from app.services.audit import record_audit
from app.tasks import QUEUES
from app.web_helpers import is_fragment_request

# The scheduler beats at every pass of its loop, and a pass sleeps at most 60 seconds (less when
# a job is due sooner): a beat older than this means it is not running.
SCHEDULER_ALIVE_SECONDS = 90
# A periodic job not enqueued for its interval and this much more is overdue.
OVERDUE_GRACE_SECONDS = 60
CRON_RUNS_SHOWN = 5
# Killed schedulers stay in rq's registry until something cleans it: the newest few are enough.
SCHEDULERS_SHOWN = 10
FAILED_SHOWN_PER_QUEUE = 25
CALL_SHOWN_CHARS = 200
JOB_ID_MAX = 128
REGISTRIES = {
    "started": StartedJobRegistry,
    "scheduled": ScheduledJobRegistry,
    "deferred": DeferredJobRegistry,
    "failed": FailedJobRegistry,
    "finished": FinishedJobRegistry,
}


def _moment(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- the cron scheduler ----------------------------------------------------------------------


@dataclass
class SchedulerSeen:
    name: str
    last_beat: datetime
    alive: bool
    hostname: str = ""
    pid: int | None = None
    started_at: datetime | None = None


@dataclass
class CronRun:
    job_id: str
    enqueued_at: datetime
    status: str  # rq's job status, or "expired" once its record is gone (after its result TTL)
    ended_at: datetime | None = None
    outcome: str = ""  # the return value, or the exception's last line


@dataclass
class PeriodicJob:
    name: str
    queue: str = ""
    interval: int | None = None
    cron: str | None = None
    last_enqueued: datetime | None = None
    next_due: datetime | None = None
    overdue: bool = False
    runs: list[CronRun] = field(default_factory=list)

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@dataclass
class SchedulerStatus:
    alive: list[SchedulerSeen]
    last_seen: SchedulerSeen | None  # the most recent one that stopped beating, when none beats
    jobs: list[PeriodicJob]

    @property
    def state(self) -> str:
        """'alive'; 'several' (each enqueues every job: run exactly one); 'dead' (its beat is
        stale: killed or stuck); 'none' (none registered: stopped cleanly, or never started)."""
        if len(self.alive) > 1:
            return "several"
        if self.alive:
            return "alive"
        return "dead" if self.last_seen else "none"


def scheduler_status(redis, now: float | None = None) -> SchedulerStatus:
    """The schedulers registered in Redis and the periodic jobs with their latest runs. Reads
    without rq's cleanup, so a killed scheduler stays visible as dead."""
    now = time.time() if now is None else now
    seen = []
    for raw_name, beat in redis.zrange(
        cron_scheduler_registry.get_registry_key(),
        0,
        SCHEDULERS_SHOWN - 1,
        desc=True,
        withscores=True,
    ):
        name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
        scheduler = SchedulerSeen(
            name=name, last_beat=_moment(beat), alive=now - beat <= SCHEDULER_ALIVE_SECONDS
        )
        try:
            details = CronScheduler.fetch(name, redis)
        except SchedulerNotFound:  # its record outlives a beat by 120 s only
            details = None
        if details is not None:
            scheduler.hostname, scheduler.pid = details.hostname, details.pid
            scheduler.started_at = _aware(details.created_at)
        seen.append((scheduler, details))
    alive = [s for s, _ in seen if s.alive]
    dead = [s for s, _ in seen if not s.alive]
    last_seen = max(dead, key=lambda s: s.last_beat) if dead and not alive else None
    registered = [job for s, details in seen if s.alive and details for job in details.get_jobs()]
    return SchedulerStatus(
        alive=alive, last_seen=last_seen, jobs=_periodic_jobs(redis, registered, now)
    )


def _periodic_jobs(redis, registered: list[CronJob], now: float) -> list[PeriodicJob]:
    """Every job a live scheduler runs, and every one that ran in the last year (rq keeps their
    names that long), each with its latest runs."""
    jobs: dict[str, PeriodicJob] = {}
    for cron_job in registered:
        jobs.setdefault(
            cron_job.name,
            PeriodicJob(
                name=cron_job.name,
                queue=cron_job.queue_name,
                interval=cron_job.interval,
                cron=cron_job.cron,
                next_due=_aware(cron_job.next_enqueue_time),
            ),
        )
    for name in cron_job_registry.get_names(redis, cleanup=False):
        jobs.setdefault(name, PeriodicJob(name=name))
    ordered = sorted(jobs.values(), key=lambda job: job.name)
    with redis.pipeline(transaction=False) as pipe:
        for job in ordered:
            pipe.zrange(
                get_cron_job_history_key(job.name),
                0,
                CRON_RUNS_SHOWN - 1,
                desc=True,
                withscores=True,
            )
        histories = pipe.execute()
    for job, history in zip(ordered, histories, strict=True):
        ids = [raw.decode() if isinstance(raw, bytes) else raw for raw, _ in history]
        fetched = Job.fetch_many(ids, connection=redis) if ids else []
        job.runs = [
            _cron_run(job_id, enqueued, found)
            for job_id, (_, enqueued), found in zip(ids, history, fetched, strict=True)
        ]
        if job.runs:
            job.last_enqueued = job.runs[0].enqueued_at
        if job.interval and job.last_enqueued:
            late = now - job.last_enqueued.timestamp() - job.interval
            job.overdue = late > OVERDUE_GRACE_SECONDS
    return ordered


def _status(job: Job) -> str:
    status = job.get_status(refresh=False)
    return getattr(status, "value", status) or "unknown"


def _cron_run(job_id: str, enqueued: float, job: Job | None) -> CronRun:
    if job is None:
        return CronRun(job_id=job_id, enqueued_at=_moment(enqueued), status="expired")
    status = _status(job)
    run = CronRun(
        job_id=job_id, enqueued_at=_moment(enqueued), status=status, ended_at=_aware(job.ended_at)
    )
    if status == "finished":
        run.outcome = _shorten(repr(job.return_value()))
    elif status == "failed":
        run.outcome = _last_line(job)
    return run


# --- queues, workers and failed jobs ---------------------------------------------------------


@dataclass
class QueueCounts:
    name: str
    queued: int
    started: int
    scheduled: int
    deferred: int
    failed: int
    finished: int


def queue_counts(redis) -> list[QueueCounts]:
    with redis.pipeline(transaction=False) as pipe:
        for name in QUEUES:
            pipe.llen(Queue(name, connection=redis).key)
            for registry in REGISTRIES.values():
                pipe.zcard(registry(name, connection=redis).key)
        answers = pipe.execute()
    width = 1 + len(REGISTRIES)
    return [
        QueueCounts(name, *answers[i * width : (i + 1) * width]) for i, name in enumerate(QUEUES)
    ]


@dataclass
class WorkerSeen:
    name: str
    state: str
    queues: list[str]
    current_job: str | None
    last_beat: datetime | None
    born: datetime | None
    successful: int
    failed: int


def workers(redis) -> list[WorkerSeen]:
    return sorted(
        (
            WorkerSeen(
                name=worker.name,
                state=getattr(worker.get_state(), "value", worker.get_state()),
                queues=worker.queue_names(),
                current_job=worker.get_current_job_id(),
                last_beat=_aware(worker.last_heartbeat),
                born=_aware(worker.birth_date),
                successful=worker.successful_job_count,
                failed=worker.failed_job_count,
            )
            for worker in Worker.all(connection=redis)
        ),
        key=lambda w: w.name,
    )


@dataclass
class FailedJob:
    id: str
    queue: str
    call: str
    failed_at: datetime | None
    error: str
    traceback: str


@dataclass
class FailedQueue:
    name: str
    total: int
    jobs: list[FailedJob]


def failed_jobs(redis) -> list[FailedQueue]:
    """Each queue's failed jobs, the latest failures first (up to FAILED_SHOWN_PER_QUEUE)."""
    answer = []
    for name in QUEUES:
        registry = FailedJobRegistry(name, connection=redis)
        ids = registry.get_job_ids(0, FAILED_SHOWN_PER_QUEUE - 1, desc=True, cleanup=False)
        fetched = Job.fetch_many(ids, connection=redis) if ids else []
        jobs = [_failed_job(job, name) for job in fetched if job is not None]
        jobs.sort(key=lambda job: job.failed_at or datetime.min.replace(tzinfo=UTC), reverse=True)
        answer.append(FailedQueue(name, registry.get_job_count(cleanup=False), jobs))
    return answer


def _failed_job(job: Job, queue: str) -> FailedJob:
    result = job.latest_result()
    traceback = (result.exc_string if result is not None else "") or ""
    return FailedJob(
        id=job.id,
        queue=queue,
        call=_shorten(job.get_call_string() or job.func_name or ""),
        failed_at=_aware(job.ended_at),
        error=_shorten(_exception_line(traceback)),
        traceback=traceback,
    )


def _exception_line(traceback: str) -> str:
    """`Type: message` of the (last) exception of a traceback: the first unindented line after
    its last frame, since the message itself may run over several lines."""
    lines = traceback.strip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    after = lines[frames[-1] + 1 :] if frames else lines
    for line in after:
        if line.strip() and not line[0].isspace():
            return line.strip()
    return lines[-1].strip() if lines else "no exception recorded"


def _last_line(job: Job) -> str:
    result = job.latest_result()
    return _shorten(_exception_line((result.exc_string or "") if result else ""))


def _shorten(text: str) -> str:
    return text if len(text) <= CALL_SHOWN_CHARS else text[: CALL_SHOWN_CHARS - 1] + "…"


# --- views -----------------------------------------------------------------------------------


def _status_context() -> dict:
    redis = get_redis()
    return {
        "scheduler": scheduler_status(redis),
        "queues": queue_counts(redis),
        "workers": workers(redis),
        "scheduler_alive_seconds": SCHEDULER_ALIVE_SECONDS,
    }


def _failed_context(**extra) -> dict:
    return {"failed": failed_jobs(get_redis()), "notice": None, **extra}


@bp.get("/jobs")
def jobs():
    """The page; its status part (scheduler, queues, workers) alone when HTMX polls for it."""
    if is_fragment_request():
        return render_template("admin/partials/jobs_status.html", **_status_context())
    return render_template("admin/jobs.html", **_status_context(), **_failed_context())


def _retry_answer(message: str, category: str, status: int):
    if is_fragment_request():
        # The queue counts change with the failed list: swapped in too, out of band.
        failed = render_template(
            "admin/partials/jobs_failed.html", **_failed_context(notice=(category, message))
        )
        counts = render_template("admin/partials/jobs_status.html", oob=True, **_status_context())
        return failed + counts, status
    flash(message, category)
    return redirect(url_for("admin.jobs"))


@bp.post("/jobs/<job_id>/retry")
def retry_job(job_id: str):
    """Queue a failed job again. Every OneKey job is safe to run twice (each money movement has
    its ledger key), so any failed one may be retried; one that is not failed has nothing to
    retry."""
    redis = get_redis()
    if len(job_id) > JOB_ID_MAX:
        abort(404)
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        abort(404)
    registry = FailedJobRegistry(job.origin, connection=redis)
    if job.id not in registry:
        return _retry_answer(
            f"Job {job.id} has not failed ({_status(job)}); there is nothing to retry.",
            "error",
            409,
        )
    failure = _last_line(job)
    record_audit(
        actor_id=current_user.id,
        action="job.retry",
        target_account_id=None,
        details={"job": job.id, "function": job.func_name, "queue": job.origin, "error": failure},
    )
    db.session.commit()
    try:
        registry.requeue(job)
    except InvalidJobOperation:
        return _retry_answer(f"Job {job.id} was retried by someone else meanwhile.", "error", 409)
    return _retry_answer(f"Job {job.id} ({job.func_name}) is queued again.", "success", 200)
