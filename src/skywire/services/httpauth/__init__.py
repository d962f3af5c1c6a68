"""httpauth: signed HTTP requests with per-key incrementing nonces (TPD, AR, UT and SD writes).

A client of key ``pk`` first asks ``GET /security/nonces/<pk>`` for its next nonce
(``{"edge":"<pk>","next_nonce":N}``), then sends every protected request with

* ``SW-Public: <pk hex>``
* ``SW-Nonce: <N in decimal>``
* ``SW-Sig: <hex of sign(SHA-256(body ‖ ascii(decimal N)))>``

The server accepts a request only when ``SW-Nonce`` is exactly the stored next nonce of
``SW-Public`` and the signature verifies; it increments the nonce after a successful (2xx)
answer. Any refusal is ``401 {"error":{"message":…,"code":401}}`` and changes nothing; a
stale nonce is refused with the message ``SW-Nonce does not match``, on which the client
re-fetches its nonce and retries once.

Difference from upstream, on purpose: the reference server increments only after a plain 200, so
a 201 answer (a TPD registration) leaves the nonce reusable; here every 2xx consumes the nonce, so
no signed request can be replayed. Reference clients cope (they get ``SW-Nonce does not match``
once, re-fetch and retry); this client increments after every 2xx and copes with a reference
server the same way.

Server side: :class:`HTTPAuth` (an aiohttp middleware plus the nonce endpoint) over a
:class:`NonceStore` (:class:`MemoryNonceStore`, :class:`SqliteNonceStore`,
:class:`PostgresNonceStore`). Client side: :class:`HTTPAuthClient`.

The package: :mod:`.sign` (payload, headers, :class:`AuthError`), :mod:`.store` (nonce stores),
:mod:`.server` (:class:`HTTPAuth`) and :mod:`.client` (:class:`HTTPAuthClient`); every public
name is re-exported here.
"""

from __future__ import annotations

from skywire.services.httpauth.client import HTTPAuthClient, HTTPAuthResponse, HTTPStatusError
from skywire.services.httpauth.server import AUTH_PK_KEY, HTTPAuth, authenticated_pk
from skywire.services.httpauth.sign import (
    HEADER_NONCE,
    HEADER_PUBLIC,
    HEADER_PUBLIC_IP,
    HEADER_SIG,
    MAX_NONCE,
    NONCE_MISMATCH,
    NONCE_PATH,
    AuthError,
    auth_headers,
    error_json,
    parse_auth_headers,
    payload_with_nonce,
    sign_request,
    verify_request,
)
from skywire.services.httpauth.store import (
    MemoryNonceStore,
    NonceStore,
    PostgresNonceStore,
    SqliteNonceStore,
    pg_qualified,
)

__all__ = [
    "AUTH_PK_KEY",
    "HEADER_NONCE",
    "HEADER_PUBLIC",
    "HEADER_PUBLIC_IP",
    "HEADER_SIG",
    "MAX_NONCE",
    "NONCE_MISMATCH",
    "NONCE_PATH",
    "AuthError",
    "HTTPAuth",
    "HTTPAuthClient",
    "HTTPAuthResponse",
    "HTTPStatusError",
    "MemoryNonceStore",
    "NonceStore",
    "PostgresNonceStore",
    "SqliteNonceStore",
    "auth_headers",
    "authenticated_pk",
    "error_json",
    "parse_auth_headers",
    "payload_with_nonce",
    "pg_qualified",
    "sign_request",
    "verify_request",
]
