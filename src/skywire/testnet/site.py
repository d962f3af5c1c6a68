"""The demo site of the main job as its own process: ``python -m skywire.testnet.site``.

It serves the demo pages (name-based virtual hosts) and the files of ``--www`` twice: over
dmsg on port 80, from its own dmsg client (key in ``SKYWIRE_SK``), as "the dmsg site"; and on
local TCP ``--tcp-port``, which a visor publishes on skynet port 80, as "visor 3". It runs
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from aiohttp import web

from skywire.cipher import SecKey
from skywire.dmsg.client import Client
from skywire.dmsg.http import HTTPServer, add_static
from skywire.services.dmsgdisc.client import DiscClient
from skywire.testnet.demo import add_demo_pages


def site_app(owner: str, www: str) -> web.Application:
    app = web.Application()
    add_demo_pages(app.router, owner)
    add_static(app.router, "/", www, show_index=True)
    return app


async def serve(disc_url: str, sk: SecKey, www: str, tcp_port: int, tcp_owner: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(site_app(tcp_owner, www), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", tcp_port).start()
        async with (
            DiscClient(disc_url) as disc,
            Client(sk, disc) as client,
        ):
            await client.ready(30)
            listener = await client.listen(80)
            async with HTTPServer(site_app("the dmsg site", www), listener):
                print(f"site up: dmsg {sk.pubkey()} port 80, tcp 127.0.0.1:{tcp_port}", flush=True)
                await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--disc", required=True, help="dmsg discovery URL")
    parser.add_argument("--www", required=True, help="directory of files to serve")
    parser.add_argument("--tcp-port", type=int, required=True)
    parser.add_argument("--tcp-owner", default="visor 3")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
    )
    sk = SecKey.from_hex(os.environ["SKYWIRE_SK"])
    asyncio.run(serve(args.disc, sk, args.www, args.tcp_port, args.tcp_owner))


if __name__ == "__main__":
    main()
