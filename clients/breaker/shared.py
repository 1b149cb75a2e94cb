"""Sharing the breaker across replicas through Redis.

Redis holds one hash (state, forced, opened_at, since, decided_at, version), a failure
counter (INCR, so failures seen by any replica open it for all) and the probe key
(``SET NX PX``: one replica probes). A transition is a compare-and-set on ``version`` (a
Lua script): the replica whose write lands is its origin, the others adopt it. This
module is the Redis side only: the scripts, the shared state as read, and
:class:`RedisShare`, which runs each command and keeps the "Redis unreachable"
bookkeeping (one log line, then each replica on its own in memory until Redis answers
again).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from clients.breaker.state import AUTOMATIC, BreakerState, Forced

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 0.5
# The probe key's time-to-live in Redis, renewed every REFRESH_PERIOD_S while its call
# runs: it only matters when a replica dies holding the probe, which the others then give
# up on after this long. The service passes FACTORY_TIMEOUT_S + PROBE_TTL_MARGIN_S.
PROBE_TTL_S = 6.0
PROBE_TTL_MARGIN_S = 1.0
KEY_PREFIX = "jwt-pizza:breaker"

_REDIS_ERRORS = (RedisError, OSError)

# KEYS: state hash, failure counter, probe. ARGV: expected version, state, forced,
# opened_at, since, decided_at. Every transition ends the current probe; closing clears
# the failures.
_TRANSITION_LUA = """
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version ~= tonumber(ARGV[1]) then return 0 end
version = version + 1
redis.call('HSET', KEYS[1], 'version', version, 'state', ARGV[2], 'forced', ARGV[3],
           'opened_at', ARGV[4], 'since', ARGV[5], 'decided_at', ARGV[6])
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


@dataclass(frozen=True, slots=True)
class SharedState:
    """The breaker as Redis holds it."""

    state: BreakerState  # the automatic state
    forced: Forced | None
    opened_at: datetime | None
    since: datetime | None
    version: int
    failures: int
    # When the decision this state reflects was made (None: nothing was ever written).
    decided_at: datetime | None = None

    @classmethod
    def parse(cls, fields: dict[str, str], failures: str | None) -> SharedState:
        forced = fields.get("forced")
        state = fields.get("state")
        since = _from_epoch(fields.get("since"))
        return cls(
            state=BreakerState(state) if state in AUTOMATIC else BreakerState.CLOSED,
            forced="open" if forced == "open" else "closed" if forced == "closed" else None,
            opened_at=_from_epoch(fields.get("opened_at")),
            since=since,
            version=int(fields.get("version", 0)),
            failures=int(failures or 0),
            # Written without one (an older release): its transition is its decision.
            decided_at=_from_epoch(fields.get("decided_at")) or since,
        )


def _from_epoch(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value else None


@dataclass(frozen=True, slots=True)
class Written:
    """A breaker state to write: the automatic state, forced, opened_at, since and when
    the decision it reflects was made."""

    state: BreakerState
    forced: Forced | None
    opened_at: datetime | None
    since: datetime
    decided_at: datetime | None

    def args(self, version: int | None) -> list[str | int | float]:
        """The transition script's arguments; an unknown ``version`` ("") matches none."""
        opened_at, decided_at = self.opened_at, self.decided_at
        return [
            "" if version is None else version,
            self.state.value,
            self.forced or "",
            opened_at.timestamp() if opened_at else "",
            self.since.timestamp(),
            decided_at.timestamp() if decided_at else "",
        ]


class RedisShare:
    """One breaker's keys in Redis, and whether Redis answers.

    ``shared`` is True while Redis answers; when it fails, ``on_down`` is called (the
    breaker's copy is then no longer confirmed by Redis). Which shared version our copy
    reflects is the breaker's state, not this object's. Without a URL, nothing is shared
    and every method is a no-op.
    """

    def __init__(
        self, url: str | None, name: str, probe_ttl_s: float, on_down: Callable[[], object]
    ) -> None:
        self._url = url
        self._name = name
        self._probe_ttl_ms = max(int(probe_ttl_s * 1000), 1)
        key = f"{KEY_PREFIX}:{{{name}}}"  # one hash slot, so the Lua script works on a cluster
        self.keys = (key, f"{key}:failures", f"{key}:probe")
        self._client: aioredis.Redis[str] | None = None
        self.shared = False
        self._on_down = on_down
        self._down_logged = False

    @property
    def configured(self) -> bool:
        return self._url is not None

    @property
    def active(self) -> bool:
        """Redis reachable and our copy in step with it."""
        return self.shared and self._client is not None

    def connect(self) -> bool:
        """Open the connection pool (no round trip yet); False if there is nothing to do."""
        if self._url is None or self._client is not None:
            return False
        self._client = client = aioredis.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            # The default retries ten times with backoff: an order must not wait on that.
            retry=Retry(NoBackoff(), 1),
        )
        self._transition = client.register_script(_TRANSITION_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._count_failure = client.register_script(_COUNT_FAILURE_LUA)
        self._renew = client.register_script(_RENEW_LUA)
        return True

    async def disconnect(self) -> None:
        if self._client is not None:
            # Not aclose(): the types-redis stubs predate it; this is what it does for us.
            await self._client.connection_pool.disconnect()
            self._client = None
        self.shared = False

    async def reconnect(self) -> bool:
        """Is Redis answering? (after it was away: say so once, and share again)."""
        if self._client is None:
            return False
        if self.shared:
            return True
        if not await self._try(self._client.ping(), down=False):
            return False
        if self._down_logged:
            log.info("breaker %s: Redis is back; sharing state again", self._name)
        self.shared, self._down_logged = True, False
        return True

    async def read(self) -> SharedState | None:
        """The shared state, or None if Redis is not in use or did not answer."""
        if not self.active:
            return None
        return await self._try(self._read(), down=None)

    async def _read(self) -> SharedState:
        assert self._client is not None
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys[0])
            pipe.get(self.keys[1])
            fields, failures = await pipe.execute()
        return SharedState.parse(fields, failures)

    async def transition(self, version: int | None, state: Written) -> int | None:
        """Compare-and-set: write ``state`` if Redis is still at ``version``. Returns the
        new version, 0 if another replica moved first, None if Redis did not answer."""
        write = self._transition(keys=self.keys, args=state.args(version))
        landed = await self._try(write, down=None)
        return None if landed is None else int(landed)

    async def count_failure(self, version: int | None) -> int | None:
        """INCR the shared count if still at ``version`` (None: unknown). Returns the count,
        -1 if a transition happened since (the outcome is stale), None if Redis is down."""
        expected = "" if version is None else str(version)
        count = await self._try(self._count_failure(keys=self.keys, args=[expected]), down=None)
        return None if count is None else int(count)

    async def reset_failures(self) -> None:
        if self._client is not None:
            await self._try(self._client.set(self.keys[1], 0), down=None)

    async def take_probe(self, token: str) -> bool:
        """Claim the one shared probe; Redis down: the local claim is the probe (each
        replica on its own until it is back)."""
        if not self.active:
            return True
        assert self._client is not None
        taken = self._client.set(self.keys[2], token, nx=True, px=self._probe_ttl_ms)
        return bool(await self._try(taken, down=True))

    async def renew_probe(self, token: str) -> None:
        if self.active:
            renewal = self._renew(keys=[self.keys[2]], args=[token, self._probe_ttl_ms])
            await self._try(renewal, down=None)

    async def release_probe(self, token: str) -> None:
        if self.active:
            await self._try(self._release(keys=[self.keys[2]], args=[token]), down=None)

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
            # Our copy may now drift from the shared one: weigh it against Redis's when back.
            self.shared = False
            self._on_down()
            return down
