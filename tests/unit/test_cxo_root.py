"""Root encoding, hashing, signing and chaining against the Go vectors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skywire.cipher import PubKey, SecKey, Sig
from skywire.cxo.objects import ZERO_HASH, Dynamic
from skywire.cxo.root import (
    Root,
    RootChainError,
    RootVerifyError,
    check_chain,
    new_root,
    verify_received,
)
from skywire.wire.skyenc import SkyEncError
from tests.conftest import load_vectors

CXO = load_vectors("cxo")
KEYS = {k["pk"]: SecKey.from_hex(k["sk"]) for k in CXO["context"]["keys"]}


def _items(kind: str) -> dict[str, dict[str, Any]]:
    for case in CXO["cases"]:
        if case["kind"] == kind:
            return {i["name"]: i for i in case["items"]}
    raise KeyError(kind)


ROOTS = _items("root")
NEGATIVE = _items("root_negative")


def _from_fields(f: dict[str, Any]) -> Root:
    return Root(
        refs=[Dynamic(bytes.fromhex(d["hash"]), bytes.fromhex(d["schema"])) for d in f["refs"]],
        descriptor=bytes.fromhex(f["descriptor"]),
        reg=bytes.fromhex(f["reg"]),
        pub=PubKey.from_hex(f["pub"]),
        nonce=int(f["nonce"]),
        seq=f["seq"],
        time=int(f["time"]),
        prev=bytes.fromhex(f["prev"]),
    )


@pytest.mark.parametrize("name", sorted(ROOTS))
def test_root_vectors(name: str) -> None:
    item = ROOTS[name]
    root = _from_fields(item["fields"])
    encoded = bytes.fromhex(item["encoded"])
    assert root.encode() == encoded
    assert len(encoded) == item["len"]
    assert root.compute_hash().hex() == item["hash"]
    decoded = Root.decode(encoded, Sig.from_hex(item["sig"]))
    assert dataclasses.replace(decoded, hash=ZERO_HASH, sig=Sig.NULL) == root
    assert decoded.hash.hex() == item["hash"]
    decoded.verify()  # Go's signature verifies
    verify_received(root.pub, encoded, decoded.sig)
    # and ours is verifiable with the same key
    ours = root.signed(KEYS[item["fields"]["pub"]])
    assert ours.hash == decoded.hash
    ours.verify(root.pub)


def test_chain_seq1_follows_seq0() -> None:
    r0 = Root.decode(bytes.fromhex(ROOTS["root_seq0"]["encoded"]))
    r1 = Root.decode(bytes.fromhex(ROOTS["root_seq1_prev_is_hash_of_seq0"]["encoded"]))
    check_chain(None, r0)
    check_chain(r0, r1)
    with pytest.raises(RootChainError):
        check_chain(r1, r0)
    with pytest.raises(RootChainError):
        check_chain(None, r1)


@pytest.mark.parametrize("name", ["tampered_time_bit", "wrong_feed_key"])
def test_root_negative_verification(name: str) -> None:
    item = NEGATIVE[name]
    with pytest.raises(RootVerifyError, match=item["go_verify_error"]):
        verify_received(
            PubKey.from_hex(item["pub"]), bytes.fromhex(item["encoded"]), Sig.from_hex(item["sig"])
        )


def test_signature_is_checked_against_the_envelope_feed_not_pub() -> None:
    item = ROOTS["root_seq0"]
    other = PubKey.from_hex(CXO["context"]["keys"][1]["pk"])
    with pytest.raises(RootVerifyError):
        verify_received(other, bytes.fromhex(item["encoded"]), Sig.from_hex(item["sig"]))


def test_trailing_byte_is_ignored_but_hashed() -> None:
    item = NEGATIVE["trailing_byte_after_root"]
    data = bytes.fromhex(item["encoded"])
    root = Root.decode(data)
    assert root.encode().hex() == item["decoded_reencodes_to"]
    assert root.hash != root.compute_hash()  # the hash covers the trailing byte
    # so Go's signature of the exact bytes does not verify for the padded ones
    sig = Sig.from_hex(ROOTS["root_seq0"]["sig"])
    with pytest.raises(RootVerifyError):
        verify_received(root.pub, data, sig)


def test_truncated_root() -> None:
    item = NEGATIVE["truncated_root"]
    with pytest.raises(SkyEncError, match=item["DecodeRoot_error"]):
        Root.decode(bytes.fromhex(item["encoded"]))


def test_new_root_chains_per_head() -> None:
    sk = SecKey.from_hex(CXO["context"]["keys"][0]["sk"])
    r0 = new_root(sk, nonce=7, descriptor=b"x", time_ns=1)
    assert (r0.seq, r0.prev) == (0, ZERO_HASH)
    r1 = new_root(sk, nonce=7, last=r0, time_ns=2)
    assert (r1.seq, r1.prev) == (1, r0.hash)
    check_chain(r0, r1)
    r1.verify()
    with pytest.raises(RootChainError):
        new_root(sk, nonce=8, last=r1)
    tampered = dataclasses.replace(r1, time=3)
    tampered = dataclasses.replace(tampered, hash=tampered.compute_hash())
    with pytest.raises(RootVerifyError):
        tampered.verify()


@given(st.binary(max_size=400))
def test_random_bytes_raise_only_the_typed_error(data: bytes) -> None:
    try:
        root = Root.decode(data)
    except SkyEncError:
        return
    assert data.startswith(root.encode())


@given(
    st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))),
    st.binary(max_size=50),
    st.integers(0, 2**64 - 1),
    st.integers(-(2**63), 2**63 - 1),
)
def test_roundtrip(refs: list[tuple[bytes, bytes]], desc: bytes, nonce: int, t: int) -> None:
    sk = SecKey.from_hex(CXO["context"]["keys"][2]["sk"])
    root = new_root(sk, nonce=nonce, refs=[Dynamic(*r) for r in refs], descriptor=desc, time_ns=t)
    again = verify_received(root.pub, root.encode(), root.sig)
    assert again == root
    for cut in range(0, len(root.encode()), 7):
        with pytest.raises(SkyEncError):
            Root.decode(root.encode()[:cut])
