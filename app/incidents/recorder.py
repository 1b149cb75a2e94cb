"""Incidents as data: the service keeps its own record of each factory outage.

An incident opens at the first sign of a factory fault: the breaker leaves closed, a
remediation link appears, or the factory refuses our key (`unauthorized`). It closes when
the breaker is closed again (automatically: a forced state is an operator's override),
no remediation link is waiting and the factory accepts our key. A new sign within
REOPEN_WINDOW_S of the close reopens the same incident: a flapping outage is one incident.

Everything is in the database, so replicas and restarts share it. At most one incident
is open: `open_slot` is unique and set only while open, so when two replicas see the
same fault at once, one insert (or reopening update) wins and the other joins it. Every
factory event goes through `on_event` (FactoryOps._store_event is the one funnel); while an
incident is open, or within the window after it closed, the event is tagged with it and
becomes its timeline. Order facts (first failed order, impact) are read from the orders
table when the incident is read (app/incidents/view.py), so the order path pays nothing
beyond `deferred_at`.

Pages go out through `WebhookPager` (opened, reopened, link detected, closed), never
waited for; each delivery's result is noted on the timeline.

What an event means (a sign of a fault, a chance to close) is in signs.py; the queries
on the incidents table are in store.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.incidents.impact import impact_of
from app.incidents.signs import TRIGGERS, Conditions, fault_sign, fault_text, may_close
from app.incidents.store import OPEN, first_deferral, latest_incident, note, open_incident, tag
from app.incidents.webhook import WEBHOOK_TIMEOUT_S, Delivery, Message, WebhookPager
from app.models import EventKind, FactoryEvent, Incident, RemediationLink
from app.times import iso
from clients.clock import SYSTEM_CLOCK, Clock
from clients.redaction import redact_factory_key
from clients.transport import verified_tls

log = logging.getLogger("app.incidents")

REOPEN_WINDOW_S = 300.0
DEFAULT_PUBLIC_URL = "http://127.0.0.1:3000"  # PUBLIC_URL's default for the default port
WATCH_PERIOD_S = 15.0
OPEN_ATTEMPTS = 3


def create_recorder(
    *,
    sessions: async_sessionmaker[AsyncSession],
    webhook_url: str | None,
    public_url: str | None,
    api_key: str,
    clock: Clock = SYSTEM_CLOCK,
) -> IncidentRecorder:
    """The recorder the lifespan runs: paging ALERT_WEBHOOK_URL when it is set."""
    http = pager = None
    if webhook_url:
        http = httpx.AsyncClient(
            timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False, verify=verified_tls()
        )
        pager = WebhookPager(http, webhook_url)
    return IncidentRecorder(
        sessions=sessions,
        clock=clock,
        pager=pager,
        pager_http=http,
        public_url=public_url or DEFAULT_PUBLIC_URL,
        redact=functools.partial(redact_factory_key, api_key=api_key),
    )


class IncidentRecorder:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        pager: WebhookPager | None = None,
        pager_http: httpx.AsyncClient | None = None,
        public_url: str = DEFAULT_PUBLIC_URL,
        redact: Callable[[str], str] = lambda text: text,
        clock: Clock = SYSTEM_CLOCK,
        reopen_window_s: float = REOPEN_WINDOW_S,
    ) -> None:
        self._sessions = sessions
        self._pager = pager
        self._public_url = public_url
        self._redact = redact
        self._clock = clock
        self._window = timedelta(seconds=reopen_window_s)
        self._http = pager_http  # closed by aclose
        if pager is not None:
            pager.on_delivery = self._delivered

    def start(self) -> None:
        if self._pager is not None:
            self._pager.start()

    async def aclose(self) -> None:
        """Let queued pages go out (briefly), then stop."""
        if self._pager is not None:
            await self._pager.close()
        if self._http is not None:
            await self._http.aclose()

    @property
    def status_page(self) -> str:
        return f"{self._public_url}/factory/status"

    # -- the funnel ------------------------------------------------------------------------

    async def on_event(self, event: FactoryEvent, conditions: Conditions) -> None:
        """Fold one stored factory event into the incidents; never raises a database error."""
        try:
            await self._on_event(event, conditions)
        except (SQLAlchemyError, OSError):
            # The event itself is stored; an order or a remediation must not fail over this.
            log.exception("incident recorder: %s event not folded in", event.kind)

    async def _on_event(self, event: FactoryEvent, conditions: Conditions) -> None:
        sign = fault_sign(event)
        if sign is not None:
            incident_id, change = await self._open_or_join(event, sign, conditions)
            if change is not None:
                self._page(incident_id, f"incident.{change}")
            if event.kind == EventKind.LINK_DETECTED:
                self._page(incident_id, "incident.link_detected", link=event.link)
            if event.kind == EventKind.CHAOS_REPORTED:
                self._page(incident_id, "incident.chaos_reported", note=event.detail)
            return
        is_open = await self._join(event)
        if is_open and may_close(event):
            if event.kind == EventKind.CONFIG_FAULT_CLEARED:
                # Announced just before FactoryOps forgets the fault: this event is the news.
                conditions = dataclasses.replace(conditions, config_fault=None)
            if event.kind == EventKind.CHAOS_CLEARED:
                conditions = dataclasses.replace(conditions, chaos=None)
            await self.check(conditions)

    async def _open_or_join(
        self, event: FactoryEvent, sign: str, conditions: Conditions
    ) -> tuple[int, str | None]:
        """The open incident (opened or reopened here if none), with the event tagged."""
        async with self._sessions() as session:
            for _ in range(OPEN_ATTEMPTS):
                now = self._clock.now()
                current = await open_incident(session)
                latest = current or await latest_incident(session)
                if current is not None:
                    incident, change = current, None
                elif (
                    latest is not None
                    and latest.closed_at is not None
                    and (latest.closed_at >= now - self._window)
                ):
                    incident, change = latest, "reopened"
                    reopened = await session.exec(
                        update(Incident)
                        .where(col(Incident.id) == latest.id, col(Incident.open_slot).is_(None))
                        .values(open_slot=OPEN, closed_at=None, reopened=Incident.reopened + 1)
                    )
                    if reopened.rowcount != 1:
                        await session.rollback()
                        continue
                else:
                    change = "opened"
                    started = await first_deferral(
                        session, after=latest.closed_at if latest else None
                    )
                    incident = Incident(
                        opened_at=event.at,
                        started_at=min(event.at, started or event.at),
                        open_slot=OPEN,
                        trigger=sign,
                        fault=self._redact(fault_text(event, conditions))[:2000],
                    )
                    session.add(incident)
                try:
                    await session.flush()
                    assert incident.id is not None
                    incident_id = incident.id
                    await tag(session, event, incident_id)
                    if change is not None:
                        detail = f"{change} ({TRIGGERS[sign]}): {event.detail}"
                        session.add(note(incident_id, now, detail))
                    await session.commit()
                except IntegrityError:
                    # Another replica (or task) opened one meanwhile: join it.
                    await session.rollback()
                    continue
                if change is not None:
                    log.warning("factory incident %d %s: %s", incident_id, change, TRIGGERS[sign])
                return incident_id, change
        raise SQLAlchemyError("incident recorder: could not open or join an incident")

    async def _join(self, event: FactoryEvent) -> bool:
        """Tag the event with the open incident, or one closed within the window.

        Returns whether an incident is open.
        """
        async with self._sessions() as session:
            incident = await open_incident(session) or await latest_incident(session)
            if incident is None or incident.id is None:
                return False
            is_open = incident.closed_at is None
            if not is_open and incident.closed_at < event.at - self._window:  # type: ignore[operator]
                return False
            await tag(session, event, incident.id)
            await session.commit()
            return is_open

    async def check(self, conditions: Conditions) -> None:
        """Close the open incident if the factory is healthy again and no link waits."""
        if not conditions.healthy:
            return
        async with self._sessions() as session:
            incident = await open_incident(session)
            if incident is None or incident.id is None:
                return
            waiting = (
                await session.exec(
                    select(RemediationLink.id).where(col(RemediationLink.resolved_at).is_(None))
                )
            ).first()
            if waiting is not None:
                return
            now = self._clock.now()
            closed = await session.exec(
                update(Incident)
                .where(col(Incident.id) == incident.id, col(Incident.open_slot) == OPEN)
                .values(open_slot=None, closed_at=now)
            )
            if closed.rowcount != 1:
                return  # another replica closed it
            session.add(
                note(incident.id, now, "closed: breaker closed, no remediation link waiting")
            )
            await session.commit()
        log.warning("factory incident %d closed", incident.id)
        self._page(incident.id, "incident.closed")

    async def watch_forever(
        self, conditions: Callable[[], Conditions], period_s: float = WATCH_PERIOD_S
    ) -> None:
        """Close an incident whose end no event announced (e.g. after a restart)."""
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.check(conditions())
            except (SQLAlchemyError, OSError):
                log.exception("incident recorder: periodic check failed")

    # -- pages -----------------------------------------------------------------------------

    def _page(
        self, incident_id: int, event: str, *, link: str | None = None, note: str | None = None
    ) -> None:
        if self._pager is None:
            return

        async def build() -> Message:
            return await self.message(incident_id, event, link=link, note=note)

        self._pager.send(incident_id, event, build)

    async def message(
        self, incident_id: int, event: str, *, link: str | None = None, note: str | None = None
    ) -> Message:
        """The webhook's JSON: what happened, where to look, the impact so far."""
        now = self._clock.now()
        async with self._sessions() as session:
            incident = await session.get(Incident, incident_id)
            assert incident is not None
            impact = await impact_of(session, incident, now)
        what = event.removeprefix("incident.").replace("_", " ")
        text = (
            f"JWT Pizza: factory incident #{incident_id} {what}"
            + (f" ({TRIGGERS.get(incident.trigger, incident.trigger)})" if what == "opened" else "")
            + f". {impact.orders_affected} orders affected so far, {impact.pending} pending."
            + (f" Remediation link: {link}." if link else "")
            + (f" {note[:1].upper()}{note[1:]}." if note else "")
            + f" Status: {self.status_page}"
        )
        body: dict[str, Any] = {
            "event": event,
            "text": text,
            "incident": {
                "id": incident_id,
                "status": "open" if incident.closed_at is None else "closed",
                "trigger": incident.trigger,
                "fault": incident.fault,
                "startedAt": iso(incident.started_at),
                "openedAt": iso(incident.opened_at),
                "closedAt": iso(incident.closed_at),
                "reopened": incident.reopened,
                "url": f"{self._public_url}/factory/incidents/{incident_id}",
            },
            "link": link,
            "note": note,
            "statusPage": self.status_page,
            "impact": impact.to_json(),
            "sentAt": iso(now),
        }
        redacted: Message = _redacted(body, self._redact)
        return redacted

    async def _delivered(self, delivery: Delivery) -> None:
        outcome = "delivered" if delivery.delivered else "NOT delivered"
        tries = f"{delivery.tries} {'try' if delivery.tries == 1 else 'tries'}"
        detail = f"alert webhook: {delivery.event} {outcome} ({delivery.detail}, {tries})"
        async with self._sessions() as session:
            session.add(note(delivery.incident_id, self._clock.now(), detail, kind=EventKind.PAGE))
            await session.commit()


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item, redact) for key, item in value.items()}
    return value
