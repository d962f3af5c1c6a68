"""Apps reaching the network through the visor's app server, over real TCP and real routes.

Visors 0─1─2 (:class:`RouteNet`), an :class:`AppServer` on visors 0 and 2, and in-process
:class:`AppClient` s talking to them over TCP exactly as an app process would: a skynet conn over
a 2-hop route and a dmsg stream carry bytes both ways; skysocks server and client run on app
clients instead of routers; bad Hellos and keys are closed; unregistering ends the app's
listeners and connections (the peer sees the end); unclaimed conn ids expire; thirty cycles leave
no task, fd or route group behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from skywire.apps.appnet.client import AppClient, AppConn
from skywire.apps.appnet.proto import (
    AppRequestError,
    ConnKind,
    Hello,
    ProcConfig,
    encode_hello,
    new_proc_key,
)
from skywire.apps.skysocks import SkysocksClient, SkysocksServer
from skywire.apps.skysocks.client import RouteDialer
from skywire.apps.skysocks.server import RouteListening
from skywire.visor.appserver import AppServer
from skywire.wire.stream import ByteStream
from tests.integration._skysocks import FAST_REDIAL, http_get, item_body, web_site
from tests.integration.test_router import RouteNet

pytestmark = pytest.mark.timeout(90)

LOOPBACK = ("127.0.0.1", 0)


@dataclass
class AppNet:
    net: RouteNet
    servers: dict[int, AppServer]

    def config(self, visor: int, name: str) -> ProcConfig:
        """Register a new run of ``name`` on ``visor``'s app server; its PROC_CONFIG."""
        server = self.servers[visor]
        key = new_proc_key()
        server.register(key, name)
        return ProcConfig(name, server.address, key, self.net.nodes[visor].pk)


@contextlib.asynccontextmanager
async def app_net(claim_timeout: float = 10.0) -> AsyncIterator[AppNet]:
    async with contextlib.AsyncExitStack() as stack:
        net = await stack.enter_async_context(RouteNet(3, [(0, 1), (1, 2)]))
        servers = {}
        for i in (0, 2):
            node = net.nodes[i]
            servers[i] = await stack.enter_async_context(
                AppServer(node.router, node.dmsg, LOOPBACK, claim_timeout=claim_timeout)
            )
        yield AppNet(net, servers)


async def exchange(a: ByteStream, b: ByteStream, size: int = 300_000) -> None:
    """``size`` bytes a → b and back b → a, checked."""
    data = os.urandom(size)

    async def send(s: ByteStream) -> None:
        await s.write(data)

    for src, dst in ((a, b), (b, a)):
        writer = asyncio.create_task(send(src))
        got = await dst.readexactly(size)
        await writer
        assert got == data


def dialer(app: AppClient) -> RouteDialer:
    return app  # mypy checks that AppClient is the Protocol skysocks needs


def listening(app: AppClient) -> RouteListening:
    return app


async def raw_connect(server: AppServer, first: bytes) -> asyncio.StreamReader:
    host, _, port = server.address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(first)
    await writer.drain()
    return reader


async def test_skynet_conn_over_two_hops_both_ways() -> None:
    async with app_net() as an:
        srv_cfg, cli_cfg = an.config(2, "echo-srv"), an.config(0, "echo-cli")
        async with AppClient(srv_cfg) as srv, AppClient(cli_cfg) as cli:
            listener = await srv.listen(3)
            conn = await cli.dial_routes(an.net.nodes[2].pk, 0, 3)
            peer = await listener.accept()
            assert isinstance(peer, AppConn)
            assert peer.remote.pk == an.net.nodes[0].pk and peer.remote.net == "skynet"
            assert conn.remote.pk == an.net.nodes[2].pk and conn.remote.port == 3
            await exchange(conn, peer)
            report = an.servers[2].report("echo-srv")
            assert report.connected and report.listening == [("skynet", 3)]
            assert report.conns == 1
            await srv.set_status("echoing")
            await srv.set_error("none really")
            report = an.servers[2].report("echo-srv")
            assert (report.status, report.error) == ("echoing", "none really")
            await conn.close()
            async with asyncio.timeout(10):
                assert await peer.read() == b""  # the route ended, so did the app's conn
            await peer.close()
            await listener.close()
            assert an.servers[2].report("echo-srv").listening == []


async def test_dmsg_stream_both_ways() -> None:
    async with (
        app_net() as an,
        AppClient(an.config(2, "d-srv")) as srv,
        AppClient(an.config(0, "d-cli")) as cli,
    ):
        listener = await srv.listen(80, net="dmsg")
        conn = await cli.dial(an.net.nodes[2].pk, 80, net="dmsg")
        peer = await listener.accept()
        assert peer.remote.net == "dmsg" and peer.remote.pk == an.net.nodes[0].pk
        await exchange(conn, peer)
        await peer.close()
        async with asyncio.timeout(10):
            assert await conn.read() == b""
        await conn.close()


async def test_dial_failures_come_back_typed() -> None:
    async with app_net() as an, AppClient(an.config(0, "lonely")) as cli:
        with pytest.raises(AppRequestError) as info:
            await cli.dial(an.net.nodes[2].pk, 81, net="dmsg")  # nobody listens there
        assert "dmsg" in str(info.value) and info.value.code is not None
        with pytest.raises(AppRequestError, match="oneself"):
            await cli.dial_routes(an.net.nodes[0].pk, 0, 3)


async def test_skysocks_runs_on_app_clients() -> None:
    async with (
        web_site() as web_port,
        app_net() as an,
        AppClient(an.config(2, "skysocks")) as srv_app,
        AppClient(an.config(0, "skysocks-client")) as cli_app,
        SkysocksServer(listening(srv_app)),
        SkysocksClient(
            dialer(cli_app), an.net.nodes[2].pk, listen=("127.0.0.1", 0), redial=FAST_REDIAL
        ) as client,
    ):
        async with asyncio.timeout(20):
            await client.wait_connected()
        assert client.address is not None
        for n in (1, 7):
            assert await http_get(client.address, web_port, f"/item/{n}") == item_body(n)
        assert an.servers[2].report("skysocks").listening == [("skynet", 3)]


async def test_second_listener_on_a_port_and_router_ports_refused() -> None:
    async with app_net() as an:
        router = an.net.nodes[2].router
        echo = await router.listen(7)  # the visor's own user of a route port
        try:
            async with AppClient(an.config(2, "a")) as a, AppClient(an.config(2, "b")) as b:
                await a.listen(3)
                with pytest.raises(
                    AppRequestError, match="skynet port 3 is already taken by app a"
                ):
                    await b.listen(3)
                with pytest.raises(AppRequestError, match="route port 7 is already taken"):
                    await b.listen(7)
                await a.listen(90, net="dmsg")
                with pytest.raises(AppRequestError, match="dmsg port 90 is already taken"):
                    await b.listen(90, net="dmsg")
                assert an.servers[2].report("b").listening == []
        finally:
            await echo.close()


@pytest.mark.parametrize(
    "first",
    [
        b"\x00\x00",  # zero length
        b"\xff\xff" + b"{" * 100,  # over 4 KiB announced
        b"\x00\x05hello",  # not JSON
        encode_hello(Hello(new_proc_key(), ConnKind.CONTROL)),  # unknown proc key
        encode_hello(Hello(new_proc_key(), ConnKind.DATA, "abcdef0123456789")),
    ],
)
async def test_bad_hello_or_key_is_closed(first: bytes) -> None:
    async with app_net() as an:
        server = an.servers[2]
        reader = await raw_connect(server, first)
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        assert server.report("anything") == type(server.report("anything"))()


async def test_second_control_and_foreign_conn_ids_are_closed() -> None:
    async with app_net() as an:
        cfg = an.config(2, "one")
        async with AppClient(cfg) as app:
            reader = await raw_connect(
                an.servers[2], encode_hello(Hello(cfg.proc_key, ConnKind.CONTROL))
            )
            async with asyncio.timeout(5):
                assert await reader.read() == b""
            await app.set_status("still here")  # the first control connection is untouched
            assert an.servers[2].report("one").status == "still here"


async def test_unregister_closes_listeners_and_live_conns() -> None:
    async with app_net() as an:
        srv_cfg = an.config(2, "victim")
        async with AppClient(srv_cfg) as srv, AppClient(an.config(0, "peer")) as cli:
            listener = await srv.listen(3)
            conn = await cli.dial_routes(an.net.nodes[2].pk, 0, 3)
            peer = await listener.accept()
            await exchange(conn, peer, 1000)
            await an.servers[2].unregister(srv_cfg.proc_key)
            async with asyncio.timeout(10):
                assert await conn.read() == b""  # the far end sees the end
                assert await peer.read() == b""  # and so does the app's own side
                with pytest.raises(AppRequestError):
                    await listener.accept()
                with pytest.raises(AppRequestError):
                    await srv.set_status("gone?")
            report = an.servers[2].report("victim")
            assert not report.connected and report.listening == [] and report.conns == 0
            await conn.close()
            await peer.close()
            # the port is free again for the next run
            async with AppClient(an.config(2, "victim")) as again:
                await again.listen(3)


async def test_unclaimed_conn_ids_expire() -> None:
    async with (
        app_net(claim_timeout=0.3) as an,
        AppClient(an.config(2, "slow")) as srv,
        AppClient(an.config(0, "c")) as cli,
    ):
        listener = await srv.listen(3)
        conn = await cli.dial_routes(an.net.nodes[2].pk, 0, 3)
        # nobody accepts on the app side: the visor closes the route when the id expires
        async with asyncio.timeout(10):
            assert await conn.read() == b""
            late = await listener.accept()  # claiming the expired id gets a closed conn
            assert await late.read() == b""
        await late.close()
        await conn.close()
        assert an.servers[2].report("slow").conns == 0


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


async def test_30_register_connect_unregister_cycles_leave_nothing() -> None:
    async with app_net() as an:
        routers = [n.router for n in an.net.nodes]
        kept: list[AppClient] = []  # a task one of them failed to end stays alive and counted

        async def cycle(i: int) -> None:
            srv_cfg, cli_cfg = an.config(2, "srv"), an.config(0, "cli")
            srv, cli = AppClient(srv_cfg), AppClient(cli_cfg)
            kept.extend((srv, cli))
            async with srv, cli:
                listener = await srv.listen(3)
                dmsg_listener = await srv.listen(80, net="dmsg")
                conn = await cli.dial_routes(an.net.nodes[2].pk, 0, 3)
                peer = await listener.accept()
                await exchange(conn, peer, 100)
                dconn = await cli.dial(an.net.nodes[2].pk, 80, net="dmsg")
                dpeer = await dmsg_listener.accept()
                await exchange(dconn, dpeer, 100)
                if i % 2:  # the app ends first: unregister tears down its live conns
                    await an.servers[2].unregister(srv_cfg.proc_key)
                    async with asyncio.timeout(10):
                        assert await conn.read() == b""
                        assert await dconn.read() == b""
                else:
                    await conn.close()
                    await dconn.close()
                    async with asyncio.timeout(10):
                        assert await peer.read() == b""
                        assert await dpeer.read() == b""
                for s in (conn, peer, dconn, dpeer):
                    await s.close()
            await an.servers[2].unregister(srv_cfg.proc_key)
            await an.servers[0].unregister(cli_cfg.proc_key)
            for rg in [g for r in routers for g in r.route_groups]:
                async with asyncio.timeout(10):
                    await rg.wait_closed()

        await cycle(0)
        gc.collect()
        base_tasks = len(asyncio.all_tasks())
        base_fds = _open_fds()
        for i in range(1, 30):
            await cycle(i)
        assert [s.task_count() for s in an.servers.values()] == [0, 0]
        gc.collect()
        for _ in range(100):  # tasks that end on their own (RPC connection closers) may lag
            if len(asyncio.all_tasks()) <= base_tasks:
                break
            await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) <= base_tasks
        for r in routers:
            assert r.route_groups == []
        if base_fds:
            assert _open_fds() <= base_fds
        assert an.servers[2].report("srv").conns == 0


async def test_raw_control_bad_requests_answered_or_closed() -> None:
    async with app_net() as an:
        cfg = an.config(2, "raw")
        host, _, port = an.servers[2].address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(encode_hello(Hello(cfg.proc_key, ConnKind.CONTROL)))
        writer.write(
            b'{"id": 1, "op": "bogus"}\n{"id": 2, "op": "listen", "net": "skynet", "port": 3}\n'
        )
        await writer.drain()
        async with asyncio.timeout(5):
            first = json.loads(await reader.readline())
            second = json.loads(await reader.readline())
        assert first["id"] == 1 and first["ok"] is False and "'op' must be one of" in first["error"]
        assert second == {"id": 2, "ok": True}
        assert an.servers[2].report("raw").listening == [("skynet", 3)]
        writer.write(b"not json at all\n")  # no id to answer: the session ends
        await writer.drain()
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        report = an.servers[2].report("raw")
        assert not report.connected and report.listening == []
        writer.close()
        listener = await an.net.nodes[2].router.listen(3)  # the port went back to the router
        await listener.close()


async def test_oversized_line_and_silent_connection_are_closed() -> None:
    async with contextlib.AsyncExitStack() as stack:
        net = await stack.enter_async_context(RouteNet(1, []))
        server = await stack.enter_async_context(
            AppServer(net.nodes[0].router, None, LOOPBACK, hello_timeout=0.2)
        )
        key = new_proc_key()
        server.register(key, "big")
        silent = await raw_connect(server, b"")
        big = await raw_connect(server, encode_hello(Hello(key, ConnKind.CONTROL)) + b"x" * 70_000)
        async with asyncio.timeout(5):
            assert await silent.read() == b""  # no Hello within hello_timeout
            assert await big.read() == b""  # a control line over 64 KiB
        assert not server.report("big").connected
        cfg = ProcConfig("big", server.address, key, net.nodes[0].pk)
        async with AppClient(cfg) as app:  # the app may come back; dmsg is refused cleanly
            with pytest.raises(AppRequestError, match="no dmsg client"):
                await app.listen(80, net="dmsg")


APP_SCRIPT = """
import asyncio
from skywire.apps.appnet.client import AppClient

async def main():
    async with AppClient.from_env() as app:
        listener = await app.listen(app.config.routing_port)
        await app.set_status("echo ready")
        print("ready", flush=True)
        while True:
            conn = await listener.accept()
            while data := await conn.read():
                await conn.write(data.upper())
            await conn.close()

asyncio.run(main())
"""


async def test_an_app_process_from_proc_config() -> None:
    async with app_net() as an, AppClient(an.config(0, "cli")) as cli:
        key = new_proc_key()
        an.servers[2].register(key, "upper")
        cfg = ProcConfig("upper", an.servers[2].address, key, an.net.nodes[2].pk, routing_port=9)
        env = {**os.environ, "PROC_CONFIG": cfg.to_json()}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", APP_SCRIPT, env=env, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(30):
                assert await proc.stdout.readline() == b"ready\n"
                assert an.servers[2].report("upper").status == "echo ready"
                conn = await cli.dial_routes(an.net.nodes[2].pk, 0, 9)
                await conn.write(b"hello app")
                assert await conn.readexactly(9) == b"HELLO APP"
                proc.kill()  # the app dies; the launcher unregisters it
                await proc.wait()
                await an.servers[2].unregister(key)
                assert await conn.read() == b""
                await conn.close()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert an.servers[2].report("upper").listening == []
