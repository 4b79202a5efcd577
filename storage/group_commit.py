"""Group commit: items handed in together are written in one transaction, each caller answered once
its own item is committed.

The handlers of one getUpdates batch (and webhook posts that arrive together) all store their
requests within a turn or two of the event loop. One transaction for all of them costs one BEGIN
and one COMMIT, one wait for SQLite's single writer, instead of one of each per request. Nothing
waits longer than it would have: the batch is written as soon as the loop has run what was
already ready, and whatever arrives meanwhile goes in the next one. If the transaction fails, every
caller in it gets the error, exactly as each would have on its own (none of their items is stored).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """`write(items)` (one transaction, one result per item, in order) for the items `add` was
    given within the same turns of the event loop."""

    def __init__(self, write: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]]) -> None:
        self._write = write
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_batches(), name="group-commit")
        return await asyncio.shield(future)  # a caller cancelled meanwhile leaves the batch alone

    async def _write_batches(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                await asyncio.sleep(0)  # the other handlers already running hand theirs in first
                batch, self._waiting = self._waiting, []
                try:
                    results = await self._write([item for item, _ in batch])
                except Exception as error:  # noqa: BLE001 - every caller gets what it would have alone
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                except BaseException:  # cancelled (shutdown): nobody is left waiting for nothing
                    for _, future in [*batch, *self._waiting]:
                        future.cancel()
                    self._waiting = []
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._writer = None
