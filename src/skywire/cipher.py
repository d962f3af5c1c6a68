"""secp256k1 keys, recoverable signatures and ECDH, as every Skywire node uses them.

* :class:`PubKey`: 33-byte compressed point; text form lower-case hex (66 chars); the null key is
  33 zero bytes and is what an all-``'0'`` (or empty) text decodes to.
* :class:`SecKey`: 32-byte big-endian scalar ``k`` with ``0 < k < n``.
* :class:`Sig`: 65 bytes ``r ‖ s ‖ recovery id`` with low S.
* Signing is ECDSA over ``SHA-256(payload)``; verification recovers the key from the signature and
  compares it, then applies the same validity checks as the reference implementation.
* :func:`ecdh` is ``SHA-256(compressed(sk·PK))``; the Noise DH appends one zero byte to it.

libsecp256k1 (through coincurve) does the curve work.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import coincurve

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = CURVE_ORDER >> 1

PUBKEY_LEN = 33
SECKEY_LEN = 32
SIG_LEN = 65
SHA256_LEN = 32


class CipherError(ValueError):
    """A key, signature or hash was refused; the message is the reference implementation's text."""


class InvalidPubKeyError(CipherError):
    """Bytes or text that are not a valid compressed secp256k1 point."""


class InvalidSecKeyError(CipherError):
    """A secret key outside ``0 < k < n``."""


class SignatureError(CipherError):
    """A signature that does not verify against the expected key and hash."""


# The reference implementation's messages, kept verbatim so that logs and errors line up.
ERR_PUBKEY_LENGTH = "Invalid public key length"
ERR_PUBKEY = "Invalid public key"
ERR_NULL_SECKEY = "Attempt to load null seckey, unsafe"
ERR_SECKEY_RANGE = "Invalid secret key: not below the curve order"
ERR_SECKEY_LENGTH = "Invalid secret key length"
ERR_SIG_LENGTH = "Invalid signature length"
ERR_RECOVER = "Failed to recover pubkey from signature"
ERR_RECOVER_MISMATCH = "Recovered pubkey does not match pubkey"
ERR_SIG_VALIDITY = "VerifySignatureRecoverPubKey, VerifySignatureValidity failed"
ERR_SIG_FOR_PUBKEY = "Signature not valid for pubkey"
ERR_NULL_HASH = "Cannot sign null hash digest"


def sha256(data: bytes) -> bytes:
    """Plain SHA-256."""
    return hashlib.sha256(data).digest()


def _hex_decode(text: str, error: type[CipherError], what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise error(f"{what}: invalid hex") from exc


@dataclass(frozen=True, slots=True)
class PubKey:
    """A compressed secp256k1 public key, or the null key (33 zero bytes)."""

    raw: bytes

    NULL: ClassVar[PubKey]

    def __post_init__(self) -> None:
        if len(self.raw) != PUBKEY_LEN:
            raise InvalidPubKeyError(ERR_PUBKEY_LENGTH)

    @classmethod
    def from_bytes(cls, data: bytes) -> PubKey:
        """Parse 33 bytes; refuses anything that is not a point on the curve (the null key too)."""
        data = bytes(data)
        if len(data) != PUBKEY_LEN:
            raise InvalidPubKeyError(ERR_PUBKEY_LENGTH)
        if not _is_valid_point(data):
            raise InvalidPubKeyError(ERR_PUBKEY)
        return cls(data)

    @classmethod
    def from_hex(cls, text: str) -> PubKey:
        """Parse the text form; an empty or all-``'0'`` string is the null key."""
        if text.strip("0") == "":
            return cls.NULL
        if len(text) != 2 * PUBKEY_LEN:
            raw = _hex_decode(text, InvalidPubKeyError, ERR_PUBKEY)
            raise InvalidPubKeyError(ERR_PUBKEY_LENGTH if raw or not text else ERR_PUBKEY)
        return cls.from_bytes(_hex_decode(text, InvalidPubKeyError, ERR_PUBKEY))

    @classmethod
    def from_dns_label(cls, label: str) -> PubKey:
        """Parse the 53-character base32 (RFC 4648, lower case, unpadded) DNS-label form."""
        if len(label) != 53:
            raise InvalidPubKeyError(ERR_PUBKEY_LENGTH)
        try:
            raw = base64.b32decode(label.upper() + "===", casefold=False)
        except (ValueError, TypeError) as exc:
            raise InvalidPubKeyError(f"{ERR_PUBKEY}: invalid base32") from exc
        return cls.from_bytes(raw)

    @classmethod
    def parse(cls, text: str) -> PubKey:
        """Accept either the hex form or the base32 DNS-label form."""
        if len(text) == 53:
            return cls.from_dns_label(text)
        return cls.from_hex(text)

    def hex(self) -> str:
        return self.raw.hex()

    def dns_label(self) -> str:
        """53-character lower-case base32, usable as one DNS label."""
        return base64.b32encode(self.raw).decode().rstrip("=").lower()

    def is_null(self) -> bool:
        return self.raw == bytes(PUBKEY_LEN)

    def validate(self) -> None:
        """Raise unless this is a non-null point on the curve."""
        if not _is_valid_point(self.raw):
            raise InvalidPubKeyError(ERR_PUBKEY)

    # gob BinaryMarshaler shape
    def marshal_binary(self) -> bytes:
        return self.raw

    @classmethod
    def unmarshal_binary(cls, data: bytes) -> Self:
        pk = cls.from_bytes(data)
        return cls(pk.raw)

    def __bytes__(self) -> bytes:
        return self.raw

    def __str__(self) -> str:
        return self.raw.hex()

    def __repr__(self) -> str:
        return f"PubKey({self.raw.hex()})"

    def __lt__(self, other: PubKey) -> bool:
        return self.raw < other.raw

    # pydantic v2 integration: JSON is the hex string
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def _validate(value: Any) -> PubKey:
            if isinstance(value, PubKey):
                return value
            if isinstance(value, str):
                return cls.from_hex(value)
            raise InvalidPubKeyError("public key must be a hex string")

        return core_schema.no_info_plain_validator_function(
            _validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda pk: pk.hex(), when_used="always"
            ),
        )


PubKey.NULL = PubKey(bytes(PUBKEY_LEN))


def _is_valid_point(raw: bytes) -> bool:
    if raw[0] not in (2, 3):
        return False
    try:
        coincurve.PublicKey(raw)
    except (ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class SecKey:
    """A secp256k1 secret key (``0 < k < n``)."""

    raw: bytes = b""

    def __post_init__(self) -> None:
        if len(self.raw) != SECKEY_LEN:
            raise InvalidSecKeyError(ERR_SECKEY_LENGTH)
        k = int.from_bytes(self.raw, "big")
        if k == 0:
            raise InvalidSecKeyError(ERR_NULL_SECKEY)
        if k >= CURVE_ORDER:
            raise InvalidSecKeyError(ERR_SECKEY_RANGE)

    @classmethod
    def from_hex(cls, text: str) -> SecKey:
        return cls(_hex_decode(text, InvalidSecKeyError, ERR_SECKEY_LENGTH))

    @classmethod
    def generate(cls) -> SecKey:
        while True:
            raw = os.urandom(SECKEY_LEN)
            if 0 < int.from_bytes(raw, "big") < CURVE_ORDER:
                return cls(raw)

    def hex(self) -> str:
        return self.raw.hex()

    def pubkey(self) -> PubKey:
        return PubKey(_private(self.raw).public_key.format(compressed=True))

    def sign(self, payload: bytes) -> Sig:
        """Sign ``SHA-256(payload)``."""
        return self.sign_hash(sha256(payload))

    def sign_hash(self, digest: bytes) -> Sig:
        if len(digest) != SHA256_LEN:
            raise CipherError("Invalid hash length")
        if digest == bytes(SHA256_LEN):
            raise CipherError(ERR_NULL_HASH)
        return Sig(_private(self.raw).sign_recoverable(digest, hasher=None))

    def ecdh(self, pk: PubKey) -> bytes:
        """``SHA-256(compressed(self·pk))``: 32 bytes."""
        return ecdh(pk, self)

    def __repr__(self) -> str:
        return "SecKey(<hidden>)"

    # pydantic v2 integration: JSON is the hex string
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def _validate(value: Any) -> SecKey:
            if isinstance(value, SecKey):
                return value
            if isinstance(value, str):
                return cls.from_hex(value)
            raise InvalidSecKeyError("secret key must be a hex string")

        return core_schema.no_info_plain_validator_function(
            _validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda sk: sk.hex(), when_used="always"
            ),
        )


_PRIVATE_CACHE: dict[bytes, coincurve.PrivateKey] = {}


def _private(raw: bytes) -> coincurve.PrivateKey:
    key = _PRIVATE_CACHE.get(raw)
    if key is None:
        if len(_PRIVATE_CACHE) > 1024:
            _PRIVATE_CACHE.clear()
        key = _PRIVATE_CACHE[raw] = coincurve.PrivateKey(raw)
    return key


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A secret key and its public key."""

    pk: PubKey
    sk: SecKey

    @classmethod
    def generate(cls) -> KeyPair:
        sk = SecKey.generate()
        return cls(sk.pubkey(), sk)

    @classmethod
    def from_seckey(cls, sk: SecKey) -> KeyPair:
        return cls(sk.pubkey(), sk)


@dataclass(frozen=True, slots=True)
class Sig:
    """A 65-byte recoverable signature ``r ‖ s ‖ recovery id``."""

    raw: bytes

    NULL: ClassVar[Sig]

    def __post_init__(self) -> None:
        if len(self.raw) != SIG_LEN:
            raise SignatureError(ERR_SIG_LENGTH)

    @classmethod
    def from_hex(cls, text: str) -> Sig:
        return cls(_hex_decode(text, SignatureError, ERR_SIG_LENGTH))

    def hex(self) -> str:
        return self.raw.hex()

    def is_null(self) -> bool:
        return self.raw == bytes(SIG_LEN)

    def recover(self, digest: bytes) -> PubKey:
        """The public key that made this signature over ``digest``."""
        if len(digest) != SHA256_LEN:
            raise SignatureError("Invalid hash length")
        # Only the two low bits of the recovery id take part in recovery; the validity check
        # refuses ids of 4 and above afterwards.
        recid = self.raw[64] & 3
        try:
            pub = coincurve.PublicKey.from_signature_and_message(
                self.raw[:64] + bytes((recid,)), digest, hasher=None
            )
        except (ValueError, TypeError) as exc:
            raise SignatureError(ERR_RECOVER) from exc
        return PubKey(pub.format(compressed=True))

    def __bytes__(self) -> bytes:
        return self.raw

    def __str__(self) -> str:
        return self.raw.hex()


Sig.NULL = Sig(bytes(SIG_LEN))


def verify_hash(pk: PubKey, sig: Sig, digest: bytes) -> None:
    """Raise :class:`SignatureError` unless ``sig`` is ``pk``'s signature of ``digest``.

    Recovery first, then comparison, then the validity checks (low S, recovery id below 4), then a
    plain ECDSA verification: the same order, and so the same error, as the reference.
    """
    recovered = sig.recover(digest)
    if recovered != pk:
        raise SignatureError(ERR_RECOVER_MISMATCH)
    if not _is_valid_point(pk.raw):
        raise InvalidPubKeyError(ERR_PUBKEY)
    if sig.raw[32] >> 7 != 0 or sig.raw[64] >= 4:
        raise SignatureError(ERR_SIG_VALIDITY)
    r = int.from_bytes(sig.raw[0:32], "big")
    s = int.from_bytes(sig.raw[32:64], "big")
    if not (0 < r < CURVE_ORDER and 0 < s <= _HALF_ORDER):
        raise SignatureError(ERR_SIG_VALIDITY)
    if not coincurve.PublicKey(pk.raw).verify(_to_der(r, s), digest, hasher=None):
        raise SignatureError(ERR_SIG_FOR_PUBKEY)


def verify(pk: PubKey, sig: Sig, payload: bytes) -> None:
    """Raise :class:`SignatureError` unless ``sig`` signs ``SHA-256(payload)`` under ``pk``."""
    verify_hash(pk, sig, sha256(payload))


def sign(sk: SecKey, payload: bytes) -> Sig:
    return sk.sign(payload)


def _der_int(v: int) -> bytes:
    b = v.to_bytes((v.bit_length() + 8) // 8 or 1, "big")
    return b"\x02" + bytes((len(b),)) + b


def _to_der(r: int, s: int) -> bytes:
    body = _der_int(r) + _der_int(s)
    return b"\x30" + bytes((len(body),)) + body


def ecdh(pk: PubKey, sk: SecKey) -> bytes:
    """``SHA-256(compressed(sk·pk))``."""
    if pk.is_null():
        raise InvalidPubKeyError(ERR_PUBKEY)
    try:
        return bytes(_private(sk.raw).ecdh(pk.raw))
    except (ValueError, TypeError) as exc:
        raise InvalidPubKeyError(ERR_PUBKEY) from exc


def noise_dh(sk: SecKey, pk: PubKey) -> bytes:
    """The 33-byte Noise DH output: :func:`ecdh` followed by one zero byte."""
    return ecdh(pk, sk) + b"\x00"


def _iterator_step(seed: bytes) -> bytes:
    """Hash ``seed`` until it is a valid secret key (always at least once)."""
    s = sha256(seed)
    while not 0 < int.from_bytes(s, "big") < CURVE_ORDER:
        s = sha256(s)
    return s


def secp256k1_hash(seed: bytes) -> bytes:
    """SHA-256 salted with a curve multiplication; the seed expansion of deterministic keys."""
    h = sha256(seed)
    sec = _iterator_step(h)
    pub = _private(_iterator_step(sha256(h))).public_key.format(compressed=True)
    point = coincurve.PublicKey(pub).multiply(sec).format(compressed=True)
    return sha256(h + point)


def deterministic_keypair(seed: bytes) -> KeyPair:
    """The key pair the reference derives from ``seed`` (fixtures and tools only)."""
    if not seed:
        raise CipherError("empty seed")
    seed1 = secp256k1_hash(seed)
    sk = SecKey(_iterator_step(sha256(seed + seed1)))
    return KeyPair.from_seckey(sk)
