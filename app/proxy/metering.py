"""Metering: each provider's usage report normalised into billed token classes, and the cost.

Provider usage is the truth (DESIGN.md, "Money"). The semantics differ by provider:
- OpenAI: cached tokens and prompt-cache writes (cache_write_tokens, GPT-5.6 and later) are inside
  prompt_tokens; 30-minute writes bill as cache_write_5m, 12-hour ones as cache_write_1h.
  Reasoning is inside completion_tokens.
- xAI: reasoning tokens are reported beside completion_tokens, not inside; both bill as output.
- Anthropic: input_tokens excludes cache reads and writes, reported separately; output includes
  thinking. In streams, message_delta usage is cumulative and replaces message_start's.
- Gemini: promptTokenCount includes cached tokens; thoughtsTokenCount is beside
  candidatesTokenCount (bills as output); toolUsePromptTokenCount bills as input.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from app.services.pricing import request_cost, tier_for_prompt

BILLED_CLASSES = ("input", "cache_read", "cache_write_5m", "cache_write_1h", "output")
# A conservative bound on the tokens one image costs (OpenAI high detail, Anthropic ~1.15 MP and
# Gemini all stay below it).
IMAGE_TOKEN_ALLOWANCE = 3_000
# Role markers and message framing the providers add around each message.
MESSAGE_TOKEN_ALLOWANCE = 16
REQUEST_TOKEN_ALLOWANCE = 64
OUTPUT_BYTES_PER_TOKEN = 4
# What an estimate (not a bound) counts, for a request billed without the provider's counts: a
# middle figure per image (Gemini 258, OpenAI 765 for 1024 x 1024 at high detail, Anthropic about
# 1,600 for 1.15 MP) and OpenAI's published framing (3 tokens per message, 3 to prime the reply,
# rounded up to 4 per message).
IMAGE_TOKEN_ESTIMATE = 1_000
MESSAGE_TOKEN_ESTIMATE = 4
REQUEST_TOKEN_ESTIMATE = 3


@dataclass(frozen=True)
class InputSize:
    """What a request sends, measured once: UTF-8 bytes of its text (every string and number,
    keys included), its images and its messages.

    `bound` is the hold's input (DESIGN.md, "Holds": no token is shorter than a byte, so it is
    never below the real count); `estimate` is what a request is billed for when the provider
    never reported its counts, measured as output is: ceil(bytes / 4), plus middle figures for
    images and framing. The estimate never exceeds the bound, so the hold always covers it.
    """

    text_bytes: int
    images: int
    messages: int

    @property
    def bound(self) -> int:
        return (
            self.text_bytes
            + self.images * IMAGE_TOKEN_ALLOWANCE
            + self.messages * MESSAGE_TOKEN_ALLOWANCE
            + REQUEST_TOKEN_ALLOWANCE
        )

    @property
    def estimate(self) -> int:
        return (
            math.ceil(self.text_bytes / OUTPUT_BYTES_PER_TOKEN)
            + self.images * IMAGE_TOKEN_ESTIMATE
            + self.messages * MESSAGE_TOKEN_ESTIMATE
            + REQUEST_TOKEN_ESTIMATE
        )


def estimate_basis(size: InputSize, delivered_bytes: int) -> dict:
    """How an "estimated" record's counts were made, kept on the record and shown to the
    customer: the measurements and the rules applied to them."""
    return {
        "text_bytes_sent": size.text_bytes,
        "images_sent": size.images,
        "messages_sent": size.messages,
        "bytes_delivered": delivered_bytes,
        "input_rule": (
            f"ceil(text bytes / {OUTPUT_BYTES_PER_TOKEN}) + {IMAGE_TOKEN_ESTIMATE:,} per image "
            f"+ {MESSAGE_TOKEN_ESTIMATE} per message + {REQUEST_TOKEN_ESTIMATE}"
        ),
        "output_rule": f"ceil(bytes delivered / {OUTPUT_BYTES_PER_TOKEN})",
    }


@dataclass
class Usage:
    """Token counts by billed class; `prompt_tokens` (all prompt-side tokens) picks the tier."""

    input: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output: int = 0
    reasoning: int = 0  # informational: already inside `output`
    prompt_tokens: int = 0

    def billed(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in BILLED_CLASSES}


@dataclass(frozen=True)
class PricedModel:
    """A catalogue model with its sell prices and the provider's list prices (same tiers),
    detached from the database session; `list_tiers` empty when the list prices are unknown."""

    provider: str
    model_id: str
    name: str
    context_length: int
    max_output_tokens: int
    tiers: dict[int, dict[str, int]] = field(hash=False)
    list_tiers: dict[int, dict[str, int]] = field(default_factory=dict, hash=False)

    def prices_for(self, prompt_tokens: int) -> tuple[int, dict[str, int]]:
        threshold = tier_for_prompt(list(self.tiers), prompt_tokens)
        return threshold, self.tiers[threshold]

    def input_price_bound(self, prompt_tokens: int) -> int:
        """The highest price any prompt-side token could bill at, for holds."""
        _, prices = self.prices_for(prompt_tokens)
        return max(prices.get(c, 0) for c in ("input", "cache_write_5m", "cache_write_1h"))

    def output_price(self, prompt_tokens: int) -> int:
        return self.prices_for(prompt_tokens)[1]["output"]


def cost_of(model: PricedModel, usage: Usage) -> tuple[int, dict[str, int]]:
    """The cost in nanocredits and the prices applied (the tier the prompt reached).

    A class the model has no price for (a provider reporting a cache write on a model whose
    catalogue entry bills none) is charged at the model's input price.
    """
    threshold, prices = model.prices_for(usage.prompt_tokens)
    applied = _every_class(prices)
    cost = request_cost(applied, usage.billed())
    return cost, {"tier": threshold, **applied}


def list_cost_of(model: PricedModel, usage: Usage) -> int | None:
    """What the provider charges for the request at its list prices, by the same rules as the
    cost (the tier the prompt reached; a class without a price at the input price): the margin's
    other side. None when the model's list prices are unknown."""
    threshold, _ = model.prices_for(usage.prompt_tokens)
    prices = model.list_tiers.get(threshold)
    if not prices or "input" not in prices:
        return None
    return request_cost(_every_class(prices), usage.billed())


def _every_class(prices: dict[str, int]) -> dict[str, int]:
    applied = dict(prices)
    for token_class in BILLED_CLASSES:
        applied.setdefault(token_class, prices["input"])
    return applied


def delivered_json_bytes(value: object) -> int:
    """What a structured output (a tool call's arguments) delivered, as compact JSON bytes."""
    if isinstance(value, str):
        return len(value.encode())
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def estimate_output_tokens(delivered_bytes: int) -> int:
    return math.ceil(delivered_bytes / OUTPUT_BYTES_PER_TOKEN)


def _int(value) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def usage_from_openai(
    report: dict, *, reasoning_outside_completion: bool = False, long_cache_writes: bool = False
) -> Usage:
    """Chat Completions usage. xAI reports reasoning beside completion_tokens.

    OpenAI's cache writes bill by the lifetime they were written with (30 minutes, or 12 hours at
    a dearer rate), which Chat Completions usage does not report: it is the one the request
    asked for (`long_cache_writes`: prompt_cache_options.ttl "12h"), billed as cache_write_1h.
    """
    prompt = _int(report.get("prompt_tokens"))
    completion = _int(report.get("completion_tokens"))
    details = report.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached, writes = _reads_and_writes(details, prompt)
    reasoning = _int((report.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    output = completion + reasoning if reasoning_outside_completion else completion
    long_writes = writes if long_cache_writes else 0
    return Usage(
        input=prompt - cached - writes,
        cache_read=cached,
        cache_write_5m=writes - long_writes,
        cache_write_1h=long_writes,
        output=output,
        reasoning=reasoning,
        prompt_tokens=prompt,
    )


def usage_from_responses(report: dict, *, long_cache_writes: bool = False) -> Usage:
    """Responses API usage: cache reads and writes inside input_tokens, reasoning inside
    output_tokens. The writes' lifetimes are split in cache_write_tokens_details (12-hour ones
    bill as cache_write_1h, any unexplained as 30-minute ones); without the split, as the
    request asked (`long_cache_writes`)."""
    prompt = _int(report.get("input_tokens"))
    details = report.get("input_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached, writes = _reads_and_writes(details, prompt)
    split = details.get("cache_write_tokens_details")
    if isinstance(split, dict):
        long_writes = min(_int(split.get("ttl_12h_tokens")), writes)
    else:
        long_writes = writes if long_cache_writes else 0
    reasoning = _int((report.get("output_tokens_details") or {}).get("reasoning_tokens"))
    return Usage(
        input=prompt - cached - writes,
        cache_read=cached,
        cache_write_5m=writes - long_writes,
        cache_write_1h=long_writes,
        output=_int(report.get("output_tokens")),
        reasoning=reasoning,
        prompt_tokens=prompt,
    )


def _reads_and_writes(details: dict, prompt: int) -> tuple[int, int]:
    """OpenAI's cache reads and writes, both inside the prompt count: reads clamped to it, then
    writes to what is left."""
    cached = min(_int(details.get("cached_tokens")), prompt)
    return cached, min(_int(details.get("cache_write_tokens")), prompt - cached)


def usage_from_anthropic(report: dict) -> Usage:
    input_tokens = _int(report.get("input_tokens"))
    cache_read = _int(report.get("cache_read_input_tokens"))
    cache_write = _int(report.get("cache_creation_input_tokens"))
    breakdown = report.get("cache_creation")
    breakdown = breakdown if isinstance(breakdown, dict) else {}
    write_1h = _int(breakdown.get("ephemeral_1h_input_tokens"))
    write_5m = _int(breakdown.get("ephemeral_5m_input_tokens"))
    if write_1h + write_5m != cache_write:
        # Without a consistent breakdown, bill the unexplained writes at the 5-minute rate.
        write_5m = max(cache_write - write_1h, 0)
    return Usage(
        input=input_tokens,
        cache_read=cache_read,
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        output=_int(report.get("output_tokens")),
        prompt_tokens=input_tokens + cache_read + write_5m + write_1h,
    )


def merge_anthropic_usage(current: dict, update: dict) -> dict:
    """message_delta usage is cumulative: its fields replace message_start's."""
    merged = dict(current)
    for name, value in update.items():
        if value is not None:
            merged[name] = value
    return merged


def usage_from_gemini(report: dict) -> Usage:
    prompt = _int(report.get("promptTokenCount"))
    cached = min(_int(report.get("cachedContentTokenCount")), prompt)
    tool_prompt = _int(report.get("toolUsePromptTokenCount"))
    thoughts = _int(report.get("thoughtsTokenCount"))
    return Usage(
        input=prompt - cached + tool_prompt,
        cache_read=cached,
        output=_int(report.get("candidatesTokenCount")) + thoughts,
        reasoning=thoughts,
        prompt_tokens=prompt,
    )
