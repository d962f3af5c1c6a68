"""dmsg discovery entries: the model, its exact JSON form, signing and validation (sans-I/O).

An :class:`Entry` advertises one dmsg node (a client, a server, or in principle both) under its
static public key. The discovery stores entries as JSON and the signature covers the JSON bytes,
so the byte form matters:

* fields in the fixed order ``version, sequence, timestamp, static, client, client_type, server,
  signature``; ``client``, ``client_type``, ``server``, ``server.serverType`` and ``signature`` are
  left out when empty; ``client.delegated_servers`` is always present, ``null`` when absent and
  ``[]`` when empty;
* compact output, no HTML escaping, only ``"``, ``\\`` and control characters escaped;
* the signature is ``Sign(SHA-256(json without signature))``.

A verifier does not hash the bytes it received: it parses them into its own model and marshals
that again. The two upstream revisions know different field sets (:class:`DiscVersion`): the
[2023] discovery has neither ``client_type`` nor ``serverType``, so an entry carrying either of
them fails [2023] verification. :func:`verify` takes the version whose behaviour to reproduce.

Parsing follows the reference decoder where it is lenient (unknown keys ignored, keys matched
case-insensitively, ``null`` meaning "leave the zero value") and refuses everything else with
:class:`EntryDecodeError`; no other exception type escapes :func:`parse_entry`.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from skywire.cipher import CipherError, PubKey, SecKey, Sig, sha256, verify_hash
from skywire.dmsg.disc_errors import (
    BadInputError,
    DiscError,
    DiscUnreachableError,
    EmptyServerAddressError,
    EntryDecodeError,
    EntryValidationError,
    KeyNotFoundError,
    NilEphemeralsError,
    NilKeysError,
    NoAvailableServersError,
    NoClientOrServerError,
    NonNilEphemeralsError,
    NonZeroSequenceError,
    NoSignatureError,
    NoVersionError,
    OutdatedTimeError,
    ServerAddressError,
    UnauthorizedError,
    UnauthorizedNetworkMonitorError,
    UnexpectedError,
    WrongSequenceError,
    WrongTimeError,
    error_from_message,
    error_from_response,
    http_message_json,
    quote_json_string,
)

__all__ = [
    "CLIENT_TYPE_VISOR",
    "CURRENT_VERSION",
    "ENTRY_LIFETIME_NS",
    "MAX_TIMESTAMP_SKEW_NS",
    "MSG_ENTRY_DELETED",
    "MSG_ENTRY_SET",
    "MSG_ENTRY_UPDATED",
    "SERVER_TYPE_COMMUNITY",
    "SERVER_TYPE_OFFICIAL",
    "BadInputError",
    "ClientInfo",
    "Clock",
    "DiscError",
    "DiscUnreachableError",
    "DiscVersion",
    "EmptyServerAddressError",
    "Entry",
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
    "ServerInfo",
    "UnauthorizedError",
    "UnauthorizedNetworkMonitorError",
    "UnexpectedError",
    "WrongSequenceError",
    "WrongTimeError",
    "entry_from_obj",
    "error_from_message",
    "error_from_response",
    "http_message_json",
    "is_loopback_address",
    "marshal_entries",
    "parse_entries",
    "parse_entry",
    "parse_pubkeys",
    "quote_json_string",
    "sign",
    "signing_bytes",
    "split_host_port",
    "validate",
    "validate_iteration",
    "verify",
]

CURRENT_VERSION = "0.0.1"
"""The only entry ``version`` the reference produces."""

ENTRY_LIFETIME_NS = 60 * 1_000_000_000
"""A server entry's timestamp may be at most this old when it is posted."""

MAX_TIMESTAMP_SKEW_NS = 5 * 1_000_000_000
"""…and at most this far in the future (clock skew between hosts)."""

CLIENT_TYPE_VISOR = "visor"
SERVER_TYPE_OFFICIAL = "official"
SERVER_TYPE_COMMUNITY = "community"

MSG_ENTRY_SET = "wrote a new entry"
MSG_ENTRY_UPDATED = "wrote new entry iteration"
MSG_ENTRY_DELETED = "deleted entry"

Clock = Callable[[], int]
"""A source of Unix time in nanoseconds (``time.time_ns`` unless a test injects one)."""

_U64_MAX = (1 << 64) - 1
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


class DiscVersion(enum.Enum):
    """Which upstream discovery revision's field set to reproduce."""

    V2023 = "2023"
    """skycoin/dmsg master 2023-07: no ``client_type``, no ``serverType``."""

    V2024 = "2024"
    """skycoin/dmsg v1.3.18 as vendored by skywire 2024-03: both optional fields."""


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """The ``client`` part of an entry.

    ``delegated_servers`` is ``None`` for a JSON ``null`` and ``()`` for ``[]``; the two sign
    differently.
    """

    delegated_servers: tuple[PubKey, ...] | None = ()


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """The ``server`` part of an entry. ``server_type`` is [2024] only and usually left empty."""

    address: str = ""
    available_sessions: int = 0
    server_type: str = ""

    def __post_init__(self) -> None:
        if not _I64_MIN <= self.available_sessions <= _I64_MAX:
            raise ValueError("available_sessions does not fit int64")


@dataclass(frozen=True, slots=True)
class Entry:
    """A discovery entry. ``timestamp`` is Unix nanoseconds; ``signature`` is hex or empty."""

    version: str = CURRENT_VERSION
    sequence: int = 0
    timestamp: int = 0
    static: PubKey = field(default=PubKey.NULL)
    client: ClientInfo | None = None
    client_type: str = ""
    server: ServerInfo | None = None
    signature: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.sequence <= _U64_MAX:
            raise ValueError("sequence does not fit uint64")
        if not _I64_MIN <= self.timestamp <= _I64_MAX:
            raise ValueError("timestamp does not fit int64")

    @classmethod
    def new_client(
        cls,
        pk: PubKey,
        sequence: int = 0,
        delegated_servers: Iterable[PubKey] = (),
        *,
        timestamp: int | None = None,
        client_type: str = "",
    ) -> Entry:
        """An unsigned client entry (leave ``client_type`` empty unless the discovery is [2024])."""
        return cls(
            sequence=sequence,
            timestamp=time.time_ns() if timestamp is None else timestamp,
            static=pk,
            client=ClientInfo(tuple(delegated_servers)),
            client_type=client_type,
        )

    @classmethod
    def new_server(
        cls,
        pk: PubKey,
        sequence: int,
        address: str,
        available_sessions: int,
        *,
        timestamp: int | None = None,
    ) -> Entry:
        """An unsigned server entry."""
        return cls(
            sequence=sequence,
            timestamp=time.time_ns() if timestamp is None else timestamp,
            static=pk,
            server=ServerInfo(address, available_sessions),
        )

    @property
    def is_client(self) -> bool:
        return self.client is not None

    @property
    def is_server(self) -> bool:
        return self.server is not None

    @property
    def is_visor(self) -> bool:
        return self.client is not None and self.client_type == CLIENT_TYPE_VISOR

    def to_json(self, version: DiscVersion = DiscVersion.V2024) -> bytes:
        """The exact JSON bytes (signature included when set)."""
        return _marshal(self, version, with_signature=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Entry:
        return parse_entry(data)


# --------------------------------------------------------------------------------------------
# Marshalling
# --------------------------------------------------------------------------------------------


def _marshal(entry: Entry, version: DiscVersion, *, with_signature: bool) -> str:
    parts = [
        f'{{"version":{quote_json_string(entry.version)}',
        f',"sequence":{entry.sequence}',
        f',"timestamp":{entry.timestamp}',
        f',"static":"{entry.static.hex()}"',
    ]
    modern = version is DiscVersion.V2024
    if entry.client is not None:
        ds = entry.client.delegated_servers
        inner = "null" if ds is None else "[" + ",".join(f'"{pk.hex()}"' for pk in ds) + "]"
        parts.append(f',"client":{{"delegated_servers":{inner}}}')
    if modern and entry.client_type:
        parts.append(f',"client_type":{quote_json_string(entry.client_type)}')
    if entry.server is not None:
        srv = entry.server
        stype = (
            f',"serverType":{quote_json_string(srv.server_type)}'
            if modern and srv.server_type
            else ""
        )
        parts.append(
            f',"server":{{"address":{quote_json_string(srv.address)},'
            f'"availableSessions":{srv.available_sessions}{stype}}}'
        )
    if with_signature and entry.signature:
        parts.append(f',"signature":{quote_json_string(entry.signature)}')
    parts.append("}")
    return "".join(parts)


def signing_bytes(entry: Entry, version: DiscVersion = DiscVersion.V2024) -> bytes:
    """The bytes that are hashed and signed: the entry without its signature.

    With ``version=V2023`` the [2024]-only fields are dropped first, as the [2023] discovery's
    decoder drops them.
    """
    return _marshal(entry, version, with_signature=False).encode()


def marshal_entries(entries: Sequence[Entry], version: DiscVersion = DiscVersion.V2024) -> bytes:
    """A JSON array of entries, as the server-list endpoints answer."""
    return b"[" + b",".join(e.to_json(version) for e in entries) + b"]"


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON literal {name}")


def _load_json(data: bytes | str) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EntryDecodeError("body is not valid UTF-8") from exc
    elif isinstance(data, str):
        text = data
    else:
        raise EntryDecodeError(f"cannot parse {type(data).__name__}")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise EntryDecodeError(f"invalid JSON: {exc}") from exc


def _fix_surrogates(text: str) -> str:
    """Lone UTF-16 surrogates (from ``\\ud800`` escapes) become U+FFFD, as the reference does."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _fields(obj: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """Pick the known keys out of a JSON object, matching case-insensitively; last one wins."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        folded = key.lower()
        if folded in known:
            out[folded] = value
    return out


def _string(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EntryDecodeError(f"{name}: expected a string")
    return _fix_surrogates(value)


def _integer(value: Any, name: str, lo: int, hi: int) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise EntryDecodeError(f"{name}: expected an integer")
    if not lo <= value <= hi:
        raise EntryDecodeError(f"{name}: {value} is out of range")
    return value


def _pubkey(value: Any, name: str) -> PubKey:
    if value is None:
        return PubKey.NULL
    if not isinstance(value, str):
        raise EntryDecodeError(f"{name}: expected a hex string")
    try:
        return PubKey.from_hex(value)
    except CipherError as exc:
        raise EntryDecodeError(f"{name}: {exc}") from exc


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EntryDecodeError(f"{name}: expected an object")
    return value


_ENTRY_KEYS = (
    "version",
    "sequence",
    "timestamp",
    "static",
    "client",
    "client_type",
    "server",
    "signature",
)
_CLIENT_KEYS = ("delegated_servers",)
_SERVER_KEYS = ("address", "availablesessions", "servertype")


def _client_from(value: Any) -> ClientInfo | None:
    if value is None:
        return None
    f = _fields(_object(value, "client"), _CLIENT_KEYS)
    ds = f.get("delegated_servers")
    if ds is None:
        return ClientInfo(None)
    if not isinstance(ds, list):
        raise EntryDecodeError("client.delegated_servers: expected an array")
    return ClientInfo(tuple(_pubkey(v, "client.delegated_servers[]") for v in ds))


def _server_from(value: Any) -> ServerInfo | None:
    if value is None:
        return None
    f = _fields(_object(value, "server"), _SERVER_KEYS)
    return ServerInfo(
        address=_string(f.get("address"), "server.address"),
        available_sessions=_integer(
            f.get("availablesessions"), "server.availableSessions", _I64_MIN, _I64_MAX
        ),
        server_type=_string(f.get("servertype"), "server.serverType"),
    )


def entry_from_obj(obj: Any) -> Entry:
    """Build an :class:`Entry` from already-decoded JSON (one element of a server list, say)."""
    if obj is None:
        return Entry(version="")
    f = _fields(_object(obj, "entry"), _ENTRY_KEYS)
    return Entry(
        version=_string(f.get("version"), "version"),
        sequence=_integer(f.get("sequence"), "sequence", 0, _U64_MAX),
        timestamp=_integer(f.get("timestamp"), "timestamp", _I64_MIN, _I64_MAX),
        static=_pubkey(f.get("static"), "static"),
        client=_client_from(f.get("client")),
        client_type=_string(f.get("client_type"), "client_type"),
        server=_server_from(f.get("server")),
        signature=_string(f.get("signature"), "signature"),
    )


def parse_entry(data: bytes | str) -> Entry:
    """Parse one entry from JSON; raises :class:`EntryDecodeError` and nothing else.

    Top-level ``null`` gives the zero entry (which then fails validation), as upstream.
    """
    return entry_from_obj(_load_json(data))


def parse_entries(data: bytes | str) -> list[Entry]:
    """Parse a JSON array of entries (``null`` is an empty list)."""
    obj = _load_json(data)
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise EntryDecodeError("expected an array of entries")
    return [entry_from_obj(item) for item in obj]


def parse_pubkeys(data: bytes | str) -> list[PubKey]:
    """Parse a JSON array of public-key hex strings (``null`` is an empty list)."""
    obj = _load_json(data)
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise EntryDecodeError("expected an array of public keys")
    return [_pubkey(item, "public key") for item in obj]


# --------------------------------------------------------------------------------------------
# Signing, verification, validation
# --------------------------------------------------------------------------------------------


def sign(entry: Entry, sk: SecKey, version: DiscVersion = DiscVersion.V2024) -> Entry:
    """Return ``entry`` signed with ``sk`` (any previous signature is replaced).

    ``version`` only matters for entries carrying [2024]-only fields; signing those for a [2023]
    discovery cannot produce an entry that discovery accepts, so leave the fields empty instead.
    """
    unsigned = replace(entry, signature="")
    sig = sk.sign(signing_bytes(unsigned, version))
    return replace(entry, signature=sig.hex())


def verify(entry: Entry, version: DiscVersion = DiscVersion.V2024) -> None:
    """Raise :class:`UnauthorizedError` unless the signature verifies as ``version`` checks it.

    The entry is re-marshalled from the model, the way the verifying Go revision does, so fields
    that revision does not know are not hashed. ``detail`` carries the verifier's reason
    (``"Recovered pubkey does not match pubkey"`` …).
    """
    try:
        sig = Sig.from_hex(entry.signature)
        verify_hash(entry.static, sig, sha256(signing_bytes(entry, version)))
    except CipherError as exc:
        raise UnauthorizedError(str(exc)) from exc


def validate(entry: Entry, now_ns: int | None = None) -> None:
    """Check an entry's shape; with ``now_ns`` also its timestamp window (server entries).

    Checks, in order: version, signature present, static key not null, client or server present,
    server address non-empty, then ``now − 1 min ≤ timestamp ≤ now + 5 s`` when ``now_ns`` is
    given. Raises the matching :class:`EntryValidationError` subclass.
    """
    if entry.version == "":
        raise NoVersionError()
    if entry.signature == "":
        raise NoSignatureError()
    if entry.static.is_null():
        raise NilKeysError()
    if entry.client is None and entry.server is None:
        raise NoClientOrServerError()
    if entry.server is not None and entry.server.address == "":
        raise EmptyServerAddressError()
    if now_ns is not None and not (
        now_ns - ENTRY_LIFETIME_NS <= entry.timestamp <= now_ns + MAX_TIMESTAMP_SKEW_NS
    ):
        raise OutdatedTimeError(f"timestamp {entry.timestamp}, now {now_ns}")


def validate_iteration(old: Entry, new: Entry) -> None:
    """``new`` may replace ``old``: a strictly greater sequence and a timestamp not going back."""
    if new.sequence <= old.sequence:
        raise WrongSequenceError(f"old {old.sequence}, new {new.sequence}")
    if new.timestamp < old.timestamp:
        raise WrongTimeError(f"old {old.timestamp}, new {new.timestamp}")


# --------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------


def split_host_port(address: str) -> tuple[str, str]:
    """Split ``host:port`` / ``[v6]:port`` with the same acceptance rules as Go's
    ``net.SplitHostPort``.

    Raises :class:`ValueError` for a missing port, too many colons or stray brackets.
    """
    last = address.rfind(":")
    if last < 0:
        raise ValueError("missing port in address")
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError("missing ']' in address")
        if end + 1 == len(address):
            raise ValueError("missing port in address")
        if end + 1 != last:
            raise ValueError(
                "too many colons in address" if address[end + 1] == ":" else "missing port"
            )
        host, after_open, after_close = address[1:end], 1, end + 1
    else:
        host, after_open, after_close = address[:last], 0, 0
        if ":" in host:
            raise ValueError("too many colons in address")
    if "[" in address[after_open:]:
        raise ValueError("unexpected '[' in address")
    if "]" in address[after_close:]:
        raise ValueError("unexpected ']' in address")
    return host, address[last + 1 :]


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in host:  # zones are not IPs to Go's ParseIP
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback_address(address: str) -> bool:
    """Whether the discovery refuses ``address`` as a server address outside test mode.

    True for an empty host (``":8081"``) or a loopback IP literal. An address that does not split
    into host and port, or whose host is a name (``localhost:8081``), is *not* refused here, as
    upstream (an empty address is refused later by :func:`validate`).
    """
    try:
        host, _port = split_host_port(address)
    except ValueError:
        return False
    if host == "":
        return True
    ip = _parse_ip(host)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
