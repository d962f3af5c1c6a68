"""Go net/rpc over gob: recorded Go conversations, concurrency, errors and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywire.cipher import PubKey
from skywire.wire.errors import GobError, RPCError
from skywire.wire.gob import GoBool, GoInt, GoString, GoStruct, GoType, GoUint8
from skywire.wire.gob_types import (
    BIDIRECTIONAL_ROUTE,
    EDGE_RULES,
    ROUTE_IDS,
    RULES,
)
from skywire.wire.netrpc import (
    INVALID_REQUEST,
    RequestHeader,
    RPCBodyError,
    RPCClient,
    RPCClientCodec,
    RPCConnectionShutdown,
    RPCMethod,
    RPCServer,
    RPCServerCodec,
    RPCServerError,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "gob.json").read_text())
CASES = {c["name"]: c for c in VECTORS["cases"] if c["name"] != "netrpc_stream"}
STREAMS = [c for c in VECTORS["cases"] if c["name"] == "netrpc_stream"]
CTX = VECTORS["context"]


def go_byte_lists(value_go: str, type_name: str) -> list[bytes]:
    found = re.findall(re.escape(type_name) + r"\{((?:0x[0-9a-f]+(?:, )?)+)\}", value_go)
    return [bytes(int(x, 16) for x in body.split(", ")) for body in found]


def edge_rules(case: str) -> dict[str, Any]:
    value_go = CASES[case]["value_go"]
    return {
        "Desc": go_byte_lists(value_go, "Desc:routing.RouteDescriptor")[0],
        "Forward": go_byte_lists(value_go, "Forward:routing.Rule")[0],
        "Reverse": go_byte_lists(value_go, "Reverse:routing.Rule")[0],
    }


def _route() -> dict[str, Any]:
    keys = CTX["keys"]
    a, b = PubKey.from_hex(keys["A_pk"]), PubKey.from_hex(keys["B_pk"])
    c = PubKey.from_hex(CASES["dmsg_stream_request"]["signer_pk"])
    tp1, tp2 = uuid.UUID(CTX["tp1"]), uuid.UUID(CTX["tp2"])

    def hop(tp: uuid.UUID, frm: PubKey, to: PubKey) -> dict[str, Any]:
        return {"TpID": tp, "From": frm, "To": to}

    return {
        "Desc": bytes.fromhex(CTX["forward_desc"]),
        "KeepAlive": 30_000_000_000,
        "Forward": [hop(tp1, a, c), hop(tp2, c, b)],
        "Reverse": [hop(tp2, b, c), hop(tp1, c, a)],
    }


RULE_LIST = go_byte_lists(CASES["add_intermediary_rules_arg"]["value_go"], "routing.Rule")
EDGE_ARG = edge_rules("add_edge_rules_arg")
EDGE_REPLY = edge_rules("dial_route_group_reply")
ROUTE = _route()

# call name -> (service method, arg type, arg, reply type, reply)
CALLS: dict[str, tuple[str, GoType, Any, GoType, Any]] = {
    "ReserveIDs": ("RPCGateway.ReserveIDs", GoUint8, 2, ROUTE_IDS, [5, 300]),
    "AddIntermediaryRules": ("RPCGateway.AddIntermediaryRules", RULES, RULE_LIST, GoBool, True),
    "AddEdgeRules": ("RPCGateway.AddEdgeRules", EDGE_RULES, EDGE_ARG, GoBool, True),
    "DialRouteGroup": (
        "SetupRPCGateway.DialRouteGroup",
        BIDIRECTIONAL_ROUTE,
        ROUTE,
        EDGE_RULES,
        EDGE_REPLY,
    ),
    "BadMethod": ("RPCGateway.NoSuchMethod", GoUint8, 1, GoBool, None),
}


def expected_result(name: str, recorded: Any) -> Any:
    """What our client returns for a recorded ``client_result`` entry."""
    if name == "DialRouteGroup":
        assert recorded == "ok"
        return EDGE_REPLY
    return recorded


def gateway_server(received: list[tuple[str, Any]]) -> RPCServer:
    """A server with the upstream service names, answering with the recorded fixed values."""

    def method(name: str) -> RPCMethod:
        _, arg_type, _, reply_type, reply = CALLS[name]

        async def handler(arg: Any) -> Any:
            received.append((name, arg))
            return reply

        return RPCMethod(handler, arg_type, reply_type)

    server = RPCServer()
    server.register(
        "RPCGateway",
        {n: method(n) for n in ("ReserveIDs", "AddIntermediaryRules", "AddEdgeRules")},
    )
    server.register("SetupRPCGateway", {"DialRouteGroup": method("DialRouteGroup")})
    return server


# ------------------------------------------------------------------------------------------
# Test streams
# ------------------------------------------------------------------------------------------


class RecordedInput:
    """A stream that yields fixed bytes then EOF and records what is written."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.written = bytearray()
        self.closed = False
        self.eof_seen = asyncio.Event()

    async def read(self, max_bytes: int = 65536) -> bytes:
        out, self._data = self._data[:max_bytes], self._data[max_bytes:]
        if not out:
            self.eof_seen.set()
        return out

    async def readexactly(self, n: int) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        self.closed = True


class ScriptedServer:
    """Plays the server side of a recorded sequence: each server chunk is released once the
    client has written every byte recorded before it."""

    def __init__(self, sequence: list[dict[str, str]]) -> None:
        self._steps = [(s["from"], bytes.fromhex(s["bytes"])) for s in sequence]
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.written = bytearray()
        self._matched = 0
        self.closed = False
        self._advance()

    def _advance(self) -> None:
        while self._steps:
            side, data = self._steps[0]
            if side == "server":
                self._inbox.put_nowait(data)
            elif len(self.written) >= self._matched + len(data):
                self._matched += len(data)
            else:
                return
            self._steps.pop(0)

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self._inbox.get()

    async def readexactly(self, n: int) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        self.written += data
        self._advance()

    async def close(self) -> None:
        self.closed = True
        self._inbox.put_nowait(b"")


class PipeEnd:
    """One end of an in-memory duplex byte stream."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._buffer = b""
        self._eof = False
        self.peer: PipeEnd | None = None
        self.closed = False

    async def read(self, max_bytes: int = 65536) -> bytes:
        if not self._buffer and not self._eof:
            chunk = await self._inbox.get()
            if chunk:
                self._buffer = chunk
            else:
                self._eof = True
        out, self._buffer = self._buffer[:max_bytes], self._buffer[max_bytes:]
        return out

    async def readexactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = await self.read(n - len(out))
            if not chunk:
                raise asyncio.IncompleteReadError(out, n)
            out += chunk
        return out

    async def write(self, data: bytes) -> None:
        if self.closed or self.peer is None or self.peer.closed:
            raise ConnectionResetError("pipe closed")
        self.peer._inbox.put_nowait(bytes(data))

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._inbox.put_nowait(b"")
        if self.peer is not None:
            self.peer._inbox.put_nowait(b"")


def pipe() -> tuple[PipeEnd, PipeEnd]:
    a, b = PipeEnd(), PipeEnd()
    a.peer, b.peer = b, a
    return a, b


# ------------------------------------------------------------------------------------------
# Recorded Go conversations
# ------------------------------------------------------------------------------------------


def stream_id(case: dict[str, Any]) -> str:
    return "+".join(case["calls"])


@pytest.mark.parametrize("case", STREAMS, ids=stream_id)
async def test_server_answers_recorded_go_client(case: dict[str, Any]) -> None:
    received: list[tuple[str, Any]] = []
    stream = RecordedInput(bytes.fromhex(case["client_to_server"]))
    await gateway_server(received).serve(stream)
    assert stream.written.hex() == case["server_to_client"]
    assert stream.closed
    expected_args = [(n, CALLS[n][2]) for n in case["calls"] if n != "BadMethod"]
    assert received == expected_args


@pytest.mark.parametrize("case", STREAMS, ids=stream_id)
async def test_client_against_recorded_go_server(case: dict[str, Any]) -> None:
    stream = ScriptedServer(case["sequence"])
    client = RPCClient(stream)
    results: list[Any] = []
    for name in case["calls"]:
        method, arg_type, arg, reply_type, _ = CALLS[name]
        try:
            results.append(await client.call(method, arg, arg_type, reply_type))
        except RPCServerError as exc:
            results.append(exc.message)
    await client.close()
    assert stream.written.hex() == case["client_to_server"]
    recorded = json.loads(case["client_result"])  # a JSON text: one entry per call
    assert results == [expected_result(n, r) for n, r in zip(case["calls"], recorded, strict=True)]
    assert stream.closed


def test_error_response_matches_go_header_and_body() -> None:
    codec = RPCServerCodec()
    data = codec.encode_response(
        RequestHeader("RPCGateway.ReserveIDs", 1), None, INVALID_REQUEST, "failure code 4 (example)"
    )
    header = bytes.fromhex(CASES["rpc_response_header_error"]["gob"])
    assert data.startswith(header)
    # struct{} definition (id 65, no name, no fields) then its empty value.
    assert data[len(header) :].hex() == "0aff81030102ff8200000003ff8200"


# ------------------------------------------------------------------------------------------
# Python client <-> Python server
# ------------------------------------------------------------------------------------------

ECHO_ARG = GoStruct("EchoArg", [("Text", GoString), ("Wait", GoBool)])


async def test_concurrent_calls_answered_in_completion_order() -> None:
    client_end, server_end = pipe()
    release = asyncio.Event()
    first_started = asyncio.Event()
    order: list[str] = []

    async def echo(arg: dict[str, Any]) -> str:
        if arg["Wait"]:
            first_started.set()
            await release.wait()
        order.append(arg["Text"])
        return str(arg["Text"]).upper()

    server = RPCServer()
    server.register("Svc", {"Echo": RPCMethod(echo, ECHO_ARG, GoString)})
    serving = asyncio.create_task(server.serve(server_end))
    client = RPCClient(client_end)
    slow = asyncio.create_task(
        client.call("Svc.Echo", {"Text": "slow", "Wait": True}, ECHO_ARG, GoString)
    )
    await first_started.wait()
    assert await client.call("Svc.Echo", {"Text": "fast"}, ECHO_ARG, GoString) == "FAST"
    assert not slow.done()
    release.set()
    assert await slow == "SLOW"
    assert order == ["fast", "slow"]
    await client.close()
    await serving
    assert server_end.closed


async def test_server_errors_and_unknown_names() -> None:
    client_end, server_end = pipe()

    async def fail(arg: int) -> int:
        raise ValueError(f"failure code {arg} (example)")

    async def empty_message(arg: int) -> int:
        raise KeyError()

    server = RPCServer()
    server.register(
        "Svc",
        {
            "Fail": RPCMethod(fail, GoInt, GoInt),
            "Empty": RPCMethod(empty_message, GoInt, GoInt),
            "Int": RPCMethod(lambda_int, GoInt, GoInt),
        },
    )
    serving = asyncio.create_task(server.serve(server_end))
    async with RPCClient(client_end) as client:
        with pytest.raises(RPCServerError, match=r"^failure code 4 \(example\)$"):
            await client.call("Svc.Fail", 4, GoInt, GoInt)
        with pytest.raises(RPCServerError, match=r"^KeyError$"):
            await client.call("Svc.Empty", 4, GoInt, GoInt)
        with pytest.raises(RPCServerError, match=r"^rpc: can't find service Nope\.Fail$"):
            await client.call("Nope.Fail", 4, GoInt, GoInt)
        with pytest.raises(RPCServerError, match=r"^rpc: can't find method Svc\.Nope$"):
            await client.call("Svc.Nope", 4, GoInt, GoInt)
        with pytest.raises(RPCServerError, match=r"^rpc: service/method request ill-formed: x$"):
            await client.call("x", 4, GoInt, GoInt)
        # Wrong argument type: the server reports the decode error, the stream stays usable.
        with pytest.raises(RPCServerError, match="gob: cannot decode"):
            await client.call("Svc.Int", "text", GoString, GoInt)
        # Wrong reply type on our side: a body error, the stream stays usable.
        with pytest.raises(RPCBodyError):
            await client.call("Svc.Int", 5, GoInt, GoString)
        # An argument that does not fit its descriptor is refused before sending.
        with pytest.raises(GobError):
            await client.call("Svc.Int", "x", GoInt, GoInt)
        assert await client.call("Svc.Int", 20, GoInt, GoInt) == 21
    await serving


async def lambda_int(arg: int) -> int:
    return arg + 1


async def test_connection_drop_fails_pending_and_later_calls() -> None:
    client_end, server_end = pipe()
    client = RPCClient(client_end)
    pending = asyncio.create_task(client.call("Svc.M", 1, GoInt, GoInt))
    assert await server_end.read() != b""  # the request went out
    await server_end.close()
    with pytest.raises(RPCConnectionShutdown, match="connection is shut down"):
        await pending
    with pytest.raises(RPCConnectionShutdown):
        await client.call("Svc.M", 1, GoInt, GoInt)
    assert client.is_shut_down
    await client.close()


async def test_close_fails_pending_calls() -> None:
    client_end, server_end = pipe()
    client = RPCClient(client_end)
    pending = asyncio.create_task(client.call("Svc.M", 1, GoInt, GoInt))
    assert await server_end.read() != b""
    await client.close()
    with pytest.raises(RPCConnectionShutdown):
        await pending
    assert client_end.closed
    with pytest.raises(RPCConnectionShutdown):
        await client.call("Svc.M", 1, GoInt, GoInt)


async def test_cancelled_call_reply_is_discarded() -> None:
    client_end, server_end = pipe()
    gate = asyncio.Event()
    started = asyncio.Event()

    async def slow(arg: int) -> int:
        started.set()
        await gate.wait()
        return arg

    server = RPCServer()
    server.register("Svc", {"Slow": RPCMethod(slow, GoInt, GoInt)})
    serving = asyncio.create_task(server.serve(server_end))
    client = RPCClient(client_end)
    call = asyncio.create_task(client.call("Svc.Slow", 1, GoInt, GoInt))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    gate.set()
    assert await client.call("Svc.Slow", 2, GoInt, GoInt) == 2
    await client.close()
    await serving


async def test_cancelling_serve_cancels_handlers_and_closes() -> None:
    client_end, server_end = pipe()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever(arg: int) -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return arg

    server = RPCServer()
    server.register("Svc", {"Forever": RPCMethod(forever, GoInt, GoInt)})
    serving = asyncio.create_task(server.serve(server_end))
    client = RPCClient(client_end)
    call = asyncio.create_task(client.call("Svc.Forever", 1, GoInt, GoInt))
    await started.wait()
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert cancelled.is_set()
    assert server_end.closed
    with pytest.raises(RPCConnectionShutdown):
        await call
    await client.close()


async def test_server_finishes_answers_after_client_eof() -> None:
    gate = asyncio.Event()

    async def slow(arg: int) -> int:
        await gate.wait()
        return arg * 2

    server = RPCServer()
    server.register("Svc", {"Slow": RPCMethod(slow, GoInt, GoInt)})
    codec = RPCClientCodec()
    stream = RecordedInput(codec.encode_request(0, "Svc.Slow", 21, GoInt))
    serving = asyncio.create_task(server.serve(stream))
    await stream.eof_seen.wait()
    assert not serving.done() and not stream.written
    gate.set()
    await serving
    codec.feed(bytes(stream.written))
    resp = codec.next_response(lambda header: GoInt)
    assert resp is not None and resp.reply == 42 and resp.header.seq == 0


def test_register_rejects_duplicates() -> None:
    server = RPCServer()
    server.register("Svc", {})
    with pytest.raises(ValueError):
        server.register("Svc", {})
    with pytest.raises(ValueError):
        server.register("a.b", {})


# ------------------------------------------------------------------------------------------
# Hostile input
# ------------------------------------------------------------------------------------------

ALL_STREAM_BYTES = [bytes.fromhex(c["server_to_client"]) for c in STREAMS] + [
    bytes.fromhex(c["client_to_server"]) for c in STREAMS
]


def drain_codecs(data: bytes) -> None:
    client = RPCClientCodec()
    server = RPCServerCodec()
    for feed, pull in (
        (client.feed, lambda: client.next_response(lambda h: None)),
        (server.feed, lambda: server.next_request(lambda h: None)),
    ):
        feed(data)
        try:
            while pull() is not None:
                pass
        except (GobError, RPCError):
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_into_codecs(data: bytes) -> None:
    drain_codecs(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_STREAM_BYTES), st.data())
def test_mutated_streams_into_codecs(data: bytes, draw: st.DataObject) -> None:
    pos = draw.draw(st.integers(0, len(data) - 1))
    mutated = data[:pos] + bytes([draw.draw(st.integers(0, 255))]) + data[pos + 1 :]
    drain_codecs(mutated[: draw.draw(st.integers(0, len(mutated)))])


@pytest.mark.parametrize("case", STREAMS, ids=stream_id)
async def test_client_with_truncated_server_bytes(case: dict[str, Any]) -> None:
    full = bytes.fromhex(case["server_to_client"])
    name = case["calls"][0]
    method, arg_type, arg, reply_type, _ = CALLS[name]
    for cut in range(0, len(full), 7):
        client_end, server_end = pipe()
        client = RPCClient(client_end)
        call = asyncio.create_task(client.call(method, arg, arg_type, reply_type))
        await server_end.read()
        await server_end.write(full[:cut])
        await server_end.close()
        with contextlib.suppress(RPCConnectionShutdown, RPCServerError):
            await call
        await client.close()


@pytest.mark.parametrize("case", STREAMS, ids=stream_id)
async def test_server_with_truncated_client_bytes(case: dict[str, Any]) -> None:
    full = bytes.fromhex(case["client_to_server"])
    for cut in range(0, len(full), 5):
        stream = RecordedInput(full[:cut])
        await gateway_server([]).serve(stream)
        assert stream.closed
