"""Expected bills, worked out here from the usage the fakes reported, independently of the
gateway's own metering code, so that a metering mistake cannot hide behind itself."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import Account, CatalogModel, Hold, LedgerEntry, UsageRecord
from app.services.ledger import check_invariants


def billed_classes(
    provider: str, route: str, usage: dict, request: dict | None = None
) -> tuple[dict[str, int], int]:
    """(tokens per billed class, prompt tokens for the tier) from a native usage object (and, for
    OpenAI's Chat Completions, the request: its cache writes' lifetime is the one it asked for)."""
    if provider == "anthropic":
        cache_read = usage.get("cache_read_input_tokens") or 0
        cache_write = usage.get("cache_creation_input_tokens") or 0
        split = usage.get("cache_creation") or {}
        write_1h = split.get("ephemeral_1h_input_tokens") or 0
        write_5m = cache_write - write_1h
        classes = {
            "input": usage["input_tokens"],
            "cache_read": cache_read,
            "cache_write_5m": write_5m,
            "cache_write_1h": write_1h,
            "output": usage["output_tokens"],
        }
        return classes, usage["input_tokens"] + cache_read + cache_write
    if provider == "google":
        prompt = usage.get("promptTokenCount", 0)
        cached = usage.get("cachedContentTokenCount", 0)
        classes = {
            "input": prompt - cached + usage.get("toolUsePromptTokenCount", 0),
            "cache_read": cached,
            "output": usage.get("candidatesTokenCount", 0) + usage.get("thoughtsTokenCount", 0),
        }
        return classes, prompt
    # OpenAI's cache reads and writes are both inside the prompt count.
    if route == "responses":
        details = usage.get("input_tokens_details") or {}
        cached = details.get("cached_tokens", 0)
        writes = details.get("cache_write_tokens", 0)
        long_writes = (details.get("cache_write_tokens_details") or {}).get("ttl_12h_tokens", 0)
        classes = {
            "input": usage["input_tokens"] - cached - writes,
            "cache_read": cached,
            "cache_write_5m": writes - long_writes,
            "cache_write_1h": long_writes,
            "output": usage["output_tokens"],
        }
        return classes, usage["input_tokens"]
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens", 0)
    writes = details.get("cache_write_tokens", 0)
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    output = usage["completion_tokens"] + (reasoning if provider == "xai" else 0)
    ttl = ((request or {}).get("prompt_cache_options") or {}).get("ttl")
    long_writes = writes if ttl == "12h" else 0
    classes = {
        "input": usage["prompt_tokens"] - cached - writes,
        "cache_read": cached,
        "cache_write_5m": writes - long_writes,
        "cache_write_1h": long_writes,
        "output": output,
    }
    return classes, usage["prompt_tokens"]


def expected_cost(model_id: str, classes: dict[str, int], prompt_tokens: int) -> int:
    model = db.session.scalar(select(CatalogModel).where(CatalogModel.model_id == model_id))
    tiers: dict[int, dict[str, int]] = {}
    for price in model.prices:
        tiers.setdefault(price.tier_threshold_tokens, {})[price.token_class] = (
            price.sell_price_nanos_per_mtok
        )
    tier = max(t for t in tiers if t == 0 or prompt_tokens > t)
    # A class the catalogue lists no price for bills at the tier's input price.
    prices = tiers[tier]
    total = sum(
        count * prices.get(name, prices["input"]) for name, count in classes.items() if count
    )
    return (2 * total + 1_000_000) // 2_000_000  # half-up, once per request


def assert_billed_exactly(app, call, account_id: int, granted_nanos: int, route: str):
    """The one usage record, the debit and the balance match the fake's reported usage."""
    provider = "google" if call.provider == "gemini" else call.provider
    with app.app_context():
        record = db.session.scalar(
            select(UsageRecord)
            .where(UsageRecord.account_id == account_id)
            .order_by(UsageRecord.id.desc())
        )
        assert record is not None, "no usage record"
        classes, prompt_tokens = billed_classes(provider, route, call.usage_reported, call.body)
        cost = expected_cost(record.model_id, classes, prompt_tokens)
        assert record.status == "ok"
        assert record.input_tokens == classes["input"]
        assert record.cache_read_tokens == classes.get("cache_read", 0)
        assert record.cache_write_5m_tokens == classes.get("cache_write_5m", 0)
        assert record.cache_write_1h_tokens == classes.get("cache_write_1h", 0)
        assert record.output_tokens == classes["output"]
        assert record.cost_nanocredits == cost
        debits = db.session.scalars(
            select(LedgerEntry.amount_nanocredits).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == "usage"
            )
        ).all()
        assert debits == ([-cost] if cost else [])
        account = db.session.get(Account, account_id)
        assert account.balance_nanocredits == granted_nanos - cost
        assert account.held_nanocredits == 0
        assert check_invariants() == []
        return record, cost


def open_holds(app) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(Hold).where(Hold.status == "open")
        )


def wait_for_settlement(app, account_id: int, timeout: float = 10.0) -> None:
    """Streams settle as they close, a moment after the client has read the end."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            account = db.session.get(Account, account_id)
            settled = account.held_nanocredits == 0
            db.session.remove()
        if settled:
            return
        time.sleep(0.05)
    raise AssertionError("the hold was not settled in time")
