"""Keeps one discovery entry published: first post, later iterations, deletion on close."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from skywire.cipher import SecKey
from skywire.dmsg.disc_entry import Entry, KeyNotFoundError, NonZeroSequenceError, sign
from skywire.dmsg.disc_errors import DeleteNotProvenError
from skywire.dmsg.discovery import DISCOVERY_ERRORS, Discovery

log = logging.getLogger(__name__)


class EntryKeeper:
    """Publishes successive versions of this node's entry, one update at a time."""

    def __init__(self, disc: Discovery, sk: SecKey) -> None:
        self.disc = disc
        self.sk = sk
        self.entry: Entry | None = None
        self._lock = asyncio.Lock()
        # A post was sent but its answer not seen (cancelled by a close, or failed): discovery
        # may hold a newer iteration than ``entry``.
        self._in_doubt = False

    async def publish(self, build: Callable[[Entry | None], Entry]) -> Entry:
        """Post ``build(current)``: the first time as sequence 0 (or after the remote one), then
        as the next iteration. Raises :class:`DiscError` when the discovery refuses it."""
        async with self._lock:
            self._in_doubt = True
            entry = await self._publish(build)
            self._in_doubt = False
            return entry

    async def _publish(self, build: Callable[[Entry | None], Entry]) -> Entry:
        if self.entry is None:
            fresh = build(None)
            try:
                remote = await self.disc.get_entry(fresh.static)
            except KeyNotFoundError:
                signed = sign(replace(fresh, sequence=0), self.sk)
                await self.disc.post_entry(signed)
                self.entry = signed
                return signed
            self.entry = remote
        updated = build(self.entry)
        try:
            self.entry = await self.disc.put_entry(self.sk, updated)
        except (KeyNotFoundError, NonZeroSequenceError):
            # the discovery lost the entry (deleted, or restarted on memory): start over
            signed = sign(replace(build(None), sequence=0), self.sk)
            await self.disc.post_entry(signed)
            self.entry = signed
        return self.entry

    async def check_remote(self) -> bool:
        """Compare what discovery holds with what was published; when it is missing or older,
        forget the local copy (the next :meth:`publish` posts afresh) and return True.
        Raises what a discovery call raises."""
        async with self._lock:
            if self.entry is None:
                return False
            try:
                remote = await self.disc.get_entry(self.entry.static)
            except KeyNotFoundError:
                log.info("discovery lost the entry of %s: publishing it again", self.entry.static)
                self.entry = None
                return True
            if remote.sequence < self.entry.sequence or remote.timestamp < self.entry.timestamp:
                log.info("discovery holds an older entry of %s: publishing again", remote.static)
                self.entry = None
                return True
            return False

    async def _catch_up(self) -> None:
        """After a post whose answer was not seen, take discovery's copy as the current one (a
        cancelled put may have landed), so that the deletion iterates on what it holds."""
        try:
            self.entry = await self.disc.get_entry(self.sk.pubkey())
        except KeyNotFoundError:
            self.entry = None
        except DISCOVERY_ERRORS as exc:
            log.debug("could not read back the entry of %s: %s", self.sk.pubkey(), exc)
        self._in_doubt = False

    async def delete(self) -> None:
        """Remove the entry from discovery (best effort: a failure is logged)."""
        async with self._lock:
            if self._in_doubt:
                await self._catch_up()
            if self.entry is None:
                return
            # A new iteration signed now: what proves to the discovery that the key's holder
            # asks (a copy of the stored entry would be refused).
            entry = self.entry
            for attempt in (1, 2):
                final = sign(
                    replace(entry, sequence=entry.sequence + 1, timestamp=time.time_ns()), self.sk
                )
                try:
                    await self.disc.delete_entry(final)
                    break
                except DeleteNotProvenError:
                    if attempt == 2:
                        log.info("discovery refused to delete the entry of %s", entry.static)
                        break
                    try:  # our copy is behind what discovery holds: iterate on its copy
                        entry = await self.disc.get_entry(entry.static)
                    except DISCOVERY_ERRORS:
                        break
                except DISCOVERY_ERRORS as exc:
                    log.debug("could not delete entry of %s: %s", entry.static, exc)
                    break
            self.entry = None
