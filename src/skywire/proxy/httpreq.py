"""HTTP/1.1 requests as the proxies see them (sans-I/O): request heads, the HTTP-proxy forms
(``CONNECT host:port`` and absolute-URI requests), and a rewriter that edits every request head
on a byte stream while passing bodies through untouched.

The rewriter follows each request's framing (``Content-Length``, ``chunked``, or none) so that
on a kept-alive connection it finds every next head: this is how a vhost name rewrites the
``Host`` of each request a browser sends down one tunnel.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from skywire.proxy.errors import ProxyError

__all__ = [
    "MAX_HEAD",
    "HTTPRequestError",
    "ProxyRequest",
    "RequestHead",
    "RequestRewriter",
    "error_response",
    "parse_head",
    "proxy_request",
]

MAX_HEAD = 64 * 1024
"""Longest request head accepted (request line and headers)."""
MAX_HEADERS = 200


class HTTPRequestError(ProxyError, ValueError):
    """Bytes that are not an HTTP/1.1 request the proxy can follow."""

    status = 400


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def with_header(self, name: str, value: str | None) -> RequestHead:
        """This head with ``name`` set to ``value`` (in place of the first one, others
        dropped), or removed when ``value`` is None."""
        lname = name.lower()
        out: list[tuple[str, str]] = []
        placed = False
        for key, old in self.headers:
            if key.lower() != lname:
                out.append((key, old))
            elif value is not None and not placed:
                out.append((key, value))
                placed = True
        if value is not None and not placed:
            out.append((name, value))
        return replace(self, headers=tuple(out))

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.target} {self.version}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(buf: bytes | bytearray) -> tuple[RequestHead, int] | None:
    """The request head at the start of ``buf`` and its length, or None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise HTTPRequestError(f"request head longer than {MAX_HEAD} bytes")
        return None
    if end > MAX_HEAD:
        raise HTTPRequestError(f"request head longer than {MAX_HEAD} bytes")
    try:
        text = bytes(buf[:end]).decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise HTTPRequestError(str(exc)) from exc
    request_line, *header_lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise HTTPRequestError(f"bad request line {request_line[:80]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HTTPRequestError(f"unsupported version {version[:16]!r}")
    if len(header_lines) > MAX_HEADERS:
        raise HTTPRequestError(f"more than {MAX_HEADERS} headers")
    headers = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise HTTPRequestError(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return RequestHead(method.upper(), target, version, tuple(headers)), end + 4


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """The first request on an HTTP-proxy connection: a tunnel (``CONNECT``) or a request for
    an absolute URI that the proxy forwards (``head`` already in origin form)."""

    host: str  # with the port, as in a Host header: name[:port]
    tunnel: bool
    head: RequestHead | None = None


def proxy_request(head: RequestHead) -> ProxyRequest:
    """Read an HTTP-proxy request: ``CONNECT name:port`` or ``GET http://name[:port]/path``."""
    if head.method == "CONNECT":
        if "/" in head.target or ":" not in head.target:
            raise HTTPRequestError(f"CONNECT target {head.target[:80]!r} is not host:port")
        return ProxyRequest(head.target, True)
    parts = urlsplit(head.target)
    if parts.scheme.lower() != "http" or not parts.netloc:
        if head.target.startswith("/"):
            raise HTTPRequestError("this is a proxy: requests need an absolute http:// URI")
        raise HTTPRequestError(f"unsupported request target {head.target[:80]!r}")
    if "@" in parts.netloc:
        raise HTTPRequestError("user info in the request URI is not allowed")
    origin = parts.path or "/"
    if parts.query:
        origin += "?" + parts.query
    forwarded = replace(head, target=origin)
    for name in ("Proxy-Connection", "Proxy-Authorization", "Keep-Alive"):
        forwarded = forwarded.with_header(name, None)
    forwarded = forwarded.with_header("Host", parts.netloc).with_header("Connection", "close")
    return ProxyRequest(parts.netloc, False, forwarded)


def error_response(status: int, message: str) -> bytes:
    """A complete ``text/plain`` response that closes the connection."""
    reasons = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway", 504: "Gateway Timeout"}
    body = (message.rstrip("\n") + "\n").encode("utf-8", "replace")
    head = (
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _State(enum.Enum):
    HEAD = "head"
    LENGTH = "length"  # a body of known length
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_END = "chunk-end"  # the CRLF after a chunk
    TRAILERS = "trailers"
    RAW = "raw"  # an upgraded connection, or a body without framing: pass everything
    DISCARD = "discard"  # once=True and the request is done: drop the rest


class RequestRewriter:
    """Rewrites each request head on a stream of requests with ``edit`` (bodies untouched).

    ``receive_data(data)`` returns the bytes to forward. With ``once`` only the first request
    is forwarded and anything after it is dropped (an HTTP-proxy request sent with
    ``Connection: close``). Malformed heads and chunk framing raise :class:`HTTPRequestError`.
    """

    def __init__(self, edit: Callable[[RequestHead], RequestHead], *, once: bool = False) -> None:
        self._edit = edit
        self._once = once
        self._buf = bytearray()
        self._state = _State.HEAD
        self._left = 0
        self.requests = 0

    def receive_data(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while self._buf:
            state = self._state
            if state is _State.RAW:
                out += self._buf
                self._buf.clear()
            elif state is _State.DISCARD:
                self._buf.clear()
            elif state is _State.HEAD:
                if not self._head(out):
                    break
            elif state is _State.LENGTH or state is _State.CHUNK_DATA:
                n = min(self._left, len(self._buf))
                out += self._buf[:n]
                del self._buf[:n]
                self._left -= n
                if self._left == 0:
                    self._state = _State.CHUNK_END if state is _State.CHUNK_DATA else self._done()
            elif not self._framing_line(out):
                break
        return bytes(out)

    def _done(self) -> _State:
        return _State.DISCARD if self._once else _State.HEAD

    def _head(self, out: bytearray) -> bool:
        parsed = parse_head(self._buf)
        if parsed is None:
            return False
        head, used = parsed
        del self._buf[:used]
        self.requests += 1
        edited = self._edit(head)
        out += edited.encode()
        connection = (head.get("Connection") or "").lower()
        if "upgrade" in connection or head.method == "CONNECT":
            self._state = _State.RAW
        elif "chunked" in (head.get("Transfer-Encoding") or "").lower():
            self._state = _State.CHUNK_SIZE
        elif (length := head.get("Content-Length")) is not None:
            if not length.isdigit() or len(length) > 18:
                raise HTTPRequestError(f"bad Content-Length {length[:32]!r}")
            self._left = int(length)
            self._state = _State.LENGTH if self._left else self._done()
        else:
            self._state = self._done()
        return True

    def _framing_line(self, out: bytearray) -> bool:
        """CHUNK_SIZE, CHUNK_END and TRAILERS: one CRLF-ended line, passed through."""
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > 4096:
                raise HTTPRequestError("chunk framing line longer than 4096 bytes")
            return False
        line = bytes(self._buf[:end])
        out += self._buf[: end + 2]
        del self._buf[: end + 2]
        if self._state is _State.CHUNK_END:
            if line:
                raise HTTPRequestError("chunk data is longer than its size")
            self._state = _State.CHUNK_SIZE
        elif self._state is _State.CHUNK_SIZE:
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HTTPRequestError(f"bad chunk size {size_text[:16]!r}") from None
            if size == 0:
                self._state = _State.TRAILERS
            else:
                self._left = size
                self._state = _State.CHUNK_DATA
        elif not line:  # TRAILERS: the empty line ends the message
            self._state = self._done()
        return True
