"""Sans-I/O yamux core: upstream frames byte for byte, state machine, flow control, timers."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywire.wire.errors import WireError, YamuxError
from skywire.wire.yamux import (
    HEADER_SIZE,
    INITIAL_STREAM_WINDOW,
    ConnectionTerminated,
    DataReceived,
    Event,
    Flag,
    FrameType,
    GoAwayCode,
    GoAwayReceived,
    Header,
    PingAcknowledged,
    PingReceived,
    PingTimedOut,
    StreamEnded,
    StreamEstablished,
    StreamOpened,
    StreamReset,
    StreamState,
    WindowUpdated,
    YamuxConfig,
    YamuxConnection,
    YamuxGoAwayError,
    YamuxKeepAliveTimeoutError,
    YamuxOpenLimitError,
    YamuxProtocolError,
    YamuxRemoteGoAwayError,
    YamuxSessionClosedError,
    YamuxStreamClosedError,
    YamuxStreamOpenTimeoutError,
    YamuxStreamResetError,
)
from tests.conftest import load_vectors

VECTORS: dict[str, Any] = load_vectors("yamux")
CASES: list[dict[str, Any]] = VECTORS["cases"]
HALF = INITIAL_STREAM_WINDOW // 2


def hdr(ftype: int, flags: int, sid: int, length: int) -> bytes:
    return struct.pack(">BBHII", 0, ftype, flags, sid, length)


def split_frames(blob: bytes) -> list[tuple[Header, bytes]]:
    """Cut a byte string into (header, payload) pairs; payload only for data frames."""
    out: list[tuple[Header, bytes]] = []
    pos = 0
    while pos < len(blob):
        h = Header.decode(blob[pos : pos + HEADER_SIZE])
        pos += HEADER_SIZE
        n = h.length if h.type is FrameType.DATA else 0
        out.append((h, blob[pos : pos + n]))
        pos += n
    assert pos == len(blob)
    return out


class Pair:
    """A client and a server core wired back to back, recording every frame written."""

    def __init__(
        self, server_config: YamuxConfig | None = None, client_config: YamuxConfig | None = None
    ) -> None:
        self.client = YamuxConnection(client=True, config=client_config)
        self.server = YamuxConnection(client=False, config=server_config)
        self.frames: list[tuple[str, Header, bytes]] = []
        self.events: dict[str, list[Event]] = {"client": [], "server": []}

    def pump(self, on_server: Callable[[Event], None] | None = None, now: float = 0.0) -> None:
        sides = (("client", self.client, self.server), ("server", self.server, self.client))
        moved = True
        while moved:
            moved = False
            for name, src, dst in sides:
                blob = src.data_to_send()
                if not blob:
                    continue
                moved = True
                self.frames += [(name, h, d) for h, d in split_frames(blob)]
                peer = "server" if name == "client" else "client"
                events = dst.receive_data(blob, now)
                self.events[peer] += events
                if peer == "server" and on_server is not None:
                    for ev in events:
                        on_server(ev)

    def take_frames(self) -> list[tuple[str, Header, bytes]]:
        frames, self.frames = self.frames, []
        return frames


def data_of(events: list[Event], sid: int) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataReceived) and e.stream_id == sid)


# ------------------------------------------------------------------------------ vectors


def test_vector_file_is_the_upstream_capture() -> None:
    assert "hashicorp/yamux v0.1.1" in VECTORS["source"]
    assert len(CASES) == 10


@pytest.mark.parametrize("frame", [f for c in CASES for f in c["frames"]])
def test_decode_every_vector_frame(frame: dict[str, Any]) -> None:
    raw = bytes.fromhex(frame["header"])
    h = Header.decode(raw)
    assert h.version == frame["version"] == 0
    assert h.type == frame["type"]
    assert h.flags == frame["flags"]
    assert h.stream_id == frame["stream_id"]
    assert h.length == frame["length"]
    assert h.encode() == raw
    if "data" in frame:
        assert len(bytes.fromhex(frame["data"])) == h.length


def test_replay_upstream_session_byte_for_byte() -> None:
    # The capture lowered the server's AcceptBacklog to 1 (only matters for the RST step).
    pair = Pair(server_config=YamuxConfig(accept_backlog=1))
    client, server = pair.client, pair.server

    def accept(ev: Event) -> None:
        if isinstance(ev, StreamOpened):
            server.accept_stream(ev.stream_id)

    big = (bytes(range(256)) * 782)[:200000]
    assert len(big) == 200000

    def step(index: int) -> None:
        if index == 0:
            assert client.open_stream(0.0) == 1
            pair.pump(accept)
        elif index == 1:
            assert client.send_data(1, b"hi") == 2
            pair.pump()
            assert data_of(pair.events["server"], 1) == b"hi"
            server.acknowledge_received(1, 2)
            pair.pump()
        elif index == 2:
            assert server.send_data(1, b"yo") == 2
            pair.pump()
            assert data_of(pair.events["client"], 1) == b"yo"
            client.acknowledge_received(1, 2)
            pair.pump()
        elif index == 3:
            assert client.ping(0.0) == 0
            pair.pump()
            assert PingAcknowledged(0, 0.0) in pair.events["client"]
        elif index == 4:
            assert server.ping(0.0) == 0
            pair.pump()
            assert PingAcknowledged(0, 0.0) in pair.events["server"]
        elif index == 5:
            assert client.send_data(1, big) == len(big)
            pair.pump()
            server.acknowledge_received(1, len(big))
            pair.pump()
        elif index == 6:
            client.close_stream(1, 0.0)
            pair.pump()
            assert StreamEnded(1) in pair.events["server"]
        elif index == 7:
            server.close_stream(1, 0.0)
            pair.pump()
            assert client.stream_state(1) is None
            assert server.stream_state(1) is None
        elif index == 8:
            for n in range(3):
                sid = client.open_stream(0.0)
                assert client.send_data(sid, bytes([n])) == 1
            pair.pump()
            assert server.pending_accepts == (3,)
        elif index == 9:
            client.go_away()
            pair.pump()
            assert GoAwayReceived(GoAwayCode.NORMAL) in pair.events["server"]

    for index, case in enumerate(CASES):
        step(index)
        frames = pair.take_frames()
        if "data frames omitted" in case["step"]:
            frames = [f for f in frames if f[1].type is not FrameType.DATA]
        got = [(name, h.encode().hex(), d.hex()) for name, h, d in frames]
        want = [(f["from"], f["header"], f.get("data", "")) for f in case["frames"]]
        assert got == want, case["step"]


def test_vector_bytes_decode_when_fed_one_byte_at_a_time() -> None:
    server = YamuxConnection(client=False)
    client_bytes = b"".join(
        bytes.fromhex(f["header"]) + bytes.fromhex(f.get("data", ""))
        for c in CASES[:3]
        for f in c["frames"]
        if f["from"] == "client"
    )
    events: list[Event] = []
    for i in range(len(client_bytes)):
        events += server.receive_data(client_bytes[i : i + 1], 0.0)
    assert events[0] == StreamOpened(1)
    assert data_of(events, 1) == b"hi"


# ------------------------------------------------------------------------------ header codec


def test_header_codec_and_errors() -> None:
    h = Header(FrameType.WINDOW_UPDATE, Flag.SYN | Flag.ACK, 7, 99)
    assert Header.decode(h.encode()) == h
    with pytest.raises(YamuxProtocolError):
        Header.decode(b"\x00" * 11)
    with pytest.raises(YamuxProtocolError, match="version"):
        Header.decode(b"\x01" + b"\x00" * 11)
    with pytest.raises(YamuxProtocolError, match="type"):
        Header.decode(b"\x00\x04" + b"\x00" * 10)
    assert issubclass(YamuxProtocolError, YamuxError)
    assert issubclass(YamuxError, WireError)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        YamuxConfig(accept_backlog=0)
    with pytest.raises(ValueError):
        YamuxConfig(max_stream_window=1024)
    with pytest.raises(ValueError):
        YamuxConfig(keepalive_interval=0)


# ------------------------------------------------------------------------------ state machine


def test_stream_ids_by_role() -> None:
    c = YamuxConnection(client=True)
    s = YamuxConnection(client=False)
    assert [c.open_stream(0) for _ in range(3)] == [1, 3, 5]
    assert [s.open_stream(0) for _ in range(3)] == [2, 4, 6]


def test_open_accept_establish() -> None:
    pair = Pair()
    sid = pair.client.open_stream(0.0)
    assert pair.client.stream_state(sid) is StreamState.SYN_SENT
    pair.pump()
    assert pair.events["server"] == [StreamOpened(sid)]
    assert pair.server.stream_state(sid) is StreamState.SYN_RECEIVED
    pair.server.accept_stream(sid)
    pair.pump()
    assert pair.events["client"] == [StreamEstablished(sid)]
    assert pair.server.stream_state(sid) is StreamState.ESTABLISHED
    assert pair.client.stream_state(sid) is StreamState.ESTABLISHED
    with pytest.raises(YamuxError):
        pair.server.accept_stream(sid)


def test_server_data_before_accept_carries_ack() -> None:
    pair = Pair()
    sid = pair.client.open_stream(0.0)
    pair.pump()
    assert pair.server.send_data(sid, b"x") == 1
    blob = pair.server.data_to_send()
    assert blob == hdr(0, Flag.ACK, sid, 1) + b"x"


def test_flow_control_window_and_half_window_update() -> None:
    pair = Pair()
    sid = pair.client.open_stream(0.0)
    pair.pump(lambda ev: pair.server.accept_stream(sid))
    payload = bytes(INITIAL_STREAM_WINDOW + 1000)
    assert pair.client.send_data(sid, payload) == INITIAL_STREAM_WINDOW
    assert pair.client.send_data(sid, payload) == 0
    assert pair.client.send_window(sid) == 0
    pair.pump()
    assert len(data_of(pair.events["server"], sid)) == INITIAL_STREAM_WINDOW
    pair.server.acknowledge_received(sid, HALF - 1)
    assert pair.server.data_to_send() == b""  # below half a window: no update yet
    pair.server.acknowledge_received(sid, 1)
    assert pair.server.data_to_send() == hdr(1, 0, sid, HALF)
    pair.client.receive_data(hdr(1, 0, sid, HALF), 0.0)
    assert pair.client.send_window(sid) == HALF
    with pytest.raises(ValueError):
        pair.server.acknowledge_received(sid, INITIAL_STREAM_WINDOW)


def test_window_update_event_and_frames_split_to_window() -> None:
    pair = Pair()
    sid = pair.client.open_stream(0.0)
    pair.pump(lambda ev: pair.server.accept_stream(sid))
    assert pair.client.send_data(sid, bytes(INITIAL_STREAM_WINDOW - 10)) > 0
    assert pair.client.send_data(sid, bytes(100)) == 10
    pair.pump()
    pair.server.acknowledge_received(sid, INITIAL_STREAM_WINDOW)
    pair.pump()
    assert WindowUpdated(sid, INITIAL_STREAM_WINDOW) in pair.events["client"]
    assert pair.client.send_window(sid) == INITIAL_STREAM_WINDOW


def test_receive_window_exceeded_is_protocol_error_with_go_away() -> None:
    s = YamuxConnection(client=False)
    s.receive_data(hdr(1, Flag.SYN, 1, 0), 0.0)
    with pytest.raises(YamuxProtocolError, match="window"):
        s.receive_data(hdr(0, 0, 1, INITIAL_STREAM_WINDOW + 1), 0.0)
    assert s.is_closed
    assert isinstance(s.error, YamuxProtocolError)
    assert s.data_to_send() == hdr(3, 0, 0, GoAwayCode.PROTOCOL_ERROR)
    with pytest.raises(YamuxSessionClosedError):
        s.receive_data(b"", 0.0)


def test_protocol_error_keeps_events_decoded_before_it() -> None:
    s = YamuxConnection(client=False)
    with pytest.raises(YamuxProtocolError) as info:
        s.receive_data(hdr(1, Flag.SYN, 1, 0) + b"\x07" + bytes(11), 0.0)
    assert info.value.events == [StreamOpened(1)]
    assert s.data_to_send() == b""  # the reference sends no go-away for a bad version


def test_invalid_type_is_protocol_error() -> None:
    s = YamuxConnection(client=True)
    with pytest.raises(YamuxProtocolError, match="type"):
        s.receive_data(hdr(4, 0, 0, 0), 0.0)
    assert s.is_closed


@pytest.mark.parametrize("ftype", [0, 1])
def test_fin_honoured_on_either_frame_type(ftype: int) -> None:
    s = YamuxConnection(client=False)
    s.receive_data(hdr(1, Flag.SYN, 1, 0), 0.0)
    s.accept_stream(1)
    s.data_to_send()
    events = s.receive_data(hdr(ftype, Flag.FIN, 1, 0), 0.0)
    assert events == [StreamEnded(1)]
    assert s.stream_state(1) is StreamState.REMOTE_CLOSE
    # Half-close: we may still send.
    assert s.send_data(1, b"late") == 4
    s.close_stream(1, 0.0)
    assert s.stream_state(1) is None
    assert s.data_to_send() == hdr(0, 0, 1, 4) + b"late" + hdr(1, Flag.FIN, 1, 0)


@pytest.mark.parametrize("ftype", [0, 1])
def test_rst_honoured_on_either_frame_type(ftype: int) -> None:
    c = YamuxConnection(client=True)
    sid = c.open_stream(0.0)
    c.data_to_send()
    events = c.receive_data(hdr(ftype, Flag.RST, sid, 0), 0.0)
    assert events == [StreamReset(sid)]
    assert c.stream_state(sid) is None
    with pytest.raises(YamuxStreamClosedError):
        c.send_data(sid, b"x")
    assert c.can_open_stream


@pytest.mark.parametrize("ftype", [0, 1])
def test_syn_and_ack_honoured_on_either_frame_type(ftype: int) -> None:
    s = YamuxConnection(client=False)
    assert s.receive_data(hdr(ftype, Flag.SYN, 9, 0), 0.0) == [StreamOpened(9)]
    c = YamuxConnection(client=True)
    sid = c.open_stream(0.0)
    assert c.receive_data(hdr(ftype, Flag.ACK, sid, 0), 0.0) == [StreamEstablished(sid)]


def test_data_frame_with_syn_and_fin_delivers_payload_then_end() -> None:
    s = YamuxConnection(client=False)
    frame = hdr(0, Flag.SYN | Flag.FIN, 1, 5) + b"hello"
    events = s.receive_data(frame[:14], 0.0) + s.receive_data(frame[14:], 0.0)
    assert events == [
        StreamOpened(1),
        DataReceived(1, b"he"),
        DataReceived(1, b"llo"),
        StreamEnded(1),
    ]


def test_ack_and_fin_together_on_window_update() -> None:
    c = YamuxConnection(client=True)
    sid = c.open_stream(0.0)
    c.data_to_send()
    events = c.receive_data(hdr(1, Flag.ACK | Flag.FIN, sid, 100), 0.0)
    assert events == [StreamEstablished(sid), WindowUpdated(sid, 100), StreamEnded(sid)]
    assert c.stream_state(sid) is StreamState.REMOTE_CLOSE


def test_rst_with_payload_discards_it() -> None:
    s = YamuxConnection(client=False)
    s.receive_data(hdr(1, Flag.SYN, 1, 0), 0.0)
    events = s.receive_data(hdr(0, Flag.RST, 1, 3) + b"abc" + hdr(2, Flag.SYN, 0, 5), 0.0)
    assert events == [StreamReset(1), PingReceived(5)]


def test_half_close_both_ways() -> None:
    pair = Pair()
    sid = pair.client.open_stream(0.0)
    pair.pump(lambda ev: pair.server.accept_stream(sid))
    pair.client.send_data(sid, b"request")
    pair.client.close_stream(sid, 0.0)
    assert pair.client.stream_state(sid) is StreamState.LOCAL_CLOSE
    with pytest.raises(YamuxStreamClosedError):
        pair.client.send_data(sid, b"more")
    pair.pump()
    assert data_of(pair.events["server"], sid) == b"request"
    assert pair.events["server"][-1] == StreamEnded(sid)
    pair.server.send_data(sid, b"response")
    pair.pump()
    assert data_of(pair.events["client"], sid) == b"response"
    pair.server.close_stream(sid, 0.0)
    pair.pump()
    assert pair.events["client"][-1] == StreamEnded(sid)
    assert pair.client.num_streams == pair.server.num_streams == 0


def test_fin_payload_delivered_even_when_it_releases_the_stream() -> None:
    c = YamuxConnection(client=True)
    sid = c.open_stream(0.0)
    c.close_stream(sid, 0.0)
    frame = hdr(0, Flag.ACK | Flag.FIN, sid, 4) + b"tail"
    events = c.receive_data(frame[:13], 0.0)
    assert c.stream_state(sid) is None
    events += c.receive_data(frame[13:], 0.0)
    # The ACK arrives after our FIN, so the stream never reports "established".
    assert events == [DataReceived(sid, b"t"), DataReceived(sid, b"ail"), StreamEnded(sid)]
    assert c.can_open_stream and c.get_timer() == 30.0


def test_unexpected_fin_is_protocol_error() -> None:
    s = YamuxConnection(client=False)
    s.receive_data(hdr(1, Flag.SYN | Flag.FIN, 1, 0), 0.0)
    with pytest.raises(YamuxProtocolError, match="FIN"):
        s.receive_data(hdr(1, Flag.FIN, 1, 0), 0.0)
    assert s.data_to_send().endswith(hdr(3, 0, 0, 1))


def test_duplicate_syn_is_protocol_error() -> None:
    s = YamuxConnection(client=False)
    s.receive_data(hdr(1, Flag.SYN, 1, 0), 0.0)
    with pytest.raises(YamuxProtocolError, match="duplicate"):
        s.receive_data(hdr(1, Flag.SYN, 1, 0), 0.0)
    assert s.data_to_send() == hdr(3, 0, 0, 1)


def test_backlog_overflow_refused_with_rst_and_payload_dropped() -> None:
    s = YamuxConnection(client=False)
    blob = b"".join(hdr(1, Flag.SYN, 2 * i + 1, 0) for i in range(257))
    events = s.receive_data(blob, 0.0)
    assert len(events) == 256
    assert s.data_to_send() == hdr(1, Flag.RST, 513, 0)
    # Data for the refused stream is skipped, even split across calls.
    assert s.receive_data(hdr(0, 0, 513, 4) + b"ab", 0.0) == []
    assert s.receive_data(b"cd" + hdr(2, Flag.SYN, 0, 1), 0.0) == [PingReceived(1)]
    # Accepting one frees a backlog slot.
    s.accept_stream(1)
    s.data_to_send()
    assert s.receive_data(hdr(1, Flag.SYN, 515, 0), 0.0) == [StreamOpened(515)]


def test_open_limit_tracks_unacknowledged_syns() -> None:
    c = YamuxConnection(client=True, config=YamuxConfig(accept_backlog=2))
    a = c.open_stream(0.0)
    b = c.open_stream(0.0)
    assert not c.can_open_stream
    with pytest.raises(YamuxOpenLimitError):
        c.open_stream(0.0)
    c.receive_data(hdr(1, Flag.ACK, a, 0), 0.0)
    assert c.open_stream(0.0) == 5
    c.receive_data(hdr(1, Flag.RST, b, 0), 0.0)
    assert c.can_open_stream


def test_local_go_away_refuses_new_streams() -> None:
    s = YamuxConnection(client=False)
    s.go_away()
    assert s.data_to_send() == hdr(3, 0, 0, 0)
    assert s.receive_data(hdr(1, Flag.SYN, 1, 0) + hdr(0, 0, 1, 2) + b"zz", 0.0) == []
    assert s.data_to_send() == hdr(1, Flag.RST, 1, 0)


def test_remote_go_away_blocks_open_but_not_existing_streams() -> None:
    c = YamuxConnection(client=True)
    sid = c.open_stream(0.0)
    assert c.receive_data(hdr(3, 0, 0, 0), 0.0) == [GoAwayReceived(GoAwayCode.NORMAL)]
    assert c.remote_go_away
    with pytest.raises(YamuxRemoteGoAwayError):
        c.open_stream(0.0)
    assert isinstance(YamuxRemoteGoAwayError("x"), ConnectionError)
    assert c.send_data(sid, b"ok") == 2


@pytest.mark.parametrize("code", [GoAwayCode.PROTOCOL_ERROR, GoAwayCode.INTERNAL_ERROR])
def test_go_away_with_error_terminates(code: GoAwayCode) -> None:
    c = YamuxConnection(client=True)
    events = c.receive_data(hdr(3, 0, 0, code) + hdr(2, Flag.SYN, 0, 1), 0.0)
    assert events[0] == GoAwayReceived(code)
    assert isinstance(events[1], ConnectionTerminated)
    assert isinstance(events[1].error, YamuxGoAwayError)
    assert len(events) == 2 and c.is_closed
    assert c.data_to_send() == b""


def test_unknown_go_away_code_is_protocol_error() -> None:
    c = YamuxConnection(client=True)
    with pytest.raises(YamuxProtocolError, match="go-away"):
        c.receive_data(hdr(3, 0, 0, 3), 0.0)


def test_reset_stream_sends_rst_and_drops_later_data() -> None:
    pair = Pair()
    sid = pair.client.open_stream(0.0)
    pair.pump(lambda ev: pair.server.accept_stream(sid))
    pair.server.reset_stream(sid)
    assert pair.server.data_to_send() == hdr(1, Flag.RST, sid, 0)
    assert pair.server.receive_data(hdr(0, 0, sid, 1) + b"x", 0.0) == []
    pair.client.receive_data(hdr(1, Flag.RST, sid, 0), 0.0)
    with pytest.raises(YamuxStreamClosedError):
        pair.client.send_data(sid, b"x")


def test_send_on_reset_stream_raises_reset() -> None:
    c = YamuxConnection(client=True)
    sid = c.open_stream(0.0)
    c._streams[sid].state = StreamState.RESET
    with pytest.raises(YamuxStreamResetError):
        c.send_data(sid, b"x")


def test_ping_reply_and_unknown_ack_ignored() -> None:
    s = YamuxConnection(client=False)
    assert s.receive_data(hdr(2, Flag.SYN, 0, 0xDEADBEEF), 0.0) == [PingReceived(0xDEADBEEF)]
    assert s.data_to_send() == hdr(2, Flag.ACK, 0, 0xDEADBEEF)
    assert s.receive_data(hdr(2, Flag.ACK, 0, 42), 0.0) == []


def test_ping_ids_increment_and_rtt() -> None:
    c = YamuxConnection(client=True)
    assert c.ping(1.0) == 0
    assert c.ping(1.5) == 1
    assert c.data_to_send() == hdr(2, Flag.SYN, 0, 0) + hdr(2, Flag.SYN, 0, 1)
    assert c.receive_data(hdr(2, Flag.ACK, 0, 1), 2.0) == [PingAcknowledged(1, 0.5)]


def test_ping_timeout_event() -> None:
    c = YamuxConnection(client=True, config=YamuxConfig(enable_keepalive=False))
    assert c.get_timer() is None
    c.ping(5.0)
    assert c.get_timer() == 15.0
    assert c.handle_timer(14.9) == []
    assert c.handle_timer(15.0) == [PingTimedOut(0)]
    assert not c.is_closed
    assert c.get_timer() is None


# ------------------------------------------------------------------------------ timers


def test_keepalive_ping_answered() -> None:
    c = YamuxConnection(client=True, now=100.0)
    assert c.get_timer() == 130.0
    assert c.handle_timer(129.0) == []
    assert c.handle_timer(130.0) == []
    assert c.data_to_send() == hdr(2, Flag.SYN, 0, 0)
    assert c.get_timer() == 140.0
    c.receive_data(hdr(2, Flag.ACK, 0, 0), 131.0)
    assert c.get_timer() == 161.0  # next keepalive counts from the answer
    c.handle_timer(161.0)
    assert c.data_to_send() == hdr(2, Flag.SYN, 0, 1)


def test_keepalive_unanswered_kills_session() -> None:
    c = YamuxConnection(client=False)
    c.handle_timer(30.0)
    assert c.data_to_send() == hdr(2, Flag.SYN, 0, 0)
    assert c.handle_timer(39.99) == []
    events = c.handle_timer(40.0)
    assert len(events) == 1 and isinstance(events[0], ConnectionTerminated)
    assert isinstance(events[0].error, YamuxKeepAliveTimeoutError)
    assert isinstance(c.error, TimeoutError) and isinstance(c.error, ConnectionError)
    assert c.is_closed and c.get_timer() is None
    assert c.data_to_send() == b""  # like the reference: no go-away on a dead connection


def test_stream_open_timeout_kills_session() -> None:
    cfg = YamuxConfig(enable_keepalive=False)
    c = YamuxConnection(client=True, config=cfg)
    c.open_stream(10.0)
    assert c.get_timer() == 85.0
    assert c.handle_timer(84.0) == []
    events = c.handle_timer(85.0)
    assert isinstance(events[0], ConnectionTerminated)
    assert isinstance(events[0].error, YamuxStreamOpenTimeoutError)
    with pytest.raises(YamuxSessionClosedError):
        c.open_stream(86.0)


def test_stream_open_timeout_cancelled_by_ack() -> None:
    cfg = YamuxConfig(enable_keepalive=False)
    c = YamuxConnection(client=True, config=cfg)
    sid = c.open_stream(10.0)
    c.receive_data(hdr(1, Flag.ACK, sid, 0), 11.0)
    assert c.get_timer() is None
    assert c.handle_timer(1000.0) == []
    assert not c.is_closed


def test_stream_close_timeout_resets() -> None:
    cfg = YamuxConfig(enable_keepalive=False, stream_open_timeout=0)
    c = YamuxConnection(client=True, config=cfg)
    sid = c.open_stream(0.0)
    c.close_stream(sid, 1.0)
    c.data_to_send()
    assert c.get_timer() == 301.0
    assert c.handle_timer(301.0) == [StreamReset(sid, by_peer=False)]
    assert c.data_to_send() == hdr(1, Flag.RST, sid, 0)
    assert c.stream_state(sid) is None


def test_stream_close_timeout_cancelled_by_peer_fin() -> None:
    cfg = YamuxConfig(enable_keepalive=False, stream_open_timeout=0)
    c = YamuxConnection(client=True, config=cfg)
    sid = c.open_stream(0.0)
    c.close_stream(sid, 1.0)
    c.receive_data(hdr(1, Flag.ACK | Flag.FIN, sid, 0), 2.0)
    assert c.get_timer() is None


def test_local_close_terminates_quietly() -> None:
    c = YamuxConnection(client=True)
    sid = c.open_stream(0.0)
    c.data_to_send()
    c.close()
    assert c.is_closed and c.error is None
    assert c.data_to_send() == b""
    assert c.handle_timer(1e9) == []
    for call in (lambda: c.open_stream(0.0), lambda: c.ping(0.0), lambda: c.send_data(sid, b"x")):
        with pytest.raises(YamuxSessionClosedError):
            call()


# ------------------------------------------------------------------------------ fuzzing


def _transcript() -> bytes:
    """Bytes a server would receive from a client in a busy session."""
    pair = Pair()
    sid = pair.client.open_stream(0.0)
    pair.pump(lambda ev: pair.server.accept_stream(sid))
    chunks = [pair.client.data_to_send()]
    pair.client.send_data(sid, b"payload" * 100)
    pair.client.ping(0.0)
    sid2 = pair.client.open_stream(0.0)
    pair.client.send_data(sid2, b"x")
    pair.client.close_stream(sid, 0.0)
    pair.client.reset_stream(sid2)
    pair.client.go_away()
    chunks.append(pair.client.data_to_send())
    return b"".join(chunks)


TRANSCRIPT = hdr(1, Flag.SYN, 1, 0) + _transcript()


def _feed(conn: YamuxConnection, pieces: list[bytes]) -> None:
    try:
        for piece in pieces:
            conn.receive_data(piece, 0.0)
            conn.data_to_send()
    except YamuxError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_random_bytes_raise_only_yamux_errors(data: bytes, client: bool) -> None:
    _feed(YamuxConnection(client=client), [data])


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_truncated_and_split_valid_stream(data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(TRANSCRIPT)))
    prefix = TRANSCRIPT[:cut]
    splits = sorted(data.draw(st.lists(st.integers(0, cut), max_size=8)))
    pieces = [prefix[a:b] for a, b in zip([0, *splits], [*splits, cut], strict=True)]
    conn = YamuxConnection(client=False)
    for piece in pieces:
        conn.receive_data(piece, 0.0)  # a valid prefix never raises
    conn.data_to_send()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_stream_raises_only_yamux_errors(data: st.DataObject) -> None:
    buf = bytearray(TRANSCRIPT)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    step = data.draw(st.integers(1, 64))
    _feed(
        YamuxConnection(client=False), [bytes(buf[i : i + step]) for i in range(0, len(buf), step)]
    )
