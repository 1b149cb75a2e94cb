"""What the breaker is told of an order's answer, on every path the answer takes: a slow
pizza of a drain round grown past its start counts as nothing; everything else counts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.orders.placed import PlacedOrder
from app.orders.workflow import _record
from clients.breaker.state import Admission, BreakerState, Ticket
from clients.schemas import Outcome


def _order(*, slow_counts: bool) -> PlacedOrder:
    return PlacedOrder(
        id=1,
        diner_id=1,
        franchise_id=1,
        store_id=1,
        date=datetime(2026, 1, 1, tzinfo=UTC),
        total=Decimal("0.01"),
        slow_counts=slow_counts,
    )


def _told(outcome: Outcome | None, *, slow_counts: bool) -> Outcome | None:
    ticket = Ticket(Admission(BreakerState.CLOSED))
    _record(ticket, _order(slow_counts=slow_counts), outcome)
    return ticket.outcome


@pytest.mark.parametrize("outcome", list(Outcome))
def test_a_customer_or_first_round_order_counts_every_outcome(outcome: Outcome) -> None:
    assert _told(outcome, slow_counts=True) is outcome


@pytest.mark.parametrize("outcome", [o for o in Outcome if o is not Outcome.SLOW])
def test_a_grown_round_counts_every_outcome_but_slow(outcome: Outcome) -> None:
    assert _told(outcome, slow_counts=False) is outcome


def test_a_slow_pizza_of_a_grown_round_counts_as_nothing() -> None:
    assert _told(Outcome.SLOW, slow_counts=False) is None


def test_no_answer_tells_nothing() -> None:
    assert _told(None, slow_counts=True) is None
