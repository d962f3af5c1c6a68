"""cipher: keys, signatures and ECDH against the upstream golden vectors."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skywire.cipher import (
    CipherError,
    InvalidPubKeyError,
    InvalidSecKeyError,
    KeyPair,
    PubKey,
    SecKey,
    Sig,
    SignatureError,
    deterministic_keypair,
    ecdh,
    noise_dh,
    sha256,
    verify,
    verify_hash,
)
from tests.conftest import load_vectors

CASES = {c["kind"]: c["items"] for c in load_vectors("cipher")["cases"]}


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [str(it.get("name", i)) for i, it in enumerate(items)]


@pytest.mark.parametrize("item", CASES["sk_to_pk"], ids=_ids(CASES["sk_to_pk"]))
def test_sk_to_pk(item: dict[str, Any]) -> None:
    if item["valid"]:
        assert SecKey.from_hex(item["sk"]).pubkey().hex() == item["pk"]
    else:
        with pytest.raises(InvalidSecKeyError) as exc:
            SecKey.from_hex(item["sk"])
        if not item["error"].startswith("PANIC"):
            assert str(exc.value) == item["error"]


@pytest.mark.parametrize("item", CASES["deterministic_keypair_from_seed"])
def test_deterministic_keypair(item: dict[str, Any]) -> None:
    kp = deterministic_keypair(bytes.fromhex(item["seed"]))
    assert kp.sk.hex() == item["sk"]
    assert kp.pk.hex() == item["pk"]


@pytest.mark.parametrize("item", CASES["pubkey_parse"], ids=_ids(CASES["pubkey_parse"]))
def test_pubkey_parse(item: dict[str, Any]) -> None:
    if "bytes" in item:
        raw = bytes.fromhex(item["bytes"])
        if item["NewPubKey_error"] is None:
            assert PubKey.from_bytes(raw).hex() == item["NewPubKey_hex"]
        else:
            with pytest.raises(InvalidPubKeyError) as exc:
                PubKey.from_bytes(raw)
            assert str(exc.value) == item["NewPubKey_error"]
    text = item.get("text", item.get("bytes"))
    if item["UnmarshalText_error"] is None:
        assert PubKey.from_hex(text).hex() == item["UnmarshalText_result"]
    else:
        with pytest.raises(InvalidPubKeyError) as exc:
            PubKey.from_hex(text)
        assert str(exc.value) == item["UnmarshalText_error"]


def test_null_pubkey_text_forms() -> None:
    assert PubKey.from_hex("").is_null()
    assert PubKey.from_hex("0" * 66) is PubKey.NULL
    with pytest.raises(InvalidPubKeyError):
        PubKey.from_hex("zz" * 33)
    with pytest.raises(InvalidPubKeyError):
        PubKey.NULL.validate()


@pytest.mark.parametrize("item", CASES["sha256"])
def test_sha256(item: dict[str, Any]) -> None:
    assert sha256(bytes.fromhex(item["payload"])).hex() == item["sha256"]


@pytest.mark.parametrize("item", CASES["signature_verify"], ids=_ids(CASES["signature_verify"]))
def test_signature_verify(item: dict[str, Any]) -> None:
    pk = PubKey.from_hex(item["pk"])
    sig = Sig.from_hex(item["sig"])
    payload = bytes.fromhex(item["payload"])
    assert hashlib.sha256(payload).hexdigest() == item["hash"]
    if item["valid"]:
        verify(pk, sig, payload)
        verify_hash(pk, sig, bytes.fromhex(item["hash"]))
    else:
        with pytest.raises(SignatureError) as exc:
            verify(pk, sig, payload)
        assert str(exc.value) == item["error"]


def test_sign_null_hash_refused() -> None:
    (item,) = CASES["sign_null_hash"]
    with pytest.raises(CipherError) as exc:
        SecKey.from_hex(item["sk"]).sign_hash(bytes.fromhex(item["hash"]))
    assert str(exc.value) == item["error"]


@pytest.mark.parametrize("item", CASES["ecdh"])
def test_ecdh(item: dict[str, Any]) -> None:
    sk_a = SecKey.from_hex(item["sk_a"])
    pk_b = PubKey.from_hex(item["pk_b"])
    assert ecdh(pk_b, sk_a).hex() == item["cipher_ecdh"]
    assert noise_dh(sk_a, pk_b).hex() == item["noise_dh"]
    if "sk_b" in item:
        sk_b = SecKey.from_hex(item["sk_b"])
        assert ecdh(sk_a.pubkey(), sk_b).hex() == item["cipher_ecdh"]


def test_sign_then_verify_and_low_s() -> None:
    kp = KeyPair.generate()
    for payload in (b"", b"a", b"hello dmsg" * 100):
        sig = kp.sk.sign(payload)
        assert sig.raw[32] >> 7 == 0 and sig.raw[64] < 4
        verify(kp.pk, sig, payload)
        with pytest.raises(SignatureError):
            verify(KeyPair.generate().pk, sig, payload)


def test_dns_label_round_trip() -> None:
    pk = KeyPair.generate().pk
    label = pk.dns_label()
    assert len(label) == 53 and label == label.lower()
    assert PubKey.from_dns_label(label) == pk
    assert PubKey.parse(label) == pk
    assert PubKey.parse(pk.hex()) == pk


@given(st.binary(max_size=70))
def test_random_pubkey_bytes_raise_typed(data: bytes) -> None:
    with contextlib.suppress(InvalidPubKeyError):
        PubKey.from_bytes(data)


@given(st.binary(min_size=65, max_size=65), st.binary(min_size=32, max_size=32))
def test_random_signature_raise_typed(sig: bytes, digest: bytes) -> None:
    pk = SecKey(bytes(31) + b"\x01").pubkey()
    with pytest.raises(CipherError):
        verify_hash(pk, Sig(sig), digest)


@given(st.text(max_size=80))
def test_random_pubkey_text_raise_typed(text: str) -> None:
    with contextlib.suppress(InvalidPubKeyError):
        PubKey.parse(text)
