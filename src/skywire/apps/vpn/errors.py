"""Errors of the VPN apps: one base, each also the builtin a caller would catch."""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "HandshakeRefusedError",
    "HandshakeStatus",
    "HelloError",
    "NoFreeIPsError",
    "PacketError",
    "SystemConfigError",
    "VpnError",
]


class HandshakeStatus(IntEnum):
    """Upstream ``internal/vpn/handshake_status.go``: the ``status`` of a server hello."""

    OK = 0
    BAD_REQUEST = 1
    NO_FREE_IPS = 2
    INTERNAL_ERROR = 3
    FORBIDDEN = 4

    def describe(self) -> str:
        """Upstream's ``String()``."""
        return _TEXT[self]


_TEXT = {
    HandshakeStatus.OK: "OK",
    HandshakeStatus.BAD_REQUEST: "Request was malformed",
    HandshakeStatus.NO_FREE_IPS: "No free IPs left to serve",
    HandshakeStatus.INTERNAL_ERROR: "Internal server error",
    HandshakeStatus.FORBIDDEN: "Forbidden",
}


class VpnError(Exception):
    """Something the VPN server or client could not do."""


class HelloError(VpnError, ValueError):
    """A malformed client or server hello; a server answers it with status 1."""

    status = HandshakeStatus.BAD_REQUEST


class NoFreeIPsError(VpnError, LookupError):
    """Every subnet of the allocator is taken (status 2)."""

    status = HandshakeStatus.NO_FREE_IPS


class PacketError(VpnError, ValueError):
    """Bytes on the route that do not start an IPv4 or IPv6 packet."""


class HandshakeRefusedError(VpnError, ConnectionError):
    """The server answered a non-zero status; ``status`` is upstream's code (1–4)."""

    def __init__(self, status: HandshakeStatus | int) -> None:
        self.status = status
        try:
            text = HandshakeStatus(status).describe()
        except ValueError:
            text = "Unknown code"
        super().__init__(f"vpn handshake status {int(status)} - {text}")


class SystemConfigError(VpnError, OSError):
    """An ``ip`` / ``iptables`` / ``sysctl`` command failed, or the TUN could not be opened."""
