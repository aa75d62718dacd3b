"""localstripe, the Stripe emulator, for the payment tests.

It runs as its own process on a free port, keeps its state in memory only (its stock build pickles it
to a fixed /tmp path, which two runs on one machine would share), and is reset before every test that
uses it. `StripeJs` does over HTTP what localstripe's Stripe.js does in a browser, for tests that
drive the pages with the Flask test client.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

SECRET_KEY = "sk_test_onekey"
PUBLISHABLE_KEY = "pk_test_onekey"
# The webhook secret changes with every reset: a delivery that localstripe made late for an
# earlier test (it runs slower under load) fails the signature check of the next one instead of
# crediting its purchase (ids restart with every test).
_webhook_secret = ["whsec_onekey_tests"]
# localstripe sends each webhook this long after the event (localstripe/webhooks.py).
WEBHOOK_DELAY_SECONDS = 1
WEBHOOK_EVENTS = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
]
# Port 9 (discard) has no listener here: a delivery there fails at once.
UNDELIVERABLE = "http://127.0.0.1:9/nowhere"
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000341"  # saved fine, declined when charged
CARD_3DS = "4000002760003184"  # asks for 3-D Secure when saved and when charged
LAUNCH = """
import sys
import localstripe.resources
localstripe.resources.Store.dump_to_disk = lambda self: None
localstripe.resources.Store.try_load_from_disk = lambda self: None
from localstripe.server import start
sys.argv = ["localstripe", "--port", sys.argv[1], "--from-scratch"]
start()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StripeEmulator:
    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.js_url = f"{self.url}/js.stripe.com/v3/"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"localstripe exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.js_url, timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("localstripe did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.log.close()

    def reset(self) -> None:
        requests.delete(f"{self.url}/_config/data", timeout=5).raise_for_status()
        _webhook_secret[0] = f"whsec_{secrets.token_hex(16)}"
        # Nowhere to deliver until a test says where.
        self.register_webhook(UNDELIVERABLE)

    def register_webhook(self, url: str) -> None:
        response = requests.post(
            f"{self.url}/_config/webhooks/onekey",
            json={"url": url, "secret": webhook_secret(), "events": WEBHOOK_EVENTS},
            timeout=5,
        )
        response.raise_for_status()

    def api(self, method: str, path: str, **params) -> dict:
        """Call the emulator's Stripe API as the operator (secret key)."""
        response = requests.request(
            method,
            f"{self.url}/v1/{path}",
            headers={"Authorization": f"Bearer {SECRET_KEY}"},
            **({"params": params} if method == "GET" else {"data": params}),
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def events(self, type_: str | None = None) -> list[dict]:
        """The events the emulator has sent, oldest first."""
        listed = self.api("GET", "events", limit=100, **({"type": type_} if type_ else {}))
        return sorted(listed["data"], key=lambda event: event["created"])


class StripeJs:
    """What Stripe.js does in the customer's browser, done over HTTP with the publishable key."""

    def __init__(self, emulator: StripeEmulator):
        self.url = emulator.url

    def _post(self, path: str, body: dict) -> requests.Response:
        return requests.post(
            f"{self.url}/v1/{path}", json={"key": PUBLISHABLE_KEY, **body}, timeout=10
        )

    def confirm_card_setup(self, client_secret: str, number: str = CARD_OK) -> str:
        """Save a card on the SetupIntent (passing 3-D Secure when asked); returns the
        PaymentMethod id."""
        setup_intent = client_secret.split("_secret_")[0]
        card = {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"}
        body = {"use_stripe_sdk": True, "client_secret": client_secret}
        response = self._post(
            f"setup_intents/{setup_intent}/confirm",
            {**body, "payment_method_data": {"type": "card", "card": card}},
        )
        response.raise_for_status()
        if response.json()["status"] == "requires_action":
            response = self._post(f"setup_intents/{setup_intent}/confirm", body)
            response.raise_for_status()
        assert response.json()["status"] == "succeeded", response.json()
        return response.json()["payment_method"]

    def confirm_card_payment(self, client_secret: str, *, success: bool = True) -> dict:
        """Complete (or fail) the 3-D Secure challenge of a PaymentIntent."""
        intent = client_secret.split("_secret_")[0]
        response = self._post(
            f"payment_intents/{intent}/_authenticate?success={str(success).lower()}",
            {"client_secret": client_secret},
        )
        response.raise_for_status()
        return response.json()


def webhook_secret() -> str:
    """The secret localstripe signs its webhooks with now (and the app checks them with)."""
    return _webhook_secret[0]


def sign(payload: bytes, *, secret: str | None = None, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for a payload, as Stripe computes it (with the current secret
    unless told otherwise)."""
    secret = secret or webhook_secret()
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def event_of(event_type: str, obj: dict, event_id: str | None = None) -> dict:
    """An event around a real object, as Stripe would send it."""
    return {
        "id": event_id or f"evt_test_{event_type.replace('.', '_')}_{obj['id']}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def post_signed(client, event: dict, **sign_options):
    payload = json.dumps(event).encode()
    return client.post(
        "/webhooks/stripe",
        data=payload,
        headers={
            "Stripe-Signature": sign(payload, **sign_options),
            "Content-Type": "application/json",
        },
    )


def run_worker(app, *queue_names: str) -> None:
    """Work the queues (billing unless named) until they are empty, in this process."""
    from rq import SimpleWorker

    from app.extensions import db, get_queue

    with app.app_context():
        queues = [get_queue(name) for name in queue_names or ("billing",)]
        SimpleWorker(queues, connection=queues[0].connection).work(burst=True)
        db.session.remove()


def wait_for_events(app, count: int, timeout: float = 15) -> None:
    """Until the app has stored `count` webhook events (localstripe sends each a second late) and
    queued a job for each one still unprocessed (the view enqueues just after its commit)."""
    from sqlalchemy import func, select

    from app.extensions import db, get_queue
    from app.models import StripeEvent

    deadline = time.monotonic() + timeout
    while True:
        with app.app_context():
            stored = db.session.scalar(select(func.count()).select_from(StripeEvent))
            unprocessed = db.session.scalar(
                select(func.count())
                .select_from(StripeEvent)
                .where(StripeEvent.processed_at.is_(None))
            )
            queued = get_queue("billing").count
            db.session.remove()
        if stored >= count and queued >= unprocessed:
            return
        assert time.monotonic() < deadline, f"{stored} of {count} webhook events arrived"
        time.sleep(0.1)


@pytest.fixture(scope="session")
def stripe_emulator(tmp_path_factory):
    emulator = StripeEmulator(tmp_path_factory.mktemp("localstripe") / "localstripe.log")
    emulator.start()
    yield emulator
    emulator.stop()


STRIPE_SETTINGS = (
    "STRIPE_SECRET_KEY",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "STRIPE_JS_URL",
)


@pytest.fixture
def stripe(app, stripe_emulator):
    """The app pointed at a freshly reset localstripe; yields the emulator."""
    stripe_emulator.reset()
    saved = {name: app.config[name] for name in STRIPE_SETTINGS}
    app.config.update(
        STRIPE_SECRET_KEY=SECRET_KEY,
        STRIPE_PUBLISHABLE_KEY=PUBLISHABLE_KEY,
        STRIPE_WEBHOOK_SECRET=webhook_secret(),
        STRIPE_API_BASE=stripe_emulator.url,
        STRIPE_JS_URL=stripe_emulator.js_url,
    )
    yield stripe_emulator
    # Deliveries still on their way must not reach the next test: localstripe reads where to
    # deliver (and the secret to sign with) a second after the event, so they go nowhere once
    # that second has passed here. Every test that made events waits, also one that delivered
    # nowhere: read after the next test registered the app, its events would reach that test.
    stripe_emulator.register_webhook(UNDELIVERABLE)
    made = stripe_emulator.events()
    if made:
        # `created` is in whole seconds; the margin covers a late timer on a loaded machine.
        last = max(event["created"] for event in made) + 1
        time.sleep(max(0.0, last + WEBHOOK_DELAY_SECONDS + 1.0 - time.time()))
    app.config.update(saved)
