"""The SOCKS5 server core fed RFC 1928/1929 bytes, whole and one byte at a time."""

from __future__ import annotations

import pytest

from skywire.proxy.errors import ReplyCode, Socks5Error
from skywire.proxy.socks5 import (
    AddressType,
    AuthReceived,
    ConnectRequested,
    DataReceived,
    Event,
    GreetingReceived,
    Socks5Server,
    Socks5State,
    encode_reply,
)

GREETING = bytes([5, 1, 0])
NAME = b"site.0123.dmsg"
CONNECT_NAME = bytes([5, 1, 0, 3, len(NAME)]) + NAME + (80).to_bytes(2, "big")
CONNECT_V4 = bytes([5, 1, 0, 1, 127, 0, 0, 1]) + (8080).to_bytes(2, "big")
CONNECT_V6 = bytes([5, 1, 0, 4]) + bytes(15) + b"\x01" + (443).to_bytes(2, "big")


def feed(core: Socks5Server, data: bytes, one_by_one: bool) -> list[Event]:
    if not one_by_one:
        return core.receive_data(data)
    events: list[Event] = []
    for i in range(len(data)):
        events += core.receive_data(data[i : i + 1])
    return events


@pytest.mark.parametrize("one_by_one", [False, True])
def test_connect_to_a_domain_name(one_by_one: bool) -> None:
    core = Socks5Server()
    events = feed(core, GREETING, one_by_one)
    assert events == [GreetingReceived((0,), 0)]
    assert core.data_to_send() == b"\x05\x00"
    events = feed(core, CONNECT_NAME + b"GET /", one_by_one)
    assert events == [ConnectRequested("site.0123.dmsg", 80, AddressType.DOMAIN)]
    assert core.state is Socks5State.REPLYING
    assert core.data_to_send() == b""
    assert core.reply(ReplyCode.SUCCEEDED) == [DataReceived(b"GET /")]
    assert core.data_to_send() == b"\x05\x00\x00\x01" + bytes(6)
    assert core.receive_data(b" HTTP/1.1") == [DataReceived(b" HTTP/1.1")]


@pytest.mark.parametrize("one_by_one", [False, True])
def test_everything_in_one_write_and_ip_addresses(one_by_one: bool) -> None:
    for request, host, port in [(CONNECT_V4, "127.0.0.1", 8080), (CONNECT_V6, "::1", 443)]:
        core = Socks5Server()
        events = feed(core, GREETING + request, one_by_one)
        assert events[1] == ConnectRequested(host, port, events[1].address_type)  # type: ignore[union-attr]


def test_refusal_closes() -> None:
    core = Socks5Server()
    core.receive_data(GREETING + CONNECT_NAME)
    core.data_to_send()
    assert core.reply(ReplyCode.HOST_UNREACHABLE) == []
    assert core.data_to_send() == encode_reply(ReplyCode.HOST_UNREACHABLE)
    assert core.state is Socks5State.CLOSED
    assert core.receive_data(b"more") == []


def test_no_acceptable_method() -> None:
    core = Socks5Server()
    assert core.receive_data(bytes([5, 1, 2])) == [GreetingReceived((2,), 0xFF)]
    assert core.data_to_send() == b"\x05\xff"
    assert core.state is Socks5State.CLOSED


@pytest.mark.parametrize("one_by_one", [False, True])
def test_username_and_password(one_by_one: bool) -> None:
    core = Socks5Server(check_login=lambda u, p: (u, p) == ("alice", "s3cret"))
    feed(core, bytes([5, 2, 0, 2]), one_by_one)
    assert core.data_to_send() == b"\x05\x02"
    login = bytes([1, 5]) + b"alice" + bytes([6]) + b"s3cret"
    assert feed(core, login, one_by_one) == [AuthReceived("alice", True)]
    assert core.data_to_send() == b"\x01\x00"
    assert core.state is Socks5State.REQUEST and core.username == "alice"
    bad = Socks5Server(check_login=lambda u, p: False)
    bad.receive_data(bytes([5, 1, 2]))
    assert bad.receive_data(bytes([1, 1]) + b"x" + bytes([1]) + b"y") == [AuthReceived("x", False)]
    assert bad.data_to_send() == b"\x05\x02\x01\x01"
    assert bad.state is Socks5State.CLOSED
    # a client that does not offer username/password is refused when logins are required
    strict = Socks5Server(check_login=lambda u, p: True)
    assert strict.receive_data(GREETING) == [GreetingReceived((0,), 0xFF)]


@pytest.mark.parametrize(
    ("before", "data", "reply"),
    [
        (b"", b"\x04\x01\x00\x50", ReplyCode.GENERAL_FAILURE),  # SOCKS4
        (b"", b"\x05\x00", ReplyCode.GENERAL_FAILURE),  # no methods
        (GREETING, bytes([5, 2, 0, 3, 1]) + b"x\x00\x50", ReplyCode.COMMAND_NOT_SUPPORTED),
        (GREETING, bytes([5, 1, 0, 9, 0, 0]), ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED),
        (GREETING, bytes([5, 1, 0, 3, 0, 0, 80]), ReplyCode.HOST_UNREACHABLE),
        (GREETING, bytes([5, 1, 0, 3, 2]) + b"\xff\xfe" + b"\x00\x50", ReplyCode.HOST_UNREACHABLE),
        (GREETING, bytes([4, 1, 0, 1]) + bytes(6), ReplyCode.GENERAL_FAILURE),
    ],
)
def test_bad_bytes_raise_and_change_nothing(before: bytes, data: bytes, reply: ReplyCode) -> None:
    core = Socks5Server()
    core.receive_data(before)
    state, sent = core.state, core.data_to_send()
    with pytest.raises(Socks5Error) as info:
        core.receive_data(data)
    assert info.value.reply is reply
    assert core.state is state and core.data_to_send() == b""
    if state is Socks5State.REQUEST:  # the shell answers with the error's code
        core.reply(info.value.reply)
        assert core.data_to_send()[:2] == bytes([5, reply])
    assert sent == (b"\x05\x00" if before else b"")


def test_hostile_sizes() -> None:
    core = Socks5Server()
    core.receive_data(GREETING + CONNECT_NAME)
    core.receive_data(bytes(60_000))  # early data is kept for the tunnel, up to a bound
    with pytest.raises(Socks5Error, match="sent before the answer"):
        core.receive_data(bytes(10_000))
    assert core.state is Socks5State.REPLYING
    with pytest.raises(Socks5Error, match="no request to answer"):
        Socks5Server().reply(ReplyCode.SUCCEEDED)
