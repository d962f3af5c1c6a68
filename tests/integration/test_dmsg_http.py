"""dmsghttp: aiohttp served on stream listeners, fetched with httpx + DmsgTransport.

Every scenario runs over two stand-ins for dmsg streams (tests/integration/_streams.py): bounded
in-memory pipes and real loopback TCP.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from skywire.cipher import KeyPair, PubKey
from skywire.dmsg.addr import Addr
from skywire.dmsg.http import (
    DEFAULT_HTTP_PORT,
    DmsgTransport,
    DmsgURL,
    DmsgURLError,
    HTTPServer,
    StreamTransport,
    add_static,
    fetch,
    serve_app,
)
from skywire.wire.stream import ByteStream, Listener
from tests.conftest import no_leaked_tasks

from ._streams import MemoryNetwork, StreamNetwork, TcpNetwork

SERVER_PK = KeyPair.generate().pk
CLIENT_PK = KeyPair.generate().pk

BLOCK = os.urandom(1 << 20)
BIG_BLOCKS = 20  # a 20 MiB body
BIG_SHA = hashlib.sha256(BLOCK * BIG_BLOCKS).hexdigest()
SIZED = os.urandom(3 * 1024 * 1024 + 7)


def make_app(record: dict[str, object] | None = None, file: Path | None = None) -> web.Application:
    record = record if record is not None else {}

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello dmsg", headers={"X-Skywire": "yes"})

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response(
            {"remote": request.remote, "host": request.host, "target": request.path_qs}
        )

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        transport = request.transport
        assert transport is not None
        high = 0
        for _ in range(BIG_BLOCKS):
            for off in range(0, len(BLOCK), 65536):
                await resp.write(BLOCK[off : off + 65536])
                high = max(high, transport.get_write_buffer_size())
        record["big_max_buffered"] = high
        await resp.write_eof()
        return resp

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=SIZED, content_type="application/octet-stream")

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=body, content_type=request.content_type, status=201)

    async def sha256(request: web.Request) -> web.Response:
        h = hashlib.sha256()
        async for chunk in request.content.iter_any():
            h.update(chunk)
        return web.Response(text=h.hexdigest())

    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"x" * 65536)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            record["stall_cancelled"] = True
            raise
        return resp

    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/big", big)
    app.router.add_get("/sized", sized)
    app.router.add_post("/echo", echo)
    app.router.add_post("/sha256", sha256)
    app.router.add_get("/stall", stall)
    if file is not None:
        add_static(app.router, "/static", file.parent)
    return app


@pytest.fixture(params=["memory", "tcp"])
def net(request: pytest.FixtureRequest) -> StreamNetwork:
    return MemoryNetwork() if request.param == "memory" else TcpNetwork()


@pytest.fixture
def memnet() -> MemoryNetwork:
    return MemoryNetwork()


def url(path: str, port: int = DEFAULT_HTTP_PORT, pk: PubKey = SERVER_PK) -> str:
    return f"dmsg://{pk.hex()}:{port}{path}"


def assert_all_closed(net: StreamNetwork) -> None:
    left_open = [s for s in net.streams if not s.closed]
    assert not left_open, f"{len(left_open)} of {len(net.streams)} streams left open"


# ----------------------------------------------------------------------------------------------
# URLs
# ----------------------------------------------------------------------------------------------


def test_url_defaults_port_80_and_keeps_target() -> None:
    u = DmsgURL.parse(f"dmsg://{SERVER_PK.hex()}/a/b?x=1&y=2#frag")
    assert u.pk == SERVER_PK and u.port == 80
    assert (u.path, u.query, u.target) == ("/a/b", "x=1&y=2", "/a/b?x=1&y=2")
    assert u.host == f"{SERVER_PK.hex()}:80"
    assert str(u) == f"dmsg://{SERVER_PK.hex()}:80/a/b?x=1&y=2"
    assert DmsgURL.parse(str(u)) == u


def test_url_explicit_port_and_empty_path() -> None:
    u = DmsgURL.parse(f"dmsg://{SERVER_PK.hex().upper()}:8080")
    assert u.addr == Addr(SERVER_PK, 8080)
    assert u.target == "/"
    assert DmsgURL.parse(f"dmsg://{SERVER_PK.hex()}:~/x").port == 80


@pytest.mark.parametrize(
    "text",
    [
        "dmsg://nothex/",
        f"dmsg://{SERVER_PK.hex()[:-2]}/",
        f"dmsg://{SERVER_PK.hex()}00/",
        f"dmsg://03{'ff' * 32}/",  # right length, not a curve point
        f"dmsg://{'0' * 66}/",  # the null key
        f"dmsg://:{80}/",
        f"dmsg://{SERVER_PK.hex()}:http/",
        f"dmsg://{SERVER_PK.hex()}:70000/",
        f"dmsg://user@{SERVER_PK.hex()}/",
        f"http://{SERVER_PK.hex()}/",
        "dmsg:///path",
        "not a url",
    ],
)
def test_url_rejects(text: str) -> None:
    with pytest.raises(DmsgURLError):
        DmsgURL.parse(text)


# ----------------------------------------------------------------------------------------------
# A real aiohttp app over each stand-in
# ----------------------------------------------------------------------------------------------


async def test_requests_over_streams(net: StreamNetwork, tmp_path: Path) -> None:
    async with no_leaked_tasks():
        static = tmp_path / "page.html"
        static.write_bytes(b"<h1>static</h1>" * 5000)
        listener = await net.listen(SERVER_PK, DEFAULT_HTTP_PORT)
        record: dict[str, object] = {}
        requests = 0
        async with (
            HTTPServer(make_app(record, file=static), listener),
            httpx.AsyncClient(transport=DmsgTransport(net.dialer(CLIENT_PK))) as client,
        ):
            # port omitted: 80
            r = await client.get(f"dmsg://{SERVER_PK.hex()}/hello")
            requests += 1
            assert r.status_code == 200
            assert r.text == "hello dmsg"
            assert r.headers["x-skywire"] == "yes"
            assert r.headers["content-length"] == "10"
            assert r.http_version == "HTTP/1.1"
            assert net.dialed[-1].closed  # the body is read: the client closed its stream

            r = await client.get(url("/whoami?q=1"))
            requests += 1
            assert r.json() == {
                "remote": CLIENT_PK.hex(),
                "host": f"{SERVER_PK.hex()}:80",
                "target": "/whoami?q=1",
            }

            h = hashlib.sha256()
            size = 0
            async with client.stream("GET", url("/big")) as r:
                requests += 1
                assert r.status_code == 200
                assert r.headers["transfer-encoding"] == "chunked"
                async for chunk in r.aiter_raw():
                    h.update(chunk)
                    size += len(chunk)
            assert size == len(BLOCK) * BIG_BLOCKS
            assert h.hexdigest() == BIG_SHA
            # flow control: the server's transport paused aiohttp instead of buffering the body
            high_water = 64 * 1024
            assert isinstance(record["big_max_buffered"], int)
            assert record["big_max_buffered"] <= high_water + 65536 + 64

            r = await client.get(url("/sized"))
            requests += 1
            assert r.headers["content-length"] == str(len(SIZED))
            assert r.content == SIZED

            r = await client.post(url("/echo"), json={"a": [1, 2, 3]})
            requests += 1
            assert r.status_code == 201
            assert r.headers["content-type"].startswith("application/json")
            assert r.json() == {"a": [1, 2, 3]}

            upload = os.urandom(5 * 1024 * 1024 + 3)

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked upload
                for off in range(0, len(upload), 100_000):
                    yield upload[off : off + 100_000]

            r = await client.post(url("/sha256"), content=chunks())
            requests += 1
            assert r.text == hashlib.sha256(upload).hexdigest()
            r = await client.post(url("/sha256"), content=upload)
            requests += 1
            assert r.text == hashlib.sha256(upload).hexdigest()

            r = await client.get(url(f"/static/{static.name}"))
            requests += 1
            assert r.status_code == 200
            assert r.content == static.read_bytes()

            r = await client.head(url("/sized"))
            requests += 1
            assert r.status_code == 200 and r.content == b""

            r = await client.get(url("/missing"))
            requests += 1
            assert r.status_code == 404

            replies = await asyncio.gather(*(client.get(url("/hello")) for _ in range(8)))
            requests += 8
            assert [x.text for x in replies] == ["hello dmsg"] * 8

            # upstream: no connection reuse, one fresh stream per request
            assert len(net.dialed) == requests
            assert len({id(s) for s in net.dialed}) == requests

        assert_all_closed(net)


async def test_fetch_and_serve_app(net: StreamNetwork) -> None:
    async with no_leaked_tasks():
        listener = await net.listen(SERVER_PK, 8080)
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(serve_app(make_app(), listener))
            r = await fetch(net.dialer(CLIENT_PK), url("/hello", 8080))
            assert (r.status_code, r.text) == (200, "hello dmsg")
            r = await fetch(
                net.dialer(CLIENT_PK),
                DmsgURL.parse(url("/echo", 8080)),
                method="POST",
                content=b"ping",
                headers={"Content-Type": "text/plain"},
            )
            assert (r.status_code, r.text) == (201, "ping")
            await listener.close()  # serve_app returns once its listener is gone
        assert serving.done() and serving.exception() is None
        assert len(net.dialed) == 2
        assert_all_closed(net)


async def test_server_close_mid_body_fails_the_client(net: StreamNetwork) -> None:
    async with no_leaked_tasks():
        record: dict[str, object] = {}
        listener = await net.listen(SERVER_PK, DEFAULT_HTTP_PORT)
        async with (
            HTTPServer(make_app(record), listener, shutdown_timeout=0.2) as server,
            httpx.AsyncClient(transport=DmsgTransport(net.dialer(CLIENT_PK))) as client,
            client.stream("GET", url("/stall")) as r,
        ):
            body = r.aiter_raw()
            got = 0
            while got < 65536:
                got += len(await anext(body))
            await server.close()  # the handler is still writing
            assert record.get("stall_cancelled") is True
            with pytest.raises(httpx.RemoteProtocolError):
                async for _ in body:
                    pass
        assert_all_closed(net)


async def test_server_close_ends_idle_and_running_connections(net: StreamNetwork) -> None:
    async with no_leaked_tasks():
        listener = await net.listen(SERVER_PK, DEFAULT_HTTP_PORT)
        dial = net.dialer(CLIENT_PK)
        async with HTTPServer(make_app(), listener) as server:
            idle = await dial(SERVER_PK, DEFAULT_HTTP_PORT)  # sends nothing
            partial = await dial(SERVER_PK, DEFAULT_HTTP_PORT)
            await partial.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
            kept = await dial(SERVER_PK, DEFAULT_HTTP_PORT)  # one request, then kept alive
            await kept.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = await read_until(kept, b"hello dmsg")
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
            assert server.active_connections == 3
        for stream in (idle, partial, kept):
            assert await stream.read() == b""  # closed by the server
            await stream.close()
        assert_all_closed(net)


# ----------------------------------------------------------------------------------------------
# Server timeouts
# ----------------------------------------------------------------------------------------------


async def read_until(stream: ByteStream, marker: bytes) -> bytes:
    buf = b""
    while marker not in buf:
        chunk = await stream.read()
        assert chunk, f"EOF before {marker!r}; got {buf!r}"
        buf += chunk
    return buf


async def test_read_header_timeout_closes_slow_connections(net: StreamNetwork) -> None:
    listener = await net.listen(SERVER_PK, DEFAULT_HTTP_PORT)
    dial = net.dialer(CLIENT_PK)
    async with HTTPServer(make_app(), listener, read_header_timeout=0.2, idle_timeout=30):
        silent = await dial(SERVER_PK, DEFAULT_HTTP_PORT)
        slow = await dial(SERVER_PK, DEFAULT_HTTP_PORT)
        await slow.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n")  # no end of headers
        async with asyncio.timeout(10):  # a failure guard, not synchronisation
            assert await silent.read() == b""
            assert await slow.read() == b""
        # a prompt request on a fresh stream is still served
        r = await fetch(dial, url("/hello"))
        assert r.text == "hello dmsg"
        await silent.close()
        await slow.close()
    assert_all_closed(net)


async def test_idle_timeout_closes_kept_alive_connections(net: StreamNetwork) -> None:
    listener = await net.listen(SERVER_PK, DEFAULT_HTTP_PORT)
    dial = net.dialer(CLIENT_PK)
    async with HTTPServer(make_app(), listener, idle_timeout=0.2):
        stream = await dial(SERVER_PK, DEFAULT_HTTP_PORT)
        for _ in range(2):  # keep-alive: two requests on one stream
            await stream.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_until(stream, b"hello dmsg")).startswith(b"HTTP/1.1 200")
        async with asyncio.timeout(10):  # a failure guard, not synchronisation
            assert await stream.read() == b""  # then the idle timeout closes it
        await stream.close()
    assert_all_closed(net)


# ----------------------------------------------------------------------------------------------
# Client against raw fake servers
# ----------------------------------------------------------------------------------------------


async def raw_server(
    listener: Listener, reply: bytes, requests: list[bytes], hold: asyncio.Event | None = None
) -> None:
    """Accept one stream, read one request head, answer ``reply`` verbatim, close."""
    stream = await listener.accept()
    try:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = await stream.read()
            if not chunk:
                break
            buf += chunk
        requests.append(buf)
        if hold is not None:
            await hold.wait()
        await stream.write(reply)
    finally:
        await stream.close()


async def with_raw_server(
    net: StreamNetwork,
    reply: bytes,
    client_call: Callable[[httpx.AsyncClient], Awaitable[None]],
    *,
    timeout: httpx.Timeout | None = None,
) -> list[bytes]:
    async with no_leaked_tasks():
        listener = await net.listen(SERVER_PK, 9000)
        requests: list[bytes] = []
        try:
            async with (
                asyncio.TaskGroup() as tg,
                httpx.AsyncClient(
                    transport=DmsgTransport(net.dialer(CLIENT_PK)), timeout=timeout or 5.0
                ) as client,
            ):
                tg.create_task(raw_server(listener, reply, requests))
                await client_call(client)
        finally:
            await listener.close()
        assert_all_closed(net)
    return requests


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\nclose-delimited body", b"close-delimited body"),
        (b"HTTP/1.0 200 OK\r\n\r\nold style", b"old style"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
            b"hello, world",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody and junk", b"body"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    ],
)
async def test_client_framings(net: StreamNetwork, reply: bytes, body: bytes) -> None:
    async def call(client: httpx.AsyncClient) -> None:
        r = await client.get(url("/p/q?x=1", 9000))
        assert r.status_code == 200
        assert r.content == body

    [request] = await with_raw_server(net, reply, call)
    head, _, _ = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /p/q?x=1 HTTP/1.1"
    assert lines[1] == f"Host: {SERVER_PK.hex()}:9000".encode()


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"HTTP/1.1 abc\r\n\r\n", id="bad-status-line"),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", id="bad-header"),
        pytest.param(b"", id="no-response"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Len", id="truncated-head"),
    ],
)
async def test_client_malformed_response(net: StreamNetwork, reply: bytes) -> None:
    async def call(client: httpx.AsyncClient) -> None:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await client.get(url("/", 9000))
        assert isinstance(info.value, httpx.TransportError)

    await with_raw_server(net, reply, call)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", id="length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", id="chunked"
        ),
    ],
)
async def test_client_truncated_body(net: StreamNetwork, reply: bytes) -> None:
    async def call(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", url("/", 9000)) as r:
            assert r.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                await r.aread()

    await with_raw_server(net, reply, call)


async def test_client_dial_failure(net: StreamNetwork) -> None:
    async with httpx.AsyncClient(transport=DmsgTransport(net.dialer(CLIENT_PK))) as client:
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(url("/", 4242))
        assert isinstance(info.value.__cause__, ConnectionRefusedError)
        with pytest.raises(httpx.ConnectError) as info:
            await client.get("dmsg://nothex:80/")
        assert isinstance(info.value.__cause__, DmsgURLError)
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get(f"https://{SERVER_PK.hex()}/")
    assert net.dialed == []


async def test_client_read_timeout(memnet: MemoryNetwork) -> None:
    listener = await memnet.listen(SERVER_PK, 9000)
    release = asyncio.Event()
    requests: list[bytes] = []
    async with (
        asyncio.TaskGroup() as tg,
        httpx.AsyncClient(
            transport=DmsgTransport(memnet.dialer(CLIENT_PK)),
            timeout=httpx.Timeout(5.0, read=0.2),
        ) as client,
    ):
        tg.create_task(raw_server(listener, b"", requests, hold=release))
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url("/", 9000))
        release.set()
    await listener.close()
    assert_all_closed(memnet)


async def test_client_connect_timeout() -> None:
    never = asyncio.Event()

    async def hanging_dial(pk: PubKey, port: int) -> ByteStream:
        await never.wait()
        raise AssertionError("unreachable")

    async with httpx.AsyncClient(
        transport=DmsgTransport(hanging_dial), timeout=httpx.Timeout(5.0, connect=0.1)
    ) as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.get(url("/"))


async def test_client_close_releases_unread_bodies(net: StreamNetwork) -> None:
    async with no_leaked_tasks():
        listener = await net.listen(SERVER_PK, DEFAULT_HTTP_PORT)
        async with HTTPServer(make_app(), listener):
            client = httpx.AsyncClient(transport=DmsgTransport(net.dialer(CLIENT_PK)))
            r = await client.send(client.build_request("GET", url("/big")), stream=True)
            assert r.status_code == 200
            body = r.aiter_raw()
            assert await anext(body)
            assert not net.dialed[0].closed
            await client.aclose()  # the body was abandoned: the transport closes its stream
            assert net.dialed[0].closed
            await body.aclose()
            # the server notices and serves the next client normally
            r2 = await fetch(net.dialer(CLIENT_PK), url("/hello"))
            assert r2.text == "hello dmsg"
        assert_all_closed(net)


class _GatedStream:
    """A stream that delivers one request and holds every write until ``gate`` is set."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.gate = asyncio.Event()
        self.out = bytearray()
        self.closed = asyncio.Event()

    async def read(self, max_bytes: int = 65536) -> bytes:
        if self.request:
            data, self.request = self.request, b""
            return data
        await self.closed.wait()
        return b""

    async def readexactly(self, n: int) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        await self.gate.wait()
        self.out += data

    async def close(self) -> None:
        self.closed.set()


@pytest.mark.parametrize("size", [0, 16 * 1024, 64 * 1024, 80 * 1024, 200_000])
async def test_static_file_over_blocked_stream_keeps_pause_state(
    tmp_path: Path, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    # A file written in chunks into a stream that holds every write: the transport pauses and
    # resumes aiohttp's protocol around its high-water mark (with 64 KiB the write that ends
    # the file is the one that pauses), and every byte arrives once the stream drains.
    data = os.urandom(size)
    (tmp_path / "f.bin").write_bytes(data)
    app = web.Application()
    add_static(app.router, "/", tmp_path)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        stream = _GatedStream(b"GET /f.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        transport = StreamTransport(stream, runner.server())
        task = asyncio.create_task(transport.run())

        # Writes are held: wait (polling a condition, bounded) until the file sits in the
        # transport's buffer or the transport has paused its protocol.
        def handed_over() -> bool:
            return transport.writing_paused or transport.get_write_buffer_size() >= max(size, 1)

        async with asyncio.timeout(5):
            while not handed_over():  # noqa: ASYNC110 - nothing to await in aiohttp internals
                await asyncio.sleep(0.001)
        stream.gate.set()
        await asyncio.wait_for(task, 5)
    finally:
        await runner.cleanup()
    head, _, body = bytes(stream.out).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == data
    assert not [r for r in caplog.records if r.name.startswith("skywire.dmsg.http")]
