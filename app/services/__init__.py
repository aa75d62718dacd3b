"""Business rules as plain functions. They flush, never commit, and take plain values."""
