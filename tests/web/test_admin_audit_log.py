"""Issue 11 item 3: the audit log at /admin/audit lists every admin action, filtered by admin,
action, account and date range (the filters stay in the address, and paging keeps them); each
account page shows its own entries and status history."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import Account, AuditLogEntry
from app.services import adjustments
from app.services.accounts import suspend, unsuspend
from app.services.audit import record_audit
from tests.helpers import Browser

CREDIT = 1_000_000_000


@pytest.fixture
def log(app, make_account):
    """boss suspends alice (1 March) and lifts it (2 March); ops grants bob credit (3 March); the
    system fails a refund of bob's (4 March)."""
    ids = {
        "boss": make_account("boss@example.com", admin=True),
        "ops": make_account("ops@example.com", admin=True),
        "alice": make_account("alice@example.com"),
        "bob": make_account("bob@example.com"),
    }
    with app.app_context():
        alice = db.session.get(Account, ids["alice"])
        suspend(alice, reason="card testing", actor_id=ids["boss"])
        unsuspend(alice, reason="cleared by the bank", actor_id=ids["boss"])
        adjustments.adjust_credit(
            db.session.get(Account, ids["bob"]),
            direction="grant",
            amount_nanocredits=3 * CREDIT,
            reason="outage credit",
            note=None,
            note_visible=False,
            form_key="k" * 32,
            actor_id=ids["ops"],
        )
        record_audit(
            actor_id=None,
            action="refund.fail",
            target_account_id=ids["bob"],
            reason="Stripe: card expired",
        )
        entries = db.session.scalars(select(AuditLogEntry).order_by(AuditLogEntry.id)).all()
        for day, entry in enumerate(entries, start=1):
            entry.created_at = datetime(2026, 3, day, 12, tzinfo=UTC)
        db.session.commit()
    browser = Browser(app.test_client())
    browser.login("boss@example.com")
    return {**ids, "browser": browser}


def reasons(browser, **query) -> list[str]:
    response = browser.get("/admin/audit", query_string=query, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="audit-table"')
    shown = ["card testing", "cleared by the bank", "outage credit", "Stripe: card expired"]
    return [reason for reason in shown if reason in html]


def test_item3_the_log_lists_every_action_newest_first(log):
    page = log["browser"].get("/admin/audit").get_data(as_text=True)
    order = [page.index(r) for r in ("Stripe: card expired", "outage credit", "card testing")]
    assert order == sorted(order)
    assert "4 entries" in page
    # The grant's details: its amount in credits.
    assert "3.00 credits" in page


def test_item3_filter_by_admin(log):
    assert reasons(log["browser"], admin=log["boss"]) == ["card testing", "cleared by the bank"]
    assert reasons(log["browser"], admin=log["ops"]) == ["outage credit"]
    assert reasons(log["browser"], admin="system") == ["Stripe: card expired"]


def test_item3_filter_by_action(log):
    assert reasons(log["browser"], action="credit.grant") == ["outage credit"]
    assert reasons(log["browser"], action="account.suspend") == ["card testing"]
    page = log["browser"].get("/admin/audit").get_data(as_text=True)
    for action in ("account.suspend", "account.unsuspend", "credit.grant", "refund.fail"):
        assert f'<option value="{action}"' in page


def test_item3_filter_by_account_email_or_id(log):
    both = ["card testing", "cleared by the bank"]
    assert reasons(log["browser"], account="ALICE@example.com") == both
    assert reasons(log["browser"], account=f"#{log['alice']}") == both
    assert reasons(log["browser"], account=str(log["bob"])) == [
        "outage credit",
        "Stripe: card expired",
    ]


def test_item3_filter_by_date_range_both_ends_included(log):
    browser = log["browser"]
    assert reasons(browser, since="2026-03-02", until="2026-03-03") == [
        "cleared by the bank",
        "outage credit",
    ]
    assert reasons(browser, since="2026-03-04") == ["Stripe: card expired"]
    assert reasons(browser, until="2026-03-01") == ["card testing"]


def test_item3_filters_combine(log):
    assert reasons(log["browser"], admin=log["boss"], since="2026-03-02") == ["cleared by the bank"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"since": "1 March"}, "Enter a date like 2026-01-31."),
        ({"until": "2026-02-30"}, "Enter a date like 2026-01-31."),
        ({"since": "2026-03-04", "until": "2026-03-01"}, "The end date is before the start date."),
        ({"account": "nobody@example.com"}, "No account has this email address"),
        ({"admin": "someone"}, "Choose an admin from the list."),
    ],
)
def test_item3_a_bad_filter_gets_a_clear_error(log, query, message):
    response = log["browser"].get("/admin/audit", query_string=query)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html
    assert "card testing" not in html


def test_item3_paging_keeps_the_filters_and_answers_htmx_with_the_table(app, log):
    with app.app_context():
        for n in range(55):
            record_audit(
                actor_id=log["ops"],
                action="stripe_event.retry",
                target_account_id=None,
                details={"event": f"evt_{n}"},
            )
        db.session.execute(
            update(AuditLogEntry)
            .where(AuditLogEntry.action == "stripe_event.retry")
            .values(created_at=datetime(2026, 3, 5, tzinfo=UTC))
        )
        db.session.commit()
    browser = log["browser"]
    first = browser.get("/admin/audit?action=stripe_event.retry").get_data(as_text=True)
    assert "55 entries" in first and "Page 1 of 2" in first
    assert 'href="/admin/audit?page=2&amp;action=stripe_event.retry"' in first
    assert 'hx-target="#audit-table"' in first and 'hx-push-url="true"' in first
    second = browser.get(
        "/admin/audit?page=2&action=stripe_event.retry", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert second.lstrip().startswith('<div id="audit-table"')
    assert "Page 2 of 2" in second and "outage credit" not in second
    assert second.count("<code>stripe_event.retry</code>") == 5
    # A history restore gets the whole page.
    restored = browser.get(
        "/admin/audit?page=2&action=stripe_event.retry",
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    ).get_data(as_text=True)
    assert restored.lstrip().startswith("<!doctype html>")


def test_item3_each_account_page_shows_its_own_audit_and_status_history(log):
    browser = log["browser"]
    alice = browser.get(f"/admin/accounts/{log['alice']}").get_data(as_text=True)
    audit = alice[alice.index('id="account-audit"') :]
    assert "card testing" in audit and "cleared by the bank" in audit
    assert "outage credit" not in audit and "Stripe: card expired" not in audit
    history = alice[alice.index('id="account-history"') : alice.index('id="account-adjust"')]
    assert "boss@example.com" in history
    assert history.index("card testing") < history.index("cleared by the bank")
    bob = browser.get(f"/admin/accounts/{log['bob']}").get_data(as_text=True)
    audit = bob[bob.index('id="account-audit"') :]
    assert "outage credit" in audit and "Stripe: card expired" in audit
    assert "card testing" not in audit
    # Its own fragment, for paging in place.
    fragment = browser.get(
        f"/admin/accounts/{log['bob']}/audit", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="account-audit"')
    assert "outage credit" in fragment


def test_item3_an_account_change_made_on_its_page_shows_in_its_log_at_once(log):
    """The status form's HTMX answer swaps the status history and audit log too."""
    browser = log["browser"]
    page = f"/admin/accounts/{log['bob']}"
    response = browser.post_form(
        page,
        {"reason": "chargeback wave"},
        action=f"{page}/suspend",
        headers={"HX-Request": "true"},
    )
    html = response.get_data(as_text=True)
    assert (
        'id="account-history" aria-labelledby="account-history-heading" hx-swap-oob="true"' in html
    )
    history = html[html.index('id="account-history"') : html.index('id="account-audit"')]
    assert "chargeback wave" in history
    assert "chargeback wave" in html[html.index('id="account-audit"') :]


def test_item3_the_log_is_hidden_from_customers(app, log):
    customer = Browser(app.test_client())
    customer.login("alice@example.com")
    assert customer.get("/admin/audit").status_code == 404
    assert customer.get(f"/admin/accounts/{log['alice']}/audit").status_code == 404
