"""The authorization matrix: every route of `app.url_map` × every kind of caller, with the status
each must get (issue 9, item 12).

The routes come from the URL map at test time and each endpoint must have an access rule in
ACCESS_RULES: a route added without one fails `test_every_route_has_an_access_rule`, and a route
whose behaviour differs from its rule fails the matrix. Statuses are asserted by class (the set a
rule admits), never by page text, and no caller ever gets a 5xx.

The callers: nobody signed in; a customer on their own objects; the same customer with the URL
naming another customer's objects; a suspended customer on their own objects; an admin (past the
second factor); a suspended admin; an admin without a second factor and an admin whose session was
idle too long (issue 11 item 8: every admin route sends them to enrolment or to the code, never
to the page). On the proxy each presents their own API key, except the customer asking for
another's objects, who presents only the session: a browser session is no API credential.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from werkzeug.routing import Rule

from app.auth.two_factor import ADMIN_SEEN_AT
from app.extensions import db
from app.models import Account, CatalogModel, ModelPrice, StripeEvent, UsageRecord
from app.models.types import utcnow
from app.services import accounts, refunds
from app.services import keys as key_service
from app.services.catalog import sync_catalog
from tests.helpers import Browser, csrf_token_from
from tests.stripe_emulator import sign
from tests.web.failed_jobs import failed_reconciliation, unreachable_stripe
from tests.web.purchases import credited_purchase

WEBHOOK_SECRET = "whsec_authorization_matrix"

# --- Access rules ----------------------------------------------------------------------------

PUBLIC = "public"
ANONYMOUS_ONLY = "anonymous only"
SIGNED_IN = "signed-in customer"
ACTIVE = "active customer"
ADMIN_ONLY = "admin only (404 to others)"
# A scraper's endpoint: an admin session only past the second factor and not idle (nothing to
# redirect a scraper to), else 404.
VERIFIED_ADMIN_ONLY = "an admin past the second factor only (404 to others)"
SECOND_FACTOR = "an active admin's second factor (404 to others)"
API_KEY = "api key"
UNKNOWN_API_PATH = "unknown API path"
SIGNATURE = "signature"

# An endpoint's rule: its own entry, else the longest prefix ending in ".". Only the admin area
# (guarded once, for the whole blueprint, with the strictest rule) and the proxy (a key on every
# route but the public model list) go by prefix: elsewhere a new endpoint must be given its rule,
# so none inherits a looser one than it needs.
ACCESS_RULES = {
    "public.home": PUBLIC,
    "public.pricing": PUBLIC,
    "public.api_docs": PUBLIC,
    "public.model_page": PUBLIC,
    "public.terms": PUBLIC,
    "public.healthz": PUBLIC,
    "public.readyz": PUBLIC,
    "auth.signup": ANONYMOUS_ONLY,
    "auth.login": ANONYMOUS_ONLY,
    "auth.logout": PUBLIC,
    "auth.forgot_password": PUBLIC,
    "auth.reset_password": PUBLIC,  # the emailed token is the credential
    "auth.change_password": SIGNED_IN,
    "auth.accept_terms": SIGNED_IN,  # asks a signed-in account to accept changed Terms
    "auth.two_factor_setup": SECOND_FACTOR,
    "auth.two_factor_verify": SECOND_FACTOR,
    "portal.dashboard": SIGNED_IN,
    "portal.keys": SIGNED_IN,
    "portal.create_key": ACTIVE,
    "portal.revoke_key": SIGNED_IN,  # a suspended customer may still revoke a leaked key
    "portal.refusals": SIGNED_IN,  # a suspended customer may still see why requests fail
    "portal.key_row": SIGNED_IN,
    "portal.edit_key": ACTIVE,
    "portal.update_key": ACTIVE,
    "portal.pause_key": ACTIVE,
    "portal.resume_key": ACTIVE,
    "portal.usage": SIGNED_IN,
    "portal.usage_chart": SIGNED_IN,
    "portal.usage_csv": SIGNED_IN,
    "portal.usage_detail": SIGNED_IN,
    "portal.credits": SIGNED_IN,
    "portal.what_it_buys": SIGNED_IN,
    "portal.buy_credits": ACTIVE,
    "portal.purchase": SIGNED_IN,
    "portal.confirm_purchase": ACTIVE,
    "portal.check_purchase": SIGNED_IN,  # asks Stripe how a payment already made stands
    "portal.purchase_status": SIGNED_IN,
    "portal.credits_history": SIGNED_IN,
    "portal.new_refund": SIGNED_IN,
    "portal.create_refund": SIGNED_IN,  # Terms §4 and §10: asking for a refund is "contacting us"
    "portal.refund_request": SIGNED_IN,
    "portal.refund_request_status": SIGNED_IN,
    "portal.activity": SIGNED_IN,
    "portal.receipt": SIGNED_IN,
    "portal.set_low_balance_alert": SIGNED_IN,  # only an email to the customer
    "portal.close_account": SIGNED_IN,
    "portal.request_closure": SIGNED_IN,
    "admin.": ADMIN_ONLY,
    "metrics.metrics": VERIFIED_ADMIN_ONLY,  # or a bearer METRICS_TOKEN, which no caller here presents
    "proxy.list_models": PUBLIC,
    "proxy.unknown_route": UNKNOWN_API_PATH,  # any other path under the prefixes, any method
    "proxy.": API_KEY,
    "webhooks.stripe_webhook": SIGNATURE,
}
IGNORED_ENDPOINTS = {"static"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
# A rule without methods (the proxy's unknown paths) answers every method: these stand for them.
ANY_METHOD = {"GET", "POST", "DELETE"}


def access_rule(endpoint: str) -> str | None:
    if endpoint in ACCESS_RULES:
        return ACCESS_RULES[endpoint]
    prefixes = [p for p in ACCESS_RULES if p.endswith(".") and endpoint.startswith(p)]
    return ACCESS_RULES[max(prefixes, key=len)] if prefixes else None


def matrix_routes(app) -> list[tuple[Rule, str]]:
    """Every (rule, method) of the app but static files, HEAD and OPTIONS; sign-out last, since
    it ends the caller's session."""
    routes = [
        (rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in IGNORED_ENDPOINTS
        for method in sorted((rule.methods or ANY_METHOD) - IGNORED_METHODS)
    ]
    return sorted(routes, key=lambda r: (r[0].endpoint == "auth.logout", r[0].rule, r[1]))


# --- Callers and the world they act in -------------------------------------------------------

ANONYMOUS = "anonymous"
CUSTOMER = "customer"
OTHERS_OBJECTS = "another customer's objects"
SUSPENDED = "suspended customer"
ADMIN = "admin"
SUSPENDED_ADMIN = "suspended admin"
UNENROLLED_ADMIN = "admin without second factor"
IDLE_ADMIN = "admin idle too long"
ACTORS = (
    ANONYMOUS,
    CUSTOMER,
    OTHERS_OBJECTS,
    SUSPENDED,
    ADMIN,
    SUSPENDED_ADMIN,
    UNENROLLED_ADMIN,
    IDLE_ADMIN,
)
ACTIVE_ADMINS = (ADMIN, UNENROLLED_ADMIN, IDLE_ADMIN)

ALICE = "alice@example.com"
BOB = "bob@example.com"
SAM = "sam@example.com"  # suspended
BOSS = "boss@example.com"  # an admin
FORMER_ADMIN = "former-admin@example.com"  # a suspended admin
NEW_ADMIN = "new-admin@example.com"  # no second factor yet
AWAY_ADMIN = "away-admin@example.com"  # enrolled; the session idles

SIGNED_IN_AS = {
    ANONYMOUS: None,
    CUSTOMER: ALICE,
    OTHERS_OBJECTS: ALICE,
    SUSPENDED: SAM,
    ADMIN: BOSS,
    SUSPENDED_ADMIN: FORMER_ADMIN,
    UNENROLLED_ADMIN: NEW_ADMIN,
    IDLE_ADMIN: AWAY_ADMIN,
}
# Whose objects the URL names. Admins are sent to a customer's: the portal must hide them, the
# admin area show them.
OBJECTS_OF = {
    ANONYMOUS: ALICE,
    CUSTOMER: ALICE,
    OTHERS_OBJECTS: BOB,
    SUSPENDED: SAM,
    ADMIN: ALICE,
    SUSPENDED_ADMIN: ALICE,
    UNENROLLED_ADMIN: ALICE,
    IDLE_ADMIN: ALICE,
}
# Whose API key the caller presents on the proxy.
API_KEY_OF = {
    ANONYMOUS: None,
    CUSTOMER: ALICE,
    OTHERS_OBJECTS: None,
    SUSPENDED: SAM,
    ADMIN: BOSS,
    SUSPENDED_ADMIN: FORMER_ADMIN,
    UNENROLLED_ADMIN: NEW_ADMIN,
    IDLE_ADMIN: AWAY_ADMIN,
}


@dataclass(frozen=True)
class Owner:
    """An account and the objects it owns."""

    account_id: int
    purchase_id: int | None = None
    request_id: int | None = None
    spare_key_id: int | None = None  # the one the matrix may revoke
    api_key: str | None = None  # the one it calls the proxy with
    reset_token: str | None = None
    usage_record_id: int | None = None


@dataclass(frozen=True)
class World:
    owners: dict[str, Owner]
    model_pk: int
    price_id: int
    event_id: str
    job_id: str


def seed(app, make_account) -> World:
    """Two customers and a suspended one, each with a credited purchase, a refund request open
    on it and two keys; admins (one suspended, one without a second factor) with a key each;
    the catalogue; a webhook event that failed; and a failed job (Stripe is unreachable)."""
    ids = {email: make_account(email) for email in (ALICE, BOB, SAM)}
    ids |= {email: make_account(email, admin=True) for email in (BOSS, FORMER_ADMIN, AWAY_ADMIN)}
    ids[NEW_ADMIN] = make_account(NEW_ADMIN, admin=True, two_factor=False)
    purchases = {email: credited_purchase(app, ids[email], 2000) for email in (ALICE, BOB, SAM)}
    owners = {}
    with app.app_context():
        sync_catalog(app.config["MARGIN_BPS"])
        for email, account_id in ids.items():
            account = db.session.get(Account, account_id)
            values = {
                "account_id": account_id,
                "reset_token": accounts.password_reset_token(account),
            }
            _, values["api_key"] = key_service.create_key(account, name="for the proxy")
            record = UsageRecord(
                account_id=account_id,
                request_id="req-matrix",
                provider="openai",
                model_id="gpt-4o-mini",
                route="chat.completions",
                status="ok",
                prices_applied={},
            )
            db.session.add(record)
            db.session.flush()
            values["usage_record_id"] = record.id
            if email in purchases:
                values["purchase_id"] = purchases[email]
                values["request_id"] = refunds.request_refund(
                    account, amount_cents=500, purchase_id=purchases[email]
                ).id
                values["spare_key_id"] = key_service.create_key(account, name="spare")[0].id
            owners[email] = Owner(**values)
        for email in (SAM, FORMER_ADMIN):
            accounts.suspend(
                db.session.get(Account, ids[email]), reason="authorization matrix", actor_id=None
            )
        model = db.session.scalars(select(CatalogModel).order_by(CatalogModel.id)).first()
        price = db.session.scalars(select(ModelPrice).order_by(ModelPrice.id)).first()
        event = StripeEvent(
            id="evt_authorization_matrix",
            type="payment_intent.succeeded",
            payload={"id": "evt_authorization_matrix"},
            processed_at=utcnow(),
            error="failed for the matrix",
        )
        db.session.add(event)
        db.session.commit()
        objects = {"model_pk": model.id, "price_id": price.id, "event_id": event.id}
        db.session.remove()
    return World(owners=owners, job_id=failed_reconciliation(app), **objects)


# URL parameters, by name: a new one fails the matrix until it is given a value here.
PARAMETERS = {
    "rest": lambda world, owner: "no/such/route",
    "purchase_id": lambda world, owner: owner.purchase_id,
    "request_id": lambda world, owner: owner.request_id,
    "key_id": lambda world, owner: owner.spare_key_id,
    "account_id": lambda world, owner: owner.account_id,
    "token": lambda world, owner: owner.reset_token,
    "model_pk": lambda world, owner: world.model_pk,
    "price_id": lambda world, owner: world.price_id,
    "event_id": lambda world, owner: world.event_id,
    "job_id": lambda world, owner: world.job_id,
    "version": lambda world, owner: "v1beta",
    "model_action": lambda world, owner: "no-such-model:generateContent",
    "model_id": lambda world, owner: "gpt-4.1",  # a catalogue id with a dot
    "record_id": lambda world, owner: owner.usage_record_id,
}
# Parameters naming an object of one account: the portal answers another account's with a 404.
OWNED_PARAMETERS = {"purchase_id", "request_id", "key_id", "record_id"}
# Objects named in the query string.
QUERY_PARAMETERS = {
    "rest": lambda world, owner: "no/such/route",
    "portal.new_refund": {"purchase": "purchase_id"},
    "portal.create_refund": {"purchase": "purchase_id"},
    "portal.refusals": {"key": "key_id"},
}
# Fields that take a post past validation to the rule under test (and change nothing).
FORM_FIELDS = {"portal.confirm_purchase": {"payment_method": "pm_card_visa"}}
# A body every proxy route parses, naming a model nobody has: an accepted key gets to a 404.
PROXY_BODY = {
    "model": "no-such-model",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 16,
    "input": "hi",
    "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
}


def owned_parameters(rule: Rule) -> set[str]:
    query = set(QUERY_PARAMETERS.get(rule.endpoint, {}).values())
    return (set(rule.arguments) | query) & OWNED_PARAMETERS


def url_for_rule(app, rule: Rule, method: str, world: World, owner: Owner) -> str:
    values = {}
    for name in sorted(rule.arguments):
        assert name in PARAMETERS, f"{rule.rule}: give the parameter <{name}> a value in PARAMETERS"
        values[name] = PARAMETERS[name](world, owner)
    for name, parameter in QUERY_PARAMETERS.get(rule.endpoint, {}).items():
        values[name] = PARAMETERS[parameter](world, owner)
    return app.url_map.bind("localhost").build(rule.endpoint, values, method=method)


# --- Outcomes --------------------------------------------------------------------------------


def dialect_of(path: str) -> str:
    if path.startswith("/anthropic/"):
        return "anthropic"
    if path.startswith("/gemini/"):
        return "google"
    return "openai"


# The error of each dialect, by status: OpenAI `code`, Anthropic `type`, Google `status`.
DIALECT_ERRORS = {
    401: {
        "openai": "invalid_api_key",
        "anthropic": "authentication_error",
        "google": "UNAUTHENTICATED",
    },
    403: {
        "openai": "account_suspended",
        "anthropic": "permission_error",
        "google": "PERMISSION_DENIED",
    },
    404: {"openai": "model_not_found", "anthropic": "not_found_error", "google": "NOT_FOUND"},
}


def dialect_error(response, dialect: str) -> str | None:
    body = response.get_json(silent=True) or {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return {
        "openai": error.get("code"),
        "anthropic": error.get("type"),
        "google": error.get("status"),
    }[dialect]


@dataclass(frozen=True)
class Outcome:
    """A class of answers: the statuses it admits, and where a redirect of it must (or must not)
    lead."""

    name: str
    statuses: frozenset[int]
    redirect_to: str | None = None
    not_redirect_to: str | None = "/login"
    api_error: bool = False  # an error in the route's dialect
    htmx_reload: bool = False  # a 401 asking the HTMX page to reload (and so sign in)
    htmx_redirect: str | None = None  # a 401 sending the HTMX page to this path (HX-Redirect)
    json: bool = False  # the answer is JSON (an API's, not an HTML page)

    def admits(self, response, path: str) -> bool:
        if response.status_code not in self.statuses:
            return False
        if response.status_code in (301, 302, 303, 307, 308):
            target = urlsplit(response.headers.get("Location", "")).path
            if self.redirect_to is not None and target != self.redirect_to:
                return False
            if self.not_redirect_to is not None and target == self.not_redirect_to:
                return False
        if self.json and not response.is_json:
            return False
        if self.htmx_reload and response.status_code == 401:
            return response.headers.get("HX-Refresh") == "true"
        if self.htmx_redirect is not None:
            target = urlsplit(response.headers.get("HX-Redirect", "")).path
            return target == self.htmx_redirect and not response.get_data()
        if self.api_error and response.status_code != 200:
            dialect = dialect_of(path)
            return dialect_error(response, dialect) == DIALECT_ERRORS[response.status_code][dialect]
        return True


SERVED_PAGE = Outcome("served", frozenset({200, 302, 303}))
# A form posted with nothing but its token reaches the view, which may refuse the form.
SERVED_FORM = Outcome("served (form may be refused)", frozenset({200, 201, 302, 303, 400, 409}))
TO_SIGN_IN = Outcome("redirect to sign-in", frozenset({302}), "/login", None)
TO_SIGN_IN_HTMX = Outcome(
    "redirect to sign-in, or 401 reloading the page",
    frozenset({302, 401}),
    "/login",
    None,
    htmx_reload=True,
)
TO_DASHBOARD = Outcome("redirect to the dashboard", frozenset({302}), "/dashboard")
HIDDEN = Outcome("404", frozenset({404}))
REFUSED = Outcome("refused (403)", frozenset({403}))
NO_API_KEY = Outcome("401 in the route's dialect", frozenset({401}), api_error=True)
ACCOUNT_SUSPENDED = Outcome("403 in the route's dialect", frozenset({403}), api_error=True)
KEY_ACCEPTED = Outcome(
    "past the key (200, or the unknown model's 404)", frozenset({200, 404}), api_error=True
)
UNSIGNED = Outcome("400 (no signature)", frozenset({400}))
ENROLMENT = "/auth/2fa/setup"
VERIFICATION = "/auth/2fa/verify"
TO_ENROLMENT = Outcome("redirect to enrolment", frozenset({302}), ENROLMENT)
TO_VERIFICATION = Outcome("redirect to the code", frozenset({302}), VERIFICATION)
TO_ENROLMENT_HTMX = Outcome(
    "401 sending the page to enrolment", frozenset({401}), htmx_redirect=ENROLMENT
)
TO_VERIFICATION_HTMX = Outcome(
    "401 sending the page to the code", frozenset({401}), htmx_redirect=VERIFICATION
)
# Where an admin who owes the second factor is sent, by request kind.
SECOND_FACTOR_OWED = {
    (UNENROLLED_ADMIN, False): TO_ENROLMENT,
    (UNENROLLED_ADMIN, True): TO_ENROLMENT_HTMX,
    (IDLE_ADMIN, False): TO_VERIFICATION,
    (IDLE_ADMIN, True): TO_VERIFICATION_HTMX,
}
NO_SUCH_API_PATH = Outcome("404 or 405, JSON in the dialect", frozenset({404, 405}), json=True)


def expected(rule: Rule, method: str, actor: str, *, htmx: bool = False) -> Outcome:
    access = access_rule(rule.endpoint)
    served = SERVED_PAGE if method == "GET" else SERVED_FORM
    if access == PUBLIC:
        return served
    if access == ANONYMOUS_ONLY:
        return served if actor == ANONYMOUS else TO_DASHBOARD
    if access == ADMIN_ONLY:
        if (actor, htmx) in SECOND_FACTOR_OWED:
            return SECOND_FACTOR_OWED[actor, htmx]
        return served if actor == ADMIN else HIDDEN
    if access == VERIFIED_ADMIN_ONLY:
        return served if actor == ADMIN else HIDDEN
    if access == SECOND_FACTOR:
        if actor == ANONYMOUS:
            return TO_SIGN_IN_HTMX if htmx else TO_SIGN_IN
        return served if actor in ACTIVE_ADMINS else HIDDEN
    if access == SIGNATURE:
        return UNSIGNED
    if access == UNKNOWN_API_PATH:
        return NO_SUCH_API_PATH
    if access == API_KEY:
        if API_KEY_OF[actor] is None:
            return NO_API_KEY
        return ACCOUNT_SUSPENDED if actor in (SUSPENDED, SUSPENDED_ADMIN) else KEY_ACCEPTED
    assert access in (SIGNED_IN, ACTIVE), f"{rule.endpoint} has no access rule in ACCESS_RULES"
    if actor == ANONYMOUS:
        return TO_SIGN_IN_HTMX if htmx else TO_SIGN_IN
    if owned_parameters(rule) and OBJECTS_OF[actor] != SIGNED_IN_AS[actor]:
        return HIDDEN
    if access == ACTIVE and actor in (SUSPENDED, SUSPENDED_ADMIN):
        return REFUSED
    return served


# --- Requests --------------------------------------------------------------------------------


def signed_in_client(app, email: str | None, *, idle: bool = False):
    """A client signed in as `email` (or nobody), and the CSRF token of its session. An admin
    enters the code of their app; `idle` then leaves the session without an admin request for
    longer than ADMIN_IDLE_TIMEOUT_SECONDS."""
    browser = Browser(app.test_client())
    if email is None:
        page = "/login"
    else:
        assert browser.login(email).status_code == 302
        page = "/dashboard"
    if idle:
        with browser.client.session_transaction() as session:
            session[ADMIN_SEEN_AT] -= app.config["ADMIN_IDLE_TIMEOUT_SECONDS"] + 1
    return browser.client, csrf_token_from(browser.get(page).get_data(as_text=True))


def api_key_headers(path: str, key: str | None) -> dict:
    """The key in the header the route's own SDK uses."""
    if key is None:
        return {}
    dialect = dialect_of(path)
    if dialect == "anthropic":
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    if dialect == "google":
        return {"x-goog-api-key": key}
    return {"Authorization": f"Bearer {key}"}


def is_browser_route(rule: Rule) -> bool:
    return not rule.endpoint.startswith(("proxy.", "webhooks."))


def call(
    client,
    rule: Rule,
    method: str,
    url: str,
    *,
    token: str | None,
    api_key: str | None,
    htmx: bool = False,
):
    access = access_rule(rule.endpoint)
    if htmx:
        client = HtmxClient(client)
    if rule.endpoint.startswith("proxy."):
        body = json.dumps(PROXY_BODY) if method == "POST" else None
        headers = {**api_key_headers(url, api_key), "Content-Type": "application/json"}
        return client.open(url, method=method, data=body, headers=headers)
    if access == SIGNATURE:
        event = {"id": "evt_unsigned", "type": "payment_intent.succeeded", "data": {"object": {}}}
        return client.open(url, method=method, json=event)
    if method == "GET":
        return client.get(url)
    data = dict(FORM_FIELDS.get(rule.endpoint, {}))
    if token is not None:
        data["csrf_token"] = token
    return client.open(url, method=method, data=data)


class HtmxClient:
    """A client whose every request is an HTMX one, as from a page's hx-get or hx-post."""

    def __init__(self, client):
        self.client = client

    def open(self, url, **kwargs):
        kwargs["headers"] = {**kwargs.get("headers", {}), "HX-Request": "true"}
        return self.client.open(url, **kwargs)

    def get(self, url, **kwargs):
        return self.open(url, method="GET", **kwargs)


@pytest.fixture
def world(app, make_account, monkeypatch):
    # Payments "configured" against an address where nothing listens: the matrix's forms are
    # refused before any call to Stripe, and one that got through would fail loudly.
    unreachable_stripe(app, monkeypatch)
    monkeypatch.setitem(app.config, "STRIPE_PUBLISHABLE_KEY", "pk_test_authorization_matrix")
    monkeypatch.setitem(app.config, "STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    return seed(app, make_account)


# --- Tests -----------------------------------------------------------------------------------


def test_every_route_has_an_access_rule(app):
    missing = sorted(
        {rule.endpoint for rule, _ in matrix_routes(app) if access_rule(rule.endpoint) is None}
    )
    assert not missing, f"endpoints without an access rule in ACCESS_RULES: {missing}"
    endpoints = {rule.endpoint for rule, _ in matrix_routes(app)}
    stale = [
        name
        for name in ACCESS_RULES
        if not any(e == name or (name.endswith(".") and e.startswith(name)) for e in endpoints)
    ]
    assert not stale, f"rules for endpoints that no longer exist: {stale}"


@pytest.mark.parametrize("actor", ACTORS)
def test_authorization_matrix(app, world, actor):
    client, token = signed_in_client(app, SIGNED_IN_AS[actor], idle=actor == IDLE_ADMIN)
    owner = world.owners[OBJECTS_OF[actor]]
    api_key = world.owners[API_KEY_OF[actor]].api_key if API_KEY_OF[actor] else None
    routes = matrix_routes(app)
    # Each page and form asked for by HTMX as well (fragments are answered on their own path
    # through a view), then plainly, sign-out last.
    cases = [
        (rule, method, True)
        for rule, method in routes
        if is_browser_route(rule) and rule.endpoint != "auth.logout"
    ] + [(rule, method, False) for rule, method in routes]
    wrong = []
    for rule, method, htmx in cases:
        url = url_for_rule(app, rule, method, world, owner)
        outcome = expected(rule, method, actor, htmx=htmx)
        response = call(client, rule, method, url, token=token, api_key=api_key, htmx=htmx)
        if response.status_code >= 500 or not outcome.admits(response, url):
            location = response.headers.get("Location")
            wrong.append(
                f"{method} {url}{' (HTMX)' if htmx else ''} [{access_rule(rule.endpoint)}]: "
                f"expected {outcome.name}, got {response.status_code}"
                + (f" → {location}" if location else "")
            )
    assert not wrong, f"{actor}:\n" + "\n".join(wrong)


def test_every_form_post_needs_its_csrf_token(app, world):
    """Outside the proxy and the webhook, a post without the token is a 400 — after the admin
    guard, which answers the area's 404 first."""
    callers = {
        ANONYMOUS: app.test_client(),
        CUSTOMER: signed_in_client(app, ALICE)[0],
        ADMIN: signed_in_client(app, BOSS)[0],
    }
    wrong = []
    for rule, method in matrix_routes(app):
        access = access_rule(rule.endpoint)
        if method != "POST" or access in (API_KEY, SIGNATURE, UNKNOWN_API_PATH):
            continue
        url = url_for_rule(app, rule, method, world, world.owners[ALICE])
        for actor, client in callers.items():
            status = 404 if access == ADMIN_ONLY and actor != ADMIN else 400
            response = call(client, rule, method, url, token=None, api_key=None)
            if response.status_code != status:
                wrong.append(f"{actor}: POST {url}: expected {status}, got {response.status_code}")
    assert not wrong, "\n".join(wrong)


def test_the_webhook_answers_a_signed_event_whatever_the_session(app, world):
    """The signature is the webhook's only credential: no CSRF token, no session needed."""
    payload = json.dumps(
        {"id": "evt_signed_matrix", "type": "customer.created", "data": {"object": {}}}
    ).encode()
    headers = {"Stripe-Signature": sign(payload, secret=WEBHOOK_SECRET)}
    for client in (app.test_client(), signed_in_client(app, ALICE)[0]):
        response = client.post(
            "/webhooks/stripe", data=payload, headers=headers, content_type="application/json"
        )
        assert response.status_code == 200
