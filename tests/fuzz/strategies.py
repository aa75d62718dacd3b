"""What a fuzzed proxy request is made of: the routes with a valid body each, and the ways a body
goes wrong (raw bytes, JSON of any shape, a valid body with one field broken, deep nesting, odd
Unicode), sent with a valid key, another key, or none."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from urllib.parse import quote

from hypothesis import strategies as st

from app.proxy.errors import ANTHROPIC, GOOGLE, OPENAI

HELLO = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
FUNCTION_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "d",
        "parameters": {
            "type": "object",
            "properties": {"q": {"type": "string"}, "n": {"type": ["integer", "null"]}},
            "required": ["q"],
        },
    },
}


TOOL_EXCHANGE = [
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "x", "n": 1}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "found"},
]


def chat(model: str, **extra) -> dict:
    return {
        "model": model,
        "messages": [{"role": "system", "content": "be brief"}, *HELLO, *TOOL_EXCHANGE],
        "max_tokens": 16,
        "tools": [FUNCTION_TOOL],
        **extra,
    }


def responses(model: str, **extra) -> dict:
    return {
        "model": model,
        "instructions": "be brief",
        "input": [{"role": "user", "content": "hi"}],
        "max_output_tokens": 16,
        **extra,
    }


def messages(**extra) -> dict:
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "system": "be brief",
        "messages": HELLO,
        "tools": [
            {
                "name": "lookup",
                "description": "d",
                "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            }
        ],
        **extra,
    }


def generate(**extra) -> dict:
    return {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {"maxOutputTokens": 16, "temperature": 0.5},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "lookup",
                        "parameters": {"type": "OBJECT", "properties": {"q": {"type": "STRING"}}},
                    }
                ]
            }
        ],
        **extra,
    }


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    dialect: str
    bases: tuple[dict, ...] = field(default=())  # valid bodies; none for a GET

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


GEMINI_PATH = "/gemini/{version}/models/{model}:{action}"
ROUTES = [
    Route(
        "POST",
        "/v1/chat/completions",
        OPENAI,
        tuple(
            chat(model, **stream)
            for model in ("gpt-4o-mini", "grok-3-mini", "claude-haiku-4-5", "gemini-3.5-flash-lite")
            for stream in ({}, {"stream": True, "stream_options": {"include_usage": True}})
        ),
    ),
    Route(
        "POST",
        "/v1/responses",
        OPENAI,
        (responses("gpt-5-mini"), responses("grok-3-mini", stream=True)),
    ),
    Route("POST", "/anthropic/v1/messages", ANTHROPIC, (messages(), messages(stream=True))),
    Route(
        "POST",
        "/anthropic/v1/messages/count_tokens",
        ANTHROPIC,
        ({"model": "claude-haiku-4-5", "messages": HELLO, "system": "be brief"},),
    ),
    Route(
        "POST",
        GEMINI_PATH.format(
            version="v1beta", model="gemini-3.5-flash-lite", action="generateContent"
        ),
        GOOGLE,
        (generate(),),
    ),
    Route(
        "POST",
        GEMINI_PATH.format(
            version="v1", model="gemini-3.5-flash-lite", action="streamGenerateContent"
        )
        + "?alt=sse",
        GOOGLE,
        (generate(),),
    ),
    Route("GET", "/v1/models", OPENAI),
    Route("GET", "/v1/key", OPENAI),
    Route("GET", "/anthropic/v1/models", ANTHROPIC),
]

# --- bodies --------------------------------------------------------------------------------------

odd_text = st.text(st.characters(exclude_categories=[]), max_size=12)  # lone surrogates included
some_text = st.one_of(st.text(max_size=12), odd_text, st.sampled_from(["", "\ud800", "\x00", "🙂"]))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    some_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(some_text, children, max_size=4)
    ),
    max_leaves=16,
)
DEEP = "\x00deep\x00"  # a placeholder value, replaced in the encoded body by deeply nested text


def encode(body: object, *, ascii_only: bool) -> bytes:
    """JSON bytes: lone surrogates as `\\ud800` escapes, or (not ascii_only) as the raw UTF-8-like
    bytes Python's JSON decoder also accepts."""
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def deep_text(draw) -> str:
    # Around the gateway's limit (128) and Python's (1000), and far past both.
    depth = draw(
        st.one_of(
            st.sampled_from([129, 990, 1500, 50_000]), st.integers(min_value=50, max_value=3000)
        )
    )
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"type":', "}]")]))
    leaf = draw(st.sampled_from(["1", '"x"', "[]", "{}"]))
    return opener * depth + leaf + closer * depth


def paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every place inside a JSON value: key and index paths, the value itself excluded."""
    found = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def is_json_text(value: str) -> bool:
    return value.startswith("{")


def value_at(body: object, place) -> object:
    for step in place:
        body = body[step]
    return body


@st.composite
def broken_body(draw, base: dict) -> bytes:
    """A valid body with one thing wrong: a field deleted, replaced by any JSON value, nested
    thousands deep (or given such JSON as text), or given odd Unicode; or one field too many."""
    body = copy.deepcopy(base)
    how = draw(st.sampled_from(["delete", "replace", "deep", "deep text", "odd text", "add"]))
    places = paths(body)
    if how in ("deep text", "odd text"):  # in place of some text
        places = [place for place in places if isinstance(value_at(body, place), str)]
    if how == "deep text":  # in place of JSON text (a tool call's arguments), where there is any
        places = [place for place in places if is_json_text(value_at(body, place))] or places
    *parents, last = draw(st.sampled_from(places))
    container = value_at(body, parents)
    if how == "delete":
        del container[last]
    elif how == "replace":
        container[last] = draw(json_values)
    elif how == "deep":
        container[last] = DEEP
    elif how == "deep text":
        container[last] = draw(deep_text())
    elif how == "odd text":
        container[last] = draw(odd_text)
    else:
        target = container if isinstance(container, dict) else body
        target[draw(some_text)] = draw(json_values)
    raw = encode(body, ascii_only=draw(st.booleans()))
    if how == "deep":
        raw = raw.replace(json.dumps(DEEP).encode(), draw(deep_text()).encode())
    return raw


def bodies(route: Route) -> st.SearchStrategy[bytes]:
    """Any body for the route: raw bytes, any JSON, deep nesting, and (for a route taking a JSON
    body) its valid bodies and those with one thing broken, in about equal parts."""
    kinds = [
        st.binary(max_size=300),
        st.builds(encode, json_values, ascii_only=st.booleans()),
        deep_text().map(str.encode),
    ]
    if route.bases:
        base = st.sampled_from(route.bases)
        kinds.append(base.map(lambda body: encode(body, ascii_only=True)))
        kinds.extend([base.flatmap(broken_body)] * 3)
    return st.one_of(kinds)


# --- who is asking ------------------------------------------------------------------------------

header_text = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40
)


@dataclass(frozen=True)
class Caller:
    key: str  # "valid", "none", or another key to present
    where: str  # Authorization, x-api-key, x-goog-api-key or query
    extra_headers: tuple[tuple[str, str], ...]

    def headers_and_query(self, valid_key: str) -> tuple[dict, dict]:
        key = valid_key if self.key == "valid" else self.key
        headers = dict(self.extra_headers)
        query = {}
        if self.key != "none":
            if self.where == "Authorization":
                headers["Authorization"] = f"Bearer {key}"
            elif self.where == "query":
                query["key"] = key
            else:
                headers[self.where] = key
        return headers, query


callers = st.builds(
    Caller,
    key=st.one_of(
        st.just("valid"),
        st.just("valid"),
        st.just("none"),
        st.just("ok-" + "A" * 43),  # well formed, unknown
        header_text,
    ),
    where=st.sampled_from(["Authorization", "x-api-key", "x-goog-api-key", "query"]),
    extra_headers=st.lists(
        st.tuples(
            st.sampled_from(["anthropic-version", "anthropic-beta", "openai-beta", "Content-Type"]),
            header_text,
        ),
        max_size=2,
        unique_by=lambda pair: pair[0],
    ).map(tuple),
)

# A path under a prefix the gateway does not serve, percent-encoded as a client would send it.
unknown_suffixes = st.text(st.characters(exclude_categories=["Cs"]), min_size=0, max_size=30).map(
    lambda text: quote(text, safe="/:")
)
methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"])
