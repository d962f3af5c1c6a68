"""The service discovery's entry model and skywire address: vectors, round trips, refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skywire.cipher import KeyPair, PubKey
from skywire.services.sd.entry import (
    MAX_LOCAL_IPS,
    SWADDR_LEN,
    Geo,
    ServiceEntry,
    ServiceType,
    SWAddr,
    check_country,
    check_version,
    parse_entries,
    parse_entry,
    parse_type,
)
from skywire.services.sd.errors import (
    EntryError,
    GeoError,
    SDError,
    ServiceTypeError,
    SWAddrError,
    VersionError,
)

# The compressed secp256k1 generator point: a valid key anybody can check.
G_HEX = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
G = PubKey.from_hex(G_HEX)

# SWAddr = PK (33 bytes) ‖ port (u16 big-endian), text form "<pk hex>:<decimal port>".
SWADDR_VECTORS = [
    (3, G_HEX + "0003", G_HEX + ":3"),
    (0, G_HEX + "0000", G_HEX + ":0"),
    (0x1234, G_HEX + "1234", G_HEX + ":4660"),
    (65535, G_HEX + "ffff", G_HEX + ":65535"),
    (256, G_HEX + "0100", G_HEX + ":256"),
]


@pytest.mark.parametrize(("port", "binary_hex", "text"), SWADDR_VECTORS)
def test_swaddr_vectors(port: int, binary_hex: str, text: str) -> None:
    addr = SWAddr(G, port)
    assert addr.to_bytes().hex() == binary_hex
    assert bytes(addr) == bytes.fromhex(binary_hex)
    assert len(addr.to_bytes()) == SWADDR_LEN == 35
    assert str(addr) == text
    assert SWAddr.from_bytes(bytes.fromhex(binary_hex)) == addr
    assert SWAddr.parse(text) == addr


def test_swaddr_bare_key_has_port_zero_as_upstream_reads_it() -> None:
    assert SWAddr.parse(G_HEX) == SWAddr(G, 0)


@given(st.integers(0, 0xFFFF))
def test_swaddr_round_trips(port: int) -> None:
    addr = SWAddr(G, port)
    assert SWAddr.from_bytes(addr.to_bytes()) == addr
    assert SWAddr.parse(str(addr)) == addr


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "hex digits"),
        (G_HEX[:-2] + ":3", "hex digits"),
        (G_HEX + "00:3", "hex digits"),
        ("zz" + G_HEX[2:] + ":3", "invalid skywire address"),
        ("04" + G_HEX[2:] + ":3", "invalid skywire address"),  # not a compressed point
        ("0" * 66 + ":3", "public key cannot be null"),
        (G_HEX + ":65536", "out of range"),
        (G_HEX + ":-1", "bad port"),
        (G_HEX + ":+1", "bad port"),
        (G_HEX + ": 1", "bad port"),
        (G_HEX + ":", "bad port"),
        (G_HEX + ":1:2", "bad port"),
        (G_HEX + ":123456", "bad port"),
        (G_HEX + ":٣", "bad port"),  # a non-ASCII digit
    ],
)
def test_swaddr_parse_refusals(text: str, fragment: str) -> None:
    with pytest.raises(SWAddrError) as info:
        SWAddr.parse(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SDError)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "want 35 bytes, got 0"),
        (bytes.fromhex(G_HEX), "want 35 bytes, got 33"),
        (bytes.fromhex(G_HEX) + b"\x00\x03\x00", "want 35 bytes, got 36"),
        (bytes(33) + b"\x00\x03", "public key cannot be null"),
        (b"\x02" + b"\xff" * 32 + b"\x00\x03", "invalid skywire address"),
    ],
)
def test_swaddr_binary_refusals(data: bytes, fragment: str) -> None:
    with pytest.raises(SWAddrError, match=fragment):
        SWAddr.from_bytes(data)


def test_swaddr_construction_refusals() -> None:
    with pytest.raises(SWAddrError):
        SWAddr(G, 70000)
    with pytest.raises(SWAddrError):
        SWAddr(G, True)
    with pytest.raises(SWAddrError, match="null"):
        SWAddr(PubKey.NULL, 3)


def test_types_and_the_proxy_alias() -> None:
    assert parse_type("skysocks") is ServiceType.SKYSOCKS
    assert parse_type("proxy") is ServiceType.SKYSOCKS
    assert parse_type("vpn") is ServiceType.VPN
    assert parse_type("visor") is ServiceType.VISOR
    with pytest.raises(ServiceTypeError, match="missing service type in request"):
        parse_type("")
    for bad in ("VPN", "socks", "vpn ", "x" * 1000):
        with pytest.raises(ServiceTypeError, match="unknown service type"):
            parse_type(bad)


def test_version_and_country_checks() -> None:
    assert check_version("") == ""
    assert check_version("v1.3.29") == "v1.3.29"
    assert check_version("x" * 64) == "x" * 64
    for bad in ("x" * 65, "v1 .2", "v1\n", "vé"):
        with pytest.raises(VersionError):
            check_version(bad)
    assert check_country("de") == "DE"
    for bad in ("", "D", "DEU", "D1", "ÄÖ", "  "):
        with pytest.raises(GeoError):
            check_country(bad)


def entry_obj(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "address": G_HEX + ":44",
        "type": "vpn",
        "geo": {"lat": 52.52, "lon": 13.405, "country": "DE", "region": "BE"},
        "display_node_ip": True,
        "version": "v1.3.29",
        "local_ips": ["10.0.0.2"],
    }
    obj.update(overrides)
    return {k: v for k, v in obj.items() if v is not ...}


def test_entry_json_shape_and_round_trip() -> None:
    text = json.dumps(entry_obj())
    entry = parse_entry(text)
    assert entry == ServiceEntry(
        SWAddr(G, 44),
        ServiceType.VPN,
        "v1.3.29",
        Geo(52.52, 13.405, "DE", "BE"),
        True,
        ("10.0.0.2",),
    )
    # Upstream's key order, compact.
    assert entry.to_json() == (
        b'{"address":"' + G_HEX.encode() + b':44","type":"vpn","geo":{"lat":52.52,'
        b'"lon":13.405,"country":"DE","region":"BE"},"display_node_ip":true,'
        b'"version":"v1.3.29","local_ips":["10.0.0.2"]}'
    )
    assert parse_entry(entry.to_json()) == entry


def test_entry_defaults_and_omitted_fields() -> None:
    entry = parse_entry(json.dumps({"address": G_HEX + ":3", "type": "proxy"}))
    assert entry.type is ServiceType.SKYSOCKS
    assert entry.version == "" and entry.geo is None and entry.local_ips == ()
    assert json.loads(entry.to_json()) == {"address": G_HEX + ":3", "type": "skysocks"}
    # Nulls, an empty location and unknown keys (upstream's "info") are nothing.
    obj = entry_obj(geo={"lat": 0, "country": ""}, local_ips=None, display_node_ip=None)
    obj["info"] = {"latency": 3.5}
    obj["extra"] = [1, 2]
    entry = parse_entry(json.dumps(obj))
    assert entry.geo is None and entry.local_ips == () and not entry.display_node_ip


def test_an_overflowing_number_is_out_of_range() -> None:
    text = json.dumps(entry_obj(geo={"lat": 1.0})).replace('"lat": 1.0', '"lat": 1e400')
    with pytest.raises(GeoError, match=r"geo\.lat"):
        parse_entry(text)


def test_public_view_hides_local_ips_unless_asked() -> None:
    shown = parse_entry(json.dumps(entry_obj()))
    assert shown.public().local_ips == ("10.0.0.2",)
    assert shown.public().display_node_ip is False
    hidden = parse_entry(json.dumps(entry_obj(display_node_ip=False)))
    assert hidden.public().local_ips == ()
    assert "local_ips" not in json.loads(hidden.public().to_json())


def test_local_ips_are_normalised() -> None:
    entry = parse_entry(json.dumps(entry_obj(local_ips=["2001:DB8::1", "192.168.1.1"])))
    assert entry.local_ips == ("2001:db8::1", "192.168.1.1")


@pytest.mark.parametrize(
    ("obj", "error", "fragment"),
    [
        (entry_obj(address=...), SWAddrError, "address must be a string"),
        (entry_obj(address=44), SWAddrError, "address must be a string"),
        (entry_obj(address=G_HEX), SWAddrError, "port cannot be 0"),
        (entry_obj(address=G_HEX + ":0"), SWAddrError, "port cannot be 0"),
        (entry_obj(address="0" * 66 + ":3"), SWAddrError, "null"),
        (entry_obj(type=...), ServiceTypeError, "missing service type"),
        (entry_obj(type="ftp"), ServiceTypeError, "unknown service type"),
        (entry_obj(type=["vpn"]), ServiceTypeError, "type must be a string"),
        (entry_obj(version=3), VersionError, "version must be a string"),
        (entry_obj(version="v" * 65), VersionError, "at most 64"),
        (entry_obj(geo=[]), GeoError, "geo must be an object"),
        (entry_obj(geo={"lat": 91}), GeoError, "geo.lat"),
        (entry_obj(geo={"lat": -90.5}), GeoError, "geo.lat"),
        (entry_obj(geo={"lon": 180.01}), GeoError, "geo.lon"),
        (entry_obj(geo={"lat": "52"}), GeoError, "geo.lat must be a number"),
        (entry_obj(geo={"lat": True}), GeoError, "geo.lat must be a number"),
        (entry_obj(geo={"country": "Germany"}), GeoError, "alpha-2"),
        (entry_obj(geo={"country": 49}), GeoError, "geo.country must be a string"),
        (entry_obj(geo={"region": "x" * 65}), GeoError, "geo.region"),
        (entry_obj(geo={"region": "a\nb"}), GeoError, "geo.region"),
        (entry_obj(display_node_ip="yes"), EntryError, "display_node_ip"),
        (entry_obj(local_ips="10.0.0.1"), EntryError, "array of strings"),
        (entry_obj(local_ips=[1]), EntryError, "array of strings"),
        (entry_obj(local_ips=["localhost"]), EntryError, "not an IP address"),
        (entry_obj(local_ips=["10.0.0.1"] * (MAX_LOCAL_IPS + 1)), EntryError, "at most"),
    ],
)
def test_entry_refusals(obj: dict[str, Any], error: type[EntryError], fragment: str) -> None:
    with pytest.raises(error) as info:
        parse_entry(json.dumps(obj))
    assert fragment in str(info.value)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "text", ["", "{", "[]", "null", '"vpn"', "NaN", "[" * 100_000, '{"a":1}{', b"\xff"]
)
def test_not_an_entry(text: str | bytes) -> None:
    with pytest.raises(EntryError, match="invalid json"):
        parse_entry(text)


def test_parse_entries() -> None:
    a = parse_entry(json.dumps(entry_obj()))
    kp = KeyPair.generate()
    b = ServiceEntry(SWAddr(kp.pk, 3), ServiceType.SKYSOCKS, "v1")
    assert parse_entries(b"[" + a.to_json() + b"," + b.to_json() + b"]") == [a, b]
    assert parse_entries(b"null") == []
    assert parse_entries(b"[]") == []
    with pytest.raises(EntryError, match="expected an array"):
        parse_entries(a.to_json())
    with pytest.raises(EntryError):
        parse_entries(b'[{"address":"x","type":"vpn"}]')


def test_entry_construction_checks() -> None:
    with pytest.raises(SWAddrError, match="port cannot be 0"):
        ServiceEntry(SWAddr(G, 0), ServiceType.VPN, "v1")
    with pytest.raises(VersionError):
        ServiceEntry(SWAddr(G, 3), ServiceType.VPN, "a b")
    with pytest.raises(ServiceTypeError):
        ServiceEntry(SWAddr(G, 3), "nope")  # type: ignore[arg-type]
    assert ServiceEntry(SWAddr(G, 3), "proxy").type is ServiceType.SKYSOCKS  # type: ignore[arg-type]
    assert ServiceEntry(SWAddr(G, 3), ServiceType.VPN, geo=Geo()).geo is None
    with pytest.raises(GeoError):
        Geo(lat=float("nan"))
    assert Geo(country="nz").country == "NZ"


@given(
    port=st.integers(1, 0xFFFF),
    kind=st.sampled_from(list(ServiceType)),
    version=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=64),
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    country=st.sampled_from(["", "DE", "NZ", "US"]),
    display=st.booleans(),
    ips=st.lists(st.ip_addresses().map(str), max_size=4),
)
def test_entry_json_round_trip(
    port: int,
    kind: ServiceType,
    version: str,
    lat: float,
    lon: float,
    country: str,
    display: bool,
    ips: list[str],
) -> None:
    entry = ServiceEntry(
        SWAddr(G, port), kind, version, Geo(lat, lon, country), display, tuple(ips)
    )
    assert parse_entry(entry.to_json()) == entry
