"""The factory's circuit breaker, correct under asyncio (resilience.md §2).

pybreaker keeps the failure counter and makes the closed / half-open decisions: each
counted outcome is handed to it through ``with breaker.calling()``. This module adds what
pybreaker 1.4.1 lacks for an asyncio service:

- admission is ours: pybreaker's open state lets *every* caller through once the reset
  timeout has passed, so we refuse open calls ourselves and let exactly one probe in;
- ``Outcome.REJECTED``, a block left without ``record()`` and a cancelled block count as
  nothing (pybreaker would count an excluded exception as a success);
- forced open / forced closed stick until handed back (pybreaker's ``open()`` expires);
- transition and refused-call listeners, a transition reported once across replicas.

State reporting: ``state`` is OPEN until the reset timeout has passed, then HALF_OPEN (a
probe would be let in now); ``since`` is then ``opened_at + reset_timeout``. The
OPEN -> HALF_OPEN listener event fires when that is acted on: the next ``guard()`` or
``half_open()``.

Time: one clock, this module's :func:`utcnow` (pybreaker's own ``opened_at`` stamp is
replaced by ours when it trips), so a test moves time by patching ``clients.breaker.utcnow``.

With ``redis_url`` the state is shared, but kept in memory and refreshed from Redis in the
background, so a call on the closed path costs no round trip. Redis holds one hash
(state, forced, opened_at, since, version), a failure counter (INCR, so failures seen by
any replica open it for all) and the probe key (``SET NX PX``: one replica probes). A
transition is a compare-and-set on ``version`` (a Lua script): the replica whose write lands
is its origin, the others adopt it. Redis is authoritative; while it is unreachable each
replica keeps its own state in memory and adopts the shared one when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, NoReturn, TypeVar

import pybreaker
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from clients.schemas import Outcome

log = logging.getLogger(__name__)

REFRESH_PERIOD_S = 0.25
REDIS_TIMEOUT_S = 0.5
# The probe key's time-to-live in Redis, renewed every REFRESH_PERIOD_S while its call
# runs: it only matters when a replica dies holding the probe, which the others then give
# up on after this long. The service passes FACTORY_TIMEOUT_S + PROBE_TTL_MARGIN_S.
PROBE_TTL_S = 6.0
PROBE_TTL_MARGIN_S = 1.0
# A lost compare-and-set means another replica moved first; an operator action looks again.
CAS_ATTEMPTS = 3
KEY_PREFIX = "jwt-pizza:breaker"

_REDIS_ERRORS = (RedisError, OSError)

# KEYS: state hash, failure counter, probe. ARGV: expected version, state, forced,
# opened_at, since. Every transition ends the current probe; closing clears the failures.
_TRANSITION_LUA = """
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version ~= tonumber(ARGV[1]) then return 0 end
version = version + 1
redis.call('HSET', KEYS[1], 'version', version, 'state', ARGV[2], 'forced', ARGV[3],
           'opened_at', ARGV[4], 'since', ARGV[5])
redis.call('DEL', KEYS[3])
if ARGV[2] == 'closed' then redis.call('DEL', KEYS[2]) end
return version
"""
# Count one failure only if no transition (a close, a remediation) happened since the call
# was admitted at version ARGV[1] ('' when unknown): -1 means the outcome is stale.
_COUNT_FAILURE_LUA = """
local version = redis.call('HGET', KEYS[1], 'version') or '0'
if ARGV[1] ~= '' and tonumber(version) ~= tonumber(ARGV[1]) then return -1 end
return redis.call('INCR', KEYS[2])
"""
# Keep our probe alive while its call runs (a dead replica's lapses after its TTL).
_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Release the probe only if it is still ours (its TTL may have handed it to another).
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

T = TypeVar("T")


def utcnow() -> datetime:
    """The breaker's clock (tests patch it)."""
    return datetime.now(UTC)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"


_FROM_PYBREAKER = {
    pybreaker.STATE_CLOSED: BreakerState.CLOSED,
    pybreaker.STATE_OPEN: BreakerState.OPEN,
    pybreaker.STATE_HALF_OPEN: BreakerState.HALF_OPEN,
}

TransitionListener = Callable[[BreakerState, BreakerState, bool], None]
Forced = Literal["open", "closed"]


class CallRefused(Exception):
    """The breaker refused the call: the factory was not called."""

    def __init__(self, state: BreakerState) -> None:
        super().__init__(f"factory circuit breaker is {state}")
        self.state = state


class Ticket:
    """One admitted call. ``record()`` its outcome before the ``guard()`` block ends."""

    __slots__ = ("admitted_as", "epoch", "outcome", "token", "version")

    def __init__(
        self, admitted_as: BreakerState, token: str = "", *, epoch: int = 0, version: int = -1
    ) -> None:
        self.admitted_as = admitted_as  # CLOSED, HALF_OPEN (the probe) or FORCED_CLOSED
        self.outcome: Outcome | None = None
        self.token = token  # the probe's value in Redis
        # What the breaker was when the call was admitted: an outcome from before a later
        # transition or remediation says nothing about the factory now (it is not counted).
        self.epoch = epoch
        self.version = version  # the shared version then (-1: unknown)

    def record(self, outcome: Outcome) -> None:
        """Set the outcome the breaker counts for this call (the last one recorded wins)."""
        self.outcome = outcome


class _CountedFailure(Exception):
    """Raised inside pybreaker's ``calling()`` to hand it one failure."""


class _Storage(pybreaker.CircuitMemoryStorage):
    """pybreaker's in-memory storage, whose failure count can be set from Redis."""

    def set_counter(self, value: int) -> None:
        self._fail_counter = value


@dataclass(frozen=True, slots=True)
class _Shared:
    """The breaker as Redis holds it."""

    state: BreakerState  # the automatic state
    forced: Forced | None
    opened_at: datetime | None
    since: datetime | None
    version: int
    failures: int

    @classmethod
    def parse(cls, fields: dict[str, str], failures: str | None) -> _Shared:
        forced = fields.get("forced")
        return cls(
            state=_parse_state(fields.get("state")),
            forced="open" if forced == "open" else "closed" if forced == "closed" else None,
            opened_at=_from_epoch(fields.get("opened_at")),
            since=_from_epoch(fields.get("since")),
            version=int(fields.get("version", 0)),
            failures=int(failures or 0),
        )


def _parse_state(value: str | None) -> BreakerState:
    automatic = (BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN)
    return BreakerState(value) if value in automatic else BreakerState.CLOSED


def _from_epoch(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value else None


class FactoryBreaker:
    """Guards factory calls; see the module docstring for the semantics."""

    def __init__(
        self,
        *,
        fail_max: int = 5,
        reset_timeout_s: float = 30.0,
        redis_url: str | None = None,
        name: str = "factory",
        probe_ttl_s: float = PROBE_TTL_S,
    ) -> None:
        self._name = name
        self._probe_ttl_ms = max(int(probe_ttl_s * 1000), 1)
        self._reset_timeout = timedelta(seconds=reset_timeout_s)
        self._storage = _Storage(pybreaker.STATE_CLOSED)
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            state_storage=self._storage,
            name=name,
            throw_new_error_on_trip=False,  # the failure itself comes back out of calling()
        )
        self._forced: Forced | None = None
        self._since = utcnow()
        self._probe: Ticket | None = None  # the one call let through while half-open
        self._listeners: list[TransitionListener] = []
        self._refused_listeners: list[Callable[[], None]] = []
        # Serialises transitions and Redis refreshes; the closed path never takes it.
        self._lock = asyncio.Lock()

        self._redis_url = redis_url
        self._redis: aioredis.Redis[str] | None = None
        self._shared = False  # Redis reachable and our copy in step with it
        self._down_logged = False
        self._version = 0  # the shared state's version our copy reflects
        # Moves on every transition made or adopted and on a remediation: a closed call's
        # outcome counts only if it has not moved since the call was admitted.
        self._epoch = 0
        key = f"{KEY_PREFIX}:{{{name}}}"  # one hash slot, so the Lua script works on a cluster
        self._keys = (key, f"{key}:failures", f"{key}:probe")
        self._refresher: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Redis and keep our copy refreshed; a no-op in memory."""
        if self._redis_url is None or self._redis is not None:
            return
        self._redis = aioredis.Redis.from_url(
            self._redis_url,
            decode_responses=True,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            # The default retries ten times with backoff: an order must not wait on that.
            retry=Retry(NoBackoff(), 1),
        )
        self._transition_script = self._redis.register_script(_TRANSITION_LUA)
        self._release_script = self._redis.register_script(_RELEASE_LUA)
        self._count_failure_script = self._redis.register_script(_COUNT_FAILURE_LUA)
        self._renew_script = self._redis.register_script(_RENEW_LUA)
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever(), name=f"breaker-{self._name}")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._redis is not None:
            # Not aclose(): the types-redis stubs predate it; this is what it does for us.
            await self._redis.connection_pool.disconnect()
            self._redis = None
        self._shared = False

    async def refresh(self) -> None:
        """Adopt the shared state from Redis (the background task calls this periodically)."""
        if self._redis is None:
            return
        if not self._shared:
            # Probe outside the lock: a Redis that hangs must not hold up transitions.
            if not await self._try(self._redis.ping(), down=False):
                return
            if self._down_logged:
                log.info("breaker %s: Redis is back; sharing state again", self._name)
            self._shared, self._down_logged = True, False
        async with self._lock:
            await self._refresh_locked()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_PERIOD_S)
            await self.refresh()
            await self.renew_probe()

    async def renew_probe(self) -> None:
        """Our probe's call is still running: keep the shared probe key ours."""
        probe = self._probe
        if probe is None or not self._shared or self._redis is None:
            return
        renewal = self._renew_script(keys=[self._keys[2]], args=[probe.token, self._probe_ttl_ms])
        await self._try(renewal, down=None)

    # -- reading ---------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; OPEN reads HALF_OPEN once the reset timeout has passed."""
        current = self._current()
        if current is BreakerState.OPEN and self._probe_due():
            return BreakerState.HALF_OPEN
        return current

    @property
    def since(self) -> datetime:
        """UTC time of the last transition (for an elapsed OPEN, when the probe became due)."""
        opened_at = self._storage.opened_at
        if self._current() is BreakerState.OPEN and opened_at is not None and self._probe_due():
            return opened_at + self._reset_timeout
        return self._since

    @property
    def forced(self) -> bool:
        return self._forced is not None

    def _current(self) -> BreakerState:
        if self._forced == "open":
            return BreakerState.FORCED_OPEN
        if self._forced == "closed":
            return BreakerState.FORCED_CLOSED
        return _FROM_PYBREAKER[self._storage.state]

    def probe_due_in_s(self) -> float | None:
        """Seconds until an automatic, open breaker lets a probe in (0: now); None when it
        is not open or is forced (then only a transition or an operator changes it)."""
        if self._forced is not None or self._current() is not BreakerState.OPEN:
            return None
        opened_at = self._storage.opened_at
        if opened_at is None:
            return 0.0
        return max((opened_at + self._reset_timeout - utcnow()).total_seconds(), 0.0)

    def _probe_due(self) -> bool:
        opened_at = self._storage.opened_at
        return opened_at is None or utcnow() >= opened_at + self._reset_timeout

    # -- listeners -------------------------------------------------------------------------

    def add_listener(self, listener: TransitionListener) -> None:
        """Call ``listener(old, new, origin)`` on each transition this process makes or sees.

        ``origin`` is True only in the process that made it: record it there, once.
        """
        self._listeners.append(listener)

    def add_refused_listener(self, listener: Callable[[], None]) -> None:
        self._refused_listeners.append(listener)

    def _emit(self, old: BreakerState, new: BreakerState, origin: bool) -> None:
        if old is new:
            return
        log.info("breaker %s: %s -> %s (origin=%s)", self._name, old, new, origin)
        for listener in self._listeners:
            try:
                listener(old, new, origin)
            except Exception:
                # A broken metrics listener must not fail the order that caused the event.
                log.exception("breaker %s: transition listener failed", self._name)

    def _refuse(self, state: BreakerState) -> NoReturn:
        self.count_refused()
        raise CallRefused(state)

    def refuses(self) -> bool:
        """Would a call be refused now, without a probe being claimed? (open, forced open,
        or the half-open probe already out). A caller that then skips the call reports it
        with `count_refused()`, as `guard()` would have."""
        if self._forced is not None:
            return self._forced == "open"
        state = self.state
        if state is BreakerState.CLOSED:
            return False
        return state is BreakerState.OPEN or self._probe is not None

    def count_refused(self) -> None:
        """One call refused by this breaker: the refused listeners count it."""
        for listener in self._refused_listeners:
            listener()

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
                await self._settle(ticket, _verdict(ticket.outcome, raised=True))
                raise
            await self._settle(ticket, _verdict(ticket.outcome, raised=False))
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
            return Ticket(BreakerState.CLOSED, epoch=self._epoch, version=self._version)
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
                and await self._take_shared_probe(ticket)
            ):
                return ticket
        except BaseException:
            self._drop_probe(ticket)
            raise
        if self._probe is ticket:
            self._probe = None
        self._refuse(self.state)

    async def _take_shared_probe(self, ticket: Ticket) -> bool:
        if not self._shared or self._redis is None:
            return True
        taken = self._redis.set(self._keys[2], ticket.token, nx=True, px=self._probe_ttl_ms)
        # Redis down: the local claim is the probe (each replica on its own until it is back).
        return bool(await self._try(taken, down=True))

    async def _settle(self, ticket: Ticket, failure: bool | None) -> None:
        if failure is None:  # neutral: counts nothing; a probe frees its slot for the next
            if self._probe is ticket:
                await self._release_shared_probe(ticket.token)
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
            before, version = self._current(), self._version
            if ticket.admitted_as is BreakerState.HALF_OPEN:
                if self._probe is not ticket:
                    return  # the half-open period it probed has ended (forced, adopted...)
            elif before is not BreakerState.CLOSED or ticket.epoch != self._epoch:
                return  # a late answer from before a transition says nothing about now
            if before is BreakerState.CLOSED and not await self._count_shared(ticket, failure):
                return
            self._feed(failure)
            if self._current() is not before:
                await self._publish(before, version)

    async def _count_shared(self, ticket: Ticket, failure: bool) -> bool:
        """Count a closed call's outcome in Redis; False if another replica has closed or
        remediated since it was admitted (then the outcome is stale and we adopt that)."""
        if not self._shared or self._redis is None:
            return True
        if not failure:
            await self._try(self._redis.set(self._keys[1], 0), down=None)
            return True
        version = "" if ticket.version < 0 else str(ticket.version)
        counted = self._count_failure_script(keys=self._keys, args=[version])
        count = await self._try(counted, down=None)
        if count is None:
            return True  # Redis down: counted in this process only
        if int(count) < 0:
            await self._pull()
            return False
        self._storage.set_counter(int(count) - 1)  # pybreaker adds this one
        return True

    def _feed(self, failure: bool) -> None:
        """Hand one counted outcome to pybreaker, which counts it and trips the state."""
        with contextlib.suppress(_CountedFailure), self._cb.calling():
            if failure:
                raise _CountedFailure

    def _drop_probe(self, ticket: Ticket) -> None:
        if self._probe is ticket:
            self._probe = None
            if not self._shared:
                return
            task = asyncio.create_task(self._release_shared_probe(ticket.token))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _release_shared_probe(self, token: str) -> None:
        if self._shared and self._redis is not None:
            await self._try(self._release_script(keys=[self._keys[2]], args=[token]), down=None)

    # -- operator actions ------------------------------------------------------------------

    async def force(self, mode: Literal["open", "closed", "auto"]) -> None:
        """Force open or closed until handed back with "auto" (which resumes closed)."""
        target: Forced | None = None if mode == "auto" else mode
        async with self._lock:
            await self._refresh_locked()  # act on the shared state, not on a stale copy
            for _ in range(CAS_ATTEMPTS):
                if self._forced == target:
                    return
                before, version = self._current(), self._version
                self._forced = target
                self._cb.close()  # whatever the automatic state was, hand back closed and clean
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
                await self._release_shared_probe(stale.token)
                return
            for _ in range(CAS_ATTEMPTS):
                current = self._current()
                if current is BreakerState.CLOSED:
                    if await self._restart_count():
                        return
                elif current is not BreakerState.OPEN or await self._open_to_half_open():
                    return

    async def _restart_count(self) -> bool:
        """Closed -> closed with a fresh count: a new version, so stale outcomes are seen."""
        version = self._version
        self._cb.close()
        self._storage.set_counter(0)
        return await self._publish(BreakerState.CLOSED, version)

    async def _open_to_half_open(self) -> bool:
        version = self._version
        self._cb.half_open()
        return await self._publish(BreakerState.OPEN, version)

    # -- sharing through Redis -------------------------------------------------------------

    async def _publish(self, before: BreakerState, version: int) -> bool:
        """Make our local transition from ``before`` the shared one and announce it.

        Returns whether this process made it; if another replica moved first, its state is
        adopted instead and announced with origin=False.
        """
        if self._current() is not before:  # a remediation's fresh count keeps `since`
            self._since = utcnow()
        self._epoch += 1
        if self._current() is BreakerState.OPEN:
            # pybreaker stamped opened_at with its own clock; ours is the one tests move.
            self._storage.opened_at = self._since
        origin = True
        if self._shared and self._redis is not None:
            opened_at = self._storage.opened_at
            args = [
                version,
                _FROM_PYBREAKER[self._storage.state].value,
                self._forced or "",
                opened_at.timestamp() if opened_at else "",
                self._since.timestamp(),
            ]
            # Until the answer is in, our copy is unconfirmed: if this await is cancelled, the
            # next refresh adopts whatever Redis holds.
            self._version = -1
            landed = await self._try(self._transition_script(keys=self._keys, args=args), down=-1)
            if landed == 0:
                origin = False
                await self._pull()
            elif landed != -1:  # on -1 (Redis down) _try has put us on our own
                self._version = int(landed)
        if self._current() is not BreakerState.HALF_OPEN:
            self._probe = None
        self._emit(before, self._current(), origin)
        return origin

    async def _refresh_locked(self) -> None:
        before = self._current()
        await self._pull()
        self._emit(before, self._current(), False)

    async def _pull(self) -> None:
        """Adopt Redis's state into our copy (Redis is authoritative)."""
        if not self._shared or self._redis is None:
            return
        shared = await self._try(self._read_shared(self._redis), down=None)
        if shared is None:
            return
        if shared.version == 0 and self._holds_news() and await self._reseed():
            return
        if shared.version != self._version:
            self._adopt(shared)
        if self._current() is BreakerState.CLOSED:
            self._storage.set_counter(shared.failures)

    def _holds_news(self) -> bool:
        """Our copy says more than an empty Redis would (open, half-open or forced)."""
        return self._forced is not None or self._current() is not BreakerState.CLOSED

    async def _reseed(self) -> bool:
        """Redis has no breaker (restarted, flushed) but ours is open or forced: write ours
        back instead of adopting "closed", so a restart of Redis does not close an open
        breaker on every replica at once (and send each one's calls to a failing factory).
        False if another replica wrote first (then its state is adopted as usual)."""
        assert self._redis is not None
        opened_at = self._storage.opened_at
        args = [
            0,
            _FROM_PYBREAKER[self._storage.state].value,
            self._forced or "",
            opened_at.timestamp() if opened_at else "",
            self._since.timestamp(),
        ]
        landed = await self._try(self._transition_script(keys=self._keys, args=args), down=0)
        if not landed:
            return False
        self._version = int(landed)
        log.info(
            "breaker %s: Redis had lost the shared state; wrote back %s", self._name, self.state
        )
        return True

    async def _read_shared(self, client: aioredis.Redis[str]) -> _Shared:
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._keys[0])
            pipe.get(self._keys[1])
            fields, failures = await pipe.execute()
        return _Shared.parse(fields, failures)

    def _adopt(self, shared: _Shared) -> None:
        state = shared.state
        if state is not _FROM_PYBREAKER[self._storage.state]:
            {
                BreakerState.CLOSED: self._cb.close,
                BreakerState.OPEN: self._cb.open,
                BreakerState.HALF_OPEN: self._cb.half_open,
            }[state]()
        if shared.opened_at is not None:
            self._storage.opened_at = shared.opened_at
        self._forced = shared.forced
        self._since = shared.since or self._since
        self._version = shared.version
        self._epoch += 1
        if self._current() is not BreakerState.HALF_OPEN:
            self._probe = None

    async def _try(self, call: Awaitable[T], *, down: T) -> T:
        """Await one Redis call; if Redis fails, carry on in memory and return ``down``."""
        try:
            return await call
        except _REDIS_ERRORS as exc:
            if not self._down_logged:
                log.warning(
                    "breaker %s: Redis unreachable (%s); keeping state in this process "
                    "until it is back",
                    self._name,
                    exc,
                )
                self._down_logged = True
            # Our copy may now drift from the shared one: adopt Redis's when it is back.
            self._shared, self._version = False, -1
            return down


def _verdict(outcome: Outcome | None, *, raised: bool) -> bool | None:
    """True: a failure; False: a success; None: counts as nothing."""
    if outcome is None:
        return True if raised else None
    if outcome.counts_as_failure:
        return True
    return False if outcome.counts_as_success else None
