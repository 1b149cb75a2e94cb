"""What an order's trace says happened to it (docs/telemetry.md#traces).

Events on the spans that already exist (the request's server span, the worker's
``pizza.retry``, ``pizza.create``): no span is added per request. An order keeps the
W3C ``traceparent`` of the request that placed it, so the worker's later attempt links
back to that first trace and the two are found from one another.
"""

from __future__ import annotations

import re

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, TraceFlags

from app.models import OrderStatus

REFUSED = "pizza.order.refused"
PENDING = "pizza.order.pending"
FULFILLED = "pizza.order.fulfilled"
FAILED = "pizza.order.failed"
_EVENTS = {
    OrderStatus.PENDING: PENDING,
    OrderStatus.FULFILLED: FULFILLED,
    OrderStatus.FAILED: FAILED,
}
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def traceparent() -> str | None:
    """The current span's W3C traceparent, if that span is recorded: a link to a span
    that no exporter ever saw would lead nowhere."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def links_to(stored: str | None) -> list[Link]:
    """A link to the order's first trace, from its stored traceparent (none if unknown)."""
    match = _TRACEPARENT.fullmatch(stored or "")
    if match is None:
        return []
    context = SpanContext(
        trace_id=int(match[1], 16),
        span_id=int(match[2], 16),
        is_remote=True,
        trace_flags=TraceFlags(int(match[3], 16)),
    )
    if not context.is_valid:
        return []
    return [Link(context, {"pizza.link": "order placed"})]


def order_event(name: str, order_id: int, **attributes: str | bool | int) -> None:
    """An event about this order on the current span (the request's, or the retry's)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, {"pizza.order.id": order_id, **attributes})


def attempt_event(
    order_id: int, status: OrderStatus, outcome: str | None, reason: str, attempts: int
) -> None:
    """Where one attempt left the order: pending (and why), fulfilled or failed."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    attributes: dict[str, str | int] = {
        "pizza.order.id": order_id,
        "pizza.order.attempts": attempts,
    }
    if outcome is not None:
        attributes["pizza.outcome"] = str(outcome)
    if reason:
        attributes["pizza.reason"] = reason[:300]
    span.add_event(_EVENTS[OrderStatus(status)], attributes)
