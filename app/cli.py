"""Operator commands (`flask …`), as DESIGN.md's "Operator contract" names them."""

from __future__ import annotations

import secrets
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.extensions import db
from app.models import Account, CatalogModel
from app.models.types import utcnow
from app.services import accounts as account_service
from app.services import keys as key_service
from app.services import ledger, totp
from app.services.catalog import retire_due_models, sync_catalog
from app.services.money import AmountError, credits_to_nanos, nanos_to_credits


def _account_or_exit(email: str) -> Account:
    account = account_service.account_by_email(email.strip())
    if account is None:
        raise click.ClickException(f"no account with email {email}")
    return account


def register_cli(app: Flask) -> None:
    # AppGroup runs every command inside the app context.
    catalog = AppGroup("catalog", help="The model catalogue.")
    users = AppGroup("users", help="Accounts.")
    credits = AppGroup("credits", help="Credits.")
    keys = AppGroup("keys", help="API keys.")
    ledger_group = AppGroup("ledger", help="The money ledger.")
    holds = AppGroup("holds", help="Credit holds.")

    @catalog.command("sync")
    @click.option(
        "--today",
        type=click.DateTime(formats=["%Y-%m-%d"]),
        help="Retire the deprecated models due by this date instead of today's (UTC).",
    )
    def catalog_sync(today):
        """Load the bundled catalogue and prices (idempotent; admin-edited prices are kept), then
        retire the deprecated models whose retirement date has come (as the scheduler does)."""
        report = sync_catalog(current_app.config["MARGIN_BPS"])
        retired = retire_due_models(today.date() if today else utcnow().date())
        db.session.commit()
        click.echo(
            f"catalogue synced: {len(report.added)} added, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged"
        )
        for kept in report.kept_admin_prices:
            click.echo(f"kept admin-edited price (bundled file differs): {kept}", err=True)
        for raised in report.raised_prices:
            click.echo(f"raised admin-edited price above the new list price: {raised}", err=True)
        for model_id in report.retired_disabled:
            click.echo(f"disabled retired model (not sold): {model_id}", err=True)
        by_id = {
            m.model_id: m
            for m in db.session.scalars(
                select(CatalogModel).where(CatalogModel.model_id.in_(retired))
            )
        }
        for model in (by_id[model_id] for model_id in retired):
            instead = f"; use {model.replacement_model_id}" if model.replacement_model_id else ""
            click.echo(
                f"retired on its date {model.retires_on.isoformat()}{instead} "
                f"(disabled, not sold): {model.model_id}",
                err=True,
            )

    @users.command("create")
    @click.argument("email")
    @click.option("--password", help="Generated and printed when omitted.")
    @click.option("--admin", is_flag=True, help="Give the account admin rights.")
    def users_create(email: str, password: str | None, admin: bool):
        """Create an account (the operator accepts the Terms on the user's behalf)."""
        generated = password is None
        password = password or secrets.token_urlsafe(18)
        try:
            account = account_service.register(
                email=email,
                password=password,
                age_confirmed=True,
                terms_accepted=True,
                is_admin=admin,
            )
        except account_service.AccountError as exc:
            raise click.ClickException("; ".join(exc.errors.values())) from None
        db.session.commit()
        click.echo(f"created {'admin ' if admin else ''}account {account.email}")
        if generated:
            click.echo(f"password: {password}")

    @users.command("ensure-admin")
    @click.option("--email", default="admin@1key4ai.com", show_default=True)
    def users_ensure_admin(email: str):
        """Create an admin account if there is none; prints its email and password once."""
        if db.session.scalar(select(Account.id).where(Account.is_admin.is_(True)).limit(1)):
            click.echo("an admin account exists")
            return
        password = secrets.token_urlsafe(18)
        account = account_service.register(
            email=email, password=password, age_confirmed=True, terms_accepted=True, is_admin=True
        )
        db.session.commit()
        click.echo(f"admin account created: {account.email}  password: {password}")
        click.echo(
            "(shown once; change it after signing in. The first sign-in sets up the second "
            "factor: have an authenticator app ready)"
        )

    @users.command("reset-2fa")
    @click.argument("email")
    @click.option("--reason", default="reset by the operator (flask users reset-2fa)")
    def users_reset_2fa(email: str, reason: str):
        """Remove an admin's second factor and recovery codes and end their sessions: the next
        sign-in sets up a new one (for an admin who lost the phone and the codes)."""
        account = _account_or_exit(email)
        try:
            totp.reset(account, actor_id=None, reason=reason)
        except totp.TwoFactorError as exc:
            raise click.ClickException(str(exc)) from None
        db.session.commit()
        click.echo(
            f"second factor of {account.email} removed; its sessions are ended and the next "
            "sign-in sets up a new one"
        )

    @credits.command("grant")
    @click.argument("email")
    @click.argument("amount")
    @click.option("--note", required=True, help="Why the credits are granted (for admins).")
    @click.option(
        "--note-for-customer",
        help="What the customer's activity shows about the grant (otherwise: credit from OneKey).",
    )
    @click.option("--idempotency-key", help="Running the command again with it grants once.")
    def credits_grant(
        email: str,
        amount: str,
        note: str,
        note_for_customer: str | None,
        idempotency_key: str | None,
    ):
        """Grant AMOUNT credits (a decimal) through the ledger; grants are never paid out."""
        account = _account_or_exit(email)
        try:
            amount_nanos = credits_to_nanos(amount)
        except AmountError as exc:
            raise click.ClickException(str(exc)) from None
        key = f"grant:cli:{idempotency_key or secrets.token_hex(16)}"
        try:
            _, created = ledger.grant_credits(
                account.id,
                amount_nanos,
                note=note,
                idempotency_key=key,
                public_note=note_for_customer,
            )
        except (ValueError, ledger.IdempotencyConflict) as exc:
            raise click.ClickException(str(exc)) from None
        db.session.commit()
        db.session.refresh(account)
        verb = "granted" if created else "already granted (idempotency key seen)"
        click.echo(
            f"{verb} {nanos_to_credits(amount_nanos)} credits to {account.email}; "
            f"balance {nanos_to_credits(account.balance_nanocredits)}"
        )

    @keys.command("create")
    @click.argument("email")
    @click.option("--name", required=True)
    def keys_create(email: str, name: str):
        """Create a key and print it, and nothing else, on stdout."""
        account = _account_or_exit(email)
        try:
            _, plaintext = key_service.create_key(account, name=name)
        except key_service.KeyRequestError as exc:
            raise click.ClickException(str(exc)) from None
        db.session.commit()
        click.echo(plaintext)

    @ledger_group.command("check")
    def ledger_check():
        """Verify balance == sum(ledger) and held == sum(open holds) for every account."""
        mismatches = ledger.check_invariants()
        for mismatch in mismatches:
            click.echo(str(mismatch), err=True)
        if mismatches:
            sys.exit(1)
        click.echo("ledger ok")

    @holds.command("expire")
    def holds_expire():
        """Release expired holds now (the scheduler does this every minute)."""
        released = ledger.expire_holds()
        db.session.commit()
        click.echo(f"released {released} expired holds")

    for group in (catalog, users, credits, keys, ledger_group, holds):
        app.cli.add_command(group)
