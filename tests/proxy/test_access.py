"""Who may call: keys in every accepted form, refusals that apply on the very next request in every
process, credit and key limits with the exact 402 contract, rate limits."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import openai
import pytest
import requests
from sqlalchemy import select, update

from app.extensions import db
from app.models import Account, ApiKey, UsageRecord
from app.models.types import utcnow
from app.services import accounts
from app.services.ledger import check_invariants
from tests.proxy.billing import open_holds

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def post(server, path="/v1/chat/completions", *, headers=None, params=None, json=BODY):
    return requests.post(
        f"{server.url}{path}", headers=headers or {}, params=params, json=json, timeout=30
    )


def test_key_accepted_in_every_documented_form(live_server, funded_key):
    key, _, _ = funded_key("5")
    for headers, params in [
        ({"Authorization": f"Bearer {key}"}, None),
        ({"x-api-key": key}, None),
        ({"x-goog-api-key": key}, None),
        ({}, {"key": key}),
    ]:
        assert post(live_server, headers=headers, params=params).status_code == 200


def test_query_string_keys_never_reach_the_access_log(live_server, funded_key):
    key, _, _ = funded_key("5")
    post(live_server, params={"key": key})
    assert key not in live_server.logs()


@pytest.mark.parametrize(
    ("path", "headers_for", "check"),
    [
        (
            "/v1/chat/completions",
            lambda k: {"Authorization": f"Bearer {k}"},
            lambda b: b["error"]["code"] == "invalid_api_key",
        ),
        (
            "/anthropic/v1/messages",
            lambda k: {"x-api-key": k},
            lambda b: b["error"]["type"] == "authentication_error",
        ),
        (
            "/gemini/v1beta/models/gemini-3.5-flash-lite:generateContent",
            lambda k: {"x-goog-api-key": k},
            lambda b: b["error"]["status"] == "UNAUTHENTICATED",
        ),
    ],
)
def test_unknown_key_is_401_in_each_dialect(live_server, catalog, path, headers_for, check):
    for key in ("", "ok-" + "A" * 43, "sk-not-ours", "ok-short"):
        response = post(live_server, path, headers=headers_for(key), json={"model": "x"})
        assert response.status_code == 401
        assert response.headers["x-should-retry"] == "false"
        assert check(response.json())


def test_revocation_applies_on_the_next_request_in_every_process(app, live_server, funded_key):
    key, _, key_id = funded_key("5")
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(4):  # both gunicorn workers have served it
        assert post(live_server, headers=headers).status_code == 200
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow()))
        db.session.commit()
    for _ in range(4):
        assert post(live_server, headers=headers).status_code == 401


def test_expired_key_is_refused(app, live_server, funded_key):
    key, _, key_id = funded_key("5")
    with app.app_context():
        db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert post(live_server, headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_suspension_applies_at_once(app, live_server, funded_key):
    key, account_id, _ = funded_key("5")
    headers = {"Authorization": f"Bearer {key}"}
    assert post(live_server, headers=headers).status_code == 200
    with app.app_context():
        accounts.suspend(db.session.get(Account, account_id), reason="abuse", actor_id=None)
        db.session.commit()
    for _ in range(4):
        response = post(live_server, headers=headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "account_suspended"
        assert response.headers["x-should-retry"] == "false"


def test_model_outside_the_allow_list_is_403(live_server, funded_key):
    key, _, _ = funded_key("5", allowed_models=["claude-haiku-4-5"])
    response = post(live_server, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"


def test_unknown_and_disabled_models_are_404(app, live_server, funded_key):
    key, _, _ = funded_key("5")
    headers = {"Authorization": f"Bearer {key}"}
    response = post(live_server, headers=headers, json={**BODY, "model": "gpt-99"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    from app.models import CatalogModel

    with app.app_context():
        db.session.execute(
            update(CatalogModel).where(CatalogModel.model_id == "gpt-4o-mini").values(enabled=False)
        )
        db.session.commit()
    assert post(live_server, headers=headers).status_code == 404


def test_insufficient_credit_is_402_with_the_numbers(app, live_server, funded_key):
    key, _account_id, _ = funded_key("0.000001")
    response = post(
        live_server,
        headers={"Authorization": f"Bearer {key}"},
        json={**BODY, "max_completion_tokens": 100_000},
    )
    assert response.status_code == 402
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    metadata = error["metadata"]
    assert metadata["balance"] == "0.000001"
    assert metadata["held"] == "0"
    assert float(metadata["required"]) > 0.000001
    assert isinstance(metadata["max_affordable_output_tokens"], int)
    assert open_holds(app) == 0


def test_gateway_sets_an_affordable_output_limit_when_the_client_sets_none(
    app, live_server, fakes, funded_key
):
    key, _, _ = funded_key("0.01")
    response = post(live_server, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    limit = int(response.headers["x-onekey-max-tokens"])
    call = fakes.last_call("openai")
    assert call.body["max_completion_tokens"] == limit
    # The model's maximum, capped at what the account can afford.
    assert 0 < limit <= 16_384


def test_client_limit_is_never_silently_capped(app, live_server, fakes, funded_key):
    key, _, _ = funded_key("0.05")
    response = post(
        live_server,
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "claude-opus-5-5", "max_tokens": 32_000, "messages": BODY["messages"]},
    )
    assert response.status_code == 402
    affordable = response.json()["error"]["metadata"]["max_affordable_output_tokens"]
    assert 0 < affordable < 32_000
    response = post(
        live_server,
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "claude-opus-5-5", "max_tokens": affordable, "messages": BODY["messages"]},
    )
    assert response.status_code == 200
    assert "x-onekey-max-tokens" not in response.headers
    assert fakes.last_call("anthropic").body["max_tokens"] == affordable


def test_per_key_credit_limit(app, live_server, funded_key):
    key, _account_id, key_id = funded_key("5", limit_nanocredits=60_000)
    headers = {"Authorization": f"Bearer {key}"}
    statuses = []
    for _ in range(12):
        response = post(live_server, headers=headers, json={**BODY, "max_completion_tokens": 20})
        statuses.append(response.status_code)
        if response.status_code == 402:
            assert response.json()["error"]["code"] == "key_limit_reached"
    assert 200 in statuses and 402 in statuses
    with app.app_context():
        key_row = db.session.get(ApiKey, key_id)
        assert key_row.usage_nanocredits <= 60_000
        spent = sum(
            db.session.scalars(
                select(UsageRecord.cost_nanocredits).where(UsageRecord.api_key_id == key_id)
            )
        )
        assert spent == key_row.usage_nanocredits
        assert check_invariants() == []


def test_key_endpoint_reports_exact_credit_strings(app, live_server, funded_key):
    key, _, _ = funded_key("12.345678912", limit_nanocredits=7_000_000_001)
    post(live_server, headers={"Authorization": f"Bearer {key}"})
    data = requests.get(
        f"{live_server.url}/v1/key", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()["data"]
    assert data["name"] == "test"
    assert data["held"] == "0"
    assert Decimal(data["usage"]) > 0

    assert Decimal(data["balance"]) == Decimal("12.345678912") - Decimal(data["usage"])
    assert data["limit"] == "7.000000001"
    assert Decimal(data["limit_remaining"]) == Decimal("7.000000001") - Decimal(data["usage"])


def test_requests_per_minute_per_key(app, live_server, funded_key):
    key, _, key_id = funded_key("5")
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(rate_limit_rpm=3))
        db.session.commit()
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0)
    for _ in range(3):
        client.chat.completions.create(**BODY)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(**BODY)
    assert int(raised.value.response.headers["retry-after"]) >= 1
    assert raised.value.body["code"] == "rate_limited"


def test_invalid_keys_throttle_the_address(live_server, catalog):
    for _ in range(20):
        assert (
            post(live_server, headers={"Authorization": "Bearer ok-" + "B" * 43}).status_code == 401
        )
    response = post(live_server, headers={"Authorization": "Bearer ok-" + "C" * 43})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1


def test_concurrent_requests_per_account_whatever_request_id_the_client_sends(app, fakes, catalog):
    from concurrent.futures import ThreadPoolExecutor

    from tests.proxy.conftest import LiveServer, make_funded_key

    server = LiveServer(app, fakes, MAX_CONCURRENT_PER_ACCOUNT="2")
    server.start()
    try:
        key, _, _ = make_funded_key(app, "5")
        slow = {
            **BODY,
            "stream": True,
            "messages": [{"role": "user", "content": "x [[fake:slow=400 chunks=4]]"}],
        }

        def call(_):
            # Every request claims the same id: it must not let them share one slot.
            headers = {"Authorization": f"Bearer {key}", "X-Request-Id": "same-id"}
            response = post(server, headers=headers, json=slow)
            return response.status_code, response.headers.get("Retry-After")

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(call, range(6)))
        assert sorted(status for status, _ in answers) == [200, 200, 429, 429, 429, 429]
        assert all(wait == "1" for status, wait in answers if status == 429)
        ids = {post(server, headers={"Authorization": f"Bearer {key}"}).headers["x-request-id"]}
        assert "same-id" not in ids
    finally:
        server.stop()
    assert open_holds(app) == 0
    with app.app_context():
        assert check_invariants() == []
