"""Measure the floor: gunicorn + Flask + one upstream call, no OneKey (bench/floor_app.py).

    .venv/bin/python bench/floor.py [--duration 15] [--worker-class gthread]

Starts the fake upstream and the floor app under OneKey's gunicorn.conf.py (2 workers), runs wrk at
c=1 and c=16 (non-streaming) as bench/run.py does, and prints p50 latency, requests/s and the server's
CPU per request, with the bare upstream's in the same run for the overhead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as harness


def measure(url: str, server, concurrency: int, seconds: float) -> dict:
    body = harness.body_for(False, 0)
    harness.run_wrk(url, "", body, concurrency, 2)  # warm-up
    before = harness.tree_cpu(server.tree())
    result = harness.run_wrk(url, "", body, concurrency, seconds)
    cpu = harness.cpu_delta(before, harness.tree_cpu(server.tree()))
    result["server_cpu_ms_per_req"] = 1000 * cpu / max(result["requests"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--worker-class", default="gthread")
    args = parser.parse_args()
    harness.WORK.mkdir(exist_ok=True)
    fake_port = harness.free_port()
    fake = harness.Server(
        "floor-fake-upstream",
        [sys.executable, str(harness.BENCH / "fake_upstream.py"), "--port", str(fake_port)],
        os.environ.copy(),
        harness.BENCH,
        f"http://127.0.0.1:{fake_port}/healthz",
    ).start()
    port = harness.free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "WEB_WORKER_CLASS": args.worker_class,
        "PYTHONPATH": str(harness.BENCH),
        "FLOOR_UPSTREAM_URL": f"http://127.0.0.1:{fake_port}",
    }
    floor = harness.Server(
        f"floor-{args.worker_class}",
        [
            str(harness.MAIN_PY),
            "-m",
            "gunicorn",
            "-c",
            str(harness.ROOT / "gunicorn.conf.py"),
            "floor_app:app",
        ],
        env,
        harness.ROOT,
        f"http://127.0.0.1:{port}/healthz",
    ).start()
    try:
        rows = []
        for name, url, server in (
            ("direct (fake upstream)", f"http://127.0.0.1:{fake_port}/v1/chat/completions", fake),
            (
                f"floor: gunicorn {args.worker_class} + Flask + urllib3",
                f"http://127.0.0.1:{port}/v1/chat/completions",
                floor,
            ),
        ):
            c1 = measure(url, server, 1, args.duration)
            c16 = measure(url, server, 16, args.duration)
            rows.append((name, c1, c16))
        print("| target | c=1 p50 ms | c=16 req/s | server CPU ms/req at c=16 |")
        print("| --- | ---: | ---: | ---: |")
        for name, c1, c16 in rows:
            print(
                f"| {name} | {c1['p50_us'] / 1000:.2f} | {c16['rps']:,.0f} | "
                f"{c16['server_cpu_ms_per_req']:.2f} |"
            )
        direct = rows[0][1]["p50_us"]
        print(f"\nfloor overhead at c=1 (p50): {(rows[1][1]['p50_us'] - direct) / 1000:.2f} ms")
    finally:
        floor.stop()
        fake.stop()


if __name__ == "__main__":
    main()
