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
        stripe.Webhook.construct_event(payload, request.headers.get("Stripe-Signature"), secret)
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, ValueError):
        return jsonify(error="invalid signature or payload"), 400
    if not isinstance(event, dict) or not {"id", "type", "data"} <= set(event):
        return jsonify(error="not a Stripe event"), 400
    created = store_event(event)
    db.session.commit()
    if created:
        enqueue_stripe_event(event["id"])
    return jsonify(received=True, duplicate=not created)
