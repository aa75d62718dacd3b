"""OpenAI's usage objects (Chat Completions and Responses) into billed classes: prompt-cache reads
and writes are both inside the prompt count; 30-minute writes bill as cache_write_5m, 12-hour ones
as cache_write_1h."""

from __future__ import annotations

import pytest

from app.proxy.metering import Usage, usage_from_openai, usage_from_responses


def chat_report(prompt: int, details: dict | None, completion: int = 20, reasoning: int = 0):
    report = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    if details is not None:
        report["prompt_tokens_details"] = details
    return report


def responses_report(prompt: int, details: dict | None, output: int = 20, reasoning: int = 0):
    report = {
        "input_tokens": prompt,
        "output_tokens": output,
        "total_tokens": prompt + output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
    }
    if details is not None:
        report["input_tokens_details"] = details
    return report


def parse_chat(prompt, details):
    return usage_from_openai(chat_report(prompt, details))


def parse_responses(prompt, details):
    return usage_from_responses(responses_report(prompt, details))


PARSERS = [pytest.param(parse_chat, id="chat"), pytest.param(parse_responses, id="responses")]


@pytest.mark.parametrize("parse", PARSERS)
def test_cache_writes_are_inside_the_prompt(parse):
    usage = parse(1_000, {"cached_tokens": 300, "cache_write_tokens": 450})
    assert usage == Usage(
        input=250, cache_read=300, cache_write_5m=450, output=20, prompt_tokens=1_000
    )


@pytest.mark.parametrize("parse", PARSERS)
def test_writes_alone_without_cached_tokens(parse):
    usage = parse(1_000, {"cache_write_tokens": 999})
    assert (usage.input, usage.cache_read, usage.cache_write_5m) == (1, 0, 999)
    assert usage.cache_write_1h == 0
    assert usage.prompt_tokens == 1_000


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(
    "details",
    [
        pytest.param({"cached_tokens": 300}, id="field-absent"),
        pytest.param({"cached_tokens": 300, "cache_write_tokens": None}, id="null"),
        pytest.param({"cached_tokens": 300, "cache_write_tokens": 0}, id="zero"),
        pytest.param({"cached_tokens": 300, "cache_write_tokens": -5}, id="negative"),
        pytest.param({"cached_tokens": 300, "cache_write_tokens": "450"}, id="not-an-int"),
    ],
)
def test_no_writes_without_a_positive_count(parse, details):
    usage = parse(1_000, details)
    assert (usage.input, usage.cache_read, usage.cache_write_5m) == (700, 300, 0)
    assert usage.prompt_tokens == 1_000


@pytest.mark.parametrize("parse", PARSERS)
def test_no_details_object_at_all(parse):
    usage = parse(1_000, None)
    assert (usage.input, usage.cache_read, usage.cache_write_5m) == (1_000, 0, 0)


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(
    ("prompt", "cached", "writes", "expected"),
    [
        # reads are clamped to the prompt first, then writes to what the reads leave
        pytest.param(1_000, 700, 600, (0, 700, 300), id="writes-clamped"),
        pytest.param(1_000, 1_200, 50, (0, 1_000, 0), id="cached-over-prompt"),
        pytest.param(1_000, 0, 5_000, (0, 0, 1_000), id="writes-over-prompt"),
        pytest.param(1_000, 400, 600, (0, 400, 600), id="exactly-the-prompt"),
        pytest.param(0, 10, 10, (0, 0, 0), id="empty-prompt"),
    ],
)
def test_reads_plus_writes_never_exceed_the_prompt(parse, prompt, cached, writes, expected):
    usage = parse(prompt, {"cached_tokens": cached, "cache_write_tokens": writes})
    assert (usage.input, usage.cache_read, usage.cache_write_5m) == expected
    assert usage.input + usage.cache_read + usage.cache_write_5m == prompt
    assert usage.prompt_tokens == prompt


def test_xai_reasoning_beside_completion_keeps_working_with_writes():
    report = chat_report(500, {"cached_tokens": 100, "cache_write_tokens": 50}, 27, 133)
    usage = usage_from_openai(report, reasoning_outside_completion=True)
    assert usage == Usage(
        input=350,
        cache_read=100,
        cache_write_5m=50,
        output=160,
        reasoning=133,
        prompt_tokens=500,
    )


def test_openai_reasoning_stays_inside_output_with_writes():
    usage = usage_from_responses(responses_report(500, {"cache_write_tokens": 200}, 40, 30))
    assert (usage.input, usage.cache_write_5m, usage.output, usage.reasoning) == (300, 200, 40, 30)


# --- the writes' lifetime ---------------------------------------------------------------------


def test_chat_writes_are_12_hour_ones_when_the_request_asked_for_them():
    report = chat_report(1_000, {"cached_tokens": 100, "cache_write_tokens": 300})
    usage = usage_from_openai(report, long_cache_writes=True)
    assert (usage.input, usage.cache_read, usage.cache_write_5m, usage.cache_write_1h) == (
        600,
        100,
        0,
        300,
    )
    assert usage_from_openai(report).cache_write_5m == 300


def test_responses_writes_follow_the_reported_split_by_lifetime():
    split = {"ttl_30m_tokens": 120, "ttl_12h_tokens": 180}
    details = {"cached_tokens": 100, "cache_write_tokens": 300, "cache_write_tokens_details": split}
    # The split is the provider's word, whatever the request asked for.
    for asked in (False, True):
        usage = usage_from_responses(responses_report(1_000, details), long_cache_writes=asked)
        assert (usage.input, usage.cache_write_5m, usage.cache_write_1h) == (600, 120, 180)


def test_responses_writes_without_a_split_are_the_lifetime_asked_for():
    details = {"cached_tokens": 0, "cache_write_tokens": 300}
    usage = usage_from_responses(responses_report(1_000, details), long_cache_writes=True)
    assert (usage.cache_write_5m, usage.cache_write_1h) == (0, 300)
    assert usage_from_responses(responses_report(1_000, details)).cache_write_5m == 300


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ({"ttl_30m_tokens": 0, "ttl_12h_tokens": 900}, (0, 300)),  # more than the writes
        ({"ttl_30m_tokens": 10}, (300, 0)),  # no 12-hour count: all 30-minute
        ({"ttl_30m_tokens": 1, "ttl_12h_tokens": 100}, (200, 100)),  # unexplained: 30-minute
        ({"ttl_12h_tokens": -5}, (300, 0)),
        ({"ttl_12h_tokens": "100"}, (300, 0)),
    ],
)
def test_an_inconsistent_split_never_bills_more_writes_than_reported(split, expected):
    details = {"cache_write_tokens": 300, "cache_write_tokens_details": split}
    usage = usage_from_responses(responses_report(1_000, details))
    assert (usage.cache_write_5m, usage.cache_write_1h) == expected
    assert usage.input == 700
