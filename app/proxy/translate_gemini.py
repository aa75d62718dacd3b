"""OpenAI Chat Completions <-> Gemini generateContent, for Gemini models on `/v1/chat/completions`.

Requests are translated up front (`ChatToGemini.validate`): anything generateContent cannot honour
is a 400 naming the parameter. Answers come back as `chat.completion` (one choice per candidate)
or `chat.completion.chunk` frames; Gemini's usageMetadata is cumulative, so the last report wins.
"""

from __future__ import annotations

import json
import secrets

from app.proxy.metering import PricedModel, usage_from_gemini
from app.proxy.openai import wants_usage
from app.proxy.relay import EventRelay
from app.proxy.sse import DONE_FRAME, Event
from app.proxy.translate_chat import (
    ChunkWriter,
    assistant_choice,
    check_messages,
    completion_body,
    completion_id,
    content_parts,
    error_frame,
    file_payload,
    function_tools,
    image_url_of,
    invalid,
    is_web_url,
    merge_turns,
    mime_from_name,
    number,
    obj,
    openai_usage,
    parse_data_url,
    positive_int,
    refuse_set,
    stop_sequences,
    text_only,
    tool_call_list,
    tool_choice,
)
from app.proxy.upstream import UpstreamCall

MAX_CANDIDATES = 8
GEMINI_REFUSED = {
    "logprobs": "log probabilities are not translated",
    "top_logprobs": "log probabilities are not translated",
    "logit_bias": "Gemini has no token biasing",
    "audio": "audio output is not translated",
    "modalities": "only text output is translated",
    "prediction": "Gemini has no predicted outputs",
    "verbosity": "Gemini has no verbosity setting",
    "moderation": "Gemini has no moderation option",
    "functions": "use 'tools'",
    "function_call": "use 'tool_choice'",
}
# reasoning_effort -> thinkingConfig.thinkingBudget (within every current model's range).
THINKING_BUDGETS = {
    "none": 0,
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 24576,
    "max": 24576,
}
AUDIO_FORMATS = {"wav": "audio/wav", "mp3": "audio/mp3"}
# OpenAPI-subset keys Gemini's Schema accepts; other JSON Schema keywords are dropped.
SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
        "additionalProperties",
    }
)
MAX_SCHEMA_DEPTH = 64


def gemini_schema(schema: dict, param: str) -> dict:
    """A JSON Schema in the OpenAPI subset Gemini's `Schema` takes: local $refs inlined, type
    unions and null members turned into anyOf/nullable, `const` into a one-value enum."""
    defs = {**obj(schema.get("definitions")), **obj(schema.get("$defs"))}

    def convert(node: object, depth: int) -> object:
        if not isinstance(node, dict):
            return node
        if depth > MAX_SCHEMA_DEPTH:
            raise invalid(param, "The schema is too deep, or recursive: Gemini cannot take it.")
        if isinstance(node.get("$ref"), str):
            name = node["$ref"].rsplit("/", 1)[-1]
            if not node["$ref"].startswith("#/") or name not in defs:
                raise invalid(param, f"The schema reference {node['$ref']!r} cannot be resolved.")
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return convert({**obj(defs[name]), **extra}, depth + 1)
        node = dict(node)
        for combinator in ("allOf",):
            if isinstance(node.get(combinator), list):
                for member in node.pop(combinator):
                    if isinstance(member, dict):
                        node = {**member, **node}
        out: dict = {}
        kind = node.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            if "null" in kind:
                out["nullable"] = True
            if len(kinds) == 1:
                out["type"] = kinds[0]
            elif kinds:
                out["anyOf"] = [{"type": k} for k in kinds]
        elif kind == "null":
            out["nullable"] = True
        elif kind is not None:
            out["type"] = kind
        if "const" in node:
            out["enum"] = [node["const"]]
        variants = node.get("anyOf") or node.get("oneOf")
        if isinstance(variants, list):
            members = []
            for member in variants:
                if isinstance(member, dict) and member.get("type") == "null":
                    out["nullable"] = True
                else:
                    members.append(convert(member, depth + 1))
            if len(members) == 1 and isinstance(members[0], dict):
                out.update({k: v for k, v in members[0].items() if k not in out})
            elif members:
                out["anyOf"] = members
        for key, value in node.items():
            if key in out or key not in SCHEMA_KEYS or key in ("type", "anyOf"):
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {name: convert(sub, depth + 1) for name, sub in value.items()}
            elif key in ("items", "additionalProperties"):
                out[key] = convert(value, depth + 1)
            else:
                out[key] = value
        return out

    return convert(schema, 0)


def _inline(mime: str, data: str) -> dict:
    return {"inlineData": {"mimeType": mime, "data": data}}


def _user_parts(content: object, param: str) -> list[dict]:
    parts = []
    for j, part in enumerate(content_parts(content, param)):
        where = f"{param}[{j}]"
        kind = part["type"]
        if kind == "text":
            if part["text"]:
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            url = image_url_of(part, where)
            data = parse_data_url(url, f"{where}.image_url.url")
            if data:
                parts.append(_inline(*data))
            elif is_web_url(url):
                mime = mime_from_name(url)
                if mime is None:
                    raise invalid(
                        f"{where}.image_url.url",
                        "The file type of this URL cannot be told from its extension; "
                        "send the image as a data: URL.",
                    )
                parts.append({"fileData": {"mimeType": mime, "fileUri": url}})
            else:
                raise invalid(f"{where}.image_url.url", "Images must be data: or https URLs.")
        elif kind == "input_audio":
            audio = obj(part.get("input_audio"))
            audio_format = audio.get("format")
            mime = AUDIO_FORMATS.get(audio_format) if isinstance(audio_format, str) else None
            if mime is None or not isinstance(audio.get("data"), str):
                raise invalid(
                    f"{where}.input_audio", "'input_audio' needs base64 'data' and wav or mp3."
                )
            parts.append(_inline(mime, audio["data"]))
        elif kind == "file":
            parts.append(_inline(*file_payload(part, where)))
        else:
            raise invalid(where, f"Content parts of type {kind!r} are not supported for Gemini.")
    return parts


def _text_parts(content: object, param: str) -> list[dict]:
    return [{"text": part["text"]} for part in text_only(content, param) if part["text"]]


def _thought_signature(call: dict) -> str | None:
    signature = obj(obj(call["extra"]).get("google")).get("thought_signature")
    return signature if isinstance(signature, str) and signature else None


def gemini_contents(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """(systemInstruction parts, alternating user/model contents)."""
    system: list[dict] = []
    turns: list[dict] = []
    names: dict[str, str] = {}  # tool call id -> function name, from earlier assistant turns
    for i, message in enumerate(messages):
        role = message["role"]
        param = f"messages[{i}].content"
        if role in ("system", "developer"):
            system += _text_parts(message.get("content"), param)
        elif role == "user":
            if message.get("content") is None:
                raise invalid(param, "A user message needs 'content'.")
            turns.append({"role": "user", "parts": _user_parts(message["content"], param)})
        elif role == "assistant":
            if message.get("audio"):
                raise invalid(f"messages[{i}].audio", "Audio replies cannot be sent to Gemini.")
            parts = _text_parts(message.get("content"), param)
            for call in tool_call_list(message, i):
                names[call["id"]] = call["name"]
                part: dict = {"functionCall": {"name": call["name"], "args": call["input"]}}
                signature = _thought_signature(call)
                if signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
            turns.append({"role": "model", "parts": parts})
        else:  # tool
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in names:
                raise invalid(
                    f"messages[{i}].tool_call_id",
                    "A tool message must answer a tool call of an earlier assistant message.",
                )
            text = "".join(part["text"] for part in text_only(message.get("content"), param))
            response = {"name": names[call_id], "response": {"output": text}}
            turns.append({"role": "user", "parts": [{"functionResponse": response}]})
    return system, merge_turns(turns, "parts")


class ChatToGemini:
    """An OpenAI Chat Completions request for a Gemini model, as a generateContent call."""

    def __init__(self, body: dict, model: PricedModel):
        self.body = body
        self.model = model
        self._native: dict | None = None

    def validate(self) -> None:
        body = self.body
        messages = check_messages(body)
        refuse_set(body, GEMINI_REFUSED, "Gemini")
        parallel = body.get("parallel_tool_calls")
        if parallel is not None and not isinstance(parallel, bool):
            raise invalid("parallel_tool_calls", "'parallel_tool_calls' must be a boolean.")
        if parallel is False:
            raise invalid(
                "parallel_tool_calls",
                "'parallel_tool_calls': false is not supported for Gemini models: they may "
                "always call several functions at once.",
            )
        native: dict = {}
        system, contents = gemini_contents(messages)
        if not contents:
            raise invalid("messages", "'messages' needs a user or assistant message for Gemini.")
        native["contents"] = contents
        if system:
            native["systemInstruction"] = {"parts": system}
        native["generationConfig"] = self._generation_config()
        self._tools(native)
        self._native = native

    def _generation_config(self) -> dict:
        body = self.body
        config: dict = {}
        n = body.get("n")
        if n is not None:
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CANDIDATES:
                raise invalid("n", f"'n' must be between 1 and {MAX_CANDIDATES} for Gemini models.")
            config["candidateCount"] = n
        for name, key, low, high in (
            ("temperature", "temperature", 0, 2),
            ("top_p", "topP", 0, 1),
            ("presence_penalty", "presencePenalty", -2, 2),
            ("frequency_penalty", "frequencyPenalty", -2, 2),
        ):
            value = number(body, name, low, high, "Gemini")
            if value is not None:
                config[key] = value
        top_k = positive_int(body, "top_k")
        if top_k is not None:
            config["topK"] = top_k
        seed = body.get("seed")
        if seed is not None:
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise invalid("seed", "'seed' must be an integer.")
            config["seed"] = seed
        stop = stop_sequences(body)
        if stop:
            config["stopSequences"] = stop
        config.update(self._response_format())
        effort = body.get("reasoning_effort")
        if effort is not None:
            if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
                raise invalid(
                    "reasoning_effort", f"'reasoning_effort' {effort!r} is not a known level."
                )
            config["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGETS[effort]}
        return config

    def _response_format(self) -> dict:
        response_format = self.body.get("response_format")
        if response_format is None:
            return {}
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind == "text":
            return {}
        if kind == "json_object":
            return {"responseMimeType": "application/json"}
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict):
                raise invalid("response_format", "'response_format.json_schema' must be an object.")
            schema = spec.get("schema")
            if schema is None:
                return {"responseMimeType": "application/json"}
            if not isinstance(schema, dict):
                raise invalid(
                    "response_format", "'response_format.json_schema.schema' must be a JSON Schema."
                )
            return {
                "responseMimeType": "application/json",
                "responseSchema": gemini_schema(schema, "response_format"),
            }
        raise invalid("response_format", f"'response_format' {kind!r} is not supported.")

    def _tools(self, native: dict) -> None:
        mode, forced, tools = tool_choice(self.body, function_tools(self.body))
        if not tools:
            return
        declarations = []
        for i, tool in enumerate(tools):
            declaration = {"name": tool["name"]}
            if tool["description"]:
                declaration["description"] = tool["description"]
            parameters = tool["parameters"]
            # Gemini refuses an OBJECT schema with no properties: a function without arguments
            # simply has no `parameters`.
            if parameters and (parameters.get("properties") or parameters.get("type") != "object"):
                declaration["parameters"] = gemini_schema(
                    parameters, f"tools[{i}].function.parameters"
                )
            declarations.append(declaration)
        native["tools"] = [{"functionDeclarations": declarations}]
        if mode is None:
            return
        config: dict = {"mode": {"auto": "AUTO", "none": "NONE"}.get(mode, "ANY")}
        if mode == "function":
            config["allowedFunctionNames"] = [forced]
        native["toolConfig"] = {"functionCallingConfig": config}

    def upstream_call(self, *, output_limit: int, opaque_user: str) -> UpstreamCall:
        # Gemini has no per-end-user field; `opaque_user` has nowhere to go.
        if self._native is None:
            self.validate()
        stream = bool(self.body.get("stream"))
        native = dict(self._native)
        native["generationConfig"] = {**native["generationConfig"], "maxOutputTokens": output_limit}
        method = "streamGenerateContent" if stream else "generateContent"
        return UpstreamCall(
            provider="google",
            path=f"/v1beta/models/{self.model.model_id}:{method}",
            body=native,
            stream=stream,
            query={"alt": "sse"} if stream else {},
        )

    def relay(self) -> GenerateToChat:
        return GenerateToChat(self.model, client_wants_usage=wants_usage(self.body))


# --- Gemini answers -----------------------------------------------------------------------------

GEMINI_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}
GEMINI_ERROR_CONDITIONS = {
    "INVALID_ARGUMENT": "invalid_request",
    "FAILED_PRECONDITION": "invalid_request",
    "RESOURCE_EXHAUSTED": "rate_limited",
    "DEADLINE_EXCEEDED": "upstream_timeout",
}


def gemini_finish(reason: object, has_calls: bool) -> str:
    finish = GEMINI_FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if finish == "stop" and has_calls else finish


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def _index(candidate: dict, position: int) -> int:
    index = candidate.get("index", position)
    return index if isinstance(index, int) and not isinstance(index, bool) else position


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _candidate_parts(candidate: dict) -> list[dict]:
    parts = _list(obj(candidate.get("content")).get("parts"))
    # Thought summaries are not content; they are billed through thoughtsTokenCount.
    return [p for p in parts if isinstance(p, dict) and not p.get("thought")]


def _call_extra(part: dict) -> dict:
    """The thought signature Gemini 3 wants back with a function call, where clients keep it."""
    signature = part.get("thoughtSignature")
    return {"extra_content": {"google": {"thought_signature": signature}}} if signature else {}


class GenerateToChat(EventRelay):
    """Relays a Gemini generateContent answer to an OpenAI Chat Completions client."""

    def __init__(self, model: PricedModel, *, client_wants_usage: bool):
        super().__init__(model)
        self.client_wants_usage = client_wants_usage
        self.writer = ChunkWriter(model)
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}  # choice index -> tool calls sent
        self._finished_choices: set[int] = set()

    def _take_usage(self, chunk: dict) -> bool:
        report = chunk.get("usageMetadata")
        if isinstance(report, dict) and report:
            self.usage = usage_from_gemini(report)  # cumulative: replaces, never adds
            return True
        return False

    def response_body(self, upstream: dict) -> dict:
        if not isinstance(upstream, dict):
            raise ValueError("not a GenerateContentResponse")
        self._take_usage(upstream)
        self.usage_complete = self.usage is not None
        choices = []
        for position, candidate in enumerate(_list(upstream.get("candidates"))):
            if not isinstance(candidate, dict):
                continue
            texts, tool_calls = [], []
            for part in _candidate_parts(candidate):
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif isinstance(part.get("functionCall"), dict):
                    call = part["functionCall"]
                    arguments = json.dumps(call.get("args") or {}, ensure_ascii=False)
                    self.delivered_bytes += len(arguments.encode())
                    tool_calls.append(
                        {
                            "id": new_call_id(),
                            "type": "function",
                            "function": {"name": call.get("name"), "arguments": arguments},
                            **_call_extra(part),
                        }
                    )
            text = "".join(texts)
            self.delivered_bytes += len(text.encode())
            index = _index(candidate, position)
            finish = gemini_finish(candidate.get("finishReason"), bool(tool_calls))
            choices.append(assistant_choice(index, text if texts else None, tool_calls, finish))
        if not choices:
            # The prompt was blocked (promptFeedback.blockReason): no candidates at all.
            choices.append(assistant_choice(0, None, [], "content_filter"))
        choices.sort(key=lambda choice: choice["index"])
        self.finished = True
        return completion_body(self.model, upstream.get("responseId"), choices, self.usage)

    def _start(self, index: int) -> list[bytes]:
        if index in self._started:
            return []
        self._started.add(index)
        return [self.writer.role(index)]

    def on_event(self, event: Event) -> list[bytes]:
        chunk = event.json_object()
        if chunk is None:
            return []
        if "error" in chunk:
            self.finished = False
            self.failed = True
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            status = error.get("status")
            condition = GEMINI_ERROR_CONDITIONS.get(status if isinstance(status, str) else "")
            condition = condition or "upstream_error"
            message = error.get("message") or "The provider reported an error."
            return [error_frame(condition, f"Google: {message}")]
        if not self._started:
            self.writer.id = completion_id(chunk.get("responseId"))
        has_usage = self._take_usage(chunk)
        frames = self._start(0)
        candidates = [c for c in _list(chunk.get("candidates")) if isinstance(c, dict)]
        for position, candidate in enumerate(candidates):
            index = _index(candidate, position)
            frames += self._start(index)
            for part in _candidate_parts(candidate):
                if isinstance(part.get("text"), str) and part["text"]:
                    self.delivered_bytes += len(part["text"].encode())
                    frames.append(self.writer.content(index, part["text"]))
                elif isinstance(part.get("functionCall"), dict):
                    frames += self._tool_call(index, part)
            if candidate.get("finishReason") and index not in self._finished_choices:
                self._finished_choices.add(index)
                self.finished = True
                reason = gemini_finish(candidate["finishReason"], index in self._calls)
                frames.append(self.writer.finish(index, reason))
        block = obj(chunk.get("promptFeedback")).get("blockReason")
        if block and not candidates and 0 not in self._finished_choices:
            self._finished_choices.add(0)
            self.finished = True
            frames.append(self.writer.finish(0, "content_filter"))
        if has_usage and self.finished:
            self.usage_complete = True
        return frames

    def _tool_call(self, index: int, part: dict) -> list[bytes]:
        call = part["functionCall"]
        position = self._calls.get(index, 0)
        self._calls[index] = position + 1
        arguments = json.dumps(call.get("args") or {}, ensure_ascii=False)
        self.delivered_bytes += len(arguments.encode())
        start = self.writer.tool_start(
            index, position, new_call_id(), call.get("name"), **_call_extra(part)
        )
        return [start, self.writer.tool_arguments(index, position, arguments)]

    def on_end(self) -> list[bytes]:
        if not self.finished:
            return []
        frames = []
        if self.client_wants_usage and self.usage is not None:
            frames.append(self.writer.usage(openai_usage(self.model, self.usage)))
        frames.append(DONE_FRAME)
        return frames
