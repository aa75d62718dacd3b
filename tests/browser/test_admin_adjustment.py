"""Issue 11 item 2 in Chromium: an admin fills in the adjustment form on an account page and
double-clicks its button; one ledger entry is posted, the page shows the new balance, and the
form comes back fresh for the next adjustment; the same post sent again is answered "already
recorded" and posts nothing. Without JavaScript the form posts, redirects and shows the result."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, LedgerEntry
from tests.helpers import sign_in_page

pytestmark = pytest.mark.browser

expect = pytest.importorskip("playwright.sync_api").expect


def ledger_entries(app, account_id: int) -> int:
    with app.app_context():
        count = db.session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.account_id == account_id)
        )
        db.session.remove()
        return count


def fill_adjustment(page, amount: str) -> None:
    page.get_by_label("Grant credit").check()
    page.get_by_label("Amount in credits").fill(amount)
    page.locator("#adjust-reason").fill("Outage on 3 May")
    page.get_by_label("Note (optional)").fill("Sorry for the outage.")
    page.get_by_label("The customer may see the note").check()


def test_double_clicking_the_adjustment_posts_one_entry(app, make_account, new_context):
    make_account("admin@example.com", admin=True)
    alice = make_account("alice@example.com")
    page = new_context().new_page()
    sign_in_page(page, "admin@example.com")
    page.goto(f"/admin/accounts/{alice}")
    fill_adjustment(page, "12.5")
    form_key = page.locator("#adjust-form-key").input_value()
    csrf_token = page.locator("#account-adjust input[name=csrf_token]").input_value()
    page.get_by_role("button", name="Post adjustment").dblclick()
    expect(page.locator("#account-adjust [role=status]")).to_have_text(
        "Granted 12.50 credits to alice@example.com."
    )
    # Swapped in place: the balance, the ledger and the audit log, without a reload.
    expect(page.locator("#account-credits")).to_contain_text("12.50")
    expect(page.locator("#account-ledger")).to_contain_text("Customer sees: Sorry for the outage.")
    expect(page.locator("#account-audit")).to_contain_text("credit.grant")
    expect(page.get_by_label("Amount in credits")).to_have_value("")
    assert page.locator("#adjust-form-key").input_value() != form_key
    assert ledger_entries(app, alice) == 1
    # The same post retried (as a flaky network would) is answered, and posts nothing more.
    retried = page.request.post(
        f"/admin/accounts/{alice}/credit",
        form={
            "csrf_token": csrf_token,
            "form_key": form_key,
            "direction": "grant",
            "amount": "12.5",
            "reason": "Outage on 3 May",
        },
        headers={"HX-Request": "true"},
    )
    assert retried.status == 200
    assert "Already recorded" in retried.text()
    assert ledger_entries(app, alice) == 1
    with app.app_context():
        assert db.session.get(Account, alice).balance_nanocredits == 12_500_000_000
        db.session.remove()


def test_without_javascript_the_form_posts_once_too(app, make_account, page_without_js):
    make_account("admin@example.com", admin=True)
    alice = make_account("alice@example.com")
    page = page_without_js
    sign_in_page(page, "admin@example.com")
    page.goto(f"/admin/accounts/{alice}")
    fill_adjustment(page, "3")
    page.get_by_role("button", name="Post adjustment").dblclick()
    expect(page.locator("#notices")).to_contain_text("3.00 credit")
    expect(page.locator("#account-credits")).to_contain_text("3.00")
    assert ledger_entries(app, alice) == 1
