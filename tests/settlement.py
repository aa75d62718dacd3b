"""One proxied request's settlement set up by hand, for the tests that make it fail
(tests/unit/test_settlement.py, tests/proxy/test_metrics.py): a funded key's open hold, and the
Exchange the gateway would have made for it."""

from __future__ import annotations

from datetime import timedelta

from app.extensions import db
from app.models import Account
from app.models.types import utcnow
from app.proxy import gateway
from app.proxy.metering import InputSize, PricedModel
from app.services.keys import create_key
from app.services.ledger import grant_credits, place_hold

MODEL = PricedModel(
    provider="openai",
    model_id="gpt-4o-mini",
    name="GPT-4o mini",
    context_length=128_000,
    max_output_tokens=16_384,
    tiers={0: {"input": 165_000_000, "cache_read": 82_500_000, "output": 660_000_000}},
    list_tiers={0: {"input": 150_000_000, "cache_read": 75_000_000, "output": 600_000_000}},
)


def open_hold(app, account_id: int, amount: int = 50_000) -> tuple[int, int]:
    """(hold id, key id) for a hold placed through a new key of the account, granted a credit."""
    with app.app_context():
        grant_credits(account_id, 1_000_000, note="t", idempotency_key=f"g{account_id}")
        key, _ = create_key(db.session.get(Account, account_id), name="k")
        hold = place_hold(
            account_id=account_id,
            api_key_id=key.id,
            amount_nanocredits=amount,
            expires_at=utcnow() + timedelta(hours=1),
        )
        db.session.commit()
        return hold.id, key.id


def exchange_for(
    account_id: int, key_id: int, hold_id: int, *, stream: bool = False
) -> gateway.Exchange:
    """The request the hold was placed for: a chat completion of 300 bytes in one message."""
    return gateway.Exchange(
        dialect="openai",
        route="chat.completions",
        caller=gateway.Caller(key_id, account_id, None, None, "opaque"),
        model=MODEL,
        request_id="req-1",
        hold_id=hold_id,
        input_size=InputSize(300, 0, 1),
        output_limit=50,
        gateway_set_limit=False,
        stream=stream,
    )
