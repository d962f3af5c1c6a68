"""AcceptQueue: the closable queue behind listeners and carriers."""

from __future__ import annotations

import asyncio

import pytest

from skywire.wire.stream import AcceptQueue


class Closed(ConnectionError):
    pass


async def test_get_returns_items_then_raises_once_closed() -> None:
    q: AcceptQueue[int] = AcceptQueue(2, Closed)
    q.put_nowait(1)
    q.put_nowait(2)
    assert q.full()
    with pytest.raises(asyncio.QueueFull):
        q.put_nowait(3)
    assert await q.get() == 1
    assert q.close() == [2]  # what nobody took is handed back
    assert q.closed
    with pytest.raises(Closed):
        await q.get()


async def test_close_wakes_a_waiting_get_and_leaves_no_task() -> None:
    q: AcceptQueue[int] = AcceptQueue(1, Closed)
    before = len(asyncio.all_tasks())
    waiter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)  # let the waiter block on the queue
    q.close()
    with pytest.raises(Closed):
        await waiter
    assert len(asyncio.all_tasks()) == before
