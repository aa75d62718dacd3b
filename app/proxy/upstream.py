"""Calling the providers: one keep-alive pool per provider and process, and error mapping.

urllib3 directly, not requests: for a gateway that makes one call per request, requests' session
layer (hooks, cookies, environment, adapters) cost more CPU than the HTTP exchange itself
(bench/README.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import urllib3
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

_pools: dict[str, urllib3.PoolManager] = {}
_pools_lock = threading.Lock()


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


def _pool(provider: str, base_url: str) -> urllib3.PoolManager:
    """The provider's keep-alive pool. The environment's proxy settings (HTTPS_PROXY, NO_PROXY)
    for its base URL are read once, here."""
    pool = _pools.get(provider)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(provider)
            if pool is None:
                parts = urlsplit(base_url)
                proxy = None
                if not proxy_bypass(parts.hostname or ""):
                    proxies = getproxies()
                    proxy = proxies.get(parts.scheme) or proxies.get("all")
                options = {"num_pools": 4, "maxsize": 256, "retries": False}
                pool = (
                    urllib3.ProxyManager(proxy, **options)
                    if proxy
                    else urllib3.PoolManager(**options)
                )
                _pools[provider] = pool
    return pool


class UpstreamResponse:
    """A provider's answer: status, headers and body, read whole or as a stream (`raw` is
    urllib3's response, whose socket the stream relay shuts down on a hang-up)."""

    def __init__(self, raw: urllib3.BaseHTTPResponse):
        self.raw = raw

    @property
    def status_code(self) -> int:
        return self.raw.status

    @property
    def reason(self) -> str:
        return self.raw.reason or ""

    @property
    def headers(self):
        return self.raw.headers

    @property
    def content(self) -> bytes:
        return self.raw.data

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self):
        """The body as JSON; raises ValueError when it is not."""
        return json.loads(self.content)

    def iter_content(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The body as it arrives (each HTTP chunk of a chunked answer)."""
        return self.raw.stream(chunk_size, decode_content=True)

    def close(self) -> None:
        self.raw.close()
        self.raw.release_conn()


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


def send(call: UpstreamCall) -> UpstreamResponse:
    """POST the call upstream; a streamed call's body is left to be read. Raises ProxyError
    503/504/502 for configuration, timeouts, network."""
    base_url, api_key = provider_config(call.provider)
    headers = _auth_headers(call.provider, api_key, dict(call.headers))
    if call.stream:
        # Compressed streams can sit in a decompressor's buffer; ask for them plain.
        headers["Accept-Encoding"] = "identity"
    config = current_app.config
    url = base_url + call.path
    if call.query:
        url += "?" + urlencode(call.query)
    try:
        raw = _pool(call.provider, base_url).request(
            "POST",
            url,
            body=json.dumps(call.body, separators=(",", ":")).encode(),
            headers=headers,
            preload_content=not call.stream,
            timeout=urllib3.Timeout(
                connect=config["UPSTREAM_CONNECT_TIMEOUT"], read=config["UPSTREAM_READ_TIMEOUT"]
            ),
        )
    except urllib3.exceptions.NewConnectionError:  # refused: a kind of ConnectTimeoutError
        raise ProxyError(
            "upstream_error", f"{PROVIDER_NAMES[call.provider]} could not be reached."
        ) from None
    except urllib3.exceptions.TimeoutError:  # connect and read timeouts
        raise ProxyError(
            "upstream_timeout", f"{PROVIDER_NAMES[call.provider]} did not answer in time."
        ) from None
    except (urllib3.exceptions.HTTPError, OSError):
        raise ProxyError(
            "upstream_error", f"{PROVIDER_NAMES[call.provider]} could not be reached."
        ) from None
    return UpstreamResponse(raw)


def _upstream_message(response: UpstreamResponse) -> str:
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


def _is_operator_key_error(status: int, response: UpstreamResponse) -> bool:
    """xAI and Google answer a wrong API key with a 400 (Google: reason API_KEY_INVALID)."""
    if status != 400:
        return False
    text = response.text[:4000]
    return "API_KEY_INVALID" in text or "Incorrect API key" in text


def error_from_response(provider: str, response: UpstreamResponse) -> ProxyError:
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
