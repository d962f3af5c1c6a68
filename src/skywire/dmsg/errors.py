"""dmsg error codes: every failure of the dmsg layer is a :class:`DmsgError` carrying its code.

The text form is ``dmsg error <code> - <message>[: <detail>]``. Only 306 and 401 are temporary
(the listener may accept later); callers additionally treat 100, 103 and 202 as "retry later".
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    DISC_ENTRY_NOT_FOUND = 100
    DISC_ENTRY_IS_NOT_SERVER = 101
    DISC_ENTRY_IS_NOT_CLIENT = 102
    DISC_ENTRY_HAS_NO_DELEGATED = 103
    ENTITY_CLOSED = 200
    SESSION_CLOSED = 201
    CANNOT_CONNECT_TO_DELEGATED = 202
    SESSION_HANDSHAKE_EXTRA_BYTES = 203
    REQ_INVALID_SIG = 300
    REQ_INVALID_TIMESTAMP = 301
    REQ_INVALID_SRC_PK = 302
    REQ_INVALID_DST_PK = 303
    REQ_INVALID_SRC_PORT = 304
    REQ_INVALID_DST_PORT = 305
    REQ_NO_LISTENER = 306
    REQ_NO_NEXT_SESSION = 307
    DIAL_RESP_INVALID_SIG = 350
    DIAL_RESP_INVALID_HASH = 351
    DIAL_RESP_NOT_ACCEPTED = 352
    SIGNED_OBJECT_INVALID = 370
    PORT_OCCUPIED = 400
    ACCEPT_CHAN_MAXED = 401


MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.DISC_ENTRY_NOT_FOUND: "entry is not found in discovery",
    ErrorCode.DISC_ENTRY_IS_NOT_SERVER: "entry is not of server in discovery",
    ErrorCode.DISC_ENTRY_IS_NOT_CLIENT: "entry is not of client in discovery",
    ErrorCode.DISC_ENTRY_HAS_NO_DELEGATED: "client entry in discovery has no delegated servers",
    ErrorCode.ENTITY_CLOSED: "local entity closed",
    ErrorCode.SESSION_CLOSED: "local session closed",
    ErrorCode.CANNOT_CONNECT_TO_DELEGATED: "cannot connect to delegated server",
    ErrorCode.SESSION_HANDSHAKE_EXTRA_BYTES: "extra bytes received during session handshake",
    ErrorCode.REQ_INVALID_SIG: "request has invalid signature",
    ErrorCode.REQ_INVALID_TIMESTAMP: "request timestamp should be higher than last",
    ErrorCode.REQ_INVALID_SRC_PK: "request has invalid source public key",
    ErrorCode.REQ_INVALID_DST_PK: "request has invalid destination public key",
    ErrorCode.REQ_INVALID_SRC_PORT: "request has invalid source port",
    ErrorCode.REQ_INVALID_DST_PORT: "request has invalid destination port",
    ErrorCode.REQ_NO_LISTENER: "request has no associated listener",
    ErrorCode.REQ_NO_NEXT_SESSION: "request cannot be forwarded because the next session is "
    "non-existent",
    ErrorCode.DIAL_RESP_INVALID_SIG: "response has invalid signature",
    ErrorCode.DIAL_RESP_INVALID_HASH: "response has invalid hash of associated request",
    ErrorCode.DIAL_RESP_NOT_ACCEPTED: "response rejected associated request without reason",
    ErrorCode.SIGNED_OBJECT_INVALID: "signed object is invalid",
    ErrorCode.PORT_OCCUPIED: "port already occupied",
    ErrorCode.ACCEPT_CHAN_MAXED: "listener accept chan maxed",
}

_TEMPORARY = frozenset({ErrorCode.REQ_NO_LISTENER, ErrorCode.ACCEPT_CHAN_MAXED})
_RETRY_LATER = frozenset(
    {
        ErrorCode.DISC_ENTRY_NOT_FOUND,
        ErrorCode.DISC_ENTRY_HAS_NO_DELEGATED,
        ErrorCode.CANNOT_CONNECT_TO_DELEGATED,
    }
)


class DmsgError(Exception):
    """A dmsg failure with its upstream numeric code."""

    def __init__(self, code: int | ErrorCode, detail: str = "") -> None:
        try:
            self.code: ErrorCode | int = ErrorCode(code)
            message = MESSAGES[ErrorCode(code)]
        except ValueError:
            self.code = int(code)
            message = "unknown error"
        self.message = message
        self.detail = detail
        text = f"dmsg error {int(code)} - {message}"
        super().__init__(f"{text}: {detail}" if detail else text)

    @property
    def temporary(self) -> bool:
        """True where the reference flags the error temporary (306, 401)."""
        return self.code in _TEMPORARY

    @property
    def transient(self) -> bool:
        """True for errors a caller should retry later (temporary ones plus 100, 103, 202)."""
        return self.code in _TEMPORARY or self.code in _RETRY_LATER

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DmsgError) and self.code == other.code

    def __hash__(self) -> int:
        return hash(int(self.code))


class DmsgClosedError(DmsgError, ConnectionError):
    """The client, session or listener is closed (code 200 or 201)."""


class DmsgPQRequiredError(DmsgError):
    """Post-quantum is required here and the remote end answered classically (code 350, the
    reference's code for a response whose handshake does not check out)."""

    def __init__(self, remote: str) -> None:
        super().__init__(ErrorCode.DIAL_RESP_INVALID_SIG, remote)
        self.args = (
            f"dmsg error 350 - {remote} answered with a classical-only handshake and "
            "post-quantum is required here (SKYWIRE_REQUIRE_PQ or require_pq): refusing the "
            "stream",
        )
