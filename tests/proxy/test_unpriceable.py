"""What the catalogue cannot price is refused before any hold (DESIGN.md, "Money"): provider-side
tools, web search and service tiers other than the default, on every route, in its dialect and
naming the parameter; nothing reaches the provider, nothing is held, recorded or debited. Plain
function tools keep working. And count_tokens applies the key's allow-list and rate limit."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest
import requests
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import Account, ApiKey, Hold, UsageRecord
from app.services.ledger import check_invariants
from app.services.money import credits_to_nanos

GRANT = "2"
USER = [{"role": "user", "content": "hi"}]
TOOL_CALL = [{"role": "user", "content": "weather? [[fake:tool]]"}]  # the fake calls the tool
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
CANNOT_PRICE = "OneKey cannot price"


@pytest.fixture
def caller(live_server, fakes, funded_key):
    key, account_id, _ = funded_key(GRANT)
    return key, account_id


def openai_client(server, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def anthropic_client(server, key) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{server.url}/anthropic", api_key=key, max_retries=0)


def genai_client(server, key, api_version="v1beta") -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=f"{server.url}/gemini", api_version=api_version),
    )


def assert_untouched(app, fakes, account_id: int) -> None:
    """Refused before the hold: no call upstream, no hold, no usage, no credit moved."""
    assert fakes.calls_for() == []
    with app.app_context():
        holds = db.session.scalar(
            select(func.count()).select_from(Hold).where(Hold.account_id == account_id)
        )
        records = db.session.scalar(
            select(func.count())
            .select_from(UsageRecord)
            .where(UsageRecord.account_id == account_id)
        )
        account = db.session.get(Account, account_id)
        assert (holds, records) == (0, 0)
        assert account.balance_nanocredits == credits_to_nanos(GRANT)
        assert account.held_nanocredits == 0
        assert check_invariants() == []
        db.session.remove()


def assert_openai_refusal(raised, param: str) -> None:
    error = raised.value
    assert error.status_code == 400
    body = error.response.json()["error"]
    assert body["type"] == "invalid_request_error"
    assert body["code"] == "invalid_request"
    assert body["param"] == param
    assert param.split("[")[0] in body["message"]
    assert CANNOT_PRICE in body["message"]


# --- /v1/chat/completions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "fields", "param"),
    [
        ("gpt-4o-mini", {"web_search_options": {}}, "web_search_options"),
        (
            "gpt-4o-mini",
            {"web_search_options": {"search_context_size": "low"}},
            "web_search_options",
        ),
        # The translators share the one list: Claude and Gemini models are refused the same way.
        ("claude-haiku-4-5", {"web_search_options": {}}, "web_search_options"),
        ("gemini-3.5-flash-lite", {"web_search_options": {}}, "web_search_options"),
        ("gpt-4o-mini", {"service_tier": "priority"}, "service_tier"),
        ("gpt-4o-mini", {"service_tier": "flex"}, "service_tier"),
        ("gpt-4o-mini", {"service_tier": "scale"}, "service_tier"),
        ("grok-4.3", {"service_tier": "priority"}, "service_tier"),
        ("gpt-4o-mini", {"tools": [{"type": "web_search"}]}, "tools[0]"),
        ("claude-haiku-4-5", {"tools": [{"type": "web_search"}]}, "tools[0]"),
    ],
)
def test_chat_refusals(app, live_server, fakes, caller, model, fields, param):
    key, account_id = caller
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(live_server, key).chat.completions.create(
            model=model, messages=USER, **fields
        )
    assert_openai_refusal(raised, param)
    assert_untouched(app, fakes, account_id)


def test_chat_web_search_message_says_why(app, live_server, fakes, caller):
    key, account_id = caller
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(live_server, key).chat.completions.create(
            model="gpt-4o-mini", messages=USER, web_search_options={}, stream=True
        )
    message = raised.value.response.json()["error"]["message"]
    assert "web search is billed by the provider per use and OneKey cannot price it" in message
    assert_untouched(app, fakes, account_id)


@pytest.mark.parametrize("search", [{"mode": "auto"}, {"mode": "on"}, {}])
def test_xai_live_search_is_refused(app, live_server, fakes, caller, search):
    key, account_id = caller
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(live_server, key).chat.completions.create(
            model="grok-4.3",
            messages=USER,
            extra_body={"search_parameters": search},
        )
    assert_openai_refusal(raised, "search_parameters")
    assert_untouched(app, fakes, account_id)


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4o-mini", "openai"),
        ("grok-4.3", "xai"),
        ("claude-haiku-4-5", "anthropic"),
        ("gemini-3.5-flash-lite", "gemini"),
    ],
)
def test_chat_function_tools_still_work(live_server, fakes, caller, model, provider):
    key, _ = caller
    tool = {"type": "function", "function": {"name": "weather", "parameters": WEATHER}}
    reply = openai_client(live_server, key).chat.completions.create(
        model=model, messages=TOOL_CALL, tools=[tool], web_search_options=None
    )
    assert reply.choices[0].message.tool_calls[0].function.name == "weather"
    assert fakes.last_call(provider) is not None


@pytest.mark.parametrize("tier", ["auto", "default"])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "grok-4.3"])
def test_default_service_tiers_still_work(live_server, fakes, caller, model, tier):
    key, _ = caller
    openai_client(live_server, key).chat.completions.create(
        model=model, messages=USER, service_tier=tier
    )
    assert fakes.last_call().body["service_tier"] == tier


def test_xai_live_search_off_still_works(live_server, fakes, caller):
    key, _ = caller
    openai_client(live_server, key).chat.completions.create(
        model="grok-4.3",
        messages=USER,
        extra_body={"search_parameters": {"mode": "off"}},
    )
    assert fakes.last_call("xai") is not None


# --- /v1/responses -----------------------------------------------------------------------------

HOSTED_TOOLS = [
    {"type": "web_search"},
    {"type": "web_search_preview"},
    {"type": "web_search_preview_2025_03_11"},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "code_interpreter", "container": {"type": "auto"}},
    {
        "type": "computer_use_preview",
        "display_width": 1024,
        "display_height": 768,
        "environment": "browser",
    },
    {"type": "image_generation"},
    {"type": "mcp", "server_label": "x", "server_url": "https://example.com/mcp"},
    {"type": "local_shell"},
]


@pytest.mark.parametrize("tool", HOSTED_TOOLS, ids=lambda tool: tool["type"])
def test_responses_hosted_tools_are_refused(app, live_server, fakes, caller, tool):
    key, account_id = caller
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(live_server, key).responses.create(
            model="gpt-5-mini", input="hi", tools=[tool]
        )
    assert_openai_refusal(raised, "tools[0]")
    assert tool["type"] in raised.value.response.json()["error"]["message"]
    assert_untouched(app, fakes, account_id)


def test_responses_hosted_tool_after_a_function_is_named(app, live_server, fakes, caller):
    key, account_id = caller
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(live_server, key).responses.create(
            model="gpt-5-mini",
            input="hi",
            stream=True,
            tools=[
                {"type": "function", "name": "weather", "parameters": WEATHER},
                {"type": "web_search"},
            ],
        )
    assert_openai_refusal(raised, "tools[1]")
    assert "web search is billed by the provider per use" in raised.value.message
    assert_untouched(app, fakes, account_id)


@pytest.mark.parametrize("tool", [{"type": "web_search"}, {"type": "x_search"}])
def test_xai_responses_server_tools_are_refused(app, live_server, fakes, caller, tool):
    key, account_id = caller
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(live_server, key).responses.create(model="grok-4.3", input="hi", tools=[tool])
    assert_openai_refusal(raised, "tools[0]")
    assert_untouched(app, fakes, account_id)


@pytest.mark.parametrize("tier", ["priority", "flex"])
@pytest.mark.parametrize("model", ["gpt-5-mini", "grok-4.3"])
def test_responses_service_tier_is_refused(app, live_server, fakes, caller, model, tier):
    key, account_id = caller
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(live_server, key).responses.create(model=model, input="hi", service_tier=tier)
    assert_openai_refusal(raised, "service_tier")
    assert_untouched(app, fakes, account_id)


def test_responses_function_and_custom_tools_still_work(live_server, fakes, caller):
    key, _ = caller
    tools = [
        {"type": "function", "name": "weather", "parameters": WEATHER, "strict": False},
        {"type": "custom", "name": "grammar_free", "description": "free text"},
    ]
    reply = openai_client(live_server, key).responses.create(
        model="gpt-5-mini", input="[[fake:tool]]", tools=tools, service_tier="default"
    )
    assert reply.output[0].type == "function_call"
    assert [tool["type"] for tool in fakes.last_call("openai").body["tools"]] == [
        "function",
        "custom",
    ]


# --- /anthropic/v1/messages --------------------------------------------------------------------

SERVER_TOOLS = [
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 1},
    {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 1},
    {"type": "code_execution_20250825", "name": "code_execution"},
    {"type": "bash_20250124", "name": "bash"},
    {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
]


@pytest.mark.parametrize("tool", SERVER_TOOLS, ids=lambda tool: tool["type"])
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_server_tools_are_refused(app, live_server, fakes, caller, tool, stream):
    key, account_id = caller
    with pytest.raises(anthropic.BadRequestError) as raised:
        anthropic_client(live_server, key).messages.create(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=USER,
            tools=[{"name": "weather", "input_schema": WEATHER}, tool],
            stream=stream,
        )
    assert raised.value.status_code == 400
    body = raised.value.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(f"tools.1.type: '{tool['type']}'")
    assert CANNOT_PRICE in body["error"]["message"]
    assert_untouched(app, fakes, account_id)


def test_anthropic_web_search_message_says_why(app, live_server, fakes, caller):
    key, account_id = caller
    with pytest.raises(anthropic.BadRequestError) as raised:
        anthropic_client(live_server, key).messages.create(
            model="claude-haiku-4-5", max_tokens=100, messages=USER, tools=[SERVER_TOOLS[0]]
        )
    assert "web search is billed by the provider per use" in raised.value.message
    assert_untouched(app, fakes, account_id)


@pytest.mark.parametrize(
    "tool",
    [
        {"name": "weather", "input_schema": WEATHER},
        {"type": "custom", "name": "weather", "input_schema": WEATHER},
    ],
    ids=["no type", "custom"],
)
def test_anthropic_custom_tools_still_work(live_server, fakes, caller, tool):
    key, _ = caller
    reply = anthropic_client(live_server, key).messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=TOOL_CALL, tools=[tool]
    )
    assert reply.content[-1].type == "tool_use"
    assert fakes.last_call("anthropic").body["tools"] == [tool]


# --- /gemini -----------------------------------------------------------------------------------

GOOGLE_TOOLS = [
    (types.Tool(google_search=types.GoogleSearch()), "googleSearch"),
    (types.Tool(google_search_retrieval=types.GoogleSearchRetrieval()), "googleSearchRetrieval"),
    (types.Tool(code_execution=types.ToolCodeExecution()), "codeExecution"),
    (types.Tool(url_context=types.UrlContext()), "urlContext"),
    (types.Tool(google_maps=types.GoogleMaps()), "googleMaps"),
    (
        types.Tool(file_search=types.FileSearch(file_search_store_names=["fileSearchStores/x"])),
        "fileSearch",
    ),
]


@pytest.mark.parametrize(("tool", "name"), GOOGLE_TOOLS, ids=[n for _, n in GOOGLE_TOOLS])
@pytest.mark.parametrize("stream", [False, True])
def test_gemini_google_tools_are_refused(app, live_server, fakes, caller, tool, name, stream):
    key, account_id = caller
    client = genai_client(live_server, key)  # kept: a dropped client closes its connection
    models = client.models
    config = types.GenerateContentConfig(tools=[tool])
    with pytest.raises(genai_errors.ClientError) as raised:
        if stream:
            list(
                models.generate_content_stream(
                    model="gemini-3.5-flash-lite", contents="hi", config=config
                )
            )
        else:
            models.generate_content(model="gemini-3.5-flash-lite", contents="hi", config=config)
    assert raised.value.code == 400
    assert raised.value.status == "INVALID_ARGUMENT"
    assert f"tools[0].{name}" in raised.value.message
    assert CANNOT_PRICE in raised.value.message
    assert_untouched(app, fakes, account_id)


@pytest.mark.parametrize(
    "action", ["generateContent", "streamGenerateContent", "streamGenerateContent?alt=sse"]
)
def test_gemini_raw_rest_tools_are_refused(app, live_server, fakes, caller, action):
    """Snake-case keys, and a search tool beside function declarations, by plain REST."""
    key, account_id = caller
    response = requests.post(
        f"{live_server.url}/gemini/v1/models/gemini-3.5-flash-lite:{action}",
        headers={"x-goog-api-key": key},
        json={
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [
                {"functionDeclarations": [{"name": "weather", "parameters": WEATHER}]},
                {"google_search": {}},
            ],
        },
        timeout=30,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith("tools[1].google_search is not supported: web search")
    assert_untouched(app, fakes, account_id)


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_function_declarations_still_work(live_server, fakes, caller, stream):
    key, _ = caller
    client = genai_client(live_server, key, "v1")
    models = client.models
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(name="weather", parameters_json_schema=WEATHER)
        ]
    )
    config = types.GenerateContentConfig(tools=[tool])
    if stream:
        chunks = list(
            models.generate_content_stream(
                model="gemini-3.5-flash-lite", contents="[[fake:tool]]", config=config
            )
        )
        assert chunks
    else:
        reply = models.generate_content(
            model="gemini-3.5-flash-lite", contents="[[fake:tool]]", config=config
        )
        assert reply.function_calls[0].name == "weather"
    assert list(fakes.last_call("gemini").body["tools"][0]) == ["functionDeclarations"]


# --- count_tokens: allow-list and rate limit ---------------------------------------------------


def test_count_tokens_applies_the_model_allow_list(live_server, fakes, funded_key):
    key, _, _ = funded_key(GRANT, allowed_models=["gpt-4o-mini"])
    client = anthropic_client(live_server, key)
    with pytest.raises(anthropic.PermissionDeniedError) as raised:
        client.messages.count_tokens(model="claude-haiku-4-5", messages=USER)
    body = raised.value.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "permission_error"
    assert "claude-haiku-4-5" in body["error"]["message"]
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert fakes.calls_for() == []
    allowed, _, _ = funded_key(GRANT, allowed_models=["claude-haiku-4-5"])
    counted = anthropic_client(live_server, allowed).messages.count_tokens(
        model="claude-haiku-4-5", messages=USER
    )
    assert counted.input_tokens > 0


def test_count_tokens_applies_the_key_rate_limit(app, live_server, fakes, funded_key):
    key, _, key_id = funded_key(GRANT)
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(rate_limit_rpm=2))
        db.session.commit()
    if time.time() % 60 > 55:  # the counter is per minute: stay inside one
        time.sleep(61 - time.time() % 60)
    client = anthropic_client(live_server, key)
    for _ in range(2):
        client.messages.count_tokens(model="claude-haiku-4-5", messages=USER)
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.count_tokens(model="claude-haiku-4-5", messages=USER)
    assert raised.value.response.json()["error"]["type"] == "rate_limit_error"
    assert int(raised.value.response.headers["retry-after"]) >= 1
    assert len(fakes.calls_for("anthropic")) == 2
    # The same per-key counter as the metered routes.
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=USER)
