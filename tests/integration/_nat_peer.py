"""A process of the NAT test: the address resolver, or a visor with only a sudph carrier.

Run inside a network namespace by tests/integration/test_sudph_nat.py; speaks to the test by
lines on stdout and stops when its stdin closes.
"""

from __future__ import annotations

import asyncio
import sys

from skywire.cipher import PubKey, SecKey
from skywire.services.ar import ARClient, ARServer
from skywire.services.ar.store.memory import MemoryStore
from skywire.transport.manager import TransportManager
from skywire.transport.resolved import SudphNetwork


def say(line: str) -> None:
    print(line, flush=True)


async def until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def run_ar(host: str, http_port: int, udp_port: int) -> None:
    async with MemoryStore() as store, ARServer(store, host, http_port, udp_port, test_mode=True):
        say("ready")
        await until_stdin_closes()


async def run_visor(sk_hex: str, ar_url: str, ar_udp: str, peer: str | None) -> None:
    sk = SecKey.from_hex(sk_hex)
    udp_host, _, udp_port = ar_udp.rpartition(":")
    async with ARClient(ar_url, sk, (udp_host, int(udp_port))) as ar:
        net = SudphNetwork(sk, ar, host="0.0.0.0")
        async with TransportManager(sk, [net], latency_interval=0) as tm:
            say(f"ready {sk.pubkey().hex()}")
            if peer is not None:
                pk = PubKey.from_hex(peer)
                seen = await ar.resolve("sudph", pk)
                say(f"resolved {seen.remote_addr}")
                tp = await tm.save_transport(pk, "sudph")
                await tp.write_packet(0, 1, b"through two NATs")
                _, _, payload = await tp.inbox.get()
                say(f"reply {payload.decode()}")
            else:
                while not tm.transports:
                    tm._changed.clear()
                    await tm._changed.wait()
                tp = next(iter(tm.transports.values()))
                _, _, payload = await tp.inbox.get()
                await tp.write_packet(0, 1, b"echo: " + payload)
                say("served")
            await until_stdin_closes()


def main() -> None:
    import logging
    import os

    if os.environ.get("NAT_PEER_LOG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    role = sys.argv[1]
    if role == "ar":
        asyncio.run(run_ar(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        peer = sys.argv[5] if len(sys.argv) > 5 else None
        asyncio.run(run_visor(sys.argv[2], sys.argv[3], sys.argv[4], peer))


if __name__ == "__main__":
    main()
