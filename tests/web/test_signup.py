"""Sign-up: the Terms' eligibility rules (18+, acceptance) and clean refusals of bad input."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.auth.views import SIGNUP_REFUSED
from app.extensions import db, get_queue
from app.models import Account, AuditLogEntry
from app.services.terms import current_terms_version
from tests.helpers import without_csrf_tokens


def account_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Account))


def test_signup_records_terms_version_and_age_attestation(app, browser):
    response = browser.signup("New.Person@Example.com")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/dashboard")
    with app.app_context():
        account = db.session.scalar(select(Account))
        assert account.email == "new.person@example.com"
        assert account.terms_version == current_terms_version() == "2026-02-19"
        assert account.terms_accepted_at is not None
        assert account.age_attested_at is not None
        assert account.password_hash != "a long enough passphrase"
    assert browser.get("/dashboard").status_code == 200


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"age_confirmed": None}, "at least 18 years old"),
        ({"terms_accepted": None}, "accept the Terms of Service"),
        ({"email": "not-an-email"}, "valid email address"),
        ({"email": "a@b"}, "valid email address"),
        ({"email": ""}, "This field is required"),
        ({"email": "x" * 250 + "@example.com"}, "Field cannot be longer than 254 characters"),
        ({"password": ""}, "This field is required"),
        ({"password": "short"}, "at least 10 characters"),
        ({"password": "password123"}, "too easy to guess"),
        ({"password": "aaaaaaaaaaaa"}, "too easy to guess"),
        ({"password": "x" * 129}, "Field cannot be longer than 128 characters"),
    ],
)
def test_signup_refuses_bad_input_and_writes_nothing(app, browser, overrides, message):
    response = browser.signup(**{"email": "person@example.com", **overrides})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert account_count(app) == 0


def test_password_containing_the_email_is_refused(app, browser):
    response = browser.signup("janedoe@example.com", password="janedoe-is-me-2026")
    assert response.status_code == 400
    assert "must not contain your email" in response.get_data(as_text=True)
    assert account_count(app) == 0


def test_duplicate_signup_does_not_reveal_the_address_and_tells_its_owner(
    app, browser, make_account, run_mail_jobs
):
    account_id = make_account("taken@example.com")
    with app.app_context():
        password_hash = db.session.get(Account, account_id).password_hash
    response = browser.signup("Taken@Example.com", password="another long passphrase")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert SIGNUP_REFUSED in page
    assert "already exists" not in page and "Sign in instead" not in page
    with app.app_context():
        assert account_count(app) == 1
        assert db.session.get(Account, account_id).password_hash == password_hash
        assert db.session.scalar(select(func.count()).select_from(AuditLogEntry)) == 0
        assert get_queue("default").count == 1
    mail = run_mail_jobs()
    assert mail.count("To: taken@example.com") == 1
    assert "Someone tried to create a OneKey account with this email address" in mail
    assert "/password/forgot" in mail


def test_duplicate_signup_with_bad_input_gets_the_answer_a_new_address_gets(
    app, browser, make_account
):
    make_account("taken@example.com")
    taken = browser.signup("taken@example.com", password="short")
    free = browser.signup("free@example.com", password="short")
    assert taken.status_code == free.status_code == 400
    assert SIGNUP_REFUSED not in taken.get_data(as_text=True)
    assert without_csrf_tokens(taken.get_data(as_text=True)).replace(
        "taken@example.com", "free@example.com"
    ) == without_csrf_tokens(free.get_data(as_text=True))
    with app.app_context():
        assert get_queue("default").count == 0


def test_sign_up_notices_to_one_address_are_limited(app, browser, make_account):
    make_account("taken@example.com")
    limit = app.config["SIGNUP_NOTICE_MAX_PER_EMAIL"]
    for _ in range(limit + 2):
        response = browser.signup("taken@example.com", password="another long passphrase")
        assert response.status_code == 400
        assert SIGNUP_REFUSED in response.get_data(as_text=True)
    with app.app_context():
        assert get_queue("default").count == limit


def test_signup_without_csrf_token_is_refused(app, client):
    response = client.post(
        "/signup",
        data={
            "email": "person@example.com",
            "password": "a long enough passphrase",
            "age_confirmed": "y",
            "terms_accepted": "y",
        },
    )
    assert response.status_code == 400
    assert account_count(app) == 0


def test_signup_with_forged_csrf_token_is_refused(app, client):
    client.get("/signup")
    response = client.post(
        "/signup",
        data={
            "csrf_token": "forged." + "A" * 40,
            "email": "person@example.com",
            "password": "a long enough passphrase",
            "age_confirmed": "y",
            "terms_accepted": "y",
        },
    )
    assert response.status_code == 400
    assert account_count(app) == 0


def test_csrf_token_from_another_session_is_refused(app, client):
    from tests.helpers import csrf_token_from

    other = app.test_client()
    token = csrf_token_from(other.get("/signup").get_data(as_text=True))
    client.get("/signup")
    response = client.post(
        "/signup",
        data={
            "csrf_token": token,
            "email": "person@example.com",
            "password": "a long enough passphrase",
            "age_confirmed": "y",
            "terms_accepted": "y",
        },
    )
    assert response.status_code == 400
    assert account_count(app) == 0


# --- Issue 10 item 15: every problem at once, the password kept, the first problem focused ----


def autofocused(page: str) -> list[str]:
    return [
        re.search(r'\sid="([^"]+)"', tag).group(1)
        for tag in re.findall(r"<input[^>]*>", page)
        if re.search(r"\sautofocus(?=[\s>])", tag)
    ]


def test_signup_shows_every_problem_at_once_the_checkboxes_too(app, browser):
    response = browser.signup("", password="short", age_confirmed=None, terms_accepted=None)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    for message in (
        "This field is required",  # email
        "Use at least 10 characters.",
        "You must be at least 18 years old to use OneKey.",
        "You must accept the Terms of Service.",
    ):
        assert message in page, message
    assert page.count('aria-invalid="true"') == 4
    assert account_count(app) == 0


def test_signup_shows_the_services_problems_beside_the_forms_own(app, browser):
    response = browser.signup("not-an-email", password="", terms_accepted=None)
    page = response.get_data(as_text=True)
    assert "Enter a valid email address" in page
    assert "This field is required" in page  # the password
    assert "You must accept the Terms of Service." in page
    assert "You must be at least 18" not in page  # that box was ticked
    assert page.count('aria-invalid="true"') == 3
    assert account_count(app) == 0


def test_the_password_is_kept_after_a_failed_signup_and_never_cached(app, browser):
    response = browser.signup(
        "person@example.com", password="my own long passphrase", terms_accepted=None
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    password_input = re.search(r'<input[^>]*id="password"[^>]*>', page).group(0)
    assert 'value="my own long passphrase"' in password_input
    assert 'type="password"' in password_input
    assert 'value="person@example.com"' in page
    assert "no-store" in response.headers["Cache-Control"]
    # A fresh page shows no password.
    fresh = browser.get("/signup").get_data(as_text=True)
    assert 'value="my own long passphrase"' not in fresh


@pytest.mark.parametrize(
    ("overrides", "focused"),
    [
        ({"terms_accepted": None}, "terms_accepted"),
        ({"age_confirmed": None, "terms_accepted": None}, "age_confirmed"),
        ({"password": "short", "age_confirmed": None}, "password"),
        ({"email": "a@b", "password": "short"}, "email"),
    ],
)
def test_the_first_field_with_a_problem_has_the_focus(app, browser, overrides, focused):
    page = browser.signup(**{"email": "person@example.com", **overrides}).get_data(as_text=True)
    assert autofocused(page) == [focused]


def test_a_refused_address_focuses_the_email_field_and_a_fresh_page_nothing(
    app, browser, make_account
):
    assert autofocused(browser.get("/signup").get_data(as_text=True)) == []
    make_account("taken@example.com")
    page = browser.signup("taken@example.com").get_data(as_text=True)
    assert SIGNUP_REFUSED in page
    assert autofocused(page) == ["email"]
