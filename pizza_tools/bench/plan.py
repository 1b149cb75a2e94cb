"""What `pizza bench` measures with, and for how long: the shared figures of every
measurement and the two plans (the full bench, and the short form CI runs)."""

from __future__ import annotations

from dataclasses import dataclass

CONCURRENCY = 32
SCALING = (1, 8, 32, 128)
# Beyond the sweep: answers counted as pending under load at these (must be none).
PENDING_PROBES = (128, 256)
PENDING_STATUSES = ("202", "503")
DINERS = 8
ADMIN_EMAIL = "bench-admin@jwt.com"
MENU_PIZZA = ("Veggie", 0.0038)
API_TIMEOUT_S = 30.0
POLL_S = 0.05
# The drain: recovery must start promptly once the factory is back (docs/resilience.md).
DRAIN_SETTINGS = {
    # On, the service follows the fail chaos's link at once and ends the outage itself,
    # so no backlog would pile up: the bench ends the chaos, as a recovering factory would.
    "FACTORY_AUTO_REMEDIATE": "false",
    "BREAKER_RESET_S": "1",
    "RETRY_BASE_S": "0.2",
    "RETRY_MAX_S": "1",
}


@dataclass(frozen=True)
class Plan:
    """How long each measurement runs: the full bench, or the short form CI runs."""

    quick: bool
    window_s: float  # per timed measurement, after its warm-up
    warmup_s: float
    rounds: int  # interleaved rounds of the side-by-side measurements
    answers_per_worker: int  # a timed window holds at least this many answers per caller
    open_requests: int  # orders at concurrency 1 with the breaker open
    idle_s: float  # the idle service's CPU is read over this long
    drain_orders: int
    settle_timeout_s: float  # for a backlog to be made


FULL = Plan(
    quick=False,
    window_s=2.5,
    warmup_s=1.0,
    rounds=2,
    answers_per_worker=2,
    open_requests=500,
    idle_s=10.0,
    drain_orders=2000,
    settle_timeout_s=240.0,
)
QUICK = Plan(
    quick=True,
    window_s=0.5,
    warmup_s=0.3,
    rounds=1,
    answers_per_worker=1,
    open_requests=50,
    idle_s=2.0,
    drain_orders=200,
    settle_timeout_s=60.0,
)
