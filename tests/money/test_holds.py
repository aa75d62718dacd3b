"""The hold statement (services/holds.py) and the rules it computes (DESIGN.md, "Holds").

On PostgreSQL `reserve` computes the decision in SQL; `decide` is the same rule in Python (SQLite
uses it). These properties hold the two together, and hold every reservation above the exact cost
of anything the request can be billed for.
"""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction
from math import ceil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from app.extensions import db
from app.models import Account, ApiKey, CatalogModel
from app.models.types import utcnow
from app.proxy.catalog_cache import cached_model
from app.proxy.metering import Usage, cost_of
from app.services import holds
from app.services.keys import create_key
from app.services.pricing import cost_bound

SETTINGS = settings(
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BIG = 10**15  # a million credits in nanocredits


@given(tokens=st.integers(0, 10**9), price=st.integers(0, 10**12))
def test_cost_bound_is_the_exact_product_rounded_up(tokens, price):
    assert cost_bound(tokens, price) == ceil(Fraction(tokens * price, 10**6))


figures = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["active", "active", "active", "suspended"]),
        "balance": st.integers(0, BIG),
        "held_share": st.fractions(0, 1),
        "key_limit": st.none() | st.integers(0, BIG),
        "key_usage": st.integers(0, BIG // 10),
        "key_held": st.integers(0, BIG // 10),
        "allowed": st.sampled_from([None, ["gpt-4o-mini"], ["gpt-4o"]]),
        "version_current": st.sampled_from([True, True, True, False]),
        "input_cost": st.integers(0, 10**12),
        "output_price": st.integers(0, 10**11),
        "choices": st.integers(1, 8),
        "requested": st.none() | st.integers(1, 10**6),
        "max_output": st.integers(1, 200_000),
    }
)


@pytest.fixture
def subject(app, catalog, make_account):
    """(account id, key id, model pk, model version) of an account with a key."""
    account_id = make_account("holder@example.com")
    with app.app_context():
        key, _ = create_key(db.session.get(Account, account_id), name="k")
        model = db.session.scalar(
            select(CatalogModel).where(CatalogModel.model_id == "gpt-4o-mini")
        )
        db.session.commit()
        return account_id, key.id, model.id, model.version


@SETTINGS
@given(case=figures)
def test_the_hold_statement_decides_as_decide_does(app, subject, case):
    account_id, key_id, model_pk, version = subject
    held = int(case["balance"] * case["held_share"])
    request = holds.HoldRequest(
        account_id=account_id,
        key_id=key_id,
        model_pk=model_pk,
        model_version=version if case["version_current"] else version + 1,
        model_id="gpt-4o-mini",
        input_cost=case["input_cost"],
        output_price=case["output_price"],
        choices=case["choices"],
        requested_output=case["requested"],
        max_output_tokens=case["max_output"],
        expires_at=utcnow() + timedelta(hours=1),
    )
    expected = holds.decide(
        request,
        holds.Figures(
            account_status=case["status"],
            balance=case["balance"],
            held=held,
            key_found=True,
            key_revoked=False,
            key_expired=False,
            key_limit=case["key_limit"],
            key_usage=case["key_usage"],
            key_held=case["key_held"],
            allowed_models=case["allowed"],
            model_current=case["version_current"],
        ),
    )
    with app.app_context():
        try:
            db.session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(
                    status=case["status"],
                    balance_nanocredits=case["balance"],
                    held_nanocredits=held,
                )
            )
            db.session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .values(
                    limit_nanocredits=case["key_limit"],
                    usage_nanocredits=case["key_usage"],
                    held_nanocredits=case["key_held"],
                    allowed_models=case["allowed"],
                )
            )
            outcome = holds.reserve(request, connection=db.session.connection())
            if isinstance(outcome, holds.Reservation):
                assert isinstance(expected, holds.Reservation)
                assert (outcome.amount, outcome.output_limit) == (
                    expected.amount,
                    expected.output_limit,
                )
                account = db.session.execute(
                    select(Account.held_nanocredits).where(Account.id == account_id)
                ).scalar_one()
                assert account == held + outcome.amount
            else:
                assert outcome == expected
        finally:
            db.session.rollback()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"revoked_at": utcnow()}, "key_revoked"),
        ({"expires_at": utcnow() - timedelta(seconds=1)}, "key_expired"),
    ],
)
def test_the_hold_statement_refuses_a_revoked_or_expired_key(app, subject, change, reason):
    account_id, key_id, _, _ = subject
    with app.app_context():
        db.session.execute(
            update(Account).where(Account.id == account_id).values(balance_nanocredits=BIG)
        )
        db.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(**change))
        outcome = holds.reserve(
            holds.HoldRequest(
                account_id=account_id,
                key_id=key_id,
                input_cost=1,
                output_price=0,
                requested_output=1,
                expires_at=utcnow() + timedelta(hours=1),
            ),
            connection=db.session.connection(),
        )
        db.session.rollback()
    assert outcome == holds.Refusal(reason)


@SETTINGS
@given(data=st.data())
def test_the_hold_never_undershoots_the_exact_cost(app, catalog, data):
    """Whatever the provider reports within the request's bounds (prompt tokens up to the input
    estimate, output up to the output limit per choice) costs at most what was held."""
    with app.app_context():
        model_ids = db.session.scalars(
            select(CatalogModel.model_id)
            .where(CatalogModel.enabled.is_(True))  # retired models are not sold
            .order_by(CatalogModel.id)
        ).all()
        db.session.rollback()  # the cache reads on a connection of its own
        model = cached_model(data.draw(st.sampled_from(model_ids))).priced
    estimate = data.draw(st.integers(1, 2_000_000))
    choices = data.draw(st.integers(1, 8))
    output_limit = data.draw(st.integers(1, 200_000))
    held = cost_bound(estimate, model.input_price_bound(estimate)) + cost_bound(
        output_limit * choices, model.output_price(estimate)
    )
    prompt = data.draw(st.integers(0, estimate))
    cache_read = data.draw(st.integers(0, prompt))
    write_5m = data.draw(st.integers(0, prompt - cache_read))
    write_1h = data.draw(st.integers(0, prompt - cache_read - write_5m))
    usage = Usage(
        input=prompt - cache_read - write_5m - write_1h,
        cache_read=cache_read,
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        output=data.draw(st.integers(0, output_limit * choices)),
        prompt_tokens=prompt,
    )
    cost, _ = cost_of(model, usage)
    assert cost <= held
