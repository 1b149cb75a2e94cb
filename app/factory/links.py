"""The remediation link: stored once in the database so replicas and restarts see it,
followed by the service when its host is the factory's (automatic remediation) or when an
operator asks, and moot once the factory makes a clean pizza (docs/resilience.md).
A remediation made on another replica reaches this one's breaker through Redis, or,
while Redis cannot tell it, from the database (`watch_forever`).

Order matters when a follow resolves the chaos: the breaker is half-opened first, and only
then is the remediation recorded as done. Whoever sees it done (an operator, the pending
orders it frees, another replica's watch) then finds a breaker that lets a probe in, never
a resolved remediation behind a breaker still refusing every call. Its timeline event is
timed when the factory answers, before the half-open, and written after the record: the
timeline shows the remediation before the breaker changes it causes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Tracer
from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.backoff import backoff_s, no_jitter
from app.factory.context import FactoryContext
from app.models import (
    DinerOrder,
    EventKind,
    FactoryEvent,
    OrderStatus,
    RemediationAttempt,
    RemediationLink,
)
from clients.breaker import BreakerState
from clients.remediation import followable_url
from clients.schemas import Outcome

log = logging.getLogger("app.factory")

AUTO_REMEDIATION_TRIES = 5
# While the breaker is open and Redis does not carry the other replicas' decisions (away,
# or not configured), the database is read this often for a remediation made elsewhere.
REMEDIATION_WATCH_S = 1.0


def dialect_insert(session: AsyncSession) -> Any:
    """INSERT for this session's database, with its ON CONFLICT clause."""
    dialect = session.get_bind().dialect.name
    table = RemediationLink.__table__  # type: ignore[attr-defined]
    return sqlite_insert(table) if dialect == "sqlite" else postgresql_insert(table)


class RemediationLinks:
    """The links the factory returned: recorded, followed, cleared."""

    def __init__(
        self,
        context: FactoryContext,
        *,
        tracer: Tracer,
        redact: Callable[[str], str],
        spawn: Callable[[Any], None],
        event: Callable[..., Awaitable[None]],
        store_event: Callable[[FactoryEvent], Awaitable[None]],
        read_chaos_now: Callable[[], None],
    ) -> None:
        self._clock = context.clock
        self._settings = context.settings
        self._sessions = context.sessions
        self._client = context.client
        self._breaker = context.breaker
        self._metrics = context.metrics
        self.factory_url = context.factory_url
        self._tracer = tracer
        self._redact = redact
        self._spawn = spawn
        self._event = event
        self._store_event = store_event
        self._read_chaos_now = read_chaos_now
        self._known_links: dict[str, int] = {}
        self._breaker_moved = asyncio.Event()
        context.breaker.add_listener(lambda _old, _new, _origin: self._breaker_moved.set())
        # Whether a link may still wait (this process saw one, or found one at start):
        # keeps the clean-pizza path free of a database query.
        self.waiting = False
        self._lock = asyncio.Lock()

    async def record(self, url: str, outcome: Outcome) -> None:
        """Store a `reportUrl` once (database), tell everyone, and maybe follow it."""
        if url in self._known_links:
            return
        async with self._lock:
            if url in self._known_links:
                return
            followed = self._followable(url)
            followable = followed is not None
            # People read the link as the service follows it (FACTORY_URL's scheme, host
            # and port; the factory writes https and no port whatever it is reached at),
            # or as the factory sent it when it is not the service's to follow.
            redacted = self._redact(followed or url)
            async with self._sessions() as session:
                # ON CONFLICT, not a caught IntegrityError: the database's duplicate-key
                # message would quote the link, key and all, into the error and its span.
                insert = dialect_insert(session).values(
                    url=url,
                    redacted=redacted,
                    outcome=str(outcome),
                    followable=followable,
                    first_seen=self._clock.now(),
                )
                inserted = await session.exec(
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
        self.waiting = True
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
            self.waiting = await self.waiting_link(session) is not None
        self._metrics.set_remediation_pending(self.waiting)

    async def clear(self) -> None:
        """The factory made a clean pizza, without a link: whatever link waited is moot.

        A link the service may not follow (another host) can only be followed by a
        person; if they did, or the factory recovered by itself, this is how it ends.
        """
        self.waiting = False
        async with self._sessions() as session:
            cleared = await session.exec(
                update(RemediationLink)
                .where(col(RemediationLink.resolved_at).is_(None))
                .values(resolved_at=self._clock.now())
            )
            await session.commit()
        self._metrics.set_remediation_pending(False)
        if cleared.rowcount:
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
        attempt = RemediationAttempt(
            link_id=link_id, at=self._clock.now(), mode=mode, by_user_id=user_id, message=""
        )
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
        # Timed now, written below: on the timeline the remediation comes before the
        # breaker changes it causes, even when a probe closes the breaker at once.
        answered = FactoryEvent(
            kind=EventKind.REMEDIATION,
            # Who acted is the event's user_id, shown by name where it is read.
            detail=f"{mode}: {attempt.message}",
            user_id=user_id,
        )
        if attempt.resolved:
            # Before it is recorded as done: see the module docstring.
            await self._breaker.half_open()
        async with self._sessions() as session:
            session.add(attempt)
            if attempt.resolved:
                await session.exec(
                    update(RemediationLink)
                    .where(
                        col(RemediationLink.id) == link_id,
                        col(RemediationLink.resolved_at).is_(None),
                    )
                    .values(resolved_at=self._clock.now())
                )
            await session.commit()
        result = "resolved" if attempt.resolved else "unresolved"
        self._metrics.remediation_attempt(mode, result)
        log.warning("remediation attempt (%s): %s: %s", mode, result, attempt.message)
        trace.get_current_span().add_event(
            "factory.remediation.attempt", {"mode": mode, "result": result}
        )
        await self._store_event(answered)
        if attempt.resolved:
            await self._after_resolution()
        return attempt

    async def _after_resolution(self) -> None:
        async with self._sessions() as session:
            waiting = await self.waiting_link(session)
            # Pending orders need not wait out their backoff: the factory is back.
            await session.exec(
                update(DinerOrder)
                .where(col(DinerOrder.status) == OrderStatus.PENDING)
                .values(next_attempt_at=self._clock.now())
            )
            await session.commit()
        self._metrics.set_remediation_pending(waiting is not None)
        self._read_chaos_now()  # the chaos should be over: say so when it is

    async def watch_forever(self) -> None:
        """Learn of a remediation made on another replica from the database, within
        REMEDIATION_WATCH_S, while this replica's breaker is open and Redis does not tell
        it (away, or not configured): the breaker then lets a probe in instead of refusing
        a fixed factory until BREAKER_RESET_S. Sleeps while the breaker is not open."""
        while True:
            if self._breaker.state is not BreakerState.OPEN:
                self._breaker_moved.clear()
                await self._breaker_moved.wait()
                continue
            await asyncio.sleep(REMEDIATION_WATCH_S)
            if self._breaker.shared or self._breaker.state is not BreakerState.OPEN:
                continue
            try:
                at = await self._last_remediation()
            except (SQLAlchemyError, OSError) as exc:
                log.error("remediation watch: could not read the database: %s", exc)
                continue
            if at is not None:
                await self._breaker.remediated(at)

    async def _last_remediation(self) -> datetime | None:
        """When the newest successful remediation (on any replica) was made."""
        async with self._sessions() as session:
            newest = await session.exec(
                select(func.max(RemediationAttempt.at)).where(col(RemediationAttempt.resolved))
            )
            return newest.one()

    async def _auto_remediate(self, link_id: int) -> None:
        base = self._settings.remediation_retry_s
        for try_number in range(1, AUTO_REMEDIATION_TRIES + 1):
            attempt = await self._follow(link_id, mode="auto", user_id=None)
            if attempt.resolved or try_number == AUTO_REMEDIATION_TRIES:
                return
            # Doubling from REMEDIATION_RETRY_S, exactly: no cap is reached in five tries.
            cap = base * 2**AUTO_REMEDIATION_TRIES
            await asyncio.sleep(backoff_s(try_number, base_s=base, max_s=cap, rand=no_jitter))
