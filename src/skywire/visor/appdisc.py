"""Announcing public apps in service discovery while they serve.

A skysocks server (and a vpn-server) is found by its clients through service discovery. The
app holds no key, so the visor announces it, signing with its own: the entry
``<visor pk>:<routing port>`` of type ``skysocks`` (``vpn``) is registered as soon as the app
listens on its routing port, registered again every ``refresh`` seconds (the service forgets
entries after 300 s), and deleted when the app stops listening (it closed the listener, exited,
or was stopped). As upstream does, an app started with a non-empty ``--passcode`` is private and
not announced.

Discovery being down costs nothing but the listing: a failed registration is logged once per
outage and retried after ``retry`` seconds, and the app is never held up by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from skywire.cipher import PubKey
from skywire.services.sd.entry import ServiceEntry, ServiceType, SWAddr
from skywire.services.sd.errors import SDError
from skywire.wire.lifecycle import Lifecycle
from skywire.wire.tasks import TaskTree, TaskTreeClosedError

__all__ = ["ANNOUNCED_APPS", "AppAnnouncer", "ServiceRegistry", "is_private", "service_type_of"]

log = logging.getLogger(__name__)

ANNOUNCED_APPS = {"skysocks": ServiceType.SKYSOCKS, "vpn-server": ServiceType.VPN}
"""The apps announced by name, and the service type each is listed under (upstream's choice)."""

REFRESH = 120.0
RETRY = 5.0
DELETE_TIMEOUT = 5.0


class ServiceRegistry(Protocol):
    """What the announcer needs of :class:`~skywire.services.sd.client.SDClient`."""

    async def register(self, entry: ServiceEntry) -> ServiceEntry: ...

    async def delete(self, service_type: ServiceType | str, addr: SWAddr | None = None) -> None: ...


def is_private(args: Sequence[str]) -> bool:
    """True when ``args`` set a non-empty passcode (``--passcode X``, ``--passcode=X``, or
    upstream's single-dash spelling)."""
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name.lstrip("-") != "passcode" or not name.startswith("-"):
            continue
        if not eq:
            value = args[i + 1] if i + 1 < len(args) else ""
        if value:
            return True
    return False


def service_type_of(app_name: str, args: Sequence[str]) -> ServiceType | None:
    """The type ``app_name`` is announced under, or ``None`` if it is not announced."""
    kind = ANNOUNCED_APPS.get(app_name)
    if kind is None or is_private(args):
        return None
    return kind


@dataclass
class _Announcement:
    entry: ServiceEntry
    wanted: bool = True
    registered: bool = False  # the service holds it (last register succeeded, not deleted)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class AppAnnouncer(Lifecycle):
    """``async with AppAnnouncer(sd_client, visor_pk, lookup) as ann:``; the app server calls
    :meth:`listening` when an app starts or stops listening on a port, and ``lookup(name)``
    gives that app's routing port and arguments (``None`` for an app it does not know).
    Leaving the block deletes every entry still registered (each within ``DELETE_TIMEOUT``)."""

    def __init__(
        self,
        registry: ServiceRegistry,
        visor_pk: PubKey,
        lookup: Callable[[str], tuple[int, Sequence[str]] | None],
        *,
        version: str = "",
        refresh: float = REFRESH,
        retry: float = RETRY,
    ) -> None:
        if refresh <= 0 or retry <= 0:
            raise ValueError("refresh and retry must be positive")
        self._registry = registry
        self._pk = visor_pk
        self._version = version
        self._refresh = refresh
        self._retry = retry
        self._lookup = lookup
        self._live: dict[tuple[ServiceType, int], _Announcement] = {}
        self._ending: dict[tuple[ServiceType, int], tuple[asyncio.Task[None], _Announcement]] = {}
        self._tree = TaskTree("appdisc", log)
        self._changed = asyncio.Event()

    async def start(self) -> None:
        await self._tree.start()

    async def close(self) -> None:
        for ann in self._live.values():
            ann.wanted = False
            ann.changed.set()
        tasks = [a.task for a in self._live.values() if a.task is not None]
        tasks += [task for task, _ in self._ending.values()]
        if tasks:  # each deletes its entry on the way out, bounded by DELETE_TIMEOUT
            await asyncio.wait(tasks)
        self._live.clear()
        await self._tree.close()

    def registered(self) -> list[ServiceEntry]:
        """Entries the service holds for this visor's apps, as far as this visor knows."""
        anns = [*self._live.values(), *(ann for _, ann in self._ending.values())]
        return [a.entry for a in anns if a.registered]

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Wait until ``condition()`` holds, checked after every register and delete;
        ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not condition():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def listening(self, app_name: str, net: str, port: int, up: bool) -> None:
        """``app_name`` started (``up``) or stopped listening on ``net`` port ``port``."""
        conf = self._lookup(app_name)
        if net != "skynet" or conf is None or conf[0] != port:
            return
        kind = service_type_of(app_name, conf[1])
        if kind is None:
            return
        key = (kind, port)
        ann = self._live.get(key)
        if ann is not None:
            ann.wanted = up
            ann.changed.set()
            return
        if not up:
            return
        entry = ServiceEntry(SWAddr(self._pk, port), kind, version=self._version)
        ann = _Announcement(entry)
        try:
            ann.task = self._tree.spawn(
                self._keep(key, ann, self._ending.get(key, (None, None))[0]), f"appdisc-{app_name}"
            )
        except TaskTreeClosedError:
            return
        self._live[key] = ann

    async def _keep(
        self,
        key: tuple[ServiceType, int],
        ann: _Announcement,
        previous: asyncio.Task[None] | None,
    ) -> None:
        """Register and refresh while wanted; delete once not. A new announcement of the same
        entry first waits for the previous one's delete, so the two never race."""
        registered = False
        failing = False
        if previous is not None:
            await asyncio.wait([previous])
        try:
            while ann.wanted:
                ann.changed.clear()
                try:
                    await self._registry.register(ann.entry)
                    registered = ann.registered = True
                    self._notify()
                    if failing:
                        log.info("service discovery: %s registered again", ann.entry.addr)
                    failing = False
                    wait = self._refresh
                except (SDError, OSError, TimeoutError) as exc:
                    if not failing:
                        log.warning(
                            "service discovery: cannot register %s: %s", ann.entry.addr, exc
                        )
                    failing = True
                    wait = self._retry
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await ann.changed.wait()
        finally:
            if self._live.get(key) is ann:
                del self._live[key]
            me = asyncio.current_task()
            if me is not None:
                self._ending[key] = (me, ann)
            try:
                if registered:
                    await self._delete(ann.entry)
            finally:
                ann.registered = False
                if self._ending.get(key, (None, None))[0] is me:
                    del self._ending[key]
                self._notify()

    async def _delete(self, entry: ServiceEntry) -> None:
        try:
            async with asyncio.timeout(DELETE_TIMEOUT):
                await self._registry.delete(entry.type, entry.addr)
        except (SDError, OSError, TimeoutError) as exc:
            log.warning("service discovery: cannot delete %s: %s", entry.addr, exc)
