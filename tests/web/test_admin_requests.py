"""The admin side of refunds, closures and terminations (Terms §4 and §10): the requests listed and
shown in full, approved (for less than asked), denied, retried or given up on, an admin's own
refund of unused credit, termination, and suspension emailed with the reason shared. Each decision
is audited, and the lifecycle job or the email is queued only after the commit that records it.

The Stripe refunds themselves are made by the job, tested against localstripe in tests/lifecycle.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db, get_queue
from app.models import (
    Account,
    AccountRequest,
    ApiKey,
    AuditLogEntry,
    LedgerEntry,
    RefundPart,
    UsageRecord,
)
from app.models.types import utcnow
from app.services import ledger, lifecycle, refunds
from app.services.accounts import suspend
from app.services.keys import create_key
from tests.helpers import TEST_PASSWORD, Browser
from tests.web.purchases import credited_purchase

CENT = 10_000_000  # nanocredits
CREDIT = 100 * CENT


# Helpers.


def customer_refund(app, account_id: int, cents: int, *, note: str | None = None) -> int:
    """The customer's request for a refund of unused credit (their pages make it the same way)."""
    with app.app_context():
        account = db.session.get(Account, account_id)
        request = refunds.request_refund(account, amount_cents=cents, note=note)
        db.session.commit()
        return request.id


def customer_closure(app, account_id: int, refund_cents: int = 0) -> int:
    with app.app_context():
        account = db.session.get(Account, account_id)
        request = lifecycle.request_closure(
            account, password=TEST_PASSWORD, confirmed=True, refund_cents=refund_cents
        )
        db.session.commit()
        return request.id


def fail_request(app, request_id: int, message: str = "Stripe: Your card was declined.") -> None:
    """What the job leaves when Stripe refuses: the request failed, its reservation released."""
    with app.app_context():
        request = db.session.get(AccountRequest, request_id)
        refunds.fail(request, message, part=None, definite=True)
        db.session.commit()


def admin_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(Account.id).where(Account.email == "admin@example.com"))


def queued(app, name: str) -> int:
    with app.app_context():
        return get_queue(name).count


def request_row(app, request_id: int) -> AccountRequest:
    with app.app_context():
        request = db.session.get(AccountRequest, request_id)
        db.session.expunge(request)
        return request


def account_row(app, account_id: int) -> Account:
    with app.app_context():
        account = db.session.get(Account, account_id)
        db.session.expunge(account)
        return account


def audit_actions(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditLogEntry.action).order_by(AuditLogEntry.id)))


def state_of(app, request_id: int, account_id: int) -> tuple:
    """What a refused decision must leave as it was."""
    request = request_row(app, request_id)
    account = account_row(app, account_id)
    return (
        request.state,
        request.approved_cents,
        request.decided_by,
        request.decision_reason,
        account.balance_nanocredits,
        account.held_nanocredits,
        len(audit_actions(app)),
        queued(app, "lifecycle"),
        queued(app, "default"),
    )


def page_of(request_id: int) -> str:
    return f"/admin/refunds/{request_id}"


HX = {"HX-Request": "true"}


@pytest.fixture
def alice(app, make_account):
    """A customer with a $10 purchase of today."""
    account_id = make_account("alice@example.com")
    credited_purchase(app, account_id, 1_000, intent="pi_alice")
    return account_id


# The guard.

ADMIN_PATHS = [
    ("get", "/admin/refunds"),
    ("get", "/admin/refunds?status=waiting"),
    ("get", "/admin/refunds/1"),
    ("post", "/admin/refunds/1/approve"),
    ("post", "/admin/refunds/1/deny"),
    ("post", "/admin/accounts/1/terminate"),
    ("post", "/admin/accounts/1/refund"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_PATHS)
def test_customers_cannot_see_admin_refunds(app, make_account, method, path):
    customer_id = make_account("customer@example.com")
    credited_purchase(app, customer_id, 1_000, intent="pi_customer")
    request_id = customer_refund(app, customer_id, 500)
    assert request_id == 1
    before = state_of(app, request_id, customer_id)
    anonymous = app.test_client()
    customer = Browser(app.test_client())
    customer.login("customer@example.com")
    for client in (anonymous, customer.client):
        response = getattr(client, method)(path, data={"reason": "x", "amount": "5", "refund": "5"})
        assert response.status_code == 404
    assert state_of(app, request_id, customer_id) == before
    assert account_row(app, customer_id).status == "active"


# The list.


def test_the_list_shows_every_request_newest_first_with_its_money_and_decision(
    app, admin, alice, make_account
):
    bob = make_account("bob@example.com")
    credited_purchase(app, bob, 2_000, intent="pi_bob")
    carol = make_account("carol@example.com")
    credited_purchase(app, carol, 3_000, intent="pi_carol")
    refund_id = customer_refund(app, alice, 750)
    closure_id = customer_closure(app, bob, refund_cents=1_200)
    failed_id = customer_refund(app, carol, 2_500)
    decider = admin_id(app)
    with app.app_context():
        request = db.session.get(AccountRequest, failed_id)
        refunds.approve(request, amount_cents=2_000, reason="fine", actor_id=decider)
        db.session.commit()
    fail_request(app, failed_id, "Stripe: No such payment_intent: 'pi_carol'")

    page = admin.get("/admin/refunds").get_data(as_text=True)
    for text in (
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "$7.50",
        "$12.00",
        "$25.00",
        "$20.00",
        "Refund",
        "Closure",
        "requested",
        "failed",
        "No such payment_intent: &#39;pi_carol&#39;",
        f'href="/admin/refunds/{refund_id}"',
        f'href="/admin/refunds/{closure_id}"',
        f'href="/admin/accounts/{alice}"',
    ):
        assert text in page, text
    # Who decided: the admin who approved Carol's.
    assert page.count("admin@example.com") >= 1
    assert page.index("carol@example.com") < page.index("bob@example.com") and page.index(
        "bob@example.com"
    ) < page.index("alice@example.com")  # newest first
    assert 'href="/admin/refunds" aria-current="page"' in page


def test_the_list_filters_by_state_and_kind(app, admin, alice, make_account):
    bob = make_account("bob@example.com")
    credited_purchase(app, bob, 2_000, intent="pi_bob")
    carol = make_account("carol@example.com")
    credited_purchase(app, carol, 3_000, intent="pi_carol")
    customer_refund(app, alice, 750)
    customer_closure(app, bob)
    denied_id = customer_refund(app, carol, 100)
    decider = admin_id(app)
    with app.app_context():
        request = db.session.get(AccountRequest, denied_id)
        refunds.deny(request, reason="abuse", actor_id=decider, customer_message=None)
        db.session.commit()

    def emails(query: str, **kwargs) -> set[str]:
        html = admin.get(f"/admin/refunds{query}", **kwargs).get_data(as_text=True)
        return {e for e in ("alice", "bob", "carol") if f"{e}@example.com" in html}

    assert emails("") == {"alice", "bob", "carol"}
    assert emails("?status=requested") == {"alice", "bob"}
    assert emails("?status=denied") == {"carol"}
    assert emails("?status=waiting") == {"alice", "bob"}
    assert emails("?kind=closure") == {"bob"}
    assert emails("?kind=refund&status=requested") == {"alice"}
    assert emails("?status=bogus&kind=bogus&page=-2") == {"alice", "bob", "carol"}
    assert "No request matches" in admin.get("/admin/refunds?status=processing").get_data(
        as_text=True
    )

    fragment = admin.get("/admin/refunds?kind=refund", headers=HX)
    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="requests-table"')
    assert "alice@example.com" in html and "bob@example.com" not in html
    assert "<nav" not in html
    assert "HX-Request" in fragment.headers["Vary"]


def test_the_admin_navigation_counts_the_requests_waiting_for_a_decision(
    app, admin, alice, make_account
):
    page = admin.get("/admin/accounts").get_data(as_text=True)
    assert 'href="/admin/refunds"' in page
    assert 'id="requests-waiting"' not in page
    bob = make_account("bob@example.com")
    credited_purchase(app, bob, 2_000, intent="pi_bob")
    customer_refund(app, alice, 500)
    failed_id = customer_refund(app, bob, 500)
    decider = admin_id(app)
    with app.app_context():
        request = db.session.get(AccountRequest, failed_id)
        refunds.approve(request, amount_cents=None, reason="ok", actor_id=decider)
        db.session.commit()
    fail_request(app, failed_id)
    page = admin.get("/admin/purchases").get_data(as_text=True)
    assert (
        '<span class="nav-count" id="requests-waiting">2'
        '<span class="visually-hidden"> waiting for a decision</span>'
    ) in page


# One request.


def test_the_request_page_shows_the_request_in_full_beside_the_account(app, admin, make_account):
    account_id = make_account("alice@example.com")
    old = credited_purchase(app, account_id, 2_000, intent="pi_old", days_ago=40)
    new = credited_purchase(app, account_id, 1_000, intent="pi_new")
    with app.app_context():
        db.session.add(
            UsageRecord(
                account_id=account_id,
                request_id="req_1",
                provider="openai",
                model_id="gpt-4o-mini",
                route="/v1/chat/completions",
                status="ok",
                input_tokens=1_234,
                output_tokens=56,
                cost_nanocredits=3 * CENT,
            )
        )
        ledger.post_entry(
            account_id=account_id,
            kind="usage",
            amount_nanocredits=-3 * CENT,
            idempotency_key="usage:1",
            reference_type="usage",
            reference_id="1",
        )
        db.session.commit()
    request_id = customer_refund(app, account_id, 600, note="Bought too much by mistake.")
    decider = admin_id(app)
    with app.app_context():
        request = db.session.get(AccountRequest, request_id)
        refunds.approve(request, amount_cents=None, reason="within 30 days", actor_id=decider)
        db.session.add_all(
            [
                RefundPart(
                    request_id=request_id,
                    purchase_id=new,
                    attempt=1,
                    amount_cents=600,
                    state="failed",
                    error="Stripe: Your card was declined.",
                ),
                RefundPart(
                    request_id=request_id,
                    purchase_id=new,
                    attempt=2,
                    amount_cents=600,
                    state="done",
                    stripe_refund_id="re_123abc",
                ),
            ]
        )
        request.runs = 2
        request.waiting_for = "1 request in flight to be billed"
        db.session.commit()

    response = admin.get(page_of(request_id))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for text in (
        "Refund #",
        "approved",
        "the customer",  # who requested
        "Bought too much by mistake.",
        "within 30 days",
        "admin@example.com",  # who decided
        "$6.00",
        "re_123abc",
        "Stripe: Your card was declined.",
        "1 request in flight to be billed",
        "pi_old",
        "pi_new",
        "$20.00",
        "$10.00",
        # usage and ledger beside it
        "gpt-4o-mini",
        "1,234",
        "usage 1",
    ):
        assert text in page, text
    assert f"#{old}" in page and f"#{new}" in page
    # Refundable now, counting this request's own reservation: all of the new purchase (credit is
    # spent oldest first), none of the old one (past 30 days).
    assert '<td class="num refundable">$10.00</td>' in page
    assert '<td class="num refundable">$0.00</td>' in page
    # Approved and not started: it can be withdrawn, not approved again.
    assert f"/admin/refunds/{request_id}/deny" in page
    assert f"/admin/refunds/{request_id}/approve" not in page
    assert admin.get("/admin/refunds/999999").status_code == 404


def test_a_requested_refund_offers_approve_prefilled_with_the_amount_and_deny(app, admin, alice):
    request_id = customer_refund(app, alice, 750)
    page = admin.get(page_of(request_id)).get_data(as_text=True)
    assert 'id="approve-amount"' in page and 'value="7.50"' in page
    assert f'action="/admin/refunds/{request_id}/approve"' in page
    assert f'action="/admin/refunds/{request_id}/deny"' in page
    assert 'id="deny-customer-message"' in page
    assert "Retry" not in page and "Give up" not in page


def test_an_admin_approves_less_than_asked_with_a_reason(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    assert account_row(app, alice).held_nanocredits == 7 * CREDIT
    response = admin.post_form(
        page_of(request_id),
        {"amount": "5.25", "reason": "the rest was used by a key leak we refund separately"},
        action=f"{page_of(request_id)}/approve",
        headers=HX,
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="account-request"')
    assert "is approved" in html
    # What the decision changes beside it is swapped out of band: the account's money, and the
    # navigation, no longer counting this request as waiting.
    assert (
        '<section id="request-account" class="request-account" '
        'aria-labelledby="request-account-heading" hx-swap-oob="true">'
    ) in html
    assert '<nav id="admin-nav" class="admin-nav" aria-label="Admin" hx-swap-oob="true">' in html
    assert 'id="requests-waiting"' not in html
    request = request_row(app, request_id)
    assert request.state == "approved"
    assert request.requested_cents == 700 and request.approved_cents == 525
    assert request.decided_by == admin_id(app)
    assert request.decision_reason == "the rest was used by a key leak we refund separately"
    # Less than asked gives the rest of the reservation back at once.
    assert account_row(app, alice).held_nanocredits == 525 * CENT
    assert queued(app, "lifecycle") == 1
    assert queued(app, "default") == 0


def test_approval_without_javascript_redirects_with_a_notice(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    response = admin.post_form(
        page_of(request_id),
        {"amount": "7", "reason": "within the terms"},
        action=f"{page_of(request_id)}/approve",
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(page_of(request_id))
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Request #{request_id} is approved" in page
    assert request_row(app, request_id).approved_cents == 700


def test_the_job_is_queued_only_after_the_commit(app, admin, alice, monkeypatch):
    from app.tasks import lifecycle as lifecycle_tasks

    request_id = customer_refund(app, alice, 700)
    seen = []
    enqueue = lifecycle_tasks.enqueue_request

    def enqueue_seeing_the_database(queued_id: int) -> None:
        # Another connection sees only what is committed.
        with db.engine.connect() as connection:
            seen.append(
                connection.execute(
                    select(AccountRequest.state).where(AccountRequest.id == queued_id)
                ).scalar_one()
            )
        enqueue(queued_id)

    monkeypatch.setattr(lifecycle_tasks, "enqueue_request", enqueue_seeing_the_database)
    admin.post_form(
        page_of(request_id),
        {"amount": "7", "reason": "ok"},
        action=f"{page_of(request_id)}/approve",
    )
    assert seen == ["approved"]
    assert queued(app, "lifecycle") == 1


def test_approval_needs_a_reason(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    before = state_of(app, request_id, alice)
    for headers in ({}, HX):
        response = admin.post_form(
            page_of(request_id),
            {"amount": "7", "reason": "   "},
            action=f"{page_of(request_id)}/approve",
            headers=headers,
        )
        assert response.status_code == 400
        html = response.get_data(as_text=True)
        assert "Give a reason." in html
        assert 'id="approve-reason"' in html and 'aria-invalid="true"' in html
    assert html.lstrip().startswith('<section id="account-request"')
    assert state_of(app, request_id, alice) == before


def test_approving_more_than_asked_is_refused(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    before = state_of(app, request_id, alice)
    response = admin.post_form(
        page_of(request_id),
        {"amount": "7.01", "reason": "generous"},
        action=f"{page_of(request_id)}/approve",
        headers=HX,
    )
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "Approve at most the $7.00 asked for." in html
    assert 'value="7.01"' in html  # what was sent stays in the form
    assert state_of(app, request_id, alice) == before


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("12.345", "Enter an amount in dollars and whole cents, like 12.50."),
        ("seven", "Enter an amount in dollars and whole cents, like 12.50."),
        ("1e3", "Enter an amount in dollars and whole cents, like 12.50."),
        ("-1", "Enter an amount of at least $0.01."),
    ],
)
def test_a_malformed_amount_is_refused(app, admin, alice, amount, message):
    request_id = customer_refund(app, alice, 700)
    before = state_of(app, request_id, alice)
    response = admin.post_form(
        page_of(request_id),
        {"amount": amount, "reason": "ok"},
        action=f"{page_of(request_id)}/approve",
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert state_of(app, request_id, alice) == before


def test_a_refund_cannot_be_approved_for_nothing(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    before = state_of(app, request_id, alice)
    response = admin.post_form(
        page_of(request_id),
        {"amount": "0", "reason": "ok"},
        action=f"{page_of(request_id)}/approve",
    )
    assert response.status_code == 409
    assert "Approve at least $0.01, or deny the request." in response.get_data(as_text=True)
    assert state_of(app, request_id, alice) == before


def test_a_denial_releases_the_reserved_credit(app, admin, alice, run_mail_jobs):
    request_id = customer_refund(app, alice, 700)
    assert account_row(app, alice).available_nanocredits == 3 * CREDIT
    response = admin.post_form(
        page_of(request_id),
        {
            "reason": "internal: the same card disputed elsewhere",
            "customer_message": "Your credit was used by requests after the purchase.",
        },
        action=f"{page_of(request_id)}/deny",
        headers=HX,
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="account-request"')
    assert "is denied" in html
    request = request_row(app, request_id)
    assert request.state == "denied"
    assert request.customer_message == "Your credit was used by requests after the purchase."
    account = account_row(app, alice)
    assert account.held_nanocredits == 0 and account.available_nanocredits == 10 * CREDIT
    # No job for a denial; the customer is emailed, with the message shared and not the reason.
    assert queued(app, "lifecycle") == 0
    assert queued(app, "default") == 1
    mail = run_mail_jobs()
    assert "To: alice@example.com" in mail
    assert "Your credit was used by requests after the purchase." in mail
    assert "disputed elsewhere" not in mail


def test_a_denial_needs_a_reason(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    before = state_of(app, request_id, alice)
    response = admin.post_form(
        page_of(request_id),
        {"reason": "", "customer_message": "no"},
        action=f"{page_of(request_id)}/deny",
        headers=HX,
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Give a reason." in html and 'id="deny-reason"' in html
    assert state_of(app, request_id, alice) == before


def test_decisions_are_audited(app, admin, alice, make_account):
    bob = make_account("bob@example.com")
    credited_purchase(app, bob, 2_000, intent="pi_bob")
    approved = customer_refund(app, alice, 700)
    denied = customer_refund(app, bob, 500)
    admin.post_form(
        page_of(approved),
        {"amount": "6", "reason": "approved in part"},
        action=f"{page_of(approved)}/approve",
    )
    admin.post_form(page_of(denied), {"reason": "abuse"}, action=f"{page_of(denied)}/deny")
    decider = admin_id(app)
    with app.app_context():
        entries = db.session.scalars(
            select(AuditLogEntry)
            .where(AuditLogEntry.action.in_(("refund.approve", "refund.deny")))
            .order_by(AuditLogEntry.id)
        ).all()
        assert [
            (e.action, e.actor_id, e.target_account_id, e.reason, e.details) for e in entries
        ] == [
            (
                "refund.approve",
                decider,
                alice,
                "approved in part",
                {"request": approved, "cents": 600},
            ),
            ("refund.deny", decider, bob, "abuse", {"request": denied}),
        ]
    # Shown on the account's audit log too.
    assert "approved in part" in admin.get(f"/admin/accounts/{alice}").get_data(as_text=True)


def test_a_decided_request_cannot_be_decided_again(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    admin.post_form(page_of(request_id), {"reason": "no"}, action=f"{page_of(request_id)}/deny")
    assert queued(app, "default") == 1
    before = state_of(app, request_id, alice)
    page = admin.get(page_of(request_id)).get_data(as_text=True)
    assert "/approve" not in page and "/deny" not in page
    for action in ("approve", "deny"):
        response = admin.post_form(
            page_of(request_id),
            {"amount": "7", "reason": "changed my mind"},
            action=f"{page_of(request_id)}/{action}",
            headers=HX,
        )
        assert response.status_code == 409
        assert "This request is denied; it cannot be decided now." in response.get_data(
            as_text=True
        )
    assert state_of(app, request_id, alice) == before


def test_an_approval_no_job_has_started_on_can_be_withdrawn(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    admin.post_form(
        page_of(request_id),
        {"amount": "7", "reason": "ok"},
        action=f"{page_of(request_id)}/approve",
    )
    assert "Withdraw the approval" in admin.get(page_of(request_id)).get_data(as_text=True)
    response = admin.post_form(
        page_of(request_id), {"reason": "wrong account"}, action=f"{page_of(request_id)}/deny"
    )
    assert response.status_code == 302
    assert request_row(app, request_id).state == "denied"
    assert account_row(app, alice).held_nanocredits == 0
    # The job queued for the approval finds nothing to do.
    from app.tasks.lifecycle import process_request_job

    with app.app_context():
        assert process_request_job(request_id) == "nothing to do"


def test_a_failed_request_can_be_retried(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    admin.post_form(
        page_of(request_id),
        {"amount": "7", "reason": "ok"},
        action=f"{page_of(request_id)}/approve",
    )
    fail_request(app, request_id)
    assert account_row(app, alice).held_nanocredits == 0
    page = admin.get(page_of(request_id)).get_data(as_text=True)
    assert "Stripe: Your card was declined." in page
    assert ">Retry</button>" in page and ">Give up</button>" in page
    assert 'value="7.00"' in page  # the approved amount, again
    lifecycle_jobs = queued(app, "lifecycle")
    refused = admin.post_form(
        page_of(request_id), {"amount": "7"}, action=f"{page_of(request_id)}/approve"
    )
    assert refused.status_code == 400
    assert queued(app, "lifecycle") == lifecycle_jobs
    response = admin.post_form(
        page_of(request_id),
        {"amount": "7", "reason": "the customer updated the card"},
        action=f"{page_of(request_id)}/approve",
        headers=HX,
    )
    assert response.status_code == 200
    assert "is queued again" in response.get_data(as_text=True)
    request = request_row(app, request_id)
    assert request.state == "approved" and request.error is None
    assert account_row(app, alice).held_nanocredits == 7 * CREDIT  # reserved again
    assert queued(app, "lifecycle") == lifecycle_jobs + 1
    assert audit_actions(app)[-1] == "refund.retry"


def test_a_failed_request_is_not_retried_beside_another_open_one(app, admin, alice):
    """An account has one open request at a time: a termination made after the failure waits."""
    request_id = customer_refund(app, alice, 700)
    admin.post_form(
        page_of(request_id),
        {"amount": "7", "reason": "ok"},
        action=f"{page_of(request_id)}/approve",
    )
    fail_request(app, request_id)
    account_page = f"/admin/accounts/{alice}"
    admin.post_form(account_page, {"reason": "fraud"}, action=f"{account_page}/terminate")
    with app.app_context():
        termination_id = db.session.scalar(
            select(AccountRequest.id).where(AccountRequest.kind == "termination")
        )
    page = admin.get(page_of(request_id)).get_data(as_text=True)
    assert f"#{termination_id}</a> (termination, approved) of this account is in progress" in page
    assert f'action="/admin/refunds/{request_id}/approve"' not in page
    before = state_of(app, request_id, alice)
    response = admin.post_form(
        page_of(request_id),
        {"amount": "7", "reason": "retry"},
        action=f"{page_of(request_id)}/approve",
        headers=HX,
    )
    assert response.status_code == 409
    assert f"Request #{termination_id} of this account is in progress" in response.get_data(
        as_text=True
    )
    assert state_of(app, request_id, alice) == before


def test_giving_up_on_a_failed_request_denies_it(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    admin.post_form(
        page_of(request_id),
        {"amount": "7", "reason": "ok"},
        action=f"{page_of(request_id)}/approve",
    )
    fail_request(app, request_id)
    response = admin.post_form(
        page_of(request_id),
        {"reason": "the card is closed", "customer_message": "Write to us for a bank transfer."},
        action=f"{page_of(request_id)}/deny",
    )
    assert response.status_code == 302
    request = request_row(app, request_id)
    assert request.state == "denied"
    assert request.customer_message == "Write to us for a bank transfer."
    assert account_row(app, alice).held_nanocredits == 0
    assert queued(app, "default") == 1


def test_a_request_page_polls_while_the_job_carries_it_out(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    admin.post_form(
        page_of(request_id),
        {"amount": "7", "reason": "ok"},
        action=f"{page_of(request_id)}/approve",
    )
    assert 'hx-trigger="every 5s"' not in admin.get(page_of(request_id)).get_data(as_text=True)
    with app.app_context():
        refunds.begin_run(request_id)
        db.session.commit()
    page = admin.get(page_of(request_id)).get_data(as_text=True)
    assert 'hx-trigger="every 5s"' in page
    assert "/deny" not in page  # nothing to decide while it runs
    fragment = admin.get(page_of(request_id), headers=HX)
    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="account-request"')
    assert "processing" in html and 'aria-label="breadcrumb"' not in html
    assert "HX-Request" in fragment.headers["Vary"]


def test_decision_forms_need_csrf(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    before = state_of(app, request_id, alice)
    for action in ("approve", "deny"):
        response = admin.client.post(
            f"{page_of(request_id)}/{action}", data={"amount": "7", "reason": "no token"}
        )
        assert response.status_code == 400
    assert state_of(app, request_id, alice) == before


# The account page: an admin's refund, termination, suspension.


def test_the_account_page_lists_the_accounts_requests(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    page = admin.get(f"/admin/accounts/{alice}").get_data(as_text=True)
    assert f'href="/admin/refunds/{request_id}"' in page
    # One request at a time: the direct refund waits for this one.
    assert 'action="/admin/accounts/' + str(alice) + '/refund"' not in page
    assert "is in progress" in page


def test_an_admin_refunds_unused_credit_directly(app, admin, alice):
    page = f"/admin/accounts/{alice}"
    html = admin.get(page).get_data(as_text=True)
    assert f'action="/admin/accounts/{alice}/refund"' in html
    assert "At most $10.00 is refundable now" in html
    response = admin.post_form(
        page,
        {"amount": "4.50", "reason": "goodwill: an outage on our side"},
        action=f"{page}/refund",
        headers=HX,
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="account-status"')
    assert (
        '<section id="account-credits" class="stats" aria-label="Credits" hx-swap-oob="true">'
        in html
    )
    decider = admin_id(app)
    with app.app_context():
        request = db.session.scalar(select(AccountRequest))
        assert (request.kind, request.state) == ("refund", "approved")
        assert request.requested_cents == request.approved_cents == 450
        assert request.requested_by == request.decided_by == decider
        assert request.decision_reason == "goodwill: an outage on our side"
        assert f'href="/admin/refunds/{request.id}"' in html
    assert account_row(app, alice).held_nanocredits == 450 * CENT
    assert queued(app, "lifecycle") == 1
    assert audit_actions(app) == ["refund.request", "refund.approve"]


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ({"amount": "4.50", "reason": " "}, 400, "Give a reason."),
        ({"amount": "", "reason": "x"}, 400, "Enter an amount in dollars, like 12.50."),
        ({"amount": "4.5.0", "reason": "x"}, 400, "Enter an amount in dollars and whole cents"),
        ({"amount": "10.01", "reason": "x"}, 409, "At most $10.00 is refundable now in all."),
        ({"amount": "0", "reason": "x"}, 400, "Enter an amount of at least $0.01."),
    ],
)
def test_an_admin_refund_is_capped_at_what_is_refundable_now(
    app, admin, alice, data, status, message
):
    page = f"/admin/accounts/{alice}"
    response = admin.post_form(page, data, action=f"{page}/refund", headers=HX)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AccountRequest)) == 0
    assert account_row(app, alice).held_nanocredits == 0
    assert queued(app, "lifecycle") == 0
    assert audit_actions(app) == []


def test_credit_older_than_30_days_is_not_refundable_by_an_admin_either(app, admin, make_account):
    account_id = make_account("old@example.com")
    credited_purchase(app, account_id, 1_000, intent="pi_old", days_ago=31)
    page = admin.get(f"/admin/accounts/{account_id}").get_data(as_text=True)
    assert "Nothing is refundable now" in page
    assert f'action="/admin/accounts/{account_id}/refund"' not in page
    # A termination may still refund it, at OneKey's discretion.
    assert "up to $10.00, the unused paid credit of any age" in page


def test_terminate_needs_a_reason(app, admin, alice):
    page = f"/admin/accounts/{alice}"
    with app.app_context():
        create_key(db.session.get(Account, alice), name="laptop")
        db.session.commit()
    for headers in ({}, HX):
        response = admin.post_form(
            page,
            {"reason": "", "customer_message": "bye", "refund": "0"},
            action=f"{page}/terminate",
            headers=headers,
        )
        assert response.status_code == 400
        html = response.get_data(as_text=True)
        assert "Give a reason." in html and 'id="terminate-reason"' in html
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AccountRequest)) == 0
        assert db.session.scalar(select(ApiKey.revoked_at)) is None
    assert account_row(app, alice).status == "active"
    assert queued(app, "lifecycle") == 0
    assert audit_actions(app) == []


def test_terminate_refund_is_capped_at_unused_paid_credit(app, admin, make_account):
    account_id = make_account("mallory@example.com")
    credited_purchase(app, account_id, 1_000, intent="pi_old", days_ago=40)
    with app.app_context():
        # Granted credit is never paid out: the unused paid credit stays $10.00.
        ledger.grant_credits(account_id, 3 * CREDIT, note="welcome", idempotency_key="g1")
        db.session.commit()
    page = f"/admin/accounts/{account_id}"
    html = admin.get(page).get_data(as_text=True)
    assert "From 0 (the default) up to $10.00" in html
    assert 'id="terminate-refund"' in html and 'value="0"' in html
    refused = admin.post_form(
        page,
        {"reason": "card testing", "refund": "10.01"},
        action=f"{page}/terminate",
        headers=HX,
    )
    assert refused.status_code == 409
    assert "At most $10.00 is refundable now in all." in refused.get_data(as_text=True)
    malformed = admin.post_form(
        page, {"reason": "card testing", "refund": "ten"}, action=f"{page}/terminate"
    )
    assert malformed.status_code == 400
    assert "Enter an amount in dollars and whole cents" in malformed.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AccountRequest)) == 0
    assert queued(app, "lifecycle") == 0

    done = admin.post_form(
        page,
        {
            "reason": "card testing",
            "customer_message": "Your account broke §5 of the Terms.",
            "refund": "10.00",
        },
        action=f"{page}/terminate",
    )
    assert done.status_code == 302
    assert "is being terminated" in admin.get(page).get_data(as_text=True)
    with app.app_context():
        request = db.session.scalar(select(AccountRequest))
        assert (request.kind, request.state) == ("termination", "approved")
        assert request.requested_cents == request.approved_cents == 1_000
        assert request.decision_reason == "card testing"
        assert request.customer_message == "Your account broke §5 of the Terms."
    assert queued(app, "lifecycle") == 1
    assert "account.terminate" in audit_actions(app)


def test_termination_of_a_suspended_account_revokes_its_keys_at_once(app, admin, alice):
    with app.app_context():
        account = db.session.get(Account, alice)
        create_key(account, name="laptop")
        suspend(account, reason="dispute", actor_id=None)
        db.session.commit()
    page = f"/admin/accounts/{alice}"
    html = admin.get(page).get_data(as_text=True)
    assert f'action="/admin/accounts/{alice}/terminate"' in html
    response = admin.post_form(
        page, {"reason": "chargeback fraud", "refund": ""}, action=f"{page}/terminate", headers=HX
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="account-status"')
    assert "Termination" in html and "is approved" in html
    # The keys table is swapped out of band, showing the revoked key.
    assert '<section id="account-keys" aria-labelledby="keys-heading" hx-swap-oob="true">' in html
    assert "status-revoked" in html
    with app.app_context():
        assert db.session.scalar(select(ApiKey.revoked_at)) is not None
        request = db.session.scalar(select(AccountRequest))
        assert request.approved_cents == 0  # no refund unless the admin chooses one
    # It stays suspended until the job ends it; no second termination is offered meanwhile.
    assert account_row(app, alice).status == "suspended"
    assert f'action="/admin/accounts/{alice}/terminate"' not in admin.get(page).get_data(
        as_text=True
    )
    again = admin.post_form(page, {"reason": "twice"}, action=f"{page}/terminate")
    assert again.status_code == 409
    assert "being terminated already" in again.get_data(as_text=True)
    assert queued(app, "lifecycle") == 1


def test_termination_denies_an_open_customer_request_in_its_favour(app, admin, alice):
    request_id = customer_refund(app, alice, 700)
    page = f"/admin/accounts/{alice}"
    html = admin.get(page).get_data(as_text=True)
    assert f"Request #{request_id} (refund) is denied in its favour." in html
    # Its reservation is given back first, so the whole $10.00 may be refunded.
    assert "up to $10.00" in html
    response = admin.post_form(
        page, {"reason": "abuse", "refund": "10"}, action=f"{page}/terminate"
    )
    assert response.status_code == 302
    assert request_row(app, request_id).state == "denied"
    assert account_row(app, alice).held_nanocredits == 10 * CREDIT


def test_an_admin_cannot_terminate_their_own_account(app, admin):
    own = admin_id(app)
    page = f"/admin/accounts/{own}"
    assert f'action="/admin/accounts/{own}/terminate"' not in admin.get(page).get_data(as_text=True)
    response = admin.post_form(page, {"reason": "oops"}, action=f"{page}/terminate")
    assert response.status_code == 409
    assert "You cannot terminate your own account." in response.get_data(as_text=True)
    assert account_row(app, own).status == "active"
    assert queued(app, "lifecycle") == 0


@pytest.mark.parametrize("status", ["closed", "terminated"])
def test_an_ended_account_shows_its_status_and_offers_nothing(app, admin, alice, status):
    with app.app_context():
        account = db.session.get(Account, alice)
        account.status = status
        account.status_reason = "asked by the customer" if status == "closed" else "fraud"
        account.status_changed_at = utcnow()
        db.session.commit()
    page = admin.get(f"/admin/accounts/{alice}").get_data(as_text=True)
    assert f'<mark class="status status-{status}">{status}</mark>' in page
    assert (
        "Closed at the customer’s request" if status == "closed" else "Terminated by OneKey"
    ) in page
    for action in ("suspend", "unsuspend", "terminate", "refund"):
        assert f'action="/admin/accounts/{alice}/{action}"' not in page
    listed = admin.get(f"/admin/accounts?status={status}").get_data(as_text=True)
    assert "alice@example.com" in listed


def test_suspension_emails_the_shared_reason_only(app, admin, alice, run_mail_jobs):
    page = f"/admin/accounts/{alice}"
    assert 'id="status-customer-message"' in admin.get(page).get_data(as_text=True)
    response = admin.post_form(
        page,
        {
            "reason": "internal: linked to the card-testing ring",
            "customer_message": "unusual payment activity",
        },
        action=f"{page}/suspend",
        headers=HX,
    )
    assert response.status_code == 200
    assert "Told the customer: unusual payment activity" in response.get_data(as_text=True)
    account = account_row(app, alice)
    assert account.status == "suspended"
    assert account.status_reason == "internal: linked to the card-testing ring"
    assert account.status_message == "unusual payment activity"
    assert queued(app, "default") == 1
    mail = run_mail_jobs()
    assert "To: alice@example.com" in mail
    assert "Your OneKey account is suspended: unusual payment activity." in mail
    assert "card-testing ring" not in mail


def test_a_suspension_without_a_shared_reason_names_only_the_terms(
    app, admin, alice, run_mail_jobs
):
    page = f"/admin/accounts/{alice}"
    admin.post_form(page, {"reason": "internal only"}, action=f"{page}/suspend")
    mail = run_mail_jobs()
    assert "suspended: a violation of the Terms of Service." in mail
    assert "internal only" not in mail
    admin.post_form(page, {"reason": "cleared"}, action=f"{page}/unsuspend")
    assert "active again" in run_mail_jobs()


def test_a_refused_suspension_emails_nothing(app, admin, alice):
    page = f"/admin/accounts/{alice}"
    too_long = admin.post_form(
        page,
        {"reason": "spam", "customer_message": "x" * 501},
        action=f"{page}/suspend",
        headers=HX,
    )
    assert too_long.status_code == 400
    assert "Field cannot be longer than 500 characters." in too_long.get_data(as_text=True)
    not_suspended = admin.post_form(page, {"reason": "lift"}, action=f"{page}/unsuspend")
    assert not_suspended.status_code == 409
    assert account_row(app, alice).status == "active"
    assert account_row(app, alice).status_message is None
    assert queued(app, "default") == 0
    assert audit_actions(app) == []


def test_no_ledger_entry_is_written_by_a_decision(app, admin, alice):
    """Money moves only through the job's refunds: a decision reserves or releases credit."""
    request_id = customer_refund(app, alice, 700)
    admin.post_form(
        page_of(request_id),
        {"amount": "5", "reason": "ok"},
        action=f"{page_of(request_id)}/approve",
    )
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 1
        assert ledger.check_invariants() == []
