"""Issue 11 item 9: one search box on /admin/accounts finds an account by email, API key (whole,
or as pages show it), request id or Stripe id, and says how it found it; an account page shows
status history, keys, purchases, refunds, a usage summary, the ledger and its own audit in one
place."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from app.extensions import db
from app.models import (
    Account,
    AccountRequest,
    ApiKey,
    Purchase,
    RefundPart,
    UsageRecord,
)
from app.models.types import utcnow
from app.services import keys as key_service
from app.services import ledger
from app.services.accounts import suspend, unsuspend
from app.services.payments import apply_payment_succeeded, record_refund
from tests.web.purchases import credited_purchase

REQUEST_ID = "0a1b2c3d-00112233445566778899"


def listed(admin, query: str, **headers) -> str:
    return admin.get("/admin/accounts", query_string={"q": query}, headers=headers).get_data(
        as_text=True
    )


@pytest.fixture
def people(app, make_account):
    """alice with a key; bob with a usage record, a Stripe customer and purchases; carol."""
    ids = {name: make_account(f"{name}@example.com") for name in ("alice", "bob", "carol")}
    with app.app_context():
        _, plaintext = key_service.create_key(db.session.get(Account, ids["alice"]), name="ci")
        db.session.get(Account, ids["bob"]).stripe_customer_id = "cus_bob123"
        db.session.add(
            UsageRecord(
                account_id=ids["bob"],
                request_id=REQUEST_ID,
                provider="openai",
                model_id="gpt-4o-mini",
                route="chat.completions",
                status="ok",
                input_tokens=10,
                output_tokens=5,
                cost_nanocredits=1_500_000,
                prices_applied={},
            )
        )
        db.session.commit()
    return {**ids, "key": plaintext}


def found(page: str, email: str) -> bool:
    return f">{email}</a>" in page


def test_item9_search_by_part_of_an_email_ignoring_case(admin, people):
    page = listed(admin, "ALI")
    assert found(page, "alice@example.com") and not found(page, "bob@example.com")


def test_item9_a_whole_key_is_hashed_and_looked_up_and_never_echoed(app, admin, people):
    key = people["key"]
    masked = f"ok-…{key[-4:]}"
    fragment = admin.get("/admin/accounts", query_string={"q": key}, headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert found(html, "alice@example.com") and not found(html, "bob@example.com")
    assert f"Found by API key {masked}" in html
    assert key not in html
    # The address htmx pushes to the browser's history names the key only as pages show it.
    assert parse_qs(urlsplit(fragment.headers["HX-Push-Url"]).query)["q"] == [masked]
    # Without htmx, the browser is sent to the masked search, which finds the key by its last4.
    plain = admin.get("/admin/accounts", query_string={"q": key})
    assert plain.status_code == 302
    assert parse_qs(urlsplit(plain.headers["Location"]).query)["q"] == [masked]
    page = admin.get(plain.headers["Location"]).get_data(as_text=True)
    assert found(page, "alice@example.com") and key not in page
    # A key that is no one's finds no one.
    assert "No account matches." in listed(admin, "ok-" + "A" * 43, **{"HX-Request": "true"})


@pytest.mark.parametrize("form", ["ok-…{}", "ok-...{}", "…{}"])
def test_item9_a_key_as_pages_show_it_finds_its_account(admin, people, form):
    page = listed(admin, form.format(people["key"][-4:]))
    assert found(page, "alice@example.com") and not found(page, "carol@example.com")


def test_item9_a_request_id_finds_the_account_that_made_the_call(admin, people):
    page = listed(admin, REQUEST_ID)
    assert found(page, "bob@example.com") and not found(page, "alice@example.com")
    assert f"Found by request {REQUEST_ID}" in page
    assert "No account matches." in listed(admin, "0a1b2c3d-99999999999999999999")


def test_item9_stripe_ids_find_their_account(app, admin, people):
    bob = people["bob"]
    purchase_id = credited_purchase(app, bob, 1000, intent="pi_bob_paid")
    with app.app_context():
        purchase = db.session.get(Purchase, purchase_id)
        # A refund OneKey made (its part names the Stripe refund) and one made in Stripe's
        # dashboard (only its ledger entry knows it), and a dispute.
        request = AccountRequest(
            account_id=bob, kind="refund", state="done", requested_cents=100, refunded_cents=100
        )
        db.session.add(request)
        db.session.flush()
        db.session.add(
            RefundPart(
                request_id=request.id,
                purchase_id=purchase_id,
                amount_cents=100,
                state="done",
                stripe_refund_id="re_onekey1",
            )
        )
        record_refund(purchase, "re_onekey1", 100)
        record_refund(purchase, "re_dashboard1", 100)
        ledger.post_entry(
            account_id=bob,
            kind="dispute",
            amount_nanocredits=-1_000_000_000,
            idempotency_key="dispute:dp_bob1",
            reference_type="dispute",
            reference_id="dp_bob1",
        )
        db.session.commit()
    expected = {
        "cus_bob123": "Stripe customer cus_bob123",
        "pi_bob_paid": "PaymentIntent pi_bob_paid",
        "re_onekey1": "refund re_onekey1",
        "re_dashboard1": "refund re_dashboard1",
        "dp_bob1": "dispute dp_bob1",
    }
    for stripe_id, how in expected.items():
        page = listed(admin, stripe_id)
        assert found(page, "bob@example.com"), stripe_id
        assert not found(page, "alice@example.com"), stripe_id
        assert f"Found by {how}" in page
        assert page.count(f"Found by {how}") == 1
    assert "No account matches." in listed(admin, "pi_nobody_at_all")


def test_item9_the_charge_that_paid_a_purchase_is_recorded_and_found(app, admin, people):
    bob = people["bob"]
    with app.app_context():
        purchase = Purchase(account_id=bob, amount_cents=700, status="pending")
        db.session.add(purchase)
        db.session.flush()
        apply_payment_succeeded(
            {
                "id": "pi_bob_charged",
                "amount": 700,
                "currency": "usd",
                "latest_charge": "ch_bob_paid",
                "metadata": {"account_id": str(bob), "purchase_id": str(purchase.id)},
            }
        )
        db.session.commit()
        assert db.session.get(Purchase, purchase.id).stripe_charge_id == "ch_bob_paid"
    page = listed(admin, "ch_bob_paid")
    assert found(page, "bob@example.com") and "Found by charge ch_bob_paid" in page


def test_item9_search_input_that_matches_nothing_or_everything_is_harmless(admin, people):
    assert "No account matches." in listed(admin, "%_")
    assert "No account matches." in listed(admin, "x" * 300)
    page = listed(admin, "example.com")
    assert all(found(page, f"{name}@example.com") for name in ("alice", "bob", "carol"))


def test_item9_the_account_page_shows_everything_in_one_place(app, admin, make_account, people):
    bob = people["bob"]
    credited_purchase(app, bob, 2000, intent="pi_bob_page")
    with app.app_context():
        account = db.session.get(Account, bob)
        suspend(account, reason="card testing", actor_id=None)
        unsuspend(account, reason="cleared", actor_id=None)
        key, _ = key_service.create_key(account, name="bob's laptop")
        old = UsageRecord(
            account_id=bob,
            request_id="0a1b2c3d-ffffffffffffffffffff",
            provider="anthropic",
            model_id="claude-sonnet-4-5",
            route="messages",
            status="ok",
            cost_nanocredits=9_000_000_000,
            prices_applied={},
            created_at=utcnow() - timedelta(days=31),
        )
        db.session.add(old)
        db.session.commit()
        key_masked = db.session.get(ApiKey, key.id).masked
    page = admin.get(f"/admin/accounts/{bob}").get_data(as_text=True)
    sections = [
        "account-history",
        "account-adjust",
        "account-keys",
        "account-purchases",
        "account-usage",
        "account-ledger",
        "account-audit",
    ]
    for section in sections:
        assert f'<section id="{section}"' in page, section
    history = page[page.index('id="account-history"') : page.index('id="account-adjust"')]
    assert "card testing" in history and "cleared" in history
    assert history.index("card testing") < history.index("cleared")
    assert key_masked in page and "bob&#39;s laptop" in page
    assert "pi_bob_page" in page and "$20.00" in page
    usage = page[page.index('id="account-usage"') : page.index('id="account-ledger"')]
    # The last 30 days only: the older record is left out of the summary.
    assert "gpt-4o-mini" in usage and "claude-sonnet-4-5" not in usage
    assert "1 request, 0.0015 credits spent." in usage
    ledger_section = page[page.index('id="account-ledger"') : page.index('id="account-audit"')]
    assert "20.00" in ledger_section
    audit = page[page.index('id="account-audit"') :]
    assert "account.suspend" in audit and "account.unsuspend" in audit
