"""All models, imported here so Alembic and the app see the whole schema."""

from app.models.accounts import Account, RecoveryCode
from app.models.adjustments import CreditAdjustment
from app.models.audit import AuditLogEntry
from app.models.catalog import CatalogModel, ModelPrice
from app.models.keys import ApiKey
from app.models.ledger import Hold, LedgerEntry
from app.models.lifecycle import AccountRequest, RefundPart
from app.models.purchases import Purchase, ReconciliationRun, StripeEvent
from app.models.usage import UsageRecord
from app.models.usage_rollups import UsageDailyRollup, UsageRollupFold, UsageRollupState

__all__ = [
    "Account",
    "AccountRequest",
    "ApiKey",
    "AuditLogEntry",
    "CatalogModel",
    "CreditAdjustment",
    "Hold",
    "LedgerEntry",
    "ModelPrice",
    "Purchase",
    "ReconciliationRun",
    "RecoveryCode",
    "RefundPart",
    "StripeEvent",
    "UsageDailyRollup",
    "UsageRecord",
    "UsageRollupFold",
    "UsageRollupState",
]
