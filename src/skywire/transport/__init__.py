"""Skywire transports: types, deterministic IDs, signed entries, the connection handshake and
settlement (sans-I/O here; the socket shells and the transport manager build on these).

* :mod:`skywire.transport.entry`: :class:`TransportType`, :func:`make_transport_id`,
  :class:`Entry`, :class:`SignedEntry`, settlement codecs and state machines.
* :mod:`skywire.transport.handshake`: the stcp / stcpr / sudph connection handshake.
"""

from __future__ import annotations

from skywire.transport.entry import (
    EdgeNotFoundError,
    Entry,
    EntryDecodeError,
    EntryError,
    InvalidEntryError,
    Label,
    SignedEntry,
    TransportType,
    make_entry,
    make_transport_id,
    sort_edges,
)
from skywire.transport.settlement import (
    SettlementError,
    SettlementInitiator,
    SettlementRejectedError,
    SettlementResponder,
    SettlementStatus,
)

__all__ = [
    "EdgeNotFoundError",
    "Entry",
    "EntryDecodeError",
    "EntryError",
    "InvalidEntryError",
    "Label",
    "SettlementError",
    "SettlementInitiator",
    "SettlementRejectedError",
    "SettlementResponder",
    "SettlementStatus",
    "SignedEntry",
    "TransportType",
    "make_entry",
    "make_transport_id",
    "sort_edges",
]
