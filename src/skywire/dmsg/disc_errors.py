"""Errors of the dmsg discovery protocol (sans-I/O): one typed exception per upstream message.

Each refusal the discovery can answer with is a :class:`DiscError` subclass carrying the HTTP
status and the exact upstream message, so a Go client and ours both map a body back to the same
error (:func:`error_from_message`, :func:`error_from_response`). A discovery that cannot be
reached at all is :class:`DiscUnreachableError`, also a ``ConnectionError``.
"""

from __future__ import annotations

import json
from typing import ClassVar

__all__ = [
    "BadInputError",
    "DeleteNotProvenError",
    "DiscError",
    "DiscUnreachableError",
    "EmptyServerAddressError",
    "EntryDecodeError",
    "EntryValidationError",
    "KeyNotFoundError",
    "NilEphemeralsError",
    "NilKeysError",
    "NoAvailableServersError",
    "NoClientOrServerError",
    "NoSignatureError",
    "NoVersionError",
    "NonNilEphemeralsError",
    "NonZeroSequenceError",
    "OutdatedTimeError",
    "ServerAddressError",
    "UnauthorizedError",
    "UnauthorizedNetworkMonitorError",
    "UnexpectedError",
    "UnusableServerAddressError",
    "WrongSequenceError",
    "WrongTimeError",
    "error_from_message",
    "error_from_response",
    "http_message_json",
    "quote_json_string",
]

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class DiscError(Exception):
    """An error of the discovery protocol: an HTTP status and the upstream message.

    ``message`` is what travels in the ``{"message": …, "code": …}`` body and what a Go client
    compares against; ``detail`` is extra context for logs and never sent.
    """

    def __init__(self, code: int, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        if self.detail:
            return f"{self.message} ({self.detail})"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r})"

    def to_json(self) -> bytes:
        """The error body the discovery answers with."""
        return http_message_json(self.code, self.message)


class _FixedDiscError(DiscError):
    """A :class:`DiscError` whose status and message are fixed by its class."""

    CODE: ClassVar[int] = 500
    MESSAGE: ClassVar[str] = ""

    def __init__(self, detail: str = "") -> None:
        super().__init__(self.CODE, self.MESSAGE, detail)


class KeyNotFoundError(_FixedDiscError):
    CODE = 404
    MESSAGE = "entry of public key is not found"


class NoAvailableServersError(_FixedDiscError):
    CODE = 404
    MESSAGE = "no delegated dmsg servers available for remote"


class UnexpectedError(_FixedDiscError):
    CODE = 500
    MESSAGE = "something unexpected happened"


class UnauthorizedError(_FixedDiscError):
    """The entry's signature does not verify (``detail`` carries the verifier's reason)."""

    CODE = 401
    MESSAGE = "invalid signature"


class BadInputError(_FixedDiscError):
    CODE = 400
    MESSAGE = "error bad input"


class EntryDecodeError(BadInputError):
    """Bytes that are not an entry (bad JSON, wrong types, bad keys); ``detail`` says why."""


class UnauthorizedNetworkMonitorError(_FixedDiscError):
    CODE = 403
    MESSAGE = "invalid network monitor key"


class EntryValidationError(_FixedDiscError):
    """A parsed entry that is not acceptable: HTTP 422, ``entry validation error: <cause>``."""

    CODE = 422
    CAUSE: ClassVar[str] = ""

    def __init__(self, detail: str = "") -> None:
        DiscError.__init__(self, self.CODE, f"entry validation error: {self.CAUSE}", detail)

    @property
    def cause(self) -> str:
        return self.CAUSE


class NonZeroSequenceError(EntryValidationError):
    CAUSE = "new entry has non-zero sequence"


class NilEphemeralsError(EntryValidationError):
    CAUSE = "entry of client instance has nil ephemeral keys"


class NilKeysError(EntryValidationError):
    CAUSE = "entry Keys is nil"


class NonNilEphemeralsError(EntryValidationError):
    CAUSE = "entry of server instance has non nil Keys.Ephemerals field"


class NoSignatureError(EntryValidationError):
    CAUSE = "entry has no signature"


class NoVersionError(EntryValidationError):
    CAUSE = "entry has no version"


class NoClientOrServerError(EntryValidationError):
    CAUSE = "entry has neither client or server field"


class WrongSequenceError(EntryValidationError):
    CAUSE = "sequence field of new entry is not sequence of old entry + 1"


class WrongTimeError(EntryValidationError):
    CAUSE = "advertised entry timestamp is not greater than previous"


class OutdatedTimeError(EntryValidationError):
    CAUSE = "advertised entry has outdated timestamp"


class ServerAddressError(EntryValidationError):
    CAUSE = "advertising localhost listening address is not allowed in production mode"


class EmptyServerAddressError(EntryValidationError):
    CAUSE = "server address cannot be empty"


class UnusableServerAddressError(EntryValidationError):
    """Ours, not upstream's: the address is not a dialable ``host:port``."""

    CAUSE = "server address is not a dialable host:port"


class DeleteNotProvenError(_FixedDiscError):
    """Ours, not upstream's: a delete that does not prove the key's holder sent it now (a
    copy of the stored entry can be fetched and replayed by anyone)."""

    CODE = 401
    MESSAGE = "delete must carry a new iteration of the entry, signed now"


_BY_MESSAGE: dict[str, type[_FixedDiscError]] = {}
for _cls in (
    KeyNotFoundError,
    NoAvailableServersError,
    UnexpectedError,
    UnauthorizedError,
    BadInputError,
    UnauthorizedNetworkMonitorError,
    NonZeroSequenceError,
    NilEphemeralsError,
    NilKeysError,
    NonNilEphemeralsError,
    NoSignatureError,
    NoVersionError,
    NoClientOrServerError,
    WrongSequenceError,
    WrongTimeError,
    OutdatedTimeError,
    ServerAddressError,
    EmptyServerAddressError,
    UnusableServerAddressError,
    DeleteNotProvenError,
):
    _BY_MESSAGE[_cls().message] = _cls
del _cls


def error_from_message(message: str, code: int = 500) -> DiscError:
    """Map an error body's ``message`` back to its typed error, as the Go client does.

    An unknown message gives a plain :class:`DiscError` with the status and message received.
    """
    cls = _BY_MESSAGE.get(message)
    if cls is None:
        return DiscError(code, message)
    return cls()


def http_message_json(code: int, message: str) -> bytes:
    """The upstream ``HTTPMessage`` body: ``{"message":"…","code":N}``."""
    return f'{{"message":{quote_json_string(message)},"code":{int(code)}}}'.encode()


class DiscUnreachableError(DiscError, ConnectionError):
    """The discovery could not be asked at all (refused, reset, timed out, bad reply framing);
    ``detail`` says what failed. No upstream message: the code is 503."""

    def __init__(self, detail: str) -> None:
        DiscError.__init__(self, 503, "discovery unreachable", detail)


def error_from_response(status: int, body: bytes) -> DiscError:
    """The typed error of a non-200 answer: by its ``{"message": …}`` body when it has one,
    else a plain :class:`DiscError` with the status and the body's text."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("message"), str):
        return error_from_message(obj["message"], status)
    text = body.decode("utf-8", "replace").strip()
    return DiscError(status, text or f"HTTP {status}")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote_json_string(text: str) -> str:
    """``text`` as a JSON string literal, escaped exactly as the reference encoder does."""
    out: list[str] = ['"']
    for ch in text:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
