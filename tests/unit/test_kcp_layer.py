"""The pure parts of the KCP layer: datagram classification and the bytes ikcp puts on the wire.

With neither FEC nor a block cipher (the reference's kcp-go configuration), a UDP payload is a
bare run of segments: conv (u32 LE), cmd, frg, wnd (u16 LE), ts, sn, una, len (u32 LE), data.
"""

from __future__ import annotations

import struct

from kcp.extension import KCP

from skywire.transport.kcp import (
    IKCP_CMD_ACK,
    IKCP_CMD_PUSH,
    IKCP_OVERHEAD,
    KCPOptions,
    is_kcp_datagram,
    kcp_conv,
)
from skywire.transport.kcp_connection import as_c_int as _as_c_int


def _segments(datagram: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """``(conv, cmd, frg, sn, data)`` of every segment in one datagram."""
    out = []
    off = 0
    while off < len(datagram):
        conv, cmd, frg, _wnd, _ts, sn, _una, length = struct.unpack_from("<IBBHIIII", datagram, off)
        off += IKCP_OVERHEAD
        out.append((conv, cmd, frg, sn, datagram[off : off + length]))
        off += length
    return out


def _pair(conv: int) -> tuple[KCP, list[bytes]]:
    sent: list[bytes] = []
    kcp = KCP(
        _as_c_int(conv),
        max_transmission=1400,
        no_delay=True,
        update_interval=10,
        no_congestion_control=True,
    )
    kcp.include_outbound_handler(lambda _k, data: sent.append(data))
    kcp.update()
    return kcp, sent


def test_conversation_ids_use_all_32_bits() -> None:
    assert _as_c_int(0xFFFFFFFF) == -1
    assert _as_c_int(0x7FFFFFFF) == 0x7FFFFFFF
    kcp, sent = _pair(0xFFFFFFFE)
    kcp.enqueue(b"x")
    kcp.flush()
    assert kcp_conv(sent[0]) == 0xFFFFFFFE


def test_control_datagrams_are_not_kcp() -> None:
    assert not is_kcp_datagram(b"holepunch")
    assert not is_kcp_datagram(b"")
    # A header-sized datagram whose command byte is not 81..84 is not KCP either.
    assert not is_kcp_datagram(bytes(4) + b"\x50" + bytes(19))
    assert is_kcp_datagram(bytes(4) + bytes([IKCP_CMD_PUSH]) + bytes(19))


def test_a_message_is_one_bare_segment_with_the_dialers_conv() -> None:
    kcp, sent = _pair(0xA1B2C3D4)
    kcp.enqueue(b"heartbeat")
    kcp.flush()
    assert len(sent) == 1
    datagram = sent[0]
    assert is_kcp_datagram(datagram)
    assert kcp_conv(datagram) == 0xA1B2C3D4
    assert datagram[:4] == bytes.fromhex("d4c3b2a1")  # little-endian, no extra header
    assert _segments(datagram) == [(0xA1B2C3D4, IKCP_CMD_PUSH, 0, 0, b"heartbeat")]
    assert len(datagram) == IKCP_OVERHEAD + len(b"heartbeat")


def test_segments_round_trip_and_are_acknowledged() -> None:
    a, a_sent = _pair(7)
    b, b_sent = _pair(7)
    mss = KCPOptions().mss
    payloads = [bytes([i]) * mss for i in range(3)]
    for p in payloads:
        a.enqueue(p)
    a.flush()
    assert [len(d) for d in a_sent] == [KCPOptions().mtu] * 3  # one full segment per datagram
    for d in a_sent:
        b.receive(d)
    assert list(b.get_all_received()) == payloads  # message boundaries kept
    b.flush()
    acks = [s for d in b_sent for s in _segments(d)]
    assert sorted(s[3] for s in acks if s[1] == IKCP_CMD_ACK) == [0, 1, 2]
    for d in b_sent:
        a.receive(d)
    assert a.get_outbound_packets() == 0
