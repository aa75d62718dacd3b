"""The refusal rules for what the catalogue cannot price, without a server: every provider module
maps onto the one list in errors.UNPRICEABLE, and odd input never raises past a ProxyError."""

from __future__ import annotations

import pytest

from app.proxy import anthropic, gemini, openai
from app.proxy.errors import UNPRICEABLE, ProxyError

ODD_TOOLS = [None, 5, "x", {}, [], [None], [5], ["x"], [[]], [{}]]


@pytest.mark.parametrize("tools", ODD_TOOLS)
def test_odd_tools_are_left_to_the_provider(tools):
    body = {"tools": tools}
    openai.refuse_hosted_tools(body)
    anthropic.refuse_server_tools(body)
    gemini.refuse_google_tools(body)


@pytest.mark.parametrize("kind", [5, True, ["web_search"], {"a": 1}, "Function", ""])
def test_tool_types_of_any_shape_other_than_the_clients_are_refused(kind):
    for check in (openai.refuse_hosted_tools, anthropic.refuse_server_tools):
        with pytest.raises(ProxyError) as raised:
            check({"tools": [{"type": kind}]})
        assert raised.value.status == 400


def test_every_mapped_feature_has_a_reason():
    features = {
        *openai.HOSTED_TOOL_FEATURES.values(),
        *anthropic.SERVER_TOOL_FEATURES.values(),
        *gemini.GOOGLE_TOOL_FEATURES.values(),
        "provider_tool",
        "service_tier",
    }
    assert features <= set(UNPRICEABLE)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"web_search_options": {}}, "web_search_options"),
        ({"web_search_options": False}, "web_search_options"),
        ({"search_parameters": {"mode": "auto"}}, "search_parameters"),
        ({"search_parameters": "on"}, "search_parameters"),
        ({"tools": [{"type": "function"}, {"type": "web_search"}]}, "tools[1]"),
    ],
)
def test_chat_refusals_name_the_parameter(body, param):
    with pytest.raises(ProxyError) as raised:
        openai.refuse_unpriceable_chat(body)
    assert raised.value.param == param
    assert "OneKey cannot price" in raised.value.message


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"web_search_options": None},
        {"search_parameters": None},
        {"search_parameters": {"mode": "off"}},
        {"tools": [{"type": "function"}, {"type": "custom"}]},
    ],
)
def test_chat_without_unpriceable_fields_passes(body):
    openai.refuse_unpriceable_chat(body)


@pytest.mark.parametrize("tier", [None, "auto", "default"])
def test_catalogue_service_tiers_pass(tier):
    openai.refuse_service_tier({"service_tier": tier})


@pytest.mark.parametrize("tier", ["priority", "flex", "scale", "", 1, {}])
def test_other_service_tiers_are_refused(tier):
    with pytest.raises(ProxyError) as raised:
        openai.refuse_service_tier({"service_tier": tier})
    assert raised.value.param == "service_tier"


def test_gemini_names_the_key_as_sent():
    with pytest.raises(ProxyError) as raised:
        gemini.refuse_google_tools({"tools": [{"functionDeclarations": []}, {"urlContext": {}}]})
    assert raised.value.message.startswith("tools[1].urlContext is not supported: ")
    gemini.refuse_google_tools(
        {"tools": [{"functionDeclarations": [], "function_declarations": []}]}
    )
