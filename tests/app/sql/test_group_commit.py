"""GroupCommit through its public interface: writes waiting at the same moment share one
flush, each caller gets its own answer after that flush, and a flush's failure reaches
every write of it (and no other). The flush here is a fake that records its batches and
can be held open, so that no test depends on timing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.sql.group_commit import MAX_BATCH, GroupCommit, WriteFailed
from app.sql.rows import StoreError, StoreUnavailable

Batch = list[tuple[str, tuple[Any, ...]]]


class FakeFlush:
    """Records each batch it is given; answers each write with ``kind:args``, or fails as
    ``fail_with`` says when the flush starts. While ``held`` is clear, a flush waits
    inside, as a slow commit would."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.held = asyncio.Event()
        self.held.set()
        self.entered = asyncio.Event()
        self.fail_with: BaseException | None = None
        self.failed_writes: set[str] = set()

    async def __call__(self, batch: Batch) -> list[Any]:
        self.batches.append(batch)
        error, self.fail_with = self.fail_with, None  # the failure set before it starts
        self.entered.set()
        await self.held.wait()
        if error is not None:
            raise error
        return [
            WriteFailed(StoreError(f"{kind} refused"))
            if kind in self.failed_writes
            else f"{kind}:{args}"
            for kind, args in batch
        ]


def write(group: GroupCommit[tuple[str, tuple[Any, ...]]], kind: str, *args: Any) -> Any:
    """A write as the fake flush reads it: its kind and its arguments."""
    return group.write((kind, args))


async def settle() -> None:
    """Let every ready task run until it waits (no wall-clock time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture
def flush() -> FakeFlush:
    return FakeFlush()


@pytest.fixture
async def group(flush: FakeFlush) -> Any:
    commit = GroupCommit(flush)
    yield commit
    await commit.close()


async def hold_first_flush(group: GroupCommit, flush: FakeFlush) -> asyncio.Task[Any]:
    """Start a write whose flush stays open until ``flush.held`` is set."""
    flush.held.clear()
    first = asyncio.create_task(write(group, "first", 0))
    await flush.entered.wait()
    return first


async def test_a_lone_write_is_flushed_at_once_and_answered(
    group: GroupCommit, flush: FakeFlush
) -> None:
    assert await write(group, "order", 1, "veggie") == "order:(1, 'veggie')"
    assert flush.batches == [[("order", (1, "veggie"))]]


async def test_writes_arriving_during_a_flush_share_the_next_one(
    group: GroupCommit, flush: FakeFlush
) -> None:
    first = await hold_first_flush(group, flush)
    waiting = [asyncio.create_task(write(group, "order", n)) for n in range(5)]
    await settle()
    assert len(flush.batches) == 1  # none of them starts a flush of its own

    flush.held.set()
    assert await first == "first:(0,)"
    assert await asyncio.gather(*waiting) == [f"order:({n},)" for n in range(5)]
    assert flush.batches == [[("first", (0,))], [("order", (n,)) for n in range(5)]]


async def test_a_batch_keeps_the_order_writes_arrived_in_and_answers_each_its_own(
    group: GroupCommit, flush: FakeFlush
) -> None:
    first = await hold_first_flush(group, flush)
    kinds = ["token", "order", "refund", "order", "token"]
    waiting = [asyncio.create_task(write(group, kind, n)) for n, kind in enumerate(kinds)]
    await settle()
    flush.held.set()
    await first
    answers = await asyncio.gather(*waiting)
    assert answers == [f"{kind}:({n},)" for n, kind in enumerate(kinds)]
    assert [kind for kind, _ in flush.batches[1]] == kinds


async def test_more_writes_than_a_batch_holds_wait_for_the_flush_after(
    group: GroupCommit, flush: FakeFlush
) -> None:
    first = await hold_first_flush(group, flush)
    waiting = [asyncio.create_task(write(group, "order", n)) for n in range(MAX_BATCH + 3)]
    await settle()
    flush.held.set()
    await first
    answers = await asyncio.gather(*waiting)
    assert answers == [f"order:({n},)" for n in range(MAX_BATCH + 3)]
    assert [len(batch) for batch in flush.batches] == [1, MAX_BATCH, 3]
    assert flush.batches[2] == [("order", (n,)) for n in range(MAX_BATCH, MAX_BATCH + 3)]


async def test_a_failed_flush_raises_its_error_in_every_write_of_it(
    group: GroupCommit, flush: FakeFlush
) -> None:
    first = await hold_first_flush(group, flush)
    waiting = [asyncio.create_task(write(group, "order", n)) for n in range(3)]
    await settle()
    flush.fail_with = StoreUnavailable("database down")  # the second flush fails
    flush.held.set()

    assert await first == "first:(0,)"  # the flush before it was committed
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert {str(r) for r in results} == {"database down"}


async def test_writes_after_a_failed_flush_are_flushed_again(
    group: GroupCommit, flush: FakeFlush
) -> None:
    flush.fail_with = StoreUnavailable("database down")
    with pytest.raises(StoreUnavailable):
        await write(group, "order", 1)
    assert await write(group, "order", 2) == "order:(2,)"
    assert flush.batches == [[("order", (1,))], [("order", (2,))]]


async def test_one_write_refused_in_a_flush_fails_alone(
    group: GroupCommit, flush: FakeFlush
) -> None:
    first = await hold_first_flush(group, flush)
    flush.failed_writes = {"refund"}
    waiting = [asyncio.create_task(write(group, kind)) for kind in ("order", "refund", "token")]
    await settle()
    flush.held.set()
    await first
    order, refund, token = await asyncio.gather(*waiting, return_exceptions=True)
    assert order == "order:()"
    assert token == "token:()"
    assert isinstance(refund, StoreError)
    assert str(refund) == "refund refused"


async def test_a_caller_that_gives_up_does_not_take_its_write_back(
    group: GroupCommit, flush: FakeFlush
) -> None:
    """What it stores is found later (the retry worker), as any other pending order."""
    first = await hold_first_flush(group, flush)
    impatient = asyncio.create_task(write(group, "order", 7))
    await settle()
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    flush.held.set()
    await first
    await group.close()
    assert flush.batches[1] == [("order", (7,))]


async def test_a_flush_cancelled_at_shutdown_answers_its_writes_unavailable(
    group: GroupCommit, flush: FakeFlush
) -> None:
    first = await hold_first_flush(group, flush)
    waiting = asyncio.create_task(write(group, "order", 1))
    await settle()
    flush.fail_with = asyncio.CancelledError()  # the second flush is cancelled
    flush.held.set()
    await first
    with pytest.raises(StoreUnavailable, match="shutting down"):
        await waiting


async def test_close_waits_for_the_flush_in_progress(group: GroupCommit, flush: FakeFlush) -> None:
    first = await hold_first_flush(group, flush)
    closing = asyncio.create_task(group.close())
    await settle()
    assert not closing.done()
    flush.held.set()
    await closing
    assert first.done()
    assert await first == "first:(0,)"
