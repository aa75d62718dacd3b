"""What the Prometheus metrics (app/metrics.py) add to one proxied request, in CPU µs.

Per request the proxy pays the request hooks (timer start, provider noted, one labelled counter
increment, one histogram observation) and, at settlement, two histogram observations. This times
exactly those calls, on the real metric objects, in a fresh interpreter for each mode:

- multiprocess: PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported, as under
  gunicorn (every value lives in a memory-mapped file);
- single: the default in-memory registry (`flask run`, the tests' app).

    .venv/bin/python bench/metrics_overhead.py
"""

# ruff: noqa: S603 (runs this script again, in a fresh interpreter)
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

ROUNDS = 20_000
REPEATS = 7


def measure() -> dict:
    from flask import Response

    from app import create_app, metrics

    app = create_app({"TESTING": True, "SECRET_KEY": "b", "KEY_HASH_SECRET": "b"})
    response = Response(status=200)
    best = {}
    with app.test_request_context("/v1/chat/completions", method="POST"):
        from flask import request

        request.url_rule = app.url_map.bind("localhost").match(
            "/v1/chat/completions", method="POST", return_rule=True
        )[0]

        def request_hooks():
            metrics._start_timer()
            metrics.note_provider("openai")
            metrics._count_request(response)

        def settlement():
            metrics.observe_settlement("openai", "ok", 0.42, 0.12)

        for name, step in (("request hooks", request_hooks), ("settlement", settlement)):
            step()  # the series exist (their first use maps the file)
            timings = []
            for _ in range(REPEATS):
                started = time.process_time()
                for _ in range(ROUNDS):
                    step()
                timings.append((time.process_time() - started) / ROUNDS * 1e6)
            best[name] = min(timings)
    best["total"] = best["request hooks"] + best["settlement"]
    return best


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure()))
        return
    results = {}
    for mode in ("multiprocess", "single"):
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with tempfile.TemporaryDirectory(prefix="onekey-metrics-bench-") as folder:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = folder
            out = subprocess.run(
                [sys.executable, __file__, "--child"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            ).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    print(f"CPU µs per proxied request (best of {REPEATS} × {ROUNDS:,})")
    print("| mode | request hooks | settlement | total |")
    print("| --- | ---: | ---: | ---: |")
    for mode, figures in results.items():
        row = " | ".join(f"{figures[k]:.2f}" for k in ("request hooks", "settlement", "total"))
        print(f"| {mode} | {row} |")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
