"""What operators need to know about the factory (docs/resilience.md#remediation).

`FactoryOps` keeps the facts `/factory/status` shows: recent outcomes, the last success
and failure, whether our API key is refused, the chaos the factory reports (chaos.py)
and the waiting remediation link (links.py, which follows it when allowed or when an
operator asks); it probes the factory, and writes the operator's history of events
that the incident recorder reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Tracer
from sqlalchemy.exc import SQLAlchemyError

from app.factory.chaos import ChaosWatch
from app.factory.context import FactoryContext
from app.factory.links import RemediationLinks
from app.incidents import Conditions, IncidentRecorder
from app.models import (
    EventKind,
    FactoryEvent,
)
from app.supervisor import Heartbeat
from clients.breaker import BreakerState
from clients.redaction import redact_factory_key
from clients.schemas import FactoryResult, Outcome

log = logging.getLogger("app.factory")

RECENT_WINDOW_S = 900.0
PROBE_PERIOD_S = 60.0
PROBE_PERIOD_FAULT_S = 15.0


@dataclass(slots=True)
class LastFailure:
    at: datetime
    outcome: Outcome
    reason: str


class FactoryOps:
    def __init__(
        self,
        context: FactoryContext,
        *,
        incidents: IncidentRecorder | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._settings = context.settings
        self._sessions = context.sessions
        self._client = context.client
        self._breaker = breaker = context.breaker
        self._metrics = context.metrics
        self.factory_url = context.factory_url
        self._api_key = context.api_key
        self._clock = context.clock
        self.incidents = incidents
        self._tracer = tracer or trace.get_tracer(__name__)
        self.config_fault: str | None = None
        self.last_success: datetime | None = None
        self.last_failure: LastFailure | None = None
        self._recent: deque[tuple[float, Outcome]] = deque(maxlen=10_000)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.chaos = ChaosWatch(
            sessions=context.sessions,
            metrics=context.metrics,
            clock=context.clock,
            read=lambda: self._spawn(self._probe_logged()),
            event=self._event,
            spawn=self._spawn,
        )
        self.links = RemediationLinks(
            context,
            tracer=self._tracer,
            redact=self.redact_factory_key,
            spawn=self._spawn,
            event=self._event,
            store_event=self._store_event,
            read_chaos_now=lambda: self.chaos.read_soon(now=True),
        )
        # Beaten after each probe that ran to its end (probe_forever).
        self.probe_heartbeat = Heartbeat()
        breaker.add_listener(self._on_transition)

    # -- facts from every factory answer -------------------------------------------------

    async def observe(self, result: FactoryResult, *, counted: bool = True) -> None:
        """Record one classified answer: outcome counts, last success/failure, the link.

        A late answer (the customer's wait already ended, counted as a timeout) is not
        `counted` again, but its pizza and its link are facts all the same.
        """
        if counted:
            self._recent.append((self._clock.monotonic(), result.outcome))
        if result.outcome is not Outcome.SUCCESS or result.report_url or self.chaos.seen:
            # Failing, a link, or the end of a reported chaos: what does the vendor say?
            self.chaos.read_soon()
        if result.outcome is Outcome.SUCCESS or result.has_pizza:
            self.last_success = self._clock.now()
        if counted and result.outcome is not Outcome.SUCCESS:
            self.last_failure = LastFailure(self._clock.now(), result.outcome, result.reason)
        if result.outcome is Outcome.UNAUTHORIZED:
            self._set_config_fault(result.reason)
        if result.report_url:
            await self.links.record(result.report_url, result.outcome)
        elif result.outcome is Outcome.SUCCESS and self.links.waiting:
            await self.links.clear()

    def observe_timeout(self, reason: str) -> None:
        """The customer's wait ended before the factory answered."""
        self._recent.append((self._clock.monotonic(), Outcome.TIMEOUT))
        self.last_failure = LastFailure(self._clock.now(), Outcome.TIMEOUT, reason)
        self.chaos.read_soon()

    async def _probe_logged(self) -> None:
        try:
            await self.probe()
        except (SQLAlchemyError, OSError) as exc:
            log.error("factory probe: could not record its result: %s", exc)

    def answers_slowly(self) -> bool:
        """Whether the factory is known to answer slowly now: its vendor record reports a
        throttle running, or our last call to it (within RECENT_WINDOW_S) timed out or
        made a slow pizza."""
        chaos = self.chaos.shown()
        if chaos is not None and (chaos["type"], chaos["phase"]) == ("throttle", "running"):
            return True
        if not self._recent:
            return False
        at, outcome = self._recent[-1]
        recent = at >= self._clock.monotonic() - RECENT_WINDOW_S
        return recent and outcome in (Outcome.TIMEOUT, Outcome.SLOW)

    def recent_outcomes(self) -> dict[str, int]:
        since = self._clock.monotonic() - RECENT_WINDOW_S
        return dict(Counter(str(o) for at, o in self._recent if at >= since))

    def _set_config_fault(self, reason: str) -> None:
        fault = f"the factory refuses our FACTORY_API_KEY ({reason}): fix the key"
        if self.config_fault is None:
            log.error("configuration fault: %s", fault)
            self._event_soon(FactoryEvent(kind=EventKind.CONFIG_FAULT, detail=fault))
        self.config_fault = fault

    def redact_factory_key(self, text: str) -> str:
        """`text` without our factory API key (nor any key a remediation link carries)."""
        return redact_factory_key(text, self._api_key)

    # -- the start-up and periodic probe -------------------------------------------------

    async def probe(self) -> None:
        """Check our key (and any scheduled chaos) without making a pizza."""
        answer = await self._client.probe_vendor()
        if answer.outcome is Outcome.SUCCESS:
            # Only a read vendor record says whether chaos is there.
            await self.chaos.news(answer.chaos)
        if answer.outcome is Outcome.UNAUTHORIZED:
            self._set_config_fault(answer.reason)
        elif answer.outcome is not Outcome.SUCCESS:
            log.warning("factory probe: %s", answer.reason)
        elif self.config_fault is not None:
            # Cleared first: orders must flow again even if recording the event fails.
            self.config_fault = None
            log.warning("the factory accepts our FACTORY_API_KEY again")
            await self._event(EventKind.CONFIG_FAULT_CLEARED, "the factory accepts our key again")

    async def probe_forever(self) -> None:
        """Probes until cancelled; anything unexpected propagates to the supervisor."""
        while True:
            try:
                # One trace per probe (once a minute): its call and what it recorded.
                with self._tracer.start_as_current_span("factory.probe"):
                    await self.probe()
            except (SQLAlchemyError, OSError) as exc:
                # Recording the probe's news failed; the probe itself goes on.
                log.error("factory probe: could not record its result: %s", exc)
            else:
                self.probe_heartbeat.beat()
            period = PROBE_PERIOD_FAULT_S if self.config_fault else PROBE_PERIOD_S
            await asyncio.sleep(period)

    # -- events: the operator's history ---------------------------------------------------

    def _on_transition(self, old: BreakerState, new: BreakerState, origin: bool) -> None:
        self._metrics.set_breaker_state(str(new))
        if origin:
            level = logging.ERROR if new is BreakerState.OPEN else logging.WARNING
            log.log(level, "factory breaker %s -> %s", old, new)
            trace.get_current_span().add_event(
                "factory.breaker.state_change", {"from": str(old), "to": str(new)}
            )
            self._event_soon(FactoryEvent.breaker(old, new))

    async def note_operator(self, user_id: int, action: str) -> None:
        log.warning("operator %s: %s", user_id, action)
        # Who acted is the event's user_id, shown by name where it is read.
        await self._event(EventKind.OPERATOR, action, user_id=user_id)

    def _event_soon(self, event: FactoryEvent) -> None:
        self._spawn(self._store_event(event))

    async def _event(self, kind: EventKind, detail: str, *, user_id: int | None = None) -> None:
        await self._store_event(FactoryEvent(kind=kind, detail=detail, user_id=user_id))

    async def _store_event(self, event: FactoryEvent) -> None:
        event.detail = self.redact_factory_key(event.detail)
        if event.link is not None:
            event.link = self.redact_factory_key(event.link)
        async with self._sessions() as session:
            session.add(event)
            await session.commit()
        if self.incidents is not None:
            # Every factory event is a fact of an incident's timeline, or opens/closes one.
            await self.incidents.on_event(event, self.conditions())

    def conditions(self) -> Conditions:
        """What this replica knows now, for the incident recorder."""
        failure = self.last_failure
        return Conditions(
            breaker=self._breaker.state,
            config_fault=self.config_fault,
            last_failure=f"{failure.outcome}: {failure.reason}" if failure else None,
            chaos=self.chaos.seen,
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
