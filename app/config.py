"""Configuration classes. Every setting comes from the environment (DESIGN.md, "Operator contract")."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import ClassVar

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_PATH = Path(os.environ.get("ONEKEY_INSTANCE_PATH", PROJECT_ROOT / "instance"))


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def instance_secret(name: str) -> str:
    """Return a development secret, generated once into `instance/` so restarts keep sessions and keys."""
    INSTANCE_PATH.mkdir(parents=True, exist_ok=True)
    path = INSTANCE_PATH / f"{name.lower()}.txt"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def embedded_database_url() -> str:
    return f"sqlite:///{INSTANCE_PATH / 'onekey.sqlite3'}"


def embedded_redis_url() -> str:
    return f"unix://{INSTANCE_PATH / 'redis.sock'}"


class Config:
    ENV_NAME = "base"
    TESTING = False

    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or embedded_database_url()
    REDIS_URL = os.environ.get("REDIS_URL") or embedded_redis_url()

    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "").rstrip("/")
    # Without it, emailed links follow the request's Host header, which a client can forge.
    REQUIRE_PUBLIC_BASE_URL = False
    PROXY_FIX_HOPS = _int("PROXY_FIX_HOPS", 0)
    SUPPORT_EMAIL = os.environ.get("SUPPORT_EMAIL", "support@1key4ai.com")
    MAIL_SMTP_URL = os.environ.get("MAIL_SMTP_URL", "")
    MAIL_FROM = os.environ.get("MAIL_FROM", "OneKey <no-reply@1key4ai.com>")

    MARGIN_BPS = _int("MARGIN_BPS", 1000)
    PURCHASE_MIN_CENTS = _int("PURCHASE_MIN_CENTS", 500)
    PURCHASE_MAX_CENTS = _int("PURCHASE_MAX_CENTS", 100_000)
    RATE_LIMIT_RPM = _int("RATE_LIMIT_RPM", 600)
    MAX_CONCURRENT_PER_ACCOUNT = _int("MAX_CONCURRENT_PER_ACCOUNT", 32)
    UPSTREAM_CONNECT_TIMEOUT = _int("UPSTREAM_CONNECT_TIMEOUT", 10)
    UPSTREAM_READ_TIMEOUT = _int("UPSTREAM_READ_TIMEOUT", 300)
    MAX_REQUEST_BYTES = _int("MAX_REQUEST_BYTES", 20 * 1024 * 1024)
    # Every other body (pages, webhooks): Flask answers 413 past it (app/request_limits.py).
    MAX_CONTENT_LENGTH = _int("MAX_FORM_BYTES", 1024 * 1024)
    # How long a proxy process uses a key's cached identity before reading it again, so that a
    # changed per-minute limit applies within this time (revocation, suspension and the allow-list
    # apply on the very next request: the hold statement checks them).
    KEY_CACHE_SECONDS = _int("KEY_CACHE_SECONDS", 60)
    # Each web process refreshes its key in Redis this often, and a key lives this long: a process
    # missing for a TTL at two sweeps is dead, and its holds are released (app/heartbeat.py).
    HEARTBEAT_INTERVAL_SECONDS = _int("HEARTBEAT_INTERVAL_SECONDS", 10)
    HEARTBEAT_TTL_SECONDS = _int("HEARTBEAT_TTL_SECONDS", 30)
    # A comment line this often while a started stream waits on its provider (not on /gemini).
    SSE_KEEPALIVE_SECONDS = _int("SSE_KEEPALIVE_SECONDS", 15)

    # A bearer token that lets a scraper read /metrics without signing in; unset, admins only.
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
    STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "https://api.stripe.com")
    STRIPE_JS_URL = os.environ.get("STRIPE_JS_URL", "https://js.stripe.com/v3/")

    OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
    OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
    ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
    ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com")
    GEMINI_API_KEY = os.environ.get("GEMINI_API_KEY", "")
    GEMINI_BASE_URL = os.environ.get("GEMINI_BASE_URL", "https://generativelanguage.googleapis.com")
    XAI_API_KEY = os.environ.get("XAI_API_KEY", "")
    XAI_BASE_URL = os.environ.get("XAI_BASE_URL", "https://api.x.ai/v1")

    # Login throttling: failures allowed per window before sign-in is refused.
    LOGIN_MAX_FAILURES_PER_ACCOUNT = _int("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5)
    LOGIN_MAX_FAILURES_PER_IP = _int("LOGIN_MAX_FAILURES_PER_IP", 20)
    LOGIN_THROTTLE_WINDOW_SECONDS = _int("LOGIN_THROTTLE_WINDOW_SECONDS", 15 * 60)
    PASSWORD_RESET_MAX_AGE_SECONDS = 3600
    # Mail anyone can trigger for an address: requests per window before no more is sent.
    PASSWORD_RESET_MAX_PER_EMAIL = _int("PASSWORD_RESET_MAX_PER_EMAIL", 5)
    PASSWORD_RESET_MAX_PER_IP = _int("PASSWORD_RESET_MAX_PER_IP", 20)
    PASSWORD_RESET_WINDOW_SECONDS = _int("PASSWORD_RESET_WINDOW_SECONDS", 3600)
    SIGNUP_NOTICE_MAX_PER_EMAIL = _int("SIGNUP_NOTICE_MAX_PER_EMAIL", 3)
    SIGNUP_NOTICE_WINDOW_SECONDS = _int("SIGNUP_NOTICE_WINDOW_SECONDS", 3600)

    # Wrong second-factor codes allowed per admin in LOGIN_THROTTLE_WINDOW_SECONDS.
    SECOND_FACTOR_MAX_FAILURES = _int("SECOND_FACTOR_MAX_FAILURES", 5)
    # An admin session with no admin request for this long enters a code again to go on.
    ADMIN_IDLE_TIMEOUT_SECONDS = _int("ADMIN_IDLE_TIMEOUT_SECONDS", 900)

    SESSION_COOKIE_NAME = "onekey_session"
    # The cookie's lifetime slides with each request; this one does not: a sign-in lasts this long.
    SESSION_ABSOLUTE_LIFETIME_SECONDS = _int("SESSION_ABSOLUTE_LIFETIME_SECONDS", 7 * 24 * 3600)
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    # Sent with every answer where set: production only, since development serves plain HTTP.
    STRICT_TRANSPORT_SECURITY = ""
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session that carries it
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict] = {}
    # Per web or worker process (PostgreSQL only).
    DB_POOL_SIZE = _int("DB_POOL_SIZE", 20)
    DB_POOL_OVERFLOW = _int("DB_POOL_OVERFLOW", 30)

    SECRET_KEY = os.environ.get("SECRET_KEY")
    KEY_HASH_SECRET = os.environ.get("KEY_HASH_SECRET")
    # Development generates missing secrets into instance/; production refuses to start without them.
    GENERATE_MISSING_SECRETS = True


class DevelopmentConfig(Config):
    ENV_NAME = "development"


class ProductionConfig(Config):
    ENV_NAME = "production"
    GENERATE_MISSING_SECRETS = False
    REQUIRE_PUBLIC_BASE_URL = True
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    PREFERRED_URL_SCHEME = "https"
    STRICT_TRANSPORT_SECURITY = "max-age=31536000; includeSubDomains"


def config_for_environment() -> type[Config]:
    """The config class named by `ONEKEY_ENV` (development or production)."""
    name = os.environ.get("ONEKEY_ENV", "development")
    classes = {"development": DevelopmentConfig, "production": ProductionConfig}
    if name not in classes:
        raise RuntimeError(f"ONEKEY_ENV must be one of {sorted(classes)}, not {name!r}")
    return classes[name]
