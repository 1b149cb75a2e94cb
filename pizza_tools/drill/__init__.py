"""`pizza drill`: the 2024-12-05 incident replayed against the simulator.

See docs/telemetry.md#the-drill. The postmortem asked to "test the service with the
incorrect factory to make sure that the alerts are working": this is that test.

runner.py starts the processes and runs the phases, traffic.py is the customers,
timeline.py reads what the service recorded, samples.py records ``/metrics`` once a
second, and alerts.py replays those samples through ``promtool test rules``.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """Which chaos ``pizza drill --mode`` injects (``all``: each in turn)."""

    FAIL = "fail"
    THROTTLE = "throttle"
    BADJWT = "badjwt"
    ALL = "all"
