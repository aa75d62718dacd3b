"""Errors the services share."""

from __future__ import annotations


class AccountError(ValueError):
    """A request about an account that cannot be honoured; `errors` maps fields to messages."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors
