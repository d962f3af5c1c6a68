"""Owned tasks: one ``asyncio.TaskGroup`` per long-lived component, held by one root task.

A component (a dmsg client, a router, a gateway…) starts a :class:`TaskTree` and hands every
background coroutine to :meth:`TaskTree.spawn`. Children are *guarded*: one that raises is
logged and ends alone, sparing its siblings (a bare ``TaskGroup`` would cancel them all).
:meth:`TaskTree.close` cancels the root, whose ``TaskGroup`` cancels and awaits every child, so
nothing outlives its owner. A serving coroutine that owns its handlers for its own lifetime uses
:func:`serve_each` instead: the handlers end with the loop that accepted them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Leave", "TaskTree", "TaskTreeClosedError", "guarded", "leaving", "serve_each"]

T = TypeVar("T")

log = logging.getLogger(__name__)


class TaskTreeClosedError(ConnectionError):
    """:meth:`TaskTree.spawn` after the tree was closed (or before it started)."""


class Leave(Exception):
    """Raised inside :func:`leaving` to end a task group: its children are cancelled and
    awaited, and the ``Leave`` itself goes no further."""


@contextlib.asynccontextmanager
async def leaving() -> AsyncIterator[asyncio.TaskGroup]:
    """``async with leaving() as tg``: a ``TaskGroup`` that the body ends early, cancelling the
    children still running, by raising :class:`Leave`."""
    try:
        async with asyncio.TaskGroup() as tg:
            yield tg
    except* Leave:
        pass


async def guarded(aw: Awaitable[None], what: str, logger: logging.Logger = log) -> None:
    """Await ``aw``; an exception it raises (not a cancellation) is logged, not propagated."""
    try:
        await aw
    except Exception:
        logger.exception("%s failed", what)


async def serve_each(
    accept: Callable[[], Awaitable[T]],
    handle: Callable[[T], Coroutine[Any, Any, None]],
    *,
    ended: tuple[type[BaseException], ...] = (ConnectionError,),
    what: str = "handler",
    logger: logging.Logger = log,
) -> None:
    """Run ``handle(item)`` as a guarded child for every item ``accept()`` returns, until it
    raises one of ``ended`` (the source closed); then cancel and await the handlers still
    running. Cancelling the caller does the same."""
    async with leaving() as tg:
        while True:
            try:
                item = await accept()
            except ended:
                raise Leave from None
            tg.create_task(guarded(handle(item), what, logger))


class TaskTree:
    """The tasks of one component, under one ``TaskGroup`` in one root task.

    ``await tree.start()`` opens it, ``tree.spawn(coro)`` adds a guarded child (returns its
    task, which the owner may cancel and await early), ``await tree.close()`` cancels and awaits
    all of it; closing twice is harmless. ``close()`` must not be awaited from a child of the
    same tree (it would wait for itself).
    """

    def __init__(self, name: str, logger: logging.Logger = log) -> None:
        self.name = name
        self._log = logger
        self._root: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._closed = False
        self._children: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._tg is not None and not self._closed

    async def start(self) -> None:
        if self._root is not None or self._closed:
            return
        entered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._root = asyncio.create_task(self._run(entered), name=self.name)
        await entered

    async def _run(self, entered: asyncio.Future[None]) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                entered.set_result(None)
                await asyncio.get_running_loop().create_future()  # until close() cancels us
        finally:
            self._tg = None
            if not entered.done():
                entered.cancel()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task[None]:
        """Run ``coro`` as a guarded child; raises :class:`TaskTreeClosedError` (closing the
        coroutine) when the tree is not running."""
        if self._tg is None or self._closed:
            coro.close()
            raise TaskTreeClosedError(f"{self.name} is not running")
        what = name or getattr(coro, "__qualname__", "task")
        task = self._tg.create_task(guarded(coro, f"{self.name}: {what}", self._log), name=name)
        self._children.add(task)
        task.add_done_callback(self._children.discard)
        return task

    def live(self) -> list[asyncio.Task[None]]:
        """The children still running."""
        return [t for t in self._children if not t.done()]

    async def close(self) -> None:
        """Cancel every child and wait until all have ended."""
        if self._closed:
            return
        self._closed = True
        root, self._root = self._root, None
        if root is None:
            return
        root.cancel()
        # wait(), not ``await root``: cancelling our caller must not be swallowed here
        await asyncio.wait({root})
