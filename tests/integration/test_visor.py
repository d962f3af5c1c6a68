"""Two visors on loopback: dmsg and stcp transports through the control API, and the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from skywire.cipher import KeyPair
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.transport.entry import make_transport_id
from skywire.visor.config import VisorConfig
from skywire.visor.rpc import RPCClient, RPCClientError
from skywire.visor.visor import Visor
from tests.integration.test_transports import TPD

pytestmark = pytest.mark.timeout(60)
CLI = [sys.executable, "-m", "skywire.cli", "cli"]


def _cfg(disc_url: str) -> VisorConfig:
    cfg = VisorConfig.generate(dmsg_discovery=disc_url, cli_addr="127.0.0.1:0")
    cfg.skywire_tcp.listening_address = "127.0.0.1:0"
    return cfg


async def test_visors_make_transports_through_the_control_api() -> None:
    async with LocalDmsgNetwork(servers=1) as net, TPD() as tpd:
        cfg_a, cfg_b = _cfg(net.disc_url), _cfg(net.disc_url)
        async with (
            Visor(cfg_a, registry=tpd.registry(cfg_a.sk), latency_interval=0) as a,
            Visor(cfg_b, registry=tpd.registry(cfg_b.sk), latency_interval=0) as b,
        ):
            await a.ready()
            await b.ready()
            assert a.rpc is not None and b.rpc is not None
            rpc_a = RPCClient(f"127.0.0.1:{a.rpc.port}")
            info = await rpc_a.call("GET", "/visor/info")
            assert info["pk"] == a.pk.hex() and "dmsg" in info["transport_types"]
            # stcp needs the peer's address in the static table
            assert b.tm is not None
            stcp_b = b.tm.networks["stcp"]
            cfg_a.skywire_tcp.pk_table[b.pk.hex()] = f"127.0.0.1:{stcp_b.port}"
            for tp_type in ("dmsg", "stcp"):
                row = await rpc_a.call("POST", "/transports", {"pk": b.pk.hex(), "type": tp_type})
                assert row["id"] == str(make_transport_id(a.pk, b.pk, tp_type))
                assert row["is_up"]
            rows = await rpc_a.call("GET", "/transports")
            assert {r["type"] for r in rows} == {"dmsg", "stcp"}
            assert len(await tpd.ids()) == 2
            dmsg_id = next(r["id"] for r in rows if r["type"] == "dmsg")
            await rpc_a.call("DELETE", f"/transports/{dmsg_id}")
            assert {r["type"] for r in await rpc_a.call("GET", "/transports")} == {"stcp"}
            with pytest.raises(RPCClientError):
                await rpc_a.call("POST", "/transports", {"pk": "nope", "type": "dmsg"})
            with pytest.raises(RPCClientError):
                await rpc_a.call("POST", "/transports", {"pk": b.pk.hex(), "type": "pigeon"})
        # graceful shutdown unregistered what was registered
        assert await tpd.ids() == set()


def test_tp_id_cli_prints_the_deterministic_id() -> None:
    a, b = KeyPair.generate().pk, KeyPair.generate().pk
    res = subprocess.run(
        [*CLI, "visor", "tp", "id", a.hex(), b.hex(), "stcpr"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout.strip() == str(make_transport_id(a, b, "stcpr"))
    res2 = subprocess.run(
        [*CLI, "visor", "tp", "id", b.hex(), a.hex(), "stcpr"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert res2.stdout == res.stdout


def test_config_gen_testnet(tmp_path: object) -> None:
    res = subprocess.run(
        [*CLI, "config", "gen", "--testnet"],
        capture_output=True,
        text=True,
        check=True,
    )
    cfg = VisorConfig.from_json(res.stdout)
    assert cfg.dmsg.discovery == "http://127.0.0.1:9090"
    assert cfg.transport.discovery.startswith("http://127.0.0.1")
