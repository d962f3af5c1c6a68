"""Upstream's ``skywire cli`` against a real visor's control port: the Go CLI's recorded gob
net/rpc requests (``tests/vectors/visor_rpc_gob.json``) replayed in order, each reply decoded in
the Go types' field layout and checked against the visor's state; JSON/HTTP on the same port;
connections that say nothing or say garbage are dropped, and nothing is left running."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from skywire.cipher import PubKey, SecKey
from skywire.routing.rule import (
    ConsumeRule,
    ForwardRule,
    IntermediaryForwardRule,
    RouteDescriptor,
    parse_rule,
)
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire
from skywire.visor import rpc_port
from skywire.visor.config import AppConfig, VisorConfig
from skywire.visor.rpc_gob import (
    APP_STATES,
    OVERVIEW,
    SUMMARY,
    TRANSPORT_SUMMARIES,
    TRANSPORT_SUMMARY,
    TransportLog,
    visor_rpc_server,
)
from skywire.visor.rpc_port import ControlPort
from skywire.visor.visor import Visor
from skywire.wire.gob import GoType
from skywire.wire.gob_types import RULE, RULES
from skywire.wire.netrpc import RPCClientCodec, RPCResponse
from tests.conftest import load_vectors, no_leaked_tasks

pytestmark = pytest.mark.timeout(120)

VECTORS = load_vectors("visor_rpc_gob")
CTX = VECTORS["context"]


def keys(name: str) -> SecKey:
    return SecKey.from_hex(hashlib.sha256(b"rpc-gob " + name.encode()).hexdigest())


async def call(port: int, request: bytes, reply_type: GoType | None) -> RPCResponse:
    """Send the recorded request bytes on a fresh connection; decode the one response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        codec = RPCClientCodec()
        async with asyncio.timeout(30):
            while True:
                data = await reader.read(65536)
                assert data, "the visor closed the connection without answering"
                codec.feed(data)
                resp = codec.next_response(lambda _: reply_type)
                if resp is not None:
                    assert resp.error is None
                    return resp
    finally:
        writer.close()
        await writer.wait_closed()


def apps_dir(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "apps"
    bin_dir.mkdir()
    sleeper = bin_dir / "sleeper"
    sleeper.write_text("#!/bin/sh\nexec sleep 100000\n")
    sleeper.chmod(0o755)
    return bin_dir


def seed_rules(visor: Visor, peer: PubKey) -> None:
    assert visor.router is not None
    desc = RouteDescriptor(visor.pk, peer, 1, 2)
    tp_id, keep = uuid.UUID(CTX["rule_tp_id"]), 3600 * 10**9
    now = time.monotonic()
    for rule in (
        ConsumeRule(keep, 5, desc),
        ForwardRule(keep, 6, 9, tp_id, desc),
        IntermediaryForwardRule(keep, 7, 10, tp_id),
    ):
        visor.router.table.save_rule(rule, now)


def cases() -> Iterator[tuple[str, bytes]]:
    for case in VECTORS["cases"]:
        yield case["name"], bytes.fromhex(case["request"])


REPLY_TYPES: dict[str, GoType | None] = {
    "pk": OVERVIEW,
    "info": SUMMARY,
    "tp_add": TRANSPORT_SUMMARY,
    "tp_id": TRANSPORT_SUMMARY,
    "tp_ls": TRANSPORT_SUMMARIES,
    "app_ls": APP_STATES,
    "route_ls_rules": RULES,
    "route_rule": RULE,
}


async def test_recorded_go_cli_requests_against_a_visor(tmp_path: Path) -> None:
    bin_dir = apps_dir(tmp_path)

    def configure(i: int, cfg: VisorConfig) -> None:
        cfg.local_path = str(tmp_path / f"visor-{i}")
        if i == 0:
            cfg.launcher.bin_path = str(bin_dir)
            cfg.launcher.apps = [
                AppConfig(name="skychat", binary="sleeper", port=1, auto_start=False),
                AppConfig(name="skysocks", binary="sleeper", port=3, auto_start=True),
            ]

    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=2, apps=True, configure=configure, keys=keys) as sky,
    ):
        v0, v1 = sky.visors
        assert v0.pk.hex() == CTX["visor_0_pk"] and v1.pk.hex() == CTX["visor_1_pk"]
        assert v0.rpc is not None and v0.tm is not None and v0.launcher is not None
        seed_rules(v0, v1.pk)
        port = v0.rpc.port
        got: dict[str, Any] = {}
        for name, request in cases():
            resp = await call(port, request, REPLY_TYPES.get(name))
            got[name] = resp
            assert resp.header.seq == 0
            if name == "app_start":
                assert v0.launcher.statuses()[0].state.value == "running"
            if name == "tp_rm":
                assert v0.tm.transports == {}

        overview = got["pk"].reply
        assert overview["PubKey"] == v0.pk and overview["RoutesCount"] == 3
        summary = got["info"].reply
        # uptime in seconds to 0.1: 0.0 just after the start
        assert summary["Overview"]["PubKey"] == v0.pk and summary["Uptime"] >= 0
        assert summary["DmsgStats"]["ServerPK"] in v0.dmsg.sessions  # type: ignore[union-attr]
        ports = got["ports"].reply
        assert ports["control API"] == {"Port": str(port), "Type": "tcp"}
        assert got["tp_type"].reply == v0.transport_types()
        assert got["tp_ls_empty"].reply == []
        added = got["tp_add"].reply
        assert (added["Local"], added["Remote"], added["Type"]) == (v0.pk, v1.pk, "stcpr")
        assert isinstance(added["Log"], TransportLog)
        assert [t["ID"] for t in got["tp_ls"].reply] == [added["ID"]]
        assert got["tp_id"].reply["ID"] == added["ID"]
        for name in ("tp_rm", "tp_rm_all", "app_start", "app_stop", "app_autostart", "halt"):
            assert got[name].header.error == "", name
        states = {s["AppConfig"]["Name"]: s for s in got["app_ls"].reply}
        assert states["skysocks"]["Status"] == 1 and states["skysocks"]["DetailedStatus"]
        assert states["skychat"]["AppConfig"]["Port"] == 1
        skychat = next(s for s in v0.launcher.statuses() if s.name == "skychat")
        assert skychat.state.value == "stopped" and skychat.auto_start is True
        assert got["app_start_unknown"].header.error == "unknown app 'nope'"
        assert got["app_killswitch"].header.error == "not implemented"
        rules = [parse_rule(raw) for raw in got["route_ls_rules"].reply]
        assert [r.key_route_id for r in rules] == [5, 6, 7]
        assert parse_rule(got["route_rule"].reply).key_route_id == 6
        assert v0.halted.is_set()

        # the JSON API still answers on the same port, while a gob connection is open
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(bytes.fromhex(VECTORS["cases"][0]["request"])[:10])  # half a request
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/visor/info") as r,
        ):
            assert r.status == 200 and (await r.json())["pk"] == v0.pk.hex()
        writer.close()
        await writer.wait_closed()


class _FakeVisor:
    launcher = None

    def info(self) -> dict[str, Any]:
        return {"pk": keys("x").pubkey().hex(), "version": "t", "uptime_s": 1.0}

    def rules(self) -> list[dict[str, Any]]:
        return []

    def transports(self) -> list[Any]:
        return []


@pytest.fixture
def quick_sniff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpc_port, "SNIFF_TIMEOUT", 0.2)


async def ping(request: web.Request) -> web.Response:
    return web.json_response({"pong": True})


@pytest.mark.usefixtures("quick_sniff")
async def test_control_port_drops_silent_and_garbage_connections_and_leaks_nothing() -> None:
    overview_request = bytes.fromhex(VECTORS["cases"][0]["request"])
    async with no_leaked_tasks():
        for _ in range(3):
            app = web.Application()
            app.router.add_get("/ping", ping)
            rpc = visor_rpc_server(_FakeVisor())  # type: ignore[arg-type]
            async with ControlPort(app, rpc, "127.0.0.1", 0) as cp:
                silent = await asyncio.open_connection("127.0.0.1", cp.port)
                garbage = await asyncio.open_connection("127.0.0.1", cp.port)
                garbage[1].write(b"\x05\xff\xff\xff\xff\xff\xff")
                async with asyncio.timeout(5):
                    assert await silent[0].read() == b""  # closed after SNIFF_TIMEOUT
                    assert await garbage[0].read() == b""  # closed: not gob
                resp = await call(cp.port, overview_request, OVERVIEW)
                assert resp.header.error == "" and resp.reply["PubKey"] == keys("x").pubkey()
                open_gob = await asyncio.open_connection("127.0.0.1", cp.port)
                open_gob[1].write(overview_request[:5])
                await open_gob[1].drain()
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{cp.port}/ping") as r,
                ):
                    assert await r.json() == {"pong": True}
            # closing the port ended the gob connection still open
            async with asyncio.timeout(5):
                assert await open_gob[0].read() == b""
            for _, w in (silent, garbage, open_gob):
                w.close()
                await w.wait_closed()
