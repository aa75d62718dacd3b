"""Stripe webhooks: verify the signature on the raw body, store once, enqueue after the commit."""

from __future__ import annotations

import json

import stripe
from flask import current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.extensions import db
from app.services.payments import store_event
from app.tasks.stripe_events import enqueue_stripe_event
from app.webhooks import bp

# Stripe's events nest about ten levels. A deeper one, or one holding a lone surrogate (a `\ud800`
# escape, not Unicode), is refused before it is stored: its JSON column could not take it.
MAX_EVENT_DEPTH = 64


def storable(value: object) -> bool:
    """Whether `value` nests at most MAX_EVENT_DEPTH levels and all its text is Unicode."""
    level = [value]
    for _ in range(MAX_EVENT_DEPTH):
        below = []
        for item in level:
            if isinstance(item, str):
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return False
            elif isinstance(item, dict):
                below.extend(item)
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
        if not below:
            return True
        level = below
    return False


def is_stripe_event(event: object) -> bool:
    return (
        isinstance(event, dict)
        and {"id", "type", "data"} <= set(event)
        and isinstance(event["id"], str)
        and 0 < len(event["id"]) <= 255
        and isinstance(event["type"], str)
        and 0 < len(event["type"]) <= 64
        and storable(event)
    )


@bp.post("/webhooks/stripe")
def stripe_webhook():
    try:
        payload = request.get_data(cache=False)  # at most MAX_FORM_BYTES
    except RequestEntityTooLarge:
        return jsonify(error="payload too large"), 413
    secret = current_app.config["STRIPE_WEBHOOK_SECRET"]
    if not secret:
        return jsonify(error="webhooks are not configured"), 503
    try:
        stripe.WebhookSignature.verify_header(
            payload,
            request.headers.get("Stripe-Signature"),
            secret,
            tolerance=stripe.Webhook.DEFAULT_TOLERANCE,
        )
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, ValueError, RecursionError):
        return jsonify(error="invalid signature or payload"), 400
    if not is_stripe_event(event):
        return jsonify(error="not a Stripe event"), 400
    created = store_event(event)
    db.session.commit()
    if created:
        enqueue_stripe_event(event["id"])
    return jsonify(received=True, duplicate=not created)
