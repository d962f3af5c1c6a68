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


def _cfg(disc_url: str, ar_url: str = "") -> VisorConfig:
    cfg = VisorConfig.generate(dmsg_discovery=disc_url, cli_addr="127.0.0.1:0")
    cfg.skywire_tcp.listening_address = "127.0.0.1:0"
    cfg.transport.address_resolver = ar_url  # never the production services in tests
    cfg.routing.route_finder = ""
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
            assert all(r["post_quantum"] for r in rows)  # our peers: hybrid handshakes
            pq_info = (await rpc_a.call("GET", "/visor/info"))["post_quantum"]
            assert pq_info["transports_hybrid"] == 2 and pq_info["dmsg_sessions_hybrid"] == 1
            assert pq_info["require"] is False and pq_info["handshakes_hybrid"] >= 3
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


async def test_two_visors_build_a_transport_of_each_type() -> None:
    from skywire.services.ar import ARServer
    from skywire.services.ar.store.memory import MemoryStore as ARMemoryStore

    async with (
        LocalDmsgNetwork(servers=1) as net,
        TPD() as tpd,
        ARMemoryStore() as ar_store,
        ARServer(ar_store, "127.0.0.1", 0, 0, test_mode=True) as ar,
    ):
        cfg_a, cfg_b = _cfg(net.disc_url, ar.url), _cfg(net.disc_url, ar.url)
        opts = {"latency_interval": 0, "ar_udp": ar.udp_addr}
        async with (
            Visor(cfg_a, registry=tpd.registry(cfg_a.sk), **opts) as a,  # type: ignore[arg-type]
            Visor(cfg_b, registry=tpd.registry(cfg_b.sk), **opts) as b,  # type: ignore[arg-type]
        ):
            await a.ready()
            await b.ready()
            assert a.tm is not None and b.tm is not None
            assert a.tm.transport_types() == ["dmsg", "stcp", "stcpr", "sudph"]
            cfg_a.skywire_tcp.pk_table[b.pk.hex()] = f"127.0.0.1:{b.tm.networks['stcp'].port}"
            ids = {}
            for tp_type in ("dmsg", "stcp", "stcpr", "sudph"):
                tp = await a.add_transport(b.pk, tp_type)
                peer = await b.tm.wait_for(tp.id)
                # both directions: each end's transport-level ping is answered by the other
                assert await tp.ping() > 0 and await peer.ping() > 0
                assert tp.stats.packets_received >= 2 and peer.stats.packets_received >= 2
                ids[tp_type] = tp.id
            # once each in discovery, the same IDs seen from both edges
            assert await tpd.ids() == set(ids.values())
            reg_a, reg_b = tpd.registry(cfg_a.sk), tpd.registry(cfg_b.sk)
            seen_a = {e.id for e in await reg_a.client.get_transports_by_edge(a.pk)}
            seen_b = {e.id for e in await reg_b.client.get_transports_by_edge(b.pk)}
            assert seen_a == seen_b == set(ids.values())
            # removing one removes it from discovery
            await a.remove_transport(ids["sudph"])
            assert await tpd.ids() == {ids[t] for t in ("dmsg", "stcp", "stcpr")}
        assert await tpd.ids() == set()
