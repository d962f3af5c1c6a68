"""Hybrid post-quantum handshakes on real sockets: today's upstream initiators (a 1,233-byte
message 1) meet our classical server, stream listener and transport responder, which complete
classically; dmsg sessions and streams and transports between our peers are hybrid; a process
with SKYWIRE_REQUIRE_PQ set refuses a classical peer with a clear error, and works with a hybrid
one."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterator

import pytest
from aiohttp import web

from skywire.cipher import KeyPair
from skywire.dmsg.http import HTTPServer
from skywire.dmsg.session import Session, client_handshake
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.transport.manager import TransportManager
from skywire.transport.network import TCPNetwork, secure_initiator, static_table
from skywire.wire import pq
from skywire.wire.stream import TcpStream

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def policy() -> Iterator[None]:
    before = pq.default_policy()
    yield
    pq.set_default_policy(before)


HYBRID = pq.PQPolicy(offer=True, require=False)


class Recording:
    """A byte stream that remembers the size of each write and of each exact read."""

    def __init__(self, inner: TcpStream) -> None:
        self.inner = inner
        self.written: list[int] = []
        self.read_exact: list[int] = []

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.read(max_bytes)

    async def readexactly(self, n: int) -> bytes:
        self.read_exact.append(n)
        return await self.inner.readexactly(n)

    async def write(self, data: bytes) -> None:
        self.written.append(len(data))
        await self.inner.write(data)

    async def close(self) -> None:
        await self.inner.close()


async def test_upstream_shaped_initiators_complete_classically_with_our_classical_responders(
    policy: None,
) -> None:
    """Every responder in this process is classical (as ours was before the hybrid); the
    initiators offer an ML-KEM key in message 1, as every upstream initiator now does."""
    pq.set_default_policy(pq.CLASSICAL)
    async with LocalDmsgNetwork(servers=1) as net:
        # the dmsg server: XK, the framed messages counted on the wire
        server = net.servers[0]
        rec = Recording(await TcpStream.connect("127.0.0.1", server.port))
        noise, _ = await client_handshake(rec, KeyPair.generate().sk, server.pk, pq=HYBRID)
        assert rec.written == [2 + 1233, 2 + 65]  # msg1 carries the key; msg3 as before
        assert rec.read_exact == [2, 49]  # msg2 with no ciphertext: the server is classical
        assert noise.pq_downgraded and not noise.pq_active
        session = Session(rec.inner, noise, client=True)
        assert await session.ping() >= 0  # the server serves the session it accepted
        await session.close()
        # the stream listener: KK inside the gob NoiseMsg of a signed request
        a = await net.client(pq=HYBRID)
        b = await net.client()
        assert all(s.noise.pq_downgraded for s in a.sessions.values())
        listener = await b.listen(9)
        stream = await a.dial(b.pk, 9)
        peer = await listener.accept()
        assert stream.noise.pq_downgraded and not stream.noise.pq_active
        assert not peer.noise.pq_active
        await stream.write(b"classical")
        assert await peer.readexactly(9) == b"classical"
        await peer.write(b"both ways")
        assert await stream.readexactly(9) == b"both ways"
        await stream.close()
        await peer.close()
    # the transport responder: the connection handshake, then KK frames
    x, y = KeyPair.generate(), KeyPair.generate()
    responder = TCPNetwork(y.sk, "stcp", resolve=static_table({}))
    await responder.start()
    try:
        rec = Recording(await TcpStream.connect("127.0.0.1", responder.port))
        conn = await secure_initiator(rec, x.sk, y.pk, 0, "stcp", pq=HYBRID)
        assert 2 + 1233 in rec.written and rec.read_exact[-2:] == [2, 49]
        accepted = await responder.accept()
        assert conn.stream.noise.pq_downgraded and not accepted.stream.noise.pq_active
        await conn.stream.write(b"over stcp")
        assert await accepted.stream.readexactly(9) == b"over stcp"
        await conn.stream.close()
        await accepted.stream.close()
    finally:
        await responder.close()


async def test_sessions_streams_and_transports_between_our_peers_are_hybrid(
    policy: None,
) -> None:
    pq.set_default_policy(pq.PQPolicy(offer=True, require=False))
    async with LocalDmsgNetwork(servers=1) as net:
        a, b = await net.client(), await net.client()
        assert all(s.noise.pq_active for s in a.sessions.values())
        listener = await b.listen(9)
        stream = await a.dial(b.pk, 9)
        peer = await listener.accept()
        assert stream.noise.pq_active and peer.noise.pq_active
        await stream.write(b"hybrid")
        assert await peer.readexactly(6) == b"hybrid"
        await stream.close()
        await peer.close()
    x, y = KeyPair.generate(), KeyPair.generate()
    table: dict[str, str] = {}
    net_x = TCPNetwork(x.sk, "stcp", resolve=static_table(table))
    net_y = TCPNetwork(y.sk, "stcp", resolve=static_table(table))
    async with (
        TransportManager(x.sk, [net_x], latency_interval=0) as tm_x,
        TransportManager(y.sk, [net_y], latency_interval=0) as tm_y,
    ):
        table[y.pk.hex()] = f"127.0.0.1:{net_y.port}"
        tp = await tm_x.save_transport(y.pk, "stcp")
        other = await tm_y.wait_for(tp.id)
        assert tp.post_quantum and other.post_quantum
        assert tp.summary()["post_quantum"] is True


async def curl(disc: str, url: str, *, require: bool) -> tuple[int, str]:
    env = {**os.environ, "SKYWIRE_REQUIRE_PQ": "1" if require else ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "skywire.cli", "dmsg", "curl", "-q", "--disc", disc,
        "--timeout", "3", url,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode(errors="replace")


async def test_require_pq_refuses_a_classical_network_and_accepts_a_hybrid_one(
    policy: None,
) -> None:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello over a hybrid session")

    app = web.Application()
    app.router.add_get("/", hello)
    # this process plays an older, classical network
    pq.set_default_policy(pq.CLASSICAL)
    async with LocalDmsgNetwork(servers=1) as net:
        host = await net.client()
        async with HTTPServer(app, await host.listen(80)):
            code, text = await curl(net.disc_url, f"dmsg://{host.pk.hex()}/", require=True)
            assert code == 1
            assert "post-quantum required (SKYWIRE_REQUIRE_PQ)" in text, text
    # and now a hybrid one
    pq.set_default_policy(pq.PQPolicy(offer=True, require=False))
    async with LocalDmsgNetwork(servers=1) as net:
        host = await net.client()
        async with HTTPServer(app, await host.listen(80)):
            code, text = await curl(net.disc_url, f"dmsg://{host.pk.hex()}/", require=True)
            assert code == 0 and "hello over a hybrid session" in text, text


async def test_a_visor_with_require_pq_in_its_config_runs_on_a_hybrid_network(
    policy: None,
) -> None:
    from skywire.visor.config import VisorConfig
    from skywire.visor.visor import Visor

    pq.set_default_policy(HYBRID)
    async with LocalDmsgNetwork(servers=1) as net:
        cfg = VisorConfig.generate(dmsg_discovery=net.disc_url, cli_addr="127.0.0.1:0")
        cfg.skywire_tcp.listening_address = "127.0.0.1:0"
        cfg.transport.address_resolver = ""
        cfg.routing.route_finder = ""
        cfg.require_pq = True
        assert VisorConfig.model_validate_json(cfg.to_json()).require_pq  # saved and read back
        async with Visor(cfg, latency_interval=0) as visor:
            await visor.ready()
            info = visor.info()["post_quantum"]
            assert info["require"] is True and info["dmsg_sessions_hybrid"] == 1
            assert pq.default_policy().require


async def test_require_on_either_end_of_a_dmsg_stream_refuses_a_classical_peer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from skywire.dmsg.errors import DmsgError, DmsgPQRequiredError, ErrorCode

    require = pq.PQPolicy(offer=True, require=True)
    async with LocalDmsgNetwork(servers=1) as net:
        classical = await net.client(pq=pq.CLASSICAL)
        requiring = await net.client(pq=require)
        await classical.listen(9)
        with pytest.raises(DmsgPQRequiredError) as info:
            await requiring.dial(classical.pk, 9)
        assert info.value.code == ErrorCode.DIAL_RESP_INVALID_SIG
        assert f"{classical.pk} answered with a classical-only handshake" in str(info.value)
        # the other way round: the requiring listener resets the stream and says why
        listener = await requiring.listen(9)
        with caplog.at_level(logging.INFO, "skywire.dmsg.client"), pytest.raises(DmsgError):
            await classical.dial(requiring.pk, 9)
        assert "incoming stream refused: post-quantum required" in caplog.text
        # and a hybrid dialer is served by the same listener
        hybrid = await net.client(pq=HYBRID)
        stream = await hybrid.dial(requiring.pk, 9)
        peer = await listener.accept()
        assert peer.remote_addr.pk == hybrid.pk and peer.noise.pq_active
        await stream.close()
        await peer.close()
