"""The operator commands that move money or create credentials.

`flask users create`, `flask credits grant`, `flask keys create`, `flask ledger check`,
`flask catalog sync` and `flask holds expire`, run as the `flask` executable runs them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import timedelta

import pytest
from flask.cli import FlaskGroup
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import Account, ApiKey, LedgerEntry
from app.models.types import utcnow
from app.services import accounts as account_service
from app.services import ledger
from app.services.catalog import CATALOG_PATH

EMAIL = "customer@example.com"
KEY_LINE = re.compile(r"^ok-[A-Za-z0-9_-]{43}$")


@pytest.fixture(autouse=True)
def _restore_environment(monkeypatch):
    # FlaskGroup sets FLASK_RUN_FROM_CLI in os.environ; monkeypatch puts the old value back.
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")


def invoke(runner, *args):
    """Run `flask ARGS` the way the `flask` executable does: through a FlaskGroup, which loads the
    app and pushes its app context before the command runs."""
    group = FlaskGroup(
        create_app=lambda: runner.app,
        add_default_commands=False,
        load_dotenv=False,
        set_debug_flag=False,
    )
    return runner.invoke(cli=group, args=list(args))


def ledger_rows(app) -> list[tuple]:
    with app.app_context():
        return [
            tuple(r)
            for r in db.session.execute(
                text(
                    "SELECT account_id, kind, amount, idempotency_key, note FROM ledger_entries "
                    "ORDER BY id"
                )
            )
        ]


def balance_of(app, email: str) -> int:
    with app.app_context():
        return db.session.execute(
            text("SELECT balance FROM accounts WHERE email = :e"), {"e": email}
        ).scalar_one()


def account_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Account))


def test_commands_work_through_the_flask_test_runner(app, runner):
    """`app.test_cli_runner().invoke(args=[...])`, Flask's documented way to test commands.

    Regression: app/cli.py once built its groups with plain `click.Group`, so its commands got no app
    context unless the `flask` executable's FlaskGroup pushed one ("Working outside of application
    context"). `flask.cli.AppGroup` wraps every command in `with_appcontext`.
    """
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 0, repr(result.exception)
    assert result.output == "ledger ok\n"


# --- flask users create --------------------------------------------------------------------------


def test_users_create_with_password(app, runner):
    result = invoke(runner, "users", "create", EMAIL, "--password", "correct horse battery")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"created account {EMAIL}\n"
    assert "password" not in result.output
    with app.app_context():
        account = account_service.authenticate(EMAIL, "correct horse battery")
        assert account is not None
        assert not account.is_admin
        assert account.status == "active"
        assert account.balance_nanocredits == 0
        assert account.terms_accepted_at is not None
        assert account.age_attested_at is not None
        # The password itself is stored only as a hash.
        assert "correct horse battery" not in account.password_hash


def test_users_create_without_password_prints_a_generated_one(app, runner):
    result = invoke(runner, "users", "create", EMAIL)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"created account {EMAIL}"
    assert lines[1].startswith("password: ")
    password = lines[1].removeprefix("password: ")
    assert len(password) >= 20
    with app.app_context():
        assert account_service.authenticate(EMAIL, password) is not None


def test_users_create_admin(app, runner):
    result = invoke(
        runner, "users", "create", "ops@example.com", "--admin", "--password", "admin passphrase"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("created admin account ops@example.com")
    with app.app_context():
        assert account_service.account_by_email("ops@example.com").is_admin


@pytest.mark.parametrize("second", [EMAIL, EMAIL.upper(), f"  {EMAIL} "])
def test_users_create_duplicate_email_fails(app, runner, second):
    assert (
        invoke(runner, "users", "create", EMAIL, "--password", "first passphrase!").exit_code == 0
    )
    result = invoke(runner, "users", "create", second, "--password", "second passphrase!")
    assert result.exit_code != 0
    assert "already exists" in result.output
    assert account_count(app) == 1
    with app.app_context():
        assert account_service.authenticate(EMAIL, "first passphrase!") is not None


@pytest.mark.parametrize(
    "args",
    [
        ["not-an-email", "--password", "a fine passphrase"],
        [EMAIL, "--password", "short"],
        [EMAIL, "--password", "password123"],
    ],
)
def test_users_create_refuses_bad_input_and_writes_nothing(app, runner, args):
    result = invoke(runner, "users", "create", *args)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert account_count(app) == 0


# --- flask credits grant -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "nanos", "shown"),
    [
        ("1", 1_000_000_000, "1"),
        ("12.5", 12_500_000_000, "12.5"),
        ("0.1", 100_000_000, "0.1"),
        ("0.000000001", 1, "0.000000001"),
        ("12.345678901", 12_345_678_901, "12.345678901"),
        ("1000000", 1_000_000_000_000_000, "1000000"),
        ("7.100000000", 7_100_000_000, "7.1"),
    ],
)
def test_credits_grant_is_exact_to_the_nanocredit(app, runner, make_account, amount, nanos, shown):
    account_id = make_account(EMAIL)
    result = invoke(runner, "credits", "grant", EMAIL, amount, "--note", "welcome bonus")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"granted {shown} credits to {EMAIL}; balance {shown}\n"
    assert balance_of(app, EMAIL) == nanos
    [(entry_account, kind, entry_amount, key, note)] = ledger_rows(app)
    assert (entry_account, kind, entry_amount, note) == (
        account_id,
        "grant",
        nanos,
        "welcome bonus",
    )
    assert key.startswith("grant:cli:")
    with app.app_context():
        assert ledger.check_invariants() == []


def test_credits_grant_finds_the_account_case_insensitively(app, runner, make_account):
    make_account(EMAIL)
    result = invoke(runner, "credits", "grant", EMAIL.upper(), "2", "--note", "n")
    assert result.exit_code == 0, result.output
    assert balance_of(app, EMAIL) == 2_000_000_000


def test_credits_grant_twice_without_key_grants_twice(app, runner, make_account):
    make_account(EMAIL)
    for _ in range(2):
        assert invoke(runner, "credits", "grant", EMAIL, "1.5", "--note", "n").exit_code == 0
    assert balance_of(app, EMAIL) == 3_000_000_000
    assert len(ledger_rows(app)) == 2


def test_credits_grant_with_same_idempotency_key_grants_once(app, runner, make_account):
    make_account(EMAIL)
    args = ("credits", "grant", EMAIL, "5.25", "--note", "promo", "--idempotency-key", "promo-1")
    first = invoke(runner, *args)
    second = invoke(runner, *args)
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert second.stdout.startswith("already granted")
    assert balance_of(app, EMAIL) == 5_250_000_000
    [row] = ledger_rows(app)
    assert row[3] == "grant:cli:promo-1"


def test_credits_grant_reusing_a_key_for_another_amount_fails(app, runner, make_account):
    make_account(EMAIL)
    make_account("other@example.com")
    key = ("--note", "promo", "--idempotency-key", "promo-1")
    assert invoke(runner, "credits", "grant", EMAIL, "5", *key).exit_code == 0
    other_amount = invoke(runner, "credits", "grant", EMAIL, "6", *key)
    other_account = invoke(runner, "credits", "grant", "other@example.com", "5", *key)
    for result in (other_amount, other_account):
        assert result.exit_code != 0
        assert "idempotency key" in result.output
    assert balance_of(app, EMAIL) == 5_000_000_000
    assert balance_of(app, "other@example.com") == 0
    assert len(ledger_rows(app)) == 1


@pytest.mark.parametrize(
    "amount",
    [
        "1e3",
        "1E3",
        "-5",
        "-0.000000001",
        "abc",
        "0",
        "0.000000000",
        "-0",
        "1.0000000001",
        "0.0000000001",
        "",
        " ",
        "1,000",
        "NaN",
        "inf",
        "1..5",
        "0x10",
        "½",
    ],
)
def test_credits_grant_bad_amount_fails_and_writes_nothing(app, runner, make_account, amount):
    make_account(EMAIL)
    # `--` so that a leading minus reaches the command as the amount, not as an option.
    result = invoke(runner, "credits", "grant", "--note", "n", "--", EMAIL, amount)
    assert result.exit_code != 0
    assert not result.stdout.startswith("granted")
    assert isinstance(result.exception, SystemExit), result.exception  # a clean error, no traceback
    assert ledger_rows(app) == []
    assert balance_of(app, EMAIL) == 0


def test_credits_grant_negative_amount_as_option_is_refused(app, runner, make_account):
    make_account(EMAIL)
    result = invoke(runner, "credits", "grant", EMAIL, "-5", "--note", "n")
    assert result.exit_code != 0
    assert ledger_rows(app) == []


@pytest.mark.parametrize("amount", ["9223372037", "99999999999999999999.999999999"])
def test_credits_grant_beyond_the_largest_balance_fails_cleanly(app, runner, make_account, amount):
    """More nanocredits than a BIGINT holds: refused with a message, nothing written."""
    make_account(EMAIL)
    result = invoke(runner, "credits", "grant", EMAIL, amount, "--note", "n")
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert ledger_rows(app) == []
    assert balance_of(app, EMAIL) == 0


def test_credits_grant_to_unknown_email_fails(app, runner, make_account):
    make_account(EMAIL)
    result = invoke(runner, "credits", "grant", "nobody@example.com", "5", "--note", "n")
    assert result.exit_code != 0
    assert "no account" in result.output
    assert ledger_rows(app) == []


@pytest.mark.parametrize("note_args", [[], ["--note", ""], ["--note", "   "]])
def test_credits_grant_needs_a_note(app, runner, make_account, note_args):
    make_account(EMAIL)
    result = invoke(runner, "credits", "grant", EMAIL, "5", *note_args)
    assert result.exit_code != 0
    assert ledger_rows(app) == []


# --- flask keys create ---------------------------------------------------------------------------


def all_stored_text(app) -> str:
    """Every value of every column of every table, as text."""
    with app.app_context():
        chunks = []
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(table.select()):
                chunks.extend(json.dumps(v) if isinstance(v, dict | list) else str(v) for v in row)
        return "\n".join(chunks)


def test_keys_create_prints_only_the_key_and_stores_only_its_hmac(app, runner, make_account):
    account_id = make_account(EMAIL)
    result = invoke(runner, "keys", "create", EMAIL, "--name", "laptop")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.endswith("\n")
    assert result.stdout.count("\n") == 1
    plaintext = result.stdout[:-1]
    assert KEY_LINE.fullmatch(plaintext), result.stdout

    expected_hash = hmac.new(
        app.config["KEY_HASH_SECRET"].encode(), plaintext.encode(), hashlib.sha256
    ).hexdigest()
    with app.app_context():
        [key] = db.session.scalars(select(ApiKey)).all()
        assert key.account_id == account_id
        assert key.name == "laptop"
        assert key.key_hash == expected_hash
        assert key.last4 == plaintext[-4:]
        assert key.revoked_at is None
    # The proxy accepts it as the key it is.
    shown = app.test_client().get("/v1/key", headers={"Authorization": f"Bearer {plaintext}"})
    assert shown.status_code == 200 and shown.get_json()["data"]["name"] == "laptop"

    stored = all_stored_text(app)
    assert plaintext not in stored
    assert plaintext[3:] not in stored  # not even without the prefix
    assert plaintext[3:23] not in stored and plaintext[23:] not in stored


def test_keys_create_makes_a_new_key_each_time(app, runner, make_account):
    make_account(EMAIL)
    keys = {invoke(runner, "keys", "create", EMAIL, "--name", "k").stdout.strip() for _ in range(3)}
    assert len(keys) == 3
    assert all(KEY_LINE.fullmatch(k) for k in keys)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 3


def test_keys_create_for_unknown_email_prints_no_key(app, runner, make_account):
    make_account(EMAIL)
    result = invoke(runner, "keys", "create", "nobody@example.com", "--name", "k")
    assert result.exit_code != 0
    assert result.stdout == ""
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 0


def test_keys_create_for_suspended_account_fails(app, runner, make_account):
    make_account(EMAIL)
    with app.app_context():
        account_service.suspend(
            account_service.account_by_email(EMAIL), reason="chargeback", actor_id=None
        )
        db.session.commit()
    result = invoke(runner, "keys", "create", EMAIL, "--name", "k")
    assert result.exit_code != 0
    assert result.stdout == ""
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 0


@pytest.mark.parametrize("name", ["", "   ", "n" * 101])
def test_keys_create_refuses_a_bad_name(app, runner, make_account, name):
    make_account(EMAIL)
    result = invoke(runner, "keys", "create", EMAIL, "--name", name)
    assert result.exit_code != 0
    assert result.stdout == ""


# --- flask ledger check --------------------------------------------------------------------------


@pytest.fixture
def busy_ledger(app, runner, make_account):
    """Two accounts with grants, a key, an open hold and a settled one."""
    make_account(EMAIL)
    make_account("other@example.com")
    assert invoke(runner, "credits", "grant", EMAIL, "10", "--note", "n").exit_code == 0
    assert (
        invoke(runner, "credits", "grant", "other@example.com", "3", "--note", "n").exit_code == 0
    )
    assert invoke(runner, "keys", "create", EMAIL, "--name", "k").exit_code == 0
    with app.app_context():
        account = account_service.account_by_email(EMAIL)
        key_id = db.session.scalar(select(ApiKey.id))
        expires = utcnow() + timedelta(minutes=10)
        ledger.place_hold(
            account_id=account.id,
            amount_nanocredits=2_000_000_000,
            expires_at=expires,
            api_key_id=key_id,
        )
        settled = ledger.place_hold(
            account_id=account.id, amount_nanocredits=1_000_000_000, expires_at=expires
        )
        ledger.settle_hold(settled.id, 1_500_000_000)
        db.session.commit()
        return {"account_id": account.id, "key_id": key_id}


def test_ledger_check_passes_when_consistent(runner, busy_ledger):
    result = invoke(runner, "ledger", "check")
    assert result.exit_code == 0, result.output
    assert result.stdout == "ledger ok\n"


def test_ledger_check_passes_on_an_empty_database(runner):
    result = invoke(runner, "ledger", "check")
    assert result.exit_code == 0
    assert result.stdout == "ledger ok\n"


@pytest.mark.parametrize(
    ("statement", "what"),
    [
        ("UPDATE accounts SET balance = balance + 1 WHERE id = :account_id", "balance"),
        ("UPDATE accounts SET balance = balance - 1 WHERE id = :account_id", "balance"),
        ("UPDATE accounts SET held = held + 1 WHERE id = :account_id", "held"),
        ("UPDATE holds SET status = 'released' WHERE status = 'open'", "held"),
        ("UPDATE ledger_entries SET amount = amount + 1 WHERE account_id = :account_id", "balance"),
        ("DELETE FROM ledger_entries WHERE kind = 'usage'", "balance"),
        ("UPDATE api_keys SET held_nanocredits = 0 WHERE id = :key_id", "key"),
    ],
)
def test_ledger_check_fails_after_corruption(app, runner, busy_ledger, statement, what):
    with app.app_context():
        db.session.execute(text(statement), busy_ledger)
        db.session.commit()
    result = invoke(runner, "ledger", "check")
    assert result.exit_code != 0
    assert "ledger ok" not in result.stdout
    assert f"account {busy_ledger['account_id']}: " in result.stderr
    assert what in result.stderr


# --- flask catalog sync --------------------------------------------------------------------------


def test_catalog_sync_is_idempotent(app, runner):
    count = len(json.loads(CATALOG_PATH.read_text())["models"])
    first = invoke(runner, "catalog", "sync")
    assert first.exit_code == 0, first.output
    assert first.stdout == f"catalogue synced: {count} added, 0 updated, 0 unchanged\n"
    with app.app_context():
        before = [
            tuple(r) for r in db.session.execute(text("SELECT * FROM model_prices ORDER BY id"))
        ]
    for _ in range(2):
        again = invoke(runner, "catalog", "sync")
        assert again.exit_code == 0, again.output
        assert again.stdout == f"catalogue synced: 0 added, 0 updated, {count} unchanged\n"
        assert again.stderr == ""
    with app.app_context():
        after = [
            tuple(r) for r in db.session.execute(text("SELECT * FROM model_prices ORDER BY id"))
        ]
    assert after == before


def _edit_o3_output(app, list_price: int, sell_price: int) -> None:
    with app.app_context():
        db.session.execute(
            text(
                "UPDATE model_prices SET list_price = :list, sell_price = :sell, "
                "admin_edited_at = :now WHERE token_class = 'output' AND model_pk = "
                "(SELECT id FROM catalog_models WHERE model_id = 'o3')"
            ),
            {"list": list_price, "sell": sell_price, "now": utcnow().replace(tzinfo=None)},
        )
        db.session.commit()


def _o3_output(app) -> tuple[int, int]:
    with app.app_context():
        return tuple(
            db.session.execute(
                text(
                    "SELECT list_price, sell_price FROM model_prices WHERE token_class = 'output' "
                    "AND model_pk = (SELECT id FROM catalog_models WHERE model_id = 'o3')"
                )
            ).one()
        )


def test_catalog_sync_reports_kept_admin_prices_on_stderr(app, runner):
    first = invoke(runner, "catalog", "sync")
    assert first.exit_code == 0
    # Issue 11 item 7: the retired models are not sold, and the first sync says so.
    assert "disabled retired model (not sold): grok-4\n" in first.stderr
    # An older file listed o3's output at 1 nanocredit; the admin sells it above today's list price.
    _edit_o3_output(app, 1, 9_000_000_000)
    result = invoke(runner, "catalog", "sync")
    assert result.exit_code == 0
    assert "kept admin-edited price (bundled file differs): o3 output tier>0" in result.stderr
    assert _o3_output(app) == (8_000_000_000, 9_000_000_000)


def test_catalog_sync_raises_an_edited_price_the_list_price_passed(app, runner):
    """Issue 11 item 7: never below cost; the raise is reported and the admin page flags it."""
    assert invoke(runner, "catalog", "sync").exit_code == 0
    _edit_o3_output(app, 1, 2)
    result = invoke(runner, "catalog", "sync")
    assert result.exit_code == 0
    assert (
        "raised admin-edited price above the new list price: "
        "o3 output tier>0: sell 0.000000002 -> 8.8 (list 0.000000001 -> 8)"
    ) in result.stderr
    assert _o3_output(app) == (8_000_000_000, 8_800_000_000)


# --- flask holds expire --------------------------------------------------------------------------


def test_holds_expire_releases_only_expired_holds(app, runner, make_account):
    account_id = make_account(EMAIL)
    with app.app_context():
        ledger.grant_credits(account_id, 10**10, note="n", idempotency_key="g")
        now = utcnow()
        ledger.place_hold(
            account_id=account_id, amount_nanocredits=3, expires_at=now - timedelta(seconds=1)
        )
        ledger.place_hold(
            account_id=account_id, amount_nanocredits=5, expires_at=now + timedelta(hours=1)
        )
        db.session.commit()
    result = invoke(runner, "holds", "expire")
    assert result.exit_code == 0
    assert result.stdout == "released 1 expired holds\n"
    with app.app_context():
        assert db.session.get(Account, account_id).held_nanocredits == 5
        assert ledger.check_invariants() == []
    assert invoke(runner, "holds", "expire").stdout == "released 0 expired holds\n"


def test_credits_grant_distinct_idempotency_keys_grant_separately(app, runner, make_account):
    """One ledger row per distinct key, none for a repeated one."""
    make_account(EMAIL)
    invoke(runner, "credits", "grant", EMAIL, "1", "--note", "n", "--idempotency-key", "a")
    invoke(runner, "credits", "grant", EMAIL, "1", "--note", "n", "--idempotency-key", "a")
    invoke(runner, "credits", "grant", EMAIL, "2", "--note", "n", "--idempotency-key", "b")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 2
    assert balance_of(app, EMAIL) == 3_000_000_000
