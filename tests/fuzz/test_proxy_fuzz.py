"""Every proxy route, fuzzed: never a 5xx from the gateway, every refusal JSON in the route's
dialect, and nothing held or debited for a refused body (issue 9, finding 13)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.proxy.errors import ANTHROPIC, GOOGLE, OPENAI
from app.services.ledger import check_invariants
from tests.fuzz.conftest import as_a_server_thread, fuzz_settings
from tests.fuzz.strategies import ROUTES, bodies, callers, methods, unknown_suffixes

# The gateway sees the valid key's requests from one address and every other key's from others,
# so the invalid-key throttle of one address never stands between the fuzzer and the body parser.
VALID_KEY_ADDRESS = "192.0.2.1"
other_addresses = st.integers(min_value=1, max_value=2**16 - 2).map(
    lambda n: f"198.18.{n // 256}.{n % 256}"
)


def assert_in_dialect(dialect: str, response) -> None:
    assert response.mimetype == "application/json", response.data[:300]
    body = json.loads(response.data)
    error = body["error"]
    if dialect == OPENAI:
        assert {"message", "type", "code", "param"} <= set(error)
        assert isinstance(error["message"], str) and isinstance(error["code"], str)
    elif dialect == ANTHROPIC:
        assert body["type"] == "error"
        assert isinstance(error["type"], str) and isinstance(error["message"], str)
    else:
        assert dialect == GOOGLE
        assert error["code"] == response.status_code
        assert isinstance(error["status"], str) and isinstance(error["message"], str)


def send(gateway, customer, route, body: bytes, caller, address: str):
    headers, query = caller.headers_and_query(customer.key)
    path, _, route_query = route.path.partition("?")
    if route_query:
        query.update(dict(part.split("=") for part in route_query.split("&")))
    return gateway.open(
        path,
        method=route.method,
        data=body,
        headers=headers,
        query_string=query,
        environ_base={"REMOTE_ADDR": VALID_KEY_ADDRESS if caller.key == "valid" else address},
    )


def with_body(response):
    return response, response.get_data()


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_fuzzed_requests_never_get_a_5xx_and_refusals_hold_nothing(gateway, customer, route):
    @fuzz_settings
    @given(body=bodies(route), caller=callers, address=other_addresses)
    def check(body, caller, address):
        balance, _ = customer.money()
        response, data = as_a_server_thread(
            # the whole answer: a stream is relayed, and settled, to its end
            lambda: with_body(send(gateway, customer, route, body, caller, address))
        )
        assert response.status_code < 500, (response.status_code, data[:500])
        after_balance, after_held = customer.money()
        assert after_held == 0, "a hold was left open"
        if response.status_code >= 400:
            assert_in_dialect(route.dialect, response)
            assert after_balance == balance, "a refused request was charged"
        else:
            assert after_balance <= balance

    check()
    with customer.app.app_context():
        assert check_invariants() == []


PREFIXES = {
    "/v1/": OPENAI,
    "/anthropic/": ANTHROPIC,
    "/anthropic/v1/": ANTHROPIC,
    "/gemini/": GOOGLE,
    "/gemini/v1beta/models/": GOOGLE,
}


def test_fuzzed_paths_and_methods_are_answered_in_the_dialect(gateway, customer):
    @fuzz_settings
    @given(prefix=st.sampled_from(list(PREFIXES)), suffix=unknown_suffixes, method=methods)
    def check(prefix, suffix, method):
        response = as_a_server_thread(
            lambda: gateway.open(
                prefix + suffix,
                method=method,
                headers={"Authorization": f"Bearer {customer.key}"},
                environ_base={"REMOTE_ADDR": VALID_KEY_ADDRESS},
            )
        )
        assert response.status_code < 500, response.data[:500]
        if method == "OPTIONS" and response.status_code == 200:
            return  # a served path's automatic answer
        if response.status_code >= 400 and method != "HEAD":
            assert_in_dialect(PREFIXES[prefix], response)

    check()
    assert customer.money()[1] == 0
