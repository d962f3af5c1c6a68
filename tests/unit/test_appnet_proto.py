"""The app ↔ visor protocol codecs: round trips, exact bytes, and bad input → ProtocolError."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skywire.apps.appnet.proto import (
    HELLO_MAX,
    LINE_MAX,
    AcceptEvent,
    AddrInfo,
    AppNetError,
    CloseListenerRequest,
    ConnKind,
    DialRequest,
    ErrorReply,
    ErrorRequest,
    Hello,
    ListenRequest,
    Net,
    OkReply,
    ProcConfig,
    ProtocolError,
    Request,
    ServerMessage,
    StatusRequest,
    decode_hello,
    decode_request,
    decode_server_message,
    encode_hello,
    encode_message,
    hello_length,
    new_conn_id,
    new_proc_key,
)
from skywire.cipher import SecKey

PK = SecKey.generate().pubkey()
KEY = "0123456789abcdef0123456789abcdef"


def test_proc_config_round_trip_and_upstream_fields() -> None:
    cfg = ProcConfig(
        app_name="skysocks",
        app_server_addr="localhost:5505",
        proc_key=new_proc_key(),
        visor_pk=PK,
        routing_port=3,
        proc_args=("-passcode", "x"),
        proc_envs=("A=1",),
        proc_work_dir="/tmp/w",
        binary_loc="/bin/skysocks",
        log_db_loc="/tmp/log.db",
        log_store_path="/tmp/logs",
    )
    obj = json.loads(cfg.to_json())
    assert set(obj) == {
        "app_name",
        "app_server_addr",
        "proc_key",
        "proc_args",
        "proc_envs",
        "proc_work_dir",
        "visor_pk",
        "routing_port",
        "binary_loc",
        "log_db_loc",
        "log_store_path",
    }
    assert obj["visor_pk"] == PK.hex() and obj["proc_args"] == ["-passcode", "x"]
    assert ProcConfig.from_json(cfg.to_json()) == cfg
    assert cfg.server_address() == ("localhost", 5505)


def test_proc_config_go_nulls_and_empty_host() -> None:
    text = json.dumps(
        {
            "app_name": "a",
            "app_server_addr": ":5505",
            "proc_key": KEY,
            "proc_args": None,
            "proc_envs": None,
            "visor_pk": PK.hex(),
            "routing_port": 0,
        }
    )
    cfg = ProcConfig.from_json(text)
    assert cfg.proc_args == () and cfg.server_address() == ("localhost", 5505)


@pytest.mark.parametrize(
    "change",
    [
        {"proc_key": "short"},
        {"proc_key": "G" * 32},
        {"app_name": ""},
        {"app_server_addr": "nohostport"},
        {"app_server_addr": "h:99999"},
        {"visor_pk": "zz"},
        {"routing_port": -1},
        {"routing_port": "3"},
        {"proc_args": "not a list"},
        {"proc_args": [1, 2]},
    ],
)
def test_proc_config_rejects(change: dict[str, object]) -> None:
    obj: dict[str, object] = {
        "app_name": "a",
        "app_server_addr": "h:1",
        "proc_key": KEY,
        "visor_pk": PK.hex(),
    }
    obj.update(change)
    with pytest.raises(ProtocolError):
        ProcConfig.from_json(json.dumps(obj))


@pytest.mark.parametrize("text", ["", "[]", "{", "null", "x" * (2 << 20)])
def test_proc_config_not_an_object(text: str) -> None:
    with pytest.raises(ProtocolError):
        ProcConfig.from_json(text)


def test_hello_bytes() -> None:
    raw = encode_hello(Hello(KEY, ConnKind.CONTROL))
    body = b'{"proc_key": "' + KEY.encode() + b'", "kind": "control"}'
    assert raw == len(body).to_bytes(2, "big") + body
    assert hello_length(raw[:2]) == len(body)
    assert decode_hello(raw[2:]) == Hello(KEY, ConnKind.CONTROL)
    data = Hello(KEY, ConnKind.DATA, new_conn_id())
    raw = encode_hello(data)
    assert decode_hello(raw[2 : 2 + hello_length(raw[:2])]) == data


@pytest.mark.parametrize(
    "prefix", [b"\x00\x00", (HELLO_MAX + 1).to_bytes(2, "big"), b"\xff\xff", b"\x01"]
)
def test_hello_length_bounds(prefix: bytes) -> None:
    with pytest.raises(ProtocolError):
        hello_length(prefix)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",
        b"[1]",
        b'{"kind": "control"}',
        b'{"proc_key": "' + KEY.encode() + b'"}',
        b'{"proc_key": "' + KEY.encode() + b'", "kind": "data"}',
        b'{"proc_key": "' + KEY.encode() + b'", "kind": "data", "conn": "no!"}',
        b'{"proc_key": "' + KEY.encode() + b'", "kind": "data", "conn": 5}',
        b'{"proc_key": "' + KEY.encode() + b'", "kind": "control", "conn": "abcdef0123"}',
        b'{"proc_key": "' + KEY.encode() + b'", "kind": "rpc"}',
        b'{"proc_key": 1, "kind": "control"}',
        b"{" + b" " * HELLO_MAX + b"}",
    ],
)
def test_hello_rejects(body: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_hello(body)
    assert isinstance(info.value, AppNetError) and isinstance(info.value, ValueError)


REQUESTS: list[Request] = [
    ListenRequest(1, Net.SKYNET, 3),
    ListenRequest(2, Net.DMSG, 80),
    DialRequest(3, Net.SKYNET, PK, 3),
    DialRequest(4, Net.SKYNET, PK, 3, local_port=13),
    DialRequest(5, Net.DMSG, PK, 80),
    CloseListenerRequest(6, Net.SKYNET, 3),
    StatusRequest(7, "serving ✓"),
    ErrorRequest(8, "boom"),
]


@pytest.mark.parametrize("req", REQUESTS)
def test_request_round_trip(req: Request) -> None:
    line = encode_message(req)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_request(line) == req


def test_request_exact_json() -> None:
    assert json.loads(encode_message(DialRequest(9, Net.SKYNET, PK, 3))) == {
        "id": 9,
        "op": "dial",
        "net": "skynet",
        "pk": PK.hex(),
        "port": 3,
    }
    assert json.loads(encode_message(ListenRequest(1, Net.DMSG, 5))) == {
        "id": 1,
        "op": "listen",
        "net": "dmsg",
        "port": 5,
    }


REMOTE = AddrInfo(Net.SKYNET, PK, 49152)
MESSAGES: list[ServerMessage] = [
    OkReply(1),
    OkReply(2, "abcdef0123456789abcdef01", REMOTE),
    ErrorReply(3, "no route"),
    ErrorReply(4, "dmsg error 400 - port occupied", 400),
    AcceptEvent(Net.DMSG, 80, "abcdef0123456789abcdef01", AddrInfo(Net.DMSG, PK, 7)),
]


@pytest.mark.parametrize("msg", MESSAGES)
def test_server_message_round_trip(msg: ServerMessage) -> None:
    assert decode_server_message(encode_message(msg)) == msg


def test_server_message_exact_json() -> None:
    assert json.loads(encode_message(MESSAGES[1])) == {
        "id": 2,
        "ok": True,
        "conn": "abcdef0123456789abcdef01",
        "remote": {"net": "skynet", "pk": PK.hex(), "port": 49152},
    }
    assert json.loads(encode_message(MESSAGES[3])) == {
        "id": 4,
        "ok": False,
        "error": "dmsg error 400 - port occupied",
        "code": 400,
    }
    assert json.loads(encode_message(MESSAGES[4]))["event"] == "accept"


@pytest.mark.parametrize(
    ("line", "rid"),
    [
        (b"not json\n", None),
        (b"[1]\n", None),
        (b'{"op": "listen"}\n', None),
        (b'{"id": -1, "op": "listen"}\n', None),
        (b'{"id": true, "op": "listen"}\n', None),
        (b'{"id": 1, "op": "rm -rf"}\n', 1),
        (b'{"id": 2, "op": "listen", "net": "tcp", "port": 3}\n', 2),
        (b'{"id": 3, "op": "listen", "net": "skynet", "port": 0}\n', 3),
        (b'{"id": 4, "op": "listen", "net": "skynet", "port": 70000}\n', 4),
        (b'{"id": 5, "op": "dial", "net": "skynet", "pk": "abc", "port": 3}\n', 5),
        (b'{"id": 6, "op": "dial", "net": "skynet", "pk": null, "port": 3}\n', 6),
        (b'{"id": 7, "op": "status", "text": 5}\n', 7),
        (b'{"id": 8, "op": "status", "text": "' + b"x" * 20000 + b'"}\n', 8),
        (b'{"id": 9, "op": "listen", "net": ["skynet"], "port": 3}\n', 9),
        (b"{" + b" " * LINE_MAX + b"}", None),
    ],
)
def test_request_rejects(line: bytes, rid: int | None) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(line)
    assert info.value.request_id == rid


@pytest.mark.parametrize(
    "line",
    [
        b"{}",
        b'{"id": 1}',
        b'{"id": 1, "ok": "yes"}',
        b'{"id": 1, "ok": false}',
        b'{"id": 1, "ok": false, "error": "x", "code": "400"}',
        b'{"id": 1, "ok": true, "conn": "../../etc"}',
        b'{"id": 1, "ok": true, "remote": {"net": "skynet"}}',
        b'{"event": "bye"}',
        b'{"event": "accept", "net": "skynet", "port": 3, "conn": "abcdef0123"}',
    ],
)
def test_server_message_rejects(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_server_message(line)


@given(
    rid=st.integers(0, 2**53),
    port=st.integers(1, 0xFFFF),
    net=st.sampled_from(list(Net)),
    text=st.text(max_size=200),
)
def test_requests_round_trip_property(rid: int, port: int, net: Net, text: str) -> None:
    for req in (
        ListenRequest(rid, net, port),
        CloseListenerRequest(rid, net, port),
        DialRequest(rid, net, PK, port, port if net is Net.SKYNET else 0),
        StatusRequest(rid, text),
        ErrorRequest(rid, text),
    ):
        assert decode_request(encode_message(req)) == req


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for decode in (decode_request, decode_server_message, decode_hello):
        with contextlib.suppress(ProtocolError):
            decode(data)
