"""A file pulled across the visors' 3-hop route, as a user's browser would pull it: through
visor 0's ``.skynet`` proxy (SOCKS5), by the far visor's name, from the site it publishes.

:func:`route_fetch` first asks visor 0 for route pings to the far visor (the route finder, the
setup node and the route handshake: its set-up time; the first, then the median of the rest),
then streams the file through the proxy and checks its sha256.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import struct
import time
from collections.abc import Callable

from skywire.cipher import PubKey
from skywire.visor.rpc import RPCClient, RPCClientError

__all__ = ["route_fetch"]

Say = Callable[[str], None]
CHUNK = 1 << 20
SETUPS = 10
"""Routes set up (and closed) before the file's: the first pays for dialing the services."""


async def route_fetch(
    rpc: str, proxy: tuple[str, int], far: PubKey, path: str, digest: str, say: Say
) -> bool:
    """True when the route came up and the file crossed it whole."""
    await _known_to_route_finder(rpc, far)
    setups: list[float] = []
    rtts: list[float] = []
    try:
        for _ in range(SETUPS):  # each a new route, pinged, then closed
            ping = await RPCClient(rpc, timeout=30).call(
                "POST", "/routes/ping", {"pk": far.hex(), "min_hops": 3, "max_hops": 3}
            )
            setups.append(float(ping["setup_ms"]))
            rtts.append(min(ping["rtt_ms"]))
    except RPCClientError as exc:
        say(f"route               FAILED: {exc}")
        return False
    say(
        f"route               visor 0 → 1 → 2 → 3 set up in {setups[0]:.1f} ms the first time,"
        f" then p50 {statistics.median(setups[1:]):.1f} ms over {SETUPS - 1} more"
        f" (route finder, setup node, handshake), ping {min(rtts):.2f} ms"
    )
    t0 = time.monotonic()
    try:
        got, ok = await asyncio.wait_for(_get(proxy, f"{far.hex()}.skynet", path, digest), 300)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        say(f"through the route   FAILED: {type(exc).__name__}: {exc}")
        return False
    elapsed = time.monotonic() - t0
    say(
        f"through the route   {got / 1e6:.1f} MB in {elapsed:.2f} s = {got / elapsed / 1e6:.1f}"
        f" MB/s, sha256 {'matches' if ok else 'MISMATCH'} (SOCKS5 to visor 0's .skynet proxy,"
        " 3 hops, the site published by visor 3)"
    )
    return ok


async def _known_to_route_finder(rpc: str, far: PubKey) -> None:
    """Until the route finder (it rebuilds its graph every second) offers a 3-hop path: the
    set-up time then measures the set-up, not the wait for the graph."""
    from skywire.routing.route import RouteQueryError
    from skywire.services.rf.client import RFClient

    info = await RPCClient(rpc, timeout=10).call("GET", "/visor/info")
    source = PubKey.from_hex(info["pk"])
    async with RFClient(info["route_finder"]) as client, asyncio.timeout(30):
        while True:
            try:
                routes, _ = await client.candidate_routes(source, far, min_hops=3, max_hops=3)
                if routes:
                    return
            except RouteQueryError:
                pass
            await asyncio.sleep(0.1)  # another process: the route finder's next rebuild


async def _get(proxy: tuple[str, int], host: str, path: str, digest: str) -> tuple[int, bool]:
    """``GET http://<host>/<path>`` through the SOCKS5 proxy: bytes of the body, sha256 ok."""
    reader, writer = await asyncio.open_connection(*proxy)
    try:
        writer.write(b"\x05\x01\x00")
        if await reader.readexactly(2) != b"\x05\x00":
            raise ValueError("the proxy refused the SOCKS5 greeting")
        raw = host.encode()
        writer.write(bytes([5, 1, 0, 3, len(raw)]) + raw + struct.pack(">H", 80))
        head = await reader.readexactly(4)
        await reader.readexactly(6 if head[3] == 1 else 18)
        if head[1] != 0:
            raise ValueError(f"SOCKS5 reply {head[1]}")
        writer.write(f"GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        status = await reader.readuntil(b"\r\n\r\n")
        if not status.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
            raise ValueError(f"status {status.split(b' ')[1:2]}")
        h = hashlib.sha256()
        got = 0
        while chunk := await reader.read(CHUNK):
            h.update(chunk)
            got += len(chunk)
        return got, h.hexdigest() == digest
    finally:
        writer.close()
