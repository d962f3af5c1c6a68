"""Upstream CLI's net/rpc calls to the visor: the protocol sniff, the recorded Go requests decoded
with our argument types, the recorded replies decoded in the Go types' field layout."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from skywire.cipher import PubKey
from skywire.routing.rule import ConsumeRule, ForwardRule, IntermediaryForwardRule, parse_rule
from skywire.visor.rpc_gob import (
    APP_STATE,
    LOG_ENTRY,
    OVERVIEW,
    SUMMARY,
    TRANSPORT_SUMMARY,
    TransportLog,
    transport_summary,
    visor_rpc_server,
)
from skywire.visor.rpc_port import Wire, sniff
from skywire.wire.gob import GoAny, GoType
from skywire.wire.gob_types import PUBKEY, RULE, RULES, UUID
from skywire.wire.netrpc import RequestHeader, RPCClientCodec, RPCResponse, RPCServerCodec
from tests.conftest import load_vectors

VECTORS = load_vectors("visor_rpc_gob")
CASES = {c["name"]: c for c in VECTORS["cases"]}
CTX = VECTORS["context"]
V0 = PubKey.from_hex(CTX["visor_0_pk"])
V1 = PubKey.from_hex(CTX["visor_1_pk"])
SERVER = visor_rpc_server(None)  # type: ignore[arg-type]  # only the method table is used


def _arg_type(header: RequestHeader) -> GoType | None:
    found = SERVER.lookup(header.service_method)
    return None if isinstance(found, str) else found.arg_type


def decode_request(data: bytes, *, byte_by_byte: bool = False) -> tuple[str, Any]:
    codec = RPCServerCodec()
    chunks = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]
    found = []
    for chunk in chunks:
        codec.feed(chunk)
        while (req := codec.next_request(_arg_type)) is not None:
            assert req.error is None
            found.append(req)
    assert len(found) == 1 and not codec.mid_message
    assert found[0].header.seq == 0
    return found[0].header.service_method, found[0].arg


def decode_reply(name: str, reply_type: GoType | None) -> RPCResponse:
    codec = RPCClientCodec()
    codec.feed(bytes.fromhex(CASES[name]["reply"]))
    resp = codec.next_response(lambda _: reply_type)
    assert resp is not None and resp.error is None
    assert codec.next_response(lambda _: None) is None
    return resp


# ---------------------------------------------------------------- telling the protocols apart
@pytest.mark.parametrize(
    ("prefix", "wire"),
    [
        (b"", None),
        (b"G", None),
        (b"GET / HTTP/1.1\r\n", Wire.HTTP),
        (b"PO", Wire.HTTP),
        (b"DELETE /transports/x", Wire.HTTP),
        (b"\x2e", Wire.GOB),
        (b"\x2e\x7f\x03", Wire.GOB),
        (b"A\x7f", Wire.GOB),  # a 65-byte type definition: the id is never a letter
        (b"\xfe\x01\x00\xff", Wire.GOB),
        (b"get /", Wire.GOB),
    ],
)
def test_sniff(prefix: bytes, wire: Wire | None) -> None:
    assert sniff(prefix) is wire


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_recorded_request_is_gob(name: str) -> None:
    assert sniff(bytes.fromhex(CASES[name]["request"])[:2]) is Wire.GOB


# ---------------------------------------------------------------- the Go CLI's requests
EXPECTED_ARGS: dict[str, tuple[str, Any]] = {
    "pk": ("Overview", {}),
    "info": ("Summary", {}),
    "ports": ("Ports", {}),
    "tp_type": ("TransportTypes", {}),
    "tp_ls_empty": ("Transports", {"FilterTypes": [], "FilterPubKeys": [], "ShowLogs": True}),
    "tp_add": ("AddTransport", {"RemotePK": V1, "TpType": "stcpr", "Timeout": 0}),
    "tp_rm_all": ("RemoveAllTransports", {}),
    "app_ls": ("Apps", {}),
    "app_start": ("StartApp", "skychat"),
    "app_stop": ("StopApp", "skychat"),
    "app_autostart": ("SetAutoStart", {"AppName": "skychat", "AutoStart": True}),
    "app_start_unknown": ("StartApp", "nope"),
    "route_ls_rules": ("RoutingRules", {}),
    "route_rule": ("RoutingRule", 6),
    "app_killswitch": ("SetAppKillswitch", {"AppName": "skychat", "Val": True}),
    "halt": ("Shutdown", {}),
}


@pytest.mark.parametrize("byte_by_byte", [False, True])
@pytest.mark.parametrize("name", sorted(EXPECTED_ARGS))
def test_recorded_requests_decode(name: str, byte_by_byte: bool) -> None:
    method, arg = decode_request(bytes.fromhex(CASES[name]["request"]), byte_by_byte=byte_by_byte)
    want_method, want_arg = EXPECTED_ARGS[name]
    assert method == "app-visor." + want_method
    assert arg == want_arg


def test_transport_id_requests_carry_the_added_transport() -> None:
    added = decode_reply("tp_add", TRANSPORT_SUMMARY).reply
    for name, method in [("tp_id", "Transport"), ("tp_rm", "RemoveTransport")]:
        got_method, tp_id = decode_request(bytes.fromhex(CASES[name]["request"]))
        assert got_method == "app-visor." + method
        assert isinstance(tp_id, uuid.UUID) and tp_id == added["ID"]


def test_unknown_and_unimplemented_methods() -> None:
    assert SERVER.lookup("app-visor.Nope") == "rpc: can't find method app-visor.Nope"
    found = SERVER.lookup("app-visor.SetAppKillswitch")
    assert not isinstance(found, str) and found.arg_type == GoAny


# ---------------------------------------------------------------- our replies, in Go's layout
def test_overview_reply() -> None:
    resp = decode_reply("pk", OVERVIEW)
    assert resp.header.service_method == "app-visor.Overview" and resp.header.error == ""
    overview = resp.reply
    assert overview["PubKey"] == V0
    assert overview["BuildInfo"]["Version"]
    names = [a["AppConfig"]["Name"] for a in overview["Apps"]]
    assert names == ["skychat", "skysocks"]
    assert overview["RoutesCount"] == 3


def test_summary_reply() -> None:
    summary = decode_reply("info", SUMMARY).reply
    assert summary["Overview"]["PubKey"] == V0
    assert summary["DmsgStats"]["PK"] == V0 and summary["DmsgStats"]["ServerPK"] != PubKey.NULL
    assert summary["Uptime"] > 0 and summary["Online"] is True


def test_transport_replies() -> None:
    added = decode_reply("tp_add", TRANSPORT_SUMMARY).reply
    assert (added["Local"], added["Remote"], added["Type"]) == (V0, V1, "stcpr")
    assert isinstance(added["Log"], TransportLog) and added["Log"].recv >= 0
    listed = decode_reply("tp_ls", None).reply
    assert len(listed) == 1
    assert decode_reply("tp_ls_empty", None).reply == []
    assert decode_reply("tp_type", None).reply == ["dmsg", "stcpr", "sudph"]


def test_app_replies() -> None:
    states = decode_reply("app_ls", None).reply
    by_name = {s["AppConfig"]["Name"]: s for s in states}
    assert by_name["skychat"]["AppConfig"]["Port"] == 1
    assert by_name["skychat"].get("Status", 0) == 0  # stopped
    assert by_name["skysocks"]["Status"] == 1 and by_name["skysocks"]["AppConfig"]["AutoStart"]
    fail = decode_reply("app_start_unknown", None)
    assert fail.header.error == "unknown app 'nope'"
    assert decode_reply("app_killswitch", None).header.error == "not implemented"


def test_rule_replies() -> None:
    rules = [parse_rule(raw) for raw in decode_reply("route_ls_rules", RULES).reply]
    assert [type(r) for r in rules] == [ConsumeRule, ForwardRule, IntermediaryForwardRule]
    assert [r.key_route_id for r in rules] == [5, 6, 7]
    one = parse_rule(decode_reply("route_rule", RULE).reply)
    assert isinstance(one, ForwardRule) and one.next_route_id == 9
    assert str(one.next_tp_id) == CTX["rule_tp_id"]


def test_log_entry_is_upstreams_gob_encoder() -> None:
    # Go: enc := gob.NewEncoder(&b); enc.Encode(uint64(1234)); enc.Encode(uint64(5678))
    summary = {
        "id": str(uuid.UUID(int=1)),
        "local_pk": V0.hex(),
        "remote_pk": V1.hex(),
        "type": "dmsg",
        "received": 1234,
        "sent": 5678,
    }
    tp = transport_summary(summary)
    assert tp["Log"] == TransportLog(1234, 5678)
    assert "Log" not in transport_summary(summary, logs=False)
    assert LOG_ENTRY.marshal is not None
    assert LOG_ENTRY.marshal(TransportLog(1234, 5678)).hex() == "050600fe04d2050600fe162e"


def test_descriptors_name_the_go_fields() -> None:
    assert [f.name for f in APP_STATE.fields] == ["AppConfig", "Status", "DetailedStatus"]
    pk_field, id_field = OVERVIEW.field("PubKey"), TRANSPORT_SUMMARY.field("ID")
    assert pk_field is not None and pk_field.type == PUBKEY
    assert id_field is not None and id_field.type == UUID
