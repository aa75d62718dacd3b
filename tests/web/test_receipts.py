"""Receipts of purchases (issue 10, item 7): one printable page per paid purchase with the operator,
the date, the amount paid, the credits granted, Stripe's payment reference and the refunds against
it; only the purchase's owner sees it, and an unpaid purchase has none."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.extensions import db
from app.models import AccountRequest, Purchase, RefundPart
from app.models.types import utcnow
from app.services.payments import record_refund
from tests.web.ledger_history import at, date_entry, table_rows
from tests.web.purchases import credited_purchase

ALICE = "alice@example.com"
BOB = "bob@example.com"


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert match, f"no #{element_id} on the page"
    return " ".join(match.group(1).split())


def refunded_by_onekey(app, purchase_id: int, refund_id: str, cents: int) -> None:
    """A refund OneKey made of the purchase (its request and part), debited as the job debits."""
    with app.app_context():
        purchase = db.session.get(Purchase, purchase_id)
        request = AccountRequest(
            account_id=purchase.account_id,
            kind="refund",
            state="done",
            purchase_id=purchase.id,
            requested_cents=cents,
            refunded_cents=cents,
            finished_at=utcnow(),
        )
        db.session.add(request)
        db.session.flush()
        db.session.add(
            RefundPart(
                request_id=request.id,
                purchase_id=purchase.id,
                amount_cents=cents,
                state="done",
                stripe_refund_id=refund_id,
            )
        )
        record_refund(purchase, refund_id, cents)
        date_entry(f"refund:{refund_id}", at(4, 16, 30))
        db.session.commit()


def test_a_receipt_shows_operator_date_amounts_reference_and_refunds_item7(
    app, browser, make_account
):
    alice_id = make_account(ALICE)
    purchase_id = credited_purchase(app, alice_id, 2000, intent="pi_receipt_1")
    with app.app_context():
        db.session.get(Purchase, purchase_id).succeeded_at = at(3, 14, 5)
        db.session.commit()
    browser.login(ALICE)
    html = browser.get(f"/credits/{purchase_id}/receipt").get_data(as_text=True)
    assert "<h1" in html and ">Receipt</h1>" in html
    assert f"No. {purchase_id}" in html
    assert "OneKey" in html and "support@1key4ai.com" in html and "http://localhost" in html
    assert text_of(html, "receipt-date") == "2026-03-03 14:05 UTC"
    assert text_of(html, "receipt-paid") == "$20.00"
    assert text_of(html, "receipt-credits") == "20.00"
    assert text_of(html, "receipt-reference") == "pi_receipt_1"
    assert ALICE in html
    assert "No refunds against this purchase." in html

    refunded_by_onekey(app, purchase_id, "re_onekey_1", 500)
    with app.app_context():  # and one made in Stripe's dashboard, reported by its webhook
        record_refund(db.session.get(Purchase, purchase_id), "re_dashboard_1", 250)
        db.session.commit()
    html = browser.get(f"/credits/{purchase_id}/receipt").get_data(as_text=True)
    refunds = re.search(r'<table id="receipt-refunds">.*?</table>', html, re.S).group(0)
    assert "2026-03-04 16:30 UTC" in refunds and "re_onekey_1" in refunds and "−$5.00" in refunds
    assert "Refunded through Stripe" in refunds and "−$2.50" in refunds
    assert text_of(html, "receipt-refunded") == "−$7.50"
    assert text_of(html, "receipt-net") == "$12.50"
    assert "No refunds against this purchase." not in html

    # The activity links the purchase and OneKey's refund of it to the receipt.
    activity = browser.get("/activity").get_data(as_text=True)
    links = {kind: cells[1] for kind, cells in table_rows(activity) if kind != "usage"}
    assert links["purchase"] == "Credit purchase · Receipt"
    receipt = f'href="/credits/{purchase_id}/receipt"'
    assert activity.count(receipt) == 2  # the purchase, and the refund made by OneKey
    assert receipt in browser.get("/credits/history").get_data(as_text=True)


def test_a_receipt_is_printable_without_the_navigation_item7(app, browser, make_account):
    alice_id = make_account(ALICE)
    purchase_id = credited_purchase(app, alice_id, 500)
    browser.login(ALICE)
    html = browser.get(f"/credits/{purchase_id}/receipt").get_data(as_text=True)
    # The Print button works only with JavaScript: rendered hidden, revealed by receipt.js.
    assert re.search(r"<button[^>]*data-print[^>]*hidden", html)
    assert "/static/js/receipt.js" in html
    assert 'class="receipt-actions no-print"' in html
    assert " style=" not in html and "<script>" not in html
    css = browser.get("/static/css/app.css").get_data(as_text=True)
    print_rules = css[css.index("@media print") :]
    assert ".site-header" in print_rules and ".site-footer" in print_rules
    assert ".no-print" in print_rules


def test_only_the_owner_sees_a_receipt_and_an_unpaid_purchase_has_none_item7(
    app, browser, make_account
):
    alice_id = make_account(ALICE)
    bob_id = make_account(BOB)
    bobs = credited_purchase(app, bob_id, 900, intent="pi_bob")
    with app.app_context():
        unpaid = Purchase(account_id=alice_id, amount_cents=1500, status="pending")
        failed = Purchase(account_id=alice_id, amount_cents=1500, status="failed", attempts=1)
        db.session.add_all([unpaid, failed])
        db.session.commit()
        unpaid_id, failed_id = unpaid.id, failed.id
    browser.login(ALICE)
    for purchase_id in (bobs, unpaid_id, failed_id, 999_999):
        response = browser.get(f"/credits/{purchase_id}/receipt")
        assert response.status_code == 404, purchase_id
        assert "pi_bob" not in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Purchase.status).where(Purchase.id == bobs)) == "succeeded"


def test_the_paid_purchase_page_links_its_receipt_item7(app, browser, make_account):
    alice_id = make_account(ALICE)
    purchase_id = credited_purchase(app, alice_id, 1000)
    browser.login(ALICE)
    html = browser.get(f"/credits/{purchase_id}").get_data(as_text=True)
    assert f'href="/credits/{purchase_id}/receipt"' in html
