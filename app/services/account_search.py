"""Finding an account from what a customer or Stripe shows an admin: an email address (or part of
one), an API key (pasted whole, or as the page shows it, `ok-…last4`), a request id (the
`X-Request-Id` of a proxied call) or a Stripe id (customer, PaymentIntent, charge, refund, dispute).

Every lookup but the email's is an equality on an indexed column, so a search costs a few index
probes whatever the size of the usage and ledger tables; the email matches by substring, ignoring
case, as the accounts list always has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, or_, select

from app.extensions import db
from app.models import Account, ApiKey, LedgerEntry, Purchase, RefundPart, UsageRecord
from app.services.keys import KEY_PREFIX, hash_key
from app.services.search import contains

# `ok-` and 43 url-safe characters (services/keys.py).
FULL_KEY = re.compile(rf"{KEY_PREFIX}[A-Za-z0-9_-]{{43}}")
# How pages show a key: `ok-…abcd` (also typed with three dots, or without the prefix).
MASKED_KEY = re.compile(rf"(?:{KEY_PREFIX})?(?:…|\.\.\.)([A-Za-z0-9_-]{{4}})")
# A request id: the process token and random hex (app/heartbeat.py).
REQUEST_ID = re.compile(r"[0-9a-f]{4,32}-[0-9a-f]{4,64}")
# A Stripe object id: a lower-case prefix, an underscore, and the id (`cus_…`, `pi_…`, `ch_…`).
STRIPE_ID = re.compile(r"[a-z]{2,8}_[A-Za-z0-9_]{4,250}")


@dataclass
class SearchMatches:
    """What a search found besides email addresses: account id -> how it was found."""

    found_by: dict[int, list[str]] = field(default_factory=dict)

    def add(self, account_ids, how: str) -> None:
        for account_id in account_ids:
            found = self.found_by.setdefault(account_id, [])
            if how not in found:
                found.append(how)


def masked_key(text: str) -> str | None:
    """How the page shows the key `text` if it is a whole key (so it is never echoed), else None."""
    return f"{KEY_PREFIX}…{text[-4:]}" if FULL_KEY.fullmatch(text) else None


def _ids(query) -> list[int]:
    return list(db.session.scalars(query.distinct()))


def find(text: str) -> SearchMatches:
    """The accounts `text` names other than by email, with how each was found."""
    text = text.strip()
    matches = SearchMatches()
    if FULL_KEY.fullmatch(text):
        matches.add(
            _ids(select(ApiKey.account_id).where(ApiKey.key_hash == hash_key(text))),
            f"API key {masked_key(text)}",
        )
    elif masked := MASKED_KEY.fullmatch(text):
        last4 = masked.group(1)
        matches.add(
            _ids(select(ApiKey.account_id).where(ApiKey.last4 == last4)),
            f"API key {KEY_PREFIX}…{last4}",
        )
    if REQUEST_ID.fullmatch(text.lower()):
        matches.add(
            _ids(select(UsageRecord.account_id).where(UsageRecord.request_id == text.lower())),
            f"request {text.lower()}",
        )
    if STRIPE_ID.fullmatch(text):
        _find_stripe_id(text, matches)
    return matches


def _find_stripe_id(stripe_id: str, matches: SearchMatches) -> None:
    matches.add(
        _ids(select(Account.id).where(Account.stripe_customer_id == stripe_id)),
        f"Stripe customer {stripe_id}",
    )
    matches.add(
        _ids(select(Purchase.account_id).where(Purchase.stripe_payment_intent_id == stripe_id)),
        f"PaymentIntent {stripe_id}",
    )
    matches.add(
        _ids(select(Purchase.account_id).where(Purchase.stripe_charge_id == stripe_id)),
        f"charge {stripe_id}",
    )
    matches.add(
        _ids(
            select(Purchase.account_id)
            .join(RefundPart, RefundPart.purchase_id == Purchase.id)
            .where(RefundPart.stripe_refund_id == stripe_id)
        ),
        f"refund {stripe_id}",
    )
    # Refunds made in Stripe's dashboard and disputes are known only by their ledger entries,
    # found through their idempotency keys (services/payments.py).
    for prefix, what in (("refund", "refund"), ("dispute", "dispute")):
        matches.add(
            _ids(
                select(LedgerEntry.account_id).where(
                    LedgerEntry.idempotency_key == f"{prefix}:{stripe_id}"
                )
            ),
            f"{what} {stripe_id}",
        )


def condition(text: str, matches: SearchMatches) -> ColumnElement[bool]:
    """The accounts list's filter: the email contains `text`, or `matches` found the account."""
    if not matches.found_by:
        return contains(Account.email, text)
    return or_(contains(Account.email, text), Account.id.in_(list(matches.found_by)))
