"""Group commit: writes waiting at the same moment share one flush."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.sql.rows import StoreError, StoreUnavailable

# A flush takes at most this many writes; the rest wait for the next one (microseconds).
MAX_BATCH = 256


@dataclass(frozen=True, slots=True)
class WriteFailed:
    """A flush's result for one write that was not stored, while others of the same
    flush were (a dialect that commits a flush in more than one transaction)."""

    error: StoreError


T = TypeVar("T")


class _Waiting(Generic[T]):
    __slots__ = ("future", "item")

    def __init__(self, item: T, future: asyncio.Future[Any]) -> None:
        self.item = item
        self.future = future


class GroupCommit(Generic[T]):
    """Writes waiting at the same moment share one flush (the dialect decides its
    transactions: one on SQLite, one per run of one kind of write on PostgreSQL).

    The first write to arrive while nothing is being written starts a flush at once;
    writes that arrive during a flush wait for the next one, which starts as soon as this
    one is done. So a lone write pays nothing, and under load the commits per second stay
    bounded by the database while the writes per commit grow. Each caller gets its own
    result (or the flush's exception) only after the commit.

    The same batching serves reads whose answers can be split by caller: PostgreSQL's
    token checks (app/sql/postgres.py) use it with a flush that is one SELECT.
    """

    def __init__(self, flush: Callable[[list[T]], Awaitable[list[Any]]]) -> None:
        self._flush = flush
        self._waiting: list[_Waiting[T]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, item: T) -> Any:
        """``item``'s result once its flush is done (for a write: committed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append(_Waiting(item, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._drain(), name="group-commit")
        # The write goes ahead even if its caller gives up: what it stores is then found
        # by the retry worker like any other pending order.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    results = await self._flush([waiting.item for waiting in batch])
                except BaseException as exc:
                    error = exc if isinstance(exc, Exception) else StoreUnavailable("shutting down")
                    for write in batch:
                        if not write.future.done():
                            write.future.set_exception(error)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for write, result in zip(batch, results, strict=True):
                    if write.future.done():
                        continue
                    if isinstance(result, WriteFailed):
                        write.future.set_exception(result.error)
                    else:
                        write.future.set_result(result)
        finally:
            self._flusher = None

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
