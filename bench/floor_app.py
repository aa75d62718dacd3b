"""The floor under OneKey's figures: the same web stack with nothing of OneKey in it.

A Flask app whose one route forwards the chat-completions body to the upstream through a urllib3
keep-alive pool and returns its JSON answer: no key, no limits, no hold, no metering, no settlement.
Served by `floor.py` with OneKey's own gunicorn.conf.py, so what it costs is what gunicorn, Flask, the
JSON round trips and one upstream call cost; OneKey's overhead above it is its gateway work.
"""

from __future__ import annotations

import json
import os

import urllib3
from flask import Flask, Response, request

app = Flask(__name__)
UPSTREAM = os.environ["FLOOR_UPSTREAM_URL"].rstrip("/")
pool = urllib3.PoolManager(maxsize=256, retries=False)


@app.post("/v1/chat/completions")
def chat_completions():
    body = json.loads(request.get_data())
    answer = pool.request(
        "POST",
        f"{UPSTREAM}/v1/chat/completions",
        body=json.dumps(body, separators=(",", ":")).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer floor"},
    )
    upstream = json.loads(answer.data)
    return Response(json.dumps(upstream, separators=(",", ":")), mimetype="application/json")


@app.get("/healthz")
def healthz():
    return "ok"
