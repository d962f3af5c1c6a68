"""The visor's heartbeats to the uptime tracker (``uptime_tracker.addr``).

:class:`UptimeReporter` sends upstream's signed ``GET /v4/update?version=<v>`` once at start
and then every interval (upstream: every 5 minutes, from the first tick) for as long as it is
open; its one task belongs to a :class:`~skywire.wire.tasks.TaskTree`. The first beat is not
awaited by the visor's start, so a tracker that is away holds nothing up: a failed beat is
logged once per outage (a warning when the tracker stops answering, a line when it is back).

``uptime_tracker.interval`` (ours, a Go duration, e.g. ``"1m"``; absent: 5 minutes) sets the
interval; it is kept among the block's extra keys, so a config without it is upstream's shape.
A ``dmsg://`` tracker address (dmsghttp) is not supported: no heartbeats are sent, and the
visor logs why.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Self

from skywire.cipher import SecKey
from skywire.services.ut.client import UTClient
from skywire.services.ut.errors import UTError
from skywire.services.ut.uptime import DEFAULT_INTERVAL
from skywire.visor.config import UptimeTrackerConfig, parse_duration
from skywire.wire.tasks import TaskTree

__all__ = ["UptimeReporter", "report_interval", "uptime_reporter"]

log = logging.getLogger(__name__)


def report_interval(block: UptimeTrackerConfig) -> float:
    """The heartbeat interval of an ``uptime_tracker`` block, in seconds (``ValueError`` for a
    malformed or non-positive ``interval``)."""
    text = (block.model_extra or {}).get("interval")
    if text is None:
        return DEFAULT_INTERVAL
    if not isinstance(text, str):
        raise ValueError(f"uptime_tracker.interval must be a duration string, not {text!r}")
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"uptime_tracker.interval must be above zero, not {text!r}")
    return seconds


class UptimeReporter:
    """``async with UptimeReporter(url, sk, version=…, interval=…)``: heartbeats until closed.

    :attr:`sent` counts the beats the tracker accepted, :attr:`failed` those it did not;
    :meth:`wait_sent` and :meth:`wait_failed` wait until they reach a number;
    :attr:`reachable` is whether the last beat went through (None before the first).
    """

    def __init__(
        self,
        url: str,
        sk: SecKey,
        *,
        version: str,
        interval: float = DEFAULT_INTERVAL,
        client: UTClient | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be above zero, not {interval!r}")
        self.url = url
        self.version = version
        self.interval = interval
        self._client = client if client is not None else UTClient(url, sk)
        self._tree = TaskTree("uptime heartbeats", log)
        self._changed = asyncio.Condition()
        self.sent = 0
        self.failed = 0
        self.reachable: bool | None = None

    async def __aenter__(self) -> Self:
        await self._tree.start()
        self._tree.spawn(self._run(), name="uptime heartbeats")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the heartbeats and close the client; twice is harmless."""
        await self._tree.close()
        await self._client.close()

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)

    async def beat(self) -> bool:
        """Send one heartbeat now; whether the tracker accepted it."""
        try:
            await self._client.update(self.version)
        except (UTError, OSError, TimeoutError) as exc:
            self.failed += 1
            if self.reachable is not False:
                log.warning("uptime tracker %s: heartbeat failed: %s", self.url, exc)
            ok = False
        else:
            self.sent += 1
            if self.reachable is False:
                log.info("uptime tracker %s: heartbeats go through again", self.url)
            ok = True
        self.reachable = ok
        async with self._changed:
            self._changed.notify_all()
        return ok

    async def wait_sent(self, count: int) -> None:
        """Until at least ``count`` heartbeats were accepted."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.sent >= count)

    async def wait_failed(self, count: int) -> None:
        """Until at least ``count`` heartbeats failed."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.failed >= count)


def uptime_reporter(block: UptimeTrackerConfig, sk: SecKey, version: str) -> UptimeReporter | None:
    """The reporter an ``uptime_tracker`` block asks for: None without an address, or with a
    ``dmsg://`` one (not supported, logged)."""
    addr = block.addr.strip()
    if not addr:
        return None
    if addr.startswith("dmsg://"):
        log.warning("uptime tracker %s: dmsghttp addresses are not supported, no heartbeats", addr)
        return None
    return UptimeReporter(addr, sk, version=version, interval=report_interval(block))
