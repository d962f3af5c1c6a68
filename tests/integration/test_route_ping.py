"""``route ping``: a visor's echo on route port 7, pinged over the route finder's route and
over a source route, through the control API and the CLI; a ping that cannot be set up, and
one whose route breaks under it, say why."""

from __future__ import annotations

import asyncio
import sys

import pytest

from skywire.cipher import KeyPair
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire
from skywire.visor.rpc import RPCClient, RPCClientError

pytestmark = pytest.mark.timeout(60)


async def test_route_ping_through_the_api_and_the_cli() -> None:
    async with LocalDmsgNetwork(servers=1) as dnet, LocalSkywire(dnet, visors=3) as sky:
        await sky.chain()
        a, b, c = sky.visors
        assert a.rpc is not None
        rpc = RPCClient(f"127.0.0.1:{a.rpc.port}")
        doc = await rpc.call("POST", "/routes/ping", {"pk": c.pk.hex(), "count": 3, "size": 1000})
        assert doc["error"] is None and len(doc["rtt_ms"]) == 3 and doc["setup_ms"] > 0
        assert doc["hops"] == [b.pk.hex(), c.pk.hex()]
        # exactly through b, named
        doc = await rpc.call("POST", "/routes/ping", {"pk": c.pk.hex(), "via": [b.pk.hex()]})
        assert doc["hops"] == [b.pk.hex(), c.pk.hex()] and len(doc["rtt_ms"]) == 1
        # nobody there
        with pytest.raises(RPCClientError, match="route set-up failed"):
            await rpc.call("POST", "/routes/ping", {"pk": KeyPair.generate().pk.hex()})
        with pytest.raises(RPCClientError, match="bad request"):
            await rpc.call("POST", "/routes/ping", {"pk": c.pk.hex(), "size": 0})
        # the CLI
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "skywire.cli", "cli", "route", "ping", c.pk.hex(),
            "-n", "2", "-i", "0", "--rpc", f"127.0.0.1:{a.rpc.port}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        text = out.decode()
        assert proc.returncode == 0, err.decode()
        assert "set up in" in text and "probe 2:" in text and "min/avg/max" in text


async def test_a_ping_whose_route_breaks_says_so() -> None:
    async with LocalDmsgNetwork(servers=1) as dnet, LocalSkywire(dnet, visors=3) as sky:
        await sky.chain()
        a, b, c = sky.visors
        long_ping = asyncio.create_task(
            a.ping(c.pk, via=[b.pk], count=1000, size=64, interval=0.02)
        )
        assert b.router is not None
        async with asyncio.timeout(10):  # wait for the route to carry probes through b
            while b.router.stats.forwarded < 10:  # noqa: ASYNC110 - polls the router
                await asyncio.sleep(0.01)
        await b.close()
        async with asyncio.timeout(10):
            result = await long_ping
        assert result.error is not None and "broken" in result.error, result.error
        assert 0 < len(result.rtt_ms) < 1000
