"""Public visors and autoconnect on a whole loopback network (every service in-process):
visors with ``is_public`` are listed in service discovery with their stcpr address; visors
with ``public_autoconnect`` and no configured transport get stcpr transports to public visors
by themselves, never dmsg ones, and replace one whose public visor goes away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping

import pytest

from skywire.cipher import PubKey, SecKey
from skywire.services.sd import SDClient
from skywire.services.sd.client import SDUnreachableError
from skywire.services.sd.entry import ServiceEntry, ServiceType, SWAddr
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire
from skywire.transport.entry import Label
from skywire.transport.manager import ManagedTransport, TransportError, TransportManager
from skywire.transport.resolved import StcprNetwork
from skywire.visor.autoconnect import AutoconnectConfig
from skywire.visor.autoconnect_aio import PublicAutoconnect
from skywire.visor.config import VisorConfig
from skywire.visor.public import PublicVisor, visor_entry
from skywire.visor.visor import Visor

pytestmark = pytest.mark.timeout(90)

PUBLIC, PRIVATE = 3, 4
KEEP = 2  # fewer than the public visors: one that goes away can be replaced
INTERVAL = 3.0
MARGIN = 2.0


def configure(index: int, cfg: VisorConfig) -> None:
    cfg.is_public = index < PUBLIC
    cfg.transport.public_autoconnect = index >= PUBLIC
    cfg.persistent_transports = None


def stcpr_addr(v: Visor) -> SWAddr:
    assert v.tm is not None
    net = v.tm.networks["stcpr"]
    assert isinstance(net, StcprNetwork)
    return SWAddr(v.pk, net.port)


def autoconnect_of(v: Visor) -> PublicAutoconnect:
    assert v.autoconnect is not None
    return v.autoconnect


def kept_pks(v: Visor) -> set[str]:
    return {tp.remote_pk.hex() for tp in autoconnect_of(v).kept()}


async def listed(sd: SDClient) -> set[SWAddr]:
    return {e.addr for e in await sd.services(ServiceType.VISOR)}


async def test_public_visors_listed_and_private_ones_autoconnect_and_replace() -> None:
    config = AutoconnectConfig(max_conns=KEEP, interval=INTERVAL, dial_timeout=5.0)
    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=PUBLIC + PRIVATE, configure=configure, autoconnect=config) as sky,
    ):
        assert sky.sd is not None
        publics, privates = sky.visors[:PUBLIC], sky.visors[PUBLIC:]
        public_pks = {v.pk.hex() for v in publics}
        for v in publics:
            assert v.public_visor is not None and v.autoconnect is None
            await v.public_visor.wait_registered(10.0)
        for v in privates:
            assert v.public_visor is None

        async with SDClient(sky.sd.url, privates[0].sk) as sd:
            # every public visor listed as pk:stcpr-port, and nobody else
            assert await listed(sd) == {stcpr_addr(v) for v in publics}

            # each private visor reaches KEEP stcpr transports to public visors by itself
            for v in privates:
                await autoconnect_of(v).wait_until(lambda v=v: len(kept_pks(v)) == KEEP, 20.0)
            for v in privates:
                assert v.tm is not None
                tps = list(v.tm.transports.values())
                assert len(tps) == KEEP  # nothing else was made, dmsg above all
                assert {tp.type for tp in tps} == {"stcpr"}
                assert {tp.entry.label for tp in tps} == {Label.AUTOMATIC.value}
                assert kept_pks(v) <= public_pks
            for v in publics:  # the public visors see them too, and made no dmsg transport
                assert v.tm is not None
                assert all(tp.type == "stcpr" for tp in v.tm.transports.values())

            # a public visor goes away: its entry is deleted, its private peers replace it
            gone = max(publics, key=lambda p: sum(p.pk.hex() in kept_pks(v) for v in privates))
            peers = [v for v in privates if gone.pk.hex() in kept_pks(v)]
            assert peers
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await gone.close()
            for v in peers:
                await autoconnect_of(v).wait_until(
                    lambda v=v: len(kept_pks(v)) == KEEP and gone.pk.hex() not in kept_pks(v),
                    INTERVAL + MARGIN,
                )
            took = loop.time() - t0
            assert took < INTERVAL + MARGIN
            remaining = public_pks - {gone.pk.hex()}
            for v in privates:
                assert kept_pks(v) == remaining  # KEEP == the two public visors left
                assert v.tm is not None
                assert {tp.type for tp in v.tm.transports.values()} == {"stcpr"}
            assert await listed(sd) == {stcpr_addr(v) for v in publics if v is not gone}


async def test_public_visor_dead_but_still_listed_is_replaced_and_not_redialed() -> None:
    """A public visor killed outright leaves its entry listed for minutes: its transports
    end (here: its transport manager closes under it, the entry stays), and its private peers
    dial the spare public visor within one interval instead of the dead one."""
    config = AutoconnectConfig(max_conns=KEEP, interval=INTERVAL, dial_timeout=5.0)
    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=PUBLIC + PRIVATE, configure=configure, autoconnect=config) as sky,
    ):
        assert sky.sd is not None
        publics, privates = sky.visors[:PUBLIC], sky.visors[PUBLIC:]
        for v in privates:
            await autoconnect_of(v).wait_until(lambda v=v: len(kept_pks(v)) == KEEP, 20.0)
        dead = max(publics, key=lambda p: sum(p.pk.hex() in kept_pks(v) for v in privates))
        peers = [v for v in privates if dead.pk.hex() in kept_pks(v)]
        assert dead.tm is not None and dead.public_visor is not None
        t0 = asyncio.get_running_loop().time()
        await dead.tm.close()
        for v in peers:
            await autoconnect_of(v).wait_until(
                lambda v=v: len(kept_pks(v)) == KEEP and dead.pk.hex() not in kept_pks(v),
                INTERVAL + MARGIN,
            )
        assert asyncio.get_running_loop().time() - t0 < INTERVAL + MARGIN
        async with SDClient(sky.sd.url, privates[0].sk) as sd:
            assert stcpr_addr(dead) in await listed(sd)  # still listed: stale
        for v in privates:
            assert dead.pk.hex() not in kept_pks(v)
            assert v.tm is not None and not v.tm.by_remote(dead.pk)


async def test_autoconnect_off_and_not_public_by_default_in_testnets() -> None:
    async with LocalDmsgNetwork(servers=1) as dnet, LocalSkywire(dnet, visors=2) as sky:
        assert sky.sd is not None
        for v in sky.visors:
            assert v.autoconnect is None and v.public_visor is None
            assert v.tm is not None and not v.tm.transports
        async with SDClient(sky.sd.url, sky.visors[0].sk) as sd:
            assert await listed(sd) == set()


class FlakyListing:
    """Service discovery that cannot be asked ``down`` times, then the real one."""

    def __init__(self, real: SDClient, down: int) -> None:
        self.real = real
        self.down = down
        self.calls = 0

    async def services(
        self, service_type: ServiceType | str, *, version: str = "", country: str = "",
        quantity: int = 0,
    ) -> list[ServiceEntry]:  # fmt: skip
        self.calls += 1
        if self.calls <= self.down:
            raise SDUnreachableError("service discovery: connection refused")
        return await self.real.services(service_type, version=version, country=country,
                                        quantity=quantity)  # fmt: skip


async def test_autoconnect_with_discovery_down_keeps_trying() -> None:
    """Discovery away at first: autoconnect logs, looks again every interval, and connects
    once it answers; closing it leaves the transports it made."""

    def conf(index: int, cfg: VisorConfig) -> None:
        cfg.is_public = index == 0

    config = AutoconnectConfig(max_conns=1, interval=0.3, dial_timeout=5.0)
    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=2, configure=conf) as sky,
    ):
        assert sky.sd is not None
        public, private = sky.visors
        assert public.public_visor is not None and private.tm is not None
        await public.public_visor.wait_registered(10.0)
        async with SDClient(sky.sd.url, private.sk) as real:
            listing = FlakyListing(real, down=3)
            async with PublicAutoconnect(listing, private.tm, private.pk, config) as ac:
                await ac.wait_until(lambda: ac.rounds >= 3, 5.0)
                assert ac.kept() == [] and not private.tm.transports
                await ac.wait_until(lambda: len(ac.kept()) == 1, 5.0)
                assert listing.calls >= 4
                assert [(tp.remote_pk, tp.type) for tp in ac.kept()] == [(public.pk, "stcpr")]
            assert len(private.tm.transports) == 1  # what it made stays
            assert not [t for t in asyncio.all_tasks() if t.get_name() == "autoconnect"]


class StcprBlocked:
    """A transport manager whose stcpr dials fail (as a firewall would make them)."""

    def __init__(self, tm: TransportManager) -> None:
        self.tm = tm
        self.tried: list[tuple[PubKey, str]] = []

    @property
    def transports(self) -> Mapping[uuid.UUID, ManagedTransport]:
        return self.tm.transports

    def transport_types(self) -> list[str]:
        return self.tm.transport_types()

    async def save_transport(
        self, remote: PubKey, tp_type: str, label: str = "user"
    ) -> ManagedTransport:
        self.tried.append((remote, tp_type))
        if tp_type == "stcpr":
            raise TransportError(f"stcpr transport to {remote}: connection refused")
        return await self.tm.save_transport(remote, tp_type, label)

    async def wait_gone(self, tp_id: uuid.UUID) -> None:
        await self.tm.wait_gone(tp_id)


async def test_sudph_when_stcpr_fails() -> None:
    def conf(index: int, cfg: VisorConfig) -> None:
        cfg.is_public = index == 0

    config = AutoconnectConfig(max_conns=1, interval=0.3, dial_timeout=10.0)
    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=2, configure=conf) as sky,
    ):
        assert sky.sd is not None
        public, private = sky.visors
        assert public.public_visor is not None and private.tm is not None
        await public.public_visor.wait_registered(10.0)
        pool = StcprBlocked(private.tm)
        async with (
            SDClient(sky.sd.url, private.sk) as sd,
            PublicAutoconnect(sd, pool, private.pk, config) as ac,
        ):
            await ac.wait_until(lambda: len(ac.kept()) == 1, 15.0)
            assert pool.tried[:2] == [(public.pk, "stcpr"), (public.pk, "sudph")]
            assert [(tp.remote_pk, tp.type) for tp in ac.kept()] == [(public.pk, "sudph")]
            assert {tp.type for tp in private.tm.transports.values()} == {"sudph"}


class Registry:
    """A service discovery in memory that refuses the first ``refuse`` registrations."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.registered: list[ServiceEntry] = []
        self.deleted: list[SWAddr | None] = []
        self.changed = asyncio.Event()

    async def register(self, entry: ServiceEntry) -> ServiceEntry:
        self.changed.set()
        if self.refuse > 0:
            self.refuse -= 1
            raise SDUnreachableError("service discovery: connection refused")
        self.registered.append(entry)
        return entry

    async def delete(self, service_type: ServiceType | str, addr: SWAddr | None = None) -> None:
        assert service_type == ServiceType.VISOR
        self.deleted.append(addr)

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5.0):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def test_public_visor_entry_retried_refreshed_and_deleted() -> None:
    pk = SecKey.generate().pubkey()
    entry = visor_entry(pk, 40123, ["127.0.0.1"], version="v1.3.29")
    assert entry.addr == SWAddr(pk, 40123) and entry.type == ServiceType.VISOR
    assert entry.local_ips == ("127.0.0.1",)
    for _ in range(3):  # open/close cycles leave nothing behind
        reg = Registry(refuse=2)
        async with PublicVisor(reg, entry, refresh=0.05, retry=0.01) as pv:
            await pv.wait_registered(5.0)  # after two refusals
            await reg.until(lambda reg=reg: len(reg.registered) >= 3)  # refreshed
            assert pv.registered and reg.deleted == []
        assert reg.deleted == [entry.addr] and not pv.registered
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "public-visor"]
    reg = Registry(refuse=1000)  # never registered: still deleted (a refusal may have landed)
    async with PublicVisor(reg, entry, retry=0.01):
        await reg.until(lambda: reg.refuse < 998)
    assert reg.deleted == [entry.addr]
