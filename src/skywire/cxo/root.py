"""The Root: the signed top of one version of a feed.

Encoded fields, in the reference's order::

    Refs []Dynamic | Descriptor []byte | Reg SHA256 | Pub PubKey | Nonce u64 | Seq u64 |
    Time i64 (Unix ns) | Prev SHA256

``sig``, ``hash`` and ``is_full`` are local only. The hash is SHA-256 of the encoded Root *as
received* (decoding ignores trailing bytes but the hash covers them), and the signature is the
feed key's signature of that hash. A received Root is checked against the Feed of the message that
carried it, not against the ``pub`` inside it.

Each head (feed, nonce) is a chain: ``seq`` counts from 0 and ``prev`` is the hash of the
previous Root of the head (zero for seq 0). :func:`new_root` builds the next link and signs it.
"""

from __future__ import annotations

import dataclasses
import time as _time
from collections.abc import Sequence

from skywire.cipher import CipherError, PubKey, SecKey, Sig, verify_hash
from skywire.cxo.objects import ZERO_HASH, Dynamic, ObjectError, object_key
from skywire.wire import skyenc

__all__ = [
    "Root",
    "RootChainError",
    "RootVerifyError",
    "check_chain",
    "new_root",
    "verify_received",
]


class RootVerifyError(ObjectError):
    """A Root whose signature does not verify against the feed (the reference's message)."""


class RootChainError(ObjectError):
    """A Root that does not follow the previous Root of its head."""


_DYNAMICS = skyenc.Slice(skyenc.as_codec(Dynamic))


@skyenc.schema(kw_only=True)
class Root:
    """One version of a feed. Build with :func:`new_root`; parse with :meth:`decode`."""

    refs: list[Dynamic] = skyenc.field(_DYNAMICS, default_factory=list)
    descriptor: bytes = skyenc.field(skyenc.BYTES, default=b"")
    reg: bytes = skyenc.field(skyenc.SHA256, default=ZERO_HASH)
    pub: PubKey = skyenc.field(skyenc.PUBKEY)
    nonce: int = skyenc.field(skyenc.U64, default=0)
    seq: int = skyenc.field(skyenc.U64, default=0)
    time: int = skyenc.field(skyenc.I64, default=0)
    prev: bytes = skyenc.field(skyenc.SHA256, default=ZERO_HASH)
    # local only
    sig: Sig = skyenc.skip(default=Sig.NULL)
    hash: bytes = skyenc.skip(default=ZERO_HASH)
    is_full: bool = skyenc.skip(default=False)

    def encode(self) -> bytes:
        return skyenc.encode(self)

    def compute_hash(self) -> bytes:
        """SHA-256 of this Root's encoding (what is signed)."""
        return object_key(self.encode())

    @classmethod
    def decode(cls, data: bytes, sig: Sig = Sig.NULL) -> Root:
        """Parse an encoded Root; trailing bytes are ignored but covered by ``hash``."""
        root = skyenc.decode(cls, data)
        return dataclasses.replace(root, hash=object_key(data), sig=sig)

    def signed(self, sk: SecKey) -> Root:
        """This Root with ``hash`` computed and signed by ``sk`` (the feed's secret key)."""
        h = self.compute_hash()
        return dataclasses.replace(self, hash=h, sig=sk.sign_hash(h))

    def verify(self, feed: PubKey | None = None) -> None:
        """Check ``sig`` over ``hash`` against ``feed`` (default: ``pub``)."""
        try:
            verify_hash(self.pub if feed is None else feed, self.sig, self.hash)
        except CipherError as exc:
            raise RootVerifyError(str(exc)) from exc

    def with_full(self, full: bool = True) -> Root:
        return dataclasses.replace(self, is_full=full)


def verify_received(feed: PubKey, value: bytes, sig: Sig) -> Root:
    """Decode the ``Value`` of a Root message and check ``sig`` against the message's ``feed``."""
    root = Root.decode(value, sig)
    root.verify(feed)
    return root


def new_root(
    sk: SecKey,
    *,
    nonce: int,
    refs: Sequence[Dynamic] = (),
    reg: bytes = ZERO_HASH,
    descriptor: bytes = b"",
    last: Root | None = None,
    time_ns: int | None = None,
) -> Root:
    """The next signed Root of head ``nonce``: seq = last.seq + 1 and prev = last.hash, or
    seq 0 and a zero prev when ``last`` is ``None``."""
    pub = sk.pubkey()
    if last is not None and (last.pub != pub or last.nonce != nonce):
        raise RootChainError("the last Root belongs to another head")
    root = Root(
        refs=list(refs),
        descriptor=descriptor,
        reg=reg,
        pub=pub,
        nonce=nonce,
        seq=0 if last is None else last.seq + 1,
        time=_time.time_ns() if time_ns is None else time_ns,
        prev=ZERO_HASH if last is None else last.hash,
    )
    return root.signed(sk)


def check_chain(prev: Root | None, root: Root) -> None:
    """Raise unless ``root`` directly follows ``prev`` in one head (``prev`` None: a first Root)."""
    if prev is None:
        if root.seq != 0 or root.prev != ZERO_HASH:
            raise RootChainError("a first Root has seq 0 and no prev")
        return
    if (prev.pub, prev.nonce) != (root.pub, root.nonce):
        raise RootChainError("Roots of different heads")
    if root.seq != prev.seq + 1:
        raise RootChainError(f"seq {root.seq} does not follow {prev.seq}")
    if root.prev != prev.hash:
        raise RootChainError("prev is not the hash of the previous Root")
