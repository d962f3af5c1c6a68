"""httpauth's signed payload and headers: what a client signs (``body ‖ decimal nonce``), the
``SW-Public`` / ``SW-Nonce`` / ``SW-Sig`` headers that carry it, their parsing with the
reference's refusal messages (:class:`AuthError`), and the JSON error body of a refusal. Pure:
no I/O, no aiohttp; :mod:`.server` and :mod:`.client` build on it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from skywire.cipher import CipherError, PubKey, SecKey, Sig, verify

__all__ = [
    "HEADER_NONCE",
    "HEADER_PUBLIC",
    "HEADER_PUBLIC_IP",
    "HEADER_SIG",
    "HEADER_SIG_REQUEST",
    "MAX_NONCE",
    "NONCE_MISMATCH",
    "NONCE_PATH",
    "AuthError",
    "auth_headers",
    "error_json",
    "parse_auth_headers",
    "payload_with_nonce",
    "request_scope",
    "sign_request",
    "verify_request",
    "verify_scope",
]

HEADER_PUBLIC = "SW-Public"
HEADER_NONCE = "SW-Nonce"
HEADER_SIG = "SW-Sig"
HEADER_PUBLIC_IP = "SW-PublicIP"
HEADER_SIG_REQUEST = "SW-Sig-Req"
"""Ours: a second signature that also covers the method and the request target."""
NONCE_PATH = "/security/nonces/"
NONCE_MISMATCH = "SW-Nonce does not match"
"""The 401 message that tells a client its nonce is stale."""

MAX_NONCE = 2**64 - 1

_HEX_RE = re.compile(r"[0-9a-fA-F]*")


def payload_with_nonce(body: bytes, nonce: int) -> bytes:
    """``body ‖ ascii(decimal nonce)``: what is hashed and signed."""
    return bytes(body) + str(int(nonce)).encode()


def sign_request(body: bytes, nonce: int, sk: SecKey) -> Sig:
    """``sk``'s signature of ``SHA-256(body ‖ decimal nonce)``."""
    return sk.sign(payload_with_nonce(body, nonce))


def verify_request(body: bytes, nonce: int, pk: PubKey, sig: Sig) -> None:
    """Raise :class:`~skywire.cipher.CipherError` unless ``sig`` is ``pk``'s over body and nonce."""
    verify(pk, sig, payload_with_nonce(body, nonce))


def request_scope(method: str, target: str, body: bytes, nonce: int) -> bytes:
    """What ``SW-Sig-Req`` signs (ours, not upstream's): the method and the request target
    (path and query) as well as the body and nonce, so that headers made for one request
    cannot be put on another with the same body (a GET's on a DELETE)."""
    return f"{method.upper()} {target}\n".encode() + payload_with_nonce(body, nonce)


def verify_scope(method: str, target: str, body: bytes, nonce: int, pk: PubKey, sig: Sig) -> None:
    """Raise :class:`~skywire.cipher.CipherError` unless ``sig`` signs this very request."""
    verify(pk, sig, request_scope(method, target, body, nonce))


def auth_headers(
    sk: SecKey,
    body: bytes,
    nonce: int,
    *,
    pk: PubKey | None = None,
    public_ip: str = "",
    method: str = "",
    target: str = "",
) -> dict[str, str]:
    """The three (or four) headers of a signed request; with ``method`` and ``target`` also
    ``SW-Sig-Req`` (upstream servers ignore it)."""
    headers = {
        HEADER_NONCE: str(int(nonce)),
        HEADER_SIG: sign_request(body, nonce, sk).hex(),
        HEADER_PUBLIC: (pk or sk.pubkey()).hex(),
    }
    if method and target:
        headers[HEADER_SIG_REQUEST] = sk.sign(request_scope(method, target, body, nonce)).hex()
    if public_ip:
        headers[HEADER_PUBLIC_IP] = public_ip
    return headers


class AuthError(Exception):
    """A request refused by httpauth (answered 401 with this message)."""


def parse_auth_headers(headers: Any) -> tuple[PubKey, int, Sig]:
    """``(pk, nonce, sig)`` from a request's headers (anything with ``.get``); raises
    :class:`AuthError` with the reference's messages."""
    pk_text = headers.get(HEADER_PUBLIC, "")
    if not pk_text:
        raise AuthError("SW-Public missing")
    try:
        pk = PubKey.from_hex(pk_text)
    except CipherError as exc:
        raise AuthError(f"error parsing SW-Public: {exc}") from exc
    sig_text = headers.get(HEADER_SIG, "")
    if not sig_text:
        raise AuthError("SW-Sig missing")
    if len(sig_text) != 130 or not _HEX_RE.fullmatch(sig_text):
        raise AuthError(f"error parsing SW-Sig:'{sig_text}': Invalid signature length")
    sig = Sig(bytes.fromhex(sig_text))
    nonce_text = headers.get(HEADER_NONCE, "")
    if not nonce_text:
        raise AuthError("SW-Nonce missing")
    if not (nonce_text.isascii() and nonce_text.isdigit()):
        raise AuthError("error parsing SW-Nonce: invalid syntax")
    nonce = int(nonce_text)
    if nonce > MAX_NONCE:
        raise AuthError("error parsing SW-Nonce: value out of range")
    return pk, nonce, sig


def error_json(status: int, message: str) -> bytes:
    """``{"error":{"message":…,"code":…}}`` and a newline."""
    body = {"error": {"message": message, "code": status}}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
