"""Issue 11 item 2: credit adjustments on the account page. An admin grants or debits credit with
a reason (audited) and a note the customer may see or not; the form's key makes a double submit
post once; a debit takes at most the available credit; only active admins reach it."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, AuditLogEntry, CreditAdjustment, LedgerEntry
from app.models.types import utcnow
from app.services import accounts as account_service
from app.services.ledger import check_invariants, grant_credits, place_hold
from app.services.refunds import refundable_cents_by_purchase
from tests.helpers import Browser, csrf_token_from

FORM_KEY = re.compile(r'name="form_key" type="hidden" value="([^"]+)"')
CREDIT = 1_000_000_000


def form_of(browser: Browser, account_id: int) -> dict:
    """The adjustment form's hidden fields, as the account page renders them."""
    html = browser.get(f"/admin/accounts/{account_id}").get_data(as_text=True)
    return {"csrf_token": csrf_token_from(html), "form_key": FORM_KEY.search(html).group(1)}


def post(browser: Browser, account_id: int, form: dict, htmx: bool = False, **fields):
    data = {"direction": "grant", "amount": "5", "reason": "goodwill", **form, **fields}
    headers = {"HX-Request": "true"} if htmx else {}
    return browser.client.post(f"/admin/accounts/{account_id}/credit", data=data, headers=headers)


def counts(app) -> tuple[int, int, int]:
    """(ledger entries, adjustments, audit entries)."""
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (LedgerEntry, CreditAdjustment, AuditLogEntry)
        )


def balance_of(app, account_id: int) -> tuple[int, int]:
    with app.app_context():
        account = db.session.get(Account, account_id)
        return account.balance_nanocredits, account.held_nanocredits


@pytest.fixture
def alice(make_account):
    return make_account("alice@example.com")


def test_item2_a_grant_posts_a_grant_entry_with_its_reason_and_audit_row(app, admin, alice):
    response = post(
        admin,
        alice,
        form_of(admin, alice),
        amount="12.5",
        reason="outage on 3 May",
        note="Sorry for the outage.",
        note_visible="y",
    )
    assert response.status_code == 303
    with app.app_context():
        entry = db.session.scalar(select(LedgerEntry))
        assert (entry.kind, entry.amount_nanocredits) == ("grant", 12_500_000_000)
        assert entry.note == "outage on 3 May"
        adjustment = db.session.scalar(select(CreditAdjustment))
        assert adjustment.ledger_entry_id == entry.id
        assert adjustment.amount_nanocredits == 12_500_000_000
        assert adjustment.customer_note == "Sorry for the outage."
        audit = db.session.scalar(select(AuditLogEntry))
        assert audit.action == "credit.grant"
        assert audit.reason == "outage on 3 May"
        assert audit.target_account_id == alice
        assert audit.actor.email == "admin@example.com"
        assert audit.details["amount_nanocredits"] == 12_500_000_000
        assert audit.details["ledger_entry"] == entry.id
        assert audit.details["note_visible"] is True
        assert entry.actor_id == audit.actor_id
        assert check_invariants() == []
    assert balance_of(app, alice) == (12_500_000_000, 0)
    page = admin.get(f"/admin/accounts/{alice}").get_data(as_text=True)
    assert "Granted 12.50 credits to alice@example.com." in page
    assert "Customer sees: Sorry for the outage." in page


def test_item2_a_granted_credit_is_never_refundable(app, admin, alice):
    """Terms §4: grants are never paid out, so a grant by hand is a ledger `grant`."""
    post(admin, alice, form_of(admin, alice), amount="20")
    with app.app_context():
        assert refundable_cents_by_purchase(alice) == {}


def test_item2_a_debit_posts_a_negative_adjustment(app, admin, alice):
    with app.app_context():
        grant_credits(alice, 10 * CREDIT, note="welcome", idempotency_key="g1")
        db.session.commit()
    response = post(
        admin, alice, form_of(admin, alice), direction="debit", amount="4", reason="double grant"
    )
    assert response.status_code == 303
    with app.app_context():
        entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "adjustment"))
        assert entry.amount_nanocredits == -4 * CREDIT
        audit = db.session.scalar(select(AuditLogEntry))
        assert (audit.action, audit.reason) == ("credit.debit", "double grant")
        assert audit.details["amount_nanocredits"] == -4 * CREDIT
        assert check_invariants() == []
    assert balance_of(app, alice) == (6 * CREDIT, 0)


@pytest.mark.parametrize("reason", ["", "   "])
def test_item2_a_reason_is_required_and_nothing_is_posted_without_one(app, admin, alice, reason):
    response = post(admin, alice, form_of(admin, alice), reason=reason)
    assert response.status_code == 400
    assert "Give a reason." in response.get_data(as_text=True)
    assert counts(app) == (0, 0, 0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": "0"}, "Enter an amount above 0"),
        ({"amount": "-3"}, "Enter an amount above 0"),
        ({"amount": "1e3"}, "is not a plain decimal number"),
        ({"amount": "0.0000000001"}, "more than 9 decimals"),
        ({"amount": "100001"}, "at most 100000 credits"),
        ({"direction": "steal"}, "Not a valid choice"),
        ({"note": "x" * 301}, "at most 300 characters"),
        ({"note_visible": "y", "note": " "}, "Write the note the customer will see"),
        ({"form_key": ""}, "This form is incomplete"),
    ],
)
def test_item2_bad_input_gets_a_clear_error_and_changes_nothing(app, admin, alice, fields, message):
    response = post(admin, alice, form_of(admin, alice), **fields)
    assert response.status_code in (400, 409)
    assert message in response.get_data(as_text=True)
    assert counts(app) == (0, 0, 0)
    assert balance_of(app, alice) == (0, 0)


def test_item2_a_note_is_kept_from_the_customer_unless_the_box_is_ticked(app, admin, alice):
    post(admin, alice, form_of(admin, alice), note="flagged for review")
    with app.app_context():
        adjustment = db.session.scalar(select(CreditAdjustment))
        assert adjustment.note == "flagged for review"
        assert adjustment.note_visible is False
        assert adjustment.customer_note is None
        assert db.session.scalar(select(AuditLogEntry)).details["note_visible"] is False
    page = admin.get(f"/admin/accounts/{alice}").get_data(as_text=True)
    assert "Note (hidden from the customer): flagged for review" in page
    # The customer's own pages show no trace of it.
    customer = Browser(app.test_client())
    customer.login("alice@example.com")
    for path in ("/dashboard", "/credits", "/credits/history", "/activity"):
        assert "flagged for review" not in customer.get(path).get_data(as_text=True)


def test_item2_a_visible_note_is_on_the_customers_activity_page(app, admin, alice):
    """Issue 10 item 7: a granted balance is explained to the customer by the note the admin
    chose to show; the reason stays the admins'."""
    post(
        admin,
        alice,
        form_of(admin, alice),
        amount="3",
        reason="goodwill",
        note="A gift from us.",
        note_visible="y",
    )
    debit = post(
        admin,
        alice,
        form_of(admin, alice),
        direction="debit",
        amount="1",
        reason="correction",
        note="internal only",
    )
    assert debit.status_code == 303
    with app.app_context():
        notes = db.session.scalars(select(LedgerEntry.public_note).order_by(LedgerEntry.id)).all()
    assert notes == ["A gift from us.", None]
    customer = Browser(app.test_client())
    customer.login("alice@example.com")
    page = customer.get("/activity").get_data(as_text=True)
    assert "A gift from us." in page
    assert "internal only" not in page and "goodwill" not in page and "correction" not in page


@pytest.mark.parametrize("htmx", [False, True])
def test_item2_a_double_submit_posts_once(app, admin, alice, htmx):
    form = form_of(admin, alice)
    first = post(admin, alice, form, htmx=htmx, amount="7")
    second = post(admin, alice, form, htmx=htmx, amount="7")
    assert first.status_code == (200 if htmx else 303)
    assert second.status_code == (200 if htmx else 303)
    answer = (second if htmx else admin.get(second.headers["Location"])).get_data(as_text=True)
    assert "Already recorded" in answer and "nothing more was posted" in answer
    assert counts(app) == (1, 1, 1)
    assert balance_of(app, alice) == (7 * CREDIT, 0)
    if htmx:
        # The answer swaps in a fresh form with a new key, and the credit and ledger out of band.
        html = first.get_data(as_text=True)
        assert html.lstrip().startswith('<section id="account-adjust"')
        assert FORM_KEY.search(html).group(1) != form["form_key"]
        assert 'id="account-credits" class="stats" aria-label="Credits" hx-swap-oob="true"' in html
        assert 'id="account-ledger"' in html and 'id="account-audit"' in html


def test_item2_the_same_form_sent_with_other_values_is_refused(app, admin, alice):
    form = form_of(admin, alice)
    post(admin, alice, form, amount="7")
    response = post(admin, alice, form, amount="8")
    assert response.status_code == 409
    assert "already used for another adjustment" in response.get_data(as_text=True)
    assert counts(app) == (1, 1, 1)


def test_item2_a_debit_above_the_available_credit_is_refused_and_changes_nothing(app, admin, alice):
    with app.app_context():
        grant_credits(alice, 5 * CREDIT, note="welcome", idempotency_key="g1")
        place_hold(
            account_id=alice,
            amount_nanocredits=2 * CREDIT,
            expires_at=utcnow() + timedelta(minutes=5),
        )
        db.session.commit()
    before = counts(app)
    response = post(admin, alice, form_of(admin, alice), direction="debit", amount="3.5")
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "A debit can take at most the available credit (balance − held), 3 credits now." in html
    assert counts(app) == before
    assert balance_of(app, alice) == (5 * CREDIT, 2 * CREDIT)
    # All of what is available may go.
    all_of_it = post(admin, alice, form_of(admin, alice), direction="debit", amount="3")
    assert all_of_it.status_code == 303
    assert balance_of(app, alice) == (2 * CREDIT, 2 * CREDIT)
    with app.app_context():
        assert check_invariants() == []


def test_item2_an_ended_account_and_the_admins_own_are_refused(app, admin, alice):
    """Neither page offers the form; a post made anyway is refused."""
    with app.app_context():
        admin_id = db.session.scalar(select(Account.id).where(Account.is_admin.is_(True)))
        db.session.get(Account, alice).status = "closed"
        db.session.commit()
    refusals = {
        alice: "The account is closed: its balance stays at zero.",
        admin_id: "You cannot adjust your own account",
    }
    for account_id, message in refusals.items():
        page = admin.get(f"/admin/accounts/{account_id}").get_data(as_text=True)
        assert not FORM_KEY.search(page)
        form = {"csrf_token": csrf_token_from(page), "form_key": "k" * 32}
        response = post(admin, account_id, form)
        assert response.status_code == 409
        assert message in response.get_data(as_text=True)
    assert counts(app) == (0, 0, 0)


def test_item2_customers_and_suspended_admins_get_a_404_and_change_nothing(
    app, admin, make_account, alice
):
    make_account("former@example.com", admin=True)
    with app.app_context():
        former = account_service.account_by_email("former@example.com")
        account_service.suspend(former, reason="left", actor_id=None)
        db.session.commit()
    form = form_of(admin, alice)
    before = counts(app)
    for email in ("alice@example.com", "former@example.com"):
        other = Browser(app.test_client())
        other.login(email)
        token = csrf_token_from(other.get("/dashboard").get_data(as_text=True))
        response = post(other, alice, {**form, "csrf_token": token}, amount="50")
        assert response.status_code == 404
    assert counts(app) == before
    assert balance_of(app, alice) == (0, 0)


def _waiting_on_a_lock(app) -> bool:
    """Whether another connection waits on a lock (PostgreSQL; SQLite's writers queue on the
    database's write lock, taken by BEGIN IMMEDIATE, which no query shows)."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return True
        with db.engine.connect() as connection:
            return bool(
                connection.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                ).scalar()
            )


@pytest.mark.parametrize("direction", ["grant", "debit"])
def test_item2_two_posts_of_one_form_at_once_post_once(app, make_account, direction):
    """The second post arrives while the first is still uncommitted: it waits for it (a row lock
    or the ledger key's unique index) and then answers with the first one's adjustment."""
    from app.services.adjustments import adjust_credit

    admin_id = make_account("admin@example.com", admin=True)
    alice = make_account("alice@example.com")
    with app.app_context():
        grant_credits(alice, 10 * CREDIT, note="welcome", idempotency_key="g1")
        db.session.commit()
    fields = {
        "direction": direction,
        "amount_nanocredits": 6 * CREDIT,
        "reason": "sent twice",
        "note": None,
        "note_visible": False,
        "form_key": "same-form-key-0123456789",
        "actor_id": admin_id,
    }
    second: dict = {}

    def post_again() -> None:
        with app.app_context():
            outcome = adjust_credit(db.session.get(Account, alice), **fields)
            second["created"] = outcome.created
            second["adjustment"] = outcome.adjustment.id
            db.session.commit()

    with app.app_context():
        first = adjust_credit(db.session.get(Account, alice), **fields)
        thread = threading.Thread(target=post_again)
        thread.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock(app) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert thread.is_alive(), "the second post did not wait for the first"
        db.session.commit()
        first_id = first.adjustment.id
    thread.join(timeout=30)
    assert second == {"created": False, "adjustment": first_id}
    assert counts(app) == (2, 1, 1)  # the welcome grant and one adjustment, audited once
    expected = 16 * CREDIT if direction == "grant" else 4 * CREDIT
    assert balance_of(app, alice) == (expected, 0)
