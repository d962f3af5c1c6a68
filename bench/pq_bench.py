"""What the post-quantum hybrid costs: dmsg session set-up (TCP + Noise XK + yamux) and dmsg
stream dial (Noise KK through a relay) p50, classical against hybrid, in one run.

One process, loopback: a discovery and a relay server, two clients. The process-wide policy
is switched between rounds (both ends follow it), rounds alternate, and each figure is the
median of all its samples. Also the bare ML-KEM-768 operations.

Prints ``name: value unit`` lines. ``--rounds N`` (default 6), ``--samples N`` per round (50).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from skywire.cipher import KeyPair
from skywire.dmsg.client import DmsgListener, DmsgStream
from skywire.dmsg.session import Session, client_handshake
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.wire import pq
from skywire.wire.stream import TcpStream
from skywire.wire.tasks import serve_each

POLICIES = {"classical": pq.CLASSICAL, "hybrid": pq.PQPolicy(offer=True, require=False)}


async def session_setup(net: LocalDmsgNetwork) -> float:
    server = net.servers[0]
    kp = KeyPair.generate()
    start = time.perf_counter()
    tcp = await TcpStream.connect("127.0.0.1", server.port)
    noise, _ = await client_handshake(tcp, kp.sk, server.pk)
    session = Session(tcp, noise, client=True)
    took = time.perf_counter() - start
    await session.close()
    return took


async def close_each(listener: DmsgListener) -> None:
    """The far end: take every stream and close it, so the listener's backlog never fills."""

    async def handle(stream: DmsgStream) -> None:
        await stream.close()

    await serve_each(listener.accept, handle, what="bench stream")


async def main(rounds: int, samples: int) -> None:
    setup: dict[str, list[float]] = {k: [] for k in POLICIES}
    dial: dict[str, list[float]] = {k: [] for k in POLICIES}
    async with LocalDmsgNetwork(servers=1) as net:
        a, b = await net.client(), await net.client()
        listener = await b.listen(9)
        far_end = asyncio.create_task(close_each(listener))
        for _ in range(rounds):
            for name, policy in POLICIES.items():
                pq.set_default_policy(policy)
                for _ in range(samples):
                    setup[name].append(await session_setup(net))
                for _ in range(samples):
                    start = time.perf_counter()
                    stream = await a.dial(b.pk, 9)
                    dial[name].append(time.perf_counter() - start)
                    assert stream.noise.pq_active is (name == "hybrid")
                    await stream.close()
        far_end.cancel()
        await asyncio.gather(far_end, return_exceptions=True)
    for name in POLICIES:
        print(f"pq_session_setup_p50_{name}: {statistics.median(setup[name]) * 1e3:.2f} ms")
    for name in POLICIES:
        print(f"pq_stream_dial_p50_{name}: {statistics.median(dial[name]) * 1e3:.2f} ms")
    key = pq.PQDecapsulator()
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        pq.PQDecapsulator()
    keygen = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for _ in range(n):
        answered = pq.encapsulate(key.encapsulation_key)
    encap = (time.perf_counter() - start) / n
    assert answered is not None
    start = time.perf_counter()
    for _ in range(n):
        key.decapsulate(answered[1])
    decap = (time.perf_counter() - start) / n
    print(f"mlkem768_keygen: {keygen * 1e6:.0f} us")
    print(f"mlkem768_encapsulate: {encap * 1e6:.0f} us")
    print(f"mlkem768_decapsulate: {decap * 1e6:.0f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.samples))
