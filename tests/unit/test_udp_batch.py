"""Batched UDP I/O under the KCP endpoint: which datagrams one GSO send may carry, how a
coalesced (GRO) receive is cut back into datagrams, and the fall-back when the kernel refuses."""

from __future__ import annotations

import errno
import socket
import struct

from hypothesis import given
from hypothesis import strategies as st

from skywire.transport.kcp import IKCP_CMD_ACK, IKCP_CMD_PUSH, _one_conversation
from skywire.transport.udp_batch import (
    MAX_GSO_BYTES,
    MAX_SEGMENTS,
    SOL_UDP,
    UDP_GRO,
    UDP_SEGMENT,
    BatchSender,
    runs,
    split_received,
)


def _reference_runs(sizes: list[int]) -> list[tuple[int, int]]:
    """The rule spelled out: a run is equal sizes then at most one shorter datagram, within
    the segment and byte limits of one GSO send."""
    out, start = [], 0
    while start < len(sizes):
        size = sizes[start]
        limit = min(MAX_SEGMENTS, max(1, MAX_GSO_BYTES // size))
        end = start + 1
        while end < len(sizes) and end - start < limit and sizes[end] == size:
            end += 1
        if end < len(sizes) and end - start < limit and sizes[end] < size:
            end += 1
        out.append((start, end))
        start = end
    return out


@given(st.lists(st.sampled_from([1400, 1400, 1400, 1400, 1080, 48, 24]), max_size=150))
def test_runs_follow_the_gso_rule(sizes: list[int]) -> None:
    datagrams = [bytes(n) for n in sizes]
    assert list(runs(datagrams)) == _reference_runs(sizes)


def test_a_usual_flush_is_one_send() -> None:
    datagrams = [bytes(1400)] * 45 + [bytes(700)]
    assert list(runs(datagrams)) == [(0, 46)]
    assert list(runs([bytes(1400)] * 100)) == [(0, 46), (46, 92), (92, 100)]  # 46 x 1400 bytes
    assert list(runs([bytes(24)] * 100)) == [(0, 64), (64, 100)]  # the kernel's 64 segments


def _segment(conv: int, cmd: int, payload: int) -> bytes:
    return struct.pack("<IBBHIIII", conv, cmd, 0, 512, 0, 0, 0, payload) + bytes(payload)


def test_a_coalesced_receive_is_cut_at_the_segment_size() -> None:
    data = b"a" * 1400 + b"b" * 1400 + b"c" * 9
    gro = [(SOL_UDP, UDP_GRO, struct.pack("=i", 1400))]
    size, parts = split_received(data, gro)
    assert size == 1400 and parts is not None
    assert list(parts) == [b"a" * 1400, b"b" * 1400, b"c" * 9]
    # No control message, or one datagram that fits: a single datagram.
    assert split_received(data, []) == (0, None)
    assert split_received(b"x" * 100, [(SOL_UDP, UDP_GRO, struct.pack("=i", 1400))]) == (0, None)


def test_only_kcp_of_one_conversation_goes_to_kcp_in_one_piece() -> None:
    full = _segment(7, IKCP_CMD_PUSH, 1376)
    acks = _segment(7, IKCP_CMD_ACK, 0) * 3
    assert _one_conversation(full * 3 + acks, 1400)
    assert not _one_conversation(full * 2 + b"holepunch", 1400)  # a control datagram at the end
    assert not _one_conversation(full + _segment(8, IKCP_CMD_PUSH, 1376), 1400)  # another conv
    assert not _one_conversation(full + b"\x07\x00\x00\x00P" + bytes(1395), 1400)  # not a cmd


class _Socket:
    """Records what would leave; ``sendmsg`` fails with ``refuse`` when set."""

    def __init__(self, refuse: int | None = None) -> None:
        self.refuse = refuse
        self.sent: list[bytes] = []
        self.calls = 0

    def sendmsg(
        self, buffers: list[bytes], ancillary: list[tuple[int, int, bytes]], _flags: int, _a: object
    ) -> int:
        self.calls += 1
        if self.refuse is not None:
            raise OSError(self.refuse, "refused")
        assert ancillary[0][:2] == (SOL_UDP, UDP_SEGMENT)
        (size,) = struct.unpack("=H", ancillary[0][2])
        data = b"".join(buffers)
        self.sent += [data[i : i + size] for i in range(0, len(data), size)]
        return len(data)

    def sendto(self, data: bytes, _addr: object) -> int:
        self.calls += 1
        self.sent.append(data)
        return len(data)


def test_a_batch_leaves_in_order_with_gso() -> None:
    datagrams = [bytes([i]) * 1400 for i in range(50)] + [b"ack"]
    sock, sender = _Socket(), BatchSender()
    sender.gso = True
    sender.send(sock, datagrams, ("127.0.0.1", 9))  # type: ignore[arg-type]
    assert sock.sent == datagrams
    assert sock.calls == 2  # 46 + (4 and the short one)
    assert (sender.sends, sender.datagrams) == (2, 51)


def test_a_refused_gso_send_falls_back_to_one_send_per_datagram_for_good() -> None:
    datagrams = [bytes([i]) * 1400 for i in range(10)]
    sock, sender = _Socket(refuse=errno.EIO), BatchSender()
    sender.gso = True
    addr = ("127.0.0.1", 9)
    sender.send(sock, datagrams, addr)  # type: ignore[arg-type]
    assert sock.sent == datagrams and not sender.gso
    sock.calls = 0
    sender.send(sock, datagrams, addr)  # type: ignore[arg-type]
    assert sock.calls == 10


def test_a_full_socket_buffer_loses_the_run_like_the_wire() -> None:
    sock, sender = _Socket(refuse=errno.EAGAIN), BatchSender()
    sender.gso = True
    sender.send(sock, [bytes(1400)] * 3, ("127.0.0.1", 9))  # type: ignore[arg-type]
    assert sock.sent == [] and sender.gso  # KCP resends; GSO stays on


def test_real_socket_options_exist_on_linux() -> None:
    # The constants are the kernel's (Python names them only from 3.12 on, if at all).
    assert getattr(socket, "UDP_SEGMENT", UDP_SEGMENT) == UDP_SEGMENT
    assert getattr(socket, "UDP_GRO", UDP_GRO) == UDP_GRO
