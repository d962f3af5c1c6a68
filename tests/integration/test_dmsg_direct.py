"""A discovery reachable only over dmsg: clients reach it through their own sessions."""

from __future__ import annotations

import asyncio

import pytest

from skywire.cipher import KeyPair
from skywire.dmsg.client import Client
from skywire.services.dmsgdisc.direct import DiscoveryOverDmsg, DmsgDiscClient, direct_client
from skywire.testnet.dmsgnet import LocalDmsgNetwork

pytestmark = pytest.mark.timeout(60)


async def test_clients_use_discovery_over_their_own_sessions() -> None:
    async with LocalDmsgNetwork(servers=2) as net:
        assert net._runner is not None
        disc_kp = KeyPair.generate()
        async with DiscoveryOverDmsg(
            disc_kp.sk, net._runner, net.disc_url, backoff=net.client_backoff
        ) as front:
            assert front.client is not None
            await front.client.ready()
            # the discovery's own client holds a session with every server
            while len(front.client.sessions) < 2:
                await front.client._wait_change()
            bootstrap = [await net.disc_client().get_entry(s.pk) for s in net.servers]

            a = direct_client(KeyPair.generate().sk, disc_kp.pk, bootstrap[:1])
            b = direct_client(KeyPair.generate().sk, disc_kp.pk, bootstrap[1:])
            try:
                for cl in (a, b):
                    await cl.start()
                    await cl.ready()
                    assert isinstance(cl.disc, DmsgDiscClient)
                    assert "dmsg://" in cl.disc.base_url
                # each published its entry through dmsg: the discovery knows them
                entry = await net.disc_client().get_entry(b.pk)
                assert entry.client is not None
                assert set(entry.client.delegated_servers or ()) == set(b.sessions)
                listener = await b.listen(80)
                dialed = asyncio.ensure_future(a.dial(b.pk, 80))
                accepted = await listener.accept()
                stream = await dialed
                await stream.write(b"via dmsg discovery")
                assert await accepted.readexactly(18) == b"via dmsg discovery"
                await stream.close()
                await accepted.close()
            finally:
                for cl in (a, b):
                    await cl.close()
                    await cl.disc.close()
            # closing deleted their entries over dmsg
            assert not [pk for pk in await net.disc_client().entries() if pk in (a.pk, b.pk)]
            assert a.pk not in Client._active
