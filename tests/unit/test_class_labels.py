"""Price classes as every page names them: cache writes by the provider's lifetimes for them."""

from __future__ import annotations

import pytest

from app.services.pricing import class_label


@pytest.mark.parametrize(
    ("provider", "standard", "long"),
    [
        ("anthropic", "Cache write, 5 min", "Cache write, 1 h"),
        ("openai", "Cache write, 30 min", "Cache write, 12 h"),
        ("google", "Cache write", "Cache write, long"),
        (None, "Cache write", "Cache write, long"),
    ],
)
def test_cache_writes_are_named_by_the_providers_lifetimes(provider, standard, long):
    assert class_label("cache_write_5m", provider) == standard
    assert class_label("cache_write_1h", provider) == long
    assert class_label("input", provider) == "Input"
    assert class_label("cache_read", provider) == "Cached input"
    assert class_label("output", provider) == "Output"
