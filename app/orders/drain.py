"""How many pending orders the retry worker tries at once: a slow start after an outage.

When the factory is back, the backlog of orders kept pending meanwhile is due at once.
Sent all together (WORKER_BATCH calls), it loads the factory so that it answers slowly,
and a slow pizza (over FACTORY_SLOW_CALL_S) counts as a failure for the breaker: the
drain would reopen the breaker it has just closed. So the worker drains in rounds whose
size follows the factory's answers, as TCP's slow start follows the network's:

- whenever the breaker changes state (its probe closed it, an operator forced it, it
  opened), the next round tries START_WINDOW orders;
- a round that filled its window and whose slowest answer came within half of
  FACTORY_SLOW_CALL_S doubles the window, up to WORKER_BATCH. Half, because a busy
  factory works through its calls in turn: twice the calls take it at most about twice
  as long, so the doubled round still answers under the slow threshold;
- a round with a slow answer or a failure halves the window, down to START_WINDOW;
- any other round keeps it.

The breaker's rule: a slow pizza counts as nothing for the breaker when the drain tried
its order in a round larger than START_WINDOW. The window had grown on fast answers, so
the factory was fine under a lighter load: the slowness is the drain's own load, and the
answer to it is a smaller round, not an open breaker. Once the window is back at
START_WINDOW (at most four halvings from the default WORKER_BATCH of 32), slow pizzas
count again: a factory slow under the lightest drain is slow. Every other failure (a
timeout, an error, a chaos) counts whatever the round, and so do customers' calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clients.schemas import Outcome

# Orders tried at once in the first round after the breaker changed state.
START_WINDOW = 2


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt of a round came to: its outcome (None when no call was made,
    e.g. refused by a breaker that opened meanwhile) and how long it took."""

    outcome: Outcome | None
    seconds: float


@dataclass(frozen=True, slots=True)
class Round:
    """One round of the drain: the orders it may try, and the window's restart it
    belongs to (a round sent before the breaker moved says nothing about after)."""

    size: int
    restart: int
    slow_counts: bool


class DrainWindow:
    """The size of the retry worker's next round; see the module docstring."""

    def __init__(self, *, cap: int, slow_call_s: float, start: int = START_WINDOW) -> None:
        self._cap = cap
        self._start = min(start, cap)
        self._fast_s = slow_call_s / 2
        self.size = self._start
        self._restarts = 0

    def restart(self) -> None:
        """The breaker changed state: start small again."""
        self.size = self._start
        self._restarts += 1

    def begin(self) -> Round:
        return Round(self.size, self._restarts, slow_counts=self.size <= self._start)

    def end(self, round_: Round, tried: int, answers: Sequence[Answer]) -> None:
        """Size the next round after one that tried ``tried`` orders."""
        if round_.restart != self._restarts:
            return  # the breaker moved meanwhile: the window has started afresh
        heard = [a for a in answers if a.outcome is not None]
        if any(a.outcome is not None and a.outcome.counts_as_failure for a in heard):
            self.size = max(self._start, round_.size // 2)
        elif heard and tried >= round_.size and max(a.seconds for a in heard) < self._fast_s:
            self.size = min(self._cap, round_.size * 2)
