"""Public autoconnect, the loop: service discovery and the transport manager around
:class:`~skywire.visor.autoconnect.Autoconnector`.

``async with PublicAutoconnect(sd, tm, pk, config) as ac:`` looks at once, then every
``config.interval`` seconds, and also as soon as a kept transport goes away: it lists the
``visor`` entries of service discovery (the last listing is kept while discovery cannot be
asked), tells the decisions which transports are up, and starts the dials they ask for, each
bounded by ``config.dial_timeout``; a dial that ends makes room for the next one of the same
round (a key's ``sudph`` after its ``stcpr``, or another key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

from skywire.cipher import PubKey
from skywire.services.sd.entry import ServiceEntry, ServiceType
from skywire.services.sd.errors import SDError
from skywire.transport.entry import Label
from skywire.transport.managed import ManagedTransport, TransportError
from skywire.transport.network import TransportNetworkError
from skywire.transport.resolver import ResolverError
from skywire.visor.autoconnect import AutoconnectConfig, Autoconnector, Dial, LiveTransport
from skywire.wire.lifecycle import Lifecycle
from skywire.wire.tasks import Leave, TaskTree, leaving

__all__ = ["PublicAutoconnect", "PublicListing", "TransportPool"]

log = logging.getLogger(__name__)

DIAL_ERRORS = (TransportError, TransportNetworkError, ResolverError, OSError, TimeoutError)


class PublicListing(Protocol):
    """What autoconnect needs of :class:`~skywire.services.sd.client.SDClient`."""

    async def services(
        self,
        service_type: ServiceType | str,
        *,
        version: str = "",
        country: str = "",
        quantity: int = 0,
    ) -> list[ServiceEntry]: ...


class TransportPool(Protocol):
    """What autoconnect needs of :class:`~skywire.transport.manager.TransportManager`."""

    @property
    def transports(self) -> Mapping[uuid.UUID, ManagedTransport]: ...

    def transport_types(self) -> list[str]: ...

    async def save_transport(
        self, remote: PubKey, tp_type: str, label: str = ...
    ) -> ManagedTransport: ...

    async def wait_gone(self, tp_id: uuid.UUID) -> None: ...


class PublicAutoconnect(Lifecycle):
    """Keeps ``config.max_conns`` transports to public visors; see the module."""

    def __init__(
        self,
        listing: PublicListing,
        pool: TransportPool,
        local_pk: PubKey,
        config: AutoconnectConfig | None = None,
    ) -> None:
        self._listing = listing
        self._pool = pool
        self.config = config or AutoconnectConfig()
        self.core = Autoconnector(local_pk, self.config)
        self._tree = TaskTree("autoconnect", log)
        self._changed = asyncio.Event()
        self._sd_failing = False
        self.rounds = 0

    async def start(self) -> None:
        await self._tree.start()
        types = tuple(t for t in self.config.types if t in self._pool.transport_types())
        if not types:
            log.warning("autoconnect: none of %s is enabled here: off", self.config.types)
            return
        self.core.config = self.config = replace(self.config, types=types)
        self._tree.spawn(self._run(), "autoconnect")

    async def close(self) -> None:
        await self._tree.close()

    def kept(self) -> list[ManagedTransport]:
        """The transports up to the public visors autoconnect keeps."""
        connected = self.core.connected
        return [
            tp
            for tp in self._pool.transports.values()
            if not tp.closed and tp.remote_pk in connected and tp.type in self.config.types
        ]

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Wait until ``condition()`` holds, checked after every round and every dial;
        ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not condition():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        while True:
            await self._round()
            self.rounds += 1
            self._notify()
            await self._pause([tp.id for tp in self.kept()])

    async def _round(self) -> None:
        await self._look()
        self._update()
        async with asyncio.TaskGroup() as tg:

            def launch() -> None:
                for dial in self.core.next_dials(self._now()):
                    log.debug("autoconnect: %s transport to %s", dial.tp_type, dial.pk)
                    tg.create_task(self._dial(dial, launch))

            launch()

    async def _look(self) -> None:
        try:
            entries = await self._listing.services(ServiceType.VISOR)
        except (SDError, OSError, TimeoutError) as exc:
            if not self._sd_failing:
                log.warning("autoconnect: cannot list public visors: %s", exc)
            self._sd_failing = True
            return
        if self._sd_failing:
            log.info("autoconnect: public visors listed again")
        self._sd_failing = False
        self.core.update_public([e.addr.pk for e in entries])

    def _update(self) -> None:
        live = [
            LiveTransport(tp.remote_pk, tp.type)
            for tp in self._pool.transports.values()
            if not tp.closed
        ]
        self.core.update_transports(live, self._now())

    async def _dial(self, dial: Dial, launch: Callable[[], None]) -> None:
        try:
            async with asyncio.timeout(self.config.dial_timeout):
                await self._pool.save_transport(dial.pk, dial.tp_type, Label.AUTOMATIC.value)
        except DIAL_ERRORS as exc:
            log.info("autoconnect: %s transport to %s failed: %s", dial.tp_type, dial.pk, exc)
            self.core.dial_failed(dial, self._now())
        else:
            log.info("autoconnect: %s transport to public visor %s", dial.tp_type, dial.pk)
            self.core.dial_succeeded(dial, self._now())
        self._update()
        self._notify()
        launch()

    async def _pause(self, watched: list[uuid.UUID]) -> None:
        """Until the interval is up or one of the ``watched`` transports goes away."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.interval):
                if not watched:
                    await asyncio.sleep(self.config.interval)
                async with leaving() as tg:
                    for tp_id in watched:
                        tg.create_task(self._gone(tp_id))

    async def _gone(self, tp_id: uuid.UUID) -> None:
        await self._pool.wait_gone(tp_id)
        raise Leave
