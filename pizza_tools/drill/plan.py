"""What a drill runs: its phases, how long each part lasts, the service's settings, which
alerts must (and must not) fire, and what a phase came to."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pizza_tools.drill import Mode
from pizza_tools.drill.alerts import AlertTimes, Window
from pizza_tools.drill.samples import Recording
from pizza_tools.drill.timeline import Timeline
from pizza_tools.drill.traffic import OrderCounts

ADMIN_EMAIL = "drill-admin@jwt.com"
CHAOS_MODES = ("fail", "throttle", "badjwt")
# The simulator's throttle answers after THROTTLE_DELAY_S; customers wait FACTORY_TIMEOUT_S,
# less, so the throttle is seen only through late answers, as in the real incident.
THROTTLE_DELAY_S = 4.0
SERVICE_SETTINGS = {
    "FACTORY_TIMEOUT_S": "2",
    "FACTORY_CALL_MAX_S": "10",
    "BREAKER_FAIL_MAX": "5",  # the default
}
# "As it happened" must page: these fire while nobody clicks. The causes page at once;
# the symptoms (the breaker, the SLO's fast burn, sales) fire too, and Alertmanager holds
# them back while a cause fires (telemetry/alertmanager/alertmanager.yml).
EXPECTED_ALERTS = {
    "fail": {
        "PizzaFactoryChaos",
        "PizzaRemediationLinkWaiting",
        "PizzaFactoryBreakerOpen",
        "PizzaOrderAvailabilityFastBurn",
        "PizzaSalesStopped",
    },
    # Late pizzas still sell: sales never stop in the throttle chaos, but the orders the
    # open breaker keeps wait, so the availability budget burns.
    "throttle": {
        "PizzaFactoryChaos",
        "PizzaRemediationLinkWaiting",
        "PizzaFactoryBreakerOpen",
        "PizzaOrderAvailabilityFastBurn",
    },
    "badjwt": {
        "PizzaFactoryChaos",
        "PizzaRemediationLinkWaiting",
        "PizzaFactoryBreakerOpen",
        "PizzaOrderAvailabilityFastBurn",
        "PizzaSalesStopped",
    },
}
# Auto-remediated, it ends before these page (they wait a minute, or need the hour's
# orders to burn).
NOT_EXPECTED_WHEN_AUTO = {
    "PizzaOrderAvailabilityFastBurn",
    "PizzaFactoryBreakerOpen",
    "PizzaSalesStopped",
}


@dataclass(frozen=True)
class Plan:
    """How long each part of a phase lasts: the full drill, or the short form CI runs."""

    quick: bool
    rate_per_s: float  # orders a second, whatever the answers take
    diners: int
    baseline_s: float  # steady traffic before the chaos
    # "As it happened": chaos at least this long before the click, and until the breaker
    # has gone through one whole cycle (open, a probe, open again) once the chaos is steady.
    hold_s: float
    breaker_reset_s: float  # BREAKER_RESET_S
    recover_timeout_s: float  # for remediation, and for the first pizza after it
    tail_s: float  # steady traffic after recovery
    settle_timeout_s: float  # for every accepted order to be made
    max_inflight: int = 32

    @property
    def max_orders(self) -> int:
        longest = self.baseline_s + self.hold_s + 3 * self.breaker_reset_s + self.tail_s
        return math.ceil(self.rate_per_s * (longest + 2 * self.recover_timeout_s))


FULL = Plan(
    quick=False,
    rate_per_s=5.0,
    diners=8,
    baseline_s=15.0,
    hold_s=45.0,
    breaker_reset_s=30.0,  # the default
    recover_timeout_s=60.0,
    tail_s=10.0,
    settle_timeout_s=90.0,
)
QUICK = Plan(
    quick=True,
    rate_per_s=5.0,
    diners=4,
    baseline_s=4.0,
    hold_s=8.0,
    # A half-open probe every 5 s instead of 30 s, so that the short hold still records a
    # whole breaker cycle of a long outage (the alert replay repeats it).
    breaker_reset_s=5.0,
    recover_timeout_s=20.0,
    tail_s=4.0,
    settle_timeout_s=30.0,
)


@dataclass(frozen=True)
class Phase:
    chaos: str
    auto: bool

    @property
    def name(self) -> str:
        return f"{self.chaos}, {'auto-remediated' if self.auto else 'as it happened'}"

    @property
    def slug(self) -> str:
        return f"{self.chaos}-{'auto' if self.auto else 'manual'}"

    @property
    def settle_in_s(self) -> float:
        """How long after the breaker opens the chaos is steady: in the throttle, the calls
        made before it opened still answer, late, for THROTTLE_DELAY_S. The alert replay
        repeats a breaker cycle from the steady part only."""
        return THROTTLE_DELAY_S if self.chaos == "throttle" else 0.0


def phases_for(mode: Mode) -> list[Phase]:
    chaos = CHAOS_MODES if mode is Mode.ALL else (mode.value,)
    return [Phase(c, auto) for c in chaos for auto in (False, True)]


@dataclass
class PhaseResult:
    phase: Phase
    timeline: Timeline
    counts: OrderCounts
    recording: Recording
    window: Window
    notes: list[str] = field(default_factory=list)
    incident: str | None = None  # the postmortem draft, Markdown
    alerts: AlertTimes | None = None
    alert_error: str | None = None

    def problems(self) -> list[str]:
        found = []
        c = self.counts
        if c.lost or c.pending or c.errors:
            found.append(f"orders lost {c.lost}, still pending {c.pending}, errors {c.errors}")
        if self.timeline.remediated is None:
            found.append("the chaos was not remediated")
        if self.timeline.first_fulfilled_after is None:
            found.append("no order was fulfilled after remediation")
        if self.alert_error:
            found.append(f"alerts not replayed: {self.alert_error}")
        if self.alerts is not None:
            if self.alerts.before_chaos:
                found.append(f"fired on a healthy service: {sorted(self.alerts.before_chaos)}")
            fired = set(self.alerts.fired)
            if self.phase.auto and fired & NOT_EXPECTED_WHEN_AUTO:
                found.append(f"paged although remediated: {sorted(fired & NOT_EXPECTED_WHEN_AUTO)}")
            missing = set() if self.phase.auto else EXPECTED_ALERTS[self.phase.chaos] - fired
            if missing:
                found.append(f"expected alerts did not fire: {sorted(missing)}")
        return found
