"""Calling the providers: one pooled HTTP session per provider and process, and error mapping."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import requests
from flask import current_app

from app.proxy.errors import ProxyError, upstream_client_error

PROVIDER_SETTINGS = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "xai": ("XAI_BASE_URL", "XAI_API_KEY"),
    "anthropic": ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
    "google": ("GEMINI_BASE_URL", "GEMINI_API_KEY"),
}
PROVIDER_NAMES = {"openai": "OpenAI", "xai": "xAI", "anthropic": "Anthropic", "google": "Google"}
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"

_sessions: dict[str, requests.Session] = {}
_sessions_lock = threading.Lock()


@dataclass
class UpstreamCall:
    provider: str
    path: str  # appended to the provider's base URL
    body: dict
    stream: bool
    headers: dict = field(default_factory=dict)
    query: dict = field(default_factory=dict)


def provider_config(provider: str) -> tuple[str, str]:
    """(base URL, API key); raises ProxyError 503 when the operator has not configured it."""
    url_setting, key_setting = PROVIDER_SETTINGS[provider]
    api_key = current_app.config.get(key_setting)
    if not api_key:
        raise ProxyError(
            "provider_unavailable", f"{PROVIDER_NAMES[provider]} is not available on this gateway."
        )
    return current_app.config[url_setting].rstrip("/"), api_key


def _session(provider: str, base_url: str) -> requests.Session:
    """The provider's keep-alive pool. The environment's proxy settings (HTTPS_PROXY, NO_PROXY)
    for its base URL are read once here, not on every call as requests would (which costs more CPU
    than the rest of the call)."""
    session = _sessions.get(provider)
    if session is None:
        with _sessions_lock:
            session = _sessions.get(provider)
            if session is None:
                session = requests.Session()
                session.trust_env = False
                session.proxies = requests.utils.get_environ_proxies(base_url)
                adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=256)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                _sessions[provider] = session
    return session


def _auth_headers(provider: str, api_key: str, extra: dict) -> dict:
    headers = {"Content-Type": "application/json", "User-Agent": "OneKey-gateway/1"}
    if provider == "anthropic":
        headers["x-api-key"] = api_key
        headers["anthropic-version"] = extra.pop("anthropic-version", DEFAULT_ANTHROPIC_VERSION)
    elif provider == "google":
        headers["x-goog-api-key"] = api_key
    else:
        headers["Authorization"] = f"Bearer {api_key}"
    headers.update(extra)
    return headers


def send(call: UpstreamCall) -> requests.Response:
    """POST the call upstream. Raises ProxyError 503/504/502 for configuration, timeouts, network."""
    base_url, api_key = provider_config(call.provider)
    headers = _auth_headers(call.provider, api_key, dict(call.headers))
    if call.stream:
        # Compressed streams can sit in a decompressor's buffer; ask for them plain.
        headers["Accept-Encoding"] = "identity"
    config = current_app.config
    try:
        return _session(call.provider, base_url).post(
            base_url + call.path,
            params=call.query or None,
            data=json.dumps(call.body, separators=(",", ":")).encode(),
            headers=headers,
            stream=call.stream,
            timeout=(config["UPSTREAM_CONNECT_TIMEOUT"], config["UPSTREAM_READ_TIMEOUT"]),
        )
    except (requests.ConnectTimeout, requests.ReadTimeout):
        raise ProxyError(
            "upstream_timeout", f"{PROVIDER_NAMES[call.provider]} did not answer in time."
        ) from None
    except requests.RequestException:
        raise ProxyError(
            "upstream_error", f"{PROVIDER_NAMES[call.provider]} could not be reached."
        ) from None


def _upstream_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason or "upstream error"
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error  # xAI: {"code": "...", "error": "..."}
        if isinstance(body.get("message"), str):
            return body["message"]
    return response.reason or "upstream error"


def _is_operator_key_error(status: int, response: requests.Response) -> bool:
    """xAI and Google answer a wrong API key with a 400 (Google: reason API_KEY_INVALID)."""
    if status != 400:
        return False
    text = response.text[:4000]
    return "API_KEY_INVALID" in text or "Incorrect API key" in text


def error_from_response(provider: str, response: requests.Response) -> ProxyError:
    """Map a non-2xx upstream answer to the gateway's error (DESIGN.md's error table)."""
    status = response.status_code
    name = PROVIDER_NAMES[provider]
    message = _upstream_message(response)
    retry_headers = {
        header: response.headers[header]
        for header in ("retry-after", "retry-after-ms")
        if header in response.headers
    }
    if status == 429:
        return ProxyError("rate_limited", f"{name}: {message}", headers=retry_headers)
    if status in (401, 402, 403) or _is_operator_key_error(status, response):
        # The operator's own credentials or billing failed upstream: not the customer's fault.
        return ProxyError("upstream_error", f"{name} refused the gateway's request.")
    if status == 408 or status == 504:
        return ProxyError("upstream_timeout", f"{name}: {message}", headers=retry_headers)
    if 400 <= status < 500:
        return upstream_client_error(status, message)
    return ProxyError("upstream_error", f"{name} failed: {message}", headers=retry_headers)
