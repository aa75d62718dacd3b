"""Exact bills for the coverage tests (test_coverage_billing.py, test_content_never_stored.py,
test_refusal_in_flight.py), worked out independently of the gateway's metering.

Token classes come from the native usage object the fake put on the wire (the providers' own
semantics, as ../shared/reference/provider-wire-formats.md states them, re-derived here, not
app.proxy.metering's parsers); prices come straight from the bundled catalogue file, turned into
sell prices and a cost by app.services.pricing (sell_price, tier_for_prompt, request_cost).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import anthropic
import openai
from google import genai
from google.genai import types
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, Hold, LedgerEntry, UsageRecord
from app.services.catalog import load_catalog
from app.services.ledger import check_invariants
from app.services.pricing import request_cost, sell_price, tier_for_prompt, usd_per_mtok_to_nanos

SDK_TIMEOUT = 30
CATALOGUE = {entry["id"]: entry for entry in load_catalog()}
CLASSES = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output")


# --- prices and expected costs ------------------------------------------------------------------


def sell_tiers(app, model_id: str) -> dict[int, dict[str, int]]:
    """The catalogue's list prices (base tier and long-context tier) as sell prices."""
    margin = app.config["MARGIN_BPS"]
    return {
        threshold: {name: sell_price(price, margin) for name, price in prices.items()}
        for threshold, prices in list_tiers(model_id).items()
    }


def list_tiers(model_id: str) -> dict[int, dict[str, int]]:
    """The catalogue's list prices (base tier and long-context tier), nanocredits per 1M."""
    entry = CATALOGUE[model_id]
    tiers = {0: entry["prices"]}
    if entry.get("long_context"):
        tiers[int(entry["long_context"]["threshold_tokens"])] = entry["long_context"]["prices"]
    listed = {
        threshold: {name: usd_per_mtok_to_nanos(v["usd"]) for name, v in prices.items()}
        for threshold, prices in tiers.items()
    }
    # A class the catalogue lists no price for bills at the tier's input price.
    for prices in listed.values():
        for name in CLASSES:
            prices.setdefault(name, prices["input"])
    return listed


def expected_cost(app, model_id: str, classes: dict[str, int], prompt_tokens: int):
    """(cost in nanocredits, tier threshold) for these token counts."""
    tiers = sell_tiers(app, model_id)
    tier = tier_for_prompt(list(tiers), prompt_tokens)
    return request_cost(tiers[tier], {k: v for k, v in classes.items() if v}), tier


def expected_list_cost(model_id: str, classes: dict[str, int], prompt_tokens: int) -> int:
    """What the provider charges for these token counts at its list prices (the overview's
    provider cost), at the tier the prompt reached."""
    tiers = list_tiers(model_id)
    tier = tier_for_prompt(list(tiers), prompt_tokens)
    return request_cost(tiers[tier], {k: v for k, v in classes.items() if v})


@dataclass
class Expected:
    classes: dict[str, int]
    prompt_tokens: int  # what picks the tier
    reasoning: int = 0


def expected_from_call(call, route: str) -> Expected:
    """Billed classes from the fake's native usage report. `route`: chat | responses (for the
    OpenAI-shaped providers; Anthropic and Gemini usage has one shape whatever the route)."""
    usage = call.usage_reported
    assert usage is not None, "the fake reported no usage"
    zero = dict.fromkeys(CLASSES, 0)
    if call.provider == "anthropic":
        writes = usage.get("cache_creation_input_tokens") or 0
        split = usage.get("cache_creation")
        if split is None:
            # message_delta repeats the cumulative counts without the 5m/1h split, which
            # message_start carried: the split is the one the fake was asked for.
            write_1h = call.directives.cache_write_1h
        else:
            write_1h = split.get("ephemeral_1h_input_tokens") or 0
        classes = {
            **zero,
            "input": usage["input_tokens"],
            "cache_read": usage.get("cache_read_input_tokens") or 0,
            "cache_write_5m": writes - write_1h,
            "cache_write_1h": write_1h,
            "output": usage["output_tokens"],
        }
        prompt = classes["input"] + classes["cache_read"] + writes
        return Expected(classes, prompt)
    if call.provider == "gemini":
        prompt = usage.get("promptTokenCount", 0)
        cached = usage.get("cachedContentTokenCount", 0)
        thoughts = usage.get("thoughtsTokenCount", 0)
        classes = {
            **zero,
            "input": prompt - cached + usage.get("toolUsePromptTokenCount", 0),
            "cache_read": cached,
            "output": usage.get("candidatesTokenCount", 0) + thoughts,
        }
        return Expected(classes, prompt, thoughts)
    # OpenAI's cache reads and writes (cache_write_tokens, absent when none) are both inside
    # the prompt count.
    if route == "responses":
        cached = usage["input_tokens_details"]["cached_tokens"]
        writes = usage["input_tokens_details"].get("cache_write_tokens", 0)
        split = usage["input_tokens_details"].get("cache_write_tokens_details") or {}
        reasoning = usage["output_tokens_details"]["reasoning_tokens"]
        classes = {
            **zero,
            "input": usage["input_tokens"] - cached - writes,
            "cache_read": cached,
            "cache_write_5m": writes - split.get("ttl_12h_tokens", 0),
            "cache_write_1h": split.get("ttl_12h_tokens", 0),
            "output": usage["output_tokens"],
        }
        return Expected(classes, usage["input_tokens"], reasoning)
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    writes = usage["prompt_tokens_details"].get("cache_write_tokens", 0)
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    # xAI reports reasoning beside completion_tokens, OpenAI inside it.
    output = usage["completion_tokens"] + (reasoning if call.provider == "xai" else 0)
    # Chat Completions does not split the writes by lifetime: it is the one the request asked for.
    asked = (call.body.get("prompt_cache_options") or {}).get("ttl") if call.body else None
    long_writes = writes if asked == "12h" else 0
    classes = {
        **zero,
        "input": usage["prompt_tokens"] - cached - writes,
        "cache_read": cached,
        "cache_write_5m": writes - long_writes,
        "cache_write_1h": long_writes,
        "output": output,
    }
    return Expected(classes, usage["prompt_tokens"], reasoning)


def record_classes(record: UsageRecord) -> dict[str, int]:
    return {
        "input": record.input_tokens,
        "cache_read": record.cache_read_tokens,
        "cache_write_5m": record.cache_write_5m_tokens,
        "cache_write_1h": record.cache_write_1h_tokens,
        "output": record.output_tokens,
    }


def ceil_quarter(text: str) -> int:
    return math.ceil(len(text.encode()) / 4)


# --- the ledger after one request ----------------------------------------------------------------


def settled_record(app, account_id: int, granted: int, timeout: float = 15.0) -> UsageRecord:
    """Once the account's holds are all closed: its one usage record, with the money checks every
    case makes (balance = granted - cost, one debit of exactly the cost, no hold open, the
    ledger's invariants)."""
    deadline = time.monotonic() + timeout
    while True:
        with app.app_context():
            open_count = db.session.scalar(
                select(func.count())
                .select_from(Hold)
                .where(Hold.account_id == account_id, Hold.status == "open")
            )
            held = db.session.get(Account, account_id).held_nanocredits
            db.session.remove()
        if open_count == 0 and held == 0:
            break
        assert time.monotonic() < deadline, "the hold was not settled in time"
        time.sleep(0.05)
    with app.app_context():
        records = db.session.scalars(
            select(UsageRecord).where(UsageRecord.account_id == account_id)
        ).all()
        assert len(records) == 1, f"{len(records)} usage records for one request"
        record = records[0]
        holds = db.session.scalars(select(Hold).where(Hold.account_id == account_id)).all()
        assert [h.status for h in holds] == ["settled"]
        assert holds[0].settled_amount_nanocredits == record.cost_nanocredits
        debits = db.session.scalars(
            select(LedgerEntry.amount_nanocredits).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == "usage"
            )
        ).all()
        cost = record.cost_nanocredits
        assert debits == ([-cost] if cost else [])
        account = db.session.get(Account, account_id)
        assert account.balance_nanocredits == granted - cost
        assert account.held_nanocredits == 0
        assert check_invariants() == []
        db.session.expunge_all()
        return record


def assert_billed_exactly(app, record: UsageRecord, call, route: str) -> int:
    """The record matches the fake's report class by class, and costs exactly the catalogue price
    of it at the tier its prompt reached; returns the cost."""
    expected = expected_from_call(call, route)
    assert record.status == "ok", record.status
    assert record_classes(record) == expected.classes
    if call.provider in ("gemini", "xai") or route == "responses":
        assert record.reasoning_tokens == expected.reasoning
    cost, tier = expected_cost(app, record.model_id, expected.classes, expected.prompt_tokens)
    assert record.cost_nanocredits == cost
    assert record.prices_applied["tier"] == tier
    assert record.list_cost_nanocredits == expected_list_cost(
        record.model_id, expected.classes, expected.prompt_tokens
    )
    return cost


def assert_estimated(app, record: UsageRecord, delivered_text: str, prompt: str) -> None:
    """No provider counts: `estimated`, output = ceil(UTF-8 bytes delivered / 4), input =
    ceil(UTF-8 bytes of the text sent / 4) plus 1,000 an image, 4 a message and 3 (the basis the
    record keeps, which holds at least the prompt), priced at the catalogue."""
    assert record.status == "estimated", record.status
    assert record.output_tokens == ceil_quarter(delivered_text)
    basis = record.estimate_basis
    assert basis["text_bytes_sent"] >= len(prompt.encode())
    assert basis["bytes_delivered"] == len(delivered_text.encode())
    assert record.input_tokens == (
        math.ceil(basis["text_bytes_sent"] / 4)
        + 1_000 * basis["images_sent"]
        + 4 * basis["messages_sent"]
        + 3
    )
    classes = record_classes(record)
    cost, _ = expected_cost(app, record.model_id, classes, record.input_tokens)
    assert record.cost_nanocredits == cost > 0
    assert record.list_cost_nanocredits == expected_list_cost(
        record.model_id, classes, record.input_tokens
    )


# --- the official SDKs ---------------------------------------------------------------------------


def openai_client(server, key) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=SDK_TIMEOUT
    )


def anthropic_client(server, key) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{server.url}/anthropic", api_key=key, max_retries=0, timeout=SDK_TIMEOUT
    )


def genai_client(server, key, api_version: str = "v1beta") -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=f"{server.url}/gemini", api_version=api_version, timeout=SDK_TIMEOUT * 1000
        ),
    )


@dataclass
class Answer:
    """What the client received, whatever the route."""

    text: str = ""
    tool_calls: list[tuple[str, object]] = field(default_factory=list)  # (name, arguments)
    finish: str | None = None
    cost: float | None = None  # usage.cost (credits), where the route reports it


def _chat_answer(reply) -> Answer:
    choice = reply.choices[0]
    return Answer(
        text=choice.message.content or "",
        tool_calls=[
            (t.function.name, t.function.arguments) for t in choice.message.tool_calls or []
        ],
        finish=choice.finish_reason,
        cost=getattr(reply.usage, "cost", None) if reply.usage else None,
    )


def chat(server, key, model, messages, *, stream=False, include_usage=True, **kwargs) -> Answer:
    client = openai_client(server, key)
    if not stream:
        return _chat_answer(
            client.chat.completions.create(model=model, messages=messages, **kwargs)
        )
    if include_usage:
        kwargs["stream_options"] = {"include_usage": True}
    answer = Answer()
    calls: dict[int, list] = {}
    for chunk in client.chat.completions.create(
        model=model, messages=messages, stream=True, **kwargs
    ):
        if not chunk.choices:
            answer.cost = chunk.usage.cost
            continue
        choice = chunk.choices[0]
        answer.text += choice.delta.content or ""
        for call in choice.delta.tool_calls or []:
            entry = calls.setdefault(call.index, ["", ""])
            entry[0] += (call.function.name or "") if call.function else ""
            entry[1] += (call.function.arguments or "") if call.function else ""
        answer.finish = choice.finish_reason or answer.finish
    answer.tool_calls = [(name, arguments) for name, arguments in calls.values()]
    return answer


def responses(server, key, model, input_value, *, stream=False, **kwargs) -> Answer:
    client = openai_client(server, key)
    if not stream:
        reply = client.responses.create(model=model, input=input_value, **kwargs)
        return Answer(
            text=reply.output_text,
            tool_calls=[
                (item.name, item.arguments) for item in reply.output if item.type == "function_call"
            ],
            finish=reply.status,
            cost=getattr(reply.usage, "cost", None) if reply.usage else None,
        )
    answer = Answer()
    arguments = ""
    for event in client.responses.create(model=model, input=input_value, stream=True, **kwargs):
        if event.type == "response.output_text.delta":
            answer.text += event.delta
        elif event.type == "response.function_call_arguments.delta":
            arguments += event.delta
        elif event.type == "response.output_item.done" and event.item.type == "function_call":
            answer.tool_calls.append((event.item.name, arguments))
        elif event.type in ("response.completed", "response.incomplete"):
            answer.finish = event.response.status
            usage = event.response.usage
            answer.cost = getattr(usage, "cost", None) if usage else None
    return answer


def messages(server, key, model, messages_value, *, stream=False, **kwargs) -> Answer:
    client = anthropic_client(server, key)
    kwargs.setdefault("max_tokens", 256)
    if not stream:
        reply = client.messages.create(model=model, messages=messages_value, **kwargs)
        return Answer(
            text="".join(b.text for b in reply.content if b.type == "text"),
            tool_calls=[(b.name, b.input) for b in reply.content if b.type == "tool_use"],
            finish=reply.stop_reason,
        )
    answer = Answer()
    tools: dict[int, list] = {}
    for event in client.messages.create(
        model=model, messages=messages_value, stream=True, **kwargs
    ):
        if event.type == "content_block_start" and event.content_block.type == "tool_use":
            tools[event.index] = [event.content_block.name, ""]
        elif event.type == "content_block_delta":
            if event.delta.type == "text_delta":
                answer.text += event.delta.text
            elif event.delta.type == "input_json_delta":
                tools[event.index][1] += event.delta.partial_json
        elif event.type == "message_delta":
            answer.finish = event.delta.stop_reason
    answer.tool_calls = [(name, arguments) for name, arguments in tools.values()]
    return answer


def generate(server, key, model, contents, *, stream=False, api_version="v1beta", **config):
    with genai_client(server, key, api_version) as client:
        settings = types.GenerateContentConfig(**config) if config else None
        if not stream:
            reply = client.models.generate_content(model=model, contents=contents, config=settings)
            candidate = reply.candidates[0]
            return Answer(
                text=reply.text or "",
                tool_calls=[(c.name, c.args) for c in reply.function_calls or []],
                finish=candidate.finish_reason.name if candidate.finish_reason else None,
            )
        answer = Answer()
        for chunk in client.models.generate_content_stream(
            model=model, contents=contents, config=settings
        ):
            answer.text += chunk.text or ""
            answer.tool_calls += [(c.name, c.args) for c in chunk.function_calls or []]
            if chunk.candidates and chunk.candidates[0].finish_reason:
                answer.finish = chunk.candidates[0].finish_reason.name
        return answer
