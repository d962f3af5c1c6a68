"""Every service client says, in its own error type, that its service could not be asked: no
aiohttp error escapes, and the message names the request and the reason."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from skywire.cipher import KeyPair
from skywire.dmsg.disc_errors import DiscError, DiscUnreachableError
from skywire.routing.route import RouteQueryError
from skywire.services.ar.client import ARClient
from skywire.services.dmsgdisc.client import DiscClient
from skywire.services.rf.client import RFClient, RouteFinderUnreachableError
from skywire.services.tpd.client import TPDClient, TPDUnreachableError
from skywire.transport.manager import RegistryError
from skywire.transport.resolver import ResolverError, ResolverUnreachableError


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _disc(url: str) -> Any:
    async with DiscClient(url, timeout=2) as c:
        return await c.available_servers()


async def _disc_one_shot(url: str) -> Any:
    async with DiscClient(url, timeout=2, pooled=False) as c:
        return await c.available_servers()


async def _rf(url: str) -> Any:
    kp = KeyPair.generate()
    async with RFClient(url, timeout=2) as c:
        return await c.find_routes([(kp.pk, KeyPair.generate().pk)])


async def _tpd(url: str) -> Any:
    async with TPDClient(url, KeyPair.generate().sk, timeout=2) as c:
        return await c.health()


async def _ar(url: str) -> Any:
    async with ARClient(url, KeyPair.generate().sk, timeout=2) as c:
        return await c.bind_stcpr(1234)


CASES: list[tuple[str, Callable[[str], Awaitable[Any]], type[Exception], type[Exception]]] = [
    ("dmsg discovery", _disc, DiscUnreachableError, DiscError),
    ("dmsg discovery, one-shot", _disc_one_shot, DiscUnreachableError, DiscError),
    ("route finder", _rf, RouteFinderUnreachableError, RouteQueryError),
    ("transport discovery", _tpd, TPDUnreachableError, RegistryError),
    ("address resolver", _ar, ResolverUnreachableError, ResolverError),
]


@pytest.mark.parametrize(("name", "call", "error", "family"), CASES, ids=[c[0] for c in CASES])
async def test_unreachable_service_gives_the_clients_own_error(
    name: str,
    call: Callable[[str], Awaitable[Any]],
    error: type[Exception],
    family: type[Exception],
) -> None:
    port = closed_port()
    with pytest.raises(error) as info:
        await call(f"http://127.0.0.1:{port}")
    assert isinstance(info.value, family) and isinstance(info.value, ConnectionError)
    text = str(info.value)
    assert f"127.0.0.1:{port}" in text, text
    assert "refused" in text.lower() or "connect" in text.lower(), text
