"""OpenAI prompt-cache writes on the GPT-6 family, through the official SDK: the writes the
provider reports (inside prompt_tokens / input_tokens) are recorded as cache_write_5m and billed
at the catalogue's write price (1.25x input), the rest of the prompt at the input price.

The expected bill is worked out here from the bundled catalogue file and the counts the fake was
asked for, in integers, without the gateway's metering or pricing code."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, LedgerEntry, UsageRecord
from app.services.money import credits_to_nanos
from tests.proxy.billing import wait_for_settlement

MODEL = "gpt-6.1-terra"
CATALOGUE_FILE = Path(__file__).resolve().parents[2] / "app" / "catalog" / "models.json"
ENTRY = next(m for m in json.loads(CATALOGUE_FILE.read_text())["models"] if m["id"] == MODEL)
GRANT = "5"


def half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def sell_prices(app, tier_prices: dict) -> dict[str, int]:
    """List prices (USD per 1M tokens) as sell prices in nanocredits per 1M tokens."""
    margin = app.config["MARGIN_BPS"]
    return {
        name: half_up(int(Decimal(price["usd"]) * 10**9) * (10_000 + margin), 10_000)
        for name, price in tier_prices.items()
    }


def expected_bill(app, prompt: int, cached: int, writes: int, output: int) -> tuple[int, dict]:
    long_context = ENTRY["long_context"]
    tier = ENTRY["prices"]
    if prompt > long_context["threshold_tokens"]:
        tier = long_context["prices"]
    prices = sell_prices(app, tier)
    total = (
        (prompt - cached - writes) * prices["input"]
        + cached * prices["cache_read"]
        + writes * prices["cache_write_5m"]
        + output * prices["output"]
    )
    return half_up(total, 1_000_000), prices


def client(server, key):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


# (words of text, cached, writes): prompt = 10 + words + cached + writes (the fake's rule).
CASES = [
    pytest.param("Shared context [[fake:cached=700 cache_write=333]]", 700, 333, id="base-tier"),
    pytest.param(
        "Shared context [[fake:cached=150000 cache_write=130001]]",
        150_000,
        130_001,
        id="long-context-tier",
    ),
]


def settled(app, account_id: int) -> tuple[UsageRecord, list[int], int]:
    wait_for_settlement(app, account_id)
    with app.app_context():
        record = db.session.scalar(select(UsageRecord).where(UsageRecord.account_id == account_id))
        debits = db.session.scalars(
            select(LedgerEntry.amount_nanocredits).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == "usage"
            )
        ).all()
        balance = db.session.get(Account, account_id).balance_nanocredits
        db.session.expunge(record)
        return record, debits, balance


def fake_prompt(text: str, cached: int, writes: int) -> int:
    """The fake's prompt count: 10 + whitespace-separated words (directives too) + C + W."""
    return 10 + len(text.split()) + cached + writes


def check_bill(app, account_id: int, text: str, cached: int, writes: int, reported: dict, route):
    prompt = fake_prompt(text, cached, writes)
    output = 6  # 3 chunks, 2 tokens each
    details = reported["input_tokens_details" if route == "responses" else "prompt_tokens_details"]
    assert details["cache_write_tokens"] == writes
    assert reported["input_tokens" if route == "responses" else "prompt_tokens"] == prompt
    cost, prices = expected_bill(app, prompt, cached, writes, output)
    # The write price is the catalogue's own, above the input price: billing writes as input
    # (the old behaviour) would give a different, lower bill.
    assert prices["cache_write_5m"] > prices["input"]
    record, debits, balance = settled(app, account_id)
    assert record.status == "ok"
    assert (
        record.input_tokens,
        record.cache_read_tokens,
        record.cache_write_5m_tokens,
        record.cache_write_1h_tokens,
        record.output_tokens,
    ) == (prompt - cached - writes, cached, writes, 0, output)
    assert record.prices_applied["cache_write_5m"] == prices["cache_write_5m"]
    assert record.cost_nanocredits == cost
    assert debits == [-cost]
    assert balance == credits_to_nanos(GRANT) - cost
    return cost


@pytest.mark.parametrize(("text", "cached", "writes"), CASES)
@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_cache_writes(
    app, live_server, fakes, funded_key, text, cached, writes, stream
):
    key, account_id, _ = funded_key(GRANT)
    request = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    if stream:
        chunks = list(
            client(live_server, key).chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
            "Hello from openai"
        )
        [usage] = [c.usage for c in chunks if not c.choices]
    else:
        reply = client(live_server, key).chat.completions.create(**request)
        assert reply.choices[0].message.content == "Hello from openai"
        usage = reply.usage
    call = fakes.wait_for_calls(1)[0]
    assert call.provider == "openai"
    cost = check_bill(app, account_id, text, cached, writes, call.usage_reported, "chat")
    assert usage.prompt_tokens_details.cache_write_tokens == writes
    assert usage.cost == pytest.approx(cost / 1e9)


@pytest.mark.parametrize(("text", "cached", "writes"), CASES)
@pytest.mark.parametrize("stream", [False, True])
def test_responses_cache_writes(app, live_server, fakes, funded_key, text, cached, writes, stream):
    key, account_id, _ = funded_key(GRANT)
    if stream:
        events = list(
            client(live_server, key).responses.create(model=MODEL, input=text, stream=True)
        )
        assert events[-1].type == "response.completed"
        usage = events[-1].response.usage
    else:
        reply = client(live_server, key).responses.create(model=MODEL, input=text)
        assert reply.output_text == "Hello from openai"
        usage = reply.usage
    call = fakes.wait_for_calls(1)[0]
    cost = check_bill(app, account_id, text, cached, writes, call.usage_reported, "responses")
    assert usage.input_tokens_details.cache_write_tokens == writes
    assert usage.model_extra["cost"] == pytest.approx(cost / 1e9)


def test_without_cache_write_tokens_nothing_is_billed_as_a_write(
    app, live_server, fakes, funded_key
):
    key, account_id, _ = funded_key(GRANT)
    client(live_server, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Shared context [[fake:cached=700]]"}]
    )
    call = fakes.wait_for_calls(1)[0]
    assert "cache_write_tokens" not in call.usage_reported["prompt_tokens_details"]
    prompt = fake_prompt("Shared context [[fake:cached=700]]", 700, 0)
    cost, _ = expected_bill(app, prompt, 700, 0, 6)
    record, debits, _ = settled(app, account_id)
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_5m_tokens) == (
        prompt - 700,
        700,
        0,
    )
    assert record.cost_nanocredits == cost
    assert debits == [-cost]
