"""Changed Terms of Service are accepted at the next sign-in, and the acceptance recorded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.extensions import db
from app.models import Account
from app.services.keys import create_key
from app.services.terms import current_terms_version
from tests.helpers import TEST_PASSWORD, Browser

OLD_VERSION = "2025-06-01"
ACCEPTED_BEFORE = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def old_terms_customer(app, make_account):
    """A customer who accepted an earlier version of the Terms: (account id, signed-in browser)."""
    account_id = make_account("old@example.com")
    with app.app_context():
        account = db.session.get(Account, account_id)
        account.terms_version = OLD_VERSION
        account.terms_accepted_at = ACCEPTED_BEFORE
        db.session.commit()
    return account_id


def accepted(app, account_id: int) -> tuple[str, datetime]:
    with app.app_context():
        account = db.session.get(Account, account_id)
        return account.terms_version, account.terms_accepted_at


def test_changed_terms_are_asked_for_at_sign_in(app, browser, old_terms_customer):
    response = browser.login("old@example.com")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/terms/accept")
    page = browser.get(response.headers["Location"]).get_data(as_text=True)
    assert "Our Terms of Service have changed" in page
    assert "Last updated: February 19, 2026" in page
    assert "12. Contact" in page  # the Terms in full
    assert "I accept the Terms of Service" in page
    assert accepted(app, old_terms_customer) == (OLD_VERSION, ACCEPTED_BEFORE)


@pytest.mark.parametrize("path", ["/dashboard", "/keys", "/usage", "/credits", "/credits/history"])
def test_portal_pages_wait_for_the_changed_terms_to_be_accepted(browser, old_terms_customer, path):
    browser.login("old@example.com")
    response = browser.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/terms/accept")


def test_a_form_posted_before_accepting_does_nothing(app, browser, old_terms_customer):
    browser.login("old@example.com")
    response = browser.post_form("/terms/accept", {"name": "new key"}, action="/keys")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/terms/accept")
    with app.app_context():
        assert not db.session.get(Account, old_terms_customer).api_keys


def test_accepting_records_the_version_and_time_and_the_pages_work_after(
    app, browser, old_terms_customer
):
    browser.login("old@example.com")
    before = datetime.now(UTC)
    response = browser.post_form("/terms/accept?next=/usage", {"version": current_terms_version()})
    assert response.status_code == 302
    assert response.headers["Location"] == "/usage"
    version, at = accepted(app, old_terms_customer)
    assert version == current_terms_version() == "2026-02-19"
    assert at >= before.replace(microsecond=0)
    for path in ("/dashboard", "/keys", "/usage", "/credits"):
        assert browser.get(path).status_code == 200, path
    # Asked once: the next sign-in goes straight to the dashboard.
    browser.logout()
    assert browser.login("old@example.com").headers["Location"] == "/dashboard"


def test_the_page_after_sign_in_is_kept_through_the_acceptance(browser, old_terms_customer):
    response = browser.post_form(
        "/login",
        {"email": "old@example.com", "password": TEST_PASSWORD},
        action="/login?next=/keys",
    )
    accept_page = response.headers["Location"]
    assert accept_page.startswith("/terms/accept")
    response = browser.post_form(accept_page, {"version": current_terms_version()})
    assert response.headers["Location"] == "/keys"


def test_accepting_another_version_than_the_one_shown_is_refused(app, browser, old_terms_customer):
    """The Terms changed between showing the page and posting it: the new ones are shown."""
    browser.login("old@example.com")
    response = browser.post_form("/terms/accept", {"version": "2026-01-01"})
    assert response.status_code == 409
    assert "changed while you were reading" in response.get_data(as_text=True)
    assert accepted(app, old_terms_customer) == (OLD_VERSION, ACCEPTED_BEFORE)


def test_a_customer_on_the_current_terms_is_not_asked(browser, make_account):
    make_account("new@example.com")
    assert browser.login("new@example.com").headers["Location"] == "/dashboard"
    response = browser.get("/terms/accept")
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard"


def test_the_accept_page_needs_a_signed_in_account(client):
    response = client.get("/terms/accept")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_customer_who_does_not_accept_can_still_close_the_account(browser, old_terms_customer):
    browser.login("old@example.com")
    page = browser.get("/terms/accept").get_data(as_text=True)
    assert 'href="/account/close"' in page
    assert browser.get("/account/close").status_code == 200


def test_the_api_keeps_working_until_the_changed_terms_are_accepted(app, old_terms_customer):
    with app.app_context():
        account = db.session.get(Account, old_terms_customer)
        _, key = create_key(account, name="k")
        db.session.commit()
    response = app.test_client().get("/v1/key", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200


def test_admin_pages_are_not_held_back_by_the_terms(app, make_account):
    make_account("admin@example.com", admin=True)
    with app.app_context():
        account = db.session.scalar(db.select(Account).filter_by(email="admin@example.com"))
        account.terms_version = OLD_VERSION
        db.session.commit()
    browser = Browser(app.test_client())
    browser.login("admin@example.com")
    assert browser.get("/admin/accounts").status_code == 200
