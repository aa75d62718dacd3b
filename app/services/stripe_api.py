"""The one place OneKey talks to the Stripe API (or a local emulator at STRIPE_API_BASE)."""

from __future__ import annotations

from typing import Any

import stripe
from flask import current_app

# Stripe retries on its own when we send an idempotency key; two tries cover a network blip.
STRIPE_NETWORK_RETRIES = 2


class PaymentsNotConfigured(RuntimeError):
    """STRIPE_SECRET_KEY (or the publishable key the page needs) is not set."""


def stripe_configured() -> bool:
    config = current_app.config
    return bool(config["STRIPE_SECRET_KEY"] and config["STRIPE_PUBLISHABLE_KEY"])


def stripe_client() -> stripe.StripeClient:
    """A client on the configured account and API base. Raises PaymentsNotConfigured."""
    config = current_app.config
    if not config["STRIPE_SECRET_KEY"]:
        raise PaymentsNotConfigured("STRIPE_SECRET_KEY is not set")
    return stripe.StripeClient(
        config["STRIPE_SECRET_KEY"],
        base_addresses={"api": config["STRIPE_API_BASE"]},
        max_network_retries=STRIPE_NETWORK_RETRIES,
    )


def as_dict(obj: Any) -> dict:
    """A Stripe object as plain JSON data, the same shape a webhook event carries."""
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
