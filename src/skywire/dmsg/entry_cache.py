"""The entries a dmsg client fetched, for dials that must survive a discovery outage.

Every lookup asks discovery. While discovery cannot be asked (unreachable, timing out), the
entry fetched last serves if it is at most :data:`STALE_ENTRY_AGE` old. Keys the client must
always be able to reach (a visor's setup nodes) are kept *warm*: fetched again once a refresh
period, so that their entries are never older than that when discovery goes away.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from skywire.cipher import PubKey
from skywire.dmsg.disc_entry import Entry
from skywire.dmsg.disc_errors import DiscUnreachableError
from skywire.dmsg.discovery import DISCOVERY_ERRORS, Discovery

__all__ = ["MAX_CACHED_ENTRIES", "STALE_ENTRY_AGE", "EntryCache"]

log = logging.getLogger(__name__)

STALE_ENTRY_AGE = 600.0
"""Seconds a fetched entry may serve a dial while discovery is unreachable."""
MAX_CACHED_ENTRIES = 4096


class EntryCache:
    """``await cache.lookup(pk)``: discovery's entry, or while it is away a recent copy."""

    def __init__(self, disc: Discovery, owner: str = "") -> None:
        self.disc = disc
        self.owner = owner
        self.warm: set[PubKey] = set()
        """Keys fetched again by :meth:`warm_up` (the owner calls it once a refresh period)."""
        self._entries: OrderedDict[PubKey, tuple[Entry, float]] = OrderedDict()

    async def lookup(self, pk: PubKey) -> Entry:
        """``pk``'s entry from discovery; while discovery cannot be asked, the one fetched
        last, if it is at most :data:`STALE_ENTRY_AGE` old. Raises what discovery raised."""
        try:
            entry = await self.disc.get_entry(pk)
        except (DiscUnreachableError, OSError, TimeoutError) as exc:
            cached = self.cached(pk)
            if cached is None:
                raise
            log.info(
                "dmsg client %s: discovery away (%s): using %s's last entry", self.owner, exc, pk
            )
            return cached
        self.remember(entry)
        return entry

    def remember(self, entry: Entry) -> None:
        """Keep ``entry`` as fetched now (also entries learnt otherwise: a server's, from the
        listing that led to a session with it)."""
        self._entries[entry.static] = (entry, time.monotonic())
        self._entries.move_to_end(entry.static)
        while len(self._entries) > MAX_CACHED_ENTRIES:
            self._entries.popitem(last=False)

    def cached(self, pk: PubKey) -> Entry | None:
        """The copy of ``pk``'s entry, if one was fetched at most :data:`STALE_ENTRY_AGE` ago."""
        held = self._entries.get(pk)
        if held is None or time.monotonic() - held[1] > STALE_ENTRY_AGE:
            return None
        return held[0]

    async def warm_up(self) -> None:
        """Fetch every warm key's entry again (failures leave the old copy in place)."""
        for pk in list(self.warm):
            try:
                await self.lookup(pk)
            except DISCOVERY_ERRORS as exc:
                log.debug("dmsg client %s: keeping %s warm: %s", self.owner, pk, exc)
