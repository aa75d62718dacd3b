"""The customer's activity (issue 10, item 7): every ledger movement with its sign and the balance
after it, grants with only the note meant for the customer, usage one line per UTC day, pages (by
HTMX) whose balances continue each other, and never another customer's entries."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, LedgerEntry, Purchase
from app.services import activity as activity_service
from app.services.ledger import check_invariants, grant_credits, post_entry
from app.services.money import display_credits
from app.services.payments import apply_dispute_closed, apply_dispute_created, record_refund
from tests.web.ledger_history import CREDIT, at, date_entry, spend_at, table_rows
from tests.web.purchases import credited_purchase

ALICE = "alice@example.com"
BOB = "bob@example.com"


def signed(nanos: int) -> str:
    return ("+" if nanos > 0 else "") + display_credits(nanos)


def alice_history(app, alice_id: int) -> list[tuple[str, int]]:
    """Alice's movements, one of each kind, dated over six days; returns the lines her activity
    should show, oldest first, as (kind, amount)."""
    credited_purchase(app, alice_id, 2000, intent="pi_alice")
    with app.app_context():
        date_entry("pi_alice", at(1, 9))
        grant_credits(
            alice_id,
            5 * CREDIT,
            note="promo code Q1, internal",
            public_note="Welcome bonus",
            idempotency_key="grant-welcome",
        )
        date_entry("grant-welcome", at(1, 15))
        # Three requests on 2 March (the last a second before midnight), one on the 3rd at 00:00.
        spend_at(alice_id, CREDIT // 2, at(2, 10))
        spend_at(alice_id, CREDIT // 4, at(2, 11))
        spend_at(alice_id, 1, at(2, 23, 59, 59))
        spend_at(alice_id, CREDIT, at(3, 0))
        purchase = db.session.scalar(select(Purchase).where(Purchase.account_id == alice_id))
        record_refund(purchase, "re_alice", 400)
        date_entry("refund:re_alice", at(3, 8))
        post_entry(
            account_id=alice_id,
            kind="adjustment",
            amount_nanocredits=CREDIT // 10,
            idempotency_key="adjust-1",
            note="double billing ticket 42, internal",
            public_note="A request billed twice, credited back",
        )
        date_entry("adjust-1", at(4, 10))
        grant_credits(alice_id, CREDIT, note="goodwill, internal", idempotency_key="grant-plain")
        date_entry("grant-plain", at(4, 11))
        dispute = {"id": "dp_alice", "amount": 1000, "payment_intent": "pi_alice"}
        apply_dispute_created(dispute)
        date_entry("dispute:dp_alice", at(5, 9))
        apply_dispute_closed({**dispute, "status": "won"})
        date_entry("dispute:dp_alice:won", at(6, 9))
        post_entry(
            account_id=alice_id,
            kind="forfeit",
            amount_nanocredits=-CREDIT // 2,
            idempotency_key="forfeit-1",
            note="closure: unused credit not refunded",
        )
        date_entry("forfeit-1", at(6, 10))
        db.session.commit()
    return [
        ("purchase", 20 * CREDIT),
        ("grant", 5 * CREDIT),
        ("usage", -(CREDIT // 2 + CREDIT // 4 + 1)),
        ("refund", -4 * CREDIT),
        # 3 March's usage came before its refund, but a day's usage line follows its other lines.
        ("usage", -CREDIT),
        ("adjustment", CREDIT // 10),
        ("grant", CREDIT),
        ("dispute", -10 * CREDIT),
        ("dispute", 10 * CREDIT),
        ("forfeit", -CREDIT // 2),
    ]


def expected_lines(movements: list[tuple[str, int]]) -> list[tuple[str, str, str]]:
    """(kind, amount, balance after) of each line, newest first: what the table must show."""
    lines, balance = [], 0
    for kind, amount in movements:
        balance += amount
        lines.append((kind, signed(amount), display_credits(balance)))
    return lines[::-1]


def shown(rows) -> list[tuple[str, str, str]]:
    return [(kind, cells[2], cells[3]) for kind, cells in rows]


def test_activity_shows_every_kind_with_its_sign_and_the_running_balance_item7(
    app, browser, make_account
):
    alice_id = make_account(ALICE)
    movements = alice_history(app, alice_id)
    browser.login(ALICE)
    html = browser.get("/activity").get_data(as_text=True)
    rows = table_rows(html)
    assert shown(rows) == expected_lines(movements)
    with app.app_context():
        balance = db.session.get(Account, alice_id).balance_nanocredits
        assert check_invariants() == []
    assert rows[0][1][3] == display_credits(balance)  # the top line's balance is the balance now
    what = {kind: [cells[1] for k, cells in rows if k == kind] for kind, _ in rows}
    assert what["purchase"] == ["Credit purchase · Receipt"]
    assert what["refund"] == ["Refund to your card"]
    assert what["dispute"] == [
        "Dispute closed in your favour: credit returned",
        "Card payment disputed (chargeback)",
    ]
    assert what["forfeit"] == ["Unused credit forfeited when the account ended"]


def test_grants_show_only_the_note_meant_for_the_customer_item7(app, browser, make_account):
    alice_id = make_account(ALICE)
    alice_history(app, alice_id)
    browser.login(ALICE)
    html = browser.get("/activity").get_data(as_text=True)
    rows = table_rows(html)
    grants = [cells[1] for kind, cells in rows if kind == "grant"]
    assert grants == [
        "Credit from OneKey (not refundable)",
        "Credit from OneKey (not refundable)Welcome bonus",
    ]
    adjustments = [cells[1] for kind, cells in rows if kind == "adjustment"]
    assert adjustments == ["Adjustment by OneKeyA request billed twice, credited back"]
    for admin_note in ("promo code Q1", "goodwill", "ticket 42", "closure: unused credit"):
        assert admin_note not in html


def test_the_grant_command_sets_the_note_for_the_customer_item7(app, runner, browser, make_account):
    make_account(ALICE)
    result = runner.invoke(
        args=[
            "credits",
            "grant",
            ALICE,
            "2.5",
            "--note",
            "support ticket 7, internal",
            "--note-for-customer",
            "Sorry for the outage on Monday",
        ]
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        entry = db.session.scalars(select(LedgerEntry)).one()
        assert (entry.note, entry.public_note) == (
            "support ticket 7, internal",
            "Sorry for the outage on Monday",
        )
    browser.login(ALICE)
    html = browser.get("/activity").get_data(as_text=True)
    assert shown(table_rows(html)) == [("grant", "+2.50", "2.50")]
    assert "Sorry for the outage on Monday" in html
    assert "support ticket 7" not in html
    too_long = runner.invoke(
        args=["credits", "grant", ALICE, "1", "--note", "n", "--note-for-customer", "x" * 301]
    )
    assert too_long.exit_code != 0
    assert "longer than 300 characters" in too_long.output
    with app.app_context():
        assert len(db.session.scalars(select(LedgerEntry)).all()) == 1


def test_usage_is_one_line_per_utc_day_with_its_request_count_item7(app, browser, make_account):
    alice_id = make_account(ALICE)
    with app.app_context():
        grant_credits(alice_id, 100 * CREDIT, note="t", idempotency_key="g")
        date_entry("g", at(1, 0))
        for minute in range(25):
            spend_at(alice_id, 1_000_001, at(2, 0, minute))
        spend_at(alice_id, 7, at(2, 23, 59, 59))
        spend_at(alice_id, 3, at(3, 0, 0, 0))
        db.session.commit()
    browser.login(ALICE)
    html = browser.get("/activity").get_data(as_text=True)
    rows = table_rows(html)
    assert [(kind, cells[0], cells[1]) for kind, cells in rows] == [
        ("usage", "2026-03-03", "API usage · 1 request"),
        ("usage", "2026-03-02", "API usage · 26 requests"),
        ("grant", "2026-03-01 00:00 UTC", "Credit from OneKey (not refundable)"),
    ]
    assert [cells[2] for _, cells in rows] == ["-0.000000003", "-0.025000032", "+100.00"]
    assert [cells[3] for _, cells in rows] == ["99.974999965", "99.974999968", "100.00"]
    assert "day (UTC)" in html


@pytest.mark.parametrize(
    "opened",
    # Account opened long before the entries (the pages sum what is newer than them) or just
    # before (they sum what is older): both ways give the same balances.
    [datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)],
)
def test_pages_continue_each_other_by_htmx_and_the_balance_carries_over_item7(
    app, browser, make_account, monkeypatch, opened
):
    alice_id = make_account(ALICE)
    with app.app_context():
        db.session.get(Account, alice_id).created_at = opened
        grant_credits(alice_id, 50 * CREDIT, note="t", idempotency_key="g")
        date_entry("g", at(1, 0))
        for day in range(2, 12):
            spend_at(alice_id, day * 1_000_003, at(day, 8))
            spend_at(alice_id, 11, at(day, 20))
            if day % 3 == 0:
                grant_credits(alice_id, CREDIT, note="t", idempotency_key=f"g{day}")
                date_entry(f"g{day}", at(day, 9))
        db.session.commit()
    browser.login(ALICE)
    whole = shown(table_rows(browser.get("/activity").get_data(as_text=True)))
    assert len(whole) == 1 + 10 + 3
    monkeypatch.setattr(activity_service, "PAGE_ROWS", 4)
    page = browser.get("/activity").get_data(as_text=True)
    lines = shown(table_rows(page))
    pages = 1
    while True:
        older = re.search(r'hx-get="(/activity\?before=[0-9-]+)"', page)
        if older is None:
            break
        page = browser.get(older.group(1), headers={"HX-Request": "true"}).get_data(as_text=True)
        assert page.lstrip().startswith("<tr"), "an older page comes as table rows"
        lines += shown(table_rows(page))
        pages += 1
    assert lines == whole
    assert pages == 4  # whole days until 4 lines: 11-9 March, 8-6, 5-3, then 2-1
    # Without JavaScript the same link is a full page.
    first_page = browser.get("/activity").get_data(as_text=True)
    first_older = re.search(r'href="(/activity\?before=[0-9-]+)"', first_page)
    assert first_older.group(1) == "/activity?before=2026-03-09"
    full = browser.get(first_older.group(1)).get_data(as_text=True)
    assert "<h1>Activity</h1>" in full
    assert shown(table_rows(full)) == whole[4:8]


def test_another_customers_entries_are_never_shown_item7(app, browser, make_account):
    alice_id = make_account(ALICE)
    bob_id = make_account(BOB)
    credited_purchase(app, bob_id, 7700, intent="pi_bob")
    with app.app_context():
        grant_credits(
            bob_id, 3 * CREDIT, note="t", public_note="Bob's own bonus", idempotency_key="gb"
        )
        spend_at(bob_id, 123_456_789, at(2, 10))
        grant_credits(alice_id, CREDIT, note="t", idempotency_key="ga")
        db.session.commit()
    browser.login(ALICE)
    html = browser.get("/activity").get_data(as_text=True)
    assert shown(table_rows(html)) == [("grant", "+1.00", "1.00")]
    for bobs in ("77.00", "Bob's own bonus", "0.123456789", "Receipt"):
        assert bobs not in html
    # An older page of Bob's days, asked for by date, still shows only Alice's (none there).
    older = browser.get("/activity?before=2026-03-03", headers={"HX-Request": "true"})
    assert table_rows(older.get_data(as_text=True)) == []


def test_a_page_asked_for_by_something_not_a_date_is_a_clear_400_item7(app, browser, make_account):
    make_account(ALICE)
    browser.login(ALICE)
    for before in ("yesterday", "2026-13-01", "2026-03-01T00:00:00Z'"):
        response = browser.get("/activity", query_string={"before": before})
        assert response.status_code == 400, before
        assert "not a date" in response.get_data(as_text=True)


def test_activity_needs_sign_in_and_is_in_the_navigation_item7(app, client, browser, make_account):
    assert client.get("/activity").status_code == 302
    make_account(ALICE)
    browser.login(ALICE)
    html = browser.get("/activity").get_data(as_text=True)
    assert 'href="/activity" aria-current="page">Activity</a>' in html
    assert "No activity yet" in html
