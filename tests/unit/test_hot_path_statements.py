"""The hold and settlement statements stay within what psycopg caches: it parses a statement's
placeholders with a regular expression on every execution unless the statement is at most 4 KiB
and has at most 50 parameters, which cost the hot path a quarter of a millisecond of CPU a request
when the key-period rules (issue 10 item 9) first pushed them past it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from psycopg import _queries
from sqlalchemy.dialects import postgresql

from app.models.types import utcnow
from app.services import holds


@pytest.mark.parametrize("name", ["RESERVE_SQL", "SETTLE_SQL"])
def test_hot_path_statements_fit_psycopgs_parse_cache(name):
    sql = holds.driver_sql(getattr(holds, name), postgresql.psycopg.dialect())
    assert len(sql.encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH


def test_the_hold_statement_parameters_fit_psycopgs_parse_cache():
    request = holds.HoldRequest(
        account_id=1,
        key_id=1,
        model_pk=1,
        model_version=1,
        model_id="m",
        input_cost=1,
        output_price=1,
        requested_output=None,
        expires_at=utcnow() + timedelta(hours=1),
        request_id="r",
    )
    assert len(holds._params(request, utcnow())) <= _queries.MAX_CACHED_STATEMENT_PARAMS
