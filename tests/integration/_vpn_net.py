"""The visors of the VPN test: visors 0─1─2 (a route from 0 to 2 crosses visor 1), run in
the ``net`` namespace by tests/integration/test_vpn_netns.py, with an app server on visor 0 at
``argv[1]`` (for the vpn-client's namespace) and one on visor 2 at ``argv[2]`` (for the
vpn-server's).

Speaks lines: prints ``ready <visor 2 pk>``; for each ``config <0|2> <name> <port>`` read on
stdin it registers a run of the app and prints its ``PROC_CONFIG`` JSON; stops when stdin closes.
For bench/vpn_bench.py also: ``raw <bytes>`` dials a route group from visor 0 to visor 2 (the
same 0 → 1 → 2 path), sends that many bytes and prints ``raw <seconds> <hops> <encrypted>``
(seconds from the first write to the last byte read at visor 2); ``hops`` prints
``hops <n> …``, the hop count of each route group visor 0 holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

from skywire.apps.appnet.proto import ProcConfig, new_proc_key
from skywire.visor.appserver import AppServer
from tests.integration.test_router import RouteNet

RAW_PORT = 90  # the route port of ``raw`` on visor 2 (the VPN apps use 43 and 44)
CHUNK = 256 * 1024


def say(line: str) -> None:
    print(line, flush=True)


async def raw(net: RouteNet, size: int) -> str:
    src_node, dst_node = net.nodes[0], net.nodes[2]
    listener = await dst_node.router.listen(RAW_PORT)
    try:
        src = await src_node.router.dial_routes(dst_node.pk, 0, RAW_PORT)
        try:
            dst = await asyncio.wait_for(listener.accept(), 30)
            assert src.route is not None
            block = bytes(CHUNK)

            async def send() -> None:
                left = size
                while left > 0:
                    await src.write(block[: min(left, CHUNK)])
                    left -= CHUNK

            async def recv() -> None:
                got = 0
                while got < size:
                    data = await dst.read(1 << 20)
                    if not data:
                        raise ConnectionError(f"the route ended after {got} of {size} bytes")
                    got += len(data)

            t0 = time.perf_counter()
            await asyncio.gather(send(), recv())
            dt = time.perf_counter() - t0
            await dst.close()
            return f"raw {dt:.6f} {len(src.route.forward)} {int(src.encrypted)}"
        finally:
            await src.close()
    finally:
        await listener.close()


async def main(client_side: str, server_side: str) -> None:
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        net = await stack.enter_async_context(RouteNet(3, [(0, 1), (1, 2)]))
        servers = {}
        for i, where in ((0, client_side), (2, server_side)):
            node = net.nodes[i]
            servers[i] = await stack.enter_async_context(
                AppServer(node.router, node.dmsg, (where, 0))
            )
        say(f"ready {net.nodes[2].pk.hex()}")
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            words = line.split()
            if words[0] == "raw":
                try:
                    say(await raw(net, int(words[1])))
                except Exception as exc:  # the bench reads the failure; the visors stay up
                    say(f"raw-failed {exc!r}")
                continue
            if words[0] == "hops":
                groups = net.nodes[0].router.route_groups
                say(" ".join(["hops", *(str(len(g.route.forward)) for g in groups if g.route)]))
                continue
            _, visor, name, port = words
            server = servers[int(visor)]
            key = new_proc_key()
            server.register(key, name)
            conf = ProcConfig(name, server.address, key, net.nodes[int(visor)].pk, int(port))
            say(conf.to_json())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
