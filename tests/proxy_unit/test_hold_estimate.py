"""The hold's input bound (DESIGN.md, "Holds"): never below what the body can cost."""

from __future__ import annotations

import json

from app.proxy.gateway import (
    IMAGE_TOKEN_ALLOWANCE,
    MESSAGE_TOKEN_ALLOWANCE,
    REQUEST_TOKEN_ALLOWANCE,
    estimate_input_tokens,
)

FRAMING = MESSAGE_TOKEN_ALLOWANCE + REQUEST_TOKEN_ALLOWANCE


def test_every_byte_of_text_keys_and_numbers_counts():
    """A tool's JSON schema reaches the model whole: its property names are prompt too."""
    body = {
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city_name_in_full": {"type": "string", "maxLength": 80}},
                    },
                },
            }
        ],
        "temperature": 0.25,
    }
    # Compact JSON carries every key, string and number once, plus punctuation the bound may skip.
    significant = json.dumps(body, separators=(",", ":"))
    for ch in '{}[]:,"':
        significant = significant.replace(ch, "")
    assert estimate_input_tokens(body, messages=1) == len(significant.encode()) + FRAMING


def test_an_image_counts_as_its_allowance_not_its_bytes():
    image = "data:image/png;base64," + "A" * 100_000
    body = {"content": [{"type": "image_url", "image_url": {"url": image}}]}
    estimate = estimate_input_tokens(body, messages=1)
    assert IMAGE_TOKEN_ALLOWANCE <= estimate < IMAGE_TOKEN_ALLOWANCE + 100 + FRAMING
