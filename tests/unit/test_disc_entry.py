"""dmsg discovery entries against the upstream golden vectors (tests/vectors/disc.json)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywire.cipher import PubKey, SecKey, sha256
from skywire.dmsg.disc_entry import (
    ClientInfo,
    DiscError,
    DiscVersion,
    EmptyServerAddressError,
    Entry,
    EntryDecodeError,
    EntryValidationError,
    KeyNotFoundError,
    NilKeysError,
    NoAvailableServersError,
    NoClientOrServerError,
    NoSignatureError,
    NoVersionError,
    OutdatedTimeError,
    ServerAddressError,
    ServerInfo,
    UnauthorizedError,
    UnexpectedError,
    WrongSequenceError,
    WrongTimeError,
    error_from_message,
    http_message_json,
    is_loopback_address,
    marshal_entries,
    parse_entries,
    parse_entry,
    sign,
    signing_bytes,
    split_host_port,
    validate,
    validate_iteration,
    verify,
)
from tests.conftest import load_vectors

VECTORS = load_vectors("disc")
VERSIONS = {0: DiscVersion.V2023, 1: DiscVersion.V2024}
ITEMS = [(VERSIONS[i], item) for i, case in enumerate(VECTORS["cases"]) for item in case["items"]]
IDS = [f"{v.value}-{item['name']}" for v, item in ITEMS]
SIGNED = [(v, it) for v, it in ITEMS if "signed_json_bytes" in it]
SIGNED_IDS = [f"{v.value}-{it['name']}" for v, it in SIGNED]

SK1 = SecKey(sha256(b"vector-key-1"))  # client
SK2 = SecKey(sha256(b"vector-key-2"))  # server
SK3 = SecKey(sha256(b"vector-key-3"))
PK1, PK2, PK3 = SK1.pubkey(), SK2.pubkey(), SK3.pubkey()
NOW = 1_700_000_000_000_000_000


def test_vector_keys_are_the_documented_ones() -> None:
    signer_sks = {it["signer_sk"] for _, it in SIGNED}
    assert signer_sks == {SK1.hex(), SK2.hex()}
    client = parse_entry(SIGNED[0][1]["post_body"])
    assert client.static == PK1
    assert client.client is not None
    assert client.client.delegated_servers == (PK2, PK3)


@pytest.mark.parametrize(("version", "item"), SIGNED, ids=SIGNED_IDS)
def test_signed_bytes_hash_and_post_body(version: DiscVersion, item: dict[str, Any]) -> None:
    entry = parse_entry(item["post_body"])
    signed = signing_bytes(entry, version)
    assert signed == item["signed_json_bytes"].encode()
    assert signed.hex() == item["signed_json_hex"]
    assert sha256(signed).hex() == item["sha256"]
    assert entry.signature == item["signature"]
    assert entry.to_json(version) == item["post_body"].encode()
    assert SecKey.from_hex(item["signer_sk"]).pubkey() == entry.static


def _rebuild(item: dict[str, Any]) -> Entry:
    """The entry a Go client would build from the vector's fields (not from the JSON)."""
    raw = json.loads(item["post_body"])
    pk = PubKey.from_hex(raw["static"])
    if "client" in raw:
        ds = raw["client"]["delegated_servers"]
        entry = Entry.new_client(
            pk,
            raw["sequence"],
            timestamp=raw["timestamp"],
            client_type=raw.get("client_type", ""),
        )
        return replace(
            entry,
            client=ClientInfo(None if ds is None else tuple(PubKey.from_hex(s) for s in ds)),
        )
    srv = raw["server"]
    entry = Entry.new_server(
        pk, raw["sequence"], srv["address"], srv["availableSessions"], timestamp=raw["timestamp"]
    )
    assert entry.server is not None
    return replace(entry, server=replace(entry.server, server_type=srv.get("serverType", "")))


@pytest.mark.parametrize(("version", "item"), SIGNED, ids=SIGNED_IDS)
def test_rebuilt_entry_reproduces_the_go_bytes(version: DiscVersion, item: dict[str, Any]) -> None:
    entry = _rebuild(item)
    assert signing_bytes(entry, version) == item["signed_json_bytes"].encode()
    with_sig = replace(entry, signature=item["signature"])
    assert with_sig.to_json(version) == item["post_body"].encode()
    verify(with_sig, version)


@pytest.mark.parametrize(("version", "item"), SIGNED, ids=SIGNED_IDS)
def test_python_signature_verifies_and_reproduces_post_body_shape(
    version: DiscVersion, item: dict[str, Any]
) -> None:
    sk = SecKey.from_hex(item["signer_sk"])
    entry = sign(_rebuild(item), sk, version)
    verify(entry, version)
    assert entry.signature != item["signature"]  # a fresh signature …
    go_body = json.loads(item["post_body"])
    go_body["signature"] = entry.signature  # … in exactly Go's body
    compact = json.dumps(go_body, separators=(",", ":"), ensure_ascii=False).encode()
    assert entry.to_json(version) == compact


@pytest.mark.parametrize(("version", "item"), ITEMS, ids=IDS)
def test_go_verify_outcome(version: DiscVersion, item: dict[str, Any]) -> None:
    entry = parse_entry(item["post_body"])
    if "remarshalled_without_signature" in item:
        assert signing_bytes(entry, version) == item["remarshalled_without_signature"].encode()
    if item["go_verify_error"] is None:
        verify(entry, version)
    else:
        with pytest.raises(UnauthorizedError) as info:
            verify(entry, version)
        assert info.value.detail == item["go_verify_error"]
        assert info.value.code == 401
        assert info.value.message == "invalid signature"


def test_2024_fields_break_2023_verification_but_not_the_reverse() -> None:
    (modern,) = [it for v, it in SIGNED if v is DiscVersion.V2024 and "client_type" in it["name"]]
    entry = parse_entry(modern["post_body"])
    assert entry.client_type == "visor"
    verify(entry, DiscVersion.V2024)
    with pytest.raises(UnauthorizedError):
        verify(entry, DiscVersion.V2023)
    # the [2023] verifier hashes the body without client_type
    assert b"client_type" not in signing_bytes(entry, DiscVersion.V2023)
    # an entry without optional fields signs identically for both
    plain = replace(entry, client_type="")
    assert signing_bytes(plain, DiscVersion.V2023) == signing_bytes(plain, DiscVersion.V2024)


def test_delegated_servers_null_and_empty_differ() -> None:
    base = Entry.new_client(PK1, 0, timestamp=NOW)
    empty = signing_bytes(replace(base, client=ClientInfo(())))
    null = signing_bytes(replace(base, client=ClientInfo(None)))
    assert b'"delegated_servers":[]' in empty
    assert b'"delegated_servers":null' in null
    assert parse_entry(b'{"client":{}}').client == ClientInfo(None)


def test_marshal_escapes_like_the_reference_encoder() -> None:
    entry = Entry(
        static=PK2,
        server=ServerInfo('a"b\\c\n\r\t\x00\x08\x0c\x1f<>&é\u2028\x7f', 1),
        signature="x",
    )
    out = entry.to_json()
    expected_addr = '"a\\"b\\\\c\\n\\r\\t\\u0000\\u0008\\u000c\\u001f<>&é\u2028\x7f"'
    assert f'"address":{expected_addr}'.encode() in out
    assert parse_entry(out) == entry


def test_parse_follows_the_go_decoder() -> None:
    body = (
        f'{{"VERSION":"0.0.1","Sequence":3,"timestamp":null,"static":"{PK1}",'
        f'"unknown":[1,{{"a":2}}],"client":{{"Delegated_Servers":["{PK2}"]}},'
        '"signature":"s","signature":"t"}'
    )
    entry = parse_entry(body)
    assert entry.version == "0.0.1"
    assert entry.sequence == 3
    assert entry.timestamp == 0
    assert entry.client == ClientInfo((PK2,))
    assert entry.signature == "t"  # last duplicate wins
    # all-'0' and empty static decode to the null key
    assert parse_entry('{"static":""}').static.is_null()
    assert parse_entry('{"static":"' + "0" * 66 + '"}').static.is_null()
    # top-level null is the zero entry
    assert parse_entry(b"null") == Entry(version="")
    # lone surrogates become U+FFFD
    assert parse_entry('{"version":"\\ud800x"}').version == "\ufffdx"
    # entries arrays
    assert parse_entries(b"null") == []
    assert parse_entries(marshal_entries([entry, entry])) == [entry, entry]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'"x"',
        b"1",
        b"\xff\xfe",
        b'{"sequence":-1}',
        b'{"sequence":1.0}',
        b'{"sequence":"1"}',
        b'{"sequence":true}',
        b'{"sequence":18446744073709551616}',
        b'{"timestamp":9223372036854775808}',
        b'{"timestamp":NaN}',
        b'{"timestamp":Infinity}',
        b'{"static":"02"}',
        b'{"static":"zz"}',
        b'{"static":1}',
        b'{"static":"02' + b"0" * 63 + b'5"}',  # x = 5 is not on the curve
        b'{"client":[]}',
        b'{"client":{"delegated_servers":{}}}',
        b'{"client":{"delegated_servers":["abc"]}}',
        b'{"server":"x"}',
        b'{"server":{"availableSessions":1.5}}',
        b'{"server":{"address":5}}',
        b'{"version":5}',
        b"[" * 100_000,
        b'{"a":1} trailing',
    ],
)
def test_malformed_bodies_raise_only_the_typed_error(body: bytes) -> None:
    with pytest.raises(EntryDecodeError) as info:
        parse_entry(body)
    assert info.value.code == 400
    assert info.value.to_json() == b'{"message":"error bad input","code":400}'


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
_entryish = st.fixed_dictionaries(
    {},
    optional={
        "version": _json,
        "sequence": _json,
        "timestamp": _json,
        "static": st.sampled_from(["", PK1.hex(), "0" * 66, "02" + "f" * 64]) | _json,
        "client": st.fixed_dictionaries(
            {}, optional={"delegated_servers": st.lists(st.sampled_from([PK2.hex(), "x"]))}
        )
        | _json,
        "client_type": _json,
        "server": st.fixed_dictionaries(
            {}, optional={"address": _json, "availableSessions": _json, "serverType": _json}
        )
        | _json,
        "signature": _json,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_the_typed_error(data: bytes) -> None:
    try:
        entry = parse_entry(data)
    except EntryDecodeError:
        return
    assert parse_entry(entry.to_json()) == entry


@settings(max_examples=400, deadline=None)
@given(st.one_of(_json, _entryish))
def test_random_json_never_escapes_the_typed_error(obj: Any) -> None:
    try:
        text = json.dumps(obj)
    except ValueError:
        return
    try:
        entry = parse_entry(text)
    except EntryDecodeError:
        return
    # whatever parses marshals, re-parses to the same model and validates with typed errors only
    assert parse_entry(entry.to_json()) == entry
    with contextlib.suppress(EntryValidationError):
        validate(entry, NOW)
    with contextlib.suppress(UnauthorizedError):
        verify(entry)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _server(ts: int = NOW, seq: int = 0, addr: str = "1.2.3.4:8081") -> Entry:
    return sign(Entry.new_server(PK2, seq, addr, 10, timestamp=ts), SK2)


@pytest.mark.parametrize(
    ("entry", "error", "message"),
    [
        (
            replace(_server(), version=""),
            NoVersionError,
            "entry validation error: entry has no version",
        ),
        (
            replace(_server(), signature=""),
            NoSignatureError,
            "entry validation error: entry has no signature",
        ),
        (
            replace(_server(), static=PubKey.NULL),
            NilKeysError,
            "entry validation error: entry Keys is nil",
        ),
        (
            replace(_server(), server=None),
            NoClientOrServerError,
            "entry validation error: entry has neither client or server field",
        ),
        (
            _server(addr=""),
            EmptyServerAddressError,
            "entry validation error: server address cannot be empty",
        ),
        (
            _server(ts=NOW - 60 * 10**9 - 1),
            OutdatedTimeError,
            "entry validation error: advertised entry has outdated timestamp",
        ),
        (
            _server(ts=NOW + 5 * 10**9 + 1),
            OutdatedTimeError,
            "entry validation error: advertised entry has outdated timestamp",
        ),
    ],
)
def test_validation_errors(entry: Entry, error: type[DiscError], message: str) -> None:
    with pytest.raises(error) as info:
        validate(entry, NOW)
    assert info.value.code == 422
    assert info.value.message == message
    assert (
        info.value.to_json()
        == json.dumps({"message": message, "code": 422}, separators=(",", ":")).encode()
    )


def test_timestamp_window_edges_and_order() -> None:
    validate(_server(ts=NOW - 60 * 10**9), NOW)
    validate(_server(ts=NOW + 5 * 10**9), NOW)
    validate(_server(ts=0))  # no clock: no window
    # version is checked before anything else
    with pytest.raises(NoVersionError):
        validate(Entry(version="", static=PubKey.NULL), NOW)


def test_validate_iteration() -> None:
    old = _server(seq=5)
    validate_iteration(old, _server(seq=6))
    validate_iteration(old, _server(seq=100))
    with pytest.raises(WrongSequenceError) as info:
        validate_iteration(old, _server(seq=5))
    assert info.value.message == (
        "entry validation error: sequence field of new entry is not sequence of old entry + 1"
    )
    with pytest.raises(WrongSequenceError):
        validate_iteration(old, _server(seq=4))
    with pytest.raises(WrongTimeError) as info2:
        validate_iteration(old, _server(seq=6, ts=NOW - 1))
    assert info2.value.message == (
        "entry validation error: advertised entry timestamp is not greater than previous"
    )


def test_error_messages_map_back_to_types() -> None:
    for err in (
        KeyNotFoundError(),
        NoAvailableServersError(),
        UnexpectedError(),
        UnauthorizedError(),
        WrongSequenceError(),
        ServerAddressError(),
        NilKeysError(),
    ):
        back = error_from_message(err.message, err.code)
        assert type(back) is type(err)
        assert back.code == err.code
    assert KeyNotFoundError().message == "entry of public key is not found"
    assert ServerAddressError().message == (
        "entry validation error: advertising localhost listening address is not allowed in "
        "production mode"
    )
    other = error_from_message("teapot", 418)
    assert type(other) is DiscError
    assert (other.code, other.message) == (418, "teapot")
    assert http_message_json(200, "wrote a new entry") == (
        b'{"message":"wrote a new entry","code":200}'
    )


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:8081", True),
        ("127.8.9.10:1", True),
        ("[::1]:8081", True),
        ("[::ffff:127.0.0.1]:8081", True),
        (":8081", True),
        ("[]:8081", True),
        ("1.2.3.4:8081", False),
        ("localhost:8081", False),  # a name, not an IP: upstream lets it through
        ("127.0.0.1", False),  # no port: does not split, upstream lets it through
        ("", False),  # refused later as an empty address
        ("[fe80::1%eth0]:1", False),
        ("::1:8081", False),
    ],
)
def test_loopback_rule(address: str, loopback: bool) -> None:
    assert is_loopback_address(address) is loopback


def test_split_host_port() -> None:
    assert split_host_port("1.2.3.4:80") == ("1.2.3.4", "80")
    assert split_host_port("[::1]:80") == ("::1", "80")
    assert split_host_port(":80") == ("", "80")
    assert split_host_port("host:") == ("host", "")
    for bad in ("", "1.2.3.4", "::1:80", "[::1]", "[::1]:80:90", "[::1]x:80", "a]:80", "[a:80"):
        with pytest.raises(ValueError):
            split_host_port(bad)


def test_model_refuses_values_go_cannot_hold() -> None:
    with pytest.raises(ValueError):
        Entry(sequence=-1)
    with pytest.raises(ValueError):
        Entry(timestamp=1 << 63)
    with pytest.raises(ValueError):
        ServerInfo("a:1", 1 << 63)
