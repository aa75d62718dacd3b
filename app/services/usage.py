"""Usage records: one per proxied request, written with the settlement of its hold."""

from __future__ import annotations

from dataclasses import replace

from app.proxy.metering import InputSize, Usage, estimate_basis, estimate_output_tokens
from app.services import holds


def settlement_usage(
    status: str,
    *,
    usage: Usage | None,
    usage_complete: bool,
    delivered_bytes: int,
    provider_failed: bool,
    input_size: InputSize,
) -> tuple[str, Usage, dict | None]:
    """What a request is billed for, from what its relay proved: (record status, usage, the
    estimate's basis or None).

    `status` is the outcome when nothing was proven ("upstream_error" when the call failed before
    an answer). Provider counts are the truth: all of them ("ok"), or those seen before the stream
    ended early ("partial", never below the output delivered). Without counts, both sides are
    estimated the same way, from UTF-8 bytes / 4: output from what was delivered, input from the
    text sent (InputSize.estimate, not the hold's bound, which is ~4x an English prompt), and the
    record keeps how ("estimated"). A provider error before anything was delivered or counted
    bills nothing ("upstream_error").
    """
    if status == "upstream_error":
        return status, usage or Usage(), None
    if usage is not None:
        if usage_complete:
            return "ok", usage, None
        # Counts seen before the end (Anthropic's message_start says 1 output token) lag what was
        # delivered, and the provider bills all it generated.
        delivered = estimate_output_tokens(delivered_bytes)
        return "partial", replace(usage, output=max(usage.output, delivered)), None
    if delivered_bytes:
        estimate = Usage(
            input=input_size.estimate,
            output=estimate_output_tokens(delivered_bytes),
            prompt_tokens=input_size.estimate,
        )
        return "estimated", estimate, estimate_basis(input_size, delivered_bytes)
    if provider_failed:
        return "upstream_error", Usage(), None
    return status, Usage(), None


def record_usage(values: dict, connection=None) -> bool:
    """Settle the hold at the record's cost and write the usage record, in one transaction.

    `values` are the UsageRecord's columns as plain values (so a job can carry them). Returns
    False, writing nothing, when the hold was already settled or released: settling twice is
    impossible whoever tries it. With `connection`, runs in the caller's transaction; otherwise
    commits on its own.
    """
    hold_id = values["hold_id"]
    return holds.settle(
        hold_id,
        values["cost_nanocredits"],
        usage=values,
        reference_id=f"hold:{hold_id}",
        connection=connection,
    )
