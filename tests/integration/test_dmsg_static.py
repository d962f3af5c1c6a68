"""Serving a directory over dmsghttp: chunked files, HEAD, byte ranges, index pages, and paths
that try to leave the directory."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from skywire.cipher import KeyPair
from skywire.dmsg.http import DEFAULT_HTTP_PORT, DmsgTransport, HTTPServer, add_static
from skywire.dmsg.http.static import CHUNK_SIZE, byte_range

from ._streams import MemoryNetwork

SERVER_PK = KeyPair.generate().pk
CLIENT_PK = KeyPair.generate().pk


def url(path: str) -> str:
    return f"dmsg://{SERVER_PK.hex()}:{DEFAULT_HTTP_PORT}{path}"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "docs").mkdir(parents=True)
    (root / "big.bin").write_bytes(os.urandom(3 * CHUNK_SIZE + 17))
    (root / "docs" / "a.txt").write_text("alpha\n")
    (root / "empty").write_bytes(b"")
    (tmp_path / "secret.txt").write_text("not served\n")
    return root


async def serve(root: Path, *, show_index: bool = True) -> tuple[MemoryNetwork, HTTPServer]:
    net = MemoryNetwork()
    app = web.Application()
    add_static(app.router, "/", root, show_index=show_index)
    server = HTTPServer(app, await net.listen(SERVER_PK, DEFAULT_HTTP_PORT))
    await server.start()
    return net, server


async def test_files_heads_ranges_and_index(site: Path) -> None:
    net, server = await serve(site)
    try:
        async with httpx.AsyncClient(transport=DmsgTransport(net.dialer(CLIENT_PK))) as client:
            big = (site / "big.bin").read_bytes()
            r = await client.get(url("/big.bin"))
            assert r.status_code == 200 and r.content == big
            assert r.headers["content-length"] == str(len(big))
            assert r.headers["accept-ranges"] == "bytes"

            r = await client.head(url("/big.bin"))
            assert r.status_code == 200 and r.content == b""
            assert r.headers["content-length"] == str(len(big))

            r = await client.get(url("/big.bin"), headers={"Range": "bytes=100-299"})
            assert r.status_code == 206 and r.content == big[100:300]
            assert r.headers["content-range"] == f"bytes 100-299/{len(big)}"
            r = await client.get(url("/big.bin"), headers={"Range": "bytes=-10"})
            assert r.status_code == 206 and r.content == big[-10:]
            r = await client.get(url("/big.bin"), headers={"Range": f"bytes={len(big)}-"})
            assert r.status_code == 416
            assert r.headers["content-range"] == f"bytes */{len(big)}"

            r = await client.get(url("/docs/a.txt"))
            assert r.text == "alpha\n" and r.headers["content-type"].startswith("text/plain")
            r = await client.get(url("/empty"))
            assert r.status_code == 200 and r.content == b""

            r = await client.get(url("/"))
            assert r.status_code == 200 and 'href="/docs/"' in r.text and "big.bin" in r.text
            r = await client.get(url("/docs/"))
            assert 'href="/docs/a.txt"' in r.text

            for bad in ("/../secret.txt", "/docs/../../secret.txt", "/%2e%2e/secret.txt", "/nope"):
                r = await client.get(url(bad))
                assert r.status_code == 404, bad
                assert "not served" not in r.text
    finally:
        await server.close()


async def test_index_page_off_and_index_html(site: Path) -> None:
    net, server = await serve(site, show_index=False)
    try:
        async with httpx.AsyncClient(transport=DmsgTransport(net.dialer(CLIENT_PK))) as client:
            r = await client.get(url("/docs/"))
            assert r.status_code == 403 and "listing is off" in r.text
            (site / "docs" / "index.html").write_text("<h1>docs</h1>")
            r = await client.get(url("/docs/"))
            assert r.status_code == 200 and r.text == "<h1>docs</h1>"
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-5", 100, (95, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=10-1000", 100, (10, 99)),
        ("bytes=0-1,5-6", 100, None),
        ("items=0-1", 100, None),
    ],
)
def test_byte_range(header: str, size: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=5-2", "bytes=x-1", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(ValueError):
        byte_range(header, 100)


async def test_an_interrupted_download_logs_no_error(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that goes away mid-file: the server stops quietly (the old sendfile fallback
    was fed the client's end and raised "reading should be paused")."""
    big = site / "huge.bin"
    big.write_bytes(os.urandom(8 << 20))
    net, server = await serve(site)
    try:
        for _ in range(5):
            async with (
                httpx.AsyncClient(transport=DmsgTransport(net.dialer(CLIENT_PK))) as client,
                client.stream("GET", url("/huge.bin")) as r,
            ):
                body = r.aiter_raw()
                await anext(body)  # some bytes, then hang up
        r = await httpx.AsyncClient(transport=DmsgTransport(net.dialer(CLIENT_PK))).get(
            url("/docs/a.txt")
        )
        assert r.text == "alpha\n"
    finally:
        await server.close()
    errors = [rec for rec in caplog.records if rec.levelno >= 40]
    assert not errors, [rec.getMessage() for rec in errors]
