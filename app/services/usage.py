"""Usage records: one per proxied request, written with the settlement of its hold."""

from __future__ import annotations

from dataclasses import replace

from app.proxy.metering import Usage, estimate_output_tokens
from app.services import holds


def settlement_usage(
    status: str,
    *,
    usage: Usage | None,
    usage_complete: bool,
    delivered_bytes: int,
    provider_failed: bool,
    input_estimate: int,
) -> tuple[str, Usage]:
    """What a request is billed for, from what its relay proved: (record status, usage).

    `status` is the outcome when nothing was proven ("upstream_error" when the call failed before
    an answer). Provider counts are the truth: all of them ("ok"), or those seen before the stream
    ended early ("partial", never below the output delivered). Without counts, output delivered is
    estimated at ceil(bytes / 4) and input at the hold's bound ("estimated"). A provider error
    before anything was delivered or counted bills nothing ("upstream_error").
    """
    if status == "upstream_error":
        return status, usage or Usage()
    if usage is not None:
        if usage_complete:
            return "ok", usage
        # Counts seen before the end (Anthropic's message_start says 1 output token) lag what was
        # delivered, and the provider bills all it generated.
        delivered = estimate_output_tokens(delivered_bytes)
        return "partial", replace(usage, output=max(usage.output, delivered))
    if delivered_bytes:
        estimate = Usage(
            input=input_estimate,
            output=estimate_output_tokens(delivered_bytes),
            prompt_tokens=input_estimate,
        )
        return "estimated", estimate
    if provider_failed:
        return "upstream_error", Usage()
    return status, Usage()


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
