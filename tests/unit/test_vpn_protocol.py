"""The VPN apps' sans-I/O parts: hellos as upstream's Go JSON, the hello and packet readers,
the /29 allocator and the server's answer (statuses 0–4), the state record, output parsers."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from skywire.apps.vpn.client import direct_ips_from_env
from skywire.apps.vpn.errors import (
    HandshakeRefusedError,
    HandshakeStatus,
    HelloError,
    NoFreeIPsError,
    PacketError,
)
from skywire.apps.vpn.ipgen import IPGenerator, SubnetIncrementer, answer_hello
from skywire.apps.vpn.protocol import ClientHello, HelloReader, PacketReader, ServerHello
from skywire.apps.vpn.state import ClientState, ServerState, StateFile, missing_routes
from skywire.apps.vpn.system import (
    parse_default_route,
    parse_forward_policy,
    parse_interface_ipv4s,
    route_args,
)

ip = ipaddress.ip_address


# ---------------------------------------------------------------------------- hellos
def test_client_hello_bytes_as_go_marshals_them() -> None:
    hello = ClientHello((ip("192.168.1.2"), ip("10.0.0.1")), "a<b>&c")
    assert hello.encode() == (
        b'{"unavailable_private_ips":["192.168.1.2","10.0.0.1"],'
        b'"passcode":"a\\u003cb\\u003e\\u0026c"}'
    )
    assert ClientHello().encode() == b'{"unavailable_private_ips":null,"passcode":""}'
    assert ClientHello.decode(hello.encode()) == hello
    assert ClientHello.decode(b"{}") == ClientHello()
    assert "a<b" not in repr(hello)


def test_server_hello_bytes_as_go_marshals_them() -> None:
    ok = ServerHello(HandshakeStatus.OK, ip("172.16.0.12"), ip("172.16.0.11"))
    assert ok.encode() == b'{"status":0,"tun_ip":"172.16.0.12","tun_gateway":"172.16.0.11"}'
    assert ServerHello.decode(ok.encode()) == ok
    refused = ServerHello.refusal(HandshakeStatus.FORBIDDEN)
    assert refused.encode() == b'{"status":4,"tun_ip":"","tun_gateway":""}'
    assert ServerHello.decode(refused.encode()) == refused


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b"not json",
        b'{"unavailable_private_ips":"10.0.0.1"}',
        b'{"unavailable_private_ips":["10.0.0.300"]}',
        b'{"passcode":5}',
    ],
)
def test_malformed_client_hellos(data: bytes) -> None:
    with pytest.raises(HelloError):
        ClientHello.decode(data)


def test_bad_server_hellos() -> None:
    for data in (b'{"status":7}', b'{"status":0,"tun_ip":"","tun_gateway":""}', b'{"status":"0"}'):
        with pytest.raises(HelloError):
            ServerHello.decode(data)
    assert str(HandshakeRefusedError(4)) == "vpn handshake status 4 - Forbidden"
    assert isinstance(HandshakeRefusedError(2), ConnectionError)


def test_hello_reader_one_byte_at_a_time_keeps_what_follows() -> None:
    hello = b'{"passcode":"}{\\"]","unavailable_private_ips":[]}'
    packet = bytes([0x45, 0, 0, 20]) + bytes(16)
    reader = HelloReader()
    stream = b"  " + hello + packet
    got = [reader.receive_data(stream[i : i + 1]) for i in range(len(stream))]
    assert [g for g in got if g is not None] == [hello]
    assert reader.rest == packet
    assert ClientHello.decode(hello).passcode == '}{"]'


def test_hello_reader_refuses_garbage_and_overlong() -> None:
    with pytest.raises(HelloError):
        HelloReader().receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HelloError):
        HelloReader(limit=10).receive_data(b'{"passcode":"' + b"x" * 20)


# ---------------------------------------------------------------------------- packets
def _ipv4(payload: bytes) -> bytes:
    return struct.pack("!BBH", 0x45, 0, 20 + len(payload)) + bytes(16) + payload


def _ipv6(payload: bytes) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), 17, 64) + bytes(32) + payload


def test_packet_reader_cuts_by_ip_length_whole_or_byte_by_byte() -> None:
    packets = [_ipv4(b"hello"), _ipv6(b"six" * 10), _ipv4(b"")]
    stream = b"".join(packets)
    assert PacketReader().receive_data(stream) == packets
    reader = PacketReader()
    got: list[bytes] = []
    for i in range(len(stream)):
        got += reader.receive_data(stream[i : i + 1])
    assert got == packets and reader.pending == 0


def test_packet_reader_refuses_non_ip() -> None:
    reader = PacketReader()
    with pytest.raises(PacketError):
        reader.receive_data(b"\x00" * 30)
    assert reader.pending == 0
    with pytest.raises(PacketError):
        PacketReader().receive_data(struct.pack("!BBH", 0x45, 0, 10) + bytes(16))


# ---------------------------------------------------------------------------- allocator
def test_generator_order_as_upstream() -> None:
    gen = IPGenerator()
    assert [str(gen.next()) for _ in range(3)] == ["172.16.0.8", "172.16.0.16", "172.16.0.24"]
    inc = SubnetIncrementer((192, 168, 2, 0), (192, 168, 255, 255))
    assert [str(inc.next()) for _ in range(2)] == ["192.168.2.8", "192.168.2.16"]


def test_reserved_address_skips_its_subnet() -> None:
    gen = IPGenerator()
    gen.reserve(ip("172.16.0.13"))
    assert str(gen.next()) == "172.16.0.16"


def test_small_range_runs_out() -> None:
    gen = IPGenerator([SubnetIncrementer((10, 0, 0, 0), (10, 0, 0, 31))])
    assert [str(gen.next()) for _ in range(3)] == ["10.0.0.8", "10.0.0.16", "10.0.0.24"]
    with pytest.raises(NoFreeIPsError):
        gen.next()


def test_answers_statuses_0_to_4() -> None:
    gen = IPGenerator()
    ok = answer_hello(ClientHello((ip("10.77.1.2"),), "pw").encode(), "pw", gen)
    assert ok.hello == ServerHello(HandshakeStatus.OK, ip("172.16.0.12"), ip("172.16.0.11"))
    assert (str(ok.server_ip), str(ok.server_gateway)) == ("172.16.0.10", "172.16.0.9")
    wrong = answer_hello(ClientHello(None, "nope").encode(), "pw", gen)
    assert wrong.hello.encode() == b'{"status":4,"tun_ip":"","tun_gateway":""}'
    assert wrong.server_ip is None
    for bad in (b"[1]", b'{"unavailable_private_ips":["::1"]}'):
        assert answer_hello(bad, "", gen).hello.status is HandshakeStatus.BAD_REQUEST
    tiny = IPGenerator([SubnetIncrementer((10, 0, 0, 0), (10, 0, 0, 15))])
    assert answer_hello(b"{}", "", tiny).hello.status is HandshakeStatus.OK
    assert answer_hello(b"{}", "", tiny).hello.status is HandshakeStatus.NO_FREE_IPS
    assert answer_hello(b"{}", "", IPGenerator()).hello.status is HandshakeStatus.OK  # no passcode


# ---------------------------------------------------------------------------- state, parsers
def test_state_file_round_trip_and_missing_routes(tmp_path: Path) -> None:
    before = ("default via 10.0.0.1 dev eth0", "10.0.0.0/24 dev eth0 proto kernel scope link")
    state = ClientState(before, "nameserver 1.1.1.1\n").adding(["1.2.3.4/32", "via", "10.0.0.1"])
    state = state.adding(["0.0.0.0/1", "via", "172.16.0.11"]).changing_dns()
    state = state.dropping(["0.0.0.0/1", "via", "172.16.0.11"])
    f = StateFile(tmp_path / "s" / "c.json")
    f.save(state)
    assert f.load_client() == state
    f.save(ServerState("0", "DROP", "eth0"))
    assert f.load_server() == ServerState("0", "DROP", "eth0")
    f.remove()
    assert not f.exists()
    now = ["10.0.0.0/24  dev eth0 proto kernel scope link", "1.2.3.4 via 10.0.0.1 dev eth0"]
    assert missing_routes(before, now) == ["default via 10.0.0.1 dev eth0"]


def test_output_parsers() -> None:
    text = "default via 10.77.1.1 dev veth0 proto static\n"
    route = parse_default_route(text)
    assert route is not None and str(route.gateway) == "10.77.1.1" and route.device == "veth0"
    assert parse_default_route("10.0.0.0/8 dev x\n") is None
    assert parse_default_route("default dev wg0 scope link\n") == type(route)(None, "wg0")
    addrs = (
        '[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1"}]},'
        '{"ifname":"e","addr_info":[{"family":"inet","local":"10.1.2.3"},'
        '{"family":"inet6"}]}]'
    )
    assert [str(a) for a in parse_interface_ipv4s(addrs)] == ["127.0.0.1", "10.1.2.3"]
    assert parse_forward_policy("-P FORWARD DROP\n-A FORWARD -j X\n") == "DROP"
    assert route_args("10.0.0.0/24 dev e proto kernel scope link linkdown") == [
        "10.0.0.0/24", "dev", "e", "proto", "kernel", "scope", "link",
    ]  # fmt: skip
    env = {
        "ADDR_DMSG_DISC": "http://10.9.9.9:9090",
        "DMSG_SRV_COUNT": "2",
        "ADDR_DMSG_SRV_0": "10.9.9.1:8080",
        "ADDR_DMSG_SRV_1": "dmsg.example:8080",
        "ADDR_RF": "10.9.9.1",
    }
    assert [str(a) for a in direct_ips_from_env(env)] == ["10.9.9.9", "10.9.9.1"]


def _packet(n: int) -> bytes:
    body = bytes([n % 256]) * (20 + n)
    return bytes([0x45, 0]) + (20 + len(body)).to_bytes(2, "big") + bytes(16) + body


def test_route_framer_cuts_the_hello_and_each_packet() -> None:
    from skywire.apps.vpn.protocol import RouteFramer

    hello = b'{"status":0,"tun_ip":"172.16.0.12","tun_gateway":"172.16.0.11"}'
    packets = [_packet(n) for n in range(30)]
    stream = hello + b"".join(packets)
    for size in (1, 7, 64, len(stream)):  # however TCP cuts it
        framer = RouteFramer()
        got: list[bytes] = []
        for i in range(0, len(stream), size):
            got += framer.receive_data(stream[i : i + size])
        assert got == [hello, *packets], size


async def test_pipe_writes_each_message_on_its_own() -> None:
    """What the app server does for a VPN app: the app's coalesced bytes reach the route as
    one write per hello or IP packet (a Go vpn peer writes each route packet to its TUN)."""
    import asyncio

    from skywire.apps.skysocks.tunnel import pipe
    from skywire.apps.vpn.protocol import RouteFramer

    class Recording:
        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks
            self.writes: list[bytes] = []
            self.closed = asyncio.Event()

        async def read(self, n: int = -1) -> bytes:
            if self.chunks:
                return self.chunks.pop(0)
            await self.closed.wait()
            return b""

        async def write(self, data: bytes) -> None:
            self.writes.append(bytes(data))

        async def close(self) -> None:
            self.closed.set()

    hello = b'{"unavailable_private_ips":null,"passcode":""}'
    packets = [_packet(n) for n in range(20)]
    data = hello + b"".join(packets)
    app = Recording([data[:100], data[100:]])  # two TCP reads, cut mid-packet
    route = Recording([])
    app.chunks.append(b"")  # the app ends after its bytes
    await pipe(app, route, frame=RouteFramer().receive_data)  # type: ignore[arg-type]
    assert route.writes == [hello, *packets]
