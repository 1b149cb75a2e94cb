"""The faults the soak injects, on a seeded random schedule, each in a window of its own."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

# Every run has these first (the CI's 2-minute form asserts on them), the others follow.
ESSENTIAL = ("chaos:fail", "replica:kill", "postgres:restart", "redis:restart")
OTHERS = (
    "chaos:badjwt",
    "chaos:fail:vendor",  # ended by the factory's admin, not by a remediation
    "chaos:badjwt:vendor",
    "factory:slow",  # the throttle chaos: pizzas after the simulator's throttle delay
    "replica:graceful",
)
KINDS = ESSENTIAL + OTHERS


class Stack(Protocol):
    """What a fault acts on (the runner's stack of processes)."""

    async def chaos(self, mode: str) -> None: ...
    async def end_chaos(self) -> None: ...
    async def remediate(self) -> bool: ...
    async def restart_replica(self, index: int, *, kill: bool) -> None: ...
    async def stop_postgres(self) -> None: ...
    async def start_postgres(self) -> None: ...
    async def stop_redis(self) -> None: ...
    async def start_redis(self) -> None: ...

    @property
    def replicas(self) -> int: ...


@dataclass(frozen=True)
class Window:
    kind: str
    start: float  # time.monotonic(): the fault begins
    end: float  # the fault is over (chaos ended, process back)
    target: str = ""


def schedule(seed: int, count: int) -> list[str]:
    """``count`` fault kinds: the essential ones first, then seeded rounds of all kinds."""
    rand = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    first = list(ESSENTIAL)
    rand.shuffle(first)
    kinds = first
    while len(kinds) < count:
        round_ = list(KINDS)
        rand.shuffle(round_)
        kinds += round_
    return kinds[:count]


async def inject(kind: str, stack: Stack, hold_s: float, rand: random.Random) -> Window:
    """Inject ``kind`` for about ``hold_s`` and end it; its window."""
    start = time.monotonic()
    parts = kind.split(":")
    target = ""
    if parts[0] == "chaos":
        await stack.chaos(parts[1])
        await asyncio.sleep(hold_s)
        await _end_chaos(stack, by_vendor=parts[-1] == "vendor")
    elif kind == "factory:slow":
        await stack.chaos("throttle")
        await asyncio.sleep(hold_s)
        await stack.end_chaos()
    elif parts[0] == "replica":
        # Replica 0 is never restarted: its memory is measured over the whole run.
        index = rand.randrange(1, stack.replicas) if stack.replicas > 1 else 0
        target = f"replica-{index}"
        await stack.restart_replica(index, kill=parts[1] == "kill")
    else:
        stop, restart = _stop_start(kind, stack)
        await stop()
        await asyncio.sleep(hold_s)
        await restart()
    return Window(kind, start, time.monotonic(), target)


async def _end_chaos(stack: Stack, *, by_vendor: bool) -> None:
    if not by_vendor:
        for _ in range(5):  # as an operator would: press Remediate until it resolves
            if await stack.remediate():
                return
            await asyncio.sleep(1.0)
    await stack.end_chaos()


def _stop_start(
    kind: str, stack: Stack
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    if kind == "postgres:restart":
        return stack.stop_postgres, stack.start_postgres
    if kind == "redis:restart":
        return stack.stop_redis, stack.start_redis
    raise ValueError(f"unknown fault {kind!r}")
