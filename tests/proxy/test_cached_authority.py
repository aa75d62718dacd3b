"""The gateway caches keys and catalogue models per process (DESIGN.md, "The hot path"); the hold
statement checks them, so a revocation, a suspension, a disabled model or a changed price applies to
the very next request in every process, whoever made the change (an admin page, a sync or SQL)."""

from __future__ import annotations

import requests
from sqlalchemy import select, update

from app.extensions import db
from app.models import CatalogModel, ModelPrice, UsageRecord
from app.services.ledger import check_invariants
from tests.proxy.billing import open_holds

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
# The live server runs two workers; a few requests in a row reach both.
REQUESTS_PER_CHECK = 6


def post(server, key: str) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json=BODY,
        timeout=30,
    )


def warm(server, key: str) -> None:
    for _ in range(REQUESTS_PER_CHECK):
        assert post(server, key).status_code == 200


def output_price(app) -> ModelPrice:
    return db.session.scalar(
        select(ModelPrice)
        .join(CatalogModel)
        .where(
            CatalogModel.model_id == "gpt-4o-mini",
            ModelPrice.token_class == "output",
            ModelPrice.tier_threshold_tokens == 0,
        )
    )


def test_a_price_changed_in_sql_bills_the_very_next_request_in_every_process(
    app, live_server, funded_key
):
    key, account_id, _ = funded_key("5")
    warm(live_server, key)
    with app.app_context():
        price = output_price(app)
        new_price = price.sell_price_nanos_per_mtok * 3
        db.session.execute(
            update(ModelPrice)
            .where(ModelPrice.id == price.id)
            .values(sell_price_nanos_per_mtok=new_price)
        )
        db.session.commit()
        before = db.session.scalar(select(UsageRecord.id).order_by(UsageRecord.id.desc()))
    for _ in range(REQUESTS_PER_CHECK):
        assert post(live_server, key).status_code == 200
    with app.app_context():
        records = db.session.scalars(
            select(UsageRecord).where(UsageRecord.id > before, UsageRecord.account_id == account_id)
        ).all()
        assert len(records) == REQUESTS_PER_CHECK
        assert {record.prices_applied["output"] for record in records} == {new_price}
        assert check_invariants() == []


def test_a_model_disabled_in_sql_is_404_on_the_very_next_request_in_every_process(
    app, live_server, funded_key
):
    key, _, _ = funded_key("5")
    warm(live_server, key)
    with app.app_context():
        db.session.execute(
            update(CatalogModel).where(CatalogModel.model_id == "gpt-4o-mini").values(enabled=False)
        )
        db.session.commit()
    for _ in range(REQUESTS_PER_CHECK):
        response = post(live_server, key)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"
    assert open_holds(app) == 0


def test_the_allow_list_is_read_by_the_hold_not_from_the_cache(app, live_server, funded_key):
    from app.models import ApiKey

    key, _, key_id = funded_key("5")
    warm(live_server, key)
    with app.app_context():
        db.session.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(allowed_models=["gpt-4o"])
        )
        db.session.commit()
    for _ in range(REQUESTS_PER_CHECK):
        response = post(live_server, key)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "model_not_allowed"
    assert open_holds(app) == 0


def test_a_changed_per_minute_limit_applies_once_the_cached_identity_is_read_again(
    app, fakes, catalog
):
    import time

    from app.models import ApiKey
    from tests.proxy.conftest import LiveServer, make_funded_key

    server = LiveServer(app, fakes, KEY_CACHE_SECONDS="1", WEB_CONCURRENCY="1")
    server.start()
    try:
        key, _, key_id = make_funded_key(app, "5")
        warm(server, key)
        with app.app_context():
            db.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(rate_limit_rpm=1))
            db.session.commit()
        time.sleep(1.2)
        statuses = [post(server, key).status_code for _ in range(3)]
    finally:
        server.stop()
    # A limit of one request a minute: at most one of three gets through (one only when a new
    # minute began during the sleep; warming already spent this minute's).
    assert statuses.count(429) >= 2
