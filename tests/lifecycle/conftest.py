"""Refunds, closures and terminations against localstripe, the jobs run as the worker runs them."""

from __future__ import annotations

import functools
import logging

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, AccountRequest
from app.services.ledger import check_invariants
from tests.stripe_emulator import run_worker


class Desk:
    """The admin's and the worker's side of a customer's requests (the customer is `shop`)."""

    def __init__(self, app, shop, admin_id: int, caplog):
        self.app = app
        self.shop = shop
        self.admin_id = admin_id
        self.caplog = caplog

    @functools.cached_property
    def account_id(self) -> int:
        """The customer's account (read once: a lookup inside another open transaction would wait
        on SQLite's write lock)."""
        with self.app.app_context():
            account_id = db.session.scalar(
                select(Account.id).where(Account.email == self.shop.email)
            )
            db.session.remove()
            return account_id

    def call(self, function, *args, **kwargs):
        """Run a service function in a transaction of its own and commit it; returns its result
        with the rows it returns detached."""
        with self.app.app_context():
            result = function(*args, **kwargs)
            db.session.commit()
            if isinstance(result, db.Model):
                db.session.refresh(result)
                db.session.expunge(result)
            db.session.remove()
            return result

    def account(self) -> Account:
        with self.app.app_context():
            account = db.session.get(Account, self.account_id)
            db.session.expunge(account)
            db.session.remove()
            return account

    def request(self, request_id: int) -> AccountRequest:
        with self.app.app_context():
            request = db.session.get(AccountRequest, request_id)
            request.parts  # noqa: B018 (loaded before the session ends)
            db.session.expunge_all()
            db.session.remove()
            return request

    def work(self) -> str:
        """Run the lifecycle and mail jobs until none is left; returns the mail they logged."""
        with self.caplog.at_level(logging.INFO, logger="onekey.mail"):
            run_worker(self.app, "lifecycle", "default")
        return "\n".join(r.getMessage() for r in self.caplog.records if r.name == "onekey.mail")

    def books_balance(self) -> None:
        """`flask ledger check`, the operator's own command, finds every account in balance."""
        result = self.app.test_cli_runner().invoke(args=["ledger", "check"])
        assert result.exit_code == 0, result.output
        with self.app.app_context():
            assert check_invariants() == []
            db.session.remove()


@pytest.fixture
def desk(app, shop, make_account, caplog):
    return Desk(app, shop, make_account("admin@example.com", admin=True), caplog)
