"""The RPC services a host serves after accepting a request (upstream ``pty_gateway.go``,
``whitelist_gateway.go``, ``whitelist.go``).

``pty`` is served over any :class:`PtyBackend`: a :class:`~skywire.dmsg.pty.local.LocalPty` for
``dmsgpty/pty``, or a :class:`~skywire.dmsg.pty.client.PtyClient` to another host for
``dmsgpty/proxy`` (upstream's ``ProxiedPtyGateway``). A backend's exception text becomes the
net/rpc error string the caller sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from skywire.cipher import PubKey
from skywire.dmsg.pty.protocol import (
    BYTES,
    COMMAND_REQ,
    EMPTY,
    INT,
    PUBKEYS,
    WIN_SIZE,
    CommandReq,
    WinSize,
)
from skywire.wire.netrpc import RPCMethod

__all__ = ["MemoryWhitelist", "PtyBackend", "Whitelist", "pty_service", "whitelist_service"]


class PtyBackend(Protocol):
    """What the ``pty`` service drives."""

    async def start(
        self, name: str, args: Sequence[str] = (), size: WinSize | None = None
    ) -> None: ...

    async def stop(self) -> None: ...

    async def read(self, n: int) -> bytes: ...

    async def write(self, data: bytes) -> int: ...

    async def set_size(self, size: WinSize) -> None: ...


class Whitelist(Protocol):
    """The keys a host serves (upstream ``Whitelist``)."""

    def get(self, pk: PubKey) -> bool: ...

    def all(self) -> list[PubKey]: ...

    def add(self, *pks: PubKey) -> None: ...

    def remove(self, *pks: PubKey) -> None: ...


class MemoryWhitelist:
    """A :class:`Whitelist` held in memory, in insertion order."""

    def __init__(self, pks: Iterable[PubKey] = ()) -> None:
        self._keys: dict[PubKey, None] = dict.fromkeys(pks)

    def get(self, pk: PubKey) -> bool:
        return pk in self._keys

    def all(self) -> list[PubKey]:
        return list(self._keys)

    def add(self, *pks: PubKey) -> None:
        self._keys.update(dict.fromkeys(pks))

    def remove(self, *pks: PubKey) -> None:
        for pk in pks:
            self._keys.pop(pk, None)


def pty_service(backend: PtyBackend) -> dict[str, RPCMethod]:
    """The ``pty`` RPC methods over ``backend``."""

    async def start(req: CommandReq) -> dict[str, Any]:
        await backend.start(req.name, req.args, req.size)
        return {}

    async def stop(_: object) -> dict[str, Any]:
        await backend.stop()
        return {}

    async def read(n: int | None) -> bytes:
        return await backend.read(int(n or 0))

    async def write(data: bytes | None) -> int:
        return await backend.write(bytes(data or b""))

    async def set_pty_size(size: WinSize) -> dict[str, Any]:
        await backend.set_size(size)
        return {}

    return {
        "Start": RPCMethod(start, COMMAND_REQ, EMPTY),
        "Stop": RPCMethod(stop, EMPTY, EMPTY),
        "Read": RPCMethod(read, INT, BYTES),
        "Write": RPCMethod(write, BYTES, INT),
        "SetPtySize": RPCMethod(set_pty_size, WIN_SIZE, EMPTY),
    }


def whitelist_service(whitelist: Whitelist) -> dict[str, RPCMethod]:
    """The ``whitelist`` RPC methods (served on a host's local CLI socket only)."""

    async def get_all(_: object) -> list[PubKey]:
        return whitelist.all()

    async def add(pks: list[PubKey] | None) -> dict[str, Any]:
        whitelist.add(*(pks or ()))
        return {}

    async def remove(pks: list[PubKey] | None) -> dict[str, Any]:
        whitelist.remove(*(pks or ()))
        return {}

    return {
        "Whitelist": RPCMethod(get_all, EMPTY, PUBKEYS),
        "WhitelistAdd": RPCMethod(add, PUBKEYS, EMPTY),
        "WhitelistRemove": RPCMethod(remove, PUBKEYS, EMPTY),
    }
