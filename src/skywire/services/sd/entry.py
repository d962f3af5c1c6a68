"""The service entry of the service discovery, its skywire address and their codecs (pure: no I/O).

A service entry, as upstream's ``servicedisc.Service`` marshals it (keys in this order, the
optional ones left out when empty)::

    {"address":"<pk hex>:<port>","type":"vpn","geo":{"lat":…,"lon":…,"country":"DE",
     "region":"BE"},"display_node_ip":true,"version":"v1.3.29","local_ips":["10.0.0.2"]}

* ``address``: a :class:`SWAddr`, ``<66 hex digits>:<decimal port>``; binary form
  ``PK (33 bytes) ‖ port (u16 big-endian)``. The key must be a valid, non-null point and the
  port non-zero (upstream ``Service.Check``).
* ``type``: ``skysocks``, ``vpn`` or ``visor``; ``proxy`` is upstream's other name for
  ``skysocks`` and is stored and listed as ``skysocks``.
* ``version``: at most :data:`MAX_VERSION_LEN` printable ASCII characters, no spaces.
* ``geo``: optional; latitude in [-90, 90], longitude in [-180, 180], ``country`` an ISO 3166-1
  alpha-2 code (two letters, kept upper case), ``region`` at most :data:`MAX_REGION_LEN`
  printable characters. A geolocation with nothing in it is no geolocation (upstream too).
* ``display_node_ip`` / ``local_ips``: a visor's local addresses (at most
  :data:`MAX_LOCAL_IPS`), shown in listings only when ``display_node_ip`` is set
  (:meth:`ServiceEntry.public`).

Unknown keys are ignored, as Go's decoder does (upstream's ``info`` among them: it is never
stored). Every failure raises an :class:`~skywire.services.sd.errors.EntryError` subclass.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from skywire.cipher import PUBKEY_LEN, CipherError, PubKey
from skywire.services.sd.errors import (
    EntryError,
    GeoError,
    ServiceTypeError,
    SWAddrError,
    VersionError,
)

__all__ = [
    "MAX_LOCAL_IPS",
    "MAX_REGION_LEN",
    "MAX_VERSION_LEN",
    "PROXY_ALIAS",
    "SWADDR_LEN",
    "Geo",
    "SWAddr",
    "ServiceEntry",
    "ServiceType",
    "check_country",
    "check_version",
    "parse_entries",
    "parse_entry",
    "parse_type",
]

SWADDR_LEN = PUBKEY_LEN + 2
"""Bytes of a binary skywire address: the key, then the port."""

MAX_VERSION_LEN = 64
MAX_REGION_LEN = 64
MAX_LOCAL_IPS = 16

PROXY_ALIAS = "proxy"
"""Upstream's second name for ``skysocks`` (``ServiceTypeProxy``)."""

ERR_MISSING_TYPE = "missing service type in request"
ERR_INVALID_JSON = "invalid json"


class ServiceType(enum.StrEnum):
    """The services a visor announces (upstream ``servicedisc.ServiceType*``)."""

    SKYSOCKS = "skysocks"
    VPN = "vpn"
    VISOR = "visor"


def parse_type(text: str) -> ServiceType:
    """A service type from its name (``proxy`` is ``skysocks``); :class:`ServiceTypeError`."""
    if not text:
        raise ServiceTypeError(ERR_MISSING_TYPE)
    if text == PROXY_ALIAS:
        return ServiceType.SKYSOCKS
    try:
        return ServiceType(text)
    except ValueError:
        known = ", ".join([*ServiceType, PROXY_ALIAS])
        raise ServiceTypeError(f"unknown service type {text[:32]!r} ({known})") from None


def check_version(text: str) -> str:
    """``text`` if it is a valid version string (possibly empty); :class:`VersionError`."""
    if len(text) > MAX_VERSION_LEN or not all("!" <= ch <= "~" for ch in text):
        raise VersionError(
            f"version must be at most {MAX_VERSION_LEN} printable ASCII characters, no spaces"
        )
    return text


def check_country(text: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper-cased; :class:`GeoError` unless two ASCII letters."""
    if len(text) != 2 or not (text.isascii() and text.isalpha()):
        raise GeoError("country must be an ISO 3166-1 alpha-2 code (two letters)")
    return text.upper()


# ---------------------------------------------------------------------------- SWAddr


@dataclass(frozen=True, slots=True)
class SWAddr:
    """A skywire address: a visor's public key and a port on it (0 to 65535)."""

    pk: PubKey
    port: int

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise SWAddrError("invalid skywire address: port must be an integer")
        if not 0 <= self.port <= 0xFFFF:
            raise SWAddrError(f"invalid skywire address: port {self.port} out of range")
        if self.pk.is_null():
            raise SWAddrError("public key cannot be null in address")

    @classmethod
    def parse(cls, text: str) -> SWAddr:
        """``<pk hex>:<port>``; a bare ``<pk hex>`` has port 0, as upstream reads it."""
        pk_text, sep, port_text = text.partition(":")
        if sep:
            if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
                raise SWAddrError(f"invalid skywire address: bad port {port_text[:8]!r}")
            port = int(port_text)
        else:
            port = 0
        if len(pk_text) != 2 * PUBKEY_LEN:
            raise SWAddrError(
                f"invalid skywire address: the key must be {2 * PUBKEY_LEN} hex digits"
            )
        try:
            pk = PubKey.from_hex(pk_text)
            if not pk.is_null():
                pk.validate()
        except CipherError as exc:
            raise SWAddrError(f"invalid skywire address: {exc}") from exc
        return cls(pk, port)

    @classmethod
    def from_bytes(cls, data: bytes) -> SWAddr:
        """The binary form: exactly 33 key bytes then the port, big-endian."""
        data = bytes(data)
        if len(data) != SWADDR_LEN:
            raise SWAddrError(f"invalid skywire address: want {SWADDR_LEN} bytes, got {len(data)}")
        raw, port = data[:PUBKEY_LEN], int.from_bytes(data[PUBKEY_LEN:], "big")
        if raw == bytes(PUBKEY_LEN):
            raise SWAddrError("public key cannot be null in address")
        try:
            pk = PubKey.from_bytes(raw)
        except CipherError as exc:
            raise SWAddrError(f"invalid skywire address: {exc}") from exc
        return cls(pk, port)

    def to_bytes(self) -> bytes:
        return self.pk.raw + self.port.to_bytes(2, "big")

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def __str__(self) -> str:
        return f"{self.pk.hex()}:{self.port}"


# ---------------------------------------------------------------------------- Geo


def _number(obj: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = obj.get(key)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GeoError(f"geo.{key} must be a number")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise GeoError(f"geo.{key} must be within [{low:g}, {high:g}]")
    return number


def _string(obj: Mapping[str, Any], key: str, error: type[EntryError], where: str = "") -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise error(f"{where}{key} must be a string")
    return value


@dataclass(frozen=True, slots=True)
class Geo:
    """Where a service is (upstream ``geo.LocationData``); zero and empty fields are unset."""

    lat: float = 0.0
    lon: float = 0.0
    country: str = ""
    region: str = ""

    def __post_init__(self) -> None:
        for name, bound in (("lat", 90.0), ("lon", 180.0)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not -bound <= value <= bound
            ):
                raise GeoError(f"geo.{name} must be within [{-bound:g}, {bound:g}]")
        if self.country:
            object.__setattr__(self, "country", check_country(self.country))
        if len(self.region) > MAX_REGION_LEN or not self.region.isprintable():
            raise GeoError(f"geo.region must be at most {MAX_REGION_LEN} printable characters")

    def is_empty(self) -> bool:
        return not (self.lat or self.lon or self.country or self.region)

    @classmethod
    def from_obj(cls, obj: Any) -> Geo | None:
        """Parse the JSON ``geo`` value; ``None`` for null or an empty location."""
        if obj is None:
            return None
        if not isinstance(obj, dict):
            raise GeoError("geo must be an object")
        geo = cls(
            _number(obj, "lat", -90.0, 90.0),
            _number(obj, "lon", -180.0, 180.0),
            _string(obj, "country", GeoError, "geo."),
            _string(obj, "region", GeoError, "geo."),
        )
        return None if geo.is_empty() else geo

    def to_obj(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.lat:
            out["lat"] = self.lat
        if self.lon:
            out["lon"] = self.lon
        if self.country:
            out["country"] = self.country
        if self.region:
            out["region"] = self.region
        return out


# ---------------------------------------------------------------------------- ServiceEntry


def _check_local_ips(ips: tuple[str, ...]) -> tuple[str, ...]:
    if len(ips) > MAX_LOCAL_IPS:
        raise EntryError(f"local_ips: at most {MAX_LOCAL_IPS} addresses")
    out = []
    for ip in ips:
        try:
            out.append(str(ipaddress.ip_address(ip)))
        except ValueError:
            raise EntryError(f"local_ips: {str(ip)[:64]!r} is not an IP address") from None
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One registered service: checked on construction (the type is made canonical, the local
    addresses normalised)."""

    addr: SWAddr
    type: ServiceType
    version: str = ""
    geo: Geo | None = None
    display_node_ip: bool = False
    local_ips: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", parse_type(str(self.type)))
        if self.addr.port == 0:
            raise SWAddrError("port cannot be 0 in address")
        check_version(self.version)
        if self.geo is not None and self.geo.is_empty():
            object.__setattr__(self, "geo", None)
        object.__setattr__(self, "local_ips", _check_local_ips(tuple(self.local_ips)))

    @property
    def pk(self) -> PubKey:
        return self.addr.pk

    def public(self) -> ServiceEntry:
        """The entry as listed to anybody: local addresses only when the entry asks to show
        them, and ``display_node_ip`` itself never (upstream's listing does the same)."""
        ips = self.local_ips if self.display_node_ip else ()
        return replace(self, display_node_ip=False, local_ips=ips)

    def to_obj(self) -> dict[str, Any]:
        """The JSON object, keys in upstream's order, empty optional fields left out."""
        out: dict[str, Any] = {"address": str(self.addr), "type": self.type.value}
        if self.geo is not None:
            out["geo"] = self.geo.to_obj()
        if self.display_node_ip:
            out["display_node_ip"] = True
        if self.version:
            out["version"] = self.version
        if self.local_ips:
            out["local_ips"] = list(self.local_ips)
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_obj(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_obj(cls, obj: Any) -> ServiceEntry:
        """Parse a decoded JSON object (unknown keys ignored)."""
        if not isinstance(obj, dict):
            raise EntryError(f"{ERR_INVALID_JSON}: a service entry is a JSON object")
        address = obj.get("address")
        if not isinstance(address, str):
            raise SWAddrError("invalid skywire address: address must be a string")
        ips = obj.get("local_ips")
        if ips is None:
            ips = []
        if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
            raise EntryError("local_ips must be an array of strings")
        if len(ips) > MAX_LOCAL_IPS:
            raise EntryError(f"local_ips: at most {MAX_LOCAL_IPS} addresses")
        display = obj.get("display_node_ip", False)
        if display is None:
            display = False
        if not isinstance(display, bool):
            raise EntryError("display_node_ip must be true or false")
        return cls(
            SWAddr.parse(address),
            parse_type(_string(obj, "type", ServiceTypeError)),
            check_version(_string(obj, "version", VersionError)),
            Geo.from_obj(obj.get("geo")),
            display,
            tuple(ips),
        )


def _load(data: bytes | str) -> Any:
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise EntryError(ERR_INVALID_JSON) from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON literal {name}")


def parse_entry(data: bytes | str) -> ServiceEntry:
    """One entry from JSON text; :class:`EntryError` (``invalid json`` when it is not JSON)."""
    return ServiceEntry.from_obj(_load(data))


def parse_entries(data: bytes | str) -> list[ServiceEntry]:
    """A JSON array of entries (``null`` is no entries, as a Go server may answer)."""
    obj = _load(data)
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise EntryError(f"{ERR_INVALID_JSON}: expected an array of service entries")
    return [ServiceEntry.from_obj(item) for item in obj]
