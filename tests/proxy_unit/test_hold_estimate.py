"""The hold's input bound (DESIGN.md, "Holds"): never below what the body can cost."""

from __future__ import annotations

import json

import pytest

from app.proxy.gateway import measure_input
from app.proxy.metering import (
    IMAGE_TOKEN_ALLOWANCE,
    MESSAGE_TOKEN_ALLOWANCE,
    REQUEST_TOKEN_ALLOWANCE,
    InputSize,
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
    assert measure_input(body, messages=1).bound == len(significant.encode()) + FRAMING


def test_an_image_counts_as_its_allowance_not_its_bytes():
    image = "data:image/png;base64," + "A" * 100_000
    body = {"content": [{"type": "image_url", "image_url": {"url": image}}]}
    estimate = measure_input(body, messages=1).bound
    assert IMAGE_TOKEN_ALLOWANCE <= estimate < IMAGE_TOKEN_ALLOWANCE + 100 + FRAMING


@pytest.mark.parametrize(
    ("text_bytes", "images", "messages"), [(0, 0, 0), (1, 0, 1), (401, 2, 3), (10**7, 50, 999)]
)
def test_the_estimate_never_exceeds_the_bound_so_the_hold_covers_it(text_bytes, images, messages):
    size = InputSize(text_bytes, images, messages)
    assert size.estimate == -(-text_bytes // 4) + 1_000 * images + 4 * messages + 3
    assert size.estimate <= size.bound
