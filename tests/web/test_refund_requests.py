"""Terms §4 on the customer's pages: refunds of unused credit within 30 days of purchase, asked for
from the purchase history, reserved at once, one request at a time, followed on the request page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, Hold
from app.services import accounts
from app.services.ledger import grant_credits
from tests.web.purchases import (
    CREDIT,
    credited_purchase,
    money_of,
    only_request,
    set_request,
)

REFUND_LINK = re.compile(r'href="/credits/refunds/new\?purchase=(\d+)"')
POLL = 'hx-trigger="every 2s"'


@pytest.fixture
def customer(app, make_account, browser):
    """A signed-in customer with $25 bought 3 days ago and $10 bought 40 days ago (spent in part)."""
    account_id = make_account("buyer@example.com")
    old = credited_purchase(app, account_id, 1000, days_ago=40)
    recent = credited_purchase(app, account_id, 2500, days_ago=3)
    browser.login("buyer@example.com")
    return {"id": account_id, "old": old, "recent": recent}


def ask(browser, data: dict, purchase_id: int | None = None):
    page = "/credits/refunds/new" + (f"?purchase={purchase_id}" if purchase_id else "")
    return browser.post_form(page, data)


def test_refund_actions_appear_only_for_purchases_with_refundable_credit(browser, customer):
    page = browser.get("/credits/history").get_data(as_text=True)
    assert REFUND_LINK.findall(page) == [str(customer["recent"])]
    assert 'id="refund-all"' in page and "Refund all refundable credit ($25.00)" in page


def test_no_refund_action_without_refundable_credit(app, make_account, browser):
    account_id = make_account("old@example.com")
    credited_purchase(app, account_id, 1000, days_ago=31)
    with app.app_context():
        grant_credits(account_id, 5 * CREDIT, note="welcome", idempotency_key="g1")
        db.session.commit()
    browser.login("old@example.com")
    page = browser.get("/credits/history").get_data(as_text=True)
    assert not REFUND_LINK.search(page)
    assert 'id="refund-all"' not in page
    form = browser.get("/credits/refunds/new").get_data(as_text=True)
    assert "Nothing is refundable now." in form and "<form" not in form.split("<main")[1]


def test_the_refund_form_is_prefilled_with_what_is_refundable_now(browser, customer):
    one = browser.get(f"/credits/refunds/new?purchase={customer['recent']}")
    assert one.status_code == 200
    assert 'value="25.00"' in one.get_data(as_text=True)
    assert 'value="25.00"' in browser.get("/credits/refunds/new").get_data(as_text=True)


def test_a_refund_request_reserves_the_credit_at_once(app, browser, customer):
    before = money_of(app, customer["id"])
    response = ask(browser, {"amount": "12.50", "note": "No longer needed"}, customer["recent"])
    assert response.status_code == 303
    request = only_request(app, customer["id"])
    assert response.headers["Location"].endswith(f"/credits/refunds/{request.id}")
    assert (request.kind, request.state, request.requested_cents) == ("refund", "requested", 1250)
    assert request.purchase_id == customer["recent"] and request.note == "No longer needed"
    after = money_of(app, customer["id"])
    assert after["balance"] == before["balance"]
    assert after["held"] == before["held"] + 12 * CREDIT + CREDIT // 2
    with app.app_context():
        hold = db.session.get(Hold, request.hold_id)
        assert (hold.purpose, hold.status, hold.expires_at) == ("refund", "open", None)
    page = browser.get(response.headers["Location"]).get_data(as_text=True)
    assert "$12.50" in page and "status-request-requested" in page


def test_a_refund_of_all_refundable_credit_names_no_purchase(app, browser, customer):
    assert ask(browser, {"amount": "25"}).status_code == 303
    request = only_request(app, customer["id"])
    assert request.purchase_id is None and request.requested_cents == 2500


@pytest.mark.parametrize(
    "amount",
    ["25.01", "100", "0", "0.00", "", "twelve", "5.001", "-3", "1e3"],
    ids=[
        "over",
        "far-over",
        "zero",
        "zero-cents",
        "empty",
        "words",
        "part-cent",
        "negative",
        "exp",
    ],
)
def test_a_refund_is_only_of_whole_cents_up_to_what_is_refundable_now(
    app, browser, customer, amount
):
    before = money_of(app, customer["id"])
    response = ask(browser, {"amount": amount}, customer["recent"])
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'aria-invalid="true"' in page and 'class="field-error"' in page
    assert money_of(app, customer["id"]) == before  # no request, no hold, nothing reserved


def test_a_refund_of_all_credit_is_limited_to_the_total_refundable(app, browser, customer):
    before = money_of(app, customer["id"])
    response = ask(browser, {"amount": "25.01"})
    assert response.status_code == 400
    assert "At most $25.00 is refundable now in all." in response.get_data(as_text=True)
    assert money_of(app, customer["id"]) == before


def test_credit_older_than_30_days_is_not_refundable(app, browser, customer):
    before = money_of(app, customer["id"])
    response = ask(browser, {"amount": "1"}, customer["old"])
    assert response.status_code == 400
    assert money_of(app, customer["id"]) == before


def test_one_refund_request_at_a_time(app, browser, customer):
    assert ask(browser, {"amount": "5"}, customer["recent"]).status_code == 303
    request = only_request(app, customer["id"])
    history = browser.get("/credits/history").get_data(as_text=True)
    # The request in progress is shown instead of the actions.
    assert not REFUND_LINK.search(history) and 'id="refund-all"' not in history
    assert 'id="open-request"' in history and f'href="/credits/refunds/{request.id}"' in history
    before = money_of(app, customer["id"])
    token_page = f"/credits/refunds/{request.id}"
    again = browser.post_form(token_page, {"amount": "5"}, action="/credits/refunds/new")
    assert again.status_code == 409
    assert "One request at a time" in again.get_data(as_text=True)
    assert money_of(app, customer["id"]) == before
    form = browser.get("/credits/refunds/new").get_data(as_text=True)
    assert 'id="open-request"' in form and 'name="amount"' not in form


def test_another_customers_request_is_a_404(app, browser, customer, make_account, client):
    assert ask(browser, {"amount": "5"}, customer["recent"]).status_code == 303
    request = only_request(app, customer["id"])
    browser.logout()
    make_account("other@example.com")
    browser.login("other@example.com")
    assert browser.get(f"/credits/refunds/{request.id}").status_code == 404
    assert (
        browser.get(
            f"/credits/refunds/{request.id}/status", headers={"HX-Request": "true"}
        ).status_code
        == 404
    )
    assert browser.get(f"/credits/refunds/new?purchase={customer['recent']}").status_code == 404
    assert browser.get("/credits/refunds/999999").status_code == 404


def test_the_request_page_polls_while_open_and_stops_once_refunded(app, browser, customer):
    ask(browser, {"amount": "7"}, customer["recent"])
    request = only_request(app, customer["id"])
    page = browser.get(f"/credits/refunds/{request.id}").get_data(as_text=True)
    assert page.count(POLL) == 1
    assert f'hx-get="/credits/refunds/{request.id}/status"' in page
    fragment = browser.get(f"/credits/refunds/{request.id}/status", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<div id="request-status"') and POLL in body
    assert "HX-Request" in fragment.headers["Vary"]
    for state in ("approved", "processing"):
        set_request(app, request.id, state=state, approved_cents=700)
        body = browser.get(
            f"/credits/refunds/{request.id}/status", headers={"HX-Request": "true"}
        ).get_data(as_text=True)
        assert POLL in body and f"status-request-{state}" in body
    set_request(app, request.id, state="done", refunded_cents=700)
    body = browser.get(
        f"/credits/refunds/{request.id}/status", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert POLL not in body and "hx-get" not in body
    assert "status-request-refunded" in body and "Refunded $7.00" in body
    assert POLL not in browser.get(f"/credits/refunds/{request.id}").get_data(as_text=True)


def test_the_status_fragment_without_htmx_is_the_request_page(app, browser, customer):
    ask(browser, {"amount": "7"}, customer["recent"])
    request = only_request(app, customer["id"])
    response = browser.get(f"/credits/refunds/{request.id}/status")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/credits/refunds/{request.id}")


def test_a_denied_request_shows_the_message_from_our_team(app, browser, customer):
    ask(browser, {"amount": "7"}, customer["recent"])
    request = only_request(app, customer["id"])
    set_request(
        app,
        request.id,
        state="denied",
        decision_reason="internal: looks like abuse",
        customer_message="The credit was used for a batch job.",
    )
    page = browser.get(f"/credits/refunds/{request.id}").get_data(as_text=True)
    assert "status-request-denied" in page and POLL not in page
    assert "From our team: The credit was used for a batch job." in page
    assert "internal: looks like abuse" not in page  # the audited reason is for admins


def test_a_failed_refund_says_so_without_stripes_internals(app, browser, customer):
    ask(browser, {"amount": "7"}, customer["recent"])
    request = only_request(app, customer["id"])
    set_request(app, request.id, state="failed", error="Stripe: No such payment_intent: pi_x")
    page = browser.get(f"/credits/refunds/{request.id}").get_data(as_text=True)
    assert "status-request-failed" in page and POLL not in page
    assert "could not be completed" in page and "pi_x" not in page


def test_past_refund_requests_are_listed_on_the_history_page(app, browser, customer):
    ask(browser, {"amount": "7"}, customer["recent"])
    first = only_request(app, customer["id"])
    set_request(app, first.id, state="denied")
    ask(browser, {"amount": "3"})
    page = browser.get("/credits/history").get_data(as_text=True)
    table = page.split('id="requests-table"')[1]
    assert table.index("$3.00") < table.index("$7.00")  # newest first
    assert "status-request-denied" in table and "status-request-requested" in table
    assert f'href="/credits/refunds/{first.id}"' in table


def test_a_suspended_customer_may_still_ask_for_a_refund(app, browser, customer):
    with app.app_context():
        account = db.session.get(Account, customer["id"])
        accounts.suspend(account, reason="test", actor_id=None)
        db.session.commit()
    browser.login("buyer@example.com")
    assert REFUND_LINK.search(browser.get("/credits/history").get_data(as_text=True))
    assert ask(browser, {"amount": "5"}, customer["recent"]).status_code == 303
    assert only_request(app, customer["id"]).requested_cents == 500


def test_a_poll_after_the_session_ended_reloads_the_page(app, browser, customer):
    """A closure carried out ends the session: the fragment then asks for a full reload, which goes
    to sign-in, instead of swapping the sign-in page into the request page."""
    ask(browser, {"amount": "7"}, customer["recent"])
    request = only_request(app, customer["id"])
    browser.logout()
    fragment = browser.get(f"/credits/refunds/{request.id}/status", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["HX-Refresh"] == "true"
    page = browser.get(f"/credits/refunds/{request.id}")
    assert page.status_code == 302 and "/login" in page.headers["Location"]


def test_a_refund_of_a_purchase_bought_with_stripe_is_asked_for_from_its_row(app, shop):
    purchase_id = shop.buy("5")
    history = shop.browser.get("/credits/history").get_data(as_text=True)
    assert REFUND_LINK.findall(history) == [str(purchase_id)]
    response = shop.browser.post_form(
        f"/credits/refunds/new?purchase={purchase_id}", {"amount": "5.00"}
    )
    assert response.status_code == 303
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.email == shop.email))
        assert account.balance_nanocredits == 5 * CREDIT
        assert account.available_nanocredits == 0
