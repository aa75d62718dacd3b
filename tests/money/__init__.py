"""The money test suite: ledger invariants, exact pricing, catalogue sync and the operator CLI."""
