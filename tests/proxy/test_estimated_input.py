"""A stream dropped before the provider reported its counts is billed from estimates made the same
way on both sides: ceil(UTF-8 bytes / 4) of the text sent and of the text delivered, not the hold's
bound (bytes as tokens, about 4x an English prompt), and the record keeps the basis (issue 9,
finding 10).

The expectations are worked out here from the body the SDK sends, not from the gateway's metering:
every string and number of the body counts, keys included, images a fixed figure each.
"""

from __future__ import annotations

import math

import openai
import pytest

from tests.proxy.exact import expected_cost, record_classes, settled_record

GRANTED = 5_000_000_000
PROMPT = (
    "Summarise the main causes of the French Revolution for a reader who knows little history "
    "and wants the gist in a short paragraph, naming the estates, the debt crisis, the bread "
    "prices and the Enlightenment ideas that shaped the demands of the Third Estate. "
)
DROP = "[[fake:drop=2 chunks=6]]"  # two chunks of content, then the connection drops: no usage


def stream_until_dropped(server, key, messages) -> str:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received
    return "".join(received)


def text_bytes(*strings: str) -> int:
    return sum(len(s.encode()) for s in strings)


def test_a_dropped_stream_is_billed_for_estimated_input_not_the_hold_bound(
    app, live_server, fakes, funded_key
):
    key, account_id, _ = funded_key("5")
    content = PROMPT + DROP
    received = stream_until_dropped(live_server, key, [{"role": "user", "content": content}])
    record = settled_record(app, account_id, GRANTED)
    assert fakes.last_call("openai").usage_reported is None

    # The SDK sends {"messages": [{"role": "user", "content": ...}], "model": ..., "stream": true}:
    # a boolean is not text.
    sent = text_bytes("messages", "role", "user", "content", content, "model", "gpt-4o-mini")
    sent += text_bytes("stream")
    estimated_input = math.ceil(sent / 4) + 4 * 1 + 3  # 4 a message, 3 a request
    hold_bound = sent + 16 * 1 + 64
    assert record.status == "estimated"
    assert record.input_tokens == estimated_input
    assert record.input_tokens * 3 < hold_bound  # the bound was ~4x this English prompt
    assert record.output_tokens == math.ceil(len(received.encode()) / 4)
    cost, _ = expected_cost(app, "gpt-4o-mini", record_classes(record), estimated_input)
    assert record.cost_nanocredits == cost > 0
    assert record.estimate_basis == {
        "text_bytes_sent": sent,
        "images_sent": 0,
        "messages_sent": 1,
        "bytes_delivered": len(received.encode()),
        "input_rule": "ceil(text bytes / 4) + 1,000 per image + 4 per message + 3",
        "output_rule": "ceil(bytes delivered / 4)",
    }


def test_an_image_is_estimated_at_a_middle_figure_not_its_bound(
    app, live_server, fakes, funded_key
):
    key, account_id, _ = funded_key("5")
    image = "data:image/png;base64," + "iVBORw0KGgo" * 2_000
    parts = [
        {"type": "text", "text": "What is in this picture? " + DROP},
        {"type": "image_url", "image_url": {"url": image}},
    ]
    stream_until_dropped(live_server, key, [{"role": "user", "content": parts}])
    record = settled_record(app, account_id, GRANTED)
    # The image counts once, its encoded bytes not at all; the rest of its part is text.
    sent = text_bytes("messages", "role", "user", "content", "type", "text", "text")
    sent += text_bytes(parts[0]["text"], "type", "image_url", "model", "gpt-4o-mini", "stream")
    assert record.status == "estimated"
    assert record.estimate_basis["images_sent"] == 1
    assert record.estimate_basis["text_bytes_sent"] == sent
    assert record.input_tokens == math.ceil(sent / 4) + 1_000 + 4 + 3


def test_records_billed_from_the_provider_counts_carry_no_estimate(
    app, live_server, fakes, funded_key
):
    key, account_id, _ = funded_key("5")
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )
    record = settled_record(app, account_id, GRANTED)
    assert record.status == "ok"
    assert record.estimate_basis is None
