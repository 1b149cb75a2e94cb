"""The factory's circuit breaker, correct under asyncio.

Its state is one immutable value moved by one pure function (``machine``:
``transition(state, event, now)``): a call's outcome, the reset timeout elapsing, an
operator forcing it, a remediation and a copy from Redis are all events it turns into
the next state. Around it, in their own modules:

- ``state``, ``readings`` and ``breaker``: what the breaker is, says and admits.
  Admission is ours: pybreaker's open state lets *every* caller through once the reset
  timeout has passed, so we refuse open calls ourselves and let exactly one probe in;
  ``Outcome.REJECTED``, a block left without ``record()`` and a cancelled block count as
  nothing (pybreaker would count an excluded exception as a success); forced open /
  forced closed stick until handed back (pybreaker's ``open()`` expires); transition and
  refused-call listeners, a transition reported once across replicas.
- ``counting``: pybreaker keeps the failure counter and says when failures trip the
  breaker, through its public API (``calling()`` and a storage of our own).
- ``shared``: with ``redis_url`` the state is shared across replicas through Redis, but
  kept in memory and refreshed in the background, so a call on the closed path costs no
  round trip. Redis is authoritative; while it is unreachable each replica keeps its own
  state in memory, and when Redis is back (or after it lost its data) the newest
  decision wins: each state carries when it was decided, and a replica whose copy lost
  track of Redis writes its own back if it is newer, else adopts Redis's.
  ``remediated(at)`` tells the breaker of a remediation another replica made (the service
  reads it from its database while Redis is away).

State reporting: ``state`` is OPEN until the reset timeout has passed, then HALF_OPEN (a
probe would be let in now); ``since`` is then ``opened_at + reset_timeout``. The
OPEN -> HALF_OPEN listener event fires when that is acted on: the next ``guard()`` or
``half_open()``.

Time: the injected ``clients.clock.Clock`` (``FactoryBreaker(clock=...)``) is the only
time the breaker reads, so a test moves a manual clock.
"""

from clients.breaker.breaker import FactoryBreaker
from clients.breaker.counting import FactoryCallFailed
from clients.breaker.shared import KEY_PREFIX, PROBE_TTL_MARGIN_S, PROBE_TTL_S
from clients.breaker.state import BreakerState, CallRefused, Ticket, TransitionListener

__all__ = [
    "KEY_PREFIX",
    "PROBE_TTL_MARGIN_S",
    "PROBE_TTL_S",
    "BreakerState",
    "CallRefused",
    "FactoryBreaker",
    "FactoryCallFailed",
    "Ticket",
    "TransitionListener",
]
