"""Where `pizza drill`'s alert replay cuts a phase's recording of ``/metrics``, and
which stretch of it repeats (alerts.py replays the samples through promtool)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pizza_tools.drill.alerts import Window
from pizza_tools.drill.plan import Phase
from pizza_tools.drill.samples import Recording
from pizza_tools.drill.timeline import Timeline, breaker_opened_at, steady_cycle


def _index(recording: Recording, moment: datetime, *, up: bool) -> int:
    at = recording.index_at(moment)
    return max(math.ceil(at) if up else math.floor(at), 0)


def replay_window(
    phase: Phase,
    recording: Recording,
    timeline: Timeline,
    clicked_at: datetime | None,
    status: dict[str, Any],
) -> Window:
    """Where the alert replay cuts the recording and what it repeats (alerts.py)."""
    chaos_at = timeline.chaos_at
    chaos = _index(recording, chaos_at, up=True)
    if clicked_at is None:
        # Auto-remediated: replayed in full; the healthy tail after the first pizza repeats.
        cut = len(recording.scrapes)
        recovered = timeline.at(timeline.steady)
        start = cut - 2 if recovered is None else _index(recording, recovered, up=True) + 1
        return Window(chaos, cut, (max(chaos, min(start, cut - 2)), cut))
    cut = max(_index(recording, clicked_at, up=False), chaos + 1)
    cycle = steady_cycle(status, chaos_at, phase.settle_in_s, clicked_at)
    if cycle is not None:
        # A sample's increments happened in the second before it: the samples from the
        # one after the first opening to the one after the next hold one whole cycle,
        # the probe that reopened the breaker included.
        start, end = (_index(recording, at, up=True) + 1 for at in cycle)
    else:
        opened = breaker_opened_at(status, chaos_at)
        start = chaos if opened is None else _index(recording, opened, up=True) + 1
        end = cut
    end = min(end, cut)
    start = max(chaos, min(start, end - 2))
    return Window(chaos, cut, (start, end))
