"""Fake upstream providers (OpenAI, xAI, Anthropic, Gemini) for the gateway's tests.

See README.md beside this file for the interface and the `[[fake:...]]` directives.
"""

from .common import Call, DirectiveError, Directives, parse_directives
from .upstreams import DEFAULT_KEYS, FakeUpstreams, running_fakes

__all__ = [
    "DEFAULT_KEYS",
    "Call",
    "DirectiveError",
    "Directives",
    "FakeUpstreams",
    "parse_directives",
    "running_fakes",
]
