"""Transport settlement: the exchange, after the connection handshake (or directly on a dmsg
stream), that turns a new transport into an entry signed by both edges. The initiator writes its
half-signed :class:`~skywire.transport.entry.SignedEntry` as one JSON line; the responder checks it
against the entry it expects, countersigns and answers one :class:`SettlementStatus` byte.
:class:`SettlementInitiator` and :class:`SettlementResponder` are the two sides as sans-I/O state
machines (bytes in, bytes out); :class:`SettlementError` and :class:`SettlementRejectedError` are
its failures.
"""

from __future__ import annotations

import enum

from skywire.cipher import CipherError, PubKey, SecKey
from skywire.transport.entry import (
    EntryDecodeError,
    EntryError,
    Label,
    SignedEntry,
    make_entry,
    parse_signed_entry,
)

__all__ = [
    "MAX_SETTLEMENT_LINE",
    "SettlementError",
    "SettlementInitiator",
    "SettlementRejectedError",
    "SettlementResponder",
    "SettlementStatus",
    "decode_settlement_status",
]


MAX_SETTLEMENT_LINE = 4096
"""The longest signed-entry line accepted during settlement (a real one is about 450 bytes)."""


class SettlementStatus(enum.IntEnum):
    """The one byte the responder answers settlement with."""

    FAILURE = 0
    OK = 1
    SIGNATURE_ERROR = 2
    INVALID_ENTRY = 3

    def encode(self) -> bytes:
        """The status as its one wire byte."""
        return bytes((int(self),))


_STATUS_MESSAGES = {
    SettlementStatus.FAILURE: "transport settlement rejected by remote",
    SettlementStatus.SIGNATURE_ERROR: "signature error",
    SettlementStatus.INVALID_ENTRY: "invalid entry",
}


class SettlementError(EntryError):
    """Settlement failed locally (bad line from the peer, wrong entry, bad signature, …).

    ``status`` is the byte the responder answers with for this failure.
    """

    def __init__(
        self, message: str, status: SettlementStatus = SettlementStatus.INVALID_ENTRY
    ) -> None:
        super().__init__(message)
        self.status = status


class SettlementRejectedError(SettlementError):
    """The remote answered a non-OK status byte (or an unknown one)."""

    def __init__(self, status: SettlementStatus | None, raw: int | None = None) -> None:
        if status is None:
            super().__init__(f"invalid remote response ({raw})", SettlementStatus.FAILURE)
        else:
            super().__init__(_STATUS_MESSAGES[status], status)
        self.raw = raw if raw is not None else (int(status) if status is not None else None)


def decode_settlement_status(data: bytes) -> SettlementStatus:
    """Decode the responder's status byte; raises :class:`SettlementRejectedError` for anything
    but OK."""
    if len(data) != 1:
        raise SettlementError(f"expected one status byte, got {len(data)}")
    value = data[0]
    try:
        status = SettlementStatus(value)
    except ValueError:
        raise SettlementRejectedError(None, value) from None
    if status is not SettlementStatus.OK:
        raise SettlementRejectedError(status)
    return status


class SettlementInitiator:
    """The dialing side: writes its half-signed entry, then reads one status byte.

    >>> s = SettlementInitiator(local_pk, sk, remote_pk, "stcpr")   # doctest: +SKIP
    >>> send(s.data_to_send()); s.receive_data(await recv())          # doctest: +SKIP
    """

    def __init__(
        self,
        local_pk: PubKey,
        sk: SecKey,
        remote_pk: PubKey,
        tp_type: str,
        label: str = Label.USER.value,
    ) -> None:
        self.entry = make_entry(local_pk, remote_pk, tp_type, label)
        self.signed_entry = SignedEntry.new(self.entry, local_pk, sk)
        self._out = self.signed_entry.to_json() + b"\n"
        self.complete = False
        self.leftover = b""

    def data_to_send(self) -> bytes:
        out, self._out = self._out, b""
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the responder; completes on the first byte (raises unless OK)."""
        if not data:
            return
        if self.complete:
            self.leftover += data
            return
        self.complete = True
        self.leftover = bytes(data[1:])
        decode_settlement_status(bytes(data[:1]))


class SettlementResponder:
    """The accepting side: reads the initiator's line, checks and countersigns it.

    After :meth:`receive_data` returns ``True``, :attr:`signed_entry` holds the doubly signed
    entry (register it at transport discovery), and :meth:`accept` gives the OK byte to send. On
    failure :class:`SettlementError` is raised and :meth:`data_to_send` holds the status byte
    to send before closing.
    """

    def __init__(self, local_pk: PubKey, sk: SecKey, remote_pk: PubKey, tp_type: str) -> None:
        self.local_pk = local_pk
        self._sk = sk
        self.remote_pk = remote_pk
        self.expected = make_entry(local_pk, remote_pk, tp_type)
        self.signed_entry: SignedEntry | None = None
        self.leftover = b""
        self._buf = bytearray()
        self._out = b""
        self._failed = False

    def data_to_send(self) -> bytes:
        out, self._out = self._out, b""
        return out

    def _fail(self, message: str, status: SettlementStatus) -> SettlementError:
        self._failed = True
        self._out += status.encode()
        return SettlementError(message, status)

    def receive_data(self, data: bytes) -> bool:
        """Feed bytes; ``True`` once the entry is read, verified and countersigned."""
        if self.signed_entry is not None:
            self.leftover += data
            return True
        if self._failed:
            raise SettlementError("settlement already failed")
        self._buf += data
        nl = self._buf.find(b"\n")
        if nl < 0:
            if len(self._buf) > MAX_SETTLEMENT_LINE:
                raise self._fail(
                    "failed to read entry: line too long", SettlementStatus.INVALID_ENTRY
                )
            return False
        line = bytes(self._buf[:nl])
        self.leftover = bytes(self._buf[nl + 1 :])
        self._buf.clear()
        try:
            received = parse_signed_entry(line)
        except EntryDecodeError as exc:
            raise self._fail(
                f"failed to read entry: {exc}", SettlementStatus.INVALID_ENTRY
            ) from exc
        try:
            self.expected.same_transport(received.entry)
            received.verify_pk(self.remote_pk)
        except (EntryError, CipherError) as exc:
            raise self._fail(str(exc), SettlementStatus.INVALID_ENTRY) from exc
        try:
            self.signed_entry = received.sign(self.local_pk, self._sk)
        except (EntryError, CipherError) as exc:
            raise self._fail(
                f"failed to sign received entry: {exc}", SettlementStatus.SIGNATURE_ERROR
            ) from exc
        return True

    def accept(self) -> bytes:
        """The OK byte (call after registering :attr:`signed_entry`)."""
        if self.signed_entry is None:
            raise SettlementError("no verified entry to accept")
        return SettlementStatus.OK.encode()

    def reject(self, status: SettlementStatus = SettlementStatus.FAILURE) -> bytes:
        """A refusal byte, for a caller that decides against the transport after all."""
        return status.encode()
