"""Routing rules and the route descriptor (``pkg/routing/rule.go``, ``route_descriptor.go``).

A rule is stored per visor under that visor's own route ID. Every rule starts with a 13-byte
header (big-endian)::

    [0:8]   keep-alive   int64 nanoseconds (Go time.Duration); negatives are stored as 0
    [8]     rule type    0 Consume ("RuleReverse"), 1 Forward, 2 IntermediaryForward
    [9:13]  key route ID u32

followed by the body of its type:

====================  ====  =================================================================
Consume               83    descriptor [13:83]
Forward               120   descriptor [13:83] ‖ next route ID [83:87] ‖ next transport ID
                            (UUID) [87:103] ‖ 17 zero bytes [103:120]
IntermediaryForward   50    next route ID [13:17] ‖ next transport ID [17:33] ‖ 17 zero bytes
====================  ====  =================================================================

The 17 zero bytes exist because upstream sizes the tail by the PK length (33) rather than the
UUID length (16); they are kept so that rules are byte-identical with Go's. As upstream,
decoding accepts longer rules and ignores what follows the fields it reads.

The route descriptor is ``srcPK (33) ‖ dstPK (33) ‖ srcPort (u16) ‖ dstPort (u16)`` — 70 bytes,
sent in gob as a ``[70]byte`` array (:data:`skywire.wire.gob_types.ROUTE_DESCRIPTOR`). Its keys
are copied, not curve-checked, as upstream does.
"""

from __future__ import annotations

import enum
import json
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from skywire.cipher import PUBKEY_LEN, CipherError, PubKey
from skywire.wire.errors import WireError

__all__ = [
    "CONSUME_RULE_SIZE",
    "FORWARD_RULE_SIZE",
    "INTERMEDIARY_RULE_SIZE",
    "MAX_KEEP_ALIVE",
    "ROUTE_DESCRIPTOR_SIZE",
    "RULE_HEADER_SIZE",
    "ConsumeRule",
    "ForwardRule",
    "IntermediaryForwardRule",
    "RouteDescriptor",
    "Rule",
    "RuleError",
    "RuleTooShortError",
    "RuleType",
    "UnknownRuleTypeError",
    "parse_rule",
    "rule_from_summary",
    "summary_json",
]

RULE_HEADER_SIZE = 8 + 1 + 4
ROUTE_DESCRIPTOR_SIZE = 2 * PUBKEY_LEN + 2 + 2
_PAD = PUBKEY_LEN - 16  # the upstream allocation uses the PK size where a UUID goes
CONSUME_RULE_SIZE = RULE_HEADER_SIZE + ROUTE_DESCRIPTOR_SIZE
FORWARD_RULE_SIZE = RULE_HEADER_SIZE + ROUTE_DESCRIPTOR_SIZE + 4 + PUBKEY_LEN
INTERMEDIARY_RULE_SIZE = RULE_HEADER_SIZE + 4 + PUBKEY_LEN
MAX_KEEP_ALIVE = (1 << 63) - 1
_MAX_ROUTE_ID = 0xFFFFFFFF
_MAX_PORT = 0xFFFF

_HEADER = struct.Struct(">qBI")
_PORTS = struct.Struct(">HH")
_RID = struct.Struct(">I")


class RuleError(WireError):
    """A rule, a route descriptor or a rule summary is malformed."""


class RuleTooShortError(RuleError):
    """Fewer bytes than the rule's type needs."""


class UnknownRuleTypeError(RuleError):
    """The type byte names no rule type."""

    def __init__(self, value: int) -> None:
        super().__init__(f"invalid rule: Unknown({value})")
        self.value = value


class RuleType(enum.IntEnum):
    CONSUME = 0
    """``RuleReverse``: packets under this key are consumed by a local route group."""
    FORWARD = 1
    """The first hop from the route's source visor."""
    INTERMEDIARY_FORWARD = 2
    """A hop neither from the route's source nor to its destination."""

    @property
    def go_name(self) -> str:
        return ("Consume", "Forward", "IntermediaryForward")[self]


def _check_route_id(value: int, what: str) -> None:
    if not 0 <= value <= _MAX_ROUTE_ID:
        raise RuleError(f"{what} {value} out of range 0..{_MAX_ROUTE_ID}")


def _check_port(value: int, what: str) -> None:
    if not 0 <= value <= _MAX_PORT:
        raise RuleError(f"{what} {value} out of range 0..{_MAX_PORT}")


@dataclass(frozen=True, slots=True)
class RouteDescriptor:
    """Which two app addresses a route connects, from the source edge's point of view."""

    src_pk: PubKey
    dst_pk: PubKey
    src_port: int
    dst_port: int

    def __post_init__(self) -> None:
        _check_port(self.src_port, "source port")
        _check_port(self.dst_port, "destination port")

    def to_bytes(self) -> bytes:
        return self.src_pk.raw + self.dst_pk.raw + _PORTS.pack(self.src_port, self.dst_port)

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> RouteDescriptor:
        """Parse exactly 70 bytes."""
        if len(data) != ROUTE_DESCRIPTOR_SIZE:
            raise RuleError(
                f"route descriptor needs {ROUTE_DESCRIPTOR_SIZE} bytes, got {len(data)}"
            )
        return cls._read(bytes(data), 0)

    @classmethod
    def _read(cls, data: bytes, off: int) -> RouteDescriptor:
        src = PubKey(data[off : off + PUBKEY_LEN])
        dst = PubKey(data[off + PUBKEY_LEN : off + 2 * PUBKEY_LEN])
        sport, dport = _PORTS.unpack_from(data, off + 2 * PUBKEY_LEN)
        return cls(src, dst, sport, dport)

    def invert(self) -> RouteDescriptor:
        """The descriptor as seen from the other edge (PKs and ports swapped)."""
        return RouteDescriptor(self.dst_pk, self.src_pk, self.dst_port, self.src_port)

    def __str__(self) -> str:
        dst = f"{self.dst_pk.hex()}:{self.dst_port}"
        return f"rAddr:{dst}, lAddr:{self.src_pk.hex()}:{self.src_port}"

    def summary(self) -> dict[str, Any]:
        """``RouteDescriptorFields`` JSON object (keys in upstream order)."""
        return {
            "dst_pk": self.dst_pk.hex(),
            "src_pk": self.src_pk.hex(),
            "dst_port": self.dst_port,
            "src_port": self.src_port,
        }

    @classmethod
    def from_summary(cls, obj: Any) -> RouteDescriptor:
        if not isinstance(obj, Mapping):
            raise RuleError("route_descriptor: expected an object")
        try:
            return cls(
                _summary_pk(obj, "src_pk"),
                _summary_pk(obj, "dst_pk"),
                _summary_int(obj, "src_port"),
                _summary_int(obj, "dst_port"),
            )
        except CipherError as exc:
            raise RuleError(f"route_descriptor: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _RuleBase:
    keep_alive: int
    """Nanoseconds of inactivity after which the rule expires (negatives become 0)."""
    key_route_id: int

    def _check_header(self) -> None:
        if self.keep_alive < 0:
            object.__setattr__(self, "keep_alive", 0)
        if self.keep_alive > MAX_KEEP_ALIVE:
            raise RuleError(f"keep-alive {self.keep_alive} ns does not fit int64")
        _check_route_id(self.key_route_id, "key route ID")

    def _header(self, rule_type: RuleType) -> bytes:
        return _HEADER.pack(self.keep_alive, rule_type, self.key_route_id)

    def _summary_head(self, rule_type: RuleType) -> dict[str, Any]:
        return {
            "keep_alive": self.keep_alive,
            "rule_type": int(rule_type),
            "key_route_id": self.key_route_id,
        }

    @property
    def keep_alive_seconds(self) -> float:
        return self.keep_alive / 1e9


@dataclass(frozen=True, slots=True)
class ConsumeRule(_RuleBase):
    """The last hop of a route: packets under ``key_route_id`` go to the local route group."""

    desc: RouteDescriptor
    rule_type = RuleType.CONSUME

    def __post_init__(self) -> None:
        self._check_header()

    def to_bytes(self) -> bytes:
        return self._header(RuleType.CONSUME) + self.desc.to_bytes()

    def summary(self) -> dict[str, Any]:
        """``RuleSummary`` as a JSON-ready dict (upstream key order)."""
        out = self._summary_head(RuleType.CONSUME)
        out["app_fields"] = {"route_descriptor": self.desc.summary()}
        return out

    def __str__(self) -> str:
        return f"REV(keyRtID:{self.key_route_id}, {self.desc})"


@dataclass(frozen=True, slots=True)
class ForwardRule(_RuleBase):
    """The first hop from a route's source: send under ``next_route_id`` on ``next_tp_id``."""

    next_route_id: int
    next_tp_id: uuid.UUID
    desc: RouteDescriptor
    rule_type = RuleType.FORWARD

    def __post_init__(self) -> None:
        self._check_header()
        _check_route_id(self.next_route_id, "next route ID")

    def to_bytes(self) -> bytes:
        return (
            self._header(RuleType.FORWARD)
            + self.desc.to_bytes()
            + _RID.pack(self.next_route_id)
            + self.next_tp_id.bytes
            + bytes(_PAD)
        )

    def summary(self) -> dict[str, Any]:
        out = self._summary_head(RuleType.FORWARD)
        out["forward_fields"] = {
            "route_descriptor": self.desc.summary(),
            "next_rid": self.next_route_id,
            "next_tid": str(self.next_tp_id),
        }
        return out

    def __str__(self) -> str:
        return (
            f"FWD(keyRtID:{self.key_route_id}, nxtRtID:{self.next_route_id}, "
            f"nxtTpID:{self.next_tp_id}, {self.desc})"
        )


@dataclass(frozen=True, slots=True)
class IntermediaryForwardRule(_RuleBase):
    """A middle hop: re-send under ``next_route_id`` on transport ``next_tp_id``."""

    next_route_id: int
    next_tp_id: uuid.UUID
    rule_type = RuleType.INTERMEDIARY_FORWARD

    def __post_init__(self) -> None:
        self._check_header()
        _check_route_id(self.next_route_id, "next route ID")

    def to_bytes(self) -> bytes:
        return (
            self._header(RuleType.INTERMEDIARY_FORWARD)
            + _RID.pack(self.next_route_id)
            + self.next_tp_id.bytes
            + bytes(_PAD)
        )

    def summary(self) -> dict[str, Any]:
        out = self._summary_head(RuleType.INTERMEDIARY_FORWARD)
        out["intermediary_forward_fields"] = {
            "next_rid": self.next_route_id,
            "next_tid": str(self.next_tp_id),
        }
        return out

    def __str__(self) -> str:
        return (
            f"INTER(keyRtID:{self.key_route_id}, nxtRtID:{self.next_route_id}, "
            f"nxtTpID:{self.next_tp_id})"
        )


Rule: TypeAlias = ConsumeRule | ForwardRule | IntermediaryForwardRule
"""Any routing rule; each has ``to_bytes()``, ``summary()``, ``str()`` and ``rule_type``."""

_MIN_SIZE = {
    RuleType.CONSUME: CONSUME_RULE_SIZE,
    RuleType.FORWARD: RULE_HEADER_SIZE + ROUTE_DESCRIPTOR_SIZE + 4 + 16,
    RuleType.INTERMEDIARY_FORWARD: RULE_HEADER_SIZE + 4 + 16,
}


def parse_rule(data: bytes) -> Rule:
    """Decode rule bytes (as stored, or as received in gob from a Go setup node)."""
    data = bytes(data)
    if len(data) < RULE_HEADER_SIZE:
        raise RuleTooShortError(f"rule needs at least {RULE_HEADER_SIZE} bytes, got {len(data)}")
    keep_alive, type_value, key = _HEADER.unpack_from(data)
    if type_value > RuleType.INTERMEDIARY_FORWARD:
        raise UnknownRuleTypeError(type_value)
    rule_type = RuleType(type_value)
    need = _MIN_SIZE[rule_type]
    if len(data) < need:
        raise RuleTooShortError(
            f"{rule_type.go_name} rule needs at least {need} bytes, got {len(data)}"
        )
    off = RULE_HEADER_SIZE
    if rule_type is RuleType.INTERMEDIARY_FORWARD:
        (nxt,) = _RID.unpack_from(data, off)
        tp = uuid.UUID(bytes=data[off + 4 : off + 20])
        return IntermediaryForwardRule(keep_alive, key, nxt, tp)
    desc = RouteDescriptor._read(data, off)
    if rule_type is RuleType.CONSUME:
        return ConsumeRule(keep_alive, key, desc)
    off += ROUTE_DESCRIPTOR_SIZE
    (nxt,) = _RID.unpack_from(data, off)
    tp = uuid.UUID(bytes=data[off + 4 : off + 20])
    return ForwardRule(keep_alive, key, nxt, tp, desc)


def summary_json(rule: Rule) -> str:
    """The ``RuleSummary`` as compact JSON text, byte-identical with Go's ``json.Marshal``."""
    return json.dumps(rule.summary(), separators=(",", ":"))


def _summary_int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RuleError(f"{key}: expected an integer")
    return value


def _summary_pk(obj: Mapping[str, Any], key: str) -> PubKey:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise RuleError(f"{key}: expected a hex string")
    return PubKey.from_hex(value)


def _summary_uuid(obj: Mapping[str, Any], key: str) -> uuid.UUID:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise RuleError(f"{key}: expected a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise RuleError(f"{key}: {exc}") from exc


def rule_from_summary(obj: Any) -> Rule:
    """Build a rule from its ``RuleSummary`` JSON object (upstream ``ToRule``).

    Exactly the field group of the rule type must be present, else ``invalid routing rule
    summary``.
    """
    if not isinstance(obj, Mapping):
        raise RuleError("invalid routing rule summary")
    groups = {
        RuleType.CONSUME: "app_fields",
        RuleType.FORWARD: "forward_fields",
        RuleType.INTERMEDIARY_FORWARD: "intermediary_forward_fields",
    }
    type_value = _summary_int(obj, "rule_type")
    if type_value not in RuleType._value2member_map_:
        raise RuleError("invalid routing rule summary")
    rule_type = RuleType(type_value)
    present = {t for t, name in groups.items() if obj.get(name) is not None}
    if present != {rule_type}:
        raise RuleError("invalid routing rule summary")
    fields = obj[groups[rule_type]]
    if not isinstance(fields, Mapping):
        raise RuleError("invalid routing rule summary")
    keep_alive = _summary_int(obj, "keep_alive")
    key = _summary_int(obj, "key_route_id")
    if rule_type is RuleType.INTERMEDIARY_FORWARD:
        return IntermediaryForwardRule(
            keep_alive, key, _summary_int(fields, "next_rid"), _summary_uuid(fields, "next_tid")
        )
    desc = RouteDescriptor.from_summary(fields.get("route_descriptor"))
    if rule_type is RuleType.CONSUME:
        return ConsumeRule(keep_alive, key, desc)
    return ForwardRule(
        keep_alive,
        key,
        _summary_int(fields, "next_rid"),
        _summary_uuid(fields, "next_tid"),
        desc,
    )
