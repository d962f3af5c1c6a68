"""skysocks without sockets: the client's refusal core (whole and one byte at a time), the
reply code of each dial failure, credentials, the redial backoff, and the yamux config the two
ends use (hashicorp ``DefaultConfig()`` without keep-alive) with the frames it opens a stream with.
"""

from __future__ import annotations

import dataclasses
import errno
import socket

import pytest

from skywire.apps.skysocks import (
    YAMUX_CONFIG,
    Passcode,
    RedialPolicy,
    RequestRefused,
    Socks5Refusal,
    StaticCredentials,
)
from skywire.apps.skysocks.refusal import RefusalState
from skywire.apps.skysocks.tunnel import reply_for
from skywire.proxy.errors import ReplyCode, Socks5Error
from skywire.proxy.socks5 import AuthReceived, GreetingReceived, Socks5Server
from skywire.wire.yamux import YamuxConfig, YamuxConnection

FAILURE = b"\x05\x01\x00\x01" + bytes(6)  # general failure, bound 0.0.0.0:0

# (client bytes, events, bytes the client gets back)
CONVERSATIONS = [
    pytest.param(
        b"\x05\x01\x00" + b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
        [GreetingReceived((0,), 0), RequestRefused(1, ReplyCode.GENERAL_FAILURE)],
        b"\x05\x00" + FAILURE,
        id="no-auth-ipv4",
    ),
    pytest.param(
        b"\x05\x02\x00\x02" + b"\x05\x01\x00\x03\x0bexample.com\x01\xbb",
        [GreetingReceived((0, 2), 0), RequestRefused(1, ReplyCode.GENERAL_FAILURE)],
        b"\x05\x00" + FAILURE,
        id="prefers-no-auth-domain",
    ),
    pytest.param(
        b"\x05\x01\x02" + b"\x01\x05alice\x02pw" + b"\x05\x01\x00\x04" + bytes(16) + b"\x00\x16",
        [
            GreetingReceived((2,), 2),
            AuthReceived("alice", True),
            RequestRefused(1, ReplyCode.GENERAL_FAILURE),
        ],
        b"\x05\x02" + b"\x01\x00" + FAILURE,
        id="login-ipv6",
    ),
    pytest.param(
        b"\x05\x01\x80",
        [GreetingReceived((0x80,), 0xFF)],
        b"\x05\xff",
        id="no-acceptable-method",
    ),
    pytest.param(
        b"\x05\x01\x00" + b"\x05\x02\x00\x09",
        [GreetingReceived((0,), 0), RequestRefused(2, ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED)],
        b"\x05\x00" + b"\x05\x08\x00\x01" + bytes(6),
        id="unknown-address-type",
    ),
]


@pytest.mark.parametrize(("sent", "events", "answer"), CONVERSATIONS)
def test_the_refusal_answers_whole_and_byte_by_byte(
    sent: bytes, events: list[object], answer: bytes
) -> None:
    whole = Socks5Refusal()
    assert whole.receive_data(sent) == events
    assert whole.data_to_send() == answer and whole.done
    assert whole.receive_data(b"more") == [] and whole.data_to_send() == b""

    drip = Socks5Refusal()
    got: list[object] = []
    out = b""
    for i in range(len(sent)):
        assert not drip.done
        got += drip.receive_data(sent[i : i + 1])
        out += drip.data_to_send()
    assert got == events and out == answer and drip.done


def test_the_refusal_waits_for_the_whole_request_before_answering_it() -> None:
    core = Socks5Refusal()
    core.receive_data(b"\x05\x01\x00\x05\x01\x00\x03\x0bexample.co")
    assert core.data_to_send() == b"\x05\x00"
    assert core.state is RefusalState.REQUEST
    assert core.receive_data(b"m\x01") == []
    assert core.receive_data(b"\xbb") == [RequestRefused(1, ReplyCode.GENERAL_FAILURE)]
    assert core.data_to_send() == FAILURE


@pytest.mark.parametrize(
    ("before", "bad"),
    [
        (b"", b"\x04\x01\x00"),  # SOCKS4
        (b"", b"\x05\x00"),  # no method offered
        (b"\x05\x01\x02", b"\x02\x01a\x01b"),  # login version 2
        (b"\x05\x01\x00", b"\x04\x01\x00\x01"),  # request version 4
    ],
)
def test_bad_bytes_raise_and_change_nothing(before: bytes, bad: bytes) -> None:
    core = Socks5Refusal()
    core.receive_data(before)
    core.data_to_send()
    state = core.state
    with pytest.raises(Socks5Error):
        core.receive_data(bad)
    assert core.state is state and core.data_to_send() == b""


def test_a_refusal_cannot_succeed() -> None:
    with pytest.raises(ValueError):
        Socks5Refusal(ReplyCode.SUCCEEDED)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), ReplyCode.CONNECTION_REFUSED),
        (OSError(errno.ECONNREFUSED, "Connect call failed"), ReplyCode.CONNECTION_REFUSED),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), ReplyCode.NETWORK_UNREACHABLE),
        (OSError(errno.EHOSTUNREACH, "No route to host"), ReplyCode.HOST_UNREACHABLE),
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            ReplyCode.HOST_UNREACHABLE,
        ),
        (TimeoutError(), ReplyCode.HOST_UNREACHABLE),
        # without an errno, the message decides, as go-socks5's string match does
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 9), "
                "[Errno 111] Connect call failed ('127.0.0.1', 9)"
            ),
            ReplyCode.HOST_UNREACHABLE,
        ),
        (OSError("Multiple exceptions: connection refused, refused"), ReplyCode.CONNECTION_REFUSED),
        (OSError("network is unreachable"), ReplyCode.NETWORK_UNREACHABLE),
    ],
)
def test_each_dial_failure_has_the_go_socks5_reply_code(
    exc: BaseException, code: ReplyCode
) -> None:
    assert reply_for(exc) == code


def test_a_passcode_is_accepted_as_user_name_or_password_as_upstream() -> None:
    passcode = Passcode("s3cret")
    assert passcode.valid("s3cret", "") and passcode.valid("anyone", "s3cret")
    assert not passcode.valid("anyone", "wrong")
    # through the SOCKS5 core the server runs: user name = passcode, empty password
    core = Socks5Server(check_login=passcode.valid)
    core.receive_data(b"\x05\x01\x02")
    assert core.data_to_send() == b"\x05\x02"
    assert core.receive_data(b"\x01\x06s3cret\x00") == [AuthReceived("s3cret", True)]
    assert core.data_to_send() == b"\x01\x00"
    with pytest.raises(ValueError):
        Passcode("")


def test_static_credentials_match_user_and_password() -> None:
    creds = StaticCredentials({"alice": "a", "bob": "b"})
    assert creds.valid("alice", "a") and creds.valid("bob", "b")
    assert not creds.valid("alice", "b") and not creds.valid("carol", "a")
    for bad in [{}, {"": "x"}, {"x" * 256: "y"}]:
        with pytest.raises(ValueError):
            StaticCredentials(bad)


def test_redial_backoff_grows_to_its_cap() -> None:
    policy = RedialPolicy(initial=1.0, factor=2.0, maximum=5.0)
    assert [policy.delay(n) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert RedialPolicy().delay(10**6) == 20.0  # never overflows
    for bad in [dict(initial=0), dict(initial=2, maximum=1), dict(factor=0.5)]:
        with pytest.raises(ValueError):
            RedialPolicy(**bad)  # type: ignore[arg-type]


def test_the_yamux_config_is_hashicorps_default_without_keepalive() -> None:
    # hashicorp/yamux v0.1.1 mux.go DefaultConfig(); skysocks sets EnableKeepAlive = false
    assert dataclasses.replace(YamuxConfig(), enable_keepalive=False) == YAMUX_CONFIG
    assert (
        YAMUX_CONFIG.accept_backlog,
        YAMUX_CONFIG.keepalive_interval,
        YAMUX_CONFIG.connection_write_timeout,
        YAMUX_CONFIG.max_stream_window,
        YAMUX_CONFIG.stream_open_timeout,
        YAMUX_CONFIG.stream_close_timeout,
    ) == (256, 30.0, 10.0, 256 * 1024, 75.0, 300.0)


def test_the_yamux_client_opens_odd_streams_with_a_syn_window_update_and_never_pings() -> None:
    core = YamuxConnection(client=True, config=YAMUX_CONFIG, now=0.0)
    assert core.get_timer() is None  # no keep-alive ping is ever due
    assert core.open_stream(0.0) == 1
    # window update (type 1), SYN (flag 1), stream 1, delta 0: the window is already the max
    assert core.data_to_send() == bytes.fromhex("00 01 0001 00000001 00000000")
    assert core.open_stream(0.0) == 3
    assert core.data_to_send() == bytes.fromhex("00 01 0001 00000003 00000000")
    assert core.get_timer() == 75.0  # only the stream-open timeout
    assert YamuxConnection(client=True, config=YamuxConfig(), now=0.0).get_timer() == 30.0
