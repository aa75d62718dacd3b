"""A signed-in customer buying credits against localstripe, with the app served in a thread so
localstripe can deliver its webhooks to it (fixtures `app_server` and `shop`, in tests/conftest.py)."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, Purchase, StripeEvent
from tests.helpers import Browser, serve_in_thread
from tests.stripe_emulator import CARD_OK, StripeJs, run_worker

CLIENT_SECRET = re.compile(r'data-client-secret="([^"]+)"')
CONFIRM_ACTION = re.compile(r'action="/credits/(\d+)/confirm"')
INTENT_SECRET = re.compile(r'data-intent-client-secret="([^"]+)"')


@pytest.fixture(scope="session")
def app_server(app):
    with serve_in_thread(app) as url:
        yield url


class Shop:
    """A customer at the credits pages: `start(amount)`, then pay with a card number."""

    def __init__(self, app, browser: Browser, emulator):
        self.app = app
        self.browser = browser
        self.emulator = emulator
        self.js = StripeJs(emulator)

    def start(self, amount: str = "5") -> tuple[int, str]:
        """Post the amount; returns (purchase id, the SetupIntent client secret of its page)."""
        response = self.browser.post_form("/credits", {"amount": amount})
        page = response.get_data(as_text=True)
        assert response.status_code == 200, page
        purchase_id = int(CONFIRM_ACTION.search(page).group(1))
        with self.app.app_context():
            # Posting the amount recorded the purchase and its SetupIntent.
            assert db.session.get(Purchase, purchase_id).stripe_setup_intent_id
            db.session.remove()
        return purchase_id, self.client_secret(page)

    @staticmethod
    def client_secret(html: str) -> str:
        match = CLIENT_SECRET.search(html)
        assert match, "the page has no card form"
        return match.group(1)

    @staticmethod
    def intent_secret(html: str) -> str:
        match = INTENT_SECRET.search(html)
        assert match, "the page does not ask for 3-D Secure"
        return match.group(1)

    def confirm(self, purchase_id: int, payment_method: str):
        return self.browser.post_form(
            "/dashboard",
            {"payment_method": payment_method},
            action=f"/credits/{purchase_id}/confirm",
        )

    def pay(self, purchase_id: int, client_secret: str, card: str):
        """Save the card with Stripe.js, then post it to OneKey, as the page does."""
        return self.confirm(purchase_id, self.js.confirm_card_setup(client_secret, card))

    def buy(self, amount: str = "5") -> int:
        """Buy credits with a good card and let the worker credit them; returns the purchase id."""
        purchase_id, secret = self.start(amount)
        response = self.pay(purchase_id, secret, CARD_OK)
        assert response.status_code == 200, response.get_data(as_text=True)
        with self.app.app_context():
            paid = db.session.get(Purchase, purchase_id).stripe_payment_intent_id
            db.session.remove()
        deadline = time.monotonic() + 15
        while self.purchase(purchase_id).status != "succeeded":
            assert time.monotonic() < deadline, f"purchase {purchase_id} ({paid}) was not credited"
            if not self._event_stored(paid):
                time.sleep(0.1)
                continue
            run_worker(self.app)
        return purchase_id

    def _event_stored(self, intent_id: str) -> bool:
        with self.app.app_context():
            stored = db.session.scalar(
                select(func.count())
                .select_from(StripeEvent)
                .where(StripeEvent.type == "payment_intent.succeeded")
                .where(StripeEvent.payload["data"]["object"]["id"].as_string() == intent_id)
            )
            db.session.remove()
        return bool(stored)

    def balance(self) -> int:
        with self.app.app_context():
            account = db.session.scalar(select(Account).where(Account.email == self.email))
            db.session.remove()
            return account.balance_nanocredits

    def purchase(self, purchase_id: int) -> Purchase:
        with self.app.app_context():
            row = db.session.get(Purchase, purchase_id)
            db.session.expunge(row)
            db.session.remove()
            return row


@pytest.fixture
def shop(app, stripe, app_server, make_account, client):
    """A signed-in customer; localstripe delivers webhooks to the app."""
    stripe.register_webhook(f"{app_server}/webhooks/stripe")
    make_account("buyer@example.com")
    browser = Browser(client)
    browser.login("buyer@example.com")
    shop = Shop(app, browser, stripe)
    shop.email = "buyer@example.com"
    return shop
