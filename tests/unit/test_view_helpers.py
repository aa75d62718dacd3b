"""The views' shared helpers (issue 11, "views stay thin"): one URL answers with its page, or with
the fragment htmx asked for; and one paginator pages every list."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, LedgerEntry
from app.services.ledger import grant_credits
from app.web_helpers import is_fragment_request, page_number, paginate, render_page_or_fragment
from tests.helpers import Browser

PAGE = "errors/error.html"
FRAGMENT = "admin/partials/account_credits.html"
CONTEXT = {
    "code": 418,
    "message": "A teapot.",
    "account": SimpleNamespace(
        balance_nanocredits=-5, held_nanocredits=0, available_nanocredits=-5
    ),
}


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, False),
        ({"HX-Request": "true"}, True),
        # Back to a page htmx did not keep: it asks for the whole page.
        ({"HX-Request": "true", "HX-History-Restore-Request": "true"}, False),
    ],
)
def test_one_url_answers_with_its_page_or_its_fragment(app, headers, fragment):
    with app.test_request_context("/somewhere", headers=headers):
        assert is_fragment_request() is fragment
        response = render_page_or_fragment(PAGE, FRAGMENT, status_code=409, **CONTEXT)
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert html.lstrip().startswith('<section id="account-credits"') is fragment
    assert ("<!doctype html>" in html) is not fragment
    assert ("A teapot." in html) is not fragment


def test_pages_and_fragments_vary_on_the_htmx_header(app, make_account):
    make_account("admin@example.com", admin=True)
    admin = Browser(app.test_client())
    admin.login("admin@example.com")
    for headers in ({}, {"HX-Request": "true"}):
        response = admin.get("/admin/audit", headers=headers)
        assert "HX-Request" in response.headers["Vary"]


@pytest.mark.parametrize(
    ("query", "page"), [("", 1), ("?page=4", 4), ("?page=0", 1), ("?page=-3", 1), ("?page=x", 1)]
)
def test_page_number_is_a_whole_number_from_one(app, query, page):
    with app.test_request_context(f"/list{query}"):
        assert page_number() == page


@pytest.fixture
def five_accounts(make_account):
    return [make_account(f"user{n}@example.com") for n in range(5)]


def test_paginate_pages_an_ordered_query(app, five_accounts):
    with app.app_context():
        query = select(Account).order_by(Account.id)
        second = paginate(query, 2, 2)
        assert [account.id for account in second.items] == five_accounts[2:4]
        assert (second.page, second.pages, second.total, second.per_page) == (2, 3, 5, 2)
        assert second.has_previous and second.has_next
        # Past the last page: the last page; before the first: the first.
        last = paginate(query, 99, 2)
        assert (last.page, [a.id for a in last.items]) == (3, five_accounts[4:])
        assert not last.has_next
        assert paginate(query, -1, 2).page == 1


def test_paginate_gives_rows_for_a_query_of_several_columns(app, five_accounts):
    with app.app_context():
        for n, account_id in enumerate(five_accounts):
            grant_credits(account_id, n + 1, note="gift", idempotency_key=f"g{n}")
        query = (
            select(LedgerEntry, Account.email)
            .join(Account, Account.id == LedgerEntry.account_id)
            .where(LedgerEntry.amount_nanocredits > 2)
            .order_by(LedgerEntry.amount_nanocredits.desc())
        )
        listed = paginate(query, 1, 2)
        assert listed.total == 3 and listed.pages == 2
        assert [(entry.amount_nanocredits, email) for entry, email in listed.items] == [
            (5, "user4@example.com"),
            (4, "user3@example.com"),
        ]
        db.session.rollback()


def test_an_empty_list_is_one_empty_page(app):
    with app.app_context():
        listed = paginate(select(Account).order_by(Account.id), 3, 10)
        assert (listed.items, listed.page, listed.pages, listed.total) == ([], 1, 1, 0)
        with pytest.raises(ValueError):
            paginate(select(Account), 1, 0)
