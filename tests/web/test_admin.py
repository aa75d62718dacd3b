"""The admin area: guarded once, accounts search, suspension with a reason, audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, AuditLogEntry
from app.models.types import utcnow
from app.services.ledger import InsufficientCredit, grant_credits, place_hold
from tests.helpers import Browser

ADMIN_PATHS = [
    ("get", "/admin/"),
    ("get", "/admin/accounts"),
    ("get", "/admin/accounts/1"),
    ("post", "/admin/accounts/1/suspend"),
    ("post", "/admin/accounts/1/unsuspend"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_PATHS)
def test_admin_pages_are_404_to_anonymous_and_customers(app, make_account, method, path):
    make_account("customer@example.com")
    anonymous = app.test_client()
    customer = Browser(app.test_client())
    customer.login("customer@example.com")
    for client in (anonymous, customer.client):
        response = getattr(client, method)(path)
        assert response.status_code == 404


# URLs that routing itself would answer (a missing slash, doubled slashes, a wrong method) before
# the blueprint is known.
ADMIN_ROUTING_PATHS = [
    ("get", "/admin"),
    ("get", "/admin//accounts"),
    ("get", "/admin/accounts/1/suspend"),
    ("put", "/admin/accounts"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTING_PATHS)
def test_admin_urls_routing_would_answer_are_404_too(app, make_account, admin, method, path):
    make_account("customer@example.com")
    anonymous = app.test_client()
    customer = Browser(app.test_client())
    customer.login("customer@example.com")
    for client in (anonymous, customer.client):
        assert getattr(client, method)(path).status_code == 404
    # An admin is simply sent on.
    assert getattr(admin.client, method)(path).status_code in (308, 405)


def test_admin_without_the_slash_leads_an_admin_to_the_overview(admin):
    response = admin.get("/admin", follow_redirects=True)
    assert response.status_code == 200
    assert response.request.path == "/admin/"
    assert "<h1>Overview</h1>" in response.get_data(as_text=True)


def test_a_suspended_admin_gets_the_same_404(app, make_account):
    make_account("boss@example.com", admin=True)
    admin_id = make_account("admin@example.com", admin=True)
    with app.app_context():
        from app.services.accounts import suspend

        suspend(db.session.get(Account, admin_id), reason="left the team", actor_id=None)
        db.session.commit()
    suspended = Browser(app.test_client())
    # A suspended account may still sign in, to see its balance and status.
    assert suspended.login("admin@example.com").status_code == 302
    for method, path in ADMIN_PATHS:
        assert getattr(suspended.client, method)(path).status_code == 404


def test_an_admin_cannot_lift_their_own_suspension(app, make_account):
    admin_id = make_account("admin@example.com", admin=True)
    with app.app_context():
        from app.services.accounts import AccountError, suspend, unsuspend

        account = db.session.get(Account, admin_id)
        suspend(account, reason="left the team", actor_id=None)
        with pytest.raises(AccountError, match="your own suspension"):
            unsuspend(account, reason="I am back", actor_id=admin_id)
        assert account.status == "suspended"
        db.session.rollback()


def test_accounts_list_search_and_status_filter(app, admin, make_account):
    make_account("alice@example.com")
    bob = make_account("bob@example.com")
    with app.app_context():
        from app.services.accounts import suspend

        suspend(db.session.get(Account, bob), reason="abuse", actor_id=None)
        db.session.commit()
    page = admin.get("/admin/accounts?q=ALICE").get_data(as_text=True)
    assert "alice@example.com" in page and "bob@example.com" not in page
    page = admin.get("/admin/accounts?status=suspended").get_data(as_text=True)
    assert "bob@example.com" in page and "alice@example.com" not in page
    fragment = admin.get("/admin/accounts?q=bob", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="accounts-table"')
    assert "HX-Request" in fragment.headers["Vary"]
    assert admin.get("/admin/accounts?status=bogus&page=-3").status_code == 200
    # % and _ are searched for literally.
    assert "alice@example.com" not in admin.get("/admin/accounts?q=%25").get_data(as_text=True)
    assert "alice@example.com" not in admin.get("/admin/accounts?q=a_ice").get_data(as_text=True)


def test_account_page_shows_money_keys_and_ledger(app, admin, make_account):
    account_id = make_account("alice@example.com")
    with app.app_context():
        grant_credits(account_id, 7_250_000_000, note="welcome gift", idempotency_key="g1")
        db.session.commit()
    page = admin.get(f"/admin/accounts/{account_id}").get_data(as_text=True)
    assert "7.25" in page
    assert "welcome gift" in page
    assert admin.get("/admin/accounts/999999").status_code == 404


def test_suspension_needs_a_reason_and_is_audited(app, admin, make_account):
    account_id = make_account("alice@example.com")
    page = f"/admin/accounts/{account_id}"
    refused = admin.post_form(page, {"reason": "  "}, action=f"{page}/suspend")
    assert refused.status_code == 400
    with app.app_context():
        assert db.session.get(Account, account_id).status == "active"
        assert db.session.scalar(select(AuditLogEntry)) is None
    done = admin.post_form(page, {"reason": "card testing"}, action=f"{page}/suspend")
    assert done.status_code == 302
    with app.app_context():
        account = db.session.get(Account, account_id)
        assert account.status == "suspended"
        assert account.status_reason == "card testing"
        entry = db.session.scalar(select(AuditLogEntry))
        assert entry.action == "account.suspend"
        assert entry.reason == "card testing"
        assert entry.target_account_id == account_id
        assert entry.actor.email == "admin@example.com"
    assert "card testing" in admin.get(page).get_data(as_text=True)


def test_suspension_ends_sessions_and_blocks_spending(app, admin, make_account):
    account_id = make_account("alice@example.com")
    with app.app_context():
        grant_credits(account_id, 5_000_000_000, note="gift", idempotency_key="g1")
        db.session.commit()
    customer = Browser(app.test_client())
    customer.login("alice@example.com")
    assert customer.get("/dashboard").status_code == 200
    page = f"/admin/accounts/{account_id}"
    admin.post_form(page, {"reason": "chargeback"}, action=f"{page}/suspend")
    assert customer.get("/dashboard").status_code == 302
    # Signing in again shows the status and the balance, nothing more.
    customer.login("alice@example.com")
    dashboard = customer.get("/dashboard").get_data(as_text=True)
    assert "suspended" in dashboard and "5.00" in dashboard
    with app.app_context():
        from app.services.ledger import AccountNotActive

        with pytest.raises(AccountNotActive):
            place_hold(account_id=account_id, amount_nanocredits=1, expires_at=utcnow())
        db.session.rollback()


def test_unsuspend_restores_the_account(app, admin, make_account):
    account_id = make_account("alice@example.com")
    page = f"/admin/accounts/{account_id}"
    admin.post_form(page, {"reason": "check"}, action=f"{page}/suspend")
    response = admin.post_form(
        page, {"reason": "cleared"}, action=f"{page}/unsuspend", headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert response.get_data(as_text=True).lstrip().startswith('<section id="account-status"')
    with app.app_context():
        assert db.session.get(Account, account_id).status == "active"
        actions = db.session.scalars(select(AuditLogEntry.action).order_by(AuditLogEntry.id)).all()
        assert actions == ["account.suspend", "account.unsuspend"]
    again = admin.post_form(page, {"reason": "twice"}, action=f"{page}/unsuspend")
    assert again.status_code == 409


def test_admin_cannot_suspend_themselves(app, admin):
    with app.app_context():
        admin_id = db.session.scalar(select(Account.id).where(Account.is_admin.is_(True)))
    page = f"/admin/accounts/{admin_id}"
    response = admin.post_form(page, {"reason": "oops"}, action=f"{page}/suspend")
    assert response.status_code == 409
    with app.app_context():
        assert db.session.get(Account, admin_id).status == "active"


def test_admin_forms_need_csrf(app, admin, make_account):
    account_id = make_account("alice@example.com")
    response = admin.client.post(
        f"/admin/accounts/{account_id}/suspend", data={"reason": "no token"}
    )
    assert response.status_code == 400
    with app.app_context():
        assert db.session.get(Account, account_id).status == "active"


def test_insufficient_credit_never_reserves(app, make_account):
    account_id = make_account("alice@example.com")
    with app.app_context():
        with pytest.raises(InsufficientCredit):
            place_hold(account_id=account_id, amount_nanocredits=1, expires_at=utcnow())
        db.session.rollback()
        assert db.session.get(Account, account_id).held_nanocredits == 0
