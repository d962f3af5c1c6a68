"""HTTP requests as the proxies see them: heads, the proxy forms, and the Host rewriter."""

from __future__ import annotations

import pytest

from skywire.proxy.httpreq import (
    HTTPRequestError,
    RequestHead,
    RequestRewriter,
    error_response,
    parse_head,
    proxy_request,
)

GET = b"GET /a HTTP/1.1\r\nHost: site.pk.dmsg\r\nAccept: */*\r\n\r\n"
POST = b"POST /form HTTP/1.1\r\nhost: site.pk.dmsg\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nabcde\r\n3\r\nfgh\r\n0\r\nTrailer: t\r\n\r\n"
)


def vhost(head: RequestHead) -> RequestHead:
    return head.with_header("Host", "example.net")


def run(rw: RequestRewriter, data: bytes, one_by_one: bool) -> bytes:
    if not one_by_one:
        return rw.receive_data(data)
    return b"".join(rw.receive_data(data[i : i + 1]) for i in range(len(data)))


@pytest.mark.parametrize("one_by_one", [False, True])
def test_every_request_on_a_kept_alive_stream_is_rewritten(one_by_one: bool) -> None:
    rw = RequestRewriter(vhost)
    out = run(rw, GET + POST + CHUNKED + GET, one_by_one)
    assert rw.requests == 4
    assert out.count(b"Host: example.net\r\n") + out.count(b"host: example.net\r\n") == 4
    assert b"site.pk.dmsg" not in out
    assert b"\r\n\r\nhello" in out
    assert b"5;ext=1\r\nabcde\r\n3\r\nfgh\r\n0\r\nTrailer: t\r\n\r\n" in out
    assert out.endswith(b"Accept: */*\r\n\r\n")


def test_once_drops_what_follows_and_upgrade_passes_raw() -> None:
    rw = RequestRewriter(vhost, once=True)
    out = rw.receive_data(POST + GET)
    assert out.endswith(b"hello") and rw.requests == 1
    assert rw.receive_data(GET) == b""
    ws = RequestRewriter(vhost)
    upgrade = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    out = ws.receive_data(upgrade + b"\x81\x05frame" + GET)
    assert out.endswith(b"\x81\x05frame" + GET)  # after an upgrade, bytes are not requests


@pytest.mark.parametrize(
    "data",
    [
        b"GET /\r\n\r\n",
        b"GET / HTTP/2\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 300 + b"\r\n",
        b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000,
    ],
)
def test_malformed_requests_raise(data: bytes) -> None:
    with pytest.raises(HTTPRequestError):
        RequestRewriter(vhost).receive_data(data)


def test_proxy_forms() -> None:
    connect = b"CONNECT abc.dmsg:443 HTTP/1.1\r\nHost: abc.dmsg:443\r\n\r\n"
    parsed = parse_head(connect + b"xx")
    assert parsed is not None and parsed[1] == len(connect)
    head = parsed[0]
    req = proxy_request(head)
    assert req.tunnel and req.host == "abc.dmsg:443"

    raw = (
        b"GET http://site.pk.dmsg:8080/p?q=1 HTTP/1.1\r\nHost: site.pk.dmsg:8080\r\n"
        b"Proxy-Connection: keep-alive\r\nUser-Agent: t\r\n\r\n"
    )
    parsed = parse_head(raw)
    assert parsed is not None
    req = proxy_request(parsed[0])
    assert not req.tunnel and req.host == "site.pk.dmsg:8080" and req.head is not None
    assert req.head.target == "/p?q=1"
    assert req.head.get("Proxy-Connection") is None
    assert req.head.get("Connection") == "close"
    assert req.head.encode().startswith(b"GET /p?q=1 HTTP/1.1\r\nHost: site.pk.dmsg:8080\r\n")

    for bad in (
        b"GET /local HTTP/1.1\r\n\r\n",
        b"GET ftp://x/ HTTP/1.1\r\n\r\n",
        b"CONNECT nohost HTTP/1.1\r\n\r\n",
        b"GET http://u@x/ HTTP/1.1\r\n\r\n",
    ):
        parsed = parse_head(bad)
        assert parsed is not None
        with pytest.raises(HTTPRequestError):
            proxy_request(parsed[0])


def test_error_response() -> None:
    resp = error_response(502, "no route to 02ab: every path crosses a dead visor")
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"Content-Length: %d" % len(body) in head
    assert body == b"no route to 02ab: every path crosses a dead visor\n"
