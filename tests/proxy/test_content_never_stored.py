"""No content is stored or logged (DESIGN.md, "Proxy contract"): a canary string sent in the
prompts of every route, in every place a prompt can carry text (system and developer messages,
earlier turns, tool definitions and tool results, Responses instructions, Gemini system
instructions), streaming and not, and on the failure paths (upstream 4xx and 5xx, an in-stream
provider error, a drop mid-stream, an answer without usage, the gateway's own 400, 402 and 404),
never appears in the database (every row of every table, and the SQLite files themselves), the
server's logs, or Redis (every key name, and every value of every type, RQ's compressed job
payloads decompressed).

test_money_under_load.py checks the chat route and one native call for string, hash and list keys;
this widens it to every route and every Redis type.
"""

from __future__ import annotations

import contextlib
import json
import uuid
import zlib

import anthropic
import openai
import pytest
import requests
from google.genai import errors as genai_errors
from google.genai import types
from sqlalchemy import select

from app.extensions import db
from tests.proxy.exact import (
    chat,
    genai_client,
    generate,
    messages,
    openai_client,
    responses,
    settled_record,
)

CANARY = f"CANARY-{uuid.uuid4().hex}-never-store-me"
SDK_ERRORS = (openai.APIError, anthropic.APIError, genai_errors.APIError)
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated")


@pytest.fixture(autouse=True)
def _cheap_password_hashes(monkeypatch):
    from werkzeug.security import generate_password_hash

    monkeypatch.setattr(
        "app.services.accounts.generate_password_hash",
        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1"),
    )


def chat_messages(extra: str = "") -> list[dict]:
    return [
        {"role": "system", "content": f"You are helpful. {CANARY}"},
        {"role": "user", "content": f"Earlier question {CANARY}"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": json.dumps({"q": CANARY})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": f"result {CANARY}"},
        {"role": "user", "content": [{"type": "text", "text": f"Now answer {CANARY} {extra}"}]},
    ]


CHAT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": f"Looks things up {CANARY}",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]
CHAT_MODELS = ("gpt-4o-mini", "grok-3-mini", "claude-haiku-4-5", "gemini-3.5-flash-lite")


def attempt(fn, *args, **kwargs):
    """Run one request; the failure paths raise the SDK's error, which is not the point here."""
    with contextlib.suppress(*SDK_ERRORS):
        return fn(*args, **kwargs)


def every_route(server, key: str) -> None:
    for model in CHAT_MODELS:
        for stream in (False, True):
            chat(server, key, model, chat_messages(), stream=stream, tools=CHAT_TOOLS)
        # a tool call answered, streamed
        chat(server, key, model, chat_messages("[[fake:tool]]"), stream=True, tools=CHAT_TOOLS)
    for model in ("gpt-5-mini", "grok-3-mini"):
        for stream in (False, True):
            responses(
                server,
                key,
                model,
                [
                    {"role": "developer", "content": f"Be brief {CANARY}"},
                    {"role": "user", "content": [{"type": "input_text", "text": CANARY}]},
                ],
                stream=stream,
                instructions=f"Instructions {CANARY}",
            )
    anthropic_messages = [
        {"role": "user", "content": f"Hello {CANARY}"},
        {"role": "assistant", "content": [{"type": "text", "text": f"Earlier {CANARY}"}]},
        {"role": "user", "content": [{"type": "text", "text": f"Again {CANARY}"}]},
    ]
    for stream in (False, True):
        messages(
            server,
            key,
            "claude-haiku-4-5",
            anthropic_messages,
            stream=stream,
            system=f"System {CANARY}",
            tools=[
                {
                    "name": "lookup",
                    "description": f"Looks up {CANARY}",
                    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                }
            ],
        )
    counted = anthropic.Anthropic(
        base_url=f"{server.url}/anthropic", api_key=key, max_retries=0
    ).messages.count_tokens(
        model="claude-haiku-4-5", system=f"System {CANARY}", messages=anthropic_messages
    )
    assert counted.input_tokens > 10
    gemini_config = {"system_instruction": f"System {CANARY}"}
    for version in ("v1", "v1beta"):
        for stream in (False, True):  # the SDK streams with alt=sse
            answer = generate(
                server,
                key,
                "gemini-3.5-flash-lite",
                [f"Hello {CANARY}"],
                stream=stream,
                api_version=version,
                **gemini_config,
            )
            assert answer.text == "Hello from gemini"
        # streamGenerateContent without alt=sse (a JSON array), and with it, as raw REST
        for query in ("", "?alt=sse"):
            response = requests.post(
                f"{server.url}/gemini/{version}/models/gemini-3.5-flash-lite:streamGenerateContent"
                + query,
                headers={"x-goog-api-key": key},
                json={
                    "systemInstruction": {"parts": [{"text": CANARY}]},
                    "contents": [{"role": "user", "parts": [{"text": f"Hi {CANARY}"}]}],
                },
                timeout=30,
            )
            assert response.status_code == 200
            assert b"Hello" in response.content


def failure_paths(server, key: str, broke_key: str) -> None:
    client = openai_client(server, key)
    for directive in ("error=400", "error=500"):
        prompt = f"{CANARY} [[fake:{directive}]]"
        for model in CHAT_MODELS:
            attempt(chat, server, key, model, [{"role": "user", "content": prompt}])
        attempt(messages, server, key, "claude-haiku-4-5", [{"role": "user", "content": prompt}])
        attempt(generate, server, key, "gemini-3.5-flash-lite", prompt)
    for model in CHAT_MODELS:
        attempt(
            chat,
            server,
            key,
            model,
            [{"role": "user", "content": f"{CANARY} [[fake:midstream_error]]"}],
            stream=True,
        )
        chat(server, key, model, [{"role": "user", "content": f"{CANARY} [[fake:nousage]]"}])
    attempt(responses, server, key, "gpt-5-mini", f"{CANARY} [[fake:drop=1]]", stream=True)
    attempt(
        messages,
        server,
        key,
        "claude-haiku-4-5",
        [{"role": "user", "content": f"{CANARY} [[fake:drop=2]]"}],
        stream=True,
    )
    attempt(
        generate, server, key, "gemini-3.5-flash-lite", f"{CANARY} [[fake:drop=1]]", stream=True
    )
    # The gateway's own refusals, before anything goes upstream.
    for body in (
        {
            "model": "gpt-4o-mini",
            "stream": "yes",
            "messages": [{"role": "user", "content": CANARY}],
        },
        {"model": "no-such-model", "messages": [{"role": "user", "content": CANARY}]},
        {"model": "gpt-4o-mini", "messages": CANARY},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": CANARY}], "n": CANARY},
    ):
        response = requests.post(
            f"{server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json=body,
            timeout=30,
        )
        assert 400 <= response.status_code < 500
    with pytest.raises(openai.APIStatusError) as refused:  # no credit at all: a 402
        openai_client(server, broke_key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": CANARY}]
        )
    assert refused.value.status_code == 402
    with pytest.raises(genai_errors.ClientError), genai_client(server, broke_key) as gclient:
        gclient.models.generate_content(
            model="gemini-3.5-flash-lite",
            contents=CANARY,
            config=types.GenerateContentConfig(max_output_tokens=100),
        )
    requests.post(
        f"{server.url}/anthropic/v1/messages",
        headers={"x-api-key": key},
        data=f'{{"model": "claude-haiku-4-5", "messages": "{CANARY}"',  # broken JSON
        timeout=30,
    )
    # The client leaves mid-stream.
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": f"{CANARY} [[fake:slow=100 chunks=20]]"}],
        stream=True,
    )
    next(iter(stream))
    stream.close()


# --- where content must never be -----------------------------------------------------------------


def _contains(blob) -> bool:
    needle = CANARY.encode()
    if blob is None:
        return False
    if isinstance(blob, str):
        return CANARY in blob
    if isinstance(blob, bytes | bytearray | memoryview):
        data = bytes(blob)
        if needle in data:
            return True
        with contextlib.suppress(zlib.error):  # RQ keeps job payloads zlib-compressed
            return needle in zlib.decompress(data)
        return False
    if isinstance(blob, dict | list | tuple):
        return CANARY in json.dumps(blob, default=str, ensure_ascii=False) or any(
            _contains(item) for item in (blob.items() if isinstance(blob, dict) else blob)
        )
    return CANARY in str(blob)


def database_hits(app) -> list[str]:
    hits = []
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(select(table)).mappings():
                for column, value in row.items():
                    if _contains(value):
                        hits.append(f"{table.name}.{column}")
        if db.engine.dialect.name == "sqlite":
            path = db.engine.url.database
            for suffix in ("", "-wal", "-journal"):
                with contextlib.suppress(FileNotFoundError), open(path + suffix, "rb") as raw:
                    if CANARY.encode() in raw.read():
                        hits.append(f"sqlite file {path}{suffix}")
        db.session.remove()
    return hits


def redis_hits(app) -> list[str]:
    redis = app.extensions["onekey_redis"]
    hits = []
    for name in redis.scan_iter(count=1000):
        if _contains(name):
            hits.append(f"key name {name!r}")
        kind = redis.type(name).decode()
        if kind == "string":
            values = [redis.get(name)]
        elif kind == "hash":
            values = [part for pair in redis.hgetall(name).items() for part in pair]
        elif kind == "list":
            values = redis.lrange(name, 0, -1)
        elif kind == "set":
            values = list(redis.smembers(name))
        elif kind == "zset":
            values = [member for member, _ in redis.zrange(name, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [
                part for _, fields in redis.xrange(name) for pair in fields.items() for part in pair
            ]
        else:
            values = [redis.dump(name)]
        if any(_contains(value) for value in values):
            hits.append(f"{kind} {name!r}")
    return hits


def test_canary_on_every_route_is_never_stored_logged_or_cached(
    app, live_server, fakes, funded_key
):
    key, account_id, _ = funded_key("50")
    broke_key, _, _ = funded_key("0")
    every_route(live_server, key)
    failure_paths(live_server, key, broke_key)

    # It did travel: every upstream route the fakes serve received it.
    fakes.wait_for_calls(len(fakes.calls), timeout=20)
    reached = {call.path.split(":")[-1] for call in fakes.calls if CANARY in json.dumps(call.body)}
    assert {
        "/openai/v1/chat/completions",
        "/openai/v1/responses",
        "/xai/v1/chat/completions",
        "/xai/v1/responses",
        "/anthropic/v1/messages",
        "/anthropic/v1/messages/count_tokens",
        "generateContent",
        "streamGenerateContent",
    } <= reached

    with app.app_context():
        # Every metered request settled before looking (its record is what could leak).
        from app.models import UsageRecord

        records = db.session.scalar(
            select(db.func.count())
            .select_from(UsageRecord)
            .where(UsageRecord.account_id == account_id)
        )
        db.session.remove()
    assert records > 40
    assert database_hits(app) == []
    assert redis_hits(app) == []
    assert CANARY not in live_server.logs()


def test_the_scanners_would_see_a_canary(app, live_server, fakes, funded_key):
    """The checks above can fail: a canary planted in each store is found."""
    key, account_id, _ = funded_key("1")
    redis = app.extensions["onekey_redis"]
    redis.xadd("planted:stream", {"f": CANARY})
    redis.zadd("planted:zset", {CANARY: 1})
    redis.sadd("planted:set", zlib.compress(CANARY.encode()))
    assert len(redis_hits(app)) == 3
    with app.app_context():
        from app.models import Account

        db.session.get(Account, account_id).status_reason = CANARY
        db.session.commit()
    assert database_hits(app)[:1] == ["accounts.status_reason"]
    # and a live request leaves one usage record, none of it content
    chat(live_server, key, "gpt-4o-mini", [{"role": "user", "content": "hi"}])
    settled_record(app, account_id, 10**9)
