"""dmsgpty's wire bytes against a recorded upstream conversation (tests/vectors/dmsgpty.json:
a real Go ``dmsgpty.PtyClient`` and ``dmsgpty.Host``, each a fresh process).

Our client codec must write the Go client's bytes call for call, our server codec must answer
with the Go host's bytes, and each must read the other side's Go bytes, fed whole and one byte
at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from skywire.cipher import PubKey
from skywire.dmsg.pty.errors import PtyRejectedError, PtyRequestError
from skywire.dmsg.pty.protocol import (
    BYTES,
    COMMAND_REQ,
    EMPTY,
    INT,
    PTY_URI,
    PUBKEYS,
    WHITELIST_URI,
    WIN_SIZE,
    CommandReq,
    WinSize,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    proxy_uri,
)
from skywire.wire.gob import GoType
from skywire.wire.netrpc import RequestHeader, RPCClientCodec, RPCServerCodec

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "dmsgpty.json").read_text())
CALLS = {c["name"]: c for c in VECTORS["calls"]}
WL = VECTORS["whitelist"]
WL_CALLS = {c["name"]: c for c in WL["calls"]}
PK1, PK2 = PubKey.from_hex(WL["pk1"]), PubKey.from_hex(WL["pk2"])
READ_DATA = bytes.fromhex(VECTORS["read_data"])

# name -> (method, arg type, arg, reply type, reply or error text)
PTY_CALLS: list[tuple[str, str, GoType, Any, GoType, Any]] = [
    ("start", "pty.Start", COMMAND_REQ, CommandReq("/bin/cat", (), WinSize(24, 80)), EMPTY, {}),
    ("set_size", "pty.SetPtySize", WIN_SIZE, WinSize(40, 132, 1, 2), EMPTY, {}),
    ("write", "pty.Write", BYTES, b"hi\n", INT, VECTORS["write_n"]),
    ("read", "pty.Read", INT, 64, BYTES, READ_DATA),
    ("stop", "pty.Stop", EMPTY, {}, EMPTY, {}),
    ("read_stopped", "pty.Read", INT, 64, BYTES, RuntimeError(VECTORS["read_err"])),
    (
        "start_noargs_size",
        "pty.Start",
        COMMAND_REQ,
        CommandReq("/bin/sh", ("-c", "exit 0")),
        EMPTY,
        {},
    ),
]
WL_RPC: list[tuple[str, str, GoType, Any, GoType, Any]] = [
    ("add", "whitelist.WhitelistAdd", PUBKEYS, [PK1, PK2], EMPTY, {}),
    ("remove", "whitelist.WhitelistRemove", PUBKEYS, [PK1], EMPTY, {}),
    ("view", "whitelist.Whitelist", EMPTY, {}, PUBKEYS, [PK2]),
]


def c2h(name: str, calls: dict[str, Any] = CALLS) -> bytes:
    return bytes.fromhex(calls[name]["c2h"])


def h2c(name: str, calls: dict[str, Any] = CALLS) -> bytes:
    return bytes.fromhex(calls[name]["h2c"])


# ------------------------------------------------------------------------------------------
# The request line and the answer byte
# ------------------------------------------------------------------------------------------


def test_request_line_is_upstreams() -> None:
    assert encode_request(PTY_URI) == c2h("handshake")
    assert encode_request(WHITELIST_URI) == c2h("handshake", WL_CALLS)
    assert encode_response(True) == h2c("handshake") == b"\x00"
    assert encode_response(False) == b"\x01"


@pytest.mark.parametrize("chunked", [False, True])
def test_request_line_decodes_whole_and_byte_by_byte(chunked: bool) -> None:
    data = c2h("handshake") + b"rest"
    if chunked:
        for i in range(len(c2h("handshake"))):
            assert decode_request(data[:i]) is None
    found = decode_request(data)
    assert found is not None
    req, used = found
    assert (req.path, used) == (PTY_URI, len(c2h("handshake")))
    assert data[used:] == b"rest"


def test_request_leading_slash_and_proxy_query() -> None:
    found = decode_request(encode_request("/" + PTY_URI))
    assert found is not None and found[0].path == PTY_URI
    uri = proxy_uri(PK1, 22)
    assert uri == f"dmsgpty/proxy?pk={PK1.hex()}&port=22"  # upstream's fmt.Sprintf
    found = decode_request(encode_request(uri))
    assert found is not None
    assert found[0].path == "dmsgpty/proxy"
    assert found[0].proxy_target() == (PK1, 22)


@pytest.mark.parametrize(
    "uri", ["dmsgpty/proxy?pk=zz&port=22", "dmsgpty/proxy?port=22", "dmsgpty/proxy?pk=&port=x"]
)
def test_bad_proxy_query_is_a_request_error(uri: str) -> None:
    found = decode_request(encode_request(uri))
    assert found is not None
    with pytest.raises(PtyRequestError):
        found[0].proxy_target()


def test_uri_over_255_bytes_is_refused_before_sending() -> None:
    assert len(encode_request("x" * 255)) == 256
    with pytest.raises(PtyRequestError, match="255"):
        encode_request("x" * 256)


def test_answer_byte() -> None:
    decode_response(b"\x00")
    with pytest.raises(PtyRejectedError) as info:
        decode_response(b"\x01")
    assert isinstance(info.value, ConnectionRefusedError)
    with pytest.raises(PtyRequestError):
        decode_response(b"")


def test_win_size_is_uint16() -> None:
    with pytest.raises(ValueError):
        WinSize(70000, 80)
    with pytest.raises(ValueError):
        WinSize(-1, 80)


# ------------------------------------------------------------------------------------------
# RPC: the Go client's bytes, the Go host's bytes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calls", "table"), [(PTY_CALLS, CALLS), (WL_RPC, WL_CALLS)], ids=["pty", "whitelist"]
)
def test_client_writes_the_go_clients_bytes(calls: list[Any], table: dict[str, Any]) -> None:
    codec = RPCClientCodec()
    for seq, (name, method, arg_type, arg, _, _) in enumerate(calls):
        assert codec.encode_request(seq, method, arg, arg_type) == c2h(name, table), name


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    ("calls", "table"), [(PTY_CALLS, CALLS), (WL_RPC, WL_CALLS)], ids=["pty", "whitelist"]
)
def test_client_reads_the_go_hosts_replies(
    calls: list[Any], table: dict[str, Any], chunked: bool
) -> None:
    codec = RPCClientCodec()
    for seq, (name, method, _, _, reply_type, reply) in enumerate(calls):
        data = h2c(name, table)
        for piece in [data[i : i + 1] for i in range(len(data))] if chunked else [data]:
            codec.feed(piece)
        resp = codec.next_response(lambda h, t=reply_type: None if h.error else t)
        assert resp is not None and resp.error is None
        assert (resp.header.service_method, resp.header.seq) == (method, seq)
        if isinstance(reply, Exception):
            assert resp.header.error == str(reply)
        else:
            assert resp.header.error == ""
            assert resp.reply == reply, name
        assert codec.next_response(lambda _h: None) is None


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    ("calls", "table"), [(PTY_CALLS, CALLS), (WL_RPC, WL_CALLS)], ids=["pty", "whitelist"]
)
def test_server_reads_the_go_client_and_answers_like_the_go_host(
    calls: list[Any], table: dict[str, Any], chunked: bool
) -> None:
    codec = RPCServerCodec()
    types = {method: arg_type for _, method, arg_type, _, _, _ in calls}
    for seq, (name, method, _, arg, reply_type, reply) in enumerate(calls):
        data = c2h(name, table)
        for piece in [data[i : i + 1] for i in range(len(data))] if chunked else [data]:
            codec.feed(piece)
        req = codec.next_request(lambda h: types[h.service_method])
        assert req is not None and req.error is None
        assert req.header == RequestHeader(method, seq)
        assert req.arg == arg, name
        if isinstance(reply, Exception):
            out = codec.encode_response(req.header, None, EMPTY, str(reply))
        else:
            out = codec.encode_response(req.header, reply, reply_type)
        assert out == h2c(name, table), name


def test_start_without_size_or_args_decodes_to_defaults() -> None:
    codec = RPCServerCodec()
    codec.feed(c2h("start") + c2h("set_size") + c2h("write") + c2h("read") + c2h("stop"))
    codec.feed(c2h("read_stopped") + c2h("start_noargs_size"))
    args = []
    while req := codec.next_request(lambda h: {"pty.Start": COMMAND_REQ}.get(h.service_method)):
        args.append(req.arg)
    assert args[0] == CommandReq("/bin/cat", (), WinSize(24, 80))
    assert args[-1].size is None and args[-1].args == ("-c", "exit 0")
