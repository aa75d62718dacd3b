"""Issue 9 #9 against a real gunicorn: a web worker killed with -9 in the middle of a stream
leaves its hold open; the sweep releases it once the worker's heartbeat has been missing for a
TTL, while the hold of a stream on the worker that replaced it stays."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import requests
from sqlalchemy import select

from app.extensions import db
from app.models import Account, Hold
from app.services.ledger import check_invariants
from app.tasks.maintenance import release_orphaned_holds_job
from tests.proxy.conftest import LiveServer, make_funded_key

TTL = 2
SLOW_STREAM = {
    "model": "gpt-4o-mini",
    "stream": True,
    "messages": [{"role": "user", "content": "x [[fake:slow=300 chunks=200]]"}],
}


def _workers(master_pid: int) -> set[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return {int(pid) for pid in children}


def _start_stream(server: LiveServer, key: str) -> None:
    def read():
        try:
            with requests.post(
                f"{server.url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json=SLOW_STREAM,
                stream=True,
                timeout=60,
            ) as response:
                for _ in response.iter_lines():
                    pass
        except requests.RequestException:
            pass  # the worker serving it was killed

    threading.Thread(target=read, daemon=True).start()


def _open_holds(app, account_id: int) -> list[int]:
    with app.app_context():
        ids = db.session.scalars(
            select(Hold.id).where(Hold.account_id == account_id, Hold.status == "open")
        ).all()
        db.session.remove()
        return list(ids)


def _wait_for(condition, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def _sweep(app) -> int:
    with app.app_context():
        released = release_orphaned_holds_job()
        db.session.remove()
        return released


def test_a_killed_workers_hold_is_released_and_a_live_ones_is_not(app, fakes, catalog):
    server = LiveServer(
        app,
        fakes,
        WEB_CONCURRENCY="1",
        HEARTBEAT_INTERVAL_SECONDS="1",
        HEARTBEAT_TTL_SECONDS=str(TTL),
    )
    server.start()
    saved_ttl = app.config["HEARTBEAT_TTL_SECONDS"]
    app.config["HEARTBEAT_TTL_SECONDS"] = TTL
    try:
        doomed_key, doomed_account, _ = make_funded_key(app, "5")
        live_key, live_account, _ = make_funded_key(app, "5")
        (victim,) = _workers(server.process.pid)
        _start_stream(server, doomed_key)
        (orphan,) = _wait_for(lambda: _open_holds(app, doomed_account))
        os.kill(victim, signal.SIGKILL)
        # gunicorn replaces the worker; a stream on the new one is a live request.
        _wait_for(lambda: _workers(server.process.pid) - {victim})
        _start_stream(server, live_key)
        (live,) = _wait_for(lambda: _open_holds(app, live_account))
        time.sleep(TTL + 0.5)  # the killed worker's heartbeat has lapsed
        assert _sweep(app) == 0  # first seen missing: noted
        time.sleep(TTL + 0.1)
        assert _sweep(app) == 1
        with app.app_context():
            assert db.session.get(Hold, orphan).status == "expired"
            assert db.session.get(Hold, live).status == "open"
            assert db.session.get(Account, doomed_account).held_nanocredits == 0
            db.session.remove()
    finally:
        app.config["HEARTBEAT_TTL_SECONDS"] = saved_ttl
        server.stop()
    with app.app_context():
        # The graceful stop settled the live stream; the books balance.
        assert db.session.get(Hold, live).status == "settled"
        assert check_invariants() == []
