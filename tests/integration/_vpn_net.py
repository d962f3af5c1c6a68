"""The visors of the VPN test: visors 0─1─2 (a route from 0 to 2 crosses visor 1), run in
the ``net`` namespace by tests/integration/test_vpn_netns.py, with an app server on visor 0 at
``argv[1]`` (for the vpn-client's namespace) and one on visor 2 at ``argv[2]`` (for the
vpn-server's).

Speaks lines: prints ``ready <visor 2 pk>``; for each ``config <0|2> <name> <port>`` read on
stdin it registers a run of the app and prints its ``PROC_CONFIG`` JSON; stops when stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from skywire.apps.appnet.proto import ProcConfig, new_proc_key
from skywire.visor.appserver import AppServer
from tests.integration.test_router import RouteNet


def say(line: str) -> None:
    print(line, flush=True)


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
            _, visor, name, port = line.split()
            server = servers[int(visor)]
            key = new_proc_key()
            server.register(key, name)
            conf = ProcConfig(name, server.address, key, net.nodes[int(visor)].pk, int(port))
            say(conf.to_json())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
