"""Issue 10, item 10: the public /docs page. Every section is there, every example runs as pasted
against a live OneKey and the fake upstreams, and the error table and the limits are the gateway's
own: read from app/proxy/errors.py and the config, and checked against live answers."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
import requests
from sqlalchemy import select

from app.extensions import db
from app.models import Account, ApiKey, CatalogModel, UsageRecord
from app.proxy.errors import (
    ANTHROPIC,
    CONDITIONS,
    GOOGLE,
    OPENAI,
    UNPRICEABLE,
    ProxyError,
    error_body,
)
from app.proxy.gateway import MAX_JSON_DEPTH
from app.proxy.limits import INVALID_KEY_LIMIT_PER_MINUTE
from app.public.docs import CONDITION_DESCRIPTIONS, EXAMPLE_MODELS, PROVIDER_STATUSES
from app.services.accounts import suspend
from tests.proxy.conftest import make_funded_key
from tests.web.examples import (
    FAKE_NAMES,
    SERVER_LIMITS,
    live_server_with_fakes,
    page_examples,
    rows_by,
    run_examples,
    text_of,
)

SECTIONS = {
    "base-urls": "Base URLs",
    "authentication": "Your key",
    "examples": "Examples",
    "models": "Models",
    "streaming": "Streaming and usage",
    "key-info": "Balance of a key: /v1/key",
    "output-limit": "Output limits: x-onekey-max-tokens",
    "errors": "Errors",
    "limits": "Limits and Retry-After",
    "billing": "Billing",
}
UNKNOWN_KEY = "ok-" + "x" * 43


@pytest.fixture(scope="module")
def docs_server(app):
    with live_server_with_fakes(app) as server:
        yield server


def hello(provider: str) -> str:
    return f"Hello from {FAKE_NAMES[provider]}"


# --- the page --------------------------------------------------------------------------------


def test_docs_page_has_every_section_in_its_contents(client, catalog):
    response = client.get("/docs")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for section_id, heading in SECTIONS.items():
        match = re.search(
            rf'<section id="{section_id}" class="docs-section" aria-labelledby="([^"]+)">\s*'
            rf'<h2 id="\1">(.*?)</h2>',
            page,
            re.S,
        )
        assert match, f"no section {section_id}"
        assert text_of(match.group(2)) == heading
        assert f'<a href="#{section_id}">' in page
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "an id used twice"
    text = text_of(page)
    for route in ("/v1", "/anthropic", "/gemini"):
        assert f"http://localhost{route}" in page
    for form in ("Authorization: Bearer ok-", "x-api-key: ok-", "x-goog-api-key: ok-", "?key=ok-"):
        assert form in text
    for reason in UNPRICEABLE.values():
        assert reason[1:] in text


def test_docs_are_public_linked_from_every_page_and_script_free(client, catalog):
    for path in ("/", "/pricing", "/terms"):
        assert 'href="/docs"' in client.get(path).get_data(as_text=True)
    page = client.get("/docs").get_data(as_text=True)
    assert 'aria-current="page">Docs</a>' in page
    # The page's CSP admits no inline script or style: only files from the site itself.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert " style=" not in page and "<style" not in page
    for example in page_examples(page).values():
        assert f'data-copy-target="{example.id}"' in page


def test_examples_use_public_base_url_when_it_is_set(app, client, catalog):
    app.config["PUBLIC_BASE_URL"] = "https://api.onekey.example"
    try:
        page = client.get("/docs").get_data(as_text=True)
    finally:
        app.config["PUBLIC_BASE_URL"] = ""
    examples = page_examples(page)
    served = [e for e in examples.values() if e.id != "example-env"]
    assert served and all("https://api.onekey.example/" in e.source for e in served)
    assert "localhost" not in page


def test_examples_use_another_model_of_the_provider_when_theirs_is_disabled(app, client, catalog):
    with app.app_context():
        model = db.session.scalar(
            select(CatalogModel).where(CatalogModel.model_id == EXAMPLE_MODELS["anthropic"])
        )
        model.enabled = False
        db.session.commit()
    examples = page_examples(client.get("/docs").get_data(as_text=True))
    assert EXAMPLE_MODELS["anthropic"] not in examples["example-anthropic"].source
    assert '"claude-' in examples["example-anthropic"].source


# --- the examples, run -----------------------------------------------------------------------


EXPECTED_EXAMPLES = {
    "example-env",
    "example-auth-bearer",
    "example-auth-x-api-key",
    "example-auth-x-goog-api-key",
    "example-auth-query",
    "example-openai-chat",
    "example-openai-responses",
    "example-anthropic",
    "example-gemini",
    "example-models",
    "example-stream-openai",
    "example-stream-anthropic",
    "example-stream-gemini",
    "example-key",
    "example-max-tokens",
    "example-error",
}


def test_every_docs_example_runs_as_pasted(app, docs_server, catalog, tmp_path):
    key, account_id, _ = make_funded_key(app, "10")
    page = requests.get(f"{docs_server.url}/docs", timeout=10).text
    examples = page_examples(page)
    assert set(examples) == EXPECTED_EXAMPLES
    for example in examples.values():
        if example.id != "example-env":
            assert f"{docs_server.url}/" in example.source  # the page's own base URL
    outcomes = run_examples(examples, key, tmp_path)
    for example_id, outcome in outcomes.items():
        assert outcome.ok, f"{example_id} failed:\n{outcome.output}{outcome.errors}"
    out = {example_id: outcome.output for example_id, outcome in outcomes.items()}

    def curl_json(example_id: str) -> dict:
        return json.loads(out[example_id])

    assert hello("openai") in out["example-auth-bearer"]
    assert curl_json("example-auth-x-api-key")["content"][0]["text"] == hello("anthropic")
    for example_id in ("example-auth-x-goog-api-key", "example-auth-query"):
        reply = curl_json(example_id)
        assert reply["candidates"][0]["content"]["parts"][0]["text"] == hello("google")
    assert out["example-openai-chat"].splitlines() == [
        f"{EXAMPLE_MODELS[provider]} -> {hello(provider)}"
        for provider in ("openai", "anthropic", "google", "xai")
    ]
    assert out["example-openai-responses"].strip() == hello("openai")
    assert out["example-anthropic"].strip() == hello("anthropic")
    assert out["example-gemini"].strip() == hello("google")
    for example_id, provider in (
        ("example-stream-openai", "anthropic"),
        ("example-stream-anthropic", "anthropic"),
        ("example-stream-gemini", "google"),
    ):
        lines = out[example_id].splitlines()
        assert lines[0] == hello(provider)
        assert re.fullmatch(r"tokens in: \d+ out: \d+", lines[1]), lines
    assert out["example-error"].splitlines()[0] == "404 model_not_found"

    with app.app_context():
        enabled = set(
            db.session.scalars(select(CatalogModel.model_id).where(CatalogModel.enabled.is_(True)))
        )
        openai_model = db.session.scalar(
            select(CatalogModel).where(CatalogModel.model_id == EXAMPLE_MODELS["openai"])
        )
        streamed = db.session.scalars(
            select(UsageRecord).where(
                UsageRecord.account_id == account_id,
                UsageRecord.route == "chat.completions",
                UsageRecord.streamed.is_(True),
            )
        ).all()
    assert {m["id"] for m in curl_json("example-models")["data"]} == enabled
    # The output limit OneKey set: the model's maximum, which 10 credits pay for.
    assert out["example-max-tokens"].splitlines() == [
        f"output limit set by OneKey: {openai_model.max_output_tokens}",
        hello("openai"),
    ]
    # usage.cost is what the ledger debited for that request.
    assert len(streamed) == 1
    printed_cost = out["example-stream-openai"].splitlines()[2].removeprefix("cost in credits: ")
    assert float(printed_cost) == pytest.approx(streamed[0].cost_nanocredits / 1e9, abs=1e-12)
    # /v1/key ran after the shell examples before it had been billed, and nothing was held.
    info = curl_json("example-key")["data"]
    assert info["name"] == "test" and info["limit"] is None and info["held"] == "0"
    assert Decimal(info["balance"]) + Decimal(info["usage"]) == 10
    assert Decimal(info["usage"]) > 0


# --- the error table -------------------------------------------------------------------------


def expected_row(error: ProxyError) -> list[str]:
    openai = error_body(error, OPENAI)["error"]
    return [
        str(error.status),
        openai["type"],
        openai["code"],
        error_body(error, ANTHROPIC)["error"]["type"],
        error_body(error, GOOGLE)["error"]["status"],
    ]


def test_error_table_is_every_error_kind_of_the_gateway(client, catalog):
    assert set(CONDITION_DESCRIPTIONS) == set(CONDITIONS), "every error kind needs its sentence"
    rows = rows_by(client.get("/docs").get_data(as_text=True), "error-table", "data-condition")
    assert set(rows) == set(CONDITIONS)
    for condition, cells in rows.items():
        status, description, *codes = cells
        assert [status, *codes] == expected_row(ProxyError(condition, ""))
        assert description == CONDITION_DESCRIPTIONS[condition]
    statuses = [int(cells[0]) for cells in rows.values()]
    assert statuses == sorted(statuses)


def dialect_call(base: str, dialect: str, *, model: str | None = None, **kwargs):
    """POST a small generation request to the dialect's route."""
    if dialect == OPENAI:
        url = f"{base}/v1/chat/completions"
        body = {"model": model or "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    elif dialect == ANTHROPIC:
        url = f"{base}/anthropic/v1/messages"
        body = {
            "model": model or "claude-haiku-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "Hi"}],
        }
    else:
        url = f"{base}/gemini/v1beta/models/{model or 'gemini-2.5-flash'}:generateContent"
        body = {"contents": [{"parts": [{"text": "Hi"}]}]}
    kwargs.setdefault("json", body)
    return requests.post(url, timeout=10, **kwargs)


def answered_codes(response: requests.Response, dialect: str) -> dict:
    body = response.json()
    if dialect == OPENAI:
        return {"status": response.status_code, "type": body["error"]["type"],
                "code": body["error"]["code"]}  # fmt: skip
    if dialect == ANTHROPIC:
        return {"status": response.status_code, "type": body["error"]["type"]}
    assert body["error"]["code"] == response.status_code
    return {"status": response.status_code, "type": body["error"]["status"]}


def documented_codes(cells: list[str], dialect: str, status_column: int = 0) -> dict:
    status = int(cells[status_column])
    openai_type, openai_code, anthropic_type, google_status = cells[-4:]
    if dialect == OPENAI:
        return {"status": status, "type": openai_type, "code": openai_code}
    if dialect == ANTHROPIC:
        return {"status": status, "type": anthropic_type}
    return {"status": status, "type": google_status}


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_error_table_matches_the_live_answers_in_every_dialect(app, docs_server, catalog):
    base = docs_server.url
    rows = rows_by(requests.get(f"{base}/docs", timeout=10).text, "error-table", "data-condition")
    funded, _, rate_limited_key_id = make_funded_key(app, "10")
    unfunded, _, _ = make_funded_key(app, "0")
    limited, _, _ = make_funded_key(app, "10", limit_nanocredits=1)
    allowed_one, _, _ = make_funded_key(app, "10", allowed_models=["grok-3-mini"])
    suspended, suspended_account_id, _ = make_funded_key(app, "10")
    with app.app_context():
        db.session.get(ApiKey, rate_limited_key_id).rate_limit_rpm = 1
        suspend(db.session.get(Account, suspended_account_id), reason="test", actor_id=None)
        db.session.commit()
    too_large = b"x" * (int(SERVER_LIMITS["MAX_REQUEST_BYTES"]) + 1)
    prefixes = {OPENAI: "/v1", ANTHROPIC: "/anthropic/v1", GOOGLE: "/gemini/v1beta"}
    generation = {OPENAI: "chat/completions", ANTHROPIC: "messages",
                  GOOGLE: "models/gemini-2.5-flash:generateContent"}  # fmt: skip

    def provoke(dialect: str) -> dict[str, requests.Response]:
        prefix = f"{base}{prefixes[dialect]}"
        answers = {
            "invalid_request": dialect_call(base, dialect, headers=bearer(funded), data=b"{"),
            "invalid_api_key": dialect_call(base, dialect, headers=bearer(UNKNOWN_KEY)),
            "insufficient_credits": dialect_call(base, dialect, headers=bearer(unfunded)),
            "key_limit_reached": dialect_call(base, dialect, headers=bearer(limited)),
            "account_suspended": dialect_call(base, dialect, headers=bearer(suspended)),
            "model_not_allowed": dialect_call(base, dialect, headers=bearer(allowed_one)),
            "model_not_found": dialect_call(
                base, dialect, headers=bearer(funded), model="no-such-model"
            ),
            "route_not_found": requests.get(f"{prefix}/no-such-route", timeout=10),
            "method_not_allowed": requests.get(f"{prefix}/{generation[dialect]}", timeout=10),
            "request_too_large": dialect_call(
                base, dialect, headers=bearer(funded), data=too_large
            ),
        }
        # The key may make one request a minute: the second is refused (or the third, when
        # the first fell at the very end of a minute).
        for _ in range(3):
            answer = dialect_call(base, dialect, headers=bearer(funded))
            if answer.status_code == 429:
                break
        answers["rate_limited"] = answer
        return answers

    for dialect in (OPENAI, ANTHROPIC, GOOGLE):
        for condition, answer in provoke(dialect).items():
            assert answered_codes(answer, dialect) == documented_codes(rows[condition], dialect), (
                dialect,
                condition,
                answer.text,
            )
            if answer.status_code in (401, 402, 403):
                assert answer.headers["x-should-retry"] == "false"
            if condition == "rate_limited":
                # The seconds until the next minute, as the limits table says.
                assert 1 <= int(answer.headers["Retry-After"]) <= 60
            if condition == "method_not_allowed":
                assert answer.headers["Allow"] == "POST"


def test_provider_error_table_matches_what_the_gateway_makes_of_provider_errors(
    docs_server, catalog, app
):
    base = docs_server.url
    page = requests.get(f"{base}/docs", timeout=10).text
    rows = rows_by(page, "provider-error-table", "data-provider-status")
    assert [int(status) for status in rows] == list(PROVIDER_STATUSES)
    key, _, _ = make_funded_key(app, "10")
    for dialect in (OPENAI, ANTHROPIC, GOOGLE):
        for status, cells in rows.items():
            directive = f"Hi [[fake:error={status}]]"
            body = {
                OPENAI: {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": directive}]},
                ANTHROPIC: {"model": "claude-haiku-4-5", "max_tokens": 16,
                            "messages": [{"role": "user", "content": directive}]},
                GOOGLE: {"contents": [{"parts": [{"text": directive}]}]},
            }[dialect]  # fmt: skip
            answer = dialect_call(base, dialect, headers=bearer(key), json=body)
            assert int(cells[0]) == int(status)
            assert answered_codes(answer, dialect) == documented_codes(
                cells, dialect, status_column=1
            ), (dialect, status, answer.text)


# --- limits ----------------------------------------------------------------------------------


def test_limits_are_the_servers_configuration(docs_server, catalog):
    page = requests.get(f"{docs_server.url}/docs", timeout=10).text
    limits = {name: cells[1] for name, cells in rows_by(page, "limits-table", "data-limit").items()}
    assert limits["max_request_bytes"] == "3 MB (3,145,728 bytes)"
    assert limits["requests_per_minute"].startswith(f"{SERVER_LIMITS['RATE_LIMIT_RPM']} a minute")
    assert limits["in_flight_per_account"].startswith(
        f"{SERVER_LIMITS['MAX_CONCURRENT_PER_ACCOUNT']} at once"
    )
    assert limits["invalid_keys_per_minute"] == f"{INVALID_KEY_LIMIT_PER_MINUTE} a minute"
    assert limits["max_json_depth"] == f"{MAX_JSON_DEPTH} levels"
    env = docs_server.env
    assert limits["timeouts"] == (
        f"{env['UPSTREAM_CONNECT_TIMEOUT']} s to connect, "
        f"{env['UPSTREAM_READ_TIMEOUT']} s waiting for its next bytes"
    )


def test_default_limits_as_the_operator_contract_gives_them(client, catalog):
    page = client.get("/docs").get_data(as_text=True)
    limits = {name: cells[1] for name, cells in rows_by(page, "limits-table", "data-limit").items()}
    assert limits["max_request_bytes"] == "20 MB (20,971,520 bytes)"
    assert limits["requests_per_minute"].startswith("600 a minute")
    assert limits["in_flight_per_account"].startswith("32 at once")


def test_invalid_keys_from_one_address_are_throttled_as_documented(docs_server, catalog):
    # Twice the limit, in case a minute ends on the way.
    statuses = []
    for _ in range(2 * INVALID_KEY_LIMIT_PER_MINUTE + 1):
        answer = requests.get(f"{docs_server.url}/v1/key", headers=bearer(UNKNOWN_KEY), timeout=10)
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            break
    assert statuses[-1] == 429 and 1 <= int(answer.headers["Retry-After"]) <= 60
    assert set(statuses[:-1]) == {401}
    assert len(statuses) > INVALID_KEY_LIMIT_PER_MINUTE
