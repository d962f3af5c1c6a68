"""dmsg addresses (``<pk>:<port>``) and the ephemeral port allocator."""

from __future__ import annotations

from dataclasses import dataclass

from skywire.cipher import CipherError, PubKey

EPHEMERAL_PORT_START = 49152
MAX_PORT = 0xFFFF


class AddrError(ValueError):
    """A dmsg address that does not parse."""


@dataclass(frozen=True, slots=True)
class Addr:
    """A dmsg address: a public key and a 16-bit port (0 = unset, written ``~``)."""

    pk: PubKey
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= MAX_PORT:
            raise AddrError(f"port {self.port} out of range")

    @classmethod
    def parse(cls, text: str) -> Addr:
        """Accept ``pk``, ``pk:port``, ``pk:~`` and ``:port`` (null key)."""
        pk_text, sep, port_text = text.rpartition(":")
        if not sep:
            pk_text, port_text = text, "~"
        try:
            pk = PubKey.from_hex(pk_text)
        except CipherError as exc:
            raise AddrError(f"invalid dmsg address {text!r}: {exc}") from exc
        if port_text in ("~", ""):
            return cls(pk, 0)
        if not port_text.isdigit():
            raise AddrError(f"invalid dmsg port in {text!r}")
        return cls(pk, int(port_text))

    def __str__(self) -> str:
        return f"{self.pk.hex()}:{self.port if self.port else '~'}"


class PortAllocator:
    """Listening ports reserved by the application, plus ephemeral ports handed out upward."""

    def __init__(self) -> None:
        self._used: set[int] = set()
        self._next = EPHEMERAL_PORT_START

    def reserve(self, port: int) -> bool:
        """Take ``port``; False if it is taken already."""
        if port <= 0 or port > MAX_PORT or port in self._used:
            return False
        self._used.add(port)
        return True

    def reserve_ephemeral(self) -> int:
        """The next free port above 49152 (the first one handed out is 49153)."""
        for _ in range(MAX_PORT - EPHEMERAL_PORT_START):
            self._next += 1
            if self._next > MAX_PORT:
                self._next = EPHEMERAL_PORT_START + 1
            if self._next not in self._used:
                self._used.add(self._next)
                return self._next
        raise AddrError("no ephemeral port left")

    def release(self, port: int) -> None:
        self._used.discard(port)

    def in_use(self, port: int) -> bool:
        return port in self._used
