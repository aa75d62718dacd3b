"""OpenAI prompt-cache writes on the GPT-6 family, through the official SDK: the writes the
provider reports (inside prompt_tokens / input_tokens) are billed by their lifetime, 30-minute
ones as cache_write_5m (1.25x input), 12-hour ones as cache_write_1h (2.5x input), the rest of
the prompt at the input price. Responses usage splits the writes by lifetime; Chat Completions
usage does not, so they are the lifetime the request asked for (prompt_cache_options.ttl).

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


def expected_bill(
    app, prompt: int, cached: int, writes: int, output: int, ttl: str | None = None
) -> tuple[int, dict]:
    long_context = ENTRY["long_context"]
    tier = ENTRY["prices"]
    if prompt > long_context["threshold_tokens"]:
        tier = long_context["prices"]
    prices = sell_prices(app, tier)
    total = (
        (prompt - cached - writes) * prices["input"]
        + cached * prices["cache_read"]
        + writes * prices[write_class(ttl)]
        + output * prices["output"]
    )
    return half_up(total, 1_000_000), prices


def write_class(ttl: str | None) -> str:
    return "cache_write_1h" if ttl == "12h" else "cache_write_5m"


def cache_options(ttl: str | None) -> dict:
    return {} if ttl is None else {"prompt_cache_options": {"ttl": ttl}}


TTLS = [pytest.param(None, id="default-30m"), pytest.param("12h", id="12h")]


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


def check_bill(
    app, account_id: int, text: str, cached: int, writes: int, reported: dict, route, ttl=None
):
    prompt = fake_prompt(text, cached, writes)
    output = 6  # 3 chunks, 2 tokens each
    details = reported["input_tokens_details" if route == "responses" else "prompt_tokens_details"]
    assert details["cache_write_tokens"] == writes
    assert reported["input_tokens" if route == "responses" else "prompt_tokens"] == prompt
    cost, prices = expected_bill(app, prompt, cached, writes, output, ttl)
    # The write prices are the catalogue's own, above the input price and the 12-hour one above
    # the 30-minute one: billing writes as input, or every write at one rate, gives another bill.
    assert prices["cache_write_1h"] > prices["cache_write_5m"] > prices["input"]
    record, debits, balance = settled(app, account_id)
    assert record.status == "ok"
    long_writes = writes if ttl == "12h" else 0
    assert (
        record.input_tokens,
        record.cache_read_tokens,
        record.cache_write_5m_tokens,
        record.cache_write_1h_tokens,
        record.output_tokens,
    ) == (prompt - cached - writes, cached, writes - long_writes, long_writes, output)
    assert record.prices_applied[write_class(ttl)] == prices[write_class(ttl)]
    assert record.cost_nanocredits == cost
    assert debits == [-cost]
    assert balance == credits_to_nanos(GRANT) - cost
    return cost


@pytest.mark.parametrize(("text", "cached", "writes"), CASES)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("ttl", TTLS)
def test_chat_completions_cache_writes(
    app, live_server, fakes, funded_key, text, cached, writes, stream, ttl
):
    key, account_id, _ = funded_key(GRANT)
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        **cache_options(ttl),
    }
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
    cost = check_bill(app, account_id, text, cached, writes, call.usage_reported, "chat", ttl)
    assert usage.prompt_tokens_details.cache_write_tokens == writes
    assert usage.cost == pytest.approx(cost / 1e9)


@pytest.mark.parametrize(("text", "cached", "writes"), CASES)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("ttl", TTLS)
def test_responses_cache_writes(
    app, live_server, fakes, funded_key, text, cached, writes, stream, ttl
):
    key, account_id, _ = funded_key(GRANT)
    request = {"model": MODEL, "input": text, **cache_options(ttl)}
    if stream:
        events = list(client(live_server, key).responses.create(**request, stream=True))
        assert events[-1].type == "response.completed"
        usage = events[-1].response.usage
    else:
        reply = client(live_server, key).responses.create(**request)
        assert reply.output_text == "Hello from openai"
        usage = reply.usage
    call = fakes.wait_for_calls(1)[0]
    split = call.usage_reported["input_tokens_details"]["cache_write_tokens_details"]
    assert split["ttl_12h_tokens"] == (writes if ttl == "12h" else 0)
    cost = check_bill(app, account_id, text, cached, writes, call.usage_reported, "responses", ttl)
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


@pytest.mark.parametrize("route", ["chat", "responses"])
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": "24h"}, "'prompt_cache_options.ttl' '24h' is not supported"),
        ({"ttl": 12}, "'prompt_cache_options.ttl' 12 is not supported"),
        ("12h", "'prompt_cache_options' must be an object"),
    ],
)
def test_a_cache_lifetime_the_catalogue_cannot_price_is_refused(
    app, live_server, fakes, funded_key, route, options, message
):
    """A 400 in OpenAI's shape, before anything is held or sent upstream."""
    key, account_id, _ = funded_key(GRANT)
    sdk = client(live_server, key)
    with pytest.raises(openai.BadRequestError) as refused:
        if route == "chat":
            sdk.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"prompt_cache_options": options},
            )
        else:
            sdk.responses.create(
                model=MODEL, input="hi", extra_body={"prompt_cache_options": options}
            )
    assert message in refused.value.message
    assert fakes.calls == []
    with app.app_context():
        assert db.session.get(Account, account_id).balance_nanocredits == credits_to_nanos(GRANT)
        assert db.session.scalar(select(UsageRecord)) is None
