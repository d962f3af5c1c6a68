"""``wire.http1``: one HTTP/1.1 request over a scripted byte stream (no socket): the bytes it
sends, answers whole and one byte at a time, bodies by length, chunked and to the end, limits,
and every broken answer as ``HTTP1Error`` with the stream closed."""

from __future__ import annotations

import asyncio

import pytest

from skywire.wire.http1 import HTTP1Error, request


class Scripted:
    """A ByteStream whose reads hand out ``chunks`` in order, then ``b""`` (or wait forever
    with ``hang``); writes are recorded (or fail with ``write_error``)."""

    def __init__(
        self,
        chunks: list[bytes],
        *,
        hang: bool = False,
        write_error: OSError | None = None,
    ) -> None:
        self.chunks = list(chunks)
        self.hang = hang
        self.write_error = write_error
        self.sent = b""
        self.closed = 0

    async def read(self, max_bytes: int = 65536) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.hang:
            await asyncio.Event().wait()
        return b""

    async def readexactly(self, n: int) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        if self.write_error is not None:
            raise self.write_error
        self.sent += data

    async def close(self) -> None:
        self.closed += 1


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"a": true}'


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@pytest.mark.parametrize("split", [False, True], ids=["whole", "one byte at a time"])
async def test_a_get_and_its_answer(split: bool) -> None:
    stream = Scripted(bytewise(OK) if split else [OK])
    async with await request(stream, "GET", "/x?y=1", host="h:80", headers=[("A", "b")]) as resp:
        assert (resp.status, resp.reason) == (200, "OK")
        assert resp.header("CONTENT-TYPE") == "application/json"
        assert resp.header("missing", "none") == "none"
        assert await resp.read() == b'{"a": true}'
    assert stream.sent == (
        b"GET /x?y=1 HTTP/1.1\r\nHost: h:80\r\nA: b\r\nConnection: close\r\n\r\n"
    )
    assert stream.closed >= 1


async def test_a_body_is_sent_with_its_length() -> None:
    stream = Scripted([OK])
    async with await request(stream, "POST", "/e", host="h", body=b"12345") as resp:
        await resp.read()
    assert b"\r\nContent-Length: 5\r\n\r\n12345" in stream.sent


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nabcdef",  # to the end of the stream
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef",
    ],
    ids=["chunked", "until closed", "after a 100"],
)
async def test_bodies_are_read_in_pieces(answer: bytes) -> None:
    async with await request(Scripted(bytewise(answer)), "GET", "/", host="h") as resp:
        assert b"".join([chunk async for chunk in resp]) == b"abcdef"
        assert [chunk async for chunk in resp] == []  # read once


async def test_an_answer_over_the_limit_is_refused_early_or_as_it_comes() -> None:
    declared = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    stream = Scripted([declared])
    async with await request(stream, "GET", "/", host="h") as resp:
        with pytest.raises(HTTP1Error, match="longer than 10 bytes"):
            await resp.read(10)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n"
    stream = Scripted([chunked, chunked[-13:], b"0\r\n\r\n"])
    async with await request(stream, "GET", "/", host="h") as resp:
        with pytest.raises(HTTP1Error, match="longer than 10 bytes"):
            await resp.read(10)
    assert stream.chunks == [b"0\r\n\r\n"]  # not read past the limit


@pytest.mark.parametrize(
    ("chunks", "match"),
    [
        ([], "closed without answering"),
        ([b"HTTP/1.1 200 OK\r\nContent-Le"], "malformed or truncated"),
        ([b"SSH-2.0-OpenSSH\r\n\r\n"], "malformed or truncated"),
    ],
    ids=["nothing", "half a head", "not HTTP"],
)
async def test_no_answer_is_an_error_and_closes_the_stream(chunks: list[bytes], match: str) -> None:
    stream = Scripted(chunks)
    with pytest.raises(HTTP1Error, match=match):
        await request(stream, "GET", "/", host="h")
    assert stream.closed == 1


async def test_a_body_cut_short_is_an_error() -> None:
    stream = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"])
    async with await request(stream, "GET", "/", host="h") as resp:
        with pytest.raises(HTTP1Error, match="malformed or truncated"):
            await resp.read()


async def test_an_answer_sent_before_the_request_was_taken_is_kept() -> None:
    early = b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\n\r\n"
    stream = Scripted([early], write_error=ConnectionResetError("reset"))
    async with await request(stream, "POST", "/", host="h", body=b"x" * 100) as resp:
        assert resp.status == 413
    stream = Scripted([], write_error=ConnectionResetError("reset"))
    with pytest.raises(ConnectionResetError):
        await request(stream, "POST", "/", host="h", body=b"x")
    assert stream.closed == 1


async def test_a_request_h11_refuses_is_an_error() -> None:
    stream = Scripted([OK])
    with pytest.raises(HTTP1Error, match="cannot send"):
        await request(stream, "GET", "/", host="h", headers=[("Bad Name", "x")])
    assert stream.closed == 1 and stream.sent == b""


async def test_read_timeout_bounds_each_read() -> None:
    stream = Scripted([], hang=True)
    with pytest.raises(TimeoutError):
        await request(stream, "GET", "/", host="h", read_timeout=0.01)
    assert stream.closed == 1
    stream = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"], hang=True)
    async with await request(stream, "GET", "/", host="h", read_timeout=0.01) as resp:
        with pytest.raises(TimeoutError):
            await resp.read()
