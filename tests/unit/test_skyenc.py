"""The Skycoin binary encoder against the Go vectors (cxo.json) plus hypothesis properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skywire.cipher import PubKey, Sig
from skywire.wire import skyenc
from skywire.wire.errors import WireError
from skywire.wire.skyenc import SkyEncError, field, skip
from tests.conftest import load_vectors

CXO = load_vectors("cxo")


def _group(kind: str) -> dict[str, dict[str, Any]]:
    for case in CXO["cases"]:
        if case["kind"] == kind:
            return {item["name"]: item for item in case["items"]}
    raise KeyError(kind)


ENCODE = _group("encoder_encode")
DECODE_ERRORS = _group("encoder_decode_errors")


def sha(text: str) -> bytes:
    import hashlib

    return hashlib.sha256(text.encode()).digest()


@skyenc.schema
class Ints:
    U8: int = field(skyenc.U8)
    U16: int = field(skyenc.U16)
    U32: int = field(skyenc.U32)
    U64: int = field(skyenc.U64)
    I8: int = field(skyenc.I8)
    I16: int = field(skyenc.I16)
    I32: int = field(skyenc.I32)
    I64: int = field(skyenc.I64)
    B1: bool = field(skyenc.BOOL)
    B0: bool = field(skyenc.BOOL)


@skyenc.schema
class Strings:
    S: str = field(skyenc.STRING)
    Empty: str = field(skyenc.STRING)
    Raw: bytes = field(skyenc.BYTES)
    NilRaw: bytes = field(skyenc.BYTES)
    U32s: list[int] = field(skyenc.Slice(skyenc.U32))
    Unicode: str = field(skyenc.STRING)


@skyenc.schema
class Fixed:
    PK: PubKey = field(skyenc.PUBKEY)
    H: bytes = field(skyenc.SHA256)
    Sig: Sig = field(skyenc.SIG)
    A4: tuple[int, ...] = field(skyenc.Array(skyenc.U16, 4))


@skyenc.schema
class Inner:
    A: int = field(skyenc.U16)
    Name: str = field(skyenc.STRING)


@skyenc.schema(kw_only=True)
class Outer:
    ID: int = field(skyenc.U32)
    In: Inner = field(Inner)
    Items: list[Inner] = field(skyenc.Slice(skyenc.as_codec(Inner)))
    Skipped: int = skip(default=0)
    hidden: int = skip(default=0)
    Hashes: list[bytes] = field(skyenc.Slice(skyenc.SHA256))
    Tail: str = field(skyenc.STRING)


@skyenc.schema
class Opt:
    X: int = field(skyenc.U8)
    Opt: bytes = field(skyenc.BYTES, omitempty=True, default=b"")


@skyenc.schema
class Floats:
    F32: float = field(skyenc.F32)
    F64: float = field(skyenc.F64)


@skyenc.schema
class OneString:
    S: str = field(skyenc.STRING)


@skyenc.schema
class HashSlice:
    H: list[bytes] = field(skyenc.Slice(skyenc.SHA256))


@skyenc.schema
class ByteSlice:
    B: bytes = field(skyenc.BYTES)


K1 = PubKey.from_hex(CXO["context"]["keys"][0]["pk"])
OUTER = Outer(
    ID=7,
    In=Inner(0x1234, "in"),
    Items=[Inner(1, "a"), Inner(2, "bc")],
    Skipped=2**64 - 1,
    hidden=99,
    Hashes=[sha("h0"), sha("h1")],
    Tail="end",
)

VALUES: dict[str, tuple[Any, Any]] = {
    "ints_and_bools": (
        Ints(1, 515, 67438087, 579005069656919567, -1, -2, -3, -72623859790382856, True, False),
        Ints,
    ),
    "strings_bytes_slices": (
        Strings("hello", "", bytes.fromhex("deadbeef"), b"", [1, 16909060], "ü€"),
        Strings,
    ),
    "fixed_arrays": (
        Fixed(
            K1,
            sha("vector-hash-1"),
            Sig.from_hex(
                "bd7104d371d0fc1b7b40e7bac9c75cd929683f01617e0bbfc3c44ceb6d68bdfe239da8093044298fef"
                "52dc9b0aa150849e5c98f37bbec371336e0ab9c53fe17000"
            ),
            (1, 2, 3, 65535),
        ),
        Fixed,
    ),
    "nested_slice_of_structs_skip_tag_unexported": (OUTER, Outer),
    "nested_zero_value": (Outer(ID=0, In=Inner(0, ""), Items=[], Hashes=[], Tail=""), Outer),
    "omitempty_last_field_empty": (Opt(5, b""), Opt),
    "omitempty_last_field_set": (Opt(5, b"\x09"), Opt),
    "floats": (Floats(1.5, -2.25), Floats),
    "top_level_slice_of_structs": ([Inner(3, "x")], skyenc.Slice(skyenc.as_codec(Inner))),
}


def test_every_encode_vector_is_covered() -> None:
    assert set(VALUES) == set(ENCODE)


@pytest.mark.parametrize("name", sorted(VALUES))
def test_encode_vectors(name: str) -> None:
    value, schema = VALUES[name]
    want = bytes.fromhex(ENCODE[name]["bytes"])
    assert skyenc.encode(value, schema) == want
    assert len(want) == ENCODE[name]["len"]
    decoded = skyenc.decode(schema, want, exact=True)
    if name == "nested_slice_of_structs_skip_tag_unexported":
        # skipped and unexported fields come back as their defaults
        assert decoded == Outer(
            ID=7, In=OUTER.In, Items=OUTER.Items, Hashes=OUTER.Hashes, Tail="end"
        )
    else:
        assert decoded == value


OUTER_TRUNCATED = [n for n in DECODE_ERRORS if n.startswith("outer_truncated_to_")]


@pytest.mark.parametrize("name", OUTER_TRUNCATED)
def test_truncated_outer(name: str) -> None:
    item = DECODE_ERRORS[name]
    with pytest.raises(SkyEncError, match=item["go_error"]):
        skyenc.decode(Outer, bytes.fromhex(item["bytes"]))


def test_trailing_byte_plain_and_exact() -> None:
    item = DECODE_ERRORS["outer_trailing_byte"]
    data = bytes.fromhex(item["bytes"])
    value, used = skyenc.decode_prefix(Outer, data)
    assert used == item["DeserializeRaw_consumed"]
    assert value.Tail == "end"
    assert skyenc.decode(Outer, data).ID == 7
    with pytest.raises(SkyEncError, match=item["DeserializeRawExact_error"]):
        skyenc.decode(Outer, data, exact=True)


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("ints_invalid_bool_value_2", Ints),
        ("string_length_exceeds_buffer", OneString),
        ("sha256_slice_count2_but_40_bytes", HashSlice),
        ("slice_count_0xffffffff", HashSlice),
    ],
)
def test_decode_errors(name: str, schema: type) -> None:
    item = DECODE_ERRORS[name]
    with pytest.raises(SkyEncError, match=item["go_error"]):
        skyenc.decode(schema, bytes.fromhex(item["bytes"]))


def test_zero_count_decodes_to_empty() -> None:
    assert skyenc.decode(ByteSlice, bytes(4), exact=True) == ByteSlice(b"")


def test_error_is_a_wire_error() -> None:
    assert issubclass(SkyEncError, WireError)


def test_hostile_count_of_structs_is_refused_before_allocating() -> None:
    # 0xffffffff elements of at least 6 bytes each cannot fit in 10 bytes
    with pytest.raises(SkyEncError, match="Not enough buffer"):
        skyenc.decode(skyenc.Slice(skyenc.as_codec(Inner)), b"\xff\xff\xff\xff" + bytes(10))


def test_encode_refuses_out_of_range_and_wrong_types() -> None:
    with pytest.raises(SkyEncError):
        skyenc.encode(Ints(256, 0, 0, 0, 0, 0, 0, 0, True, False))
    with pytest.raises(SkyEncError):
        skyenc.encode(Ints(0, 0, 0, 0, -129, 0, 0, 0, True, False))
    with pytest.raises(SkyEncError):
        skyenc.encode(Fixed(K1, b"short", Sig.NULL, (1, 2, 3, 4)))
    with pytest.raises(SkyEncError):
        skyenc.encode(Fixed(K1, bytes(32), Sig.NULL, (1, 2, 3)))


def test_omitempty_only_on_last_field() -> None:
    @skyenc.schema
    class Bad:
        A: bytes = field(skyenc.BYTES, omitempty=True)
        B: int = field(skyenc.U8)

    with pytest.raises(TypeError):
        skyenc.struct_codec(Bad)


def test_non_utf8_string_round_trips() -> None:
    data = b"\x02\x00\x00\x00\xff\xfe"
    value = skyenc.decode(OneString, data, exact=True)
    assert skyenc.encode(value) == data


# --- properties ---------------------------------------------------------------------------------

inner_st = st.builds(Inner, st.integers(0, 0xFFFF), st.text(max_size=8))
outer_st = st.builds(
    Outer,
    ID=st.integers(0, 2**32 - 1),
    In=inner_st,
    Items=st.lists(inner_st, max_size=4),
    Hashes=st.lists(st.binary(min_size=32, max_size=32), max_size=3),
    Tail=st.text(max_size=10),
)


@given(outer_st)
def test_roundtrip_outer(value: Outer) -> None:
    data = skyenc.encode(value)
    assert skyenc.decode(Outer, data, exact=True) == value
    # every strict prefix is refused with the typed error
    for cut in range(len(data)):
        with pytest.raises(SkyEncError):
            skyenc.decode(Outer, data[:cut])


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_the_typed_error(data: bytes) -> None:
    for schema in (Outer, Ints, Strings, Fixed, Opt, Floats):
        try:
            value = skyenc.decode(schema, data)
        except SkyEncError:
            continue
        if schema is Floats:
            continue  # a NaN's payload need not survive the float round trip
        # whatever decodes re-encodes to the bytes it used
        _, used = skyenc.decode_prefix(schema, data)
        assert skyenc.encode(value) == data[:used]
