"""The factory breaker (docs/resilience.md#the-circuit-breaker): time is moved by a fake
clock, never slept through."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

import clients.breaker as breaker_module
from clients.breaker import BreakerState, CallRefused, FactoryBreaker
from clients.schemas import Outcome
from tests.utils.clock import ManualClock
from tests.utils.servers import PrivateRedis

RESET_S = 30.0
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
FORCED_OPEN, FORCED_CLOSED = BreakerState.FORCED_OPEN, BreakerState.FORCED_CLOSED
FAILURES = [o for o in Outcome if o.counts_as_failure]


class Events(list[tuple[BreakerState, BreakerState, bool]]):
    def __call__(self, old: BreakerState, new: BreakerState, origin: bool) -> None:
        self.append((old, new, origin))


@pytest.fixture
def clock() -> ManualClock:
    """The breaker's clock: every breaker a test builds reads it, and the test moves it."""
    return ManualClock(datetime(2024, 12, 5, 11, 49, tzinfo=UTC))


@pytest.fixture
def breaker(clock: ManualClock) -> FactoryBreaker:
    return FactoryBreaker(fail_max=5, reset_timeout_s=RESET_S, clock=clock)


async def call(breaker: FactoryBreaker, outcome: Outcome | None = Outcome.SUCCESS) -> None:
    async with breaker.guard() as ticket:
        if outcome is not None:
            ticket.record(outcome)


async def fail(breaker: FactoryBreaker, times: int = 1) -> None:
    for _ in range(times):
        await call(breaker, Outcome.UNAVAILABLE)


async def open_breaker(breaker: FactoryBreaker) -> None:
    await fail(breaker, 5)
    assert breaker.state is OPEN


async def let_tasks_run() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def held_call(
    breaker: FactoryBreaker, release: asyncio.Event, outcome: Outcome
) -> asyncio.Task[str]:
    """A call that enters the breaker and waits for ``release`` before recording."""

    async def run() -> str:
        try:
            async with breaker.guard() as ticket:
                await release.wait()
                ticket.record(outcome)
        except CallRefused:
            return "refused"
        return "called"

    return asyncio.create_task(run())


class TestOpening:
    async def test_opens_after_fail_max_consecutive_failures(self, breaker: FactoryBreaker) -> None:
        await fail(breaker, 4)
        assert breaker.state is CLOSED
        await fail(breaker)
        assert breaker.state is OPEN

    async def test_a_success_resets_the_count(self, breaker: FactoryBreaker) -> None:
        await fail(breaker, 4)
        await call(breaker, Outcome.SUCCESS)
        await fail(breaker, 4)
        assert breaker.state is CLOSED

    @pytest.mark.parametrize("outcome", FAILURES, ids=str)
    async def test_every_failure_outcome_counts(
        self, breaker: FactoryBreaker, outcome: Outcome
    ) -> None:
        for _ in range(5):
            await call(breaker, outcome)
        assert breaker.state is OPEN

    async def test_an_escaping_exception_is_a_failure_and_is_reraised(
        self, breaker: FactoryBreaker
    ) -> None:
        for _ in range(5):
            with pytest.raises(ConnectionError):
                async with breaker.guard():
                    raise ConnectionError("factory reset the connection")
        assert breaker.state is OPEN

    async def test_a_recorded_outcome_wins_over_an_exception(self, breaker: FactoryBreaker) -> None:
        for _ in range(10):
            with pytest.raises(ValueError):
                async with breaker.guard() as ticket:
                    ticket.record(Outcome.REJECTED)
                    raise ValueError("our request was wrong")
        assert breaker.state is CLOSED

    async def test_a_block_without_record_counts_nothing(self, breaker: FactoryBreaker) -> None:
        await fail(breaker, 4)
        for _ in range(10):
            await call(breaker, None)
        await fail(breaker)
        assert breaker.state is OPEN


class TestOpen:
    async def test_refuses_at_once_without_calling_the_factory(
        self, breaker: FactoryBreaker
    ) -> None:
        await open_breaker(breaker)
        factory_calls = 0
        with pytest.raises(CallRefused) as refused:
            async with breaker.guard():
                factory_calls += 1
        assert factory_calls == 0
        assert refused.value.state is OPEN

    async def test_reads_half_open_once_the_probe_is_due(
        self, breaker: FactoryBreaker, clock: ManualClock
    ) -> None:
        await open_breaker(breaker)
        opened_at = clock.now()
        assert breaker.since == opened_at
        clock.advance(RESET_S - 0.001)
        assert breaker.state is OPEN
        clock.advance(0.001)
        assert breaker.state is HALF_OPEN
        assert breaker.since == opened_at + timedelta(seconds=RESET_S)


class TestHalfOpen:
    async def test_one_probe_among_concurrent_callers(
        self, breaker: FactoryBreaker, clock: ManualClock
    ) -> None:
        await open_breaker(breaker)
        clock.advance(RESET_S)
        release = asyncio.Event()
        calls = [held_call(breaker, release, Outcome.SUCCESS) for _ in range(10)]
        await let_tasks_run()
        # The refused ones finished without waiting for the probe.
        assert [c.result() for c in calls if c.done()] == ["refused"] * 9
        release.set()
        assert sorted(await asyncio.gather(*calls)) == ["called"] + ["refused"] * 9
        assert breaker.state is CLOSED

    async def test_probe_success_closes(self, breaker: FactoryBreaker, clock: ManualClock) -> None:
        await open_breaker(breaker)
        clock.advance(RESET_S)
        await call(breaker, Outcome.SUCCESS)
        assert breaker.state is CLOSED
        await fail(breaker, 4)
        assert breaker.state is CLOSED  # closing started a fresh count

    @pytest.mark.parametrize("outcome", [Outcome.SLOW, Outcome.CHAOS, Outcome.TIMEOUT], ids=str)
    async def test_probe_failure_reopens_with_a_fresh_timeout(
        self, breaker: FactoryBreaker, clock: ManualClock, outcome: Outcome
    ) -> None:
        await open_breaker(breaker)
        clock.advance(RESET_S)
        await call(breaker, outcome)
        assert breaker.state is OPEN
        assert breaker.since == clock.now()
        clock.advance(RESET_S - 1)
        with pytest.raises(CallRefused):
            await call(breaker)
        clock.advance(1)
        assert breaker.state is HALF_OPEN

    async def test_rejected_probe_frees_the_slot_and_stays_half_open(
        self, breaker: FactoryBreaker, clock: ManualClock
    ) -> None:
        await open_breaker(breaker)
        clock.advance(RESET_S)
        await call(breaker, Outcome.REJECTED)
        assert breaker.state is HALF_OPEN
        await call(breaker, None)  # no record: also neutral
        assert breaker.state is HALF_OPEN
        await call(breaker, Outcome.SUCCESS)  # the slot was free again
        assert breaker.state is CLOSED

    async def test_cancelled_probe_counts_nothing_and_frees_the_slot(
        self, breaker: FactoryBreaker, clock: ManualClock
    ) -> None:
        await open_breaker(breaker)
        clock.advance(RESET_S)
        probe = held_call(breaker, asyncio.Event(), Outcome.UNAVAILABLE)
        await let_tasks_run()
        with pytest.raises(CallRefused) as refused:
            await call(breaker)
        assert refused.value.state is HALF_OPEN
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert breaker.state is HALF_OPEN
        await call(breaker, Outcome.SUCCESS)
        assert breaker.state is CLOSED


class TestNeutral:
    async def test_rejected_in_closed_neither_counts_nor_resets(
        self, breaker: FactoryBreaker
    ) -> None:
        for _ in range(10):
            await call(breaker, Outcome.REJECTED)
        await fail(breaker, 4)
        for _ in range(10):
            await call(breaker, Outcome.REJECTED)
        assert breaker.state is CLOSED
        await fail(breaker)
        assert breaker.state is OPEN

    async def test_a_cancelled_call_counts_nothing_even_if_recorded(
        self, breaker: FactoryBreaker
    ) -> None:
        await fail(breaker, 4)
        for _ in range(3):
            task = held_call(breaker, asyncio.Event(), Outcome.UNAVAILABLE)
            await let_tasks_run()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert breaker.state is CLOSED
        await fail(breaker)
        assert breaker.state is OPEN


class TestForced:
    async def test_forced_open_refuses_past_any_reset_timeout(
        self, breaker: FactoryBreaker, clock: ManualClock
    ) -> None:
        await breaker.force("open")
        clock.advance(100 * RESET_S)
        await breaker.half_open()  # remediation never overrides an operator
        assert breaker.state is FORCED_OPEN
        assert breaker.forced
        with pytest.raises(CallRefused) as refused:
            await call(breaker)
        assert refused.value.state is FORCED_OPEN

    async def test_forced_closed_lets_everything_through(self, breaker: FactoryBreaker) -> None:
        await open_breaker(breaker)
        await breaker.force("closed")
        await fail(breaker, 50)
        assert breaker.state is FORCED_CLOSED

    async def test_auto_hands_back_closed_with_a_fresh_count(self, breaker: FactoryBreaker) -> None:
        await fail(breaker, 4)
        await breaker.force("closed")
        await breaker.force("auto")
        assert breaker.state is CLOSED
        assert not breaker.forced
        await fail(breaker, 4)
        assert breaker.state is CLOSED
        await breaker.force("open")
        await breaker.force("auto")
        assert breaker.state is CLOSED


class TestRemediation:
    async def test_half_open_lets_a_probe_in_before_the_timeout(
        self, breaker: FactoryBreaker, clock: ManualClock
    ) -> None:
        await open_breaker(breaker)
        clock.advance(1)
        await breaker.half_open()
        assert breaker.state is HALF_OPEN
        assert breaker.since == clock.now()
        await call(breaker, Outcome.SUCCESS)
        assert breaker.state is CLOSED

    async def test_half_open_retires_a_probe_sent_during_the_fault(
        self, breaker: FactoryBreaker, clock: ManualClock
    ) -> None:
        await open_breaker(breaker)
        clock.advance(RESET_S)
        async with breaker.guard() as stale:  # the probe, sent while the chaos still runs
            await breaker.half_open()  # meanwhile an operator fixed the factory
            # A fresh probe may go at once, and its success closes the breaker.
            await call(breaker, Outcome.SUCCESS)
            assert breaker.state is CLOSED
            stale.record(Outcome.TIMEOUT)
        assert breaker.state is CLOSED  # the stale probe's failure counted for nothing

    async def test_half_open_does_nothing_when_closed_or_forced(
        self, breaker: FactoryBreaker
    ) -> None:
        await breaker.half_open()
        assert breaker.state is CLOSED
        await breaker.force("closed")
        await breaker.half_open()
        assert breaker.state is FORCED_CLOSED


class TestStaleOutcomes:
    """Outcomes of calls admitted before the breaker last closed or a remediation
    succeeded say nothing about the factory now."""

    async def test_failures_from_before_the_last_close_do_not_reopen_it(
        self, breaker: FactoryBreaker, clock: ManualClock
    ) -> None:
        release = asyncio.Event()
        old_calls = [held_call(breaker, release, Outcome.UNAVAILABLE) for _ in range(5)]
        await let_tasks_run()
        await open_breaker(breaker)
        clock.advance(RESET_S)
        await call(breaker, Outcome.SUCCESS)  # the probe closes it
        assert breaker.state is CLOSED
        release.set()
        assert await asyncio.gather(*old_calls) == ["called"] * 5
        assert breaker.state is CLOSED
        await fail(breaker, 4)  # a fresh count: only new failures open it again
        assert breaker.state is CLOSED
        await fail(breaker)
        assert breaker.state is OPEN

    async def test_a_remediation_while_closed_restarts_the_count(
        self, breaker: FactoryBreaker
    ) -> None:
        release = asyncio.Event()
        old_calls = [held_call(breaker, release, Outcome.TIMEOUT) for _ in range(3)]
        await let_tasks_run()
        await fail(breaker, 3)
        await breaker.half_open()  # the follow resolved the chaos
        release.set()
        await asyncio.gather(*old_calls)
        await fail(breaker, 4)
        assert breaker.state is CLOSED
        await fail(breaker)
        assert breaker.state is OPEN


class TestListeners:
    async def test_each_transition_fires_once_with_origin(
        self, breaker: FactoryBreaker, clock: ManualClock
    ) -> None:
        events = Events()
        breaker.add_listener(events)
        await open_breaker(breaker)
        clock.advance(RESET_S)
        assert breaker.state is HALF_OPEN  # reading it is not a transition
        await call(breaker, Outcome.TIMEOUT)
        await breaker.half_open()
        await call(breaker, Outcome.SUCCESS)
        await breaker.force("open")
        await breaker.force("open")
        await breaker.force("auto")
        assert events == [
            (CLOSED, OPEN, True),
            (OPEN, HALF_OPEN, True),
            (HALF_OPEN, OPEN, True),
            (OPEN, HALF_OPEN, True),
            (HALF_OPEN, CLOSED, True),
            (CLOSED, FORCED_OPEN, True),
            (FORCED_OPEN, CLOSED, True),
        ]

    async def test_refused_listener_hears_each_refusal(self, breaker: FactoryBreaker) -> None:
        refused: list[None] = []
        breaker.add_refused_listener(lambda: refused.append(None))
        await open_breaker(breaker)
        for _ in range(3):
            with pytest.raises(CallRefused):
                await call(breaker)
        assert len(refused) == 3

    async def test_a_broken_listener_does_not_fail_the_call(self, breaker: FactoryBreaker) -> None:
        def broken(old: BreakerState, new: BreakerState, origin: bool) -> None:
            raise RuntimeError("metrics exporter bug")

        breaker.add_listener(broken)
        await open_breaker(breaker)


# -- Redis: two instances on one name stand for two replicas --------------------------------

Replicas = Callable[..., Awaitable[tuple[FactoryBreaker, Events]]]


@asynccontextmanager
async def replicas_on(url: str, name: str, clock: ManualClock) -> AsyncIterator[Replicas]:
    """Builds replicas of one breaker ``name`` on the Redis at ``url``; stops them after."""
    started: list[FactoryBreaker] = []

    async def make(
        fail_max: int = 5, probe_ttl_s: float = breaker_module.PROBE_TTL_S
    ) -> tuple[FactoryBreaker, Events]:
        replica = FactoryBreaker(
            fail_max=fail_max,
            reset_timeout_s=RESET_S,
            redis_url=url,
            name=name,
            probe_ttl_s=probe_ttl_s,
            clock=clock,
        )
        events = Events()
        replica.add_listener(events)
        await replica.start()
        started.append(replica)
        return replica, events

    try:
        yield make
    finally:
        for replica in started:
            await replica.stop()


@pytest.fixture
def breaker_name() -> str:
    """The replicas' breaker name: a test's own, so its keys are its own in Redis."""
    return f"test-{uuid.uuid4().hex}"


def redis_keys(name: str) -> tuple[str, str, str]:
    """Where breaker ``name`` lives in Redis: its state hash, failure count and probe."""
    key = f"{breaker_module.KEY_PREFIX}:{{{name}}}"
    return key, f"{key}:failures", f"{key}:probe"


@pytest.fixture
async def replicas(clock: ManualClock, breaker_name: str) -> AsyncIterator[Replicas]:
    client: aioredis.Redis[str] = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as error:
        # A failure, not a skip: a skip would pass a run that never tested what replicas
        # share. Redis is as required as PostgreSQL (.ci/run starts both).
        pytest.fail(
            f"no Redis at {REDIS_URL} ({error}): start redis-server on 127.0.0.1:6379"
            " or set TEST_REDIS_URL",
            pytrace=False,
        )
    name = breaker_name
    async with replicas_on(REDIS_URL, name, clock) as make:
        yield make
    keys = [k async for k in client.scan_iter(f"{breaker_module.KEY_PREFIX}:{{{name}}}*")]
    if keys:
        await client.delete(*keys)
    await client.connection_pool.disconnect()


def origins(*event_lists: Events) -> list[tuple[BreakerState, BreakerState]]:
    return [(old, new) for events in event_lists for old, new, origin in events if origin]


class TestRedis:
    async def test_failures_in_one_replica_open_both(self, replicas: Replicas) -> None:
        (a, a_events), (b, b_events) = await replicas(), await replicas()
        await fail(a, 5)
        assert a.state is OPEN
        await b.refresh()
        assert b.state is OPEN
        with pytest.raises(CallRefused):
            await call(b)
        assert a_events == [(CLOSED, OPEN, True)]
        assert b_events == [(CLOSED, OPEN, False)]

    async def test_failures_count_across_replicas(self, replicas: Replicas) -> None:
        (a, _), (b, _) = await replicas(fail_max=4), await replicas(fail_max=4)
        await fail(a, 2)
        await fail(b, 2)
        assert b.state is OPEN

    async def test_a_concurrent_trip_has_one_origin(self, replicas: Replicas) -> None:
        (a, a_events), (b, b_events) = await replicas(fail_max=2), await replicas(fail_max=2)

        async def keep_failing(replica: FactoryBreaker) -> None:
            with contextlib.suppress(CallRefused):  # refused once the other opened it
                await fail(replica, 3)

        await asyncio.gather(keep_failing(a), keep_failing(b))
        await a.refresh()
        await b.refresh()
        assert a.state is OPEN and b.state is OPEN
        assert origins(a_events, b_events) == [(CLOSED, OPEN)]

    async def test_one_replica_takes_the_probe(
        self, replicas: Replicas, clock: ManualClock
    ) -> None:
        (a, a_events), (b, b_events) = await replicas(), await replicas()
        await fail(a, 5)
        await b.refresh()
        clock.advance(RESET_S)
        release = asyncio.Event()
        calls = [held_call(a, release, Outcome.SUCCESS), held_call(b, release, Outcome.SUCCESS)]
        for _ in range(100):  # bounded: each replica needs a few Redis round trips
            if any(c.done() for c in calls):
                break
            await asyncio.sleep(0.005)
        release.set()
        assert sorted(await asyncio.gather(*calls)) == ["called", "refused"]
        await a.refresh()
        await b.refresh()
        assert a.state is CLOSED and b.state is CLOSED
        # Each transition recorded once, whichever replica made it.
        assert sorted(origins(a_events, b_events)) == sorted(
            [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
        )

    async def test_a_rejected_probe_frees_the_slot_for_another_replica(
        self, replicas: Replicas, clock: ManualClock
    ) -> None:
        (a, _), (b, _) = await replicas(), await replicas()
        await fail(a, 5)
        clock.advance(RESET_S)
        await call(a, Outcome.REJECTED)
        await b.refresh()
        assert b.state is HALF_OPEN
        await call(b, Outcome.SUCCESS)
        await a.refresh()
        assert a.state is CLOSED

    async def test_forced_states_are_shared(self, replicas: Replicas, clock: ManualClock) -> None:
        (a, a_events), (b, b_events) = await replicas(), await replicas()
        await a.force("open")
        await b.refresh()
        clock.advance(100 * RESET_S)
        assert b.state is FORCED_OPEN
        with pytest.raises(CallRefused):
            await call(b)
        await b.force("auto")
        await a.refresh()
        assert a.state is CLOSED
        assert a_events == [(CLOSED, FORCED_OPEN, True), (FORCED_OPEN, CLOSED, False)]
        assert b_events == [(CLOSED, FORCED_OPEN, False), (FORCED_OPEN, CLOSED, True)]

    async def test_the_closed_path_makes_no_redis_round_trip(
        self, replicas: Replicas, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        a, _ = await replicas()
        commands: list[object] = []
        original: Any = aioredis.Redis.execute_command

        async def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
            commands.append(args[0])
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(aioredis.Redis, "execute_command", counting)
        for _ in range(50):
            await call(a, Outcome.SUCCESS)
        assert commands == []
        await fail(a)
        assert commands == ["EVALSHA"]  # one round trip: the version-checked INCR

    async def test_unreachable_redis_falls_back_to_memory(
        self, caplog: pytest.LogCaptureFixture, clock: ManualClock
    ) -> None:
        down = FactoryBreaker(
            fail_max=5, reset_timeout_s=RESET_S, redis_url="redis://127.0.0.1:1/0", clock=clock
        )
        with caplog.at_level(logging.WARNING, logger="clients.breaker"):
            await down.start()
            try:
                await open_breaker(down)
                with pytest.raises(CallRefused):
                    await call(down)
                clock.advance(RESET_S)
                await call(down, Outcome.SUCCESS)
                assert down.state is CLOSED
                for _ in range(3):
                    await down.refresh()
            finally:
                await down.stop()
        assert len([r for r in caplog.records if "Redis unreachable" in r.message]) == 1


class TestRedisStaleOutcomes:
    async def test_another_replicas_remediation_discards_its_stale_failures(
        self, replicas: Replicas
    ) -> None:
        (a, _), (b, b_events) = await replicas(fail_max=3), await replicas(fail_max=3)
        release = asyncio.Event()
        old_calls = [held_call(b, release, Outcome.UNAVAILABLE) for _ in range(3)]
        await let_tasks_run()
        await fail(b, 2)
        await a.half_open()  # a's follow resolved the chaos; b has not refreshed yet
        release.set()
        await asyncio.gather(*old_calls)
        await a.refresh()
        await b.refresh()
        assert a.state is CLOSED and b.state is CLOSED
        assert (CLOSED, OPEN, True) not in b_events
        await fail(b, 2)  # the shared count starts afresh
        await a.refresh()
        assert a.state is CLOSED

    async def test_failures_from_before_another_replica_closed_it_do_not_count(
        self, replicas: Replicas, clock: ManualClock
    ) -> None:
        (a, _), (b, _) = await replicas(fail_max=2), await replicas(fail_max=2)
        release = asyncio.Event()
        old_calls = [held_call(b, release, Outcome.UNAVAILABLE) for _ in range(2)]
        await let_tasks_run()
        await fail(a, 2)
        clock.advance(RESET_S)
        await call(a, Outcome.SUCCESS)  # a's probe closes it; b still thinks closed
        release.set()
        await asyncio.gather(*old_calls)
        await a.refresh()
        await fail(a)  # the first failure of a fresh count (fail_max=2)
        assert a.state is CLOSED


class TestRedisProbeLifetime:
    async def test_a_held_probe_lives_about_the_call_timeout_and_is_renewed(
        self, replicas: Replicas, clock: ManualClock, breaker_name: str
    ) -> None:
        """A replica that dies holding the probe frees it after the call's own timeout
        (+ margin), not after 30 s; a live one keeps it by renewing it while it calls."""
        client: aioredis.Redis[str] = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        (a, _), (b, _) = await replicas(), await replicas()
        await fail(a, 5)
        clock.advance(RESET_S)
        release = asyncio.Event()
        probe = held_call(a, release, Outcome.SUCCESS)
        key = redis_keys(breaker_name)[2]
        for _ in range(100):  # bounded: a few Redis round trips
            if await client.exists(key):
                break
            await asyncio.sleep(0.005)
        ttl_ms = await client.pttl(key)
        assert 0 < ttl_ms <= breaker_module.PROBE_TTL_S * 1000
        await client.pexpire(key, 50)  # as if almost run out: the renewal extends it
        await a.renew_probe()
        assert await client.pttl(key) > 50
        await b.refresh()
        with pytest.raises(CallRefused):
            await call(b)  # still a's probe
        release.set()
        assert await probe == "called"
        await client.connection_pool.disconnect()


class TestRedisRestart:
    async def test_an_open_breaker_stays_open_when_redis_loses_its_state(
        self, replicas: Replicas, breaker_name: str
    ) -> None:
        """Redis restarted (no persistence): the replicas write their open breaker back
        rather than all adopting "closed" and calling a failing factory again."""
        client: aioredis.Redis[str] = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        (a, _), (b, _) = await replicas(), await replicas()
        await fail(a, 5)
        await b.refresh()
        assert b.state is OPEN
        await client.delete(*redis_keys(breaker_name))  # what a restarted Redis holds: nothing
        await b.refresh()
        await a.refresh()
        assert a.state is OPEN and b.state is OPEN
        assert await client.hget(redis_keys(breaker_name)[0], "state") == "open"
        with pytest.raises(CallRefused):
            await call(b)
        await client.connection_pool.disconnect()


# -- Redis away, then back: the replicas agree on the newest decision ----------------------


@pytest.fixture
async def cut_off(clock: ManualClock, private_redis: PrivateRedis) -> AsyncIterator[Replicas]:
    """Replicas on a Redis of the test's own, which it stops and starts again (empty)."""
    async with replicas_on(private_redis.url, "factory", clock) as make:
        yield make


async def refresh(*replicas: FactoryBreaker) -> None:
    for replica in replicas:
        await replica.refresh()


class TestRedisAwayThenBack:
    @pytest.mark.parametrize("first_back", ["the open replica", "the remediated replica"])
    async def test_a_remediation_made_while_redis_was_away_outlives_its_return(
        self,
        cut_off: Replicas,
        private_redis: PrivateRedis,
        clock: ManualClock,
        first_back: str,
    ) -> None:
        (a, a_events), (b, _) = await cut_off(), await cut_off()
        await open_breaker(a)
        await b.refresh()
        assert b.state is OPEN
        private_redis.stop()
        await refresh(a, b)  # each replica on its own now
        clock.advance(10)
        await a.half_open()  # the operator's remediation, on a
        await call(a, Outcome.SUCCESS)  # a's probe: the factory is fixed
        assert a.state is CLOSED
        clock.advance(15)
        private_redis.start()  # back, and empty
        seen = len(a_events)
        order = (b, a, b) if first_back == "the open replica" else (a, b, a)
        await refresh(*order)

        assert (a.state, b.state) == (CLOSED, CLOSED)
        await call(b, Outcome.SUCCESS)  # the fixed factory is not refused
        assert (CLOSED, OPEN) not in [(old, new) for old, new, _ in a_events[seen:]]

    async def test_the_newest_decision_wins_also_when_it_is_to_open(
        self,
        cut_off: Replicas,
        private_redis: PrivateRedis,
        clock: ManualClock,
    ) -> None:
        (a, _), (b, _) = await cut_off(), await cut_off()
        private_redis.stop()
        await refresh(a, b)
        clock.advance(5)
        await a.half_open()  # a remediation on a, while closed: a fresh count
        clock.advance(5)
        await open_breaker(b)  # later, b's own calls fail: the newer decision
        private_redis.start()
        await refresh(a, b, a)  # a reaches the empty Redis first, with the older one

        assert (a.state, b.state) == (OPEN, OPEN)
        with pytest.raises(CallRefused):
            await call(a)


class TestARemediationLearnedWithoutRedis:
    """What the service's remediation watch tells a replica that Redis cannot reach:
    a remediation made on another replica, as the database records it."""

    async def test_a_newer_remediation_lets_a_probe_in_before_the_reset_timeout(
        self, breaker: FactoryBreaker, clock: ManualClock
    ) -> None:
        await open_breaker(breaker)
        clock.advance(10)
        remediated_at = clock.now()  # on another replica
        clock.advance(1)
        await breaker.remediated(remediated_at)
        await call(breaker, Outcome.SUCCESS)
        assert breaker.state is CLOSED

    async def test_an_older_remediation_does_not_undo_a_later_opening(
        self, breaker: FactoryBreaker, clock: ManualClock
    ) -> None:
        remediated_at = clock.now()
        clock.advance(5)
        await open_breaker(breaker)  # the factory failed again after that remediation
        await breaker.remediated(remediated_at)
        with pytest.raises(CallRefused):
            await call(breaker)
        assert breaker.state is OPEN
