"""What the dmsg layer needs of a discovery: the five calls of :class:`Discovery`.

The client and the server are written against this Protocol; the HTTP client in
``services.dmsgdisc`` (and its variant that rides dmsg itself) provides the real thing. Every
call raises :class:`~skywire.dmsg.disc_errors.DiscError` for a refusal, its subclass
:class:`~skywire.dmsg.disc_errors.DiscUnreachableError` (a ``ConnectionError``) when the
discovery cannot be asked, and may raise ``OSError`` or ``TimeoutError``: nothing else.
"""

from __future__ import annotations

from typing import Protocol

from skywire.cipher import PubKey, SecKey
from skywire.dmsg.disc_entry import Entry
from skywire.dmsg.disc_errors import DiscError

__all__ = ["DISCOVERY_ERRORS", "Discovery"]

DISCOVERY_ERRORS: tuple[type[BaseException], ...] = (DiscError, OSError, TimeoutError)
"""What a :class:`Discovery` call may raise (catch exactly these)."""


class Discovery(Protocol):
    """A dmsg discovery as the client and server use it."""

    async def get_entry(self, pk: PubKey) -> Entry:
        """The entry of ``pk``; ``KeyNotFoundError`` when there is none."""
        ...

    async def post_entry(self, entry: Entry, *, timeout: bool = False) -> str:
        """Post an already signed entry; returns the discovery's message."""
        ...

    async def put_entry(self, sk: SecKey, entry: Entry) -> Entry:
        """Publish the next iteration of ``entry``; returns it as published."""
        ...

    async def delete_entry(self, entry: Entry) -> None:
        """Delete the entry of ``entry.static`` (the body is the signed entry)."""
        ...

    async def available_servers(self) -> list[Entry]:
        """Servers with free sessions; ``NoAvailableServersError`` when none."""
        ...
