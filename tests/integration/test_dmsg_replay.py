"""Replays a recorded Go dmsg session (two Go clients, one Go server) against our server.

The recording (tests/vectors/dmsg_stream.json, ``full_session_transcript``) holds every TCP read
on both connections in causal order. We play the two Go clients' bytes to our server, with the
server's handshake ephemerals fixed to the recorded ones, and require that our server sends
back exactly the bytes the Go server sent: handshakes, yamux frames, the relayed request and
response objects re-sealed per hop, the end-to-end payload frames and the closing sequence.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from skywire.cipher import SecKey
from skywire.dmsg.server import Server
from tests.conftest import load_vectors

pytestmark = pytest.mark.timeout(30)

CASE: dict[str, Any] = next(
    c for c in load_vectors("dmsg_stream")["cases"] if c["name"] == "full_session_transcript"
)


async def test_our_server_reproduces_the_go_server_bytes() -> None:
    keys = CASE["keys"]
    # conn 1 (B) connected first, then conn 2 (A); each got its recorded server ephemeral
    ephs = {c["conn"]: SecKey.from_hex(c["server_ephemeral_sk"]) for c in CASE["connections"]}
    server = Server(SecKey.from_hex(keys["S"]["sk"]), ephemeral_keys=iter([ephs[1], ephs[2]]))
    async with server:
        conns: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        for chunk in CASE["chunks"]:
            conn = chunk["conn"]
            if conn not in conns:
                conns[conn] = await asyncio.open_connection("127.0.0.1", server.port)
            reader, writer = conns[conn]
            if chunk["dir"] == "c2s":
                if chunk.get("eof"):
                    writer.write_eof()
                else:
                    writer.write(bytes.fromhex(chunk["bytes"]))
                await writer.drain()
                if conn == 1 and chunk["seq"] == 3:
                    # B's session must be registered before A asks for B
                    await server.wait_sessions(1)
            elif chunk.get("eof"):
                assert await reader.read() == b"", f"server kept conn {conn} open"
            else:
                want = bytes.fromhex(chunk["bytes"])
                got = await reader.readexactly(len(want))
                assert got.hex() == want.hex(), f"chunk {chunk['seq']} differs"
        for _, writer in conns.values():
            writer.close()
