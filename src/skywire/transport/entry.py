"""Transport entries: deterministic IDs, the signed entry registered at transport discovery, and
the settlement exchange that produces it. Sans-I/O: bytes in, values or bytes out.

* :func:`make_transport_id`: the 16-byte ID both edges compute from the unordered key pair and
  the transport type (SHA-256 name hash with version nibble 0 and the RFC 4122 variant).
* :class:`Entry`: ``{"t_id","edges","type","label"}``; :meth:`Entry.to_binary` is what each edge
  signs (``t_id ‖ edges[0] ‖ edges[1] ‖ type``; the label is not signed).
* :class:`SignedEntry`: an entry plus one signature slot per edge (a null signature marks an
  unsigned slot) and an optional ``registered`` time.
* Settlement (after the connection handshake, or directly on a dmsg stream): the initiator writes
  its half-signed entry as one JSON line; the responder checks it against the entry it expects,
  countersigns and answers one :class:`SettlementStatus` byte. :class:`SettlementInitiator` and
  :class:`SettlementResponder` are the two sides as state machines. They live in
  :mod:`skywire.transport.settlement`, which builds on this module.

JSON is produced exactly as the reference encoder produces it (key order, no spaces, HTML-safe
string escaping); parsing refuses malformed input with :class:`EntryDecodeError`.
"""

from __future__ import annotations

import decimal
import enum
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from skywire.cipher import CipherError, PubKey, SecKey, Sig, SignatureError, sha256, verify

__all__ = [
    "EdgeNotFoundError",
    "Entry",
    "EntryDecodeError",
    "EntryError",
    "InvalidEntryError",
    "Label",
    "SignedEntry",
    "TransportType",
    "go_json_string",
    "make_entry",
    "make_transport_id",
    "marshal_entries",
    "marshal_signed_entries",
    "parse_entries",
    "parse_entry",
    "parse_signed_entries",
    "parse_signed_entry",
    "sort_edges",
]


class TransportType(enum.StrEnum):
    """The transport types a minimal visor speaks; the spelling is hashed into the ID."""

    DMSG = "dmsg"
    STCP = "stcp"
    STCPR = "stcpr"
    SUDPH = "sudph"


class Label(enum.StrEnum):
    """Who created a transport."""

    USER = "user"
    AUTOMATIC = "automatic"
    SKYCOIN = "skycoin"


class EntryError(ValueError):
    """Base of every transport-entry error."""


class EntryDecodeError(EntryError):
    """JSON that is not a well-formed (signed) entry."""


class EdgeNotFoundError(EntryError):
    """A key that is not one of the entry's edges (upstream: ``edge index not found``)."""

    def __init__(self, message: str = "edge index not found") -> None:
        super().__init__(message)


class InvalidEntryError(EntryError):
    """An entry that is not the one expected (ID, edges or type differ)."""


# --------------------------------------------------------------------------------------------
# Reference-compatible JSON text
# --------------------------------------------------------------------------------------------

_HEX = "0123456789abcdef"
_SIMPLE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028"}
_HTML_ESCAPES["\u2029"] = "\\u2029"


def go_json_string(text: str) -> str:
    """``text`` as a JSON string literal, escaped as the reference encoder does (HTML-safe).

    Control characters other than ``\\n \\r \\t`` become ``\\u00xx``; ``< > &`` and U+2028/2029
    are escaped; lone surrogates (not valid UTF-8) become U+FFFD.
    """
    out = ['"']
    for ch in text:
        esc = _SIMPLE_ESCAPES.get(ch) or _HTML_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " ":
            o = ord(ch)
            out.append("\\u00" + _HEX[o >> 4] + _HEX[o & 0xF])
        elif "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_float(value: float) -> str:
    """A finite float as the reference encoder writes it: shortest round-trip digits,
    positional for ``1e-6 <= |v| < 1e21``, else exponent form without zero padding."""
    if value == 0:
        return "0"
    text = repr(value)
    if 1e-6 <= abs(value) < 1e21:
        out = format(decimal.Decimal(text), "f")
        if "." in out:
            out = out.rstrip("0").rstrip(".")
        return out
    mant, _, exp = text.partition("e")
    sign = "-" if exp.startswith("-") else "+"
    return f"{mant}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON literal {name}")


def _load_json(data: bytes | str, what: str) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EntryDecodeError(f"{what}: not valid UTF-8") from exc
    elif isinstance(data, str):
        text = data
    else:
        raise EntryDecodeError(f"{what}: cannot parse {type(data).__name__}")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise EntryDecodeError(f"{what}: invalid JSON: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Transport IDs
# --------------------------------------------------------------------------------------------


def sort_edges(a: PubKey, b: PubKey) -> tuple[PubKey, PubKey]:
    """The two keys in ascending order (as unsigned big integers, i.e. bytewise)."""
    return (a, b) if a.raw < b.raw else (b, a)


def make_transport_id(a: PubKey, b: PubKey, tp_type: str) -> uuid.UUID:
    """The deterministic transport ID of the unordered pair ``{a, b}`` and ``tp_type``.

    ``SHA-256(16 zero bytes ‖ low edge ‖ high edge ‖ ascii(type))`` truncated to 16 bytes, with
    the version nibble set to 0 and the RFC 4122 variant bits.
    """
    lo, hi = sort_edges(a, b)
    digest = bytearray(sha256(bytes(16) + lo.raw + hi.raw + tp_type.encode("utf-8"))[:16])
    digest[6] &= 0x0F
    digest[8] = (digest[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(digest))


def _parse_uuid(value: Any, what: str) -> uuid.UUID:
    if not isinstance(value, str):
        raise EntryDecodeError(f"{what}: expected a UUID string")
    text = value
    if len(text) == 36 + 9 and text[:9].lower() == "urn:uuid:":
        text = text[9:]
    elif len(text) == 38 and text[0] == "{" and text[-1] == "}":
        text = text[1:-1]
    if len(text) == 36:
        if any(text[i] != "-" for i in (8, 13, 18, 23)):
            raise EntryDecodeError(f"{what}: invalid UUID format")
        hex_text = text.replace("-", "")
    elif len(text) == 32:
        hex_text = text
    else:
        raise EntryDecodeError(f"{what}: invalid UUID length: {len(value)}")
    if len(hex_text) != 32 or any(c not in "0123456789abcdefABCDEF" for c in hex_text):
        raise EntryDecodeError(f"{what}: invalid UUID format")
    return uuid.UUID(hex=hex_text)


def _parse_pk(value: Any, what: str) -> PubKey:
    if not isinstance(value, str):
        raise EntryDecodeError(f"{what}: expected a public key hex string")
    try:
        return PubKey.from_hex(value)
    except CipherError as exc:
        raise EntryDecodeError(f"{what}: {exc}") from exc


def _parse_sig(value: Any, what: str) -> Sig:
    if not isinstance(value, str):
        raise EntryDecodeError(f"{what}: expected a signature hex string")
    if len(value) != 130 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise EntryDecodeError(f"{what}: Invalid signature length")
    return Sig(bytes.fromhex(value))


# --------------------------------------------------------------------------------------------
# Entry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """The unsigned description of a transport.

    ``edges`` are kept as given (they should be sorted, which :func:`make_entry` guarantees and
    :meth:`check` verifies). ``latency_ms`` is the latest measured latency that transport
    discovery overlays on answers (JSON key ``latency``, omitted when unknown); it is neither
    signed nor stored as part of the entry.
    """

    id: uuid.UUID
    edges: tuple[PubKey, PubKey]
    type: str
    label: str = Label.USER.value
    latency_ms: float | None = None

    def __post_init__(self) -> None:
        if len(self.edges) != 2:
            raise EntryError("an entry has exactly two edges")
        if self.latency_ms is not None and (
            not math.isfinite(self.latency_ms) or self.latency_ms < 0
        ):
            raise EntryError("latency must be a finite non-negative number")

    # -- identity ------------------------------------------------------------------------------

    def to_binary(self) -> bytes:
        """The bytes each edge signs: ``t_id ‖ edges[0] ‖ edges[1] ‖ ascii(type)``."""
        return self.id.bytes + self.edges[0].raw + self.edges[1].raw + self.type.encode("utf-8")

    def signature(self, sk: SecKey) -> Sig:
        """``sk``'s signature of :meth:`to_binary`."""
        return sk.sign(self.to_binary())

    def edge_index(self, pk: PubKey) -> int:
        """0 or 1, the slot of ``pk``; -1 when ``pk`` is not an edge."""
        for i, edge in enumerate(self.edges):
            if edge == pk:
                return i
        return -1

    def has_edge(self, pk: PubKey) -> bool:
        return self.edge_index(pk) >= 0

    def remote_edge(self, local: PubKey) -> PubKey:
        """The edge that is not ``local`` (``local`` itself for a self-transport)."""
        for edge in self.edges:
            if edge != local:
                return edge
        return local

    def is_least_significant_edge(self, pk: PubKey) -> bool:
        """Whether ``pk`` is ``edges[0]`` (the side that redials)."""
        return self.edge_index(pk) == 0

    def expected_id(self) -> uuid.UUID:
        return make_transport_id(self.edges[0], self.edges[1], self.type)

    def check(self) -> None:
        """Raise :class:`InvalidEntryError` unless edges are sorted, valid keys, the type is set
        and the ID is the deterministic one."""
        if not self.type:
            raise InvalidEntryError("transport type is empty")
        for i, edge in enumerate(self.edges):
            try:
                edge.validate()
            except CipherError as exc:
                raise InvalidEntryError(f"edge {i}: {exc}") from exc
        if self.edges[0].raw > self.edges[1].raw:
            raise InvalidEntryError("edges are not sorted")
        if self.id != self.expected_id():
            raise InvalidEntryError("transport ID does not match edges and type")

    def same_transport(self, other: Entry) -> None:
        """Raise :class:`InvalidEntryError` unless ID, edges and type equal ``other``'s."""
        if self.id != other.id:
            raise InvalidEntryError("received entry's 'tp_id' is not of expected")
        if self.edges != other.edges:
            raise InvalidEntryError("received entry's 'edges' is not of expected")
        if self.type != other.type:
            raise InvalidEntryError("received entry's 'type' is not of expected")

    # -- JSON ----------------------------------------------------------------------------------

    def to_json_text(self, *, with_latency: bool = True) -> str:
        parts = [
            f'{{"t_id":"{self.id}"',
            f',"edges":["{self.edges[0].hex()}","{self.edges[1].hex()}"]',
            f',"type":{go_json_string(self.type)}',
            f',"label":{go_json_string(self.label)}',
        ]
        if with_latency and self.latency_ms is not None:
            parts.append(f',"latency":{_go_float(self.latency_ms)}')
        parts.append("}")
        return "".join(parts)

    def to_json(self, *, with_latency: bool = True) -> bytes:
        """Compact JSON in the reference key order (no trailing newline)."""
        return self.to_json_text(with_latency=with_latency).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Entry:
        return parse_entry(data)

    def without_latency(self) -> Entry:
        return self if self.latency_ms is None else replace(self, latency_ms=None)


def make_entry(a: PubKey, b: PubKey, tp_type: str, label: str = Label.USER.value) -> Entry:
    """The entry of the transport between ``a`` and ``b``: sorted edges, deterministic ID."""
    return Entry(make_transport_id(a, b, tp_type), sort_edges(a, b), str(tp_type), str(label))


def entry_from_obj(obj: Any, what: str = "entry") -> Entry:
    """Build an :class:`Entry` from decoded JSON; raises :class:`EntryDecodeError`."""
    if not isinstance(obj, dict):
        raise EntryDecodeError(f"{what}: expected an object")
    for key in ("t_id", "edges", "type"):
        if key not in obj:
            raise EntryDecodeError(f"{what}: missing {key!r}")
    tp_id = _parse_uuid(obj["t_id"], f"{what}.t_id")
    edges_raw = obj["edges"]
    if not isinstance(edges_raw, list) or len(edges_raw) != 2:
        raise EntryDecodeError(f"{what}.edges: expected an array of two public keys")
    edges = (
        _parse_pk(edges_raw[0], f"{what}.edges[0]"),
        _parse_pk(edges_raw[1], f"{what}.edges[1]"),
    )
    tp_type = obj["type"]
    if not isinstance(tp_type, str):
        raise EntryDecodeError(f"{what}.type: expected a string")
    label = obj.get("label", "")
    if not isinstance(label, str):
        raise EntryDecodeError(f"{what}.label: expected a string")
    latency = obj.get("latency")
    if latency is not None:
        if isinstance(latency, bool) or not isinstance(latency, int | float):
            raise EntryDecodeError(f"{what}.latency: expected a number")
        if not math.isfinite(latency) or latency < 0:
            raise EntryDecodeError(f"{what}.latency: expected a finite non-negative number")
        latency = float(latency)
    return Entry(tp_id, edges, tp_type, label, latency)


def parse_entry(data: bytes | str) -> Entry:
    """Parse one entry's JSON."""
    return entry_from_obj(_load_json(data, "entry"))


def parse_entries(data: bytes | str) -> list[Entry]:
    """Parse a JSON array of entries (``null`` is the empty list)."""
    obj = _load_json(data, "entries")
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise EntryDecodeError("entries: expected an array")
    return [entry_from_obj(item, f"entries[{i}]") for i, item in enumerate(obj)]


def marshal_entries(entries: Sequence[Entry], *, with_latency: bool = True) -> bytes:
    """A compact JSON array of entries."""
    return (
        "[" + ",".join(e.to_json_text(with_latency=with_latency) for e in entries) + "]"
    ).encode()


# --------------------------------------------------------------------------------------------
# SignedEntry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedEntry:
    """An entry and the signatures of its edges, slot ``i`` for ``entry.edges[i]``.

    ``registered`` (Unix time, JSON omitted when 0) is informational.
    """

    entry: Entry
    signatures: tuple[Sig, Sig] = field(default=(Sig.NULL, Sig.NULL))
    registered: int = 0

    def __post_init__(self) -> None:
        if len(self.signatures) != 2:
            raise EntryError("a signed entry has exactly two signature slots")

    @classmethod
    def new(cls, entry: Entry, pk: PubKey, sk: SecKey) -> SignedEntry:
        """``entry`` with ``pk``'s slot signed by ``sk``."""
        return cls(entry).sign(pk, sk)

    def sign(self, pk: PubKey, sk: SecKey) -> SignedEntry:
        """A copy with ``pk``'s slot holding ``sk``'s signature; :class:`EdgeNotFoundError` if
        ``pk`` is not an edge."""
        idx = self.entry.edge_index(pk)
        if idx < 0:
            raise EdgeNotFoundError()
        sigs = list(self.signatures)
        sigs[idx] = self.entry.signature(sk)
        return replace(self, signatures=(sigs[0], sigs[1]))

    def signature(self, pk: PubKey) -> Sig:
        """The signature in ``pk``'s slot."""
        idx = self.entry.edge_index(pk)
        if idx < 0:
            raise EdgeNotFoundError()
        return self.signatures[idx]

    def verify_edge(self, index: int) -> None:
        """Raise :class:`~skywire.cipher.SignatureError` unless slot ``index`` holds a valid
        signature by ``entry.edges[index]``."""
        if index not in (0, 1):
            raise EdgeNotFoundError(f"edge index {index} out of range")
        sig = self.signatures[index]
        if sig.is_null():
            raise SignatureError(f"edge {index} has not signed")
        verify(self.entry.edges[index], sig, self.entry.to_binary())

    def verify_pk(self, pk: PubKey) -> None:
        """Raise unless ``pk`` is an edge whose slot holds its valid signature."""
        idx = self.entry.edge_index(pk)
        if idx < 0:
            raise EdgeNotFoundError()
        self.verify_edge(idx)

    def verification_errors(self) -> tuple[CipherError | None, CipherError | None]:
        """Per slot: ``None`` when that edge's signature verifies, else the error."""
        out: list[CipherError | None] = []
        for i in (0, 1):
            try:
                self.verify_edge(i)
            except CipherError as exc:
                out.append(exc)
            else:
                out.append(None)
        return out[0], out[1]

    def verify_all(self) -> None:
        """Raise unless every distinct edge has validly signed (one slot for a self-transport,
        whose second slot stays empty as in the reference)."""
        self.verify_edge(0)
        if self.entry.edges[1] != self.entry.edges[0]:
            self.verify_edge(1)

    # -- JSON ----------------------------------------------------------------------------------

    def to_json_text(self, *, with_latency: bool = False) -> str:
        reg = f',"registered":{self.registered}' if self.registered else ""
        return (
            f'{{"entry":{self.entry.to_json_text(with_latency=with_latency)}'
            f',"signatures":["{self.signatures[0].hex()}","{self.signatures[1].hex()}"]'
            f"{reg}}}"
        )

    def to_json(self, *, with_latency: bool = False) -> bytes:
        """Compact JSON in the reference key order (no trailing newline)."""
        return self.to_json_text(with_latency=with_latency).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> SignedEntry:
        return parse_signed_entry(data)


def signed_entry_from_obj(obj: Any, what: str = "signed entry") -> SignedEntry:
    if not isinstance(obj, dict):
        raise EntryDecodeError(f"{what}: expected an object")
    inner = obj.get("entry")
    if inner is None:
        raise EntryDecodeError(f"{what}: entry part of signed entry is empty")
    entry = entry_from_obj(inner, f"{what}.entry")
    sigs_raw = obj.get("signatures")
    if sigs_raw is None:
        sigs = (Sig.NULL, Sig.NULL)
    else:
        if not isinstance(sigs_raw, list) or len(sigs_raw) != 2:
            raise EntryDecodeError(f"{what}.signatures: expected an array of two signatures")
        sigs = (
            _parse_sig(sigs_raw[0], f"{what}.signatures[0]"),
            _parse_sig(sigs_raw[1], f"{what}.signatures[1]"),
        )
    registered = obj.get("registered", 0)
    if registered is None:
        registered = 0
    if isinstance(registered, bool) or not isinstance(registered, int):
        raise EntryDecodeError(f"{what}.registered: expected an integer")
    if not -(2**63) <= registered < 2**63:
        raise EntryDecodeError(f"{what}.registered: out of int64 range")
    return SignedEntry(entry, sigs, registered)


def parse_signed_entry(data: bytes | str) -> SignedEntry:
    """Parse one signed entry's JSON."""
    return signed_entry_from_obj(_load_json(data, "signed entry"))


def parse_signed_entries(data: bytes | str) -> list[SignedEntry]:
    """Parse a JSON array of signed entries (the TPD registration body; ``null`` is empty)."""
    obj = _load_json(data, "signed entries")
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise EntryDecodeError("signed entries: expected an array")
    return [signed_entry_from_obj(item, f"signed entries[{i}]") for i, item in enumerate(obj)]


def marshal_signed_entries(entries: Sequence[SignedEntry]) -> bytes:
    """A compact JSON array of signed entries."""
    return ("[" + ",".join(e.to_json_text() for e in entries) + "]").encode()
