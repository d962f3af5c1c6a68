"""``dmsg://<pk-hex>[:port]/path?query`` URLs (sans-I/O): parsing and the ``Host`` they send.

A missing port (or ``0``/``~``) means :data:`DEFAULT_HTTP_PORT`, upstream's
``DefaultDmsgHTTPPort``; any defect raises :class:`DmsgURLError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from skywire.cipher import PubKey
from skywire.dmsg.addr import Addr, AddrError

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_HTTP_PORT", "DmsgURL", "DmsgURLError"]

DEFAULT_HTTP_PORT: Final = 80
"""``DefaultDmsgHTTPPort``: the dmsg port of dmsghttp when a URL names none."""


class DmsgURLError(ValueError):
    """A ``dmsg://`` URL that does not parse (wrong scheme, bad public key or port...)."""


def _parse_host(host: str, port_text: str | None) -> Addr:
    """The dmsg address of a URL authority; ``port_text`` None (or ``~``/``0``) means 80."""
    try:
        addr = Addr.parse(host if port_text is None else f"{host}:{port_text}")
    except AddrError as exc:
        raise DmsgURLError(str(exc)) from exc
    if addr.pk.is_null():
        raise DmsgURLError(f"invalid dmsg host {host!r}: null public key")
    if addr.port == 0:
        addr = Addr(addr.pk, DEFAULT_HTTP_PORT)
    return addr


@dataclass(frozen=True, slots=True)
class DmsgURL:
    """``dmsg://<pk-hex>[:port]/path?query``, with the port defaulted to 80."""

    addr: Addr
    path: str = "/"
    query: str = ""

    @classmethod
    def parse(cls, text: str) -> DmsgURL:
        """Parse a ``dmsg://`` URL; any defect raises :class:`DmsgURLError`."""
        try:
            parts = urlsplit(text)
        except ValueError as exc:
            raise DmsgURLError(f"invalid dmsg URL {text!r}: {exc}") from exc
        if parts.scheme.lower() != "dmsg":
            raise DmsgURLError(f"invalid dmsg URL {text!r}: scheme must be dmsg://")
        netloc = parts.netloc
        if not netloc:
            raise DmsgURLError(f"invalid dmsg URL {text!r}: missing host")
        if "@" in netloc:
            raise DmsgURLError(f"invalid dmsg URL {text!r}: user info is not allowed")
        host, sep, port_text = netloc.rpartition(":")
        if not sep:
            host, port_text = netloc, ""
        if not host:
            raise DmsgURLError(f"invalid dmsg URL {text!r}: missing public key")
        try:
            addr = _parse_host(host, port_text or None)
        except DmsgURLError as exc:
            raise DmsgURLError(f"invalid dmsg URL {text!r}: {exc}") from exc
        return cls(addr, parts.path or "/", parts.query)

    @classmethod
    def from_httpx(cls, url: httpx.URL) -> DmsgURL:
        """The dmsg address and target of an ``httpx.URL`` (scheme ``dmsg`` or ``http``)."""
        if url.scheme not in ("dmsg", "http"):
            raise DmsgURLError(f"unsupported scheme {url.scheme!r} for dmsg HTTP")
        if not url.host:
            raise DmsgURLError(f"invalid dmsg URL {str(url)!r}: missing public key")
        port = url.port
        addr = _parse_host(url.host, None if port is None else str(port))
        target = url.raw_path.decode("ascii")
        path, _, query = target.partition("?")
        return cls(addr, path or "/", query)

    @property
    def pk(self) -> PubKey:
        return self.addr.pk

    @property
    def port(self) -> int:
        return self.addr.port

    @property
    def host(self) -> str:
        """The ``Host`` header value: ``<pk-hex>:<port>``."""
        return f"{self.addr.pk.hex()}:{self.addr.port}"

    @property
    def target(self) -> str:
        """The request target: path plus query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def __str__(self) -> str:
        return f"dmsg://{self.host}{self.target}"
