"""Noise XK and KK over secp256k1 with ChaCha20-Poly1305 and SHA-256, as dmsg speaks it.

Sans-I/O: :class:`Noise` turns handshake messages and transport frames into bytes and back, with
no sockets. The asyncio side lives in :mod:`skywire.wire.noise_aio`.

What differs from textbook Noise, and is reproduced here on purpose:

* the DH output is ``SHA-256(compressed(sk·PK)) ‖ 0x00`` (33 bytes, so ``DHLEN = 33``);
* after ``Split()`` the party that *wrote* the final handshake message encrypts with the second
  key and the other party with the first (for XK the initiator therefore sends with ``cs2``);
* transport messages carry an explicit 8-byte big-endian nonce (the first is 1) ahead of the
  ciphertext; a receiver of a stream accepts only strictly increasing nonces;
* on the wire every handshake message and every transport message is one frame
  ``u16 BE length ‖ body``; a transport body is at most 4094 bytes, i.e. 4070 bytes of plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from enum import Enum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from skywire.cipher import CipherError, PubKey, SecKey, noise_dh
from skywire.wire.errors import NoiseError
from skywire.wire.noise_frames import (
    TAG_LEN,
    FrameError,
    FrameOpener,
    TransportCipher,
    aead_nonce,
    frame,
)
from skywire.wire.pq import (
    CT_LEN,
    EK_LEN,
    REQUIRE_PQ_ERROR,
    PQDecapsulator,
    PQPolicy,
    combine,
    default_policy,
    encapsulate,
    stats,
)

__all__ = [
    "DH_LEN",
    "HASH_LEN",
    "HandshakeError",
    "Noise",
    "PQRequiredError",
    "Pattern",
    "Role",
    "TransportDecoder",
]

log = logging.getLogger("skywire.noise")

HASH_LEN = 32
DH_LEN = 33


class Pattern(Enum):
    """The two handshake patterns Skywire uses."""

    XK = "XK"  # dmsg session: the initiator knows the responder's static key
    KK = "KK"  # dmsg stream, transports, route groups: both know each other's static key

    @property
    def protocol_name(self) -> bytes:
        return f"Noise_{self.value}_Secp256k1_ChaChaPoly_SHA256".encode()


class Role(Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class HandshakeError(NoiseError):
    """A handshake message could not be produced or processed."""


class PQRequiredError(HandshakeError):
    """The post-quantum policy requires the hybrid and the peer completed classically."""

    def __init__(self) -> None:
        super().__init__(REQUIRE_PQ_ERROR)


def _hkdf(chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    temp = hmac.digest(chaining_key, ikm, "sha256")
    out1 = hmac.digest(temp, b"\x01", "sha256")
    out2 = hmac.digest(temp, out1 + b"\x02", "sha256")
    return out1, out2


class _CipherState:
    """A handshake-phase cipher: implicit nonce counter, reset by each key change."""

    __slots__ = ("_aead", "n")

    def __init__(self) -> None:
        self._aead: ChaCha20Poly1305 | None = None
        self.n = 0

    def initialize_key(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.n = 0

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        out = self._aead.encrypt(aead_nonce(self.n), plaintext, ad)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self._aead is None:
            return ciphertext
        try:
            out = self._aead.decrypt(aead_nonce(self.n), ciphertext, ad)
        except InvalidTag as exc:
            raise HandshakeError("noise: handshake message failed authentication") from exc
        self.n += 1
        return out


class _SymmetricState:
    __slots__ = ("ck", "cs", "h")

    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) <= HASH_LEN:
            self.h = protocol_name.ljust(HASH_LEN, b"\x00")
        else:
            self.h = hashlib.sha256(protocol_name).digest()
        self.ck = self.h
        self.cs = _CipherState()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = _hkdf(self.ck, ikm)
        self.cs.initialize_key(temp_k[:32])

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ct = self.cs.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ct)
        return ct

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        pt = self.cs.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return pt

    def split(self) -> tuple[bytes, bytes]:
        k1, k2 = _hkdf(self.ck, b"")
        return k1, k2


# Message token lists, per pattern.
_MESSAGES: dict[Pattern, tuple[tuple[str, ...], ...]] = {
    Pattern.XK: (("e", "es"), ("e", "ee"), ("s", "se")),
    Pattern.KK: (("e", "es", "ss"), ("e", "ee", "se")),
}


class Noise:
    """One side of a Noise XK or KK handshake, then its transport ciphers.

    ``ephemeral`` fixes the ephemeral key (tests reproduce the golden vectors with it); normally
    a fresh one is drawn. ``pq`` is the post-quantum policy (:mod:`skywire.wire.pq`; the
    process default when None): with ``offer``, the initiator's first message carries an
    ML-KEM-768 key, a responder answers one with a ciphertext, and both re-key the transport
    ciphers from the shared secret (:attr:`pq_active`). ``pq_seed`` fixes the ML-KEM key.
    """

    def __init__(
        self,
        pattern: Pattern,
        role: Role,
        local_sk: SecKey,
        remote_pk: PubKey | None = None,
        *,
        ephemeral: SecKey | None = None,
        pq: PQPolicy | None = None,
        pq_seed: bytes | None = None,
    ) -> None:
        self.pattern = pattern
        self.role = role
        self.local_sk = local_sk
        self.local_pk = local_sk.pubkey()
        needs_remote = pattern is Pattern.KK or role is Role.INITIATOR
        if needs_remote and (remote_pk is None or remote_pk.is_null()):
            raise HandshakeError(f"noise: {pattern.value} {role.value} needs the remote static key")
        self.remote_pk: PubKey | None = remote_pk if needs_remote else None
        self._e = ephemeral or SecKey.generate()
        self._re: PubKey | None = None
        self._ss = _SymmetricState(pattern.protocol_name)
        self._ss.mix_hash(b"")  # empty prologue, still mixed in
        if pattern is Pattern.KK:
            initiator_pk = self.local_pk if role is Role.INITIATOR else remote_pk
            responder_pk = remote_pk if role is Role.INITIATOR else self.local_pk
            assert initiator_pk is not None and responder_pk is not None
            self._ss.mix_hash(initiator_pk.raw)
            self._ss.mix_hash(responder_pk.raw)
        else:
            responder_pk = remote_pk if role is Role.INITIATOR else self.local_pk
            assert responder_pk is not None
            self._ss.mix_hash(responder_pk.raw)
        self._messages = _MESSAGES[pattern]
        self._index = 0
        self.send: TransportCipher | None = None
        self.recv: TransportCipher | None = None
        self.handshake_hash: bytes = b""
        self.split_keys: tuple[bytes, bytes] = (b"", b"")
        self.pq_policy = pq if pq is not None else default_policy()
        self._pq_seed = pq_seed
        self._pq_key: PQDecapsulator | None = None  # the initiator's, once offered
        self._pq_reply = b""  # the responder's ciphertext, until sent
        self.pq_secret: bytes | None = None
        self.pq_active = False  # the transport keys are the hybrid ones
        self.pq_downgraded = False  # offered, and the peer sent no ciphertext

    # --- handshake -----------------------------------------------------------------------
    @property
    def handshake_finished(self) -> bool:
        return self.send is not None

    def my_turn(self) -> bool:
        """Whether the next handshake message is ours to write."""
        initiator_turn = self._index % 2 == 0
        return initiator_turn == (self.role is Role.INITIATOR)

    def _dh(self, token: str) -> bytes:
        """The DH for a token, from this side's point of view."""
        i_am_initiator = self.role is Role.INITIATOR
        # Token letters name (initiator key, responder key).
        mine, theirs = (token[0], token[1]) if i_am_initiator else (token[1], token[0])
        sk = self._e if mine == "e" else self.local_sk
        pk = self._re if theirs == "e" else self.remote_pk
        if pk is None:
            raise HandshakeError("noise: remote key missing for DH")
        try:
            return noise_dh(sk, pk)
        except CipherError as exc:
            raise HandshakeError(f"noise: DH failed: {exc}") from exc

    def write_message(self, payload: bytes | None = None) -> bytes:
        """Produce the next handshake message (this side's turn). Without ``payload``, the
        post-quantum one the policy calls for (an ML-KEM key, a ciphertext, or nothing)."""
        if self.handshake_finished or self._index >= len(self._messages):
            raise HandshakeError("noise: handshake already finished")
        if not self.my_turn():
            raise HandshakeError("noise: not this side's turn to write")
        final = self._index + 1 == len(self._messages)
        if final and self.pq_policy.require and self.pq_secret is None:
            raise PQRequiredError()  # and the final message is not sent
        if payload is None:
            payload = self._pq_payload()
        out = bytearray()
        for token in self._messages[self._index]:
            if token == "e":
                epk = self._e.pubkey().raw
                out += epk
                self._ss.mix_hash(epk)
            elif token == "s":
                out += self._ss.encrypt_and_hash(self.local_pk.raw)
            else:
                self._ss.mix_key(self._dh(token))
        out += self._ss.encrypt_and_hash(payload)
        self._advance(wrote=True)
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's next handshake message; returns its (empty) payload."""
        if self.handshake_finished or self._index >= len(self._messages):
            raise HandshakeError("noise: handshake already finished")
        if self.my_turn():
            raise HandshakeError("noise: expected to write, not read")
        msg = memoryview(bytes(message))
        for token in self._messages[self._index]:
            if token == "e":
                if len(msg) < DH_LEN:
                    raise HandshakeError("noise: handshake message too short")
                try:
                    self._re = PubKey.from_bytes(bytes(msg[:DH_LEN]))
                except CipherError as exc:
                    raise HandshakeError(f"noise: bad ephemeral key: {exc}") from exc
                self._ss.mix_hash(self._re.raw)
                msg = msg[DH_LEN:]
            elif token == "s":
                n = DH_LEN + (TAG_LEN if self._ss.cs.has_key else 0)
                if len(msg) < n:
                    raise HandshakeError("noise: handshake message too short")
                raw = self._ss.decrypt_and_hash(bytes(msg[:n]))
                try:
                    self.remote_pk = PubKey.from_bytes(raw)
                except CipherError as exc:
                    raise HandshakeError(f"noise: bad static key: {exc}") from exc
                msg = msg[n:]
            else:
                self._ss.mix_key(self._dh(token))
        if self._ss.cs.has_key and len(msg) < TAG_LEN:
            raise HandshakeError("noise: handshake message too short")
        payload = self._ss.decrypt_and_hash(bytes(msg))
        self._pq_receive(payload)
        self._advance(wrote=False)
        return payload

    def _pq_payload(self) -> bytes:
        if not self.pq_policy.offer:
            return b""
        if self.role is Role.INITIATOR and self._index == 0:
            self._pq_key = PQDecapsulator(self._pq_seed)
            return self._pq_key.encapsulation_key
        reply, self._pq_reply = self._pq_reply, b""
        return reply

    def _pq_receive(self, payload: bytes) -> None:
        """A peer's payload, after its message authenticated: an offer to answer, or the
        answer to ours. Anything else is ignored (classical), never an error."""
        if not self.pq_policy.offer or self.pq_secret is not None:
            return
        if self.role is Role.RESPONDER and self._index == 0 and len(payload) == EK_LEN:
            answered = encapsulate(payload)
            if answered is not None:
                self.pq_secret, self._pq_reply = answered
        elif self.role is Role.INITIATOR and self._pq_key is not None and len(payload) == CT_LEN:
            self.pq_secret = self._pq_key.decapsulate(payload)

    def _advance(self, *, wrote: bool) -> None:
        self._index += 1
        if self._index < len(self._messages):
            return
        k1, k2 = self._ss.split()
        self.split_keys = (k1, k2)
        self.handshake_hash = self._ss.h
        offered, self._pq_key = self._pq_key is not None, None
        if self.pq_secret is not None:
            # the hybrid re-key: each key with the shared secret, salted with the channel
            # binding (the final handshake hash); nonces go on from 0 as before
            k1 = combine(k1, self.pq_secret, self.handshake_hash)
            k2 = combine(k2, self.pq_secret, self.handshake_hash)
            self.pq_active = True
            stats["hybrid"] += 1
        else:
            if self.pq_policy.require:
                raise PQRequiredError()
            stats["classical"] += 1
            if offered:
                self.pq_downgraded = True
                stats["downgraded"] += 1
                log.warning(
                    "post-quantum DOWNGRADE: offered ML-KEM but peer returned no ciphertext; "
                    "session is CLASSICAL-only (older peer, or a payload-stripping MITM)"
                )
        # The writer of the final message sends with the second key.
        send_key, recv_key = (k2, k1) if wrote else (k1, k2)
        self.send = TransportCipher(send_key)
        self.recv = TransportCipher(recv_key)

    # --- transport -----------------------------------------------------------------------
    def _ciphers(self) -> tuple[TransportCipher, TransportCipher]:
        if self.send is None or self.recv is None:
            raise NoiseError("noise: handshake not finished")
        return self.send, self.recv

    def encrypt(self, plaintext: bytes) -> bytes:
        """One transport body (nonce ‖ ciphertext ‖ tag), without the length prefix."""
        return self._ciphers()[0].seal(plaintext)

    def decrypt(self, body: bytes, *, strict: bool = True) -> bytes:
        return self._ciphers()[1].open(body, strict=strict)

    def encode_frames(self, data: bytes | memoryview) -> bytes:
        """Split ``data`` into ≤4070-byte pieces, each sealed and length-prefixed."""
        return self._ciphers()[0].seal_frames(data)

    def encode_object(self, data: bytes) -> bytes:
        """One sealed, length-prefixed frame of up to 64 KiB (a session's signed objects)."""
        body = self._ciphers()[0].seal(data)
        if len(body) > 0xFFFF:
            raise FrameError("noise: object too large for one frame")
        return frame(body)


class TransportDecoder:
    """Transport frames in, plaintext out (strict nonces; empty frames skipped): each
    :meth:`feed` returns the plaintext of every whole frame it completed, as one chunk (an
    empty list when none)."""

    __slots__ = ("_opener",)

    def __init__(self, noise: Noise) -> None:
        self._opener = FrameOpener(noise._ciphers()[1])

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return self._opener.buffered

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytearray]:
        out = self._opener.feed(data)
        return [out] if out else []
