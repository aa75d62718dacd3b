"""Issue 11 item 1: each request's provider cost is recorded at settlement, at the list prices of
that moment, and the admin overview sums it.

Every coverage case (test_coverage_billing.py, through exact.assert_billed_exactly and
assert_estimated) already checks a record's list cost at the bundled list prices, at the tier its
prompt reached. These follow a list-price change across requests, through the rollups, to the
overview's figures.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from app.extensions import db
from app.models import CatalogModel, ModelPrice, UsageRecord
from app.models.types import utcnow
from app.services import overview as overview_service
from app.services import usage_rollups
from app.services.pricing import request_cost
from tests.proxy.billing import wait_for_settlement
from tests.proxy.exact import expected_from_call, list_tiers, openai_client

MODEL = "gpt-4o-mini"


def _ask(live_server, key: str) -> None:
    openai_client(live_server, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello there"}], max_tokens=20
    )


def _records(app, account_id: int) -> list[UsageRecord]:
    with app.app_context():
        rows = db.session.scalars(
            select(UsageRecord).where(UsageRecord.account_id == account_id).order_by(UsageRecord.id)
        ).all()
        db.session.expunge_all()
        return list(rows)


def _list_cost(call, prices: dict[str, int]) -> int:
    expected = expected_from_call(call, "chat")
    return request_cost(prices, {k: v for k, v in expected.classes.items() if v})


def test_issue11_item1_list_cost_follows_a_list_price_change_into_the_overview(
    app, live_server, fakes, funded_key
):
    key, account_id, _ = funded_key("10")
    _ask(live_server, key)
    first_call = fakes.wait_for_calls(1, provider="openai")[0]
    wait_for_settlement(app, account_id)
    bundled = list_tiers(MODEL)[0]
    [first] = _records(app, account_id)
    assert first.list_cost_nanocredits == _list_cost(first_call, bundled) > 0
    with app.app_context():
        while usage_rollups.fold_next_chunk(utcnow() + timedelta(hours=1), delay=timedelta(0)):
            db.session.commit()
        assert usage_rollups.watermark() == first.id

        # The provider raises its list prices (a sync, or an admin's edit): the sell prices stay.
        model_pk = db.session.scalar(select(CatalogModel.id).where(CatalogModel.model_id == MODEL))
        db.session.execute(
            update(ModelPrice)
            .where(ModelPrice.model_pk == model_pk)
            .values(list_price_nanos_per_mtok=ModelPrice.list_price_nanos_per_mtok * 3)
        )
        db.session.commit()

    fakes.reset()
    _ask(live_server, key)
    second_call = fakes.wait_for_calls(1, provider="openai")[0]
    wait_for_settlement(app, account_id)
    first_again, second = _records(app, account_id)
    tripled = {name: price * 3 for name, price in bundled.items()}
    assert second.list_cost_nanocredits == _list_cost(second_call, tripled)
    assert first_again.list_cost_nanocredits == first.list_cost_nanocredits  # kept as it was
    # The sell price did not move: what the customer paid is as before, for the same tokens.
    assert second.prices_applied == first.prices_applied

    with app.app_context():
        today = utcnow().date()
        figures = overview_service.overview(today, today)
        assert figures.total("list_cost") == (
            first.list_cost_nanocredits + second.list_cost_nanocredits
        )
        assert figures.total("revenue") == first.cost_nanocredits + second.cost_nanocredits
        assert figures.margin == figures.total("revenue") - figures.total("list_cost")
        assert figures.unpriced == {}
