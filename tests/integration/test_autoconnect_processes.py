"""Autoconnect with real processes (:class:`~skywire.testnet.procnet.ProcessNetwork`): three
public visors listed in service discovery, three private ones with ``public_autoconnect`` and
no configured transport, keeping two stcpr transports each (``transport.autoconnect_count`` and
``transport.autoconnect_interval`` in their configs). A public visor killed with ``SIGKILL``
stays listed until its entry expires; each of its private peers replaces it with one of the two
others within one interval (plus a margin), and does not keep a transport to it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skywire.testnet.procnet import ProcessNetwork
from skywire.visor.config import VisorConfig
from skywire.visor.rpc import RPCClient, RPCClientError

pytestmark = pytest.mark.timeout(90)

PUBLIC, PRIVATE = 3, 3
VISORS = PUBLIC + PRIVATE
KEEP = 2  # fewer than the public visors: one that dies can be replaced
INTERVAL = 3.0
MARGIN = 3.0  # processes: a round's listing, a dial and the control API poll
SETTLE = 30.0  # every private visor has its KEEP transports by then


def configure(i: int, cfg: VisorConfig) -> None:
    cfg.is_public = i < PUBLIC
    cfg.transport.public_autoconnect = i >= PUBLIC
    cfg.persistent_transports = None
    # ours, kept among the transport block's extra keys (absent: upstream's 3 and 10 s)
    setattr(cfg.transport, "autoconnect_count", KEEP)  # noqa: B010 - an extra key
    setattr(cfg.transport, "autoconnect_interval", f"{INTERVAL:g}s")  # noqa: B010


def _free_base() -> int:
    """A base port whose network's ports (services, one relay, the visors) are free."""
    for base in range(23000, 60000, 89):
        ports = [*range(base, base + 5), base + 10, base + 11]
        ports += range(base + 40, base + 40 + VISORS)
        socks = []
        try:
            for port in ports:
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                socks.append(s)
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no free ports")


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[ProcessNetwork]:
    async with ProcessNetwork(
        tmp_path / "net", relays=1, visors=VISORS, base_port=_free_base(), configure=configure
    ) as n:
        yield n


async def public_peers(net: ProcessNetwork, i: int, publics: set[str]) -> set[str]:
    """The public visors visor ``i`` has a live stcpr transport to, from its control API
    (nothing while it cannot be asked)."""
    try:
        doc = await RPCClient(net.rpc_addr(i), timeout=5.0).call("GET", "/transports")
    except RPCClientError:
        return set()
    assert isinstance(doc, list)
    return {
        str(t["remote_pk"])
        for t in doc
        if t["is_up"] and t["type"] == "stcpr" and t["remote_pk"] in publics
    }


async def test_a_killed_public_visor_is_replaced_within_one_interval(
    net: ProcessNetwork,
) -> None:
    loop = asyncio.get_running_loop()
    publics = {net.visor_pk(j).hex(): j for j in range(PUBLIC)}
    privates = range(PUBLIC, VISORS)

    async def all_peers() -> dict[int, set[str]]:
        found = await asyncio.gather(*(public_peers(net, i, set(publics)) for i in privates))
        return dict(zip(privates, found, strict=True))

    # every private visor keeps KEEP stcpr transports to public visors
    async with asyncio.timeout(SETTLE):
        while True:
            peers = await all_peers()
            if all(len(p) >= KEEP for p in peers.values()):
                break
            await asyncio.sleep(0.1)  # another process: poll its control API
    assert all(len(p) == KEEP for p in peers.values()), peers

    # the public visor with the most private peers dies
    victim_pk = max(publics, key=lambda pk: sum(pk in p for p in peers.values()))
    orphans = [i for i, p in peers.items() if victim_pk in p]
    assert orphans
    killed = loop.time()
    await net.kill(f"visor-{publics[victim_pk]}")

    # each of its peers has KEEP live transports to the others: the victim, still listed in
    # service discovery, is not kept (nor dialed again in its place)
    remaining = set(publics) - {victim_pk}
    async with asyncio.timeout(INTERVAL + MARGIN):
        while True:
            after = {i: p for i, p in (await all_peers()).items() if i in orphans}
            if all(p == remaining for p in after.values()):
                break
            await asyncio.sleep(0.1)  # another process: poll its control API
    replaced_after = loop.time() - killed
    assert replaced_after < INTERVAL + MARGIN, replaced_after

    # and every private visor keeps KEEP, none to the victim
    for i, p in (await all_peers()).items():
        assert victim_pk not in p and len(p) == KEEP, (i, p)
