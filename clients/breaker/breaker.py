"""The factory breaker itself: admission, guarding a call, settling its outcome, operator
actions, and keeping our copy in step with the replicas' (resilience.md §2).

Admission is ours (pybreaker's open state would let *every* caller through once the reset
timeout has passed, so we refuse open calls and let exactly one probe in); counting is
pybreaker's (clients/breaker/counting.py); sharing is Redis's (clients/breaker/shared.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Literal

from clients.breaker.readings import BreakerReadings
from clients.breaker.shared import PROBE_TTL_S, RedisShare, SharedState, Written
from clients.breaker.state import BreakerState, Forced, Ticket, verdict
from clients.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

REFRESH_PERIOD_S = 0.25
# A lost compare-and-set means another replica moved first; an operator action looks again.
CAS_ATTEMPTS = 3


class FactoryBreaker(BreakerReadings):
    """Guards factory calls; see the package docstring (clients/breaker/) for the
    semantics. ``clock`` is the one time it reads (a test moves a manual one)."""

    def __init__(
        self,
        *,
        fail_max: int = 5,
        reset_timeout_s: float = 30.0,
        redis_url: str | None = None,
        name: str = "factory",
        probe_ttl_s: float = PROBE_TTL_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(name=name, clock=clock, fail_max=fail_max, reset_timeout_s=reset_timeout_s)
        # Serialises transitions and Redis refreshes; the closed path never takes it.
        self._lock = asyncio.Lock()
        self._share = RedisShare(redis_url, name, probe_ttl_s)
        # Moves on every transition made or adopted and on a remediation: a closed call's
        # outcome counts only if it has not moved since the call was admitted.
        self._epoch = 0
        self._refresher: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Redis and keep our copy refreshed; a no-op in memory."""
        if not self._share.connect():
            return
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever(), name=f"breaker-{self._name}")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._share.disconnect()

    async def refresh(self) -> None:
        """Adopt the shared state from Redis (the background task calls this periodically)."""
        # Probe outside the lock: a Redis that hangs must not hold up transitions.
        if not await self._share.reconnect():
            return
        async with self._lock:
            await self._refresh_locked()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_PERIOD_S)
            await self.refresh()
            await self.renew_probe()

    @property
    def shared(self) -> bool:
        """Whether our copy is in step with the other replicas' through Redis now (False
        without Redis, or while it is away: then each replica decides on its own)."""
        return self._share.active

    async def renew_probe(self) -> None:
        """Our probe's call is still running: keep the shared probe key ours."""
        if self._probe is not None:
            await self._share.renew_probe(self._probe.token)

    # -- guarding a call -------------------------------------------------------------------

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[Ticket]:
        """Let one factory call through, or raise CallRefused at once.

        The block's recorded outcome counts (a failure, a success, or nothing for
        REJECTED). Without a record, an exception escaping the block counts as a failure
        and a normal exit as nothing. Cancellation counts nothing, whatever was recorded.
        """
        ticket = await self._admit()
        try:
            try:
                yield ticket
            except Exception:
                await self._settle(ticket, verdict(ticket.outcome, raised=True))
                raise
            await self._settle(ticket, verdict(ticket.outcome, raised=False))
        finally:
            # Cancelled (here or while settling): free the probe, count nothing.
            self._drop_probe(ticket)

    async def _admit(self) -> Ticket:
        if self._forced == "open":
            self._refuse(BreakerState.FORCED_OPEN)
        if self._forced == "closed":
            return Ticket(BreakerState.FORCED_CLOSED)
        state = self.state
        if state is BreakerState.CLOSED:
            return Ticket(BreakerState.CLOSED, epoch=self._epoch, version=self._share.version)
        if state is BreakerState.OPEN or self._probe is not None:
            self._refuse(state)
        # A probe is due and ours is free: claim it before any await, so that concurrent
        # callers are refused at once instead of queueing behind this one.
        ticket = self._probe = Ticket(BreakerState.HALF_OPEN, secrets.token_hex(8))
        try:
            if self._current() is BreakerState.OPEN:
                async with self._lock:
                    if self._current() is BreakerState.OPEN:
                        await self._open_to_half_open()
            if (
                self._current() is BreakerState.HALF_OPEN
                and self._probe is ticket
                and await self._share.take_probe(ticket.token)
            ):
                return ticket
        except BaseException:
            self._drop_probe(ticket)
            raise
        if self._probe is ticket:
            self._probe = None
        self._refuse(self.state)

    async def _settle(self, ticket: Ticket, failure: bool | None) -> None:
        if failure is None:  # neutral: counts nothing; a probe frees its slot for the next
            if self._probe is ticket:
                await self._share.release_probe(ticket.token)
                self._probe = None  # after: if cancelled meanwhile, _drop_probe retries it
            return
        if ticket.admitted_as is BreakerState.FORCED_CLOSED:
            return  # forced closed: outcomes do not move the breaker
        if (
            not failure
            and ticket.admitted_as is BreakerState.CLOSED
            and self._current() is BreakerState.CLOSED
            and self._storage.counter == 0
        ):
            return  # the hot path: nothing to reset, so no lock and no Redis
        async with self._lock:
            before, version = self._current(), self._share.version
            if ticket.admitted_as is BreakerState.HALF_OPEN:
                if self._probe is not ticket:
                    return  # the half-open period it probed has ended (forced, adopted...)
            elif before is not BreakerState.CLOSED or ticket.epoch != self._epoch:
                return  # a late answer from before a transition says nothing about now
            if before is BreakerState.CLOSED and not await self._count_shared(ticket, failure):
                return
            self._counter.feed(failure, ticket.outcome)
            if self._current() is not before:
                await self._publish(before, version)

    async def _count_shared(self, ticket: Ticket, failure: bool) -> bool:
        """Count a closed call's outcome in Redis; False if another replica has closed or
        remediated since it was admitted (then the outcome is stale and we adopt that)."""
        if not self._share.active:
            return True
        if not failure:
            await self._share.reset_failures()
            return True
        count = await self._share.count_failure(ticket.version)
        if count is None:
            return True  # Redis down: counted in this process only
        if count < 0:
            await self._pull()
            return False
        self._storage.set_counter(count - 1)  # pybreaker adds this one
        return True

    def _drop_probe(self, ticket: Ticket) -> None:
        if self._probe is ticket:
            self._probe = None
            if not self._share.shared:
                return
            task = asyncio.create_task(self._share.release_probe(ticket.token))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # -- operator actions ------------------------------------------------------------------

    async def force(self, mode: Literal["open", "closed", "auto"]) -> None:
        """Force open or closed until handed back with "auto" (which resumes closed)."""
        target: Forced | None = None if mode == "auto" else mode
        async with self._lock:
            await self._refresh_locked()  # act on the shared state, not on a stale copy
            for _ in range(CAS_ATTEMPTS):
                if self._forced == target:
                    return
                before, version = self._current(), self._share.version
                self._forced = target
                self._counter.close()  # whatever the automatic state was, hand back closed
                if await self._publish(before, version):
                    return
            log.warning("breaker %s: force(%s) kept losing to other replicas", self._name, mode)

    async def half_open(self) -> None:
        """Remediation succeeded: if automatic and open, let a probe in now.

        If a probe admitted during the fault is still in flight, it is retired: its
        failure says nothing about the factory now and must not re-open the breaker, and
        the next caller may probe at once. If closed, the failure count starts afresh and
        the calls still in flight from before (on any replica) no longer count.
        """
        async with self._lock:
            await self._refresh_locked()
            if self._current() is BreakerState.HALF_OPEN and self._probe is not None:
                stale, self._probe = self._probe, None
                await self._share.release_probe(stale.token)
                return
            for _ in range(CAS_ATTEMPTS):
                current = self._current()
                if current is BreakerState.CLOSED:
                    if await self._restart_count():
                        return
                elif current is not BreakerState.OPEN or await self._open_to_half_open():
                    return

    async def remediated(self, at: datetime) -> None:
        """A remediation succeeded at ``at``, on this replica or on another (the database
        knows every one): if that is newer than the last decision this breaker reflects,
        act on it as `half_open()` does; if not, the breaker has decided since (a probe
        after it failed, an operator) and that decision stands."""
        if self._decided_at is None or at > self._decided_at:
            await self.half_open()

    async def _restart_count(self) -> bool:
        """Closed -> closed with a fresh count: a new version, so stale outcomes are seen."""
        version = self._share.version
        self._counter.restart()
        return await self._publish(BreakerState.CLOSED, version)

    async def _open_to_half_open(self) -> bool:
        version = self._share.version
        self._counter.half_open()
        return await self._publish(BreakerState.OPEN, version)

    # -- keeping our copy in step with the shared one --------------------------------------

    def _written(self) -> Written:
        opened_at = self._storage.opened_at
        return Written(self._counter.state, self._forced, opened_at, self._since, self._decided_at)

    async def _publish(self, before: BreakerState, version: int) -> bool:
        """Make our local transition from ``before`` the shared one and announce it.

        Returns whether this process made it; if another replica moved first, its state is
        adopted instead and announced with origin=False.
        """
        self._decided_at = self._clock.now()
        if self._current() is not before:  # a remediation's fresh count keeps `since`
            self._since = self._decided_at
        self._epoch += 1
        if self._current() is BreakerState.OPEN:
            # pybreaker stamped opened_at with its own clock; ours is the injected one.
            self._storage.opened_at = self._since
        origin = True
        if self._share.active:
            # Until the answer is in, our copy is unconfirmed: if this await is cancelled, the
            # next refresh adopts whatever Redis holds.
            self._share.version = -1
            landed = await self._share.transition(version, self._written(), down=-1)
            if landed == 0:
                origin = False
                await self._pull()
            elif landed != -1:  # on -1 (Redis down) the share has put us on our own
                self._share.version = landed
        if self._current() is not BreakerState.HALF_OPEN:
            self._probe = None
        self._emit(before, self._current(), origin)
        return origin

    async def _refresh_locked(self) -> None:
        before = self._current()
        await self._pull()
        self._emit(before, self._current(), False)

    async def _pull(self) -> None:
        """Adopt Redis's state into our copy: Redis is authoritative, but when our copy
        lost track of it (Redis away, restarted or flushed) the newer decision of the two
        wins, ours or Redis's, whichever copy reaches Redis first."""
        for _ in range(CAS_ATTEMPTS):
            shared = await self._share.read()
            if shared is None:
                return
            if not (self._lost_track(shared) and self._newer_than(shared)):
                break
            if await self._write_back(shared):
                return
        else:
            return  # other replicas kept writing first: weighed again at the next refresh
        if shared.version != self._share.version:
            self._adopt(shared)
        if self._current() is BreakerState.CLOSED:
            self._storage.set_counter(shared.failures)

    def _lost_track(self, shared: SharedState) -> bool:
        """Our copy is not one Redis confirmed (it failed us since), or Redis holds less
        than we last saw (restarted or flushed: versions start again from 0)."""
        version = self._share.version
        return version == -1 or shared.version == 0 or shared.version < version

    def _newer_than(self, shared: SharedState) -> bool:
        if self._decided_at is None:
            return False
        return shared.decided_at is None or self._decided_at > shared.decided_at

    async def _write_back(self, shared: SharedState) -> bool:
        """Write our newer decision over Redis's (an open breaker kept open across a Redis
        restart, a remediation made while Redis was away kept). False if another replica
        wrote first: Redis is then read and weighed again."""
        landed = await self._share.transition(shared.version, self._written(), down=-1)
        if landed == 0:
            return False
        if landed > 0:  # on -1 (Redis failed again) ours stands until it is back
            self._share.version = landed
            log.info(
                "breaker %s: Redis held an older decision than ours; wrote back %s (%s)",
                self._name,
                self.state,
                self._decided_at,
            )
        return True

    def _adopt(self, shared: SharedState) -> None:
        self._counter.adopt(shared.state)
        if shared.opened_at is not None:
            self._storage.opened_at = shared.opened_at
        self._forced = shared.forced
        self._since = shared.since or self._since
        self._decided_at = shared.decided_at
        self._share.version = shared.version
        self._epoch += 1
        if self._current() is not BreakerState.HALF_OPEN:
            self._probe = None
