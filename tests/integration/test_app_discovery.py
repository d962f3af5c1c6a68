"""The visor's announcements of public apps, against a real service discovery on 127.0.0.1:
registered when the app listens on its routing port, refreshed, deleted when it stops; private
(passcode) and unrelated listeners never announced; an outage retried; the same entry going
down and up again in a hurry ends registered."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from skywire.cipher import SecKey
from skywire.services.sd import SDClient, SDServer
from skywire.services.sd.client import SDNotFoundError
from skywire.services.sd.entry import ServiceEntry, ServiceType, SWAddr
from skywire.services.sd.store.memory import MemoryStore
from skywire.visor.appdisc import AppAnnouncer, is_private, service_type_of

pytestmark = pytest.mark.timeout(60)

APPS: dict[str, tuple[int, list[str]]] = {
    "skysocks": (3, ["app", "skysocks"]),
    "vpn-server": (44, ["app", "vpn-server"]),
    "private": (5, ["app", "skysocks", "--passcode", "s3cret"]),
    "skychat": (1, ["app", "skychat"]),
}


def lookup(name: str) -> tuple[int, Sequence[str]] | None:
    return APPS.get(name)


class Counting:
    """The real client, counting the calls that reached the service."""

    def __init__(self, client: SDClient) -> None:
        self.client = client
        self.registers = 0
        self.deletes = 0

    async def register(self, entry: ServiceEntry) -> ServiceEntry:
        out = await self.client.register(entry)
        self.registers += 1
        return out

    async def delete(self, service_type: ServiceType | str, addr: SWAddr | None = None) -> None:
        await self.client.delete(service_type, addr)
        self.deletes += 1


@asynccontextmanager
async def network(
    port: int = 0, **kw: float
) -> AsyncIterator[tuple[SDServer, SecKey, Counting, AppAnnouncer]]:
    sk = SecKey.generate()
    async with (
        MemoryStore() as store,
        SDServer(store, "127.0.0.1", port) as sd,
        SDClient(sd.url, sk) as client,
    ):
        counting = Counting(client)
        async with AppAnnouncer(counting, sk.pubkey(), lookup, version="v1.3.29", **kw) as ann:
            yield sd, sk, counting, ann


async def listed(sd: SDServer, kind: ServiceType) -> list[str]:
    async with SDClient(sd.url, SecKey.generate()) as c:
        return [str(e.addr) for e in await c.services(kind)]


def test_what_is_announced() -> None:
    assert service_type_of("skysocks", ["app", "skysocks"]) is ServiceType.SKYSOCKS
    assert service_type_of("vpn-server", []) is ServiceType.VPN
    assert service_type_of("skychat", []) is None
    assert service_type_of("skysocks-client", []) is None
    for private in (["--passcode", "x"], ["--passcode=x"], ["-passcode", "x"]):
        assert is_private(private) and service_type_of("skysocks", private) is None
    for public in ([], ["--passcode"], ["--passcode="], ["--passcode", ""], ["passcode", "x"]):
        assert not is_private(public), public


async def test_registered_while_listening_then_deleted() -> None:
    async with network() as (sd, sk, counting, ann):
        ann.listening("skysocks", "skynet", 3, True)
        await ann.wait_until(lambda: len(ann.registered()) == 1, 10)
        assert await listed(sd, ServiceType.SKYSOCKS) == [f"{sk.pubkey().hex()}:3"]
        ann.listening("vpn-server", "skynet", 44, True)
        await ann.wait_until(lambda: len(ann.registered()) == 2, 10)
        assert await listed(sd, ServiceType.VPN) == [f"{sk.pubkey().hex()}:44"]

        ann.listening("skysocks", "skynet", 3, False)
        await ann.wait_until(lambda: len(ann.registered()) == 1, 10)
        assert await listed(sd, ServiceType.SKYSOCKS) == []
        async with SDClient(sd.url, SecKey.generate()) as c:
            with pytest.raises(SDNotFoundError):
                await c.service(ServiceType.SKYSOCKS, SWAddr(sk.pubkey(), 3))
        assert counting.deletes == 1
    # leaving the block deleted the vpn entry too
    assert counting.deletes == 2


async def test_private_and_unrelated_listeners_are_not_announced() -> None:
    async with network() as (sd, _, counting, ann):
        ann.listening("private", "skynet", 5, True)  # passcode
        ann.listening("skychat", "skynet", 1, True)  # not a service
        ann.listening("skysocks", "dmsg", 3, True)  # not its routing net
        ann.listening("skysocks", "skynet", 4, True)  # not its routing port
        ann.listening("unknown", "skynet", 3, True)  # not an app of this visor
        ann.listening("vpn-server", "skynet", 44, True)  # the one that counts, last
        await ann.wait_until(lambda: len(ann.registered()) == 1, 10)
        assert counting.registers == 1
        assert await listed(sd, ServiceType.SKYSOCKS) == []


async def test_refreshed_until_stopped() -> None:
    async with network(refresh=0.02) as (_, _, counting, ann):
        ann.listening("skysocks", "skynet", 3, True)
        await ann.wait_until(lambda: counting.registers >= 5, 10)
        ann.listening("skysocks", "skynet", 3, False)
        await ann.wait_until(lambda: counting.deletes == 1, 10)
        after = counting.registers
        ann.listening("skysocks", "skynet", 3, False)  # twice: harmless
        await ann.wait_until(lambda: not ann.registered(), 10)
    assert counting.registers == after and counting.deletes == 1


async def test_down_and_up_in_a_hurry_ends_registered() -> None:
    async with network() as (sd, sk, counting, ann):
        for _ in range(20):
            ann.listening("skysocks", "skynet", 3, True)
            ann.listening("skysocks", "skynet", 3, False)
        ann.listening("skysocks", "skynet", 3, True)
        await ann.wait_until(lambda: len(ann.registered()) == 1, 10)
        # whatever ran in between, no delete is left to overtake the last register
        await ann.wait_until(lambda: counting.deletes == counting.registers - 1, 10)
        assert await listed(sd, ServiceType.SKYSOCKS) == [f"{sk.pubkey().hex()}:3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_outage_is_retried() -> None:
    port = free_port()
    sk = SecKey.generate()
    url = f"http://127.0.0.1:{port}"
    async with (
        SDClient(url, sk, timeout=2) as client,
        AppAnnouncer(client, sk.pubkey(), lookup, version="v1", retry=0.05) as ann,
    ):
        ann.listening("skysocks", "skynet", 3, True)  # nobody listens on the port yet
        assert ann.registered() == []
        async with MemoryStore() as store, SDServer(store, "127.0.0.1", port) as sd:
            await ann.wait_until(lambda: len(ann.registered()) == 1, 10)
            assert await listed(sd, ServiceType.SKYSOCKS) == [f"{sk.pubkey().hex()}:3"]
            ann.listening("skysocks", "skynet", 3, False)
            await ann.wait_until(lambda: not ann.registered(), 10)
            assert await listed(sd, ServiceType.SKYSOCKS) == []
