"""The post-quantum half of the hybrid Noise handshakes (sans-I/O): ML-KEM-768 in the
handshake payloads, the HKDF combiner, and the process-wide policy.

As upstream (spec pq-hybrid.md): the initiator's first message carries a fresh ML-KEM-768
encapsulation key (1184 bytes) as its Noise payload; a responder that understands it answers
with the ciphertext (1088 bytes) in its next message; both then replace each transport key
``k`` by ``HKDF-SHA256(salt = handshake hash, IKM = k ‖ ss, info = "skywire-pq-hybrid-v1")``.
A peer that sends no ciphertext leaves the session classical, in the same round trip, unless
the policy requires PQ (``SKYWIRE_REQUIRE_PQ`` set to anything non-empty, as upstream).

ML-KEM comes from ``cryptography`` (FIPS 203 final, not round-3 Kyber).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "CLASSICAL",
    "CT_LEN",
    "EK_LEN",
    "INFO",
    "REQUIRE_ENV",
    "REQUIRE_PQ_ERROR",
    "SS_LEN",
    "PQDecapsulator",
    "PQPolicy",
    "combine",
    "default_policy",
    "encapsulate",
    "policy_from_env",
    "set_default_policy",
    "stats",
]

EK_LEN = 1184
"""An ML-KEM-768 encapsulation key: the initiator's first payload."""
CT_LEN = 1088
"""An ML-KEM-768 ciphertext: the responder's answer."""
SS_LEN = 32
INFO = b"skywire-pq-hybrid-v1"
REQUIRE_ENV = "SKYWIRE_REQUIRE_PQ"
REQUIRE_PQ_ERROR = (
    "post-quantum required (SKYWIRE_REQUIRE_PQ) but the session negotiated classical-only "
    "\u2014 refusing the handshake"
)


@dataclass(frozen=True, slots=True)
class PQPolicy:
    """``offer``: take part in the hybrid (offer as initiator, answer as responder);
    ``require``: refuse a handshake that ends classical-only."""

    offer: bool = True
    require: bool = False


CLASSICAL = PQPolicy(offer=False, require=False)


def policy_from_env(env: Mapping[str, str]) -> PQPolicy:
    """Upstream's switch: ``SKYWIRE_REQUIRE_PQ`` set to any non-empty value requires PQ."""
    return PQPolicy(offer=True, require=bool(env.get(REQUIRE_ENV, "")))


_default = policy_from_env(os.environ)

#: handshakes completed in this process, by outcome: "hybrid", "classical", and of the
#: classical ones "downgraded" (we offered a key and the peer answered classically)
stats: dict[str, int] = {"hybrid": 0, "classical": 0, "downgraded": 0}


def default_policy() -> PQPolicy:
    """The policy of handshakes that name none (read from the environment at import)."""
    return _default


def set_default_policy(policy: PQPolicy) -> None:
    """Set the process-wide policy (a visor's ``require_pq`` config, before it starts)."""
    global _default
    _default = policy


class PQDecapsulator:
    """The initiator's ephemeral ML-KEM-768 key pair; ``seed`` (64 bytes) fixes it for tests."""

    __slots__ = ("_key",)

    def __init__(self, seed: bytes | None = None) -> None:
        if seed is None:
            self._key = mlkem.MLKEM768PrivateKey.generate()
        else:
            self._key = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)

    @property
    def encapsulation_key(self) -> bytes:
        return self._key.public_key().public_bytes_raw()

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """The shared secret; any correctly sized ciphertext gives one (implicit rejection)."""
        return self._key.decapsulate(ciphertext)


def encapsulate(encapsulation_key: bytes) -> tuple[bytes, bytes] | None:
    """``(shared secret, ciphertext)`` for a peer's key, or None when it is not a valid
    ML-KEM-768 encapsulation key (wrong size, or failing the FIPS 203 modulus check)."""
    if len(encapsulation_key) != EK_LEN:
        return None
    try:
        key = mlkem.MLKEM768PublicKey.from_public_bytes(encapsulation_key)
    except ValueError:
        return None
    secret, ciphertext = key.encapsulate()
    return secret, ciphertext


def combine(key: bytes, secret: bytes, channel_binding: bytes) -> bytes:
    """``HKDF-SHA256(salt = channel_binding, IKM = key ‖ secret, info = INFO, L = 32)``."""
    return HKDF(hashes.SHA256(), 32, salt=channel_binding, info=INFO).derive(key + secret)
