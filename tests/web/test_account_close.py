"""Terms §10 on the customer's pages: closing the account stops its keys at once, offers the refund
of what is refundable now (§4), says what is forfeited, and needs the password and a confirmation."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models import Account
from app.services import keys as key_service
from app.services.ledger import grant_credits
from tests.web.purchases import (
    CREDIT,
    credited_purchase,
    money_of,
    only_request,
    set_request,
    unrevoked_keys,
)

PASSWORD = "a long enough passphrase"  # tests.helpers.TEST_PASSWORD
POLL = 'hx-trigger="every 2s"'


@pytest.fixture
def customer(app, make_account, browser):
    """A signed-in customer with an API key, $20 bought 2 days ago, $10 bought 40 days ago and a
    3-credit grant: $20 is refundable now, 13 credits are not."""
    account_id = make_account("leaver@example.com")
    old = credited_purchase(app, account_id, 1000, days_ago=40)
    with app.app_context():
        grant_credits(account_id, 3 * CREDIT, note="welcome", idempotency_key="grant-1")
        db.session.commit()
    recent = credited_purchase(app, account_id, 2000, days_ago=2)
    with app.app_context():
        _, key = key_service.create_key(db.session.get(Account, account_id), name="laptop")
        db.session.commit()
    browser.login("leaver@example.com")
    return {"id": account_id, "old": old, "recent": recent, "key": key}


def close(browser, **overrides):
    data = {"password": PASSWORD, "confirm": "y", "refund": "20.00", "note": ""}
    data.update(overrides)
    return browser.post_form(
        "/account/close", {name: value for name, value in data.items() if value is not None}
    )


def key_works(client, key: str) -> bool:
    response = client.get("/v1/key", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code in (200, 401), response.get_data(as_text=True)
    return response.status_code == 200


def test_the_close_page_lists_the_refundable_credit_and_what_is_forfeited(browser, customer):
    page = browser.get("/account/close").get_data(as_text=True)
    assert "revoked at once" in page and "in flight finish and are billed" in page
    assert "sign-in ends" in page
    table = page.split('id="refundable-table"')[1].split("</table>")[0]
    assert table.count("<tr>") == 3  # the header, the one refundable purchase, the total
    assert 'id="refundable-total">$20.00<' in table
    # Granted credit and credit of the purchase older than 30 days are forfeited.
    assert '<strong id="forfeited">13.00 credits</strong>' in page
    assert 'name="refund"' in page and 'value="20.00"' in page
    assert 'type="password"' in page and 'type="checkbox"' in page


def test_the_close_page_is_linked_from_the_dashboard_and_the_purchases(browser, customer):
    for page in ("/dashboard", "/credits/history"):
        assert 'href="/account/close"' in browser.get(page).get_data(as_text=True)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"password": "not my password"}, "password"),
        ({"password": None}, "password"),
        ({"confirm": None}, "confirm"),
    ],
    ids=["wrong-password", "no-password", "not-confirmed"],
)
def test_closing_needs_the_password_and_a_confirmation(
    app, browser, client, customer, overrides, field
):
    before = money_of(app, customer["id"])
    response = close(browser, **overrides)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'id="{field}-error"' in page
    assert money_of(app, customer["id"]) == before  # no request, nothing reserved
    assert unrevoked_keys(app, customer["id"]) == 1
    assert key_works(client, customer["key"])


@pytest.mark.parametrize(
    "refund, message",
    [
        ("20.01", "At most $20.00 is refundable now in all."),
        ("abc", "Enter an amount in dollars and whole cents"),
        ("1.005", "Enter an amount in dollars and whole cents"),
        ("-1", "Enter an amount of at least $0.01."),
    ],
    ids=["over", "words", "part-cent", "negative"],
)
def test_a_closure_refunds_at_most_what_is_refundable_now(
    app, browser, client, customer, refund, message
):
    before = money_of(app, customer["id"])
    response = close(browser, refund=refund)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert money_of(app, customer["id"]) == before
    assert unrevoked_keys(app, customer["id"]) == 1
    assert key_works(client, customer["key"])


def test_closing_revokes_every_key_at_once(app, browser, client, customer):
    assert key_works(client, customer["key"])
    response = close(browser, note="Moving on")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/account/close")
    assert unrevoked_keys(app, customer["id"]) == 0
    assert not key_works(client, customer["key"])
    request = only_request(app, customer["id"])
    assert (request.kind, request.state, request.requested_cents) == ("closure", "requested", 2000)
    assert request.note == "Moving on"
    # The refund asked for is reserved at once, like any refund.
    assert money_of(app, customer["id"])["held"] == 20 * CREDIT


def test_a_pending_closure_shows_its_state_instead_of_the_form(app, browser, customer):
    close(browser)
    request = only_request(app, customer["id"])
    page = browser.get("/account/close").get_data(as_text=True)
    assert 'name="password"' not in page
    assert "status-request-requested" in page and POLL in page
    assert f'hx-get="/credits/refunds/{request.id}/status"' in page
    # The request page works for a closure too (the emailed link).
    assert "Your account is being closed." in browser.get(
        f"/credits/refunds/{request.id}"
    ).get_data(as_text=True)
    set_request(app, request.id, state="processing", waiting_for="1 request in flight to be billed")
    fragment = browser.get(
        f"/credits/refunds/{request.id}/status", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert POLL in fragment and "Waiting for 1 request in flight to be billed" in fragment
    set_request(app, request.id, state="denied", customer_message="Your refund is on its way.")
    page = browser.get("/account/close").get_data(as_text=True)
    # Declined: the account stays open and may ask again.
    assert 'name="password"' in page and POLL not in page


def test_closing_without_a_refund_reserves_nothing(app, browser, customer):
    before = money_of(app, customer["id"])
    assert close(browser, refund="0").status_code == 303
    request = only_request(app, customer["id"])
    assert request.requested_cents == 0 and request.hold_id is None
    assert money_of(app, customer["id"])["held"] == before["held"]


def test_a_second_closure_or_refund_while_one_is_open_is_refused(app, browser, customer):
    assert close(browser).status_code == 303
    before = money_of(app, customer["id"])
    again = browser.post_form(
        "/dashboard",
        {"password": PASSWORD, "confirm": "y", "refund": "0"},
        action="/account/close",
    )
    assert again.status_code == 409
    refund = browser.post_form(
        "/dashboard", {"amount": "1"}, action=f"/credits/refunds/new?purchase={customer['recent']}"
    )
    assert refund.status_code == 409
    assert money_of(app, customer["id"]) == before


def test_a_refund_in_progress_is_finished_before_closing(app, browser, customer):
    response = browser.post_form("/credits/refunds/new", {"amount": "5"})
    assert response.status_code == 303
    page = browser.get("/account/close").get_data(as_text=True)
    assert 'id="open-request"' in page and 'name="password"' not in page
    before = money_of(app, customer["id"])
    refused = browser.post_form(
        "/dashboard",
        {"password": PASSWORD, "confirm": "y", "refund": "0"},
        action="/account/close",
    )
    assert refused.status_code == 409
    assert money_of(app, customer["id"]) == before
    assert unrevoked_keys(app, customer["id"]) == 1


def test_an_admin_account_is_not_closed_by_its_owner(app, make_account, browser):
    admin_id = make_account("boss@example.com", admin=True)
    browser.login("boss@example.com")
    page = browser.get("/account/close").get_data(as_text=True)
    assert 'id="admin-refusal"' in page and 'name="password"' not in page
    response = browser.post_form(
        "/dashboard",
        {"password": PASSWORD, "confirm": "y", "refund": ""},
        action="/account/close",
    )
    assert response.status_code == 400
    assert "An admin account is closed by another admin" in response.get_data(as_text=True)
    assert money_of(app, admin_id)["requests"] == 0


def test_the_dashboard_tells_a_customer_their_account_is_being_closed(app, browser, customer):
    assert 'id="closing-notice"' not in browser.get("/dashboard").get_data(as_text=True)
    close(browser)
    page = browser.get("/dashboard").get_data(as_text=True)
    assert 'id="closing-notice"' in page and "Your account is being closed." in page
    assert "keys are revoked" in page
    assert 'href="/keys" role="button"' not in page  # no new keys while it closes


def test_a_closed_account_is_signed_out_and_its_poll_reloads_the_page(app, browser, customer):
    close(browser)
    request = only_request(app, customer["id"])
    with app.app_context():
        account = db.session.get(Account, customer["id"])
        account.status = "closed"
        account.session_version += 1
        db.session.commit()
    set_request(app, request.id, state="done")
    fragment = browser.get(f"/credits/refunds/{request.id}/status", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["HX-Refresh"] == "true"
    assert "/login" in browser.get("/account/close").headers["Location"]
