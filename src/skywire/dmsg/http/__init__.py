"""dmsghttp: HTTP/1.1 over any :class:`~skywire.wire.stream.ByteStream`.

Upstream behaviour (spec dmsg.md §7):

* **Server** (:mod:`.server`, :mod:`.transport`). An ordinary HTTP/1.1 server runs on the
  streams a :class:`~skywire.wire.stream.Listener` accepts (a dmsg port, by default 80). Each
  stream plays the part of one TCP connection. Upstream bounds the wait for request headers
  (3 s) and idle keep-alive connections (30 s). aiohttp's own request handler runs on
  :class:`StreamTransport`; files are served with :mod:`.static`.
* **Client** (:mod:`.client`). URLs are ``dmsg://<pk-hex>[:port]/path?query`` (:mod:`.url`); a
  missing port means 80. Every request dials a **new** stream (no connection reuse), writes the
  request with ``Host: <pk-hex>:<port>``, reads the response, and closes the stream once the
  body is done. ``httpx.AsyncClient(transport=DmsgTransport(dial))`` fetches ``dmsg://`` URLs and
  every failure is an ``httpx.TransportError``.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skywire.dmsg.http.client import DmsgTransport, fetch, fetch_stream
    from skywire.dmsg.http.server import (
        IDLE_TIMEOUT,
        READ_HEADER_TIMEOUT,
        SHUTDOWN_TIMEOUT,
        HTTPServer,
        serve_app,
    )
    from skywire.dmsg.http.static import add_static
    from skywire.dmsg.http.transport import READ_CHUNK, StreamTransport
    from skywire.dmsg.http.url import DEFAULT_HTTP_PORT, DmsgURL, DmsgURLError

# Imported from their modules on first use: a client (``skywire dmsg curl``) then loads
# neither aiohttp's server nor the static file handler.
_WHERE = {
    **dict.fromkeys(("DmsgTransport", "fetch", "fetch_stream"), "skywire.dmsg.http.client"),
    **dict.fromkeys(
        ("IDLE_TIMEOUT", "READ_HEADER_TIMEOUT", "SHUTDOWN_TIMEOUT", "HTTPServer", "serve_app"),
        "skywire.dmsg.http.server",
    ),
    "add_static": "skywire.dmsg.http.static",
    **dict.fromkeys(("READ_CHUNK", "StreamTransport"), "skywire.dmsg.http.transport"),
    **dict.fromkeys(("DEFAULT_HTTP_PORT", "DmsgURL", "DmsgURLError"), "skywire.dmsg.http.url"),
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'skywire.dmsg.http' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_HTTP_PORT",
    "IDLE_TIMEOUT",
    "READ_CHUNK",
    "READ_HEADER_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "DmsgTransport",
    "DmsgURL",
    "DmsgURLError",
    "HTTPServer",
    "StreamTransport",
    "add_static",
    "fetch",
    "fetch_stream",
    "serve_app",
]
