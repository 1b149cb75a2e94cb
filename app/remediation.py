"""What operators need to know about the factory, and the remediation link (resilience.md §3, §5).

`FactoryOps` keeps the facts `/factory/status` shows: recent outcomes, the last success
and failure, the waiting remediation link (stored in the database so replicas and
restarts see it), remediation attempts, and whether our API key is refused. It follows
the link itself when allowed (auto-remediation), or when an operator asks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Tracer
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.backoff import backoff_s, no_jitter
from app.config import Settings
from app.incidents import Conditions, IncidentRecorder
from app.models import (
    DinerOrder,
    EventKind,
    FactoryEvent,
    OrderStatus,
    RemediationAttempt,
    RemediationLink,
    utcnow,
)
from app.supervisor import Heartbeat
from clients.breaker import BreakerState, FactoryBreaker
from clients.client import FactoryClient
from clients.remediation import followable_url, redact
from clients.schemas import FactoryResult, Outcome
from telemetry.metrics import PizzaMetrics

log = logging.getLogger("app.factory")


def dialect_insert(session: AsyncSession) -> Any:
    """INSERT for this session's database, with its ON CONFLICT clause."""
    dialect = session.get_bind().dialect.name
    table = RemediationLink.__table__  # type: ignore[attr-defined]
    return sqlite_insert(table) if dialect == "sqlite" else postgresql_insert(table)


AUTO_REMEDIATION_TRIES = 5
CHAOS_KINDS = (EventKind.CHAOS_REPORTED, EventKind.CHAOS_CLEARED)
RECENT_WINDOW_S = 900.0
PROBE_PERIOD_S = 60.0
PROBE_PERIOD_FAULT_S = 15.0
# A failed or timed-out call reads the vendor record at once, then at most this often
# while failures go on (resilience.md §4b: the throttle's first late answer takes 32 s).
CHAOS_READ_MIN_S = 5.0
CHAOS_PHASES = ("scheduled", "running")


def chaos_phase(chaos: dict[str, Any], now: datetime) -> str:
    """`scheduled` while the reported chaos' `startDate` is ahead, else `running`."""
    start = chaos.get("startDate")
    try:
        at = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    except ValueError:
        return "running"  # no readable start: the factory says it is there, take it as now
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return "scheduled" if at > now else "running"


@dataclass(slots=True)
class LastFailure:
    at: datetime
    outcome: Outcome
    reason: str


class FactoryOps:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        client: FactoryClient,
        breaker: FactoryBreaker,
        metrics: PizzaMetrics,
        factory_url: str,
        api_key: str,
        clock: Callable[[], float] = time.monotonic,
        incidents: IncidentRecorder | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._client = client
        self._breaker = breaker
        self._metrics = metrics
        self.factory_url = factory_url
        self._api_key = api_key
        self._clock = clock
        self.incidents = incidents
        self._tracer = tracer or trace.get_tracer(__name__)
        self.config_fault: str | None = None
        # The chaos the vendor record reports (scheduled or running), as last read.
        self.chaos_scheduled: dict[str, Any] | None = None
        self._chaos_seen: str | None = None  # the detail of the last chaos_reported event
        self._chaos_read_at: float | None = None
        self.last_success: datetime | None = None
        self.last_failure: LastFailure | None = None
        self._recent: deque[tuple[float, Outcome]] = deque(maxlen=10_000)
        self._known_links: dict[str, int] = {}
        # Whether a link may still wait (this process saw one, or found one at start):
        # keeps the clean-pizza path free of a database query.
        self._links_waiting = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()
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
            self._recent.append((self._clock(), result.outcome))
        if result.outcome is not Outcome.SUCCESS or result.report_url or self._chaos_seen:
            # Failing, a link, or the end of a reported chaos: what does the vendor say?
            self.read_chaos_soon()
        if result.outcome is Outcome.SUCCESS or result.has_pizza:
            self.last_success = utcnow()
        if counted and result.outcome is not Outcome.SUCCESS:
            self.last_failure = LastFailure(utcnow(), result.outcome, result.reason)
        if result.outcome is Outcome.UNAUTHORIZED:
            self._set_config_fault(result.reason)
        if result.report_url:
            await self.record_link(result.report_url, result.outcome)
        elif result.outcome is Outcome.SUCCESS and self._links_waiting:
            await self._clear_links()

    def observe_timeout(self, reason: str) -> None:
        """The customer's wait ended before the factory answered."""
        self._recent.append((self._clock(), Outcome.TIMEOUT))
        self.last_failure = LastFailure(utcnow(), Outcome.TIMEOUT, reason)
        self.read_chaos_soon()

    # -- chaos the factory reports (resilience.md §4b) -----------------------------------

    def read_chaos_soon(self, *, now: bool = False) -> None:
        """Read the vendor record off the order path, at most every CHAOS_READ_MIN_S."""
        at = self._clock()
        recent = self._chaos_read_at is not None and at - self._chaos_read_at < CHAOS_READ_MIN_S
        if recent and not now:
            return
        self._chaos_read_at = at
        self._spawn(self._probe_logged())

    async def _probe_logged(self) -> None:
        try:
            await self.probe()
        except (SQLAlchemyError, OSError) as exc:
            log.error("factory probe: could not record its result: %s", exc)

    def chaos(self) -> dict[str, Any] | None:
        """The reported chaos for /factory/status: type, start, scheduled or running."""
        chaos = self.chaos_scheduled
        if chaos is None:
            return None
        return {
            "type": chaos.get("type"),
            "startDate": chaos.get("startDate"),
            "phase": chaos_phase(chaos, utcnow()),
        }

    async def _chaos_news(self, chaos: dict[str, Any] | None) -> None:
        """The metric always; a timeline event once per distinct chaos and phase."""
        if chaos is None:
            self._metrics.set_chaos(None, None)
            if self._chaos_seen is not None:
                self._chaos_seen = None
                log.warning("the factory no longer reports chaos")
                await self._event(EventKind.CHAOS_CLEARED, "the factory no longer reports chaos")
            return
        kind, start = str(chaos.get("type")), str(chaos.get("startDate"))
        phase = chaos_phase(chaos, utcnow())
        self._metrics.set_chaos(kind, phase)
        when = "scheduled for" if phase == "scheduled" else "running since"
        detail = f"{phase}: the factory reports chaos {kind} {when} {start}"
        if detail == self._chaos_seen:
            return
        self._chaos_seen = detail
        async with self._sessions() as session:
            latest = (
                await session.exec(
                    select(FactoryEvent)
                    .where(
                        col(FactoryEvent.kind).in_(
                            (EventKind.CHAOS_REPORTED, EventKind.CHAOS_CLEARED)
                        )
                    )
                    .order_by(col(FactoryEvent.id).desc())
                )
            ).first()
        if (
            latest is not None
            and latest.kind == EventKind.CHAOS_REPORTED
            and latest.detail == detail
        ):
            return  # told before: by another replica, or before a restart
        log.error("factory chaos reported: %s", detail)
        trace.get_current_span().add_event(
            "factory.chaos.reported", {"type": kind, "phase": phase, "start": start}
        )
        await self._event(EventKind.CHAOS_REPORTED, detail)

    def recent_outcomes(self) -> dict[str, int]:
        since = self._clock() - RECENT_WINDOW_S
        return dict(Counter(str(o) for at, o in self._recent if at >= since))

    def _set_config_fault(self, reason: str) -> None:
        fault = f"the factory refuses our FACTORY_API_KEY ({reason}): fix the key"
        if self.config_fault is None:
            log.error("configuration fault: %s", fault)
            self._event_soon(FactoryEvent(kind=EventKind.CONFIG_FAULT, detail=fault))
        self.config_fault = fault

    # -- the remediation link -------------------------------------------------------------

    def redact(self, text: str) -> str:
        return redact(text, self._api_key)

    async def record_link(self, url: str, outcome: Outcome) -> None:
        """Store a `reportUrl` once (database), tell everyone, and maybe follow it."""
        if url in self._known_links:
            return
        async with self._lock:
            if url in self._known_links:
                return
            redacted = self.redact(url)
            followable = self._followable(url) is not None
            async with self._sessions() as session:
                # ON CONFLICT, not a caught IntegrityError: the database's duplicate-key
                # message would quote the link, key and all, into the error and its span.
                insert = dialect_insert(session).values(
                    url=url,
                    redacted=redacted,
                    outcome=str(outcome),
                    followable=followable,
                    first_seen=utcnow(),
                )
                inserted = await session.execute(
                    insert.on_conflict_do_nothing(index_elements=["url"]).returning(
                        col(RemediationLink.id)
                    )
                )
                new = inserted.first() is not None
                await session.commit()
                # Stored before when not new: by another replica, or before a restart.
                link = (
                    await session.exec(select(RemediationLink).where(RemediationLink.url == url))
                ).one()
            assert link.id is not None
            self._known_links[url] = link.id
        self._links_waiting = True
        auto = self._settings.factory_auto_remediate and followable
        if not new:
            # Whoever stored it reported it; following it again is harmless ("No chaos
            # currently executing" counts as resolved) and covers a follower that died.
            if auto and link.resolved_at is None:
                self._spawn(self._auto_remediate(link.id))
            return
        self._metrics.set_remediation_pending(True)
        # An error, not a warning: the factory is down until someone (or the automation)
        # follows it, and the postmortem asked for an error-log alert that says so.
        log.error(
            "factory remediation link detected: %s (outcome %s, auto-remediation %s)",
            redacted,
            outcome,
            "on" if auto else "off",
        )
        trace.get_current_span().add_event(
            "factory.remediation_link.detected", {"link": redacted, "outcome": str(outcome)}
        )
        await self._store_event(FactoryEvent.link_detected(redacted, outcome))
        if auto:
            self._spawn(self._auto_remediate(link.id))

    def follow_url(self, url: str) -> str | None:
        """The URL the server follows for this link (FACTORY_URL's scheme, host and port),
        or None for a foreign link: what the status page may offer to open."""
        return self._followable(url)

    def _followable(self, url: str) -> str | None:
        return followable_url(
            url,
            factory_url=self.factory_url,
            allowed_hosts=self._settings.factory_remediation_hosts,
        )

    async def load(self) -> None:
        """At start: remember whether links wait from before (another replica, a restart)."""
        async with self._sessions() as session:
            self._links_waiting = await self.waiting_link(session) is not None
        self._metrics.set_remediation_pending(self._links_waiting)

    async def _clear_links(self) -> None:
        """The factory made a clean pizza, without a link: whatever link waited is moot.

        A link the service may not follow (another host) can only be followed by a
        person; if they did, or the factory recovered by itself, this is how it ends.
        """
        self._links_waiting = False
        async with self._sessions() as session:
            cleared = await session.execute(
                update(RemediationLink)
                .where(col(RemediationLink.resolved_at).is_(None))
                .values(resolved_at=utcnow())
            )
            await session.commit()
        self._metrics.set_remediation_pending(False)
        if cleared.rowcount:  # type: ignore[attr-defined]
            await self._event(
                EventKind.LINKS_CLEARED,
                "the factory made a pizza without a link: the chaos is over",
            )

    async def waiting_link(self, session: AsyncSession) -> RemediationLink | None:
        return (
            await session.exec(
                select(RemediationLink)
                .where(col(RemediationLink.resolved_at).is_(None))
                .order_by(col(RemediationLink.id).desc())
            )
        ).first()

    async def remediate(
        self, *, mode: str, user_id: int | None = None
    ) -> RemediationAttempt | None:
        """Follow the newest waiting link from the server; None when no link waits."""
        async with self._sessions() as session:
            link = await self.waiting_link(session)
        if link is None or link.id is None:
            return None
        return await self._follow(link.id, mode=mode, user_id=user_id)

    async def _follow(self, link_id: int, *, mode: str, user_id: int | None) -> RemediationAttempt:
        # Its own span: an auto-remediation outlives the order's span that spawned it, and
        # an event on an ended span is dropped.
        with self._tracer.start_as_current_span(
            "factory.remediate", attributes={"pizza.remediation.mode": mode}
        ):
            return await self._attempt_link(link_id, mode=mode, user_id=user_id)

    async def _attempt_link(
        self, link_id: int, *, mode: str, user_id: int | None
    ) -> RemediationAttempt:
        async with self._sessions() as session:
            link = await session.get(RemediationLink, link_id)
        assert link is not None
        # No session is held while the factory answers (up to 10 s).
        attempt = RemediationAttempt(link_id=link_id, mode=mode, by_user_id=user_id, message="")
        target = self._followable(link.url)
        if link.resolved_at is not None:
            attempt.message, attempt.resolved = "already resolved", True
        elif target is None:
            attempt.message = (
                "link host is not the factory's nor in FACTORY_REMEDIATION_HOSTS; "
                "open it yourself if you trust it"
            )
        else:
            answer = await self._client.follow_link(target)
            attempt.status_code = answer.status_code
            attempt.message = answer.message[:300]
            attempt.resolved = answer.resolved
        async with self._sessions() as session:
            session.add(attempt)
            if attempt.resolved:
                await session.execute(
                    update(RemediationLink)
                    .where(
                        col(RemediationLink.id) == link_id,
                        col(RemediationLink.resolved_at).is_(None),
                    )
                    .values(resolved_at=utcnow())
                )
            await session.commit()
        result = "resolved" if attempt.resolved else "unresolved"
        self._metrics.remediation_attempt(mode, result)
        log.warning("remediation attempt (%s): %s: %s", mode, result, attempt.message)
        trace.get_current_span().add_event(
            "factory.remediation.attempt", {"mode": mode, "result": result}
        )
        await self._event(
            EventKind.REMEDIATION,
            f"{mode} by {user_id or 'service'}: {attempt.message}",
            user_id=user_id,
        )
        if attempt.resolved:
            await self._after_resolution()
        return attempt

    async def _after_resolution(self) -> None:
        async with self._sessions() as session:
            waiting = await self.waiting_link(session)
            # Pending orders need not wait out their backoff: the factory is back.
            await session.execute(
                update(DinerOrder)
                .where(col(DinerOrder.status) == OrderStatus.PENDING)
                .values(next_attempt_at=utcnow())
            )
            await session.commit()
        self._metrics.set_remediation_pending(waiting is not None)
        await self._breaker.half_open()
        self.read_chaos_soon(now=True)  # the chaos should be over: say so when it is

    async def _auto_remediate(self, link_id: int) -> None:
        base = self._settings.remediation_retry_s
        for try_number in range(1, AUTO_REMEDIATION_TRIES + 1):
            attempt = await self._follow(link_id, mode="auto", user_id=None)
            if attempt.resolved or try_number == AUTO_REMEDIATION_TRIES:
                return
            # Doubling from REMEDIATION_RETRY_S, exactly: no cap is reached in five tries.
            cap = base * 2**AUTO_REMEDIATION_TRIES
            await asyncio.sleep(backoff_s(try_number, base_s=base, max_s=cap, rand=no_jitter))

    # -- the start-up and periodic probe -------------------------------------------------

    async def probe(self) -> None:
        """Check our key (and any scheduled chaos) without making a pizza."""
        answer = await self._client.probe_vendor()
        if answer.outcome is Outcome.SUCCESS:
            # Only a read vendor record says whether chaos is there.
            self.chaos_scheduled = answer.chaos
            await self._chaos_news(answer.chaos)
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
        await self._event(EventKind.OPERATOR, f"user {user_id}: {action}", user_id=user_id)

    def _event_soon(self, event: FactoryEvent) -> None:
        self._spawn(self._store_event(event))

    async def _event(self, kind: EventKind, detail: str, *, user_id: int | None = None) -> None:
        await self._store_event(FactoryEvent(kind=kind, detail=detail, user_id=user_id))

    async def _store_event(self, event: FactoryEvent) -> None:
        event.detail = self.redact(event.detail)
        if event.link is not None:
            event.link = self.redact(event.link)
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
            chaos=self._chaos_seen,
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
