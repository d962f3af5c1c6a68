"""Noise transport messages: the per-direction cipher and the ``u16 BE length ‖ body`` frames.

A transport body is ``u64 BE nonce ‖ ciphertext ‖ tag`` (ChaCha20-Poly1305; the first nonce is
1), at most 4094 bytes, so at most 4070 bytes of plaintext. A stream of them is sealed and opened
in bulk here: :meth:`TransportCipher.seal_frames` seals a whole write into one buffer in place,
and :class:`FrameOpener` splits whatever bytes arrived into frames and opens them in place into
one plaintext buffer (no per-frame copies; the cipher reads and writes the buffers directly).
The handshake itself lives in :mod:`skywire.wire.noise`.
"""

from __future__ import annotations

import struct
from collections import deque

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from skywire.wire.errors import NoiseError

__all__ = [
    "AUTH_SIZE",
    "MAX_BODY_LEN",
    "MAX_FRAME_SIZE",
    "MAX_PLAINTEXT",
    "NONCE_LEN",
    "PREFIX_LEN",
    "TAG_LEN",
    "DecryptError",
    "FrameError",
    "FrameOpener",
    "FrameReader",
    "NonceWindow",
    "TransportCipher",
    "aead_nonce",
    "frame",
    "split_frames",
]

TAG_LEN = 16
NONCE_LEN = 8
PREFIX_LEN = 2
MAX_FRAME_SIZE = 4096
MAX_BODY_LEN = MAX_FRAME_SIZE - PREFIX_LEN  # 4094
AUTH_SIZE = NONCE_LEN + TAG_LEN  # 24
MAX_PLAINTEXT = MAX_FRAME_SIZE - PREFIX_LEN - AUTH_SIZE  # 4070

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_ZERO4 = bytes(4)
_HEADER = struct.Struct(">HQ")  # a transport frame's length prefix and nonce


class DecryptError(NoiseError):
    """A transport message failed authentication, or its nonce was not accepted."""


class FrameError(NoiseError):
    """A frame is malformed (too long, too short)."""


def aead_nonce(n: int) -> bytes:
    """The 12-byte ChaCha20-Poly1305 nonce of counter ``n`` (4 zero bytes, then ``n`` LE)."""
    return _ZERO4 + n.to_bytes(8, "little")


class NonceWindow:
    """Upstream's replay window for a session's signed objects (spec pq-hybrid §8): nonce 0
    is refused; one above the highest seen is taken and moves the window; one at most
    ``size - 1`` below it is taken once; a repeat or an older one is refused. The nonce is
    recorded before the AEAD check, as upstream does."""

    __slots__ = ("_seen", "highest", "size")

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self.highest = 0
        self._seen = bytearray(size)

    def check(self, n: int) -> None:
        if n == 0:
            raise DecryptError("noise: received decryption nonce (0) is invalid")
        if n > self.highest:
            for m in range(self.highest + 1, min(n, self.highest + self.size + 1)):
                self._seen[m % self.size] = 0  # slots that scroll out of the window
            self.highest = n
            self._seen[n % self.size] = 1
            return
        if self.highest - n >= self.size:
            raise DecryptError(f"noise: received decryption nonce ({n}) is too old")
        if self._seen[n % self.size]:
            raise DecryptError(f"noise: received decryption nonce ({n}) is repeated")
        self._seen[n % self.size] = 1


class TransportCipher:
    """One direction of a transport: ChaCha20-Poly1305 with explicit 8-byte nonces."""

    __slots__ = ("_aead", "key", "nonce", "window")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._aead = ChaCha20Poly1305(key)
        self.nonce = 0
        self.window = NonceWindow()

    def seal(self, plaintext: bytes | memoryview) -> bytes:
        """``u64 BE nonce ‖ ciphertext ‖ tag``, with the next nonce."""
        self.nonce += 1
        n = self.nonce
        return _U64.pack(n) + self._aead.encrypt(aead_nonce(n), plaintext, None)

    def seal_frames(self, data: bytes | memoryview) -> bytes:
        """``data`` as consecutive frames of at most :data:`MAX_PLAINTEXT` bytes each, every
        one ``u16 BE length ‖ u64 BE nonce ‖ ciphertext ‖ tag``, sealed in place into one
        buffer."""
        size = len(data)
        if not size:
            return b""
        frames = -(-size // MAX_PLAINTEXT)
        out = bytearray(size + frames * (PREFIX_LEN + AUTH_SIZE))
        dst = memoryview(out)
        src = memoryview(data)
        aead = self._aead
        n = self.nonce
        pos = 0
        for off in range(0, size, MAX_PLAINTEXT):
            chunk = src[off : off + MAX_PLAINTEXT]
            k = len(chunk)
            n += 1
            _HEADER.pack_into(out, pos, k + AUTH_SIZE, n)
            start = pos + PREFIX_LEN + NONCE_LEN
            pos = start + k + TAG_LEN
            aead.encrypt_into(aead_nonce(n), chunk, None, dst[start:pos])
        self.nonce = n
        dst.release()
        return bytes(out)

    def open(self, body: bytes, *, strict: bool = True) -> bytes:
        """Decrypt ``u64 BE nonce ‖ ciphertext ‖ tag``.

        With ``strict`` (streams), the nonce must be greater than the last accepted one; without
        it (a session's signed objects, which travel on several yamux streams) the replay
        window decides (:class:`NonceWindow`): out of order within 1024 is fine, twice is not.
        """
        if len(body) < NONCE_LEN:
            raise DecryptError("noise: transport message shorter than its nonce")
        (n,) = _U64.unpack_from(body)
        if strict and n <= self.nonce:
            raise DecryptError(f"noise: nonce {n} not above the last accepted nonce {self.nonce}")
        if not strict:
            self.window.check(n)
        try:
            pt = self._aead.decrypt(aead_nonce(n), body[NONCE_LEN:], None)
        except InvalidTag as exc:
            raise DecryptError("noise: transport message failed authentication") from exc
        if strict:
            self.nonce = n
        return pt


def frame(body: bytes) -> bytes:
    """``u16 BE length ‖ body``, as each handshake message travels."""
    if len(body) > 0xFFFF:
        raise FrameError("noise: frame body too large")
    return _U16.pack(len(body)) + body


def split_frames(buf: bytes | bytearray | memoryview, max_body: int) -> tuple[list[int], int]:
    """The whole ``u16 BE length ‖ body`` frames at the start of ``buf``: the offset of each
    body (its length is the two bytes before it) and the offset just past the last one.
    Raises :class:`FrameError` for a length over ``max_body``."""
    bodies: list[int] = []
    end = len(buf)
    off = 0
    while end - off >= PREFIX_LEN:
        n = buf[off] << 8 | buf[off + 1]
        if n > max_body:
            raise FrameError(f"noise: frame length {n} exceeds {max_body}")
        if end - off - PREFIX_LEN < n:
            break
        off += PREFIX_LEN
        bodies.append(off)
        off += n
    return bodies, off


class FrameReader:
    """Incremental splitter of ``u16 BE length ‖ body`` frames.

    ``max_body`` bounds what a peer may announce; anything longer is fatal, as it is for the
    reference reader.
    """

    __slots__ = ("_buf", "_frames", "max_body")

    def __init__(self, max_body: int = MAX_BODY_LEN) -> None:
        self._buf = bytearray()
        self._frames: deque[bytes] = deque()
        self.max_body = max_body

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        bodies, off = split_frames(buf, self.max_body)
        for start in bodies:
            self._frames.append(bytes(buf[start : start + (buf[start - 2] << 8 | buf[start - 1])]))
        if off:
            del buf[:off]

    def next_frame(self) -> bytes | None:
        return self._frames.popleft() if self._frames else None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return len(self._buf)

    def take_buffer(self) -> bytes:
        """Hand back (and forget) every byte not yet returned as a frame, whole frames first."""
        out = b"".join(frame(f) for f in self._frames) + bytes(self._buf)
        self._frames.clear()
        self._buf.clear()
        return out


class FrameOpener:
    """Transport frames in, plaintext out, for a stream (strictly increasing nonces).

    :meth:`feed` takes whatever bytes arrived, opens every whole frame among them in place
    into one buffer and keeps the rest for the next call. Empty frames add nothing. A frame
    announced longer than ``max_body`` raises :class:`FrameError`; a body too short to hold
    its nonce and tag, a nonce not above the last one, or a failed tag :class:`DecryptError`
    (the stream is then unusable, as with the reference reader).
    """

    __slots__ = ("_cipher", "_rest", "max_body")

    def __init__(self, cipher: TransportCipher, max_body: int = MAX_BODY_LEN) -> None:
        self._cipher = cipher
        self._rest = bytearray()
        self.max_body = max_body

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return len(self._rest)

    def feed(self, data: bytes | bytearray | memoryview) -> bytearray:
        rest = self._rest
        if rest:
            rest += data
            src = memoryview(rest)
        else:
            src = memoryview(data)
        try:
            return self._open(src)
        finally:
            src.release()

    def _open(self, src: memoryview) -> bytearray:
        end = len(src)
        spans, off = split_frames(src, self.max_body)
        total = 0
        for start in spans:
            n = src[start - 2] << 8 | src[start - 1]
            if n < AUTH_SIZE:
                raise DecryptError("noise: transport message shorter than its nonce and tag")
            total += n - AUTH_SIZE
        out = bytearray(total)
        dst = memoryview(out)
        cipher = self._cipher
        aead = cipher._aead
        last = cipher.nonce
        pos = 0
        for start in spans:
            n = src[start - 2] << 8 | src[start - 1]
            nonce = int.from_bytes(src[start : start + NONCE_LEN], "big")
            if nonce <= last:
                raise DecryptError(f"noise: nonce {nonce} not above the last accepted nonce {last}")
            k = n - AUTH_SIZE
            try:
                aead.decrypt_into(
                    aead_nonce(nonce), src[start + NONCE_LEN : start + n], None, dst[pos : pos + k]
                )
            except InvalidTag as exc:
                raise DecryptError("noise: transport message failed authentication") from exc
            cipher.nonce = last = nonce
            pos += k
        dst.release()
        if off == end:
            self._rest = bytearray()
        else:
            self._rest = bytearray(src[off:])
        return out
